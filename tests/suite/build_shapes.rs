//! Every build shape hits: a second build at another location, or of the same sources in a
//! fresh target dir, is served from the cache without running rustc, and its programs print
//! what they print without kache. The shapes:
//! - target dirs outside the workspace: a pre-made `CARGO_TARGET_DIR`, `--target-dir`,
//!   `build.target-dir` and cargo's separate `build.build-dir` (none holds `CACHEDIR.TAG`);
//! - `cargo install` of a registry crate and `cargo install --git` (a fresh temporary target
//!   dir each time, sources under `CARGO_HOME`) and `cargo install --path`;
//! - `--target <triple>` with a custom profile;
//! - git dependencies, vendored sources, a `../sibling` path dependency and a `[patch]`;
//! - another `CARGO_HOME` on another machine, through the S3 remote.
//!
//! Only `fixture-where` (it embeds `env!("CARGO_MANIFEST_DIR")`) may compile again when the
//! checkout moves, and it must print its own path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_s3::MotoServer;

fn utf8(path: &Path) -> &str {
    path.to_str().expect("sandbox paths are UTF-8")
}

/// A directory made before cargo runs (a CI cache restore, a mounted volume, a `mkdir`):
/// cargo writes no `CACHEDIR.TAG` into it.
fn premade(sandbox: &Sandbox, sub: &str) -> PathBuf {
    let dir = sandbox.root().join(sub);
    fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, contents).expect("write");
    }
}

/// A git repository holding `files`, committed; returns its `file://` URL.
fn git_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    write(dir, files);
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-q", "-m", "initial"],
    ] {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?}");
    }
    format!("file://{}", dir.display())
}

fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

fn run_program(path: &Path) -> String {
    let out = Command::new(path)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    assert!(out.status.success(), "{} failed", path.display());
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// The user's cargo home, whose registry cache the tests share.
fn user_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cargo"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir").flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("stat").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// A registry package's unpacked sources in the user's cargo home.
fn registry_src(package: &str) -> PathBuf {
    let src = user_cargo_home().join("registry/src");
    fs::read_dir(&src)
        .expect("the registry is warm")
        .flatten()
        .map(|index| index.path().join(package))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("{package} is not in {}", src.display()))
}

/// A cargo home of its own at `home` that can build the fixture offline: the registry index
/// cache and the fixture's four `.crate` files, copied from the user's.
fn private_cargo_home(home: &Path) {
    let user = user_cargo_home().join("registry");
    copy_dir(&user.join("index"), &home.join("registry/index"));
    for index in fs::read_dir(user.join("cache"))
        .expect("registry cache")
        .flatten()
    {
        let dest = home.join("registry/cache").join(index.file_name());
        fs::create_dir_all(&dest).expect("mkdir");
        for file in fs::read_dir(index.path()).expect("read cache").flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if ["itoa-", "cc-", "shlex-", "find-msvc-tools-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                fs::copy(file.path(), dest.join(&name)).expect("copy crate");
            }
        }
    }
}

/// Asserts the second build of a shape: the same units as the first, every one a local hit
/// without a compiler run (`fixture-where` aside when the checkout moved).
fn assert_warm(events: &[BuildEvent], every_unit: &std::collections::BTreeSet<String>, what: &str) {
    assert_no_faults(events, what);
    assert_eq!(&units(events), every_unit, "{what}\n{}", describe(events));
    assert_all_local_hits(&path_independent(events), what);
}

