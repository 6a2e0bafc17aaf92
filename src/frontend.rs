//! What the three front-ends share: the rustc wrapper ([`crate::wrapper`]), C/C++ compiles
//! ([`crate::cc`]) and build-script runs ([`crate::buildscript::run`]). Owns the fault type,
//! the plain run of the command as given, the lookup (local store, then the remote, with
//! damaged entries dropped on the way), the upload queued after a store, and the event: a
//! front-end's steps return what happened ([`Done`]) and what they learned on the way
//! ([`Trace`]), and [`Trace::record`] is the one place an event is filled in.
//!
//! The lookup returns what it found ([`Seen`], and the front-end's own restored value). Every warning here is one line on stderr, and the
//! same text goes into the `warning` slot, so the event says what the user saw. Must not key,
//! restore or store anything: matching a manifest and restoring an entry are the front-end's
//! own, passed in.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::compile;
use crate::config::Config;
use crate::events::{self, BuildEvent, Outcome};
use crate::invocation::{Invocation, PassthroughReason};
use crate::key::manifest::{Manifest, Mismatch};
use crate::key::roots::Roots;
use crate::remote::guard::Guarded;
use crate::remote::s3::S3Remote;
use crate::remote::{RemoteConfig, RemoteError};
use crate::restore::{RestoreError, RestoreStats};
use crate::store::{Entry, StatCache, Store, StoreError};
use crate::sync::{self, SyncError};

/// A fault inside kache; the build goes on without the cache.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fault {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Toolchain(#[from] crate::key::toolchain::ToolchainError),
    #[error(transparent)]
    Key(#[from] crate::key::invocation_key::KeyError),
    #[error(transparent)]
    CcKey(#[from] crate::cc::key::CcKeyError),
    #[error(transparent)]
    ScriptKey(#[from] crate::buildscript::key::KeyError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Manifest(#[from] crate::key::manifest::RecordError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Fault {
    /// Self-healing: an index found damaged in use is moved aside like one found damaged
    /// when opened, so the next invocation starts a fresh one.
    pub(crate) fn heal(&self, cache_dir: &Path) {
        if let Fault::Store(e) = self
            && e.is_corrupt_index()
        {
            crate::store::quarantine_if_corrupt(cache_dir);
        }
    }
}

pub(crate) fn io_fault(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Fault {
    let context = context.into();
    move |source| Fault::Io { context, source }
}

/// An error as one line: a warning is one line of stderr and one event field.
pub(crate) fn one_line(e: &impl Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Runs the command exactly as given, output inherited; returns its exit code.
pub(crate) fn plain(inv: &Invocation) -> i32 {
    match compile::run_plain(&inv.compiler_chain, &inv.raw_args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kache: cannot run {}: {e}", inv.rustc().display());
            1
        }
    }
}

/// Turns what a compile front-end's steps returned into what the invocation came to and the
/// exit code: a passthrough runs the command as given; a fault (healed, one warning line) runs
/// it as if kache were not there, unless it already `ran`, after removing `clear` (the files
/// it writes: a restore may have stopped halfway, or an older kache may have left read-only
/// links to its blobs, and the compiler must find a writable place).
pub(crate) fn conclude(
    inv: &Invocation,
    ran: Option<Ran>,
    cache_dir: &Path,
    steps: Result<Done, Fault>,
    clear: &[PathBuf],
) -> (Done, i32) {
    match steps {
        Ok(Done::Passthrough(reason)) => {
            tracing::debug!("passthrough: {reason}");
            let code = plain(inv);
            (Done::Passthrough(reason), code)
        }
        Ok(done) => {
            let code = match &done {
                Done::Ran(_) | Done::Probe => ran.map_or(0, |r| r.exit_code),
                _ => 0,
            };
            (done, code)
        }
        Err(fault) => {
            fault.heal(cache_dir);
            let message = one_line(&fault);
            eprintln!("kache: warning: {message}; compiling without the cache");
            if let Some(r) = ran {
                return (Done::Degraded(message), r.exit_code);
            }
            for path in clear {
                if let Err(e) = crate::restore::remove_if_present(path) {
                    tracing::debug!("cannot remove {}: {e}", path.display());
                }
            }
            (Done::Degraded(message), plain(inv))
        }
    }
}

/// The remote behind its circuit breaker, and its settings.
pub(crate) struct Remote {
    pub store: Guarded<S3Remote>,
    pub config: RemoteConfig,
}

/// The configured remote, if any. A configuration that does not work is reported once per
/// invocation (into `warning`) and the build goes on without the remote.
fn open_remote(config: &Config, cache_dir: &Path, warning: &mut Option<String>) -> Option<Remote> {
    let failed = |e: &dyn Display, warning: &mut Option<String>| {
        eprintln!("kache: warning: {e}; not using the remote");
        *warning = Some(e.to_string());
        None
    };
    let config = match config.remote.clone() {
        Ok(c) => c?,
        Err(e) => return failed(&e, warning),
    };
    match crate::remote::connect(&config, cache_dir) {
        Ok(store) => Some(Remote { store, config }),
        Err(e) => failed(&e, warning),
    }
}

/// Which front-end is asking: the warnings say what the invocation does instead.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Front {
    Compile,
    BuildScript,
}

impl Front {
    /// What runs when a stored entry cannot be used.
    fn instead(self) -> &'static str {
        match self {
            Front::Compile => "compiling",
            Front::BuildScript => "running the build script",
        }
    }

    /// What runs when the remote cannot be asked.
    fn instead_of_remote(self) -> &'static str {
        match self {
            Front::Compile => "compiling locally",
            Front::BuildScript => "running the build script",
        }
    }
}

