//! Zero-copy restore, verified on real filesystems (loop-mounted by the test). Every test here
//! needs root, so each is `#[ignore = "needs root: …"]`; `e2e/run-tests` runs them as root,
//! where a mount that fails is a failure:
//!
//! - ext4 (no reflinks): `.rlib`/`.rmeta`, proc-macro libraries and build scripts come back
//!   as hardlinks of their blob (same inode) when no other checkout links that blob, and as
//!   copies when one does, except a library's `.rlib`, linked into every checkout and never
//!   touched; binaries and cdylibs are always copies. Neither checkout rebuilds afterwards.
//! - btrfs (copy-on-write): every output is reflinked: its own inode, the blob's extents.
//! - After a hit, a miss that rewrites the same output leaves the blob as it was: rustc never
//!   writes through a link into the store.
//! - The cache dir, its `blobs`/`tmp` dirs and the blobs themselves are never used through a
//!   symlink someone else planted: kache refuses and the build goes on without the cache.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// The filesystem type (`statfs` magic) of `path`.
fn fs_magic(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `buf` a statfs the kernel fills in.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(buf.f_type as i64)
}

/// A fresh `fstype` filesystem for the test; panics with the reason when it cannot mount one.
fn mounted(fstype: &str, magic: i64) -> (tempfile::TempDir, Mount) {
    let dir = tempfile::Builder::new()
        .prefix("kache-e2e-mnt-")
        .tempdir()
        .expect("create a mount point dir");
    let mount = Mount::image(fstype, 512, &dir.path().join("fs"))
        .unwrap_or_else(|e| panic!("cannot loop-mount a {fstype} image here: {e}"));
    assert_eq!(
        fs_magic(mount.path()),
        Some(magic),
        "the mounted image is not {fstype}"
    );
    (dir, mount)
}

/// Outputs in `target/debug/deps` (and the build script's dir) with their blobs.
fn outputs_and_blobs(ws: &Workspace) -> Vec<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    let debug = ws.target_dir().join("debug");
    for dir in [debug.join("deps")] {
        for entry in fs::read_dir(&dir).expect("read deps").flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".d") && path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let blob = blob_of(ws.cache_dir(), &f);
            (f, blob)
        })
        .collect()
}

/// Libraries, the fixture's proc-macro library and build scripts share their blob's inode;
/// binaries and the cdylib are copies (people strip those).
fn is_linkable(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".rlib") || name.ends_with(".rmeta") || name.starts_with("libfixture_macros-")
}

fn is_lib_event(event: &BuildEvent) -> bool {
    matches!(event.crate_types.join(",").as_str(), "lib" | "proc-macro")
        || crate_name(event) == "build_script_build"
}

/// After a hit, edit fixture-core so it misses and rustc writes the same output names again:
/// every blob must still hold what it was stored with.
fn assert_a_miss_after_a_hit_leaves_blobs_alone(ws: &Workspace, context: &str) {
    let rlib = ws.deps_file("libfixture_core-", ".rlib");
    let old_blob = blob_of(ws.cache_dir(), &rlib);
    let mut log = EventCursor::new(ws.cache_dir());
    ws.edit("shared/path_mod.rs", "\"path-mod-1\"", "\"path-mod-3\"");
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    let core = of_crate(&events, "fixture_core");
    assert!(
        core.len() == 1 && core[0].result == Outcome::Miss,
        "{context}: premise: fixture_core is compiled again\n{}",
        describe(&events)
    );
    assert_eq!(
        rlib,
        ws.deps_file("libfixture_core-", ".rlib"),
        "{context}: premise: rustc wrote the same output name"
    );
    assert_ne!(
        blob_of(ws.cache_dir(), &rlib),
        old_blob,
        "{context}: premise: the new output differs from the restored one"
    );
    assert_blobs_intact(ws.cache_dir(), context);
    verify(ws.cache_dir(), false).assert_clean(context);
    assert!(
        ws.run_bin(APP_BIN, &[]).contains("path_mod=path-mod-3"),
        "{context}: the rebuilt output is the new one"
    );
}