#[test]
fn target_and_build_dirs_outside_the_workspace_are_all_hits() {
    let sandbox = Sandbox::new();
    let ws = sandbox.checkout("first/ws");
    let expected = ws.reference_output(&[], APP_BIN);
    let mut log = sandbox.cursor();

    // CARGO_TARGET_DIR made beforehand.
    let one = premade(&sandbox, "targets/one");
    ws.kache(&["build", "--locked"])
        .env("CARGO_TARGET_DIR", utf8(&one))
        .run();
    let cold = compiles(&log.take());
    assert_no_faults(&cold, "cold");
    assert!(!one.join("CACHEDIR.TAG").exists(), "the shape under test");
    let every_unit = units(&cold);

    // --target-dir, another pre-made dir.
    let two = premade(&sandbox, "targets/two");
    ws.kache_build(&["--target-dir", utf8(&two)]);
    assert_warm(&compiles(&log.take()), &every_unit, "--target-dir");
    assert_eq!(ws.run_bin_in(&two, APP_BIN, &[]), expected);

    // build.target-dir plus cargo's separate build dir (build.build-dir): rustc writes
    // into the build dir, cargo copies the final artifacts to the target dir.
    let three = premade(&sandbox, "targets/three");
    let build_dir = premade(&sandbox, "build-dirs/three");
    ws.kache_build(&[
        "--config",
        &format!("build.target-dir={:?}", utf8(&three)),
        "--config",
        &format!("build.build-dir={:?}", utf8(&build_dir)),
    ]);
    assert_warm(&compiles(&log.take()), &every_unit, "build.build-dir");
    assert_eq!(ws.run_bin_in(&three, APP_BIN, &[]), expected);
    assert_eq!(ws.run_bin_in(&three, WHERE_BIN, &[]), ws.app_manifest_dir());

    // Another checkout at another path, its target dir outside it.
    let other = sandbox.checkout("second/deeper/ws");
    let four = premade(&sandbox, "elsewhere/targets/four");
    other
        .kache(&["build", "--locked"])
        .env("CARGO_TARGET_DIR", utf8(&four))
        .run();
    assert_warm(&compiles(&log.take()), &every_unit, "another checkout");
    assert_eq!(other.run_bin_in(&four, APP_BIN, &[]), expected);
    assert_eq!(
        other.run_bin_in(&four, WHERE_BIN, &[]),
        other.app_manifest_dir(),
        "fixture-where prints its own checkout's path"
    );
}

#[test]
fn a_target_triple_with_a_custom_profile_is_all_hits_elsewhere() {
    let sandbox = Sandbox::new();
    let host = host_triple();
    let profile = "[profile.fast]\ninherits = \"release\"\n";
    let args = ["--profile", "fast", "--target", host.as_str()];
    let mut log = sandbox.cursor();
    let mut first: Option<(std::collections::BTreeSet<String>, String)> = None;
    for path in ["first/ws", "second/deeper/ws"] {
        let ws = sandbox.checkout(path);
        let manifest = ws.read("Cargo.toml");
        ws.write("Cargo.toml", &format!("{manifest}\n{profile}"));
        ws.kache_build(&args);
        let events = compiles(&log.take());
        let out_dir = ws.target_dir().join(&host);
        let printed = ws.run_bin_profile(&out_dir, "fast", APP_BIN, &[]);
        assert_eq!(
            ws.run_bin_profile(&out_dir, "fast", WHERE_BIN, &[]),
            ws.app_manifest_dir()
        );
        match &first {
            None => {
                assert_no_faults(&events, "cold");
                assert!(printed.contains("assertions=off"), "{printed}");
                first = Some((units(&events), printed));
            }
            Some((every_unit, expected)) => {
                assert_warm(&events, every_unit, "--profile fast --target <host>");
                assert_eq!(&printed, expected);
            }
        }
    }
}

/// A binary crate with a build script (its `OUT_DIR` is inside the target dir, the issue's
/// cascade of misses).
const TOOL: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        "[package]\nname = \"shape-tool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    ),
    (
        "build.rs",
        "fn main() {\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    \
         std::fs::write(format!(\"{out}/gen.rs\"), \"pub const GEN: u32 = 7;\").unwrap();\n}\n",
    ),
    (
        "src/main.rs",
        "include!(concat!(env!(\"OUT_DIR\"), \"/gen.rs\"));\nfn main() {\n    \
         println!(\"tool gen={GEN}\");\n}\n",
    ),
];

