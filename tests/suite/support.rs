//! Helpers for kache's end-to-end tests: build the fixture workspace in
//! `e2e/fixtures/ws` with real cargo, with and without kache, and read the event log (as
//! the library's own `BuildEvent`).
//!
//! Use it from a module of the suite with `use crate::support::*;`. A test reads like a
//! shell session:
//!
//! ```ignore
//! let sandbox = Sandbox::new();
//! let ws = sandbox.checkout("first/ws");        // cp -r e2e/fixtures/ws $TMP/first/ws
//! let mut log = sandbox.cursor();               // remember where the event log ends
//! ws.kache_build(&[]);                          // RUSTC_WRAPPER=kache cargo build --locked
//! let built = compiles(&log.take());            // the events it appended, probes left out
//! assert_eq!(ws.run_bin("fixture-app", &[]), ws.reference_output(&[], "fixture-app"));
//! ws.rm_target();                               // rm -rf target
//! ```
//!
//! A test about a warm store starts from [`Sandbox::warmed`] (the first four lines above,
//! with the cold build checked to be all misses).
//!
//! What the harness controls for every cargo it runs:
//! - the working directory is the checkout, and `CARGO_TARGET_DIR` (and every other
//!   setting that moves the target dir) is removed, so the target dir is `<checkout>/target`;
//! - `CARGO_INCREMENTAL=0` (unless [`Workspace::use_cargo_defaults`]: then cargo compiles
//!   workspace members with `-C incremental`, as it does for users), `CARGO_TERM_COLOR=never`;
//! - `FIXTURE_GREETING` (the fixture's `env!`) is set; other `FIXTURE_*`, `RUSTFLAGS` and
//!   friends, wrappers, `KACHE_*` and the `CARGO_*` variables cargo set for this test
//!   process are removed, so the outer environment does not leak in;
//! - with kache: `RUSTC_WRAPPER=<kache>` and `KACHE_DIR=<sandbox cache dir>`;
//! - `CARGO_HOME` is left alone: the user's registry is shared and warm.
//!
//! Environment knobs for people debugging a failure:
//! - `KACHE_E2E_KEEP=1` keeps the sandbox directory instead of deleting it (its path is
//!   printed);
//! - `KACHE_E2E_WRAPPER=/path` uses another wrapper instead of the kache binary under test.

pub use kache::events::{BuildEvent, Compiler, Outcome};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// The value of `FIXTURE_GREETING` every checkout starts with.
pub const DEFAULT_GREETING: &str = "hello from the e2e test";

/// The binary that prints one line summarising every input of the fixture.
pub const APP_BIN: &str = "fixture-app";
/// The binary that prints its compile-time `CARGO_MANIFEST_DIR` (the checkout's path).
pub const WHERE_BIN: &str = "fixture-where";

/// The target dir the reference (no kache) builds use, inside the checkout.
pub const REFERENCE_TARGET: &str = "target-ref";

/// The wrapper under test: the kache binary cargo built for this test run, unless
/// `KACHE_E2E_WRAPPER` names another one.
pub fn kache_bin() -> PathBuf {
    match std::env::var_os("KACHE_E2E_WRAPPER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_kache")),
    }
}

/// Where the fixture workspace lives in the repository.
pub fn fixture_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/fixtures/ws")
}

/// The cargo to run: the one running this test (cargo sets `CARGO` for `cargo test`),
/// else `cargo` from `PATH`.
pub fn cargo_program() -> PathBuf {
    match std::env::var_os("CARGO") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("cargo"),
    }
}

// ---------------------------------------------------------------------------
// Sandbox and checkouts
// ---------------------------------------------------------------------------

