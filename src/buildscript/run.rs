//! One build-script run handed over by the launcher: restore a stored run (hit), or run the
//! real script, passing its output through, and record it (miss).
//!
//! A run is recorded only if the script succeeded, `OUT_DIR` was empty when it started, no
//! recorded input changed while it ran, every path it declared exists, `OUT_DIR` holds only
//! regular files, directories and links that stay inside it
//! ([`super::restore::link_stays_inside`]; read, never followed), and of the paths its
//! stdout names, none outside the target dir was written while it ran and those under the
//! target dir outside `OUT_DIR` hold only regular files it wrote (which are recorded with
//! `OUT_DIR`'s and restored at the same place in the target dir).
//! Every fault inside kache before the script started degrades to running it exactly as
//! cargo would (`exec`, one warning line); a fault after it ran keeps its exit code; a
//! damaged stored run is dropped and the script runs and is stored again. Must not install
//! launchers.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use super::key::{self, Budget, Declared, NotRecorded, Refused, RunInputs, TreeHasher};
use super::{Scope, cargo_home, is_cached_package};
use crate::config::Config;
use crate::events::{self, BuildEvent, Outcome, RUN_CRATE_TYPE};
use crate::frontend::{self, Done, Fault, Front, Hit, Kept, Ran, Stored, Trace, io_fault, ms};
use crate::fsutil;
use crate::key::manifest::Manifest;
use crate::key::roots::{Roots, Spelling};
use crate::restore::RestoreStats;
use crate::store::{Entry, StatCache, Store, StoredOutput};

use super::restore::{EMPTY_DIR, SYMLINK, TEMPLATED};

/// Why a run is not stored when `OUT_DIR` holds a link that could lead out of it.
const LINK_LEAVES_OUT_DIR: &str = "out_dir_link_leaves_out_dir";

/// Set by the launcher: the real script's path.
pub const REAL_VAR: &str = "KACHE_BUILD_SCRIPT_REAL";
/// Set by the launcher: where kache says how far it got (see `src/bin/kache-launcher.rs`).
pub(crate) const MARKER_VAR: &str = "KACHE_BUILD_SCRIPT_MARKER";
/// Appended to the package name to name a run in events and entries.
pub(crate) const RUN_NAME_SUFFIX: &str = ":build-script";

/// Runs a handed-over build script; `args[0]` is the `argv[0]` cargo used. Returns the exit
/// code, unless it replaced itself with the script.
pub fn main(args: Vec<OsString>) -> i32 {
    let started = Instant::now();
    let Some(real) = std::env::var_os(REAL_VAR).map(PathBuf::from) else {
        eprintln!("kache: {REAL_VAR} is not set; this mode is for kache's build-script launcher");
        return 2;
    };
    let marker = std::env::var_os(MARKER_VAR).map(PathBuf::from);
    // Nothing kache starts (the script, the upload worker, a background gc) may see them:
    // a kache started with them set would take itself for a launcher's hand-over.
    // SAFETY: first thing in the process, before any thread exists.
    unsafe {
        std::env::remove_var(REAL_VAR);
        std::env::remove_var(MARKER_VAR);
    }
    let mut args = args.into_iter();
    let argv0 = args.next().unwrap_or_else(|| real.clone().into_os_string());
    let crate_version = std::env::var("CARGO_PKG_VERSION").ok();
    let mut event = BuildEvent {
        schema: events::SCHEMA,
        ts: events::now_ms(),
        crate_version: crate_version.clone(),
        ..BuildEvent::default()
    };
    let mut run = ScriptRun {
        real,
        argv0,
        args: args.collect(),
        marker,
        crate_version,
        trace: Trace {
            // Not the package's own name: `kache explain <pkg>:build-script` then explains
            // the run, not the package's library compile.
            crate_name: std::env::var("CARGO_PKG_NAME")
                .ok()
                .map(|p| format!("{p}{RUN_NAME_SUFFIX}")),
            crate_types: vec![RUN_CRATE_TYPE.to_owned()],
            ..Trace::default()
        },
        restoring: false,
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kache: warning: {e}; running the build script without the cache");
            return run.exec_plain();
        }
    };
    if config.disabled {
        return run.exec_plain();
    }
    // As for compiles: a cache dir someone else could have written is not used at all, the
    // event log included.
    if let Err(e) = crate::store::trust_cache_dir(&config.dir, true) {
        eprintln!("kache: warning: {e}; running the build script without the cache");
        return run.exec_plain();
    }
    let steps = run.cached(&config);
    let (done, code) = run.conclude(steps);
    std::mem::take(&mut run.trace).record(done, &mut event);
    if let Some(code) = code {
        event.exit_code = code;
    }
    if !fsutil::is_foreign_symlink(&config.dir) {
        frontend::record(&config.dir, &mut event, started);
    }
    match code {
        Some(code) => code,
        None => run.exec_plain(),
    }
}