#[test]
fn cargo_install_twice_is_all_hits() {
    let sandbox = Sandbox::new();
    let mut log = sandbox.cursor();

    // --git: cargo builds in a fresh temporary target dir each time, from sources under
    // CARGO_HOME, as for a registry crate.
    let url = git_repo(&sandbox.root().join("repos/tool"), TOOL);
    let home = sandbox.root().join("cargo-home");
    let elsewhere = sandbox.empty_workspace("cwd");
    let mut every_unit = None;
    for root in ["installs/one", "installs/two"] {
        let root = sandbox.root().join(root);
        elsewhere
            .kache(&["install", "--git", &url, "--root", utf8(&root)])
            .env("CARGO_HOME", utf8(&home))
            .run();
        let events = compiles(&log.take());
        assert_eq!(
            run_program(&root.join("bin/shape-tool")),
            "tool gen=7",
            "{}",
            root.display()
        );
        match &every_unit {
            None => {
                assert_no_faults(&events, "first install");
                // The build script, its run (a git or registry package's), the binary.
                assert_eq!(count(&events, Outcome::Miss), 3, "{}", describe(&events));
                every_unit = Some(units(&events));
            }
            Some(every_unit) => assert_warm(&events, every_unit, "second install --git"),
        }
    }

    // A registry crate (a local registry standing in for crates.io): the same shape, with
    // the sources unpacked under CARGO_HOME/registry/src.
    let registry_home = sandbox.root().join("registry-home");
    local_registry(&sandbox, &registry_home, TOOL);
    let mut every_unit = None;
    for root in ["installs/reg-one", "installs/reg-two"] {
        let root = sandbox.root().join(root);
        elsewhere
            .kache(&["install", "shape-tool", "--offline", "--root", utf8(&root)])
            .env("CARGO_HOME", utf8(&registry_home))
            .run();
        let events = compiles(&log.take());
        assert_eq!(run_program(&root.join("bin/shape-tool")), "tool gen=7");
        match &every_unit {
            None => {
                assert_no_faults(&events, "first registry install");
                // The build script, its run (a git or registry package's), the binary.
                assert_eq!(count(&events, Outcome::Miss), 3, "{}", describe(&events));
                every_unit = Some(units(&events));
            }
            Some(every_unit) => assert_warm(&events, every_unit, "second registry install"),
        }
    }

    // --path, from two checkouts at different paths.
    let a = sandbox.checkout("a/ws");
    let expected = a.reference_output_profile(&["--release"], "release", APP_BIN);
    let mut every_unit = None;
    for (ws, root) in [
        (a, "installs/a"),
        (sandbox.checkout("b/c/ws"), "installs/b"),
    ] {
        let root = sandbox.root().join(root);
        ws.kache(&[
            "install",
            "--locked",
            "--path",
            "crates/app",
            "--root",
            utf8(&root),
        ])
        .run();
        let events = compiles(&log.take());
        assert_eq!(run_program(&root.join("bin").join(APP_BIN)), expected);
        assert_eq!(
            run_program(&root.join("bin").join(WHERE_BIN)),
            ws.app_manifest_dir()
        );
        match &every_unit {
            None => {
                assert_no_faults(&events, "first install --path");
                every_unit = Some(units(&events));
            }
            Some(every_unit) => assert_warm(&events, every_unit, "second install --path"),
        }
    }
}

/// Publishes the package `files` (named `shape-tool`) to a local registry that replaces
/// crates.io for the cargo home `home`.
fn local_registry(sandbox: &Sandbox, home: &Path, files: &[(&str, &str)]) {
    let package = sandbox.empty_workspace("registry-src/shape-tool");
    write(package.root(), files);
    let manifest = package.read("Cargo.toml");
    package.write(
        "Cargo.toml",
        &format!("{manifest}description = \"t\"\nlicense = \"MIT\"\n"),
    );
    package
        .plain(&["package", "--offline", "--no-verify", "--allow-dirty"])
        .env("CARGO_HOME", utf8(home))
        .run();
    let registry = sandbox.root().join("registry");
    let crate_file = registry.join("shape-tool-0.1.0.crate");
    fs::create_dir_all(&registry).expect("mkdir");
    fs::copy(
        package.path("target/package/shape-tool-0.1.0.crate"),
        &crate_file,
    )
    .expect("copy the .crate");
    let sum = Command::new("sha256sum")
        .arg(&crate_file)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout);
    let sum = sum.split_whitespace().next().expect("a checksum");
    write(
        &registry,
        &[(
            "index/sh/ap/shape-tool",
            &format!(
                r#"{{"name":"shape-tool","vers":"0.1.0","deps":[],"cksum":"{sum}","features":{{}},"yanked":false}}"#
            ),
        )],
    );
    write(
        home,
        &[(
            "config.toml",
            &format!(
                "[source.crates-io]\nreplace-with = \"local\"\n\n[source.local]\nlocal-registry = {:?}\n",
                utf8(&registry)
            ),
        )],
    );
}