/// Loads an entry. One whose stored description is damaged is dropped (self-healing, one
/// warning) and treated as absent, so the invocation runs and stores it again.
fn load_entry_or_drop(
    store: &Store,
    key: &str,
    front: Front,
    warning: &mut Option<String>,
) -> Result<Option<Entry>, StoreError> {
    match store.load_entry(key) {
        Err(StoreError::Damaged { detail, .. }) => {
            let detail = detail.replace('\n', " ");
            eprintln!(
                "kache: warning: stored entry {key} is damaged ({detail}); dropping it and {}",
                front.instead()
            );
            *warning = Some(format!("damaged entry {key} dropped"));
            store.remove_entry(key)?;
            Ok(None)
        }
        other => other,
    }
}

/// Whether a stored manifest matches the current inputs; the front-end's own check.
pub(crate) type Matches<'a> = dyn FnMut(&Manifest, &mut StatCache) -> Result<(), Mismatch> + 'a;

/// A compile's check: the manifest's files as they are now (under these roots, relative
/// paths from `cwd`) and its variables from this process's environment.
pub(crate) fn matches_here<'a>(
    roots: &'a Roots,
    cwd: &'a Path,
) -> impl FnMut(&Manifest, &mut StatCache) -> Result<(), Mismatch> + 'a {
    move |manifest, stat| manifest.check(roots, cwd, stat, &|name| std::env::var(name).ok())
}

/// The newest local entry under `inv_key` whose manifest `matches` and whose description
/// loads; damaged ones are dropped on the way.
fn find_local(
    store: &Store,
    stat: &mut StatCache,
    inv_key: &str,
    matches: &mut Matches,
    front: Front,
    warning: &mut Option<String>,
) -> Result<Option<Entry>, StoreError> {
    for (entry_key, manifest) in store.manifests(inv_key)? {
        // One read transaction for the whole check: each stat-cache query would otherwise
        // take and drop the index's read lock (a C manifest names a hundred headers or more).
        // It only reads, and ends (rolled back) before anything here may write.
        let snapshot = store.conn().unchecked_transaction().ok();
        let matched = matches(&manifest, stat);
        drop(snapshot);
        if let Err(why) = matched {
            tracing::debug!("manifest for {entry_key} does not match: {why:?}");
            continue;
        }
        if let Some(entry) = load_entry_or_drop(store, &entry_key, front, warning)? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// What a lookup noticed, reported whatever the invocation comes to.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// From one instant, before the local lookup, to the entry found (local or remote) or the
    /// last miss.
    pub lookup_ms: f64,
    pub downloaded_bytes: u64,
    /// The last warning given; a later one replaces it.
    pub warning: Option<String>,
}

impl Seen {
    /// Puts what was seen into a front-end's event.
    fn report(self, event: &mut BuildEvent) {
        event.lookup_ms = self.lookup_ms;
        event.downloaded_bytes = self.downloaded_bytes;
        if self.warning.is_some() {
            event.warning = self.warning;
        }
    }
}

/// A restored entry and what restoring it took.
#[derive(Debug)]
pub(crate) struct Hit {
    pub outcome: Outcome,
    pub entry_key: String,
    /// The stored compile cost: the time this hit saved.
    pub compile_ms: f64,
    pub size: u64,
    pub linked: RestoreStats,
    pub restore_ms: f64,
}

impl Hit {
    /// Puts the hit into a front-end's event.
    fn report(self, event: &mut BuildEvent) {
        event.result = self.outcome;
        event.cache_key = Some(self.entry_key);
        event.compile_time_ms = self.compile_ms;
        event.size = self.size;
        event.reflinked_bytes = self.linked.reflinked;
        event.hardlinked_bytes = self.linked.hardlinked;
        event.copied_bytes = self.linked.copied;
        event.restore_ms = self.restore_ms;
    }
}

/// What one invocation came to. A front-end's steps return it; only [`Trace::record`] turns
/// it into the event.
#[derive(Debug)]
pub(crate) enum Done {
    /// A stored entry was restored; the compiler (or script) did not run.
    Hit(Hit),
    /// The compiler (or script) ran ([`Trace::ran`]); what became of its outputs.
    Ran(Kept),
    /// Not cacheable (the reason): the command ran as given.
    Passthrough(String),
    /// A probe of the compiler (`-vV`, `--print`), answered from [`crate::probe`]'s memo or
    /// run ([`Trace::ran`]) and remembered: recorded as a `probe` passthrough.
    Probe,
    /// A fault inside kache (the warning given): the command ran as given, unless it already
    /// had.
    Degraded(String),
}

/// What became of the outputs of a run.
#[derive(Debug)]
pub(crate) enum Kept {
    /// Stored as a new entry.
    Stored(Stored),
    /// Not stored: the run failed, or an input changed while it ran.
    Not,
    /// The run succeeded but is not stored, for this reason (the event's
    /// `passthrough_reason`).
    NotStored(String),
}

/// A miss stored as a new entry.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) entry_key: String,
    pub(crate) size: u64,
    pub(crate) store_ms: f64,
}