/// A temp dir holding one kache cache dir and any number of checkouts of the fixture.
/// Everything is deleted on drop (unless `KACHE_E2E_KEEP` is set).
pub struct Sandbox {
    tmp: Option<TempDir>,
    root: PathBuf,
    cache_dir: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::new_in(&std::env::temp_dir())
    }

    /// A sandbox inside `parent` (e.g. a filesystem a test mounted) rather than the
    /// system temp dir.
    pub fn new_in(parent: &Path) -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("kache-e2e-")
            .tempdir_in(parent)
            .expect("create the sandbox temp dir");
        // Canonical, so it matches the paths cargo derives from getcwd() (on macOS
        // /tmp is a symlink to /private/tmp).
        let root = tmp
            .path()
            .canonicalize()
            .expect("canonicalize the sandbox temp dir");
        let cache_dir = root.join("kache-cache");
        fs::create_dir_all(&cache_dir).expect("create the sandbox kache cache dir");
        Sandbox {
            tmp: Some(tmp),
            root,
            cache_dir,
        }
    }

    /// The sandbox directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The kache cache dir (`KACHE_DIR`) every checkout of this sandbox shares.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `cp -r e2e/fixtures/ws <sandbox>/<sub_path>`: a fresh checkout of the fixture
    /// (without any target dir) at a path of the test's choosing, so two checkouts can
    /// sit at different paths and depths.
    pub fn checkout(&self, sub_path: &str) -> Workspace {
        let root = self.root.join(sub_path);
        assert!(
            !root.exists(),
            "checkout {} already exists in the sandbox",
            root.display()
        );
        fs::create_dir_all(&root).expect("create the checkout dir");
        copy_tree(&fixture_source(), &root);
        Workspace {
            root,
            cache_dir: self.cache_dir.clone(),
            env: BTreeMap::from([("FIXTURE_GREETING".to_string(), DEFAULT_GREETING.to_string())]),
            cargo_defaults: false,
        }
    }

    /// An empty directory at `<sandbox>/<sub_path>` used as a workspace, for tests that write
    /// their own small crates into it.
    pub fn empty_workspace(&self, sub_path: &str) -> Workspace {
        let root = self.root.join(sub_path);
        fs::create_dir_all(&root).expect("create the workspace dir");
        Workspace {
            root,
            cache_dir: self.cache_dir.clone(),
            env: BTreeMap::new(),
            cargo_defaults: false,
        }
    }

    /// A checkout at `<sandbox>/<real_sub>`, used through the symlink
    /// `<sandbox>/<link_sub>` → `<sandbox>/<real_sub>`'s parent: the returned workspace's
    /// root is `<sandbox>/<link_sub>/<last component of real_sub>`, a path that goes
    /// through the symlink.
    pub fn checkout_via_symlink(&self, real_sub: &str, link_sub: &str) -> Workspace {
        let real = self.checkout(real_sub);
        let real_parent = real.root.parent().expect("a checkout has a parent dir");
        let link = self.root.join(link_sub);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).expect("create the symlink's parent dir");
        }
        std::os::unix::fs::symlink(real_parent, &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        let name = real.root.file_name().expect("a checkout has a name");
        Workspace {
            root: link.join(name),
            ..real
        }
    }

    /// Every event in the shared cache's log so far.
    pub fn events(&self) -> Vec<BuildEvent> {
        events(&self.cache_dir)
    }

    /// A cursor at the current end of the event log.
    pub fn cursor(&self) -> EventCursor {
        EventCursor::new(&self.cache_dir)
    }

    /// A new sandbox whose cache a cold kache build of the fixture checked out at
    /// `sub_path` has filled: the start of every test about a warm store.
    pub fn warmed(sub_path: &str) -> Warmed {
        Sandbox::new().warm(sub_path)
    }

    /// Fills this (empty) sandbox's cache with a cold kache build of the fixture checked
    /// out at `sub_path`, checking that every compile was a miss without a fault, so a test
    /// that starts from it knows what the store holds.
    pub fn warm(self, sub_path: &str) -> Warmed {
        let ws = self.checkout(sub_path);
        let mut log = self.cursor();
        ws.kache_build(&[]);
        let cold = compiles(&log.take());
        assert!(!cold.is_empty(), "the cold build compiled nothing");
        assert_all(&cold, Outcome::Miss, "the cold build that fills the cache");
        assert_no_faults(&cold, "the cold build that fills the cache");
        Warmed {
            sandbox: self,
            ws,
            log,
            cold,
        }
    }
}

/// What [`Sandbox::warm`] leaves: each test owns its own (tests run in parallel). Bind
/// `sandbox` to a name (`sandbox: _sandbox` if unused): a field left to `..` is dropped at
/// once, and dropping the sandbox deletes it.
pub struct Warmed {
    pub sandbox: Sandbox,
    /// The checkout that was built, its target dir still in place.
    pub ws: Workspace,
    /// A cursor past the cold build's events.
    pub log: EventCursor,
    /// The cold build's compiles, every one a miss.
    pub cold: Vec<BuildEvent>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::env::var_os("KACHE_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
            && let Some(tmp) = self.tmp.take()
        {
            let kept = tmp.keep();
            eprintln!("KACHE_E2E_KEEP: sandbox kept at {}", kept.display());
        }
    }
}