/// A package built from a git dependency, a vendored registry crate (`itoa`), a path
/// dependency outside the workspace (`../sibling`) and a `[patch]`ed registry crate
/// (`shlex`, patched with the workspace's `patches/shlex`).
fn sources_tree(base: &Path, git_url: &str) {
    let itoa = registry_src("itoa-1.0.18");
    let vendor = base.join("ws/vendor/itoa");
    copy_dir(&itoa, &vendor);
    // What `cargo vendor` writes: no per-file checksums, the package's registry checksum.
    fs::write(
        vendor.join(".cargo-checksum.json"),
        r#"{"files":{},"package":"8f42a60cbdf9a97f5d2305f08a87dc4e09308d1276d28c869c684d7777685682"}"#,
    )
    .expect("checksum");
    let _ = fs::remove_file(vendor.join(".cargo-ok"));
    let manifest = format!(
        "[package]\nname = \"shapes\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\ngitdep = {{ git = \"{git_url}\" }}\nsibling = {{ path = \"../sibling\" }}\n\
         itoa = \"1\"\nshlex = \"2\"\n\n\
         [patch.crates-io]\nshlex = {{ path = \"patches/shlex\" }}\n"
    );
    write(
        base,
        &[
            ("ws/Cargo.toml", &manifest),
            (
                "ws/.cargo/config.toml",
                "[source.crates-io]\nreplace-with = \"vendored\"\n\n\
                 [source.vendored]\ndirectory = \"vendor\"\n",
            ),
            (
                "ws/src/main.rs",
                "fn main() {\n    println!(\"git={} sibling={} itoa={} shlex={}\", gitdep::value(), \
                 sibling::value(), itoa::Buffer::new().format(4242), shlex::value());\n}\n",
            ),
            (
                "sibling/Cargo.toml",
                "[package]\nname = \"sibling\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            (
                "sibling/src/lib.rs",
                "pub fn value() -> &'static str {\n    \"from-sibling\"\n}\n",
            ),
            (
                "ws/patches/shlex/Cargo.toml",
                "[package]\nname = \"shlex\"\nversion = \"2.0.1\"\nedition = \"2021\"\n",
            ),
            (
                "ws/patches/shlex/src/lib.rs",
                "pub fn value() -> &'static str {\n    \"patched\"\n}\n",
            ),
        ],
    );
}

#[test]
fn git_vendored_and_patched_sources_hit_elsewhere_and_a_sibling_says_why() {
    let sandbox = Sandbox::new();
    let url = git_repo(
        &sandbox.root().join("repos/gitdep"),
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"gitdep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            (
                "src/lib.rs",
                "pub fn value() -> &'static str {\n    \"from-git\"\n}\n",
            ),
        ],
    );
    let expected = "git=from-git sibling=from-sibling itoa=4242 shlex=patched";
    let mut log = sandbox.cursor();
    let tree = |base: &str| {
        let base_dir = sandbox.root().join(base);
        sources_tree(&base_dir, &url);
        let ws = sandbox.empty_workspace(&format!("{base}/ws"));
        // Each tree with a CARGO_HOME of its own: its own git checkout.
        let home = base_dir.join("cargo-home");
        (ws, home)
    };

    let (first, home) = tree("first");
    first.kache(&["build"]).env("CARGO_HOME", utf8(&home)).run();
    let cold = compiles(&log.take());
    assert_no_faults(&cold, "cold");
    assert_eq!(count(&cold, Outcome::Miss), 5, "{}", describe(&cold));
    assert_eq!(first.run_bin("shapes", &[]), expected);
    let every_unit = units(&cold);

    // The same sources in a fresh target dir: all hits.
    let fresh = premade(&sandbox, "fresh-target");
    first
        .kache(&["build"])
        .env("CARGO_HOME", utf8(&home))
        .env("CARGO_TARGET_DIR", utf8(&fresh))
        .run();
    assert_warm(&compiles(&log.take()), &every_unit, "a fresh target dir");
    assert_eq!(first.run_bin_in(&fresh, "shapes", &[]), expected);

    // The whole tree at another path, another CARGO_HOME: the git checkout, the vendored
    // crate and the patch hit. Cargo itself hashes the absolute path of a path dependency
    // outside the workspace into its `-C metadata` (its symbols differ), so `sibling` and
    // what links it compile again, and `kache explain` says why.
    let (second, home) = tree("second/deeper");
    second
        .kache(&["build"])
        .env("CARGO_HOME", utf8(&home))
        .run();
    let moved = compiles(&log.take());
    assert_no_faults(&moved, "moved");
    assert_eq!(units(&moved), every_unit, "{}", describe(&moved));
    let outside = ["sibling", "shapes"];
    let (recompiled, shared): (Vec<BuildEvent>, Vec<BuildEvent>) = moved
        .iter()
        .cloned()
        .partition(|e| outside.contains(&crate_name(e)));
    assert_all_local_hits(&shared, "git, vendored and patched sources moved");
    assert_all(
        &recompiled,
        Outcome::Miss,
        "a path dependency outside the workspace",
    );
    assert_eq!(second.run_bin("shapes", &[]), expected);
    let explained = kache_command(sandbox.cache_dir(), &["explain", "sibling"]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.contains("-C metadata"), "{explained}");
    assert!(explained.contains("absolute"), "says why: {explained}");
}