struct ScriptRun {
    real: PathBuf,
    argv0: OsString,
    args: Vec<OsString>,
    marker: Option<PathBuf>,
    crate_version: Option<String>,
    /// What the run learned; the script's exit code once it has run ([`Trace::ran`]), so a
    /// later fault does not run it again.
    trace: Trace,
    /// Files of a stored run are being written into `OUT_DIR`.
    restoring: bool,
}

impl ScriptRun {
    fn mark(&self, state: &str) {
        if let Some(m) = &self.marker {
            let _ = std::fs::write(m, state);
        }
    }

    /// The real script as cargo would have started it.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.real);
        cmd.arg0(&self.argv0).args(&self.args);
        cmd
    }

    /// Replaces this process with the real script. Returns only if that fails, and then
    /// leaves the run to the launcher (which reports the error as cargo would see it).
    fn exec_plain(&mut self) -> i32 {
        self.mark("committed");
        let err = self.command().exec();
        if let Some(m) = &self.marker {
            let _ = std::fs::remove_file(m);
        }
        eprintln!("kache: cannot run {}: {err}", self.real.display());
        127
    }

    /// What the run came to, and its exit code: `None` when the script is to run as cargo
    /// would have started it (a passthrough, or a fault before it ran).
    fn conclude(&mut self, steps: Result<Done, Fault>) -> (Done, Option<i32>) {
        match steps {
            Ok(Done::Passthrough(reason)) => {
                tracing::debug!("build-script passthrough: {reason}");
                (Done::Passthrough(reason), None)
            }
            Ok(done) => {
                let code = match &done {
                    Done::Ran(_) => self.trace.ran.map_or(0, |r| r.exit_code),
                    _ => 0,
                };
                (done, Some(code))
            }
            Err(fault) => {
                let message = frontend::one_line(&fault);
                if let Some(r) = self.trace.ran {
                    eprintln!("kache: warning: {message}; the build-script run is not stored");
                    return (Done::Degraded(message), Some(r.exit_code));
                }
                eprintln!("kache: warning: {message}; running the build script without the cache");
                if self.restoring
                    && let Some(out) = std::env::var_os("OUT_DIR")
                {
                    empty_dir(Path::new(&out));
                }
                (Done::Degraded(message), None)
            }
        }
    }

    /// key → lookup (local, then remote) → restore, or run → record. A passthrough is
    /// returned, not run.
    fn cached(&mut self, config: &Config) -> Result<Done, Fault> {
        let key_start = Instant::now();
        let env_var = |name: &str| std::env::var(name).ok();
        let (Some(out_dir), Some(package_dir)) = (
            std::env::var_os("OUT_DIR").map(PathBuf::from),
            std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        ) else {
            return Ok(passthrough("not_a_cargo_build_script"));
        };
        let home = cargo_home();
        if !is_cached_package(Scope::from_env(&env_var), &package_dir, home.as_deref()) {
            return Ok(passthrough("build_script_not_cached"));
        }
        let out_empty = std::fs::read_dir(&out_dir)
            .map_err(io_fault(format!("reading {}", out_dir.display())))?
            .next()
            .is_none();
        if !out_empty {
            return Ok(passthrough("out_dir_not_empty"));
        }
        let store = Store::open(&config.dir)?;
        let triple = env_var("TARGET");
        let roots =
            Roots::for_script_run(&package_dir, &out_dir, triple.as_deref(), home.as_deref());
        let env = script_env(&config.key_env_vars);
        let (path_var, rustc, rustup_toolchain) = (
            env_var("PATH"),
            env_var("RUSTC"),
            env_var("RUSTUP_TOOLCHAIN"),
        );
        let mut stat = StatCache::new(store.conn());
        // Every manifest holds the whole package dir: one query for all its files.
        stat.preload_below(&package_dir);
        let keyed = key::invocation_key(
            &RunInputs {
                script: &self.real,
                env: &env,
                path_var: path_var.as_deref(),
                rustc: rustc.as_deref(),
                rustup_toolchain: rustup_toolchain.as_deref(),
                roots: &roots,
                cache_dir: store.dir(),
            },
            &mut stat,
        );
        let (inv_key, key_fields) = match keyed {
            Err(key::KeyError::TooLarge { .. }) => {
                return Ok(passthrough("input_tree_too_large"));
            }
            other => other?,
        };
        self.trace.key_ms = ms(key_start.elapsed());

        let mut matches = |manifest: &Manifest, stat: &mut StatCache| {
            let mut hasher = TreeHasher::new(stat, &package_dir, Budget::default());
            manifest.check(&roots, &package_dir, &mut hasher, &env_var)
        };
        // A found run is restored; a damaged one is dropped and the lookup goes on.
        let mut restore = |entry, outcome, stat: &mut StatCache, warning: &mut _| {
            self.restore(&store, stat, &entry, &out_dir, &roots, outcome, warning)
        };
        let lookup = frontend::Lookup {
            config,
            store: &store,
            inv_key: &inv_key,
            system_dirs: &[],
            front: Front::BuildScript,
        };
        // Not straight into the trace: `restore` holds this run.
        let mut seen = frontend::Seen::default();
        let looked = frontend::lookup(&lookup, &mut stat, &mut matches, &mut restore, &mut seen);
        self.trace.seen = seen;
        let (found, remote) = looked?;
        if let Some(done) = found {
            return Ok(done);
        }
        let kept = self.run_and_record(
            &store,
            &mut stat,
            &inv_key,
            key_fields,
            &out_dir,
            &package_dir,
            &roots,
        )?;
        if let Kept::Stored(s) = &kept {
            // Past the size limit, a detached `kache gc --auto` makes room; cargo never waits.
            crate::store::maintenance::maybe_start_background_gc(&store, config.max_size);
            frontend::queue_upload(remote.as_ref(), store.dir(), &s.entry_key, &inv_key);
        }
        Ok(Done::Ran(kept))
    }

    /// `None` when the entry turned out unusable: it is dropped (one warning) and the lookup
    /// goes on, so the script runs and its run is stored again, as for compiles.
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        entry: &Entry,
        out_dir: &Path,
        roots: &Roots,
        outcome: Outcome,
        warning: &mut Option<String>,
    ) -> Result<Option<Done>, Fault> {
        let start = Instant::now();
        let restored = match (
            roots.fill(&String::from_utf8_lossy(&entry.stdout), Spelling::Plain),
            roots.fill(&String::from_utf8_lossy(&entry.stderr), Spelling::Plain),
        ) {
            (Some(stdout), Some(stderr)) => {
                self.mark("restoring");
                self.restoring = true;
                super::restore::restore_out_dir(store, entry, out_dir, roots, stat)
                    .map(|bytes| (stdout, stderr, bytes))
            }
            // The key covers every root the run named, so this is damage too.
            _ => Err(crate::restore::RestoreError::UnknownRoot),
        };
        let (stdout, stderr, bytes) = match restored {
            Ok(r) => r,
            Err(e @ crate::restore::RestoreError::Write { .. }) => return Err(e.into()),
            Err(e) => {
                // Refused before anything was written: OUT_DIR is still empty.
                self.restoring = false;
                frontend::drop_unrestorable(store, &entry.key, e, Front::BuildScript, warning)?;
                return Ok(None);
            }
        };
        crate::testhook::crash_point("build_script_restored", &entry.crate_name);
        self.mark("committed");
        self.restoring = false;
        let _ = std::io::stdout().write_all(stdout.as_bytes());
        let _ = std::io::stderr().write_all(stderr.as_bytes());
        if let Err(e) = store.flush_stat_cache(stat) {
            tracing::debug!("cannot update the stat cache: {e}");
        }
        let hit = Hit {
            outcome,
            entry_key: entry.key.clone(),
            compile_ms: entry.compile_ms,
            size: entry.size(),
            linked: RestoreStats {
                copied: bytes,
                ..RestoreStats::default()
            },
            restore_ms: ms(start.elapsed()),
        };
        Ok(Some(Done::Hit(hit)))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_and_record(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        inv_key: &str,
        key_fields: Vec<crate::key::KeyField>,
        out_dir: &Path,
        package_dir: &Path,
        roots: &Roots,
    ) -> Result<Kept, Fault> {
        crate::testhook::crash_point(
            "build_script_before_run",
            self.trace.crate_name.as_deref().unwrap_or_default(),
        );
        let run_start = SystemTime::now();
        let clock = Instant::now();
        self.mark("committed");
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_fault(format!("running {}", self.real.display())))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let out_thread = std::thread::spawn(move || crate::compile::tee(stdout, std::io::stdout()));
        let err = crate::compile::tee(stderr, std::io::stderr());
        let out = out_thread.join().unwrap_or_default();
        let status = child
            .wait()
            .map_err(io_fault(format!("waiting for {}", self.real.display())));
        let status = status?;
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            // The launcher dies of it, as cargo would have seen the script do.
            self.mark(&format!("signal {signal}"));
        }
        let code = crate::compile::exit_code(status);
        let elapsed = clock.elapsed();
        self.trace.ran = Some(Ran {
            exit_code: code,
            compile_ms: ms(elapsed),
        });
        if code != 0 {
            return Ok(Kept::Not);
        }
        let store_start = Instant::now();
        let stdout_text = String::from_utf8_lossy(&out);
        let templated_stdout = roots.template(&stdout_text, Spelling::Plain).into_owned();
        // Paths it names are where the script may have written something it tells cargo
        // about: under the target dir, what it wrote there is recorded with OUT_DIR.
        let target = roots.get("target").map(|t| PathBuf::from(&t.path));
        let mut beside = Vec::new();
        for named in named_paths(&stdout_text) {
            match &target {
                Some(t) if named.starts_with(t) => {
                    if named.starts_with(normalize(out_dir)) {
                        continue;
                    }
                    let rel = named.strip_prefix(t).unwrap_or(&named);
                    // Another run's OUT_DIR (a dependency's include or lib dir, as `DEP_*`
                    // values hand them on) that this run did not write: that run restores
                    // it, this one only names it.
                    if in_another_out_dir(rel) && !wrote_below(&named, run_start) {
                        continue;
                    }
                    match written_below(&named, rel, run_start)? {
                        Some(files) => beside.extend(files),
                        None => {
                            return Ok(not_stored("names_target_dir_outside_out_dir"));
                        }
                    }
                }
                _ if wrote_to(&named, run_start) => {
                    return Ok(not_stored("names_path_written_outside_target_dir"));
                }
                _ => {}
            }
        }
        let declared: Declared = key::declared(&stdout_text);
        let env_var = |name: &str| std::env::var(name).ok();
        let mut hasher = TreeHasher::new(stat, package_dir, Budget::default());
        if std::str::from_utf8(&out).is_err() || std::str::from_utf8(&err).is_err() {
            // Replayed output must be byte for byte what the script printed.
            return Ok(not_stored("non_utf8_output"));
        }
        let mut manifest = match key::record_manifest(
            &declared,
            roots,
            package_dir,
            &mut hasher,
            &env_var,
            run_start,
        )? {
            Ok(m) => m,
            Err(NotRecorded::MissingInput(_)) => {
                return Ok(not_stored("declared_path_missing"));
            }
            Err(NotRecorded::ChangedWhileRunning) => {
                return Ok(not_stored("input_changed_while_running"));
            }
            Err(NotRecorded::Refused(Refused::OutsidePackage)) => {
                return Ok(not_stored("directory_input_outside_package"));
            }
            Err(NotRecorded::Refused(Refused::TooLarge)) => {
                return Ok(not_stored("input_tree_too_large"));
            }
        };
        let mut files = match out_dir_files(out_dir)? {
            Ok(files) => files,
            Err(why) => return Ok(not_stored(why)),
        };
        beside.sort();
        beside.dedup();
        files.extend(beside);
        // A UTF-8 text file that names a root (a pkg-config file's prefix, a CMake cache, a
        // generated `include!`) is stored with the roots templated, as stdout is, and filled
        // in on restore: what the script would have written at the new place. Any other text
        // file naming the target or package dir is only right where it was written: the run
        // is then keyed by those paths as they are, and restored only at the same place.
        let mut templated = Vec::new();
        let mut located = false;
        for (name, path, mode) in &files {
            if mode & (EMPTY_DIR | SYMLINK) != 0 {
                continue;
            }
            match text_naming_roots(path, roots) {
                Naming::Nothing => {}
                Naming::Templated(text) => templated.push((name.clone(), text)),
                Naming::NotTemplatable => located = true,
            }
        }
        if located {
            for name in ["OUT_DIR", "CARGO_MANIFEST_DIR"] {
                manifest.env.push(crate::key::manifest::ManifestEnv {
                    name: name.to_owned(),
                    value: env_var(name),
                    absolute: true,
                });
            }
        }
        let pkg = self.trace.crate_name.clone().unwrap_or_default();
        let mut outputs = Vec::with_capacity(files.len());
        for (name, path, mode) in files {
            let text = templated.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
            let (blob, size, mode) = if mode & SYMLINK != 0 {
                // Read again, never followed: the target checked is the one stored.
                let target = std::fs::read_link(&path)
                    .map_err(io_fault(format!("reading {}", path.display())))?;
                match target.to_str() {
                    Some(t) if super::restore::link_stays_inside(&name, t) => {
                        let (blob, size) = ingest_bytes(store, t.as_bytes())?;
                        (blob, size, mode)
                    }
                    _ => return Ok(not_stored(LINK_LEAVES_OUT_DIR)),
                }
            } else if mode & EMPTY_DIR != 0 {
                let (blob, size) = ingest_bytes(store, b"")?;
                (blob, size, mode)
            } else if let Some(text) = text {
                let (blob, size) = ingest_bytes(store, text.as_bytes())?;
                (blob, size, mode | TEMPLATED)
            } else {
                let (blob, size) = store.ingest_blob(&path, false)?;
                let _ = stat.record_trusted(&path, &blob);
                (blob, size, mode)
            };
            outputs.push(StoredOutput {
                name,
                blob,
                mode,
                size,
            });
        }
        let entry = Entry {
            key: manifest.entry_key(inv_key),
            invocation_key: inv_key.to_owned(),
            crate_name: pkg,
            crate_version: self.crate_version.clone(),
            crate_types: vec![RUN_CRATE_TYPE.to_owned()],
            outputs,
            stdout: templated_stdout.into_bytes(),
            stderr: roots
                .template(&String::from_utf8_lossy(&err), Spelling::Plain)
                .into_owned()
                .into_bytes(),
            depinfo: None,
            compile_ms: ms(elapsed),
            key_fields,
        };
        store.commit_entry(&entry, &manifest, stat)?;
        Ok(Kept::Stored(Stored {
            entry_key: entry.key.clone(),
            size: entry.size(),
            store_ms: ms(store_start.elapsed()),
        }))
    }
}