/// Copies `from` into the existing dir `to`, leaving out target dirs (`target`,
/// `target-*`) and `.git`.
fn copy_tree(from: &Path, to: &Path) {
    let entries =
        fs::read_dir(from).unwrap_or_else(|e| panic!("read fixture dir {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("read a fixture dir entry");
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let file_type = entry.file_type().expect("stat a fixture dir entry");
        let dest = to.join(&name);
        if file_type.is_dir() {
            if name_str == "target" || name_str.starts_with("target-") || name_str == ".git" {
                continue;
            }
            fs::create_dir_all(&dest).unwrap_or_else(|e| panic!("create {}: {e}", dest.display()));
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap_or_else(|e| {
                panic!("copy {} to {}: {e}", entry.path().display(), dest.display())
            });
        }
    }
}

/// One checkout of the fixture workspace.
pub struct Workspace {
    root: PathBuf,
    cache_dir: PathBuf,
    /// Variables set on every cargo this checkout runs (kache or plain), e.g.
    /// `FIXTURE_GREETING`. Changed with [`Workspace::set_env`].
    env: BTreeMap<String, String>,
    /// Leaves `CARGO_INCREMENTAL` unset, as cargo's defaults do (see
    /// [`Workspace::use_cargo_defaults`]).
    cargo_defaults: bool,
}

impl Workspace {
    /// The checkout's root (where its `Cargo.toml` and `Cargo.lock` are).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the checkout.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The target dir the kache builds use.
    pub fn target_dir(&self) -> PathBuf {
        self.root.join("target")
    }

    /// The compile-time `CARGO_MANIFEST_DIR` of the app crate in this checkout: what
    /// `fixture-where` must print.
    pub fn app_manifest_dir(&self) -> String {
        self.path("crates/app").display().to_string()
    }

    /// Runs every later cargo of this checkout with cargo's defaults: `CARGO_INCREMENTAL`
    /// unset, so the dev profile compiles workspace members with `-C incremental` (kache's
    /// `KACHE_INCREMENTAL=cache` path). Kept across [`Workspace::reset_to_base`].
    pub fn use_cargo_defaults(&mut self) {
        self.cargo_defaults = true;
    }

    /// Sets a variable for every later cargo this checkout runs (like `export`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_string(), value.to_string());
    }

    /// Stops setting a variable (like `unset`; it is removed from cargo's environment).
    pub fn unset_env(&mut self, key: &str) {
        self.env.remove(key);
    }

    /// `RUSTC_WRAPPER=kache cargo <args>` in this checkout.
    pub fn kache(&self, args: &[&str]) -> CargoCmd {
        let mut cmd = self.base_cargo(args);
        cmd.cmd.env("RUSTC_WRAPPER", kache_bin());
        cmd.cmd.env("KACHE_DIR", &self.cache_dir);
        cmd.label = format!("RUSTC_WRAPPER=kache {}", cmd.label);
        cmd
    }

    /// `cargo <args>` in this checkout, without any wrapper.
    pub fn plain(&self, args: &[&str]) -> CargoCmd {
        self.base_cargo(args)
    }

    /// `RUSTC_WRAPPER=kache cargo build --locked <extra>`, which must succeed.
    pub fn kache_build(&self, extra: &[&str]) -> Output {
        let mut args = vec!["build", "--locked"];
        args.extend_from_slice(extra);
        self.kache(&args).run()
    }

    /// Builds with plain cargo (no kache) into `<checkout>/target-ref` and returns what
    /// `bin` prints: the expected output for the same sources, env and `extra` args.
    pub fn reference_output(&self, extra: &[&str], bin: &str) -> String {
        let target = self.root.join(REFERENCE_TARGET);
        let target = target.to_str().expect("sandbox paths are UTF-8");
        let mut args = vec!["build", "--locked", "--target-dir", target];
        args.extend_from_slice(extra);
        self.plain(&args).run();
        self.run_bin_in(&self.root.join(REFERENCE_TARGET), bin, &[])
    }

    /// Runs `target/debug/<name> <args>` (as built by the last kache build) and returns
    /// its stdout without the trailing newline. Panics if it fails.
    pub fn run_bin(&self, name: &str, args: &[&str]) -> String {
        self.run_bin_in(&self.target_dir(), name, args)
    }

    /// Like [`Workspace::run_bin`], for a binary in another target dir.
    pub fn run_bin_in(&self, target_dir: &Path, name: &str, args: &[&str]) -> String {
        self.run_bin_profile(target_dir, "debug", name, args)
    }

    /// Like [`Workspace::run_bin`], for `<target_dir>/<profile_dir>/<name>` (e.g. the
    /// `release` dir).
    pub fn run_bin_profile(
        &self,
        target_dir: &Path,
        profile_dir: &str,
        name: &str,
        args: &[&str],
    ) -> String {
        let exe = target_dir
            .join(profile_dir)
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let output = Command::new(&exe)
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            exe.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        let stdout = String::from_utf8(output.stdout).expect("fixture binary prints UTF-8");
        stdout.trim_end_matches(['\n', '\r']).to_string()
    }

    /// Reads a file of the checkout.
    pub fn read(&self, rel: &str) -> String {
        let path = self.path(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Writes (creates or replaces) a file of the checkout.
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Replaces the one occurrence of `from` with `to` in a file of the checkout.
    /// Panics unless `from` occurs exactly once, so an edit can never silently miss.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        let found = text.matches(from).count();
        assert_eq!(found, 1, "{rel} must contain {from:?} exactly once");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// `rm -rf target` (the kache build's target dir; the reference one is kept).
    pub fn rm_target(&self) {
        let target = self.target_dir();
        if target.exists() {
            fs::remove_dir_all(&target)
                .unwrap_or_else(|e| panic!("remove {}: {e}", target.display()));
        }
    }

    /// The crate names whose dep-info files (in `target/debug`) record an `env-dep` on
    /// `var`, i.e. the units rustc says read that variable.
    pub fn crates_with_env_dep(&self, var: &str) -> BTreeSet<String> {
        let debug = self.target_dir().join("debug");
        let mut dep_files = Vec::new();
        collect_dep_info(&debug.join("deps"), &mut dep_files);
        if let Ok(build_dirs) = fs::read_dir(debug.join("build")) {
            for dir in build_dirs.flatten() {
                collect_dep_info(&dir.path(), &mut dep_files);
            }
        }
        let with_value = format!("# env-dep:{var}=");
        let without_value = format!("# env-dep:{var}");
        let mut crates = BTreeSet::new();
        for file in dep_files {
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            if text
                .lines()
                .any(|line| line.starts_with(&with_value) || line == without_value)
            {
                crates.insert(crate_name_of_dep_info(&file));
            }
        }
        crates
    }

    fn base_cargo(&self, args: &[&str]) -> CargoCmd {
        let mut cmd = Command::new(cargo_program());
        cmd.args(args).current_dir(&self.root);
        for (key, _) in std::env::vars_os() {
            if let Some(key) = key.to_str()
                && is_scrubbed(key)
            {
                cmd.env_remove(key);
            }
        }
        if !self.cargo_defaults {
            cmd.env("CARGO_INCREMENTAL", "0");
        }
        cmd.env("CARGO_TERM_COLOR", "never");
        // Empty, not unset: an empty value also overrides a wrapper set in a cargo config
        // file (as `kache init` does), so reference builds really run without kache.
        // (Not RUSTC_WORKSPACE_WRAPPER: `kache init` does not set it, and an empty one makes
        // cargo fail to fingerprint rustc, so it re-runs its probes on every build.)
        cmd.env("RUSTC_WRAPPER", "");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        CargoCmd {
            cmd,
            label: format!("cargo {}", args.join(" ")),
            dir: self.root.clone(),
            cache_dir: self.cache_dir.clone(),
        }
    }
}

/// Variables of the test's own environment that must not reach the cargo under test.
pub fn is_scrubbed(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_INCREMENTAL",
        "CARGO_TARGET_DIR",
        "CARGO_TARGET_TMPDIR",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "OUT_DIR",
        "CORE_BUILD_NOTE",
    ];
    const PREFIXES: &[&str] = &[
        "KACHE_",
        "FIXTURE_",
        "CARGO_PKG_",
        "CARGO_BIN_EXE_",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "SCCACHE_",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

fn collect_dep_info(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension() == Some(OsStr::new("d")) {
                out.push(path);
            }
        }
    }
}

/// `fixture_core-31c727794fbb6823.d` -> `fixture_core`; `fixture_plugin.d` ->
/// `fixture_plugin` (cdylibs have no hash suffix).
fn crate_name_of_dep_info(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(OsStr::to_str)
        .expect("dep-info file names are UTF-8");
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Running cargo
// ---------------------------------------------------------------------------

/// A cargo command about to run, built by [`Workspace::kache`] or [`Workspace::plain`].
pub struct CargoCmd {
    cmd: Command,
    label: String,
    dir: PathBuf,
    cache_dir: PathBuf,
}

impl CargoCmd {
    /// Sets a variable for this command only.
    pub fn env(mut self, key: &str, value: &str) -> CargoCmd {
        self.cmd.env(key, value);
        self.label = format!("{key}={value:?} {}", self.label);
        self
    }

    /// Runs cargo in another directory than the checkout.
    pub fn current_dir(mut self, dir: &Path) -> CargoCmd {
        self.cmd.current_dir(dir);
        self.dir = dir.to_path_buf();
        self
    }

    /// Runs it; panics with cargo's output and the end of the event log if it fails.
    pub fn run(self) -> Output {
        let (label, dir, cache_dir) =
            (self.label.clone(), self.dir.clone(), self.cache_dir.clone());
        let output = self.run_unchecked();
        if !output.status.success() {
            panic!(
                "`{label}` in {} failed ({})\n--- stdout\n{}\n--- stderr\n{}\n--- last events\n{}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                describe(tail(&events(&cache_dir), 20)),
            );
        }
        output
    }

    /// Runs it; `None` (after killing it) if it has not finished within `limit`, so a hang
    /// fails the test instead of stalling the suite.
    pub fn run_within(mut self, limit: std::time::Duration) -> Option<Output> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = self
            .cmd
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", self.label));
        let deadline = std::time::Instant::now() + limit;
        // Drain the pipes in threads, or a chatty child blocks on a full pipe.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                });
            }
            if std::time::Instant::now() > deadline {
                // The whole group: cargo, and the kache and rustc processes under it.
                let _ = Command::new("kill")
                    .args(["-KILL", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Runs it and returns whatever happened.
    pub fn run_unchecked(mut self) -> Output {
        self.cmd
            .output()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", self.label))
    }
}

fn tail(events: &[BuildEvent], n: usize) -> &[BuildEvent] {
    &events[events.len().saturating_sub(n)..]
}

// ---------------------------------------------------------------------------
// The event log
// ---------------------------------------------------------------------------

/// Every event in `<cache_dir>/events.jsonl.1` then `<cache_dir>/events.jsonl`, in order,
/// parsed into the library's own `BuildEvent`, skipping lines that are not one (torn by a
/// crash, as the log's own readers do).
pub fn events(cache_dir: &Path) -> Vec<BuildEvent> {
    let mut all = Vec::new();
    for name in ["events.jsonl.1", "events.jsonl"] {
        let path = cache_dir.join(name);
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", path.display()),
        };
        all.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str::<BuildEvent>(line).ok()),
        );
    }
    all
}

/// Remembers how many events the log held, to select the ones appended since.
pub struct EventCursor {
    cache_dir: PathBuf,
    seen: usize,
}

impl EventCursor {
    /// A cursor at the current end of the log.
    pub fn new(cache_dir: &Path) -> EventCursor {
        EventCursor {
            cache_dir: cache_dir.to_path_buf(),
            seen: events(cache_dir).len(),
        }
    }

    /// The events appended since the cursor was set (or last moved); the cursor stays.
    pub fn since(&self) -> Vec<BuildEvent> {
        let all = events(&self.cache_dir);
        assert!(
            all.len() >= self.seen,
            "the event log shrank from {} to {} events: it was rotated more than once \
             during the test (raise the rotation limit for e2e tests)",
            self.seen,
            all.len()
        );
        all[self.seen..].to_vec()
    }

    /// The events appended since the cursor was set, moving the cursor past them.
    pub fn take(&mut self) -> Vec<BuildEvent> {
        let new = self.since();
        self.seen += new.len();
        new
    }
}

/// An event's `crate_name` (`"?"` when missing, e.g. for probes).
pub fn crate_name(event: &BuildEvent) -> &str {
    event.crate_name.as_deref().unwrap_or("?")
}

/// A label naming the unit an event is for: `crate_name@version[crate_types]`, e.g.
/// `fixture_core@0.3.1[lib]` or `build_script_build@0.3.1[bin]`. A `--test` harness
/// has no `--crate-type`, so its label ends in `[]`.
pub fn unit(event: &BuildEvent) -> String {
    format!(
        "{}@{}[{}]",
        crate_name(event),
        event.crate_version.as_deref().unwrap_or("?"),
        event.crate_types.join(",")
    )
}

/// The events of every unit but fixture-where, whose output embeds its checkout's path (it
/// must miss in another checkout).
pub fn path_independent(events: &[BuildEvent]) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|event| crate_name(event) != "fixture_where")
        .cloned()
        .collect()
}

