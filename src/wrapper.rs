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

use crate::compile;
use crate::config::{Config, IncrementalMode};
use crate::events::{self, BuildEvent, Outcome};
use crate::frontend::{self, Fault, Front, Hit, io_fault, ms, plain};
use crate::fsutil::{self, absolute};
use crate::invocation::outputs;
use crate::invocation::{CompilerFamily, EmitKind, Invocation, PassthroughReason, RustcArgs};
use crate::key::depinfo::DepInfo;
use crate::key::invocation_key::{KeyInputs, invocation_key};
use crate::key::manifest::{Manifest, ManifestEnv, ManifestFile};
use crate::key::roots::{RootSources, Roots, Spelling};
use crate::key::{FileHasher, KeyField, env as keyenv, toolchain};
use crate::restore;
use crate::store::{Entry, StatCache, Store, StoreError, StoredOutput};

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
    let mut event = BuildEvent {
        schema: events::SCHEMA,
        ts: events::now_ms(),
        crate_version: std::env::var("CARGO_PKG_VERSION").ok(),
        ..BuildEvent::default()
    };
    let family = inv
        .compiler_chain
        .first()
        .and_then(|c| CompilerFamily::classify(c.as_os_str()))
        .unwrap_or(CompilerFamily::Rust);
    let code = match family {
        CompilerFamily::Rust => {
            let mut w = Wrapper {
                inv: &inv,
                config: &config,
                crate_version: event.crate_version.clone(),
                trace: Trace::default(),
                outputs: Vec::new(),
            };
            let (done, code) = w.run();
            w.trace.record(done, &mut event);
            code
        }
        CompilerFamily::C => {
            event.compiler = events::Compiler::C;
            crate::cc::run(&inv, &config, &mut event)
        }
        CompilerFamily::Other => {
            event.compiler = events::Compiler::Other;
            event.passthrough_reason = Some("not_a_compiler".into());
            event.compiler_runs = 1;
            plain(&inv)
        }
    };
    event.exit_code = code;
    frontend::record(&config.dir, &mut event, started);
    code
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

/// What one rustc invocation came to. The steps return it; only [`Trace::record`] turns it
/// into the event.
enum Done {
    /// A stored entry was restored; rustc did not run.
    Hit(Hit),
    /// rustc ran ([`Trace::compiled`]); its outputs were stored when this is set (not when it
    /// failed, or an input changed while it ran).
    Compiled(Option<Stored>),
    /// Not cacheable: rustc ran as given.
    Passthrough(PassthroughReason),
    /// A fault inside kache (the warning given): rustc ran as given, unless it already had.
    Degraded(String),
}

/// A miss stored as a new entry.
struct Stored {
    entry_key: String,
    size: u64,
    store_ms: f64,
}

/// rustc's captured run.
#[derive(Clone, Copy)]
struct Compiled {
    exit_code: i32,
    compile_ms: f64,
}

/// What the invocation learned on the way, reported whatever it came to: a fault late in the
/// pipeline still reports the key time, the bytes downloaded and rustc's run.
#[derive(Default)]
struct Trace {
    crate_name: Option<String>,
    crate_types: Vec<String>,
    key_ms: f64,
    seen: frontend::Seen,
    /// Set once rustc has run: a later fault must not run it again.
    compiled: Option<Compiled>,
}

impl Trace {
    /// The one place a rustc invocation's event is filled in.
    fn record(self, done: Done, event: &mut BuildEvent) {
        event.crate_name = self.crate_name;
        event.crate_types = self.crate_types;
        event.key_ms = self.key_ms;
        self.seen.report(event);
        if let Some(c) = self.compiled {
            event.compiler_runs = 1;
            event.compile_time_ms = c.compile_ms;
        }
        match done {
            Done::Hit(hit) => hit.report(event),
            Done::Compiled(stored) => {
                event.result = Outcome::Miss;
                if let Some(s) = stored {
                    event.cache_key = Some(s.entry_key);
                    event.size = s.size;
                    event.store_ms = s.store_ms;
                }
            }
            Done::Passthrough(reason) => {
                event.result = Outcome::Passthrough;
                event.passthrough_reason = Some(reason.to_string());
                event.compiler_runs = 1;
            }
            Done::Degraded(warning) => {
                event.result = Outcome::Error;
                event.warning = Some(warning);
                event.compiler_runs = 1;
            }
        }
    }
}

