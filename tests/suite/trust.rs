//! Trusting the cache dir (issue 9, items 6 and 7): kache uses a cache dir only when nobody
//! else can have written to it, and never follows a symlink planted inside it.
//!
//! - A cache dir owned by another user, or writable by group or others, is refused: the
//!   compile runs as plain rustc with one warning, nothing is written into the dir, and the
//!   commands exit 2 with a one-line error.
//! - A symlink planted at any path kache opens under its dir (the index and SQLite's files
//!   beside it, the lock files, the event log, the blob fan-out dirs, the toolchain memo
//!   dir) is not followed: nothing is created in or appended to what it points to, and the
//!   build still succeeds.
//!
//! The tests chown to another uid, so they need root (the machine's tests run as root);
//! without it they say so and skip.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// The uid and gid of the "other user" (no such account is needed).
const INTRUDER: u32 = 4242;

/// A one-file program, compiled through `kache <rustc>` into `out`.
struct Program {
    src: PathBuf,
    rustc: PathBuf,
}

impl Program {
    fn new(root: &Path) -> Program {
        let src = root.join("src");
        fs::create_dir_all(&src).expect("create the source dir");
        fs::write(
            src.join("main.rs"),
            "fn main() { println!(\"trusted\"); }\n",
        )
        .expect("write main.rs");
        let output = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .expect("run rustc --print sysroot");
        let sysroot = String::from_utf8_lossy(&output.stdout);
        let rustc = Path::new(sysroot.trim()).join("bin/rustc");
        assert!(rustc.is_file(), "no rustc at {}", rustc.display());
        Program { src, rustc }
    }

    /// Compiles into `out` with `cache_dir` as the cache; asserts the compile succeeded and
    /// the program runs. Returns kache's output.
    fn build(&self, cache_dir: &Path, out: &Path) -> Output {
        fs::create_dir_all(out).expect("create the out dir");
        let mut cmd = Command::new(kache_bin());
        cmd.arg(&self.rustc)
            .args(["--crate-name", "trusted", "--edition=2021", "main.rs"])
            .args(["--crate-type", "bin", "--emit=dep-info,link", "--out-dir"])
            .arg(out)
            .current_dir(&self.src);
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("KACHE_") || k.starts_with("CARGO_"))
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("KACHE_CONFIG", "/dev/null");
        cmd.env("KACHE_DIR", cache_dir);
        let output = cmd.output().expect("run kache");
        assert!(
            output.status.success(),
            "kache rustc failed ({})\n{}",
            output.status,
            stderr_of(&output)
        );
        let ran = Command::new(out.join("trusted"))
            .output()
            .expect("run the program");
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "trusted\n");
        output
    }
}

/// Every file under `dir` with its size, so a test can tell that nothing was created or
/// appended to.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read dir").flatten() {
        let meta = fs::symlink_metadata(e.path()).expect("stat");
        if meta.is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs root: chowns a cache dir to another user"]
fn an_untrusted_cache_dir_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let program = Program::new(root.path());
    // (owner, mode): as another user would leave a shared `$TMPDIR/kache`, and our own dir
    // left writable to others.
    let cases = [
        ("theirs-0777", INTRUDER, 0o777),
        ("theirs-0755", INTRUDER, 0o755),
        ("mine-0777", 0, 0o777),
        ("mine-0775", 0, 0o775),
        ("mine-1777", 0, 0o1777),
    ];
    for (name, owner, mode) in cases {
        let cache = root.path().join(name);
        fs::create_dir(&cache).expect("create the cache dir");
        std::os::unix::fs::chown(&cache, Some(owner), Some(owner)).expect("chown");
        fs::set_permissions(&cache, fs::Permissions::from_mode(mode)).expect("chmod");
        let output = program.build(&cache, &root.path().join(format!("out-{name}")));
        let lines = kache_lines(&output);
        assert!(
            lines.len() == 1 && lines[0].contains("refusing cache directory"),
            "{name}: one warning refusing the dir\n{}",
            lines.join("\n")
        );
        assert!(
            snapshot(&cache).is_empty(),
            "{name}: kache wrote into the untrusted dir: {:?}",
            snapshot(&cache)
        );
        let stats = kache_command(&cache, &["stats"]);
        let stderr = stderr_of(&stats);
        assert_eq!(
            stats.status.code(),
            Some(2),
            "{name}: kache stats\n{stderr}"
        );
        assert!(
            stderr.trim().lines().count() == 1 && stderr.contains("refusing cache directory"),
            "{name}: one error line\n{stderr}"
        );
    }

    // A dir kache makes itself is the user's alone, and works: the second compile hits.
    let cache = root.path().join("made-by-kache");
    program.build(&cache, &root.path().join("out-a"));
    program.build(&cache, &root.path().join("out-b"));
    let meta = fs::metadata(&cache).expect("stat the cache dir");
    assert_eq!(meta.mode() & 0o777, 0o700, "made for its owner only");
    let results: Vec<Outcome> = events(&cache).iter().map(|e| e.result).collect();
    assert_eq!(results, [Outcome::Miss, Outcome::LocalHit]);
}