/// The events that are real rustc compilations: everything but `passthrough` (cargo's
/// `-vV` / `--print` probes and other invocations kache does not cache) and but the C/C++
/// compiles build scripts run through the `cc` crate (`compiler: "c"`, which follow the
/// build script rather than the crate; `tests/suite/cc.rs` checks those).
pub fn compiles(events: &[BuildEvent]) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|event| event.result != Outcome::Passthrough && event.compiler != Compiler::C)
        .cloned()
        .collect()
}

/// How many events have the given `result`.
pub fn count(events: &[BuildEvent], wanted: Outcome) -> usize {
    events.iter().filter(|event| event.result == wanted).count()
}

/// The units (see [`unit`]) of all the events.
pub fn units(events: &[BuildEvent]) -> BTreeSet<String> {
    events.iter().map(unit).collect()
}

/// The crate names of the events with the given `result`.
pub fn crates_with(events: &[BuildEvent], wanted: Outcome) -> BTreeSet<String> {
    events
        .iter()
        .filter(|event| event.result == wanted)
        .map(|event| crate_name(event).to_string())
        .collect()
}

/// The crate names of all the events.
pub fn crates(events: &[BuildEvent]) -> BTreeSet<String> {
    events
        .iter()
        .map(|event| crate_name(event).to_string())
        .collect()
}