struct Wrapper<'a> {
    inv: &'a Invocation,
    config: &'a Config,
    crate_version: Option<String>,
    trace: Trace,
    /// The files this invocation's rustc writes, once known: a fallback to plain rustc
    /// removes them first, so rustc always finds a writable place (a restore may have stopped
    /// halfway, or an older kache may have left read-only links to its blobs).
    outputs: Vec<PathBuf>,
}

/// The environment the key reads, read in one place (a test can build one by hand).
#[derive(Debug, Default)]
struct KeyEnv {
    rustup_toolchain: Option<String>,
    /// `CARGO_HOME`, else `~/.cargo`: a root.
    cargo_home: Option<PathBuf>,
    /// The package being compiled: a root.
    manifest_dir: Option<PathBuf>,
    /// The keyed variables ([`keyenv::keyed_vars`]).
    keyed: Vec<(String, Option<String>)>,
    path_var: Option<String>,
    /// Where clippy starts looking for its configuration (`CLIPPY_CONF_DIR`, else
    /// `CARGO_MANIFEST_DIR`).
    driver_conf_dir: Option<PathBuf>,
}

impl KeyEnv {
    fn from_env(key_env_vars: &[String]) -> Self {
        let var_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        KeyEnv {
            rustup_toolchain: std::env::var("RUSTUP_TOOLCHAIN").ok(),
            cargo_home: var_path("CARGO_HOME")
                .or_else(|| var_path("HOME").map(|h| h.join(".cargo"))),
            manifest_dir: var_path("CARGO_MANIFEST_DIR"),
            keyed: keyenv::keyed_vars(std::env::vars(), key_env_vars),
            path_var: std::env::var("PATH").ok(),
            driver_conf_dir: var_path("CLIPPY_CONF_DIR").or_else(|| var_path("CARGO_MANIFEST_DIR")),
        }
    }
}

/// What an invocation needs once it is known to be cacheable.
struct Prepared {
    args: RustcArgs,
    cwd: PathBuf,
    out_dir: PathBuf,
    output_names: Vec<String>,
    roots: Roots,
}