/// Places `bytes` in the store as a blob; returns its hash and size.
fn ingest_bytes(store: &Store, bytes: &[u8]) -> Result<(String, u64), Fault> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    store.ingest_bytes(&hash, bytes)?;
    Ok((hash, bytes.len() as u64))
}

fn passthrough(reason: &str) -> Done {
    Done::Passthrough(reason.to_owned())
}

/// The script ran and succeeded but its run is not recorded.
fn not_stored(why: &str) -> Kept {
    tracing::debug!("build-script run not stored: {why}");
    Kept::NotStored(why.to_owned())
}

/// The absolute paths `cargo:` lines name (spelled with `..` or not, read lexically), sorted,
/// without those inside another one named.
fn named_paths(stdout: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = stdout
        .lines()
        .filter(|l| l.starts_with("cargo:"))
        .flat_map(|l| l.split([' ', '\t', '=', ',', ':']))
        .filter_map(|token| token.find('/').map(|i| normalize(Path::new(&token[i..]))))
        .collect();
    paths.sort();
    paths.dedup();
    let mut outer: Vec<PathBuf> = Vec::with_capacity(paths.len());
    for p in paths {
        if !outer.last().is_some_and(|o| p.starts_with(o)) {
            outer.push(p);
        }
    }
    outer
}

