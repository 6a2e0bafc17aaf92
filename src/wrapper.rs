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
use crate::frontend::{
    self, Done, Fault, Front, Hit, Kept, Ran, Stored, Trace, io_fault, ms, plain,
};
use crate::fsutil::{self, absolute};
use crate::invocation::rewrite::compile_args;
use crate::invocation::{
    CompilerFamily, EmitKind, Invocation, PassthroughReason, RustcArgs, outputs,
};
use crate::key::depinfo::DepInfo;
use crate::key::env::KeyEnv;
use crate::key::invocation_key::{KeyInputs, invocation_key, resolve_program};
use crate::key::manifest::Manifest;
use crate::key::roots::{RootSources, Roots, Spelling};
use crate::key::{KeyField, toolchain};
use crate::probe::ProbeMemo;
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
            let key_env = KeyEnv::from_env(&config.key_env_vars);
            let mut w = Wrapper {
                inv: &inv,
                config: &config,
                key_env: &key_env,
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
            let (trace, done, code) = crate::cc::run(&inv, &config, event.crate_version.clone());
            trace.record(done, &mut event);
            code
        }
        CompilerFamily::Other => {
            event.compiler = events::Compiler::Other;
            let code = plain(&inv);
            Trace::default().record(Done::Passthrough("not_a_compiler".into()), &mut event);
            code
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

struct Wrapper<'a> {
    inv: &'a Invocation,
    config: &'a Config,
    /// The environment the key reads.
    key_env: &'a KeyEnv,
    crate_version: Option<String>,
    trace: Trace,
    /// The files this invocation's rustc writes, once known: a fallback to plain rustc
    /// removes them first, so rustc always finds a writable place (a restore may have stopped
    /// halfway, or an older kache may have left read-only links to its blobs).
    outputs: Vec<PathBuf>,
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
        let steps = self.steps();
        frontend::conclude(
            self.inv,
            self.trace.ran,
            &self.config.dir,
            steps,
            &self.outputs,
        )
    }

    /// parse, then [`Wrapper::cached`]. A passthrough is returned, not run.
    fn steps(&mut self) -> Result<Done, Fault> {
        let cwd = std::env::current_dir().map_err(io_fault("current directory"))?;
        let args = match RustcArgs::parse(&self.inv.raw_args, &cwd) {
            Ok(a) => a,
            Err(reason) => return Ok(Done::Passthrough(reason.to_string())),
        };
        self.trace.crate_name = args.crate_name.clone();
        self.trace.crate_types = args
            .effective_crate_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cache_incremental = self.config.incremental != IncrementalMode::Passthrough;
        if let Some(reason) = args.passthrough_reason(cache_incremental) {
            if reason == PassthroughReason::Probe
                && let Some(memo) =
                    ProbeMemo::for_probe(self.inv, &args, &self.config.dir, self.key_env, &cwd)
            {
                return self.probe(&memo);
            }
            return Ok(Done::Passthrough(reason.to_string()));
        }
        self.cached(args, cwd)
    }

    /// A probe: its remembered answer, else rustc's (passed through and remembered).
    fn probe(&mut self, memo: &ProbeMemo) -> Result<Done, Fault> {
        if memo.replay() {
            return Ok(Done::Probe);
        }
        let run = compile::run_captured(&self.inv.compiler_chain, &self.inv.raw_args)
            .map_err(io_fault(format!("running {}", self.inv.rustc().display())))?;
        self.trace.ran = Some(Ran {
            exit_code: run.exit_code,
            compile_ms: ms(run.elapsed),
        });
        if run.exit_code == 0 {
            memo.remember(&run.stdout, &run.stderr);
        }
        Ok(Done::Probe)
    }

    /// key → lookup (local, then remote) → restore, or compile → store. A passthrough found on
    /// the way is returned, not run.
    fn cached(&mut self, args: RustcArgs, cwd: PathBuf) -> Result<Done, Fault> {
        let key_start = Instant::now();
        let store = Store::open(&self.config.dir)?;
        let key_env = self.key_env;
        // A bare name (`kache rustc …` outside cargo, which passes a path) is found on `PATH`
        // as running it finds it: the identity is memoised by the file's stamp, and hashing
        // the sysroot again on every call would cost a fifth of a second each.
        let rustc = resolve_program(self.inv.rustc(), &cwd, key_env.path_var.as_deref())
            .unwrap_or_else(|| self.inv.rustc().to_owned());
        let toolchain =
            toolchain::identify(&rustc, store.dir(), key_env.rustup_toolchain.as_deref())?;
        let target = args
            .target
            .as_deref()
            .map(|t| t.trim_end_matches(".json"))
            .unwrap_or(&toolchain.host)
            .to_owned();
        let output_names = match outputs::expected_outputs(&args, &target) {
            Ok(n) => n,
            Err(reason) => return Ok(Done::Passthrough(reason.to_string())),
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
            return Ok(Done::Hit(hit));
        }
        let stored = self.compile_and_store(&store, &mut stat, &prepared, &inv_key, key_fields)?;
        if let Some(s) = &stored {
            frontend::queue_upload(remote.as_ref(), store.dir(), &s.entry_key, &inv_key);
        }
        Ok(Done::Ran(stored.map_or(Kept::Not, Kept::Stored)))
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
        let compile_args = compile_args(
            &p.args,
            p.roots.remap_args(),
            self.config.incremental == IncrementalMode::Strip,
            (!cargo_wants_depinfo).then_some(&depinfo_path),
        );
        let wall_start = SystemTime::now();
        let compiled = compile::run_captured(&self.inv.compiler_chain, &compile_args)
            .map_err(io_fault(format!("running {}", self.inv.rustc().display())))?;
        self.trace.ran = Some(Ran {
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
        let produced_paths: Vec<PathBuf> =
            produced.iter().map(|(_, path, _)| path.clone()).collect();
        let recorded = Manifest::record(&dep, &p.cwd, &p.roots, stat, wall_start, &produced_paths);
        let Some(manifest) = recorded? else {
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

    /// Compiles `lib.rs` into `out` through the wrapper, with the key reading `key_env` (fed
    /// by hand, not this process's environment).
    fn compile(cache: &Path, src: &Path, out: &Path, key_env: &KeyEnv) -> (Done, i32) {
        let cache = cache.to_string_lossy().into_owned();
        let config = Config::load(&|name| match name {
            "KACHE_DIR" => Some(cache.clone()),
            "KACHE_CONFIG" => Some("/dev/null".into()),
            _ => None,
        })
        .expect("config");
        let words = [
            "rustc".as_ref(),
            "--crate-name".as_ref(),
            "fed".as_ref(),
            "--crate-type".as_ref(),
            "lib".as_ref(),
            "--edition=2021".as_ref(),
            src.as_os_str(),
            "--out-dir".as_ref(),
            out.as_os_str(),
        ];
        let inv = Invocation::from_wrapper_args(words.iter().map(OsString::from).collect())
            .expect("a compiler");
        let mut w = Wrapper {
            inv: &inv,
            config: &config,
            key_env,
            crate_version: None,
            trace: Trace::default(),
            outputs: Vec::new(),
        };
        w.run()
    }

    #[test]
    fn the_key_reads_the_environment_it_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
        std::fs::create_dir(&out).expect("mkdir");
        let src = dir.path().join("lib.rs");
        std::fs::write(&src, "pub fn f() -> u32 { 7 }\n").expect("write");
        let env = |value: &str| KeyEnv {
            manifest_dir: Some(dir.path().to_owned()),
            keyed: vec![("CARGO_PKG_NAME".into(), Some(value.into()))],
            path_var: std::env::var("PATH").ok(),
            ..KeyEnv::default()
        };
        let first = compile(&cache, &src, &out, &env("fed"));
        assert!(
            matches!(first, (Done::Ran(Kept::Stored(_)), 0)),
            "{first:?}"
        );
        // Without `--emit` rustc writes its default (`link`), with kache's dep-info request too.
        assert!(out.join("libfed.rlib").is_file());
        let same = compile(&cache, &src, &out, &env("fed"));
        assert!(
            matches!(&same, (Done::Hit(h), 0) if h.outcome == Outcome::LocalHit),
            "{same:?}"
        );
        let other = compile(&cache, &src, &out, &env("other"));
        assert!(
            matches!(other, (Done::Ran(Kept::Stored(_)), 0)),
            "{other:?}"
        );
        assert!(out.join("libfed.rlib").is_file());
    }
}
