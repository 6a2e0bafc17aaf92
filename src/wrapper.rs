//! One wrapper invocation, end to end:
//! parse → key → lookup → restore (hit), or compile → store (miss), then record the event.
//!
//! Every fault inside kache is caught here and turned into a one-line warning plus a plain
//! rustc run, so the build never fails because of the cache. A failing compile is never
//! stored. This file is glue: the steps themselves live in their own modules.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::compile::{self, outputs};
use crate::config::{Config, IncrementalMode};
use crate::events::{self, BuildEvent, Outcome};
use crate::invocation::{CompilerFamily, EmitKind, Invocation, PassthroughReason, RustcArgs};
use crate::key::depinfo::DepInfo;
use crate::key::invocation_key::{KeyInputs, invocation_key};
use crate::key::manifest::{Manifest, ManifestEnv, ManifestFile};
use crate::key::roots::{RootSources, Roots, Spelling};
use crate::key::{FileHasher, KeyField, env as keyenv, toolchain};
use crate::remote::guard::Guarded;
use crate::remote::s3::S3Remote;
use crate::remote::{RemoteConfig, RemoteError};
use crate::restore::{self, RestoreError};
use crate::store::{Entry, StatCache, Store, StoreError, StoredOutput, fsutil};
use crate::sync::{self, SyncError};

/// A fault inside kache; the build goes on without the cache.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Toolchain(#[from] toolchain::ToolchainError),
    #[error(transparent)]
    Key(#[from] crate::key::invocation_key::KeyError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_fault(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Fault {
    let context = context.into();
    move |source| Fault::Io { context, source }
}

/// Runs one wrapper invocation and returns the exit code for the process.
pub fn run(wrapper_args: Vec<OsString>) -> i32 {
    let started = Instant::now();
    let Some(inv) = Invocation::from_wrapper_args(wrapper_args) else {
        eprintln!("kache: no compiler given; cargo runs kache as `kache <rustc> <args>`");
        return 2;
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kache: warning: {e}; compiling without the cache");
            return plain(&inv);
        }
    };
    if config.disabled {
        return plain(&inv);
    }
    // A cache dir someone else could have written is not used at all, the event log
    // included: its index, blobs or toolchain memo could be theirs.
    if let Err(e) = crate::store::trust_cache_dir(&config.dir, true) {
        eprintln!("kache: warning: {e}; compiling without the cache");
        return plain(&inv);
    }
    init_logging(config.log_filter.as_deref());
    let mut w = Wrapper {
        event: BuildEvent {
            schema: events::SCHEMA,
            ts: events::now_ms(),
            crate_version: std::env::var("CARGO_PKG_VERSION").ok(),
            ..BuildEvent::default()
        },
        inv,
        config,
        rustc_ran: None,
        outputs: Vec::new(),
    };
    let family = w
        .inv
        .compiler_chain
        .first()
        .and_then(|c| CompilerFamily::classify(c.as_os_str()))
        .unwrap_or(CompilerFamily::Rust);
    let code = match family {
        CompilerFamily::Rust => w.run(),
        CompilerFamily::C => {
            w.event.compiler = events::Compiler::C;
            crate::cc::run(&w.inv, &w.config, &mut w.event)
        }
        CompilerFamily::Other => {
            w.event.compiler = events::Compiler::Other;
            w.event.passthrough_reason = Some("not_a_compiler".into());
            w.event.compiler_runs = 1;
            plain(&w.inv)
        }
    };
    w.event.elapsed_ms = ms(started.elapsed());
    w.event.exit_code = code;
    if let Err(e) = events::append(&w.config.dir, &w.event) {
        tracing::debug!("cannot append to the event log: {e}");
    }
    code
}

fn plain(inv: &Invocation) -> i32 {
    match compile::run_plain(&inv.compiler_chain, &inv.raw_args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kache: cannot run {}: {e}", inv.rustc().display());
            1
        }
    }
}