/// The most entries looked at below one named path: past it, a run is not recorded.
const MAX_NAMED_ENTRIES: usize = 20_000;

/// The files the script wrote at `named` (under the target dir, outside `OUT_DIR`; `rel` is
/// its path relative to the target dir), as outputs named [`super::restore::BESIDE_PREFIX`]
/// followed by their path relative to the target dir. `None` when something there is older than the
/// run (another package's, or an earlier build's: not this run's to restore), is not a
/// regular file or directory, or there is too much; nothing there is fine.
fn written_below(
    named: &Path,
    rel: &Path,
    since: SystemTime,
) -> Result<Option<Vec<OutFile>>, Fault> {
    let fresh = |m: &std::fs::Metadata| m.modified().is_ok_and(|t| t >= since);
    let meta = match std::fs::symlink_metadata(named) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        other => other.map_err(io_fault(format!("reading {}", named.display())))?,
    };
    let name_of = |rel: &Path| {
        rel.to_str()
            .map(|r| format!("{}{r}", super::restore::BESIDE_PREFIX))
    };
    if meta.file_type().is_file() {
        return Ok(fresh(&meta)
            .then(|| name_of(rel))
            .flatten()
            .map(|n| vec![(n, named.to_owned(), meta.permissions().mode())]));
    }
    if !meta.is_dir() || !fresh(&meta) {
        return Ok(None);
    }
    // Only regular files are restored outside OUT_DIR.
    let Ok(files) = out_dir_files(named)? else {
        return Ok(None);
    };
    if files.len() > MAX_NAMED_ENTRIES || files.iter().any(|f| f.2 & (EMPTY_DIR | SYMLINK) != 0) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(files.len());
    for (name, path, mode) in files {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(io_fault(format!("reading {}", path.display())))?;
        let Some(stored) = name_of(&rel.join(&name)).filter(|_| fresh(&meta)) else {
            return Ok(None);
        };
        out.push((stored, path, mode));
    }
    Ok(Some(out))
}