#[test]
#[ignore = "needs root: plants links owned by another user"]
fn symlinks_planted_inside_the_store_are_never_followed() {
    let root = tempfile::tempdir().expect("tempdir");
    let program = Program::new(root.path());
    let fans: Vec<String> = (0..=255u8).map(|b| format!("blobs/{b:02x}")).collect();
    // Each case: the paths (relative to the cache dir) planted as links, and whether the
    // store itself is refused (one warning naming the symlink) or only that file is skipped.
    let mut cases: Vec<(&str, Vec<String>, bool)> = vec![
        ("index", vec!["index.db".into()], true),
        ("wal", vec!["index.db-wal".into()], true),
        ("shm", vec!["index.db-shm".into()], true),
        ("maintenance-lock", vec!["maintenance.lock".into()], true),
        ("gc-lock", vec!["gc.lock".into()], true),
        ("event-log", vec!["events.jsonl".into()], false),
        ("toolchain-memo-dir", vec!["toolchains".into()], false),
    ];
    cases.push(("blob-fan-out-dirs", fans, true));
    for (name, planted, store_refused) in cases {
        let cache = root.path().join(format!("cache-{name}"));
        fs::create_dir(&cache).expect("create the cache dir");
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::create_dir(cache.join("blobs")).expect("create blobs");
        // What the links point to: the intruder's dir, and in it a file that exists (kache
        // must not append to it) for file links; dirs for dir links.
        let theirs = root.path().join(format!("intruder-{name}"));
        fs::create_dir(&theirs).expect("create the intruder's dir");
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).expect("chmod");
        let bait = theirs.join("existing");
        fs::write(&bait, b"").expect("write the bait");
        for (i, rel) in planted.iter().enumerate() {
            let target = if rel.contains('/') || rel == "toolchains" {
                let d = theirs.join(format!("dir-{i}"));
                fs::create_dir(&d).expect("create the intruder's sub dir");
                d
            } else if i == 0 && name == "event-log" {
                bait.clone()
            } else {
                theirs.join(format!("missing-{i}"))
            };
            let link = cache.join(rel);
            std::os::unix::fs::symlink(&target, &link).expect("plant the symlink");
            std::os::unix::fs::lchown(&link, Some(INTRUDER), Some(INTRUDER)).expect("lchown");
        }
        let before = snapshot(&theirs);
        for round in ["a", "b"] {
            let out = root.path().join(format!("out-{name}-{round}"));
            let output = program.build(&cache, &out);
            let lines = kache_lines(&output);
            if store_refused {
                assert!(
                    lines.len() == 1 && lines[0].contains("symlink"),
                    "{name}: one warning naming the symlink\n{}",
                    lines.join("\n")
                );
            } else {
                assert!(lines.is_empty(), "{name}: no warning\n{}", lines.join("\n"));
            }
        }
        assert_eq!(
            snapshot(&theirs),
            before,
            "{name}: kache created or appended to a file outside its store"
        );
        for rel in &planted {
            assert!(
                fs::symlink_metadata(cache.join(rel)).is_ok_and(|m| m.file_type().is_symlink()),
                "{name}: the link at {rel} is left as it was"
            );
        }
    }
}