fn init_logging(filter: Option<&str>) {
    if let Some(f) = filter {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_writer(std::io::stderr)
            // Colour only on a terminal: cargo and pipes would show the escape codes.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init();
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Wrapper {
    inv: Invocation,
    config: Config,
    event: BuildEvent,
    /// Exit code of rustc once it has run; a later fault must not run it again.
    rustc_ran: Option<i32>,
    /// The files this invocation's rustc writes, once known: a fallback to plain rustc
    /// removes them first, so rustc always finds a writable place (a restore may have stopped
    /// halfway, or an older kache may have left read-only links to its blobs).
    outputs: Vec<PathBuf>,
}

/// The remote behind its circuit breaker, and its settings.
struct Remote {
    store: Guarded<S3Remote>,
    config: RemoteConfig,
}

/// What an invocation needs once it is known to be cacheable.
struct Prepared {
    args: RustcArgs,
    cwd: PathBuf,
    out_dir: PathBuf,
    output_names: Vec<String>,
    roots: Roots,
}

impl Wrapper {
    fn run(&mut self) -> i32 {
        let cwd = match std::env::current_dir() {
            Ok(c) => c,
            Err(e) => return self.degrade(io_fault("current directory")(e)),
        };
        let args = match RustcArgs::parse(&self.inv.raw_args, &cwd) {
            Ok(a) => a,
            Err(reason) => return self.passthrough(reason),
        };
        self.event.crate_name = args.crate_name.clone();
        self.event.crate_types = args
            .effective_crate_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cache_incremental = self.config.incremental != IncrementalMode::Passthrough;
        if let Some(reason) = args.passthrough_reason(cache_incremental) {
            return self.passthrough(reason);
        }
        match self.cached(args, cwd) {
            Ok(code) => code,
            Err(fault) => {
                // Self-healing: an index found damaged in use is moved aside like one found
                // damaged when opened, so the next invocation starts a fresh one.
                if let Fault::Store(e) = &fault
                    && e.is_corrupt_index()
                {
                    crate::store::quarantine_if_corrupt(&self.config.dir);
                }
                self.degrade(fault)
            }
        }
    }

    fn passthrough(&mut self, reason: PassthroughReason) -> i32 {
        tracing::debug!("passthrough: {reason}");
        self.event.result = Outcome::Passthrough;
        self.event.passthrough_reason = Some(reason.to_string());
        self.event.compiler_runs = 1;
        plain(&self.inv)
    }

    /// A fault inside kache: one warning line, then rustc as if kache were not there.
    fn degrade(&mut self, fault: Fault) -> i32 {
        let message = fault.to_string().replace('\n', " ");
        eprintln!("kache: warning: {message}; compiling without the cache");
        self.event.result = Outcome::Error;
        self.event.warning = Some(message);
        if let Some(code) = self.rustc_ran {
            return code;
        }
        for path in &self.outputs {
            if let Err(e) = restore::remove_if_present(path) {
                tracing::debug!("cannot remove {}: {e}", path.display());
            }
        }
        self.event.compiler_runs = 1;
        plain(&self.inv)
    }

    fn cached(&mut self, args: RustcArgs, cwd: PathBuf) -> Result<i32, Fault> {
        let key_start = Instant::now();
        let store = Store::open(&self.config.dir)?;
        let rustup_toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
        let toolchain =
            toolchain::identify(self.inv.rustc(), store.dir(), rustup_toolchain.as_deref())?;
        let target = args
            .target
            .as_deref()
            .map(|t| t.trim_end_matches(".json"))
            .unwrap_or(&toolchain.host)
            .to_owned();
        let output_names = match outputs::expected_outputs(&args, &target) {
            Ok(n) => n,
            Err(reason) => return Ok(self.passthrough(reason)),
        };
        let out_dir = absolute(&cwd, args.out_dir.as_deref().unwrap_or(Path::new(".")));
        self.outputs = output_names.iter().map(|n| out_dir.join(n)).collect();
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
        let roots = Roots::discover(&RootSources {
            cwd: &cwd,
            args: &args,
            manifest_dir: manifest_dir.as_deref(),
            cargo_home: cargo_home.as_deref(),
            sysroot: Some(&toolchain.sysroot),
        });
        let env = keyenv::keyed_vars(std::env::vars(), &self.config.key_env_vars);
        let path_var = std::env::var("PATH").ok();
        let driver_conf_dir = std::env::var_os("CLIPPY_CONF_DIR")
            .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
            .map(PathBuf::from);
        let mut stat = StatCache::new(store.conn());
        let (inv_key, key_fields) = invocation_key(
            &KeyInputs {
                args: &args,
                toolchain: &toolchain,
                drivers: self.inv.driver_wrappers(),
                roots: &roots,
                cwd: &cwd,
                env: &env,
                path_var: path_var.as_deref(),
                driver_conf_dir: driver_conf_dir.as_deref(),
                incremental: !args.incremental_items.is_empty()
                    && self.config.incremental == IncrementalMode::Cache,
            },
            &mut stat,
        )?;
        self.event.key_ms = ms(key_start.elapsed());
        // What went into the key, so a debug log can tell why two builds differ.
        tracing::debug!("invocation key {inv_key} from {} fields", key_fields.len());
        for f in &key_fields {
            tracing::debug!("  key field {} = {}", f.label, f.value);
        }
        let prepared = Prepared {
            args,
            cwd,
            out_dir,
            output_names,
            roots,
        };

        let lookup_start = Instant::now();
        // Held from before the index is read until restored outputs are linked, so gc cannot
        // delete a blob this lookup is about to use.
        let maintenance = store.lock_shared();
        if let Some(code) = self.try_hit(&store, &mut stat, &prepared, &inv_key)? {
            return Ok(code);
        }
        let remote = self.open_remote(store.dir());
        if let Some(r) = &remote
            && let Some(code) = self.try_remote_hit(&store, &mut stat, &prepared, &inv_key, r)?
        {
            crate::store::maintenance::maybe_start_background_gc(&store, self.config.max_size);
            return Ok(code);
        }
        drop(maintenance);
        self.event.lookup_ms = ms(lookup_start.elapsed());
        let code = self.compile_and_store(&store, &mut stat, &prepared, &inv_key, key_fields)?;
        if let (Some(r), Some(entry_key)) = (&remote, &self.event.cache_key)
            && !r.config.read_only
        {
            // Uploading happens in a detached worker: rustc's exit is not delayed.
            match sync::upload::enqueue(store.dir(), entry_key, &inv_key) {
                Ok(()) => sync::upload::spawn_worker(),
                Err(e) => tracing::debug!("cannot queue the upload: {e}"),
            }
        }
        Ok(code)
    }

    /// The configured remote, if any. A configuration that does not work is reported once
    /// per invocation and the build goes on without the remote.
    fn open_remote(&mut self, cache_dir: &Path) -> Option<Remote> {
        let config = match self.config.remote.clone() {
            Ok(c) => c?,
            Err(e) => {
                eprintln!("kache: warning: {e}; not using the remote");
                self.event.warning = Some(e.to_string());
                return None;
            }
        };
        match crate::remote::connect(&config, cache_dir) {
            Ok(store) => Some(Remote { store, config }),
            Err(e) => {
                eprintln!("kache: warning: {e}; not using the remote");
                self.event.warning = Some(e.to_string());
                None
            }
        }
    }

    fn try_hit(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        inv_key: &str,
    ) -> Result<Option<i32>, Fault> {
        let lookup_start = Instant::now();
        let env = |name: &str| std::env::var(name).ok();
        for (entry_key, manifest) in store.manifests(inv_key)? {
            if let Err(why) = manifest.check(&p.roots, &p.cwd, stat, &env) {
                tracing::debug!("manifest for {entry_key} does not match: {why:?}");
                continue;
            }
            let Some(entry) = self.load_entry_or_drop(store, &entry_key)? else {
                continue;
            };
            self.event.lookup_ms = ms(lookup_start.elapsed());
            return self.restore_hit(store, stat, p, &entry, Outcome::LocalHit);
        }
        Ok(None)
    }

    /// Loads an entry. One whose stored description is damaged is dropped (self-healing, one
    /// warning) and treated as absent, so the invocation compiles and stores it again.
    fn load_entry_or_drop(&mut self, store: &Store, key: &str) -> Result<Option<Entry>, Fault> {
        match store.load_entry(key) {
            Err(StoreError::Damaged { detail, .. }) => {
                let detail = detail.replace('\n', " ");
                eprintln!(
                    "kache: warning: stored entry {key} is damaged ({detail}); dropping it and compiling"
                );
                self.event.warning = Some(format!("damaged entry {key} dropped"));
                store.remove_entry(key)?;
                Ok(None)
            }
            other => Ok(other?),
        }
    }

    /// On a local miss, asks the remote; a match is verified, put in the local store and
    /// restored from there. Any remote fault is a miss (with a warning), never a failure.
    fn try_remote_hit(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        inv_key: &str,
        remote: &Remote,
    ) -> Result<Option<i32>, Fault> {
        let lookup_start = Instant::now();
        let env = |name: &str| std::env::var(name).ok();
        let fetched = sync::fetch::fetch(
            &remote.store,
            store,
            stat,
            inv_key,
            remote.config.max_object_bytes,
            &[],
            &mut |manifest, stat| manifest.check(&p.roots, &p.cwd, stat, &env).is_ok(),
        );
        match fetched {
            Ok(Some(f)) => {
                self.event.downloaded_bytes = f.downloaded_bytes;
                let Some(entry) = self.load_entry_or_drop(store, &f.entry_key)? else {
                    return Ok(None);
                };
                self.event.lookup_ms = ms(lookup_start.elapsed());
                self.restore_hit(store, stat, p, &entry, Outcome::RemoteHit)
            }
            Ok(None) => Ok(None),
            Err(SyncError::Remote(RemoteError::BreakerOpen)) => Ok(None),
            Err(e) => {
                let message = e.to_string().replace('\n', " ");
                eprintln!("kache: warning: {message}; compiling locally");
                self.event.warning = Some(message);
                Ok(None)
            }
        }
    }

    /// Puts a stored entry in place and replays rustc's output. `None` when the entry turned
    /// out to be damaged (it is dropped, and the invocation compiles).
    fn restore_hit(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        entry: &Entry,
        outcome: Outcome,
    ) -> Result<Option<i32>, Fault> {
        let restore_start = Instant::now();
        let depinfo_name = outputs::depinfo_name(&p.args);
        let crate_name = p.args.crate_name.as_deref().unwrap_or_default();
        let expected = restore::Expected {
            outputs: &p.output_names,
            depinfo: &depinfo_name,
            links: Some((crate_name, &self.event.crate_types)),
        };
        let stats = match restore::restore_entry(store, entry, &p.out_dir, expected, &p.roots, stat)
        {
            Ok(s) => s,
            Err(RestoreError::BadBlob { name, blob }) => {
                // Self-healing: a damaged entry is dropped and the invocation compiles.
                eprintln!(
                    "kache: warning: cached {name} was damaged (blob {blob}); dropping the entry and compiling"
                );
                self.event.warning = Some(format!("damaged blob {blob} dropped"));
                store.remove_entry(&entry.key)?;
                store.discard_damaged_blob(&blob);
                return Ok(None);
            }
            Err(e @ RestoreError::UnexpectedName { .. }) => {
                // Nothing was written: the names are checked first. The entry is damage
                // (or an attack), so it goes like any damaged entry.
                let message = e.to_string().replace('\n', " ");
                eprintln!("kache: warning: {message}; dropping the entry and compiling");
                self.event.warning = Some(message);
                store.remove_entry(&entry.key)?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        crate::testhook::crash_point("mid_restore", &entry.crate_name);
        let spelling = stderr_spelling(&p.args);
        let (Some(stdout), Some(stderr)) = (
            p.roots
                .fill(&String::from_utf8_lossy(&entry.stdout), spelling),
            p.roots
                .fill(&String::from_utf8_lossy(&entry.stderr), spelling),
        ) else {
            return Ok(None);
        };
        // Outputs are in place before cargo reads the artifact notifications.
        let _ = std::io::stdout().write_all(stdout.as_bytes());
        let _ = std::io::stderr().write_all(stderr.as_bytes());
        self.event.restore_ms = ms(restore_start.elapsed());
        // Usually nothing: restored outputs carry their hash in an attribute.
        if let Err(e) = store.flush_stat_cache(stat) {
            tracing::debug!("cannot update the stat cache: {e}");
        }
        self.event.result = outcome;
        self.event.cache_key = Some(entry.key.clone());
        self.event.compile_time_ms = entry.compile_ms;
        self.event.size = entry.size();
        self.event.reflinked_bytes = stats.reflinked;
        self.event.hardlinked_bytes = stats.hardlinked;
        self.event.copied_bytes = stats.copied;
        install_build_script_launcher(p);
        tracing::debug!(
            "{outcome:?}: entry {} restored ({} outputs; reflinked {} B, hardlinked {} B, copied {} B)",
            entry.key,
            entry.outputs.len(),
            stats.reflinked,
            stats.hardlinked,
            stats.copied
        );
        Ok(Some(0))
    }

    fn compile_and_store(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        inv_key: &str,
        key_fields: Vec<KeyField>,
    ) -> Result<i32, Fault> {
        // rustc must never write through a hardlink into a blob: clear its outputs first.
        for name in &p.output_names {
            restore::remove_if_present(&p.out_dir.join(name))
                .map_err(io_fault(format!("removing old output {name}")))?;
        }
        let cargo_wants_depinfo = p.args.emits.iter().any(|e| e.kind == EmitKind::DepInfo);
        let depinfo_name = outputs::depinfo_name(&p.args);
        let depinfo_path = if cargo_wants_depinfo {
            p.out_dir.join(&depinfo_name)
        } else {
            store.dir().join("tmp").join(format!(
                "depinfo.{}.{:x}.d",
                std::process::id(),
                fsutil::unique_suffix()
            ))
        };
        let compile_args = self.compile_args(p, (!cargo_wants_depinfo).then_some(&depinfo_path));
        let wall_start = SystemTime::now();
        let compiled = compile::run_captured(&self.inv.compiler_chain, &compile_args)
            .map_err(io_fault(format!("running {}", self.inv.rustc().display())))?;
        self.rustc_ran = Some(compiled.exit_code);
        self.event.compiler_runs = 1;
        self.event.result = Outcome::Miss;
        self.event.compile_time_ms = ms(compiled.elapsed);
        if compiled.exit_code != 0 {
            if !cargo_wants_depinfo {
                let _ = std::fs::remove_file(&depinfo_path);
            }
            return Ok(compiled.exit_code);
        }
        let crate_name = p.args.crate_name.as_deref().unwrap_or_default();
        crate::testhook::crash_point("after_compile", crate_name);

        let store_start = Instant::now();
        let depinfo_text = std::fs::read_to_string(&depinfo_path)
            .map_err(io_fault(format!("reading {}", depinfo_path.display())));
        if !cargo_wants_depinfo {
            let _ = std::fs::remove_file(&depinfo_path);
        }
        let depinfo_text = depinfo_text?;
        let dep = DepInfo::parse(&depinfo_text);

        let mut produced = Vec::new();
        for name in &p.output_names {
            let path = p.out_dir.join(name);
            if let Ok(meta) = std::fs::metadata(&path) {
                produced.push((name.clone(), path, meta));
            }
        }
        let Some(manifest) = build_manifest(&dep, p, stat, wall_start, &produced)? else {
            tracing::debug!("an input changed while rustc ran; not storing");
            return Ok(0);
        };

        let mut stored = Vec::new();
        for (name, path, meta) in &produced {
            use std::os::unix::fs::PermissionsExt;
            let linkable = outputs::is_linkable(
                name,
                p.args.crate_name.as_deref().unwrap_or_default(),
                &self.event.crate_types,
            );
            let (blob, size) = store.ingest_blob(path, linkable)?;
            crate::testhook::crash_point("after_blob", crate_name);
            let _ = stat.record_trusted(path, &blob);
            let _ = stat.record_trusted(&store.blob_path(&blob), &blob);
            stored.push(StoredOutput {
                name: name.clone(),
                blob,
                mode: meta.permissions().mode(),
                size,
            });
        }
        let spelling = stderr_spelling(&p.args);
        let entry = Entry {
            key: manifest.entry_key(inv_key),
            invocation_key: inv_key.to_owned(),
            crate_name: p.args.crate_name.clone().unwrap_or_default(),
            crate_version: self.event.crate_version.clone(),
            crate_types: self.event.crate_types.clone(),
            outputs: stored,
            stdout: p
                .roots
                .template(&String::from_utf8_lossy(&compiled.stdout), spelling)
                .into_owned()
                .into_bytes(),
            stderr: p
                .roots
                .template(&String::from_utf8_lossy(&compiled.stderr), spelling)
                .into_owned()
                .into_bytes(),
            depinfo: cargo_wants_depinfo.then(|| {
                (
                    depinfo_name,
                    p.roots
                        .template(&depinfo_text, Spelling::DepInfo)
                        .into_owned(),
                )
            }),
            compile_ms: ms(compiled.elapsed),
            key_fields,
        };
        crate::testhook::crash_point("before_commit", crate_name);
        let mut committed = store.commit_entry(&entry, &manifest, stat);
        if let Err(StoreError::BlobVanished(blob)) = &committed {
            // A gc deleted a blob this store found already in place; place the outputs
            // again (copies this time) and commit once more.
            tracing::debug!("blob {blob} vanished before the commit; storing again");
            for (_, path, _) in &produced {
                store.ingest_blob(path, false)?;
            }
            committed = store.commit_entry(&entry, &manifest, stat);
        }
        committed?;
        crate::testhook::crash_point("after_commit", crate_name);
        tracing::debug!(
            "miss: stored entry {} ({} outputs, {} B) with {} hashed input files",
            entry.key,
            entry.outputs.len(),
            entry.size(),
            manifest.files.len()
        );
        for f in &manifest.files {
            tracing::debug!("  hashed {} = {}", f.path, f.hash);
        }
        for o in &entry.outputs {
            tracing::debug!("  stored {} ({} B) as blob {}", o.name, o.size, o.blob);
        }
        // Past the size limit, a detached `kache gc --auto` makes room; the build never waits.
        crate::store::maintenance::maybe_start_background_gc(store, self.config.max_size);
        self.event.cache_key = Some(entry.key.clone());
        self.event.size = entry.size();
        self.event.store_ms = ms(store_start.elapsed());
        install_build_script_launcher(p);
        Ok(0)
    }

    /// rustc's arguments for the real compile: the original ones (less `-C incremental` when
    /// stripping), our path remapping first so the user's own remaps still win, and a dep-info
    /// request when cargo did not make one.
    fn compile_args(&self, p: &Prepared, extra_depinfo: Option<&PathBuf>) -> Vec<OsString> {
        let strip = self.config.incremental == IncrementalMode::Strip;
        let mut dropped = vec![false; p.args.tokens.len()];
        if strip {
            for &i in &p.args.incremental_items {
                for t in p.args.items[i].span.clone() {
                    dropped[t] = true;
                }
            }
        }
        let mut out: Vec<OsString> = p.roots.remap_args().into_iter().map(Into::into).collect();
        out.extend(
            p.args
                .tokens
                .iter()
                .zip(&dropped)
                .filter(|(_, d)| !**d)
                .map(|(t, _)| OsString::from(t)),
        );
        if let Some(path) = extra_depinfo {
            let mut a = OsString::from("--emit=dep-info=");
            a.push(path);
            out.push(a);
        }
        out
    }
}

/// After a build script of a package whose runs are cached was compiled or restored, puts the
/// launcher in its place so cargo's run of it goes through kache (`src/buildscript/`). Any
/// failure leaves the script as rustc wrote it: the run is then simply not cached.
fn install_build_script_launcher(p: &Prepared) {
    use crate::buildscript::{self, Scope, launcher};
    if p.args.crate_name.as_deref() != Some("build_script_build") {
        return;
    }
    let scope = Scope::from_env(&|name| std::env::var(name).ok());
    let Some(package_dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return;
    };
    if !buildscript::is_cached_package(scope, &package_dir, buildscript::cargo_home().as_deref()) {
        return;
    }
    let (Some(script), Some(program)) = (
        launcher::script_output(&p.output_names),
        launcher::launcher_program(),
    ) else {
        return;
    };
    if let Err(e) = launcher::install(&program, &p.out_dir, script) {
        tracing::debug!("cannot install the build-script launcher: {e}");
    }
}

/// Records what the compile read. `None` when an input changed after rustc started (the
/// result might not match the recorded contents, so it is not stored).
fn build_manifest(
    dep: &DepInfo,
    p: &Prepared,
    stat: &mut StatCache,
    compile_start: SystemTime,
    produced: &[(String, PathBuf, std::fs::Metadata)],
) -> Result<Option<Manifest>, Fault> {
    let mut files = Vec::with_capacity(dep.files.len());
    for f in &dep.files {
        let path = absolute(&p.cwd, Path::new(f));
        let meta = std::fs::metadata(&path).map_err(io_fault(format!("input {f}")))?;
        if meta.modified().is_ok_and(|m| m >= compile_start) {
            return Ok(None);
        }
        let hash = stat
            .hash_file(&path)
            .map_err(io_fault(format!("hashing {f}")))?;
        let keyed = if Path::new(f).is_absolute() {
            p.roots.relativize(f).into_owned()
        } else {
            f.clone()
        };
        files.push(ManifestFile { path: keyed, hash });
    }
    let mut env = Vec::with_capacity(dep.env.len());
    for (name, value) in &dep.env {
        let relative = value.as_deref().map(|v| p.roots.relativize(v).into_owned());
        // A path-valued variable read with `env!` is embedded in the artifact as is; then the
        // checkout's location matters and the value must match exactly.
        let absolute = match (value, &relative) {
            (Some(v), Some(r)) if v != r => embedded_in(v, produced),
            _ => false,
        };
        env.push(ManifestEnv {
            name: name.clone(),
            value: if absolute { value.clone() } else { relative },
            absolute,
        });
    }
    Ok(Some(Manifest { files, env }))
}

fn embedded_in(needle: &str, produced: &[(String, PathBuf, std::fs::Metadata)]) -> bool {
    produced.iter().any(|(_, path, _)| {
        std::fs::read(path)
            .map(|bytes| memchr::memmem::find(&bytes, needle.as_bytes()).is_some())
            // Unreadable: assume the worst, which only costs relocation hits.
            .unwrap_or(true)
    })
}

fn stderr_spelling(args: &RustcArgs) -> Spelling {
    let json = args
        .items
        .iter()
        .any(|i| i.flag == "--error-format" && i.value.as_deref() == Some("json"));
    if json {
        Spelling::Json
    } else {
        Spelling::Plain
    }
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    }
}