/// Whether `rel` (relative to the target dir) lies in a build-script run's `OUT_DIR`
/// (`<profile>/build/<package>-<hash>/out/…`).
fn in_another_out_dir(rel: &Path) -> bool {
    let parts: Vec<_> = rel.components().collect();
    parts
        .windows(3)
        .any(|w| w[0].as_os_str() == "build" && w[2].as_os_str() == "out")
}

/// Whether `named` or anything below it (links and directories included, never followed) is
/// newer than `since`, or there is too much to tell.
fn wrote_below(named: &Path, since: SystemTime) -> bool {
    let mut stack = vec![named.to_owned()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        seen += 1;
        if seen > MAX_NAMED_ENTRIES || meta.modified().is_ok_and(|t| t >= since) {
            return true;
        }
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                return true;
            };
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    false
}

/// Whether the script wrote at `named` (outside the target dir) while it ran: it, or an
/// entry of it if it is a directory, is newer than the run's start (or too many to tell).
fn wrote_to(named: &Path, since: SystemTime) -> bool {
    let fresh = |m: std::fs::Metadata| m.modified().is_ok_and(|t| t >= since);
    let Ok(meta) = std::fs::symlink_metadata(named) else {
        return false;
    };
    let is_dir = meta.is_dir();
    if fresh(meta) {
        return true;
    }
    if !is_dir {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(named) else {
        return false;
    };
    let mut seen = 0;
    for entry in entries.flatten() {
        seen += 1;
        if seen > MAX_NAMED_ENTRIES || entry.metadata().is_ok_and(fresh) {
            return true;
        }
    }
    false
}

/// What an `OUT_DIR` file says about where it was written.
enum Naming {
    /// Nothing (or it is binary: the paths in objects and archives are debug info, which a
    /// real run elsewhere would spell differently but which changes nothing the build uses).
    Nothing,
    /// UTF-8 text naming a root: its text with the roots templated.
    Templated(String),
    /// Text naming the target or package dir that cannot be templated (not UTF-8).
    NotTemplatable,
}

fn text_naming_roots(file: &Path, roots: &Roots) -> Naming {
    use std::io::Read;
    let mut head = Vec::with_capacity(8192);
    let opened = std::fs::File::open(file).and_then(|f| f.take(8192).read_to_end(&mut head));
    if opened.is_ok() && head.contains(&0) {
        return Naming::Nothing;
    }
    let Ok(bytes) = std::fs::read(file) else {
        // Unreadable now: assume the worst, which only costs relocated hits.
        return Naming::NotTemplatable;
    };
    let names_root = roots
        .iter()
        .any(|r| memchr::memmem::find(&bytes, r.path.as_bytes()).is_some());
    if !names_root {
        return Naming::Nothing;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Naming::Templated(roots.template(&text, Spelling::Plain).into_owned()),
        Err(_) => Naming::NotTemplatable,
    }
}

/// `a/b/../c` → `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The keyed variables the script gets, sorted; a value that is not UTF-8 is keyed by its
/// bytes in hex (never dropped, never confused with a UTF-8 value).
fn script_env(extra: &[String]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.to_str()?.to_owned();
            key::is_keyed(&k, extra).then(|| {
                let v = match v.to_str() {
                    Some(s) => s.to_owned(),
                    None => format!("\u{1}hex:{}", hex(v.as_bytes())),
                };
                (k, v)
            })
        })
        .collect();
    vars.sort();
    vars
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry found in `OUT_DIR`: its name relative to it, its path and its mode, with
/// [`EMPTY_DIR`] or [`SYMLINK`] set for those.
type OutFile = (String, PathBuf, u32);