#[test]
#[ignore = "needs root: loop-mounts an ext4 image"]
fn ext4_hardlinks_libraries_and_copies_executables() {
    let (_dir, mount) = mounted("ext4", EXT4_SUPER_MAGIC);
    let Warmed {
        sandbox,
        ws: a,
        mut log,
        ..
    } = Sandbox::new_in(mount.path()).warm("a/ws");
    let expected = a.reference_output(&[], APP_BIN);

    // Nothing links the blobs once A's target dir is gone: libraries come back as links.
    a.rm_target();
    a.kache_build(&[]);
    let warm = compiles(&log.take());
    assert_all_local_hits(&warm, "warm build on ext4");
    assert_eq!(a.run_bin(APP_BIN, &[]), expected);
    for event in &warm {
        let (hard, copied, reflinked) = (
            event.hardlinked_bytes,
            event.copied_bytes,
            event.reflinked_bytes,
        );
        let size = event.size;
        let want = if is_lib_event(event) {
            (size, 0, 0)
        } else {
            (0, size, 0)
        };
        assert!(
            size > 0 && (hard, copied, reflinked) == want,
            "{}: hardlinked/copied/reflinked bytes {:?}, expected {want:?}",
            unit(event),
            (hard, copied, reflinked)
        );
    }
    let restored = outputs_and_blobs(&a);
    assert!(restored.iter().any(|(f, _)| is_linkable(f)));
    assert!(restored.iter().any(|(f, _)| !is_linkable(f)));
    for (file, blob) in &restored {
        if is_linkable(file) {
            assert_eq!(
                inode(file),
                inode(blob),
                "{} is a hardlink of its blob",
                file.display()
            );
        } else {
            assert_ne!(inode(file), inode(blob), "{} is a copy", file.display());
            let mode = fs::metadata(file).expect("stat").permissions().mode();
            assert!(mode & 0o100 != 0, "{} is executable", file.display());
        }
    }

    // A second checkout while A still links the blobs: each library's `.rlib` is linked
    // again, untouched (its `.rmeta`, copied, is what looks just built); the rest is copied.
    let b = sandbox.checkout("b/ws");
    b.kache_build(&[]);
    let second = compiles(&log.take());
    for event in second.iter().filter(|e| crate_name(e) != "fixture_where") {
        let has_rlib = event.crate_types.iter().any(|t| t == "lib" || t == "rlib");
        let linked_ok = if has_rlib {
            event.hardlinked_bytes > 0 && event.copied_bytes > 0
        } else {
            event.hardlinked_bytes == 0
        };
        assert!(
            event.result == Outcome::LocalHit
                && linked_ok
                && event.hardlinked_bytes + event.copied_bytes == event.size,
            "{}: only the .rlib linked, since A links the blobs\n{}",
            unit(event),
            describe(&second)
        );
    }
    let b_outputs = outputs_and_blobs(&b);
    assert!(
        b_outputs
            .iter()
            .any(|(f, _)| f.extension() == Some("rlib".as_ref()))
    );
    for (file, blob) in &b_outputs {
        if file.extension() == Some("rlib".as_ref()) {
            assert_eq!(inode(file), inode(blob), "{} is a link", file.display());
        } else {
            assert_ne!(inode(file), inode(blob), "{} is a copy", file.display());
        }
    }
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
    // Sharing the .rlib's mtime disturbs neither checkout: both are up to date afterwards.
    for (ws, name) in [(&a, "A"), (&b, "B")] {
        assert_up_to_date(ws, &mut log, &format!("checkout {name} after B's build"));
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
    }

    // A blob dated in the future (the clock was set back since) is copied, not linked
    // untouched: its date would make the checkout's dependents look stale until then.
    let core_blob = blob_of(a.cache_dir(), &a.deps_file("libfixture_core-", ".rlib"));
    let stored_mtime = fs::metadata(&core_blob)
        .expect("stat")
        .modified()
        .expect("mtime");
    let set_mtime = |t| {
        fs::File::open(&core_blob)
            .and_then(|f| f.set_modified(t))
            .expect("set the blob's mtime")
    };
    set_mtime(std::time::SystemTime::now() + std::time::Duration::from_secs(86_400));
    let c = sandbox.checkout("c/ws");
    c.kache_build(&[]);
    log.take();
    let core_rlib = c.deps_file("libfixture_core-", ".rlib");
    assert_ne!(
        inode(&core_rlib),
        inode(&core_blob),
        "a future-dated blob is copied"
    );
    assert_up_to_date(&c, &mut log, "checkout C");
    set_mtime(stored_mtime);

    assert_a_miss_after_a_hit_leaves_blobs_alone(&a, "ext4");
}