impl Wrapper<'_> {
    /// What the invocation came to, and the exit code for the process.
    fn run(&mut self) -> (Done, i32) {
        let cwd = match std::env::current_dir() {
            Ok(c) => c,
            Err(e) => return self.degrade(io_fault("current directory")(e)),
        };
        let args = match RustcArgs::parse(&self.inv.raw_args, &cwd) {
            Ok(a) => a,
            Err(reason) => return self.passthrough(reason),
        };
        self.trace.crate_name = args.crate_name.clone();
        self.trace.crate_types = args
            .effective_crate_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cache_incremental = self.config.incremental != IncrementalMode::Passthrough;
        if let Some(reason) = args.passthrough_reason(cache_incremental) {
            return self.passthrough(reason);
        }
        match self.cached(args, cwd) {
            Ok(Done::Passthrough(reason)) => self.passthrough(reason),
            Ok(done) => {
                let code = match &done {
                    Done::Compiled(_) => self.trace.compiled.map_or(0, |c| c.exit_code),
                    _ => 0,
                };
                (done, code)
            }
            Err(fault) => {
                fault.heal(&self.config.dir);
                self.degrade(fault)
            }
        }
    }

    fn passthrough(&mut self, reason: PassthroughReason) -> (Done, i32) {
        tracing::debug!("passthrough: {reason}");
        (Done::Passthrough(reason), plain(self.inv))
    }

    /// A fault inside kache: one warning line, then rustc as if kache were not there.
    fn degrade(&mut self, fault: Fault) -> (Done, i32) {
        let message = frontend::one_line(&fault);
        eprintln!("kache: warning: {message}; compiling without the cache");
        if let Some(c) = self.trace.compiled {
            return (Done::Degraded(message), c.exit_code);
        }
        for path in &self.outputs {
            if let Err(e) = restore::remove_if_present(path) {
                tracing::debug!("cannot remove {}: {e}", path.display());
            }
        }
        (Done::Degraded(message), plain(self.inv))
    }

    /// key → lookup (local, then remote) → restore, or compile → store. A passthrough found on
    /// the way is returned for [`Wrapper::run`] to run.
    fn cached(&mut self, args: RustcArgs, cwd: PathBuf) -> Result<Done, Fault> {
        let key_start = Instant::now();
        let store = Store::open(&self.config.dir)?;
        let key_env = KeyEnv::from_env(&self.config.key_env_vars);
        let toolchain = toolchain::identify(
            self.inv.rustc(),
            store.dir(),
            key_env.rustup_toolchain.as_deref(),
        )?;
        let target = args
            .target
            .as_deref()
            .map(|t| t.trim_end_matches(".json"))
            .unwrap_or(&toolchain.host)
            .to_owned();
        let output_names = match outputs::expected_outputs(&args, &target) {
            Ok(n) => n,
            Err(reason) => return Ok(Done::Passthrough(reason)),
        };
        let out_dir = absolute(&cwd, args.out_dir.as_deref().unwrap_or(Path::new(".")));
        self.outputs = output_names.iter().map(|n| out_dir.join(n)).collect();
        let roots = Roots::discover(&RootSources {
            cwd: &cwd,
            args: &args,
            manifest_dir: key_env.manifest_dir.as_deref(),
            cargo_home: key_env.cargo_home.as_deref(),
            sysroot: Some(&toolchain.sysroot),
        });
        let mut stat = StatCache::new(store.conn());
        let (inv_key, key_fields) = invocation_key(
            &KeyInputs {
                args: &args,
                toolchain: &toolchain,
                drivers: self.inv.driver_wrappers(),
                roots: &roots,
                cwd: &cwd,
                env: &key_env.keyed,
                path_var: key_env.path_var.as_deref(),
                driver_conf_dir: key_env.driver_conf_dir.as_deref(),
                incremental: !args.incremental_items.is_empty()
                    && self.config.incremental == IncrementalMode::Cache,
            },
            &mut stat,
        )?;
        self.trace.key_ms = ms(key_start.elapsed());
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

        let mut matches = frontend::matches_here(&prepared.roots, &prepared.cwd);
        let crate_types = &self.trace.crate_types;
        let mut restore = |entry: Entry, outcome, stat: &mut StatCache, warning: &mut _| {
            restore_hit(
                &store,
                stat,
                &prepared,
                crate_types,
                &entry,
                outcome,
                warning,
            )
        };
        let lookup = frontend::Lookup {
            config: self.config,
            store: &store,
            inv_key: &inv_key,
            system_dirs: &[],
            front: Front::Compile,
        };
        let looked = frontend::lookup(
            &lookup,
            &mut stat,
            &mut matches,
            &mut restore,
            &mut self.trace.seen,
        );
        let (hit, remote) = looked?;
        if let Some(hit) = hit {
            if hit.outcome == Outcome::RemoteHit {
                // Past the size limit, a detached `kache gc --auto` makes room.
                crate::store::maintenance::maybe_start_background_gc(&store, self.config.max_size);
            }
            return Ok(Done::Hit(hit));
        }
        let stored = self.compile_and_store(&store, &mut stat, &prepared, &inv_key, key_fields)?;
        if let Some(s) = &stored {
            frontend::queue_upload(remote.as_ref(), store.dir(), &s.entry_key, &inv_key);
        }
        Ok(Done::Compiled(stored))
    }

    /// Runs rustc (recorded in the trace) and stores its outputs; `None` when nothing was
    /// stored (rustc failed, or an input changed while it ran).
    fn compile_and_store(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        inv_key: &str,
        key_fields: Vec<KeyField>,
    ) -> Result<Option<Stored>, Fault> {
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
        self.trace.compiled = Some(Compiled {
            exit_code: compiled.exit_code,
            compile_ms: ms(compiled.elapsed),
        });
        if compiled.exit_code != 0 {
            if !cargo_wants_depinfo {
                let _ = std::fs::remove_file(&depinfo_path);
            }
            return Ok(None);
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
            return Ok(None);
        };

        let mut stored = Vec::new();
        for (name, path, meta) in &produced {
            use std::os::unix::fs::PermissionsExt;
            let linkable = outputs::is_linkable(
                name,
                p.args.crate_name.as_deref().unwrap_or_default(),
                &self.trace.crate_types,
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
            crate_version: self.crate_version.clone(),
            crate_types: self.trace.crate_types.clone(),
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
        let stored = Stored {
            entry_key: entry.key.clone(),
            size: entry.size(),
            store_ms: ms(store_start.elapsed()),
        };
        install_build_script_launcher(p);
        Ok(Some(stored))
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

/// Puts a stored entry in place and replays rustc's output. `None` when the entry turned
/// out to be damaged (it is dropped, and the invocation compiles).
fn restore_hit(
    store: &Store,
    stat: &mut StatCache,
    p: &Prepared,
    crate_types: &[String],
    entry: &Entry,
    outcome: Outcome,
    warning: &mut Option<String>,
) -> Result<Option<Hit>, Fault> {
    let restore_start = Instant::now();
    let depinfo_name = outputs::depinfo_name(&p.args);
    let crate_name = p.args.crate_name.as_deref().unwrap_or_default();
    let expected = restore::Expected {
        outputs: &p.output_names,
        depinfo: &depinfo_name,
        links: Some((crate_name, crate_types)),
    };
    let linked = match restore::restore_entry(store, entry, &p.out_dir, expected, &p.roots, stat) {
        Ok(s) => s,
        Err(e) => {
            // Self-healing: a damaged entry is dropped and the invocation compiles.
            frontend::drop_unrestorable(store, &entry.key, e, Front::Compile, warning)?;
            return Ok(None);
        }
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
    let restore_ms = ms(restore_start.elapsed());
    // Usually nothing: restored outputs carry their hash in an attribute.
    if let Err(e) = store.flush_stat_cache(stat) {
        tracing::debug!("cannot update the stat cache: {e}");
    }
    install_build_script_launcher(p);
    tracing::debug!(
        "{outcome:?}: entry {} restored ({} outputs; reflinked {} B, hardlinked {} B, copied {} B)",
        entry.key,
        entry.outputs.len(),
        linked.reflinked,
        linked.hardlinked,
        linked.copied
    );
    Ok(Some(Hit {
        outcome,
        entry_key: entry.key.clone(),
        compile_ms: entry.compile_ms,
        size: entry.size(),
        linked,
        restore_ms,
    }))
}

/// After a build script of a package whose runs are cached was compiled or restored, puts the
/// launcher in its place so cargo's run of it goes through kache (`src/buildscript/`). Any
/// failure leaves the script as rustc wrote it: the run is then simply not cached.
fn install_build_script_launcher(p: &Prepared) {
    use crate::buildscript::{self, Scope, launcher};
    let Some(crate_name) = p.args.crate_name.as_deref() else {
        return;
    };
    if !launcher::is_build_script(crate_name, &p.out_dir) {
        return;
    }
    let scope = Scope::from_env(&|name| std::env::var(name).ok());
    let Some(package_dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return;
    };
    if !buildscript::is_cached_package(scope, &package_dir, buildscript::cargo_home().as_deref()) {
        return;
    }
    let (Some(script), Some((program, kache))) = (
        launcher::script_output(&p.output_names, crate_name),
        launcher::launcher_program(),
    ) else {
        return;
    };
    if let Err(e) = launcher::install(&program, &kache, &p.out_dir, script) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::RestoreStats;

    fn trace() -> Trace {
        Trace {
            crate_name: Some("demo".into()),
            crate_types: vec!["lib".into()],
            key_ms: 1.0,
            seen: frontend::Seen {
                lookup_ms: 2.0,
                downloaded_bytes: 7,
                warning: Some("remote down".into()),
            },
            compiled: None,
        }
    }

    #[test]
    fn a_fault_after_rustc_ran_reports_its_run_and_the_fault() {
        let mut t = trace();
        t.compiled = Some(Compiled {
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
        t.compiled = Some(Compiled {
            exit_code: 1,
            compile_ms: 5.0,
        });
        let mut e = BuildEvent::default();
        t.record(Done::Compiled(None), &mut e);
        assert_eq!(e.result, Outcome::Miss);
        assert_eq!((e.compiler_runs, e.cache_key), (1, None));
    }

    #[test]
    fn a_passthrough_names_its_reason() {
        let mut e = BuildEvent::default();
        trace().record(Done::Passthrough(PassthroughReason::Probe), &mut e);
        assert_eq!(e.result, Outcome::Passthrough);
        assert_eq!(e.compiler_runs, 1);
        assert_eq!(
            e.passthrough_reason,
            Some(PassthroughReason::Probe.to_string())
        );
    }
}