/// Every regular file, empty directory and link under `OUT_DIR` (links read, never
/// followed), sorted; the reason the run is not stored when it holds anything else (a
/// socket, a fifo, a name that is not UTF-8) or a link that could lead out of it.
fn out_dir_files(out_dir: &Path) -> Result<Result<Vec<OutFile>, &'static str>, Fault> {
    let mut files = Vec::new();
    let mut stack = vec![out_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let mut empty = true;
        for entry in
            std::fs::read_dir(&dir).map_err(io_fault(format!("reading {}", dir.display())))?
        {
            empty = false;
            let entry = entry.map_err(io_fault(format!("reading {}", dir.display())))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(io_fault(format!("reading {}", path.display())))?;
            let kind = meta.file_type();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(name) = path.strip_prefix(out_dir).ok().and_then(|r| r.to_str()) else {
                return Ok(Err("out_dir_not_regular_files"));
            };
            let mode = meta.permissions().mode();
            if kind.is_file() {
                files.push((name.to_owned(), path.clone(), mode));
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(io_fault(format!("reading {}", path.display())))?;
                if !target
                    .to_str()
                    .is_some_and(|t| super::restore::link_stays_inside(name, t))
                {
                    return Ok(Err(LINK_LEAVES_OUT_DIR));
                }
                files.push((name.to_owned(), path.clone(), mode | SYMLINK));
            } else {
                return Ok(Err("out_dir_not_regular_files"));
            }
        }
        if empty && dir != out_dir {
            let Some(name) = dir.strip_prefix(out_dir).ok().and_then(|r| r.to_str()) else {
                return Ok(Err("out_dir_not_regular_files"));
            };
            let mode = std::fs::symlink_metadata(&dir)
                .map_err(io_fault(format!("reading {}", dir.display())))?
                .permissions()
                .mode();
            files.push((name.to_owned(), dir.clone(), mode | EMPTY_DIR));
        }
    }
    files.sort();
    Ok(Ok(files))
}

fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_paths_are_found_however_spelled() {
        let named = |s: &str| named_paths(s);
        assert_eq!(
            named("cargo:rustc-link-search=native=/t/debug/build/x-1/out/../../shared\n"),
            vec![PathBuf::from("/t/debug/build/shared")]
        );
        assert_eq!(
            named("cargo:rustc-link-arg=-Wl,-rpath,/t/debug/lib\ncargo:include=/t/debug/lib/inc\n"),
            vec![PathBuf::from("/t/debug/lib")]
        );
        assert!(named("not a cargo line /t/debug/lib\n").is_empty());
    }
}