/// The compiler's (or script's) run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ran {
    pub(crate) exit_code: i32,
    pub(crate) compile_ms: f64,
}

/// What the invocation learned on the way, reported whatever it came to: a fault late in the
/// pipeline still reports the key time, the bytes downloaded and the compiler's run.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) crate_name: Option<String>,
    pub(crate) crate_types: Vec<String>,
    pub(crate) key_ms: f64,
    pub(crate) seen: Seen,
    /// Set once the compiler (or script) has run: a later fault must not run it again.
    pub(crate) ran: Option<Ran>,
}

impl Trace {
    /// The one place a front-end's event is filled in.
    pub(crate) fn record(self, done: Done, event: &mut BuildEvent) {
        event.crate_name = self.crate_name;
        event.crate_types = self.crate_types;
        event.key_ms = self.key_ms;
        self.seen.report(event);
        if let Some(r) = self.ran {
            event.compiler_runs = 1;
            event.compile_time_ms = r.compile_ms;
        }
        match done {
            Done::Hit(hit) => hit.report(event),
            Done::Ran(kept) => {
                event.result = Outcome::Miss;
                match kept {
                    Kept::Stored(s) => {
                        event.cache_key = Some(s.entry_key);
                        event.size = s.size;
                        event.store_ms = s.store_ms;
                    }
                    Kept::Not => {}
                    Kept::NotStored(why) => event.passthrough_reason = Some(why),
                }
            }
            Done::Passthrough(reason) => {
                event.result = Outcome::Passthrough;
                event.passthrough_reason = Some(reason);
                event.compiler_runs = 1;
            }
            Done::Probe => {
                event.result = Outcome::Passthrough;
                event.passthrough_reason = Some(PassthroughReason::Probe.to_string());
            }
            Done::Degraded(warning) => {
                event.result = Outcome::Error;
                event.warning = Some(warning);
                event.compiler_runs = 1;
            }
        }
    }
}

/// What one lookup looks for and where.
pub(crate) struct Lookup<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub inv_key: &'a str,
    /// Dirs outside every root whose files a fetched manifest may name (a C compiler's
    /// system headers).
    pub system_dirs: &'a [String],
    pub front: Front,
}

/// Puts a found entry in place: `None` when it turned out unusable (dropped, with the
/// warning in the slot it is given).
pub(crate) type Restore<'a, T> =
    dyn FnMut(Entry, Outcome, &mut StatCache, &mut Option<String>) -> Result<Option<T>, Fault> + 'a;