const BUCKET: &str = "kache-shapes";

#[test]
fn registry_crates_hit_across_machines_whose_cargo_homes_differ() {
    let server = MotoServer::start(BUCKET);
    let remote = server.kache_env();
    let machine = |sandbox: &Sandbox, checkout: &str, home: &str| {
        let mut ws = sandbox.checkout(checkout);
        for (k, v) in &remote {
            ws.set_env(k, v);
        }
        let home = sandbox.root().join(home);
        private_cargo_home(&home);
        ws.set_env("CARGO_HOME", utf8(&home));
        ws
    };

    let machine_a = Sandbox::new();
    let a = machine(&machine_a, "home/alice/src/ws", "home/alice/.cargo");
    a.kache_build(&["--offline"]);
    let expected = a.run_bin(APP_BIN, &[]);
    let mut push = Command::new(kache_bin_under_test());
    push.args(["sync", "--push", "--json"])
        .env("KACHE_DIR", machine_a.cache_dir())
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in &remote {
        push.env(k, v);
    }
    assert!(push.output().expect("push").status.success());

    let machine_b = Sandbox::new();
    let b = machine(&machine_b, "ci/runner/work/ws", "ci/runner/cargo-home");
    let mut log = machine_b.cursor();
    b.kache_build(&["--offline"]);
    let events = compiles(&log.take());
    assert_no_faults(&events, "machine B");
    let shared = path_independent(&events);
    for registry_crate in ["itoa", "cc", "shlex", "find_msvc_tools"] {
        assert!(
            shared.iter().any(|e| crate_name(e) == registry_crate),
            "{registry_crate} was built\n{}",
            describe(&events)
        );
    }
    assert_all(&shared, Outcome::RemoteHit, "machine B, another CARGO_HOME");
    assert!(shared.iter().all(|e| e.compiler_runs == 0));
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
}

