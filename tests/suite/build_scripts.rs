//! Build-script runs through kache (src/buildscript/): a run of a registry or git package's
//! build script is stored and restored in a fresh target dir, relocated checkout or target
//! dir included; every declared input, the C toolchain and the features make a different
//! run; runs that cannot be restored faithfully are not stored; and the launcher runs the
//! real script exactly as cargo would when kache is off, absent or crashing.
//!
//! The fixture is written by the test: a package `bsdep` whose build script compiles C with
//! `$CC` into `OUT_DIR`, bakes its inputs into generated Rust and declares them; and an app
//! printing what `bsdep` was built with. Each case compares the app's output with a build of
//! the same sources and environment without kache, and checks the run's event.

use crate::support_s3;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const DEP_MANIFEST: &str = r#"[package]
name = "bsdep"
version = "0.1.0"
edition = "2021"
links = "bsdep"

[features]
extra = []
undeclared = []
"#;

const DEP_BUILD: &str = r#"use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let undeclared = env::var_os("CARGO_FEATURE_UNDECLARED").is_some();
    if !undeclared {
        for f in ["build.rs", "data.txt", "csrc"] {
            println!("cargo:rerun-if-changed={f}");
        }
        for v in ["BSDEP_MODE", "BSDEP:ODD", "BSDEP_FAIL", "BSDEP_OUTSIDE", "BSDEP_PATHFILE", "BSDEP_WATCH", "BSDEP_ABORT", "BSDEP_NAME_OTHER", "BSDEP_LINKS"] {
            println!("cargo:rerun-if-env-changed={v}");
        }
    }
    if let Some(dir) = env::var_os("BSDEP_WATCH") {
        println!("cargo:rerun-if-changed={}", PathBuf::from(dir).display());
    }
    if env::var_os("BSDEP_NAME_OTHER").is_some() {
        println!("cargo:rustc-link-search=native={}/../../other-1/out/lib", env::var("OUT_DIR").unwrap());
    }
    if env::var_os("BSDEP_ABORT").is_some() {
        std::process::abort();
    }
    if env::var_os("BSDEP_FAIL").is_some() {
        eprintln!("bsdep: failing on purpose");
        println!("bsdep-stdout-before-failing");
        std::process::exit(3);
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let cflags = env::var("CFLAGS").unwrap_or_default();
    let version = Command::new(&cc).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or("").to_string();
    let lib_dir = match env::var_os("BSDEP_OUTSIDE") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        Some(_) => out.join("../../../bsdep-shared"),
        None => out.join("native"),
    };
    fs::create_dir_all(&lib_dir).unwrap();
    match env::var("BSDEP_PATHFILE").as_deref() {
        Ok("latin1") => {
            let mut text = b"caf\xe9 ".to_vec();
            text.extend_from_slice(out.display().to_string().as_bytes());
            fs::write(out.join("where.txt"), text).unwrap();
        }
        Ok(_) => fs::write(out.join("where.txt"), out.display().to_string()).unwrap(),
        Err(_) => {}
    }
    let ok = Command::new(&cc)
        .args(cflags.split_whitespace())
        .args(["-c", "csrc/add.c", "-o"])
        .arg(out.join("add.o"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc failed");
    let ok = Command::new("ar")
        .arg("crs")
        .arg(lib_dir.join("libbsadd.a"))
        .arg(out.join("add.o"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "ar failed");
    let info = format!(
        "mode={};odd={};data={};extra={};cc={};cflags={}",
        env::var("BSDEP_MODE").map(|v| format!("set:{v}")).unwrap_or_else(|_| "unset".into()),
        env::var("BSDEP:ODD").unwrap_or_default(),
        fs::read_to_string("data.txt").unwrap().trim(),
        env::var_os("CARGO_FEATURE_EXTRA").is_some(),
        version,
        cflags,
    );
    fs::write(out.join("gen.rs"), format!("pub const INFO: &str = {info:?};\n")).unwrap();
    // What install trees hold (OpenSSL's leaves an empty dir): links, empty dirs.
    let link = |target: PathBuf, at: &str| std::os::unix::fs::symlink(target, out.join(at)).unwrap();
    match env::var("BSDEP_LINKS").as_deref() {
        Ok("inside") => {
            fs::create_dir_all(out.join("empty-dir")).unwrap();
            fs::create_dir_all(out.join("inc")).unwrap();
            link("../gen.rs".into(), "inc/gen-link.rs");
            link("native".into(), "lib64");
        }
        Ok("absolute") => link(out.join("gen.rs"), "abs-link"),
        Ok("up") => link("../../..".into(), "up-link"),
        _ => {}
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=bsadd");
    println!("cargo:include={}", out.display());
    eprintln!("bsdep: build script stderr");
}
"#;

const DEP_LIB: &str = r#"include!(concat!(env!("OUT_DIR"), "/gen.rs"));
extern "C" {
    fn bs_add(a: i32, b: i32) -> i32;
}
pub fn describe() -> String {
    format!("{INFO};sum={}", unsafe { bs_add(2, 3) })
}
"#;

const DEP_C: &str = "#ifndef ADD_EXTRA\n#define ADD_EXTRA 0\n#endif\nint bs_add(int a, int b) { return a + b + ADD_EXTRA; }\n";

const APP_MAIN: &str = "fn main() { println!(\"{}\", bsdep::describe()); }\n";

/// A sandbox with the `bsdep` package, an app depending on it, and a private `CARGO_HOME`.
struct Fixture {
    sandbox: Sandbox,
    /// Variables set on every cargo run (kache or not).
    env: Vec<(String, String)>,
}

/// How the app depends on `bsdep`.
#[derive(Clone, Copy, PartialEq)]
enum Dep {
    /// A git dependency (`git = "file://…"`): its runs are cached by default.
    Git,
    /// A path dependency: cached only with `KACHE_BUILD_SCRIPTS=all`.
    Path,
}

impl Fixture {
    fn new(dep: Dep) -> Fixture {
        let sandbox = Sandbox::new();
        let root = sandbox.root().to_owned();
        let dep_dir = root.join("bsdep");
        write(&dep_dir.join("Cargo.toml"), DEP_MANIFEST);
        write(&dep_dir.join("build.rs"), DEP_BUILD);
        write(&dep_dir.join("src/lib.rs"), DEP_LIB);
        write(&dep_dir.join("csrc/add.c"), DEP_C);
        write(&dep_dir.join("data.txt"), "data-1\n");
        let dependency = match dep {
            Dep::Git => {
                git(&dep_dir, &["init", "-q", "-b", "main"]);
                git(&dep_dir, &["add", "."]);
                git(&dep_dir, &["commit", "-q", "-m", "bsdep"]);
                format!("{{ git = \"file://{}\" }}", dep_dir.display())
            }
            Dep::Path => "{ path = \"../bsdep\" }".to_owned(),
        };
        let fixture = Fixture {
            sandbox,
            env: vec![(
                "CARGO_HOME".to_owned(),
                root.join("cargo-home").display().to_string(),
            )],
        };
        fixture.write_app("app", &dependency);
        fixture
    }

    fn root(&self) -> &Path {
        self.sandbox.root()
    }

    fn write_app(&self, at: &str, dependency: &str) {
        let app = self.root().join(at);
        write(
            &app.join("Cargo.toml"),
            &format!(
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [features]\nextra = [\"bsdep/extra\"]\nundeclared = [\"bsdep/undeclared\"]\n\n\
                 [dependencies]\nbsdep = {dependency}\n"
            ),
        );
        write(&app.join("src/main.rs"), APP_MAIN);
    }

    /// `cargo build` of the app at `app` into `target`, through kache or not.
    fn cargo(&self, app: &str, target: &str, kache: bool, extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(cargo_program());
        cmd.args(["build", "--target-dir"])
            .arg(self.root().join(target))
            .current_dir(self.root().join(app));
        for (key, _) in std::env::vars_os() {
            if let Some(key) = key.to_str()
                && (is_scrubbed(key) || key.starts_with("BSDEP") || key == "CC" || key == "CFLAGS")
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("CARGO_INCREMENTAL", "0")
            .env("CARGO_TERM_COLOR", "never");
        if kache {
            cmd.env("RUSTC_WRAPPER", kache_bin())
                .env("KACHE_DIR", self.sandbox.cache_dir())
                .env("KACHE_CONFIG", "/dev/null");
        } else {
            cmd.env("RUSTC_WRAPPER", "");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            // `("--", arg)` is a cargo argument rather than a variable.
            if *k == "--" {
                cmd.arg(v);
            } else {
                cmd.env(k, v);
            }
        }
        cmd
    }

    /// Builds and runs the app; returns what it printed. Panics if the build fails.
    fn build_run(&self, app: &str, target: &str, kache: bool, env: &[(&str, &str)]) -> String {
        let out = self
            .cargo(app, target, kache, env)
            .output()
            .expect("spawn cargo");
        assert!(
            out.status.success(),
            "cargo build (kache: {kache}, env {env:?}) in {app} → {target} failed\n{}\n--- events\n{}",
            stderr_of(&out),
            describe(&self.sandbox.events())
        );
        self.run_app(target)
    }

    fn run_app(&self, target: &str) -> String {
        let bin = self.root().join(target).join("debug/app");
        let out = Command::new(&bin).output().expect("run the app");
        assert!(
            out.status.success(),
            "{} failed: {}",
            bin.display(),
            stderr_of(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Builds through kache into a fresh target dir and without kache into a reference target
    /// dir with the same env; asserts the outputs are equal and returns the build-script run
    /// events of the kache build.
    fn case(&self, target: &str, env: &[(&str, &str)]) -> (String, Vec<BuildEvent>) {
        let cursor = self.sandbox.cursor();
        let got = self.build_run("app", target, true, env);
        let runs = runs(&cursor.since());
        let reference = self.build_run("app", &format!("{target}-ref"), false, env);
        assert_eq!(
            got, reference,
            "kache build of {target} differs from the reference"
        );
        (got, runs)
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("run git")
        .success();
    assert!(ok, "git {args:?} failed");
}

/// The crate type of a build-script run's event.
const RUN_TYPE: &str = "build-script-run";

/// The build-script run events among `events`.
fn runs(events: &[BuildEvent]) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|e| e.crate_types.first().map(String::as_str) == Some(RUN_TYPE))
        .cloned()
        .collect()
}

/// The single run event's result; panics unless there is exactly one.
fn one_run(runs: &[BuildEvent]) -> Outcome {
    assert_eq!(
        runs.len(),
        1,
        "expected one build-script run: {}",
        describe(runs)
    );
    runs[0].result
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read dir").flatten() {
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The `OUT_DIR` of bsdep's run under `target`.
fn bsdep_out_dir(target: &Path) -> PathBuf {
    fs::read_dir(target.join("debug/build"))
        .expect("build dir")
        .flatten()
        .map(|e| e.path().join("out"))
        .find(|p| p.join("gen.rs").is_file())
        .expect("bsdep's OUT_DIR")
}

#[test]
fn git_dependency_run_is_restored_in_fresh_and_relocated_target_dirs() {
    let f = Fixture::new(Dep::Git);
    let (first, runs) = f.case("t1", &[]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some(), "the run is stored");
    assert!(
        first.contains("mode=unset") && first.ends_with("sum=5"),
        "{first}"
    );

    // A second build in the same target dir does nothing: cargo sees every unit fresh.
    let cursor = f.sandbox.cursor();
    let out = f.cargo("app", "t1", true, &[]).output().expect("cargo");
    assert!(out.status.success());
    assert!(
        !stderr_of(&out).contains("Compiling"),
        "{}",
        stderr_of(&out)
    );
    assert!(cursor.since().is_empty(), "{}", describe(&cursor.since()));

    // A fresh target dir: the run is restored, the binary links the restored C library.
    let (again, runs) = f.case("t2", &[]);
    assert_eq!(one_run(&runs), Outcome::LocalHit);
    assert_eq!(runs[0].compiler_runs, 0);
    assert_eq!(again, first);
    let out_dir = bsdep_out_dir(&f.root().join("t2"));
    for file in files_under(&out_dir) {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(&file).expect("meta").nlink(),
            1,
            "{} is linked",
            file.display()
        );
    }
    // …and cargo sees the restored run as fresh too.
    let cursor = f.sandbox.cursor();
    let out = f.cargo("app", "t2", true, &[]).output().expect("cargo");
    assert!(out.status.success());
    assert!(
        !stderr_of(&out).contains("Compiling"),
        "{}",
        stderr_of(&out)
    );
    assert!(cursor.since().is_empty(), "{}", describe(&cursor.since()));

    // Another checkout of the app at another depth, its target dir elsewhere: link-search
    // paths are rewritten for the new OUT_DIR, so the binary links and runs.
    f.write_app(
        "elsewhere/deeper/app",
        &format!(
            "{{ git = \"file://{}\" }}",
            f.root().join("bsdep").display()
        ),
    );
    fs::copy(
        f.root().join("app/Cargo.lock"),
        f.root().join("elsewhere/deeper/app/Cargo.lock"),
    )
    .expect("copy the lockfile");
    let cursor = f.sandbox.cursor();
    let moved = f.build_run("elsewhere/deeper/app", "other/t3", true, &[]);
    assert_eq!(one_run(&runs_of(&cursor)), Outcome::LocalHit);
    assert_eq!(moved, first);
}

fn runs_of(cursor: &EventCursor) -> Vec<BuildEvent> {
    runs(&cursor.since())
}

/// Writes the `CC` stand-in: a script that reports `version` and compiles with `cc`.
fn write_cc(f: &Fixture, version: &str) -> String {
    let path = f.root().join("tools/mycc");
    write(
        &path,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo {version}; exit 0; fi\nexec cc \"$@\"\n"
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

#[test]
fn git_dependency_change_matrix() {
    let f = Fixture::new(Dep::Git);
    let (base, runs) = f.case("base", &[]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // Another `PATH` string reaching the same tools: the same run (tools are keyed by
    // content, so two machines with the same toolchain share runs).
    let empty_bin = f.root().join("empty-bin");
    fs::create_dir_all(&empty_bin).expect("mkdir");
    let path = format!(
        "{}:{}",
        empty_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (got, runs) = f.case("path-string", &[("PATH", path.as_str())]);
    assert_eq!(one_run(&runs), Outcome::LocalHit, "{}", describe(&runs));
    assert_eq!(got, base);
    let cc = write_cc(&f, "mycc-1");
    // (name, env and arguments, text the output must contain)
    let cases: &[(&str, Env, &str)] = &[
        ("env-set", &[("BSDEP_MODE", "a")], "mode=set:a"),
        ("env-empty", &[("BSDEP_MODE", "")], "mode=set:;"),
        ("odd-name", &[("BSDEP:ODD", "x")], "odd=x"),
        ("feature", &[("--", "--features=extra")], "extra=true"),
        ("cc", &[("CC", cc.as_str())], "cc=mycc-1"),
        ("cflags", &[("CFLAGS", "-DADD_EXTRA=1")], "sum=6"),
    ];
    for (name, env, wanted) in cases {
        let (got, runs) = f.case(name, env);
        assert_eq!(
            one_run(&runs),
            Outcome::Miss,
            "{name}: no stored run may stand in"
        );
        assert!(got.contains(wanted), "{name}: {got}");
        assert_ne!(got, base, "{name}");
    }
    // The compiler changed behind the same `CC`: identified by content, so a new run.
    write_cc(&f, "mycc-2");
    let (got, runs) = f.case("cc-upgraded", &[("CC", cc.as_str())]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(got.contains("cc=mycc-2"), "{got}");
    // Unset again (and every other input back at base): the first run is restored.
    let (got, runs) = f.case("back", &[]);
    assert_eq!(one_run(&runs), Outcome::LocalHit);
    assert_eq!(got, base);
}

/// Variables (and `("--", arg)` cargo arguments) for one build.
type Env<'a> = &'a [(&'a str, &'a str)];

/// A path dependency with `KACHE_BUILD_SCRIPTS=all`.
const ALL: (&str, &str) = ("KACHE_BUILD_SCRIPTS", "all");

#[test]
fn path_packages_are_cached_only_when_asked() {
    let f = Fixture::new(Dep::Path);
    let cursor = f.sandbox.cursor();
    f.build_run("app", "default", true, &[]);
    assert!(
        runs_of(&cursor).is_empty(),
        "a path package's script runs as today"
    );
    assert!(
        !f.root()
            .join("default/debug/build")
            .read_dir()
            .expect("dir")
            .flatten()
            .any(|e| e
                .path()
                .join(kache::buildscript::launcher::REAL_NAME)
                .exists()),
        "no launcher for a path package by default"
    );

    let (base, runs) = f.case("base", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // A declared file: its content makes a new run, its mtime alone does not.
    write(&f.root().join("bsdep/data.txt"), "data-2\n");
    let (changed, runs) = f.case("data", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(changed.contains("data=data-2"), "{changed}");
    // `kache explain` names the declared file that changed.
    let explained = kache_command(f.sandbox.cache_dir(), &["explain", "bsdep:build-script"]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.status.success(), "{}", stderr_of(&explained));
    assert!(text.contains("data.txt"), "{text}");
    write(&f.root().join("bsdep/data.txt"), "data-2\n");
    let (same, runs) = f.case("data-mtime", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::LocalHit);
    assert_eq!(same, changed);
    // build.rs edited.
    let build = f.root().join("bsdep/build.rs");
    let text = fs::read_to_string(&build).expect("read");
    write(&build, &text.replace("\"mode={};", "\"MODE={};"));
    let (edited, runs) = f.case("build-rs", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(edited.contains("MODE=unset"), "{edited}");
    // A script that declares nothing, then a file of its package changes.
    let undeclared: &[(&str, &str)] = &[ALL, ("--", "--features=undeclared")];
    let (_, runs) = f.case("undeclared", undeclared);
    assert_eq!(one_run(&runs), Outcome::Miss);
    write(
        &f.root().join("bsdep/csrc/add.c"),
        &DEP_C.replace("a + b", "a + b + 10"),
    );
    let (got, runs) = f.case("undeclared-file", undeclared);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(got.ends_with("sum=15"), "{got}");
    let _ = base;
}

#[test]
fn runs_that_cannot_be_restored_are_not_stored() {
    let f = Fixture::new(Dep::Path);
    // A failing script: same exit status and output as without kache, nothing stored.
    for _ in 0..2 {
        let cursor = f.sandbox.cursor();
        let env: &[(&str, &str)] = &[ALL, ("BSDEP_FAIL", "1")];
        let got = f.cargo("app", "fail", true, env).output().expect("cargo");
        let reference = f
            .cargo("app", "fail-ref", false, env)
            .output()
            .expect("cargo");
        assert!(!got.status.success() && !reference.status.success());
        for out in [&got, &reference] {
            let err = stderr_of(out);
            assert!(err.contains("exit status: 3"), "{err}");
            assert!(err.contains("failing on purpose"), "{err}");
            assert!(err.contains("bsdep-stdout-before-failing"), "{err}");
        }
        let runs = runs_of(&cursor);
        assert_eq!(one_run(&runs), Outcome::Miss);
        assert_eq!(runs[0].exit_code, 3);
        assert!(runs[0].cache_key.is_none());
        fs::remove_dir_all(f.root().join("fail")).expect("rm");
        fs::remove_dir_all(f.root().join("fail-ref")).expect("rm");
    }
    // A script that writes a library outside the target dir and names it: runs, is not
    // stored.
    let far = f.root().join("far-lib");
    let far = far.display().to_string();
    for target in ["far-1", "far-2"] {
        let (got, runs) = f.case(target, &[ALL, ("BSDEP_OUTSIDE", &far)]);
        assert_eq!(one_run(&runs), Outcome::Miss);
        assert!(runs[0].cache_key.is_none(), "{}", describe(&runs));
        assert_eq!(
            runs[0].passthrough_reason.as_deref(),
            Some("names_path_written_outside_target_dir")
        );
        assert!(got.ends_with("sum=5"));
    }
    // A text file in OUT_DIR that names OUT_DIR: restored elsewhere with the new path.
    let env: Env = &[ALL, ("BSDEP_PATHFILE", "1")];
    let (_, runs) = f.case("pf-1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    let (_, runs) = f.case("pf-2", env);
    assert_eq!(one_run(&runs), Outcome::LocalHit);
    let out_dir = bsdep_out_dir(&f.root().join("pf-2"));
    let written = fs::read_to_string(out_dir.join("where.txt")).expect("where.txt");
    assert_eq!(
        Path::new(&written),
        out_dir,
        "the path is this target dir's"
    );
    // …unless it is not UTF-8 text: then it is restored only at the same place.
    let env: Env = &[ALL, ("BSDEP_PATHFILE", "latin1")];
    let (_, runs) = f.case("pl-1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    let (_, runs) = f.case("pl-2", env);
    assert_eq!(
        one_run(&runs),
        Outcome::Miss,
        "another target dir must not get pl-1's where.txt"
    );
    fs::remove_dir_all(f.root().join("pl-1")).expect("rm");
    let (_, runs) = f.case("pl-1", env);
    assert_eq!(one_run(&runs), Outcome::LocalHit, "the same place again");
    let out_dir = bsdep_out_dir(&f.root().join("pl-1"));
    let written = fs::read(out_dir.join("where.txt")).expect("where.txt");
    assert!(written.ends_with(out_dir.as_os_str().as_encoded_bytes()));
    // OUT_DIR not empty when the script starts (cargo reruns it over its old output).
    f.build_run("app", "reuse", true, &[ALL]);
    write(&f.root().join("bsdep/data.txt"), "data-3\n");
    let cursor = f.sandbox.cursor();
    let got = f.build_run("app", "reuse", true, &[ALL]);
    assert!(got.contains("data=data-3"), "{got}");
    let runs = runs_of(&cursor);
    assert_eq!(one_run(&runs), Outcome::Passthrough);
    assert_eq!(
        runs[0].passthrough_reason.as_deref(),
        Some("out_dir_not_empty")
    );
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash hook: cargo test --features fault-injection"
)]
fn launcher_runs_the_real_script_without_kache() {
    let f = Fixture::new(Dep::Path);
    f.build_run("app", "t", true, &[ALL]);
    let real = files_under(&f.root().join("t/debug/build"))
        .into_iter()
        .find(|p| p.ends_with(kache::buildscript::launcher::REAL_NAME));
    assert!(real.is_some(), "the launcher is installed");
    let expect = |env: &[(&str, &str)], target: &str| {
        f.build_run("app", &format!("{target}-ref"), false, env)
    };
    // Plain cargo over the target dir (kache gone); a variable with `:` in its name.
    let env: &[(&str, &str)] = &[("BSDEP:ODD", "plain")];
    let cursor = f.sandbox.cursor();
    let got = f.build_run("app", "t", false, env);
    assert_eq!(got, expect(env, "plain"));
    assert!(got.contains("odd=plain"), "{got}");
    assert!(runs_of(&cursor).is_empty());
    // kache disabled.
    let env: &[(&str, &str)] = &[ALL, ("KACHE_DISABLE", "1"), ("BSDEP:ODD", "disabled")];
    let got = f.build_run("app", "t", true, env);
    assert!(got.contains("odd=disabled"), "{got}");
    assert!(runs_of(&cursor).is_empty());
    // kache crashing before it runs the script, and while restoring a stored run.
    let env: &[(&str, &str)] = &[
        ALL,
        ("BSDEP:ODD", "crash"),
        ("KACHE_TEST_CRASH_AT", "build_script_before_run"),
    ];
    let out = f.cargo("app", "crash", true, env).output().expect("cargo");
    assert!(out.status.success(), "{}", stderr_of(&out));
    // cargo keeps a script's stderr in the run's `stderr` file.
    let warned = files_under(&f.root().join("crash/debug/build"))
        .into_iter()
        .filter(|p| p.ends_with("stderr"))
        .any(|p| {
            fs::read_to_string(p).is_ok_and(|t| t.contains("running the build script directly"))
        });
    assert!(warned, "the launcher says it ran the script itself");
    assert!(f.run_app("crash").contains("odd=crash"));
    let env: &[(&str, &str)] = &[ALL, ("KACHE_TEST_CRASH_AT", "build_script_restored")];
    let cursor = f.sandbox.cursor();
    let out = f.cargo("app", "fresh", true, env).output().expect("cargo");
    assert!(
        runs_of(&cursor).is_empty(),
        "kache died before logging the hit"
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(f.run_app("fresh"), expect(&[], "fresh"));
}

#[test]
fn a_git_dependency_run_is_shared_through_the_remote() {
    let server = support_s3::MotoServer::start("kache-bs");
    let remote = server.kache_env();
    let f = Fixture::new(Dep::Git);
    let mut env: Vec<(&str, &str)> = remote.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A link and an empty dir in OUT_DIR travel too, as blobs (a bundle holds no tar link).
    env.push(("BSDEP_LINKS", "inside"));
    let cursor = f.sandbox.cursor();
    let expected = f.build_run("app", "a", true, &env);
    assert_eq!(one_run(&runs_of(&cursor)), Outcome::Miss);
    let mut push = Command::new(kache_bin_under_test());
    push.args(["sync", "--push"])
        .env("KACHE_DIR", f.sandbox.cache_dir())
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in &env {
        push.env(k, v);
    }
    assert!(push.status().expect("kache sync --push").success());

    // Machine B: its own cache dir, CARGO_HOME (its own clone) and checkout path.
    let b_cache = f.root().join("machine-b/cache");
    let b_home = f.root().join("machine-b/cargo-home");
    fs::create_dir_all(&b_cache).expect("mkdir");
    f.write_app(
        "machine-b/src/app",
        &format!(
            "{{ git = \"file://{}\" }}",
            f.root().join("bsdep").display()
        ),
    );
    fs::copy(
        f.root().join("app/Cargo.lock"),
        f.root().join("machine-b/src/app/Cargo.lock"),
    )
    .expect("copy the lockfile");
    let (b_cache_s, b_home_s) = (b_cache.display().to_string(), b_home.display().to_string());
    let mut b_env = env.clone();
    b_env.push(("KACHE_DIR", &b_cache_s));
    b_env.push(("CARGO_HOME", &b_home_s));
    let got = f.build_run("machine-b/src/app", "machine-b/target", true, &b_env);
    assert_eq!(got, expected);
    let b_runs = runs(&events(&b_cache));
    assert_eq!(
        one_run(&b_runs),
        Outcome::RemoteHit,
        "{}",
        describe(&events(&b_cache))
    );
    assert_eq!(b_runs[0].compiler_runs, 0);
    let out_dir = bsdep_out_dir(&f.root().join("machine-b/target"));
    assert_eq!(
        fs::read_link(out_dir.join("inc/gen-link.rs")).expect("the link"),
        Path::new("../gen.rs")
    );
    assert!(out_dir.join("empty-dir").is_dir());
}

#[test]
fn a_damaged_stored_run_is_dropped_and_the_script_runs() {
    let f = Fixture::new(Dep::Path);
    let (expected, runs) = f.case("t1", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // Damage every blob of the store (the run's OUT_DIR files among them).
    for blob in files_under(&f.sandbox.cache_dir().join("blobs")) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut bytes = fs::read(&blob).expect("read");
        bytes[0] ^= 0xff;
        fs::write(&blob, bytes).expect("write");
    }
    let cursor = f.sandbox.cursor();
    assert_eq!(f.build_run("app", "t2", true, &[ALL]), expected);
    // As for compiles: the damaged run is dropped with one warning, the script runs and its
    // run is stored again, so the next fresh target dir hits.
    assert_healed(&runs_of(&cursor));
    let (got, runs) = f.case("t3", &[ALL]);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
}

/// One run, which found its stored run damaged: dropped with one warning, run and stored
/// again.
fn assert_healed(runs: &[BuildEvent]) {
    assert_eq!(one_run(runs), Outcome::Miss, "{}", describe(runs));
    let warned = runs[0]
        .warning
        .as_deref()
        .is_some_and(|w| w.contains("damaged"));
    assert!(warned, "{}", describe(runs));
    assert!(runs[0].cache_key.is_some(), "stored again");
}

/// The blob of the stored output `name` (the newest run's).
fn blob_of(f: &Fixture, name: &str) -> PathBuf {
    let conn = rusqlite::Connection::open(f.sandbox.cache_dir().join("index.db")).expect("index");
    let hash: String = conn
        .query_row("SELECT blob FROM outputs WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .expect("the output's blob");
    f.sandbox
        .cache_dir()
        .join("blobs")
        .join(&hash[..2])
        .join(&hash)
}

#[test]
fn a_changed_templated_blob_is_detected_and_healed() {
    let f = Fixture::new(Dep::Path);
    let env: Env = &[ALL, ("BSDEP_PATHFILE", "1")];
    let (expected, runs) = f.case("t1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // where.txt names OUT_DIR, so it is stored templated; change its text to another valid
    // template, so only hashing the bytes used tells it from the stored one.
    let blob = blob_of(&f, "where.txt");
    let text = fs::read_to_string(&blob).expect("templated text");
    assert!(text.contains("kache:out"), "templated: {text:?}");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&blob, format!("{text}/../../evil")).expect("write");
    let cursor = f.sandbox.cursor();
    assert_eq!(f.build_run("app", "t2", true, env), expected);
    assert_healed(&runs_of(&cursor));
    let out_dir = bsdep_out_dir(&f.root().join("t2"));
    let written = fs::read_to_string(out_dir.join("where.txt")).expect("where.txt");
    assert_eq!(Path::new(&written), out_dir, "the script's own where.txt");
    // Healed: stored again, restored next time with this target dir's path.
    let (_, runs) = f.case("t3", env);
    assert_eq!(one_run(&runs), Outcome::LocalHit);
    let out_dir = bsdep_out_dir(&f.root().join("t3"));
    let written = fs::read_to_string(out_dir.join("where.txt")).expect("where.txt");
    assert_eq!(Path::new(&written), out_dir);
}

#[test]
fn directory_inputs_outside_the_package_are_never_walked() {
    let f = Fixture::new(Dep::Path);
    let (expected, runs) = f.case("t1", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // A tampered index (or a remote manifest) naming a directory outside the package (here
    // an empty one under CARGO_HOME, with the hash of its true content, so walking it would
    // match): refused, so a miss, the script runs. Bare `${cargo_home}` or `/` would be
    // walked the same way (src/buildscript/key.rs tests them).
    let empty = f.root().join("cargo-home/kache-empty");
    fs::create_dir_all(&empty).expect("mkdir");
    let conn = rusqlite::Connection::open(f.sandbox.cache_dir().join("index.db")).expect("index");
    let inputs: Vec<u8> = conn
        .query_row("SELECT inputs FROM manifests", [], |row| row.get(0))
        .expect("one manifest");
    let mut manifest: serde_json::Value = serde_json::from_slice(&inputs).expect("json manifest");
    let files = manifest["files"].as_array_mut().expect("files");
    let empty_tree = format!("tree:{}", blake3::hash(b"").to_hex());
    files.insert(
        0,
        serde_json::json!({ "path": "${cargo_home}/kache-empty", "hash": empty_tree }),
    );
    conn.execute(
        "UPDATE manifests SET inputs = ?1",
        [serde_json::to_vec(&manifest).expect("json")],
    )
    .expect("tamper");
    drop(conn);
    let cursor = f.sandbox.cursor();
    assert_eq!(f.build_run("app", "t2", true, &[ALL]), expected);
    let runs = runs_of(&cursor);
    assert_eq!(one_run(&runs), Outcome::Miss, "{}", describe(&runs));
    assert!(runs[0].warning.is_none(), "{}", describe(&runs));
    // A script declaring a directory outside its package is run, never recorded.
    let outside = f.root().join("outside-dir");
    fs::create_dir_all(&outside).expect("mkdir");
    write(&outside.join("x.h"), "int x;\n");
    let watch = outside.display().to_string();
    let env: Env = &[ALL, ("BSDEP_WATCH", &watch)];
    for target in ["w1", "w2"] {
        let (_, runs) = f.case(target, env);
        assert_eq!(one_run(&runs), Outcome::Miss, "{}", describe(&runs));
        assert_eq!(
            runs[0].passthrough_reason.as_deref(),
            Some("directory_input_outside_package"),
            "{}",
            describe(&runs)
        );
        assert!(runs[0].cache_key.is_none());
    }
}

#[test]
fn a_script_killed_by_a_signal_is_reported_as_cargo_would() {
    let f = Fixture::new(Dep::Path);
    let env: Env = &[ALL, ("BSDEP_ABORT", "1")];
    let got = f.cargo("app", "sig", true, env).output().expect("cargo");
    let reference = f
        .cargo("app", "sig-ref", false, env)
        .output()
        .expect("cargo");
    for out in [&got, &reference] {
        assert!(!out.status.success());
        let err = stderr_of(out);
        assert!(err.contains("signal: 6, SIGABRT"), "{err}");
    }
    let runs = runs(&f.sandbox.events());
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_none(), "{}", describe(&runs));
}

#[test]
fn the_wrapper_is_recognised_as_kache_by_identity_not_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(Dep::Path);
    // A link with another name: the run is handed over, stored, then restored.
    let bin = f.root().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    let link = bin.join("mycache");
    std::os::unix::fs::symlink(kache_bin(), &link).expect("symlink");
    let link = link.display().to_string();
    let env: Env = &[ALL, ("RUSTC_WRAPPER", &link)];
    let (expected, runs) = f.case("t1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some());
    let (got, runs) = f.case("t2", env);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
    // A wrapper whose name says kache but that is not: cargo reruns the script (a declared
    // variable changed) through the launcher kache installed, which runs it once, itself.
    let impostor = bin.join("not-kache");
    write(&impostor, "#!/bin/sh\nexec \"$@\"\n");
    fs::set_permissions(&impostor, fs::Permissions::from_mode(0o755)).expect("chmod");
    let impostor = impostor.display().to_string();
    let cursor = f.sandbox.cursor();
    let got = f.build_run(
        "app",
        "t2",
        true,
        &[ALL, ("RUSTC_WRAPPER", &impostor), ("BSDEP_MODE", "other")],
    );
    assert!(got.contains("mode=set:other"), "{got}");
    assert!(runs_of(&cursor).is_empty(), "{}", describe(&cursor.since()));
    let warned = files_under(&f.root().join("t2/debug/build"))
        .into_iter()
        .filter(|p| p.ends_with("stderr"))
        .any(|p| {
            fs::read_to_string(p).is_ok_and(|t| t.contains("running the build script directly"))
        });
    assert!(
        !warned,
        "the launcher handed the run to a wrapper that is not kache"
    );
}

#[test]
fn files_written_under_the_target_dir_outside_out_dir_are_restored() {
    let f = Fixture::new(Dep::Path);
    // The script writes its library to `<target>/debug/bsdep-shared` and names it as a
    // link-search dir: stored with the run, restored into a fresh target dir (the binary
    // links it) and into one elsewhere.
    let env: Env = &[ALL, ("BSDEP_OUTSIDE", "1")];
    let (expected, runs) = f.case("outside-1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some(), "{}", describe(&runs));
    assert!(expected.ends_with("sum=5"), "{expected}");
    for target in ["outside-2", "elsewhere/deeper/outside-3"] {
        let (got, runs) = f.case(target, env);
        assert_eq!(
            (one_run(&runs), got.as_str()),
            (Outcome::LocalHit, expected.as_str())
        );
        let lib = f.root().join(target).join("debug/bsdep-shared/libbsadd.a");
        let reference = f
            .root()
            .join(format!("{target}-ref"))
            .join("debug/bsdep-shared/libbsadd.a");
        assert_eq!(
            fs::read(&lib).expect("restored library"),
            fs::read(&reference).expect("reference library")
        );
    }
}

#[test]
fn a_build_script_with_another_file_name_is_cached_too() {
    let f = Fixture::new(Dep::Path);
    // `build = "build/main.rs"` (as openssl-sys has): cargo names the crate
    // `build_script_main`. build.rs stays, unused, since the script declares it.
    let dep = f.root().join("bsdep");
    write(&dep.join("build/main.rs"), DEP_BUILD);
    write(
        &dep.join("Cargo.toml"),
        &DEP_MANIFEST.replace(
            "links = \"bsdep\"",
            "links = \"bsdep\"\nbuild = \"build/main.rs\"",
        ),
    );
    let (expected, runs) = f.case("t1", &[ALL]);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some(), "{}", describe(&runs));
    let (got, runs) = f.case("t2", &[ALL]);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
}

#[test]
fn a_dependency_out_dir_the_script_only_names_does_not_stop_its_run_being_stored() {
    let f = Fixture::new(Dep::Path);
    // Another run's OUT_DIR, written before this build (as a dependency's would be), that
    // the script names as a link-search dir (libgit2-sys does so with OpenSSL's).
    let other = |target: &str| {
        let lib = f
            .root()
            .join(target)
            .join("debug/build/other-1/out/lib/libother.txt");
        write(&lib, "other");
        // An empty dir and a link, as OpenSSL's install tree has.
        let dir = lib.parent().expect("lib dir");
        fs::create_dir_all(dir.join("pkgconfig")).expect("mkdir");
        std::os::unix::fs::symlink("libother.txt", dir.join("libother.so")).expect("link");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&lib)
            .and_then(|file| file.set_modified(old))
            .expect("age the file");
    };
    let env: Env = &[ALL, ("BSDEP_NAME_OTHER", "1")];
    for target in ["t1", "t1-ref", "t2", "t2-ref"] {
        other(target);
    }
    let (expected, runs) = f.case("t1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some(), "{}", describe(&runs));
    let (got, runs) = f.case("t2", env);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
    // Not this run's to restore.
    assert_eq!(
        fs::read_to_string(f.root().join("t2/debug/build/other-1/out/lib/libother.txt"))
            .expect("left alone"),
        "other"
    );
}

#[test]
fn out_dir_links_and_empty_dirs_are_restored() {
    let f = Fixture::new(Dep::Path);
    let env: Env = &[ALL, ("BSDEP_LINKS", "inside")];
    let (expected, runs) = f.case("l1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    assert!(runs[0].cache_key.is_some(), "stored: {}", describe(&runs));
    let (got, runs) = f.case("l2", env);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
    let out_dir = bsdep_out_dir(&f.root().join("l2"));
    for (link, target) in [("inc/gen-link.rs", "../gen.rs"), ("lib64", "native")] {
        let meta = fs::symlink_metadata(out_dir.join(link)).expect("restored link");
        assert!(meta.file_type().is_symlink(), "{link} is a link");
        assert_eq!(
            fs::read_link(out_dir.join(link)).expect("read link"),
            Path::new(target)
        );
    }
    assert_eq!(
        fs::read(out_dir.join("inc/gen-link.rs")).expect("through the link"),
        fs::read(out_dir.join("gen.rs")).expect("gen.rs")
    );
    assert!(out_dir.join("lib64/libbsadd.a").is_file());
    let empty = out_dir.join("empty-dir");
    assert!(fs::symlink_metadata(&empty).expect("empty dir").is_dir());
    assert_eq!(fs::read_dir(&empty).expect("read dir").count(), 0);
}

#[test]
fn links_that_could_leave_out_dir_are_not_stored() {
    let f = Fixture::new(Dep::Path);
    for how in ["absolute", "up"] {
        for target in ["x-1", "x-2"] {
            let target = format!("{how}-{target}");
            let (got, runs) = f.case(&target, &[ALL, ("BSDEP_LINKS", how)]);
            assert!(got.ends_with("sum=5"), "{got}");
            assert_eq!(one_run(&runs), Outcome::Miss, "{how}: {}", describe(&runs));
            assert!(runs[0].cache_key.is_none(), "{how}: {}", describe(&runs));
            assert_eq!(
                runs[0].passthrough_reason.as_deref(),
                Some("out_dir_link_leaves_out_dir")
            );
        }
    }
}

#[test]
fn a_stored_link_leading_out_of_out_dir_is_refused_and_healed() {
    let f = Fixture::new(Dep::Path);
    let env: Env = &[ALL, ("BSDEP_LINKS", "inside")];
    let (expected, runs) = f.case("t1", env);
    assert_eq!(one_run(&runs), Outcome::Miss);
    // The index row now says the link points two levels up from `inc/`: out of OUT_DIR. Its
    // blob is sound (it hashes to its name), so only the target rule can refuse it.
    let escaping = b"../../escaped";
    let hash = blake3::hash(escaping).to_hex().to_string();
    let blob_dir = f.sandbox.cache_dir().join("blobs").join(&hash[..2]);
    fs::create_dir_all(&blob_dir).expect("mkdir");
    fs::write(blob_dir.join(&hash), escaping).expect("write blob");
    let link_blob = blob_of(&f, "inc/gen-link.rs");
    let old = link_blob
        .file_name()
        .and_then(|n| n.to_str())
        .expect("hash");
    let conn = rusqlite::Connection::open(f.sandbox.cache_dir().join("index.db")).expect("index");
    let (key, body): (String, Vec<u8>) = conn
        .query_row(
            "SELECT key, body FROM entries WHERE crate_name = 'bsdep:build-script'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the stored run");
    let body = String::from_utf8(body).expect("JSON").replace(old, &hash);
    conn.execute(
        "UPDATE entries SET body = ?1 WHERE key = ?2",
        rusqlite::params![body.into_bytes(), key],
    )
    .expect("tamper");
    drop(conn);
    let cursor = f.sandbox.cursor();
    assert_eq!(f.build_run("app", "t2", true, env), expected);
    let runs = runs_of(&cursor);
    assert_eq!(one_run(&runs), Outcome::Miss, "{}", describe(&runs));
    let warned = runs[0]
        .warning
        .as_deref()
        .is_some_and(|w| w.contains("points outside"));
    assert!(warned, "{}", describe(&runs));
    assert!(runs[0].cache_key.is_some(), "stored again");
    let out_dir = bsdep_out_dir(&f.root().join("t2"));
    assert_eq!(
        fs::read_link(out_dir.join("inc/gen-link.rs")).expect("the script's own link"),
        Path::new("../gen.rs")
    );
    let above = out_dir.parent().expect("the run's dir");
    assert!(
        fs::symlink_metadata(above.join("escaped")).is_err(),
        "nothing made outside"
    );
    // Healed: the next fresh target dir hits.
    let (got, runs) = f.case("t3", env);
    assert_eq!((one_run(&runs), got), (Outcome::LocalHit, expected));
}

/// The store's size as `kache stats --json` reports it.
fn store_size(cache: &Path) -> u64 {
    let out = kache_command(cache, &["stats", "--json"]);
    assert!(out.status.success(), "stats: {}", stderr_of(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    stats["store"]["size"].as_u64().expect("store size")
}

#[test]
fn storing_a_run_past_the_size_limit_starts_a_gc() {
    let f = Fixture::new(Dep::Git);
    let (base, first) = f.case("base", &[]);
    assert_eq!(one_run(&first), Outcome::Miss);
    let cache = f.sandbox.cache_dir();
    // In a fresh target dir, a declared variable set (naming an input already declared) makes
    // the script's run a miss while what it writes stays the same: every compile before it
    // is a hit, so storing the run is what passes the limit.
    let limit = store_size(cache) * 7 / 10;
    let cursor = f.sandbox.cursor();
    let got = f.build_run(
        "app",
        "watch",
        true,
        &[
            ("BSDEP_WATCH", "csrc"),
            ("KACHE_MAX_SIZE", &limit.to_string()),
        ],
    );
    assert_eq!(got, base);
    let events = cursor.since();
    assert_eq!(one_run(&runs(&events)), Outcome::Miss);
    // The gc may evict what the rest of the build then stores again; the run came first.
    let first_stored = events.iter().find(|e| e.result == Outcome::Miss);
    assert!(
        first_stored.is_some_and(|e| e.crate_types == [RUN_TYPE]),
        "the run is the first entry stored: {}",
        describe(&events)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store_size(cache) > limit || auto_gc_running(cache) {
        assert!(
            std::time::Instant::now() < deadline,
            "no gc brought the store under {limit} after a stored run"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(f.build_run("app", "after-gc", true, &[]), base);
}