/// The lookup: the local store, then (on a local miss) the remote, opened only then. A found
/// entry is restored by `restore`; one that turns out unusable is a miss there, and the
/// lookup goes on. Returns the restored value, and the remote if one was opened (a stored
/// miss is uploaded to it).
///
/// The store's shared maintenance lock is held from before the index is read until restored
/// outputs are linked, so gc cannot delete a blob this lookup is about to use.
pub(crate) fn lookup<T>(
    l: &Lookup,
    stat: &mut StatCache,
    matches: &mut Matches,
    restore: &mut Restore<T>,
    seen: &mut Seen,
) -> Result<(Option<T>, Option<Remote>), Fault> {
    let start = Instant::now();
    let _maintenance = l.store.lock_shared();
    let local = find_local(
        l.store,
        stat,
        l.inv_key,
        matches,
        l.front,
        &mut seen.warning,
    )?;
    if let Some(entry) = local {
        seen.lookup_ms = ms_since(start);
        if let Some(done) = restore(entry, Outcome::LocalHit, stat, &mut seen.warning)? {
            return Ok((Some(done), None));
        }
    }
    let remote = open_remote(l.config, l.store.dir(), &mut seen.warning);
    if let Some(r) = &remote {
        let fetched = fetch(
            r,
            l.store,
            stat,
            l.inv_key,
            l.system_dirs,
            matches,
            l.front,
            &mut seen.warning,
        )?;
        seen.downloaded_bytes = fetched.downloaded_bytes;
        if let Some(entry) = fetched.entry {
            seen.lookup_ms = ms_since(start);
            if let Some(done) = restore(entry, Outcome::RemoteHit, stat, &mut seen.warning)? {
                // The fetched entry grew the store: past the size limit, a detached
                // `kache gc --auto` makes room.
                crate::store::maintenance::maybe_start_background_gc(l.store, l.config.max_size);
                return Ok((Some(done), remote));
            }
        }
    }
    seen.lookup_ms = ms_since(start);
    Ok((None, remote))
}

/// A duration as the events record it.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_since(start: Instant) -> f64 {
    ms(start.elapsed())
}

/// What a remote lookup brought.
pub(crate) struct Fetched {
    /// The matching entry, now in the local store; `None` on a miss.
    pub entry: Option<Entry>,
    /// Bytes downloaded, whether or not they made a usable entry.
    pub downloaded_bytes: u64,
}

/// On a local miss, asks the remote for an entry under `inv_key` whose manifest `matches`;
/// one found is verified and put in the local store. Any remote fault is a miss with a
/// warning, never a failure; an open breaker is a quiet miss.
#[allow(clippy::too_many_arguments)]
fn fetch(
    remote: &Remote,
    store: &Store,
    stat: &mut StatCache,
    inv_key: &str,
    system_dirs: &[String],
    matches: &mut Matches,
    front: Front,
    warning: &mut Option<String>,
) -> Result<Fetched, StoreError> {
    let fetched = sync::fetch::fetch(
        &remote.store,
        store,
        stat,
        inv_key,
        remote.config.max_object_bytes,
        system_dirs,
        &mut |manifest, stat| matches(manifest, stat).is_ok(),
    );
    let missed = Fetched {
        entry: None,
        downloaded_bytes: 0,
    };
    match fetched {
        Ok(Some(f)) => Ok(Fetched {
            entry: load_entry_or_drop(store, &f.entry_key, front, warning)?,
            downloaded_bytes: f.downloaded_bytes,
        }),
        Ok(None) | Err(SyncError::Remote(RemoteError::BreakerOpen)) => Ok(missed),
        Err(e) => {
            let message = one_line(&e);
            eprintln!("kache: warning: {message}; {}", front.instead_of_remote());
            *warning = Some(message);
            Ok(missed)
        }
    }
}

/// A restore that failed on a damaged entry (a blob that no longer hashes to its name, a
/// name outside what the invocation writes, or stored text naming a root this checkout does
/// not have) drops the entry and its damaged blob, with one warning; `Ok` means the
/// invocation compiles (or runs the build script). Any other error is a fault.
pub(crate) fn drop_unrestorable(
    store: &Store,
    entry_key: &str,
    error: RestoreError,
    front: Front,
    warning: &mut Option<String>,
) -> Result<(), Fault> {
    let instead = front.instead();
    match error {
        RestoreError::BadBlob { name, blob } => {
            eprintln!(
                "kache: warning: cached {name} was damaged (blob {blob}); dropping the entry and {instead}"
            );
            *warning = Some(format!("damaged blob {blob} dropped"));
            store.remove_entry(entry_key)?;
            store.discard_damaged_blob(&blob);
            Ok(())
        }
        e @ (RestoreError::UnexpectedName { .. }
        | RestoreError::UnknownRoot
        | RestoreError::LinkOutside { .. }) => {
            // The entry is damage (or an attack): the manifest that matched names only roots
            // this checkout has, so a stored text naming another is damage too. It goes like
            // any damaged entry.
            let message = one_line(&e);
            eprintln!("kache: warning: {message}; dropping the entry and {instead}");
            *warning = Some(message);
            store.remove_entry(entry_key)?;
            Ok(())
        }
        e => Err(e.into()),
    }
}