/// A build of `ws` runs nothing: cargo finds every unit fresh, so kache is never started
/// (cargo keeps its `-vV` / `--print` probe results in `target/.rustc_info.json`, so not even
/// a passthrough event).
pub fn assert_up_to_date(ws: &Workspace, log: &mut EventCursor, context: &str) {
    ws.kache_build(&[]);
    let events = log.take();
    assert!(
        events.is_empty(),
        "{context}: the build appended events\n{}",
        describe(&events)
    );
}

/// One line per event, for assertion messages.
pub fn describe(events: &[BuildEvent]) -> String {
    let mut text = String::new();
    for event in events {
        let _ = write!(
            text,
            "  {:<11} {:<40} compiler_runs={}",
            format!("{:?}", event.result),
            unit(event),
            event.compiler_runs
        );
        for (field, value) in [
            ("passthrough_reason", &event.passthrough_reason),
            ("warning", &event.warning),
        ] {
            if let Some(value) = value {
                let _ = write!(text, " {field}={value:?}");
            }
        }
        text.push('\n');
    }
    if text.is_empty() {
        text.push_str("  (no events)\n");
    }
    text
}

/// Panics unless every event has the given `result`.
pub fn assert_all(events: &[BuildEvent], wanted: Outcome, context: &str) {
    assert!(
        events.iter().all(|event| event.result == wanted),
        "{context}: expected every event to be `{wanted:?}`, got\n{}",
        describe(events)
    );
}

/// Panics if any event is an `error` or carries a `warning` (kache degraded).
pub fn assert_no_faults(events: &[BuildEvent], context: &str) {
    assert!(
        events
            .iter()
            .all(|event| event.result != Outcome::Error && event.warning.is_none()),
        "{context}: kache reported faults\n{}",
        describe(events)
    );
}

