//! What the three front-ends share: the rustc wrapper ([`crate::wrapper`]), C/C++ compiles
//! ([`crate::cc`]) and build-script runs ([`crate::buildscript::run`]). Owns the fault type,
//! the plain run of the command as given, the lookup (local store, then the remote, with
//! damaged entries dropped on the way), the upload queued after a store, and the event
//! appended at the end.
//!
//! The lookup returns what it found ([`Seen`], and the front-end's own restored value); a
//! front-end turns those into its event. Every warning here is one line on stderr, and the
//! same text goes into the `warning` slot, so the event says what the user saw. Must not key,
//! restore or store anything: matching a manifest and restoring an entry are the front-end's
//! own, passed in.

use std::fmt::Display;
use std::path::Path;
use std::time::Instant;

use crate::compile;
use crate::config::Config;
use crate::events::{self, BuildEvent, Outcome};
use crate::invocation::Invocation;
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
pub enum Fault {
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
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Fault {
    /// Self-healing: an index found damaged in use is moved aside like one found damaged
    /// when opened, so the next invocation starts a fresh one.
    pub fn heal(&self, cache_dir: &Path) {
        if let Fault::Store(e) = self
            && e.is_corrupt_index()
        {
            crate::store::quarantine_if_corrupt(cache_dir);
        }
    }
}

pub fn io_fault(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Fault {
    let context = context.into();
    move |source| Fault::Io { context, source }
}

/// An error as one line: a warning is one line of stderr and one event field.
pub fn one_line(e: &impl Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Runs the command exactly as given, output inherited; returns its exit code.
pub fn plain(inv: &Invocation) -> i32 {
    match compile::run_plain(&inv.compiler_chain, &inv.raw_args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kache: cannot run {}: {e}", inv.rustc().display());
            1
        }
    }
}

/// The remote behind its circuit breaker, and its settings.
pub struct Remote {
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
pub enum Front {
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
pub type Matches<'a> = dyn FnMut(&Manifest, &mut StatCache) -> Result<(), Mismatch> + 'a;

/// A compile's check: the manifest's files as they are now (under these roots, relative
/// paths from `cwd`) and its variables from this process's environment.
pub fn matches_here<'a>(
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
        if let Err(why) = matches(&manifest, stat) {
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
pub struct Seen {
    /// From one instant, before the local lookup, to the entry found (local or remote) or the
    /// last miss.
    pub lookup_ms: f64,
    pub downloaded_bytes: u64,
    /// The last warning given; a later one replaces it.
    pub warning: Option<String>,
}

impl Seen {
    /// Puts what was seen into a front-end's event.
    pub fn report(self, event: &mut BuildEvent) {
        event.lookup_ms = self.lookup_ms;
        event.downloaded_bytes = self.downloaded_bytes;
        if self.warning.is_some() {
            event.warning = self.warning;
        }
    }
}

/// A restored entry and what restoring it took.
#[derive(Debug)]
pub struct Hit {
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
    pub fn report(self, event: &mut BuildEvent) {
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

/// What one lookup looks for and where.
pub struct Lookup<'a> {
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
pub type Restore<'a, T> =
    dyn FnMut(Entry, Outcome, &mut StatCache, &mut Option<String>) -> Result<Option<T>, Fault> + 'a;

/// The lookup: the local store, then (on a local miss) the remote, opened only then. A found
/// entry is restored by `restore`; one that turns out unusable is a miss there, and the
/// lookup goes on. Returns the restored value, and the remote if one was opened (a stored
/// miss is uploaded to it).
///
/// The store's shared maintenance lock is held from before the index is read until restored
/// outputs are linked, so gc cannot delete a blob this lookup is about to use.
pub fn lookup<T>(
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
                return Ok((Some(done), remote));
            }
        }
    }
    seen.lookup_ms = ms_since(start);
    Ok((None, remote))
}

/// A duration as the events record it.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_since(start: Instant) -> f64 {
    ms(start.elapsed())
}

/// What a remote lookup brought.
pub struct Fetched {
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
pub fn drop_unrestorable(
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
        e @ (RestoreError::UnexpectedName { .. } | RestoreError::UnknownRoot) => {
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
pub fn queue_upload(remote: Option<&Remote>, cache_dir: &Path, entry_key: &str, inv_key: &str) {
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
pub fn record(cache_dir: &Path, event: &mut BuildEvent, started: Instant) {
    event.elapsed_ms = ms_since(started);
    if let Err(e) = events::append(cache_dir, event) {
        tracing::debug!("cannot append to the event log: {e}");
    }
}