/// After a stored miss, queues the new entry for upload to a writable remote; a detached
/// worker uploads, so the build's exit is not delayed.
pub(crate) fn queue_upload(
    remote: Option<&Remote>,
    cache_dir: &Path,
    entry_key: &str,
    inv_key: &str,
) {
    if remote.is_none_or(|r| r.config.read_only) {
        return;
    }
    match sync::upload::enqueue(cache_dir, entry_key, inv_key) {
        Ok(()) => sync::upload::spawn_worker(),
        Err(e) => tracing::debug!("cannot queue the upload: {e}"),
    }
}

/// Finishes the invocation's event (its time, from `started`) and appends it to the log; a
/// log that cannot be written never fails the build.
pub(crate) fn record(cache_dir: &Path, event: &mut BuildEvent, started: Instant) {
    event.elapsed_ms = ms_since(started);
    if let Err(e) = events::append(cache_dir, event) {
        tracing::debug!("cannot append to the event log: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::RestoreStats;

    fn trace() -> Trace {
        Trace {
            crate_name: Some("demo".into()),
            crate_types: vec!["lib".into()],
            key_ms: 1.0,
            seen: Seen {
                lookup_ms: 2.0,
                downloaded_bytes: 7,
                warning: Some("remote down".into()),
            },
            ran: None,
        }
    }

    #[test]
    fn a_fault_after_rustc_ran_reports_its_run_and_the_fault() {
        let mut t = trace();
        t.ran = Some(Ran {
            exit_code: 0,
            compile_ms: 40.0,
        });
        let mut e = BuildEvent::default();
        t.record(Done::Degraded("disk full".into()), &mut e);
        assert_eq!(e.result, Outcome::Error);
        assert_eq!(e.warning.as_deref(), Some("disk full"));
        assert_eq!((e.compiler_runs, e.compile_time_ms), (1, 40.0));
        assert_eq!((e.key_ms, e.lookup_ms, e.downloaded_bytes), (1.0, 2.0, 7));
        assert_eq!(e.cache_key, None);
    }

    #[test]
    fn a_hit_reports_the_stored_compile_cost_and_no_compiler_run() {
        let mut e = BuildEvent::default();
        let hit = Hit {
            outcome: Outcome::RemoteHit,
            entry_key: "k".into(),
            compile_ms: 90.0,
            size: 3,
            linked: RestoreStats {
                reflinked: 1,
                hardlinked: 0,
                copied: 2,
            },
            restore_ms: 4.0,
        };
        trace().record(Done::Hit(hit), &mut e);
        assert_eq!(e.result, Outcome::RemoteHit);
        assert_eq!((e.compiler_runs, e.compile_time_ms), (0, 90.0));
        assert_eq!((e.reflinked_bytes, e.copied_bytes, e.size), (1, 2, 3));
        assert_eq!(e.warning.as_deref(), Some("remote down"));
        assert_eq!(e.crate_name.as_deref(), Some("demo"));
    }

    #[test]
    fn a_failed_compile_is_a_miss_without_an_entry() {
        let mut t = trace();
        t.ran = Some(Ran {
            exit_code: 1,
            compile_ms: 5.0,
        });
        let mut e = BuildEvent::default();
        t.record(Done::Ran(Kept::Not), &mut e);
        assert_eq!(e.result, Outcome::Miss);
        assert_eq!((e.compiler_runs, e.cache_key), (1, None));
    }

    #[test]
    fn a_passthrough_names_its_reason() {
        let mut e = BuildEvent::default();
        trace().record(
            Done::Passthrough(PassthroughReason::Probe.to_string()),
            &mut e,
        );
        assert_eq!(e.result, Outcome::Passthrough);
        assert_eq!(e.compiler_runs, 1);
        assert_eq!(
            e.passthrough_reason,
            Some(PassthroughReason::Probe.to_string())
        );
    }
}