/// Panics unless every event is a `local_hit` that did not run the compiler.
pub fn assert_all_local_hits(events: &[BuildEvent], context: &str) {
    assert!(
        events
            .iter()
            .all(|event| event.result == Outcome::LocalHit && event.compiler_runs == 0),
        "{context}: expected every event to be a local_hit with compiler_runs == 0, got\n{}",
        describe(events)
    );
}

// ---------------------------------------------------------------------------
// The proof suite's helpers (change matrix, relocation, concurrency, faults,
// zero-copy restore, verify): editing a checkout back to the fixture, the store on
// disk, `kache <command>`, and filesystems mounted for a test.
// ---------------------------------------------------------------------------

impl Workspace {
    /// The cache dir (`KACHE_DIR`) this checkout's kache builds use.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Points this checkout's later kache builds at another cache dir.
    pub fn set_cache_dir(&mut self, dir: &Path) {
        self.cache_dir = dir.to_path_buf();
    }

    /// Puts the checkout back to the fixture as committed: every file with other contents
    /// is rewritten, files the fixture does not have are removed (target dirs are kept) and
    /// the environment is reset to [`DEFAULT_GREETING`] alone. Files already equal are not
    /// touched, so their timestamps (and the stat cache's view of them) stay as they were.
    pub fn reset_to_base(&mut self) {
        sync_tree(&fixture_source(), &self.root);
        self.env = BTreeMap::from([("FIXTURE_GREETING".to_string(), DEFAULT_GREETING.to_string())]);
    }

    /// Writes raw bytes to a file of the checkout.
    pub fn write_bytes(&self, rel: &str, contents: &[u8]) {
        let path = self.path(rel);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Reads raw bytes of a file of the checkout.
    pub fn read_bytes(&self, rel: &str) -> Vec<u8> {
        let path = self.path(rel);
        fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Replaces every occurrence of `from` with `to`; panics unless there are exactly
    /// `times` of them.
    pub fn edit_all(&self, rel: &str, from: &str, to: &str, times: usize) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            times,
            "{rel} must contain {from:?} exactly {times} times"
        );
        self.write(rel, &text.replace(from, to));
    }

    /// Builds with plain cargo into `<checkout>/target-ref` and returns what
    /// `<profile_dir>/<bin>` prints (see [`Workspace::reference_output`]).
    pub fn reference_output_profile(&self, extra: &[&str], profile_dir: &str, bin: &str) -> String {
        let target = self.root.join(REFERENCE_TARGET);
        let target_str = target.to_str().expect("sandbox paths are UTF-8");
        let mut args = vec!["build", "--locked", "--target-dir", target_str];
        args.extend_from_slice(extra);
        self.plain(&args).run();
        self.run_bin_profile(&target, profile_dir, bin, &[])
    }

    /// The one file in `target/debug/deps` whose name starts with `prefix` and ends with
    /// `suffix` (e.g. `libfixture_core-` and `.rlib`).
    pub fn deps_file(&self, prefix: &str, suffix: &str) -> PathBuf {
        let deps = self.target_dir().join("debug/deps");
        let found: Vec<PathBuf> = fs::read_dir(&deps)
            .unwrap_or_else(|e| panic!("read {}: {e}", deps.display()))
            .map(|e| e.expect("read a deps entry").path())
            .filter(|p| {
                let name = p.file_name().and_then(OsStr::to_str).unwrap_or_default();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one {prefix}*{suffix} in {}: {found:?}",
            deps.display()
        );
        found.into_iter().next().expect("one file")
    }
}

/// Makes `to` hold exactly the files of `from` (target dirs and `.git` left out on both
/// sides): differing files are rewritten in place, missing ones created, extra ones removed.
fn sync_tree(from: &Path, to: &Path) {
    let skipped = |name: &str| name == "target" || name.starts_with("target-") || name == ".git";
    let mut wanted = BTreeSet::new();
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("read a fixture dir entry");
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        wanted.insert(name.clone());
        let dest = to.join(&name);
        if entry.file_type().expect("stat a fixture entry").is_dir() {
            fs::create_dir_all(&dest).unwrap_or_else(|e| panic!("create {}: {e}", dest.display()));
            sync_tree(&entry.path(), &dest);
        } else {
            let bytes = fs::read(entry.path()).expect("read a fixture file");
            if fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
                fs::write(&dest, &bytes)
                    .unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
            }
        }
    }
    for entry in fs::read_dir(to).unwrap_or_else(|e| panic!("read {}: {e}", to.display())) {
        let entry = entry.expect("read a checkout dir entry");
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) || wanted.contains(&name) {
            continue;
        }
        let path = entry.path();
        if entry.file_type().expect("stat a checkout entry").is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}

/// The events of one crate (by `crate_name`).
pub fn of_crate(events: &[BuildEvent], name: &str) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|event| crate_name(event) == name)
        .cloned()
        .collect()
}