#[test]
fn a_crate_that_embeds_its_out_dir_still_keys_on_it() {
    let sandbox = Sandbox::new();
    let ws = sandbox.empty_workspace("ws");
    write(
        ws.root(),
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"where-out\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("build.rs", "fn main() {}\n"),
            (
                "src/main.rs",
                "fn main() {\n    println!(\"{}\", env!(\"OUT_DIR\"));\n}\n",
            ),
        ],
    );
    let mut log = sandbox.cursor();
    let one = premade(&sandbox, "targets/one");
    ws.kache(&["build"])
        .env("CARGO_TARGET_DIR", utf8(&one))
        .run();
    assert_all(&compiles(&log.take()), Outcome::Miss, "cold");
    assert!(
        ws.run_bin_in(&one, "where-out", &[])
            .starts_with(utf8(&one))
    );

    let two = premade(&sandbox, "targets/two");
    ws.kache(&["build"])
        .env("CARGO_TARGET_DIR", utf8(&two))
        .run();
    let events = compiles(&log.take());
    assert_no_faults(&events, "second target dir");
    let (bin, script): (Vec<BuildEvent>, Vec<BuildEvent>) = events
        .iter()
        .cloned()
        .partition(|e| crate_name(e) == "where_out");
    assert_all_local_hits(&script, "the build script");
    assert_all(&bin, Outcome::Miss, "a binary that embeds OUT_DIR");
    assert!(
        ws.run_bin_in(&two, "where-out", &[])
            .starts_with(utf8(&two)),
        "it prints its own OUT_DIR"
    );
    let explained = kache_command(sandbox.cache_dir(), &["explain", "where_out"]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.contains("env OUT_DIR"), "{explained}");
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_rpath_into_the_target_dir_is_keyed_as_is() {
    let sandbox = Sandbox::new();
    let ws = sandbox.empty_workspace("ws");
    write(
        ws.root(),
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"rpath\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            (
                "build.rs",
                "fn main() {\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    \
                 println!(\"cargo:rustc-link-arg=-Wl,-rpath,{out}/lib\");\n}\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"rpath\");\n}\n"),
        ],
    );
    let mut log = sandbox.cursor();
    let mut rpaths = Vec::new();
    for (i, sub) in ["targets/one", "targets/two"].iter().enumerate() {
        let target = premade(&sandbox, sub);
        ws.kache(&["build"])
            .env("CARGO_TARGET_DIR", utf8(&target))
            .run();
        let events = compiles(&log.take());
        assert_no_faults(&events, sub);
        let (bin, script): (Vec<BuildEvent>, Vec<BuildEvent>) = events
            .iter()
            .cloned()
            .partition(|e| crate_name(e) == "rpath");
        if i == 1 {
            assert_all_local_hits(&script, "the build script");
        }
        // The linker writes the rpath as given: the binary must be linked for its own dir.
        assert_all(&bin, Outcome::Miss, sub);
        assert_eq!(ws.run_bin_in(&target, "rpath", &[]), "rpath");
        rpaths.push((
            target.clone(),
            fs::read(target.join("debug/rpath")).expect("bin"),
        ));
    }
    let (first, _) = &rpaths[0];
    let (second, bytes) = &rpaths[1];
    assert!(contains(bytes, utf8(second)), "the rpath names its own dir");
    assert!(!contains(bytes, utf8(first)), "and not the first build's");
}

/// `kache rustc …` outside cargo (which passes rustc's path): the bare name is found on
/// `PATH`, so the toolchain's identity is memoised rather than computed (the sysroot hashed)
/// on every call, and the calls are cached like cargo's.
#[test]
fn a_bare_rustc_name_is_found_on_path_and_its_identity_remembered() {
    let sandbox = Sandbox::new();
    let dir = sandbox.root().join("direct");
    write(&dir, &[("lib.rs", "pub fn answer() -> u32 { 42 }\n")]);
    let compile = |metadata: &str, out: &str| {
        fs::create_dir_all(dir.join(out)).expect("mkdir");
        let mut cmd = Command::new(kache_bin());
        cmd.args(["rustc", "--crate-name", "direct", "--crate-type", "lib"])
            .args(["--emit=dep-info,metadata,link", "-C"])
            .arg(format!("metadata={metadata}"))
            .args(["lib.rs", "--out-dir", out])
            .current_dir(&dir);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_scrubbed) {
                cmd.env_remove(key);
            }
        }
        let o = cmd
            .env("KACHE_DIR", sandbox.cache_dir())
            .env("KACHE_CONFIG", "/dev/null")
            .output()
            .expect("run kache rustc");
        assert!(o.status.success(), "kache rustc: {}", stderr_of(&o));
        fs::read(dir.join(out).join("libdirect.rlib")).expect("rlib written")
    };
    let mut log = sandbox.cursor();
    let first = compile("a", "out-a");
    compile("b", "out-b");
    assert_eq!(first, compile("a", "out-a2"));
    let results: Vec<_> = log.take().iter().map(|e| e.result).collect();
    assert_eq!(results, [Outcome::Miss, Outcome::Miss, Outcome::LocalHit]);
    let memos = fs::read_dir(sandbox.cache_dir().join("toolchains"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(memos, 1, "the toolchain's identity is remembered");
}