#[test]
#[ignore = "needs root: loop-mounts a btrfs image (and mkfs.btrfs from btrfs-progs)"]
fn btrfs_reflinks_every_output() {
    let (_dir, mount) = mounted("btrfs", BTRFS_SUPER_MAGIC);
    let Warmed {
        sandbox: _sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::new_in(mount.path()).warm("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    ws.rm_target();
    ws.kache_build(&[]);
    let warm = compiles(&log.take());
    assert_all_local_hits(&warm, "warm build on btrfs");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
    for event in &warm {
        let size = event.size;
        assert!(
            size > 0
                && event.reflinked_bytes == size
                && event.hardlinked_bytes == 0
                && event.copied_bytes == 0,
            "{}: every byte reflinked\n{event:?}",
            unit(event)
        );
    }
    for (file, blob) in outputs_and_blobs(&ws) {
        assert_ne!(
            inode(&file),
            inode(&blob),
            "{} is a reflink: its own inode",
            file.display()
        );
    }
    assert_a_miss_after_a_hit_leaves_blobs_alone(&ws, "btrfs");
}

// --- planted symlinks --------------------------------------------------------------------

/// Somebody else: the owner of the planted symlinks and of the dir they point to.
const INTRUDER: u32 = 4242;

/// A dir owned by the intruder, and a symlink at `link` to it, owned by the intruder too.
fn plant(sandbox: &Sandbox, name: &str, link: &Path) -> PathBuf {
    let theirs = sandbox.root().join(format!("intruder-{name}"));
    fs::create_dir_all(&theirs).expect("create the intruder's dir");
    std::os::unix::fs::chown(&theirs, Some(INTRUDER), Some(INTRUDER)).expect("chown");
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).expect("chmod");
    std::os::unix::fs::symlink(&theirs, link).expect("plant the symlink");
    std::os::unix::fs::lchown(link, Some(INTRUDER), Some(INTRUDER)).expect("lchown");
    theirs
}

fn assert_empty(dir: &Path, context: &str) {
    let left: Vec<_> = fs::read_dir(dir)
        .expect("read the intruder's dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "{context}: kache wrote into the intruder's dir: {left:?}"
    );
}

#[test]
#[ignore = "needs root: chowns the planted symlinks to another user"]
fn planted_symlinks_are_refused() {
    let sandbox = Sandbox::new();
    let mut ws = sandbox.checkout("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    // The cache dir itself.
    let planted_cache = sandbox.root().join("planted-cache");
    let theirs = plant(&sandbox, "cache", &planted_cache);
    ws.set_cache_dir(&planted_cache);
    let output = ws.kache_build(&[]);
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "planted cache dir");
    let lines = kache_lines(&output);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("symlink")),
        "planted cache dir: one warning naming the symlink per invocation\n{}",
        lines.join("\n")
    );
    assert_empty(&theirs, "planted cache dir");

    // Its blobs and tmp dirs.
    for sub in ["blobs", "tmp"] {
        let cache = sandbox.root().join(format!("cache-with-planted-{sub}"));
        fs::create_dir_all(&cache).expect("create the cache dir");
        let theirs = plant(&sandbox, sub, &cache.join(sub));
        ws.set_cache_dir(&cache);
        let mut log = EventCursor::new(&cache);
        ws.rm_target();
        ws.kache_build(&[]);
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "planted {sub} dir");
        let events = compiles(&log.take());
        assert!(
            !events.is_empty()
                && events.iter().all(|e| e.result == Outcome::Error
                    && e.warning.as_deref().is_some_and(|w| w.contains("symlink"))),
            "planted {sub} dir: every invocation refuses the store\n{}",
            describe(&events)
        );
        assert_empty(&theirs, &format!("planted {sub} dir"));
    }

    // A blob replaced by a symlink to a file with the very same bytes: still refused, and the
    // output is never a link to the intruder's file.
    let cache = sandbox.root().join("cache-with-planted-blob");
    ws.set_cache_dir(&cache);
    ws.rm_target();
    ws.kache_build(&[]);
    let rlib = ws.deps_file("libfixture_core-", ".rlib");
    let blob = blob_of(&cache, &rlib);
    let theirs = sandbox.root().join("intruder-blob");
    fs::create_dir_all(&theirs).expect("create the intruder's dir");
    let their_file = theirs.join("core.rlib");
    fs::copy(&blob, &their_file).expect("copy the blob");
    std::os::unix::fs::chown(&their_file, Some(INTRUDER), Some(INTRUDER)).expect("chown");
    fs::remove_file(&blob).expect("remove the blob");
    std::os::unix::fs::symlink(&their_file, &blob).expect("plant the blob symlink");
    std::os::unix::fs::lchown(&blob, Some(INTRUDER), Some(INTRUDER)).expect("lchown");
    let mut log = EventCursor::new(&cache);
    ws.rm_target();
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "planted blob");
    let core = of_crate(&events, "fixture_core");
    assert!(
        core.len() == 1 && core[0].result == Outcome::Miss && core[0].warning.is_some(),
        "planted blob: refused (warning) and compiled\n{}",
        describe(&events)
    );
    let restored = ws.deps_file("libfixture_core-", ".rlib");
    let meta = fs::symlink_metadata(&restored).expect("stat the output");
    assert!(
        meta.file_type().is_file() && inode(&restored) != inode(&their_file),
        "the output is the compiler's, not a link to the intruder's file"
    );
    assert!(
        fs::symlink_metadata(&blob).is_ok_and(|m| m.file_type().is_file()),
        "the planted symlink was replaced by a real blob when the output was stored again"
    );
    verify(&cache, false).assert_clean("after the planted blob");

    // A symlink the user made (owned by them) is fine: e.g. the cache on a bigger disk.
    let own_link = sandbox.root().join("my-cache-link");
    std::os::unix::fs::symlink(&cache, &own_link).expect("symlink");
    ws.set_cache_dir(&own_link);
    let mut log = EventCursor::new(&cache);
    ws.rm_target();
    ws.kache_build(&[]);
    assert_all_local_hits(&compiles(&log.take()), "own symlink to the cache dir");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
}