/// The events that ran the compiler (`compiler_runs` > 0).
pub fn compiled(events: &[BuildEvent]) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|event| event.compiler_runs > 0)
        .cloned()
        .collect()
}

/// The lines kache itself printed (`kache: ...`) in a command's stderr.
pub fn kache_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.trim_start().starts_with("kache:"))
        .map(str::to_string)
        .collect()
}

/// cargo's stderr, for assertion messages.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// --- kache's own commands -------------------------------------------------------------

/// `kache <args>` against `cache_dir`, with no `KACHE_*` setting or config file from the
/// outside. Returns whatever happened.
pub fn kache_command(cache_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(kache_bin_under_test());
    cmd.args(args).stdin(std::process::Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("KACHE_")) {
            cmd.env_remove(key);
        }
    }
    cmd.env("KACHE_CONFIG", "/dev/null");
    cmd.env("KACHE_DIR", cache_dir);
    cmd.output()
        .unwrap_or_else(|e| panic!("run kache {args:?}: {e}"))
}

/// The kache binary itself (for its commands; a `KACHE_E2E_WRAPPER` stand-in has none).
pub fn kache_bin_under_test() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kache"))
}

/// What `kache verify --json [--repair]` found.
#[derive(Debug)]
pub struct Verified {
    /// Exit code 0: no problem left.
    pub clean: bool,
    pub report: Value,
    pub stderr: String,
}

impl Verified {
    /// The length of a list field of the report (`corrupt_blobs`, `orphan_blobs`, ...).
    pub fn len(&self, field: &str) -> usize {
        self.report[field]
            .as_array()
            .unwrap_or_else(|| panic!("verify report has no list `{field}`: {}", self.report))
            .len()
    }

    /// A list field of the report as strings.
    pub fn list(&self, field: &str) -> BTreeSet<String> {
        self.report[field]
            .as_array()
            .unwrap_or_else(|| panic!("verify report has no list `{field}`: {}", self.report))
            .iter()
            .map(|v| v.as_str().expect("hashes and keys are strings").to_string())
            .collect()
    }

    /// `wrong_refcounts`.
    pub fn wrong_refcounts(&self) -> u64 {
        self.report["wrong_refcounts"]
            .as_u64()
            .unwrap_or_else(|| panic!("verify report has no `wrong_refcounts`: {}", self.report))
    }

    /// Panics unless the store has no corrupt or missing blob, no damaged entry and no
    /// wrong reference count. Orphan blobs (garbage a crash or a full disk may leave, which
    /// `gc` collects) are allowed.
    pub fn assert_consistent(&self, context: &str) {
        assert!(
            self.len("corrupt_blobs") == 0
                && self.len("missing_blobs") == 0
                && self.len("damaged_entries") == 0
                && self.wrong_refcounts() == 0,
            "{context}: kache verify found an inconsistent store:\n{:#}",
            self.report
        );
    }

    /// Panics unless `kache verify` found nothing at all and exited 0.
    pub fn assert_clean(&self, context: &str) {
        self.assert_consistent(context);
        assert!(
            self.clean && self.len("orphan_blobs") == 0,
            "{context}: kache verify is not clean (exit 0, no orphan):\n{:#}\n{}",
            self.report,
            self.stderr
        );
    }
}

/// Runs `kache verify --json` (with `--repair` when asked).
pub fn verify(cache_dir: &Path, repair: bool) -> Verified {
    let mut args = vec!["verify", "--json"];
    if repair {
        args.push("--repair");
    }
    let output = kache_command(cache_dir, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "kache verify --json printed no JSON report ({e}; {})\n--- stdout\n{stdout}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "kache verify must exit 0 (clean) or 1 (problems left), got {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Verified {
        clean: code == Some(0),
        report,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// --- the store on disk ----------------------------------------------------------------

/// Whether an automatic gc holds its lock right now.
pub fn auto_gc_running(cache: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("gc.lock"))
    else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when `f` is dropped.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// blake3 of a file, lowercase hex: a blob's name.
pub fn content_hash(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    blake3::hash(&bytes).to_hex().to_string()
}

/// Where the store keeps the blob with these contents: `<cache>/blobs/<2 hex>/<hash>`.
pub fn blob_path(cache_dir: &Path, hash: &str) -> PathBuf {
    cache_dir.join("blobs").join(&hash[..2]).join(hash)
}

/// The blob holding the same bytes as `file` (which must be in the store).
pub fn blob_of(cache_dir: &Path, file: &Path) -> PathBuf {
    let blob = blob_path(cache_dir, &content_hash(file));
    assert!(
        blob.is_file(),
        "{} is not in the store (no blob {})",
        file.display(),
        blob.display()
    );
    blob
}

/// Every file in the blob directory.
pub fn blob_files(cache_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(fans) = fs::read_dir(cache_dir.join("blobs")) else {
        return out;
    };
    for fan in fans.flatten() {
        if let Ok(files) = fs::read_dir(fan.path()) {
            out.extend(files.flatten().map(|f| f.path()));
        }
    }
    out.sort();
    out
}

/// Panics unless every blob file's contents hash to its name.
pub fn assert_blobs_intact(cache_dir: &Path, context: &str) {
    for blob in blob_files(cache_dir) {
        let name = blob
            .file_name()
            .and_then(OsStr::to_str)
            .expect("blob names are UTF-8")
            .to_string();
        assert_eq!(
            content_hash(&blob),
            name,
            "{context}: blob {} no longer holds what it was stored with",
            blob.display()
        );
    }
}

/// The inode number of a file (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

// --- filesystems mounted for a test (needs root) ----------------------------------------

/// A filesystem mounted for one test; unmounted when dropped. Mounting needs root (and a
/// kernel that lets this process mount); constructors return `Err` with the reason when it
/// cannot, so the caller can skip with a clear message.
pub struct Mount {
    point: PathBuf,
    /// Holds the image file of a loop-mounted filesystem; removed after unmounting.
    _image_dir: Option<TempDir>,
}

impl Mount {
    /// A tmpfs of `size` (as `mount -o size=` takes it, e.g. `8m`) at `point` (created).
    pub fn tmpfs(point: &Path, size: &str) -> Result<Mount, String> {
        fs::create_dir_all(point).map_err(|e| format!("create {}: {e}", point.display()))?;
        run_tool(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                path_str(point),
            ],
        )?;
        Ok(Mount {
            point: point.to_path_buf(),
            _image_dir: None,
        })
    }

    /// Binds `point` onto itself read-only: nobody, root included, can write below it.
    pub fn read_only_bind(point: &Path) -> Result<Mount, String> {
        run_tool("mount", &["--bind", path_str(point), path_str(point)])?;
        let mount = Mount {
            point: point.to_path_buf(),
            _image_dir: None,
        };
        mount.remount("bind,ro")?;
        Ok(mount)
    }

    /// A fresh `fstype` filesystem (`mkfs.<fstype>`) in a sparse image of `size_mb` MiB,
    /// loop-mounted at `point` (created).
    pub fn image(fstype: &str, size_mb: u64, point: &Path) -> Result<Mount, String> {
        let image_dir = tempfile::Builder::new()
            .prefix("kache-e2e-image-")
            .tempdir()
            .map_err(|e| format!("create a temp dir for the image: {e}"))?;
        let image = image_dir.path().join(format!("{fstype}.img"));
        let file = fs::File::create(&image).map_err(|e| format!("create the image: {e}"))?;
        file.set_len(size_mb << 20)
            .map_err(|e| format!("size the image: {e}"))?;
        drop(file);
        let force = if fstype.starts_with("ext") {
            "-F"
        } else {
            "-f"
        };
        run_tool(&format!("mkfs.{fstype}"), &["-q", force, path_str(&image)])?;
        fs::create_dir_all(point).map_err(|e| format!("create {}: {e}", point.display()))?;
        run_tool("mount", &["-o", "loop", path_str(&image), path_str(point)])?;
        Ok(Mount {
            point: point.to_path_buf(),
            _image_dir: Some(image_dir),
        })
    }

    pub fn path(&self) -> &Path {
        &self.point
    }

    /// `mount -o remount,<options>`.
    pub fn remount(&self, options: &str) -> Result<(), String> {
        run_tool(
            "mount",
            &["-o", &format!("remount,{options}"), path_str(&self.point)],
        )
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let point = path_str(&self.point).to_string();
        if run_tool("umount", &[&point]).is_err()
            && let Err(e) = run_tool("umount", &["-l", &point])
        {
            eprintln!("cannot unmount {point}: {e}");
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Runs a system tool; `Err` with its stderr when it cannot run or fails.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// How a test turns a stored entry (its JSON description, from a remote bundle or an index
/// row) into an attack: each keeps the entry's key and valid blobs.
pub enum EntryAttack<'a> {
    /// One more output, named by an absolute path outside the target dir, setuid.
    OutputAt(&'a Path),
    /// A dep-info name that climbs out of the out dir.
    DepInfoNamed(&'a str),
    /// Every output recorded setuid, setgid, sticky and writable by everyone.
    EveryModePrivileged,
}

/// Applies `attack` to the entry description `entry`.
pub fn attack_entry(entry: &mut Value, attack: &EntryAttack) {
    let outputs = entry["outputs"].as_array_mut().expect("entry outputs");
    match attack {
        EntryAttack::OutputAt(path) => {
            let mut evil = outputs.first().expect("an output").clone();
            evil["name"] = Value::from(path_str(path));
            evil["mode"] = Value::from(0o104755);
            outputs.push(evil);
        }
        EntryAttack::DepInfoNamed(name) => {
            entry["depinfo"][0] = Value::from(*name);
        }
        EntryAttack::EveryModePrivileged => {
            for out in outputs {
                out["mode"] = Value::from(0o107777);
            }
        }
    }
}

/// Files under `dir` (not following symlinks) with a setuid, setgid or sticky bit, or
/// writable by group or others.
pub fn privileged_files(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && meta.permissions().mode() & 0o7022 != 0 {
                found.push(format!(
                    "{} {:o}",
                    e.path().display(),
                    meta.permissions().mode()
                ));
            }
        }
    }
    found
}
