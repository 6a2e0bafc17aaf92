//! Toolchain identity: `rustc -vV` plus a content hash of the sysroot's libraries.
//!
//! Computing it runs rustc twice and reads the standard library, so it is memoised on disk in
//! `<cache>/toolchains/`, keyed by the rustc path and validated by its size and mtime (and by
//! `RUSTUP_TOOLCHAIN` when the path is a rustup proxy, whose own bytes say nothing about the
//! toolchain it runs).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolchainError {
    #[error("cannot run {program} {args}: {source}")]
    Spawn {
        program: PathBuf,
        args: &'static str,
        source: std::io::Error,
    },
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        program: PathBuf,
        args: &'static str,
        stderr: String,
    },
    #[error("cannot read the sysroot {path}: {source}")]
    Sysroot {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Toolchain {
    pub rustc: PathBuf,
    /// Output of `rustc -vV`.
    pub version: String,
    pub host: String,
    pub release: String,
    pub sysroot: PathBuf,
    /// blake3 over the sysroot's library files (names and contents).
    pub sysroot_hash: String,
    /// What goes in the key: a hash of `version` and `sysroot_hash`.
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Memo {
    rustc: PathBuf,
    size: u64,
    mtime_ns: i128,
    rustup_toolchain: Option<String>,
    toolchain: Toolchain,
}

/// Returns the toolchain identity of `rustc`, from the memo when it is still valid.
pub(crate) fn identify(
    rustc: &Path,
    cache_dir: &Path,
    rustup_toolchain: Option<&str>,
) -> Result<Toolchain, ToolchainError> {
    if is_rustup_proxy(rustc) {
        // A rustup proxy runs whichever toolchain this directory selects (its
        // `rust-toolchain.toml`, an override, the default, `RUSTUP_TOOLCHAIN`), and its own
        // stamp does not change when that toolchain is updated: ask it which sysroot it
        // runs, and identify that toolchain's own rustc.
        let sysroot = PathBuf::from(run(rustc, &["--print", "sysroot"])?.trim());
        let real = sysroot.join("bin").join("rustc");
        if real.is_file() && !is_rustup_proxy(&real) {
            return identify(&real, cache_dir, None);
        }
        return compute(rustc);
    }
    let stamp = stamp_of(rustc);
    let memo_path = memo_path(cache_dir, rustc, rustup_toolchain);
    let remembered = || remembered(rustc, stamp, cache_dir, &memo_path, rustup_toolchain);
    if let Some(toolchain) = remembered() {
        return Ok(toolchain);
    }
    // cargo starts its first jobs together, and each would read the whole sysroot: one
    // computes while the others wait for its memo. Without the lock (a read-only cache), or
    // past a deadline (its holder stopped), each computes.
    let _computing = stamp
        .and_then(|_| crate::fsutil::make_dirs_below(cache_dir, &cache_dir.join("toolchains")).ok())
        .and_then(|()| wait_for_lock(&memo_path.with_extension("lock"), LOCK_WAIT));
    if let Some(toolchain) = remembered() {
        return Ok(toolchain);
    }
    let toolchain = compute(rustc)?;
    if let Some((size, mtime_ns)) = stamp {
        let memo = Memo {
            rustc: rustc.to_owned(),
            size,
            mtime_ns,
            rustup_toolchain: rustup_toolchain.map(str::to_owned),
            toolchain: toolchain.clone(),
        };
        // The memo is an optimisation: failing to write it costs time, never correctness.
        if let Ok(json) = serde_json::to_vec(&memo) {
            let _ = crate::fsutil::write_atomic(cache_dir, &memo_path, &json);
        }
    }
    Ok(toolchain)
}

/// The identity of `rustc` if it is memoised already; never computed here. `None` for a
/// rustup proxy too: which toolchain it runs takes running it to know.
pub(crate) fn memoised(
    rustc: &Path,
    cache_dir: &Path,
    rustup_toolchain: Option<&str>,
) -> Option<Toolchain> {
    if is_rustup_proxy(rustc) {
        return None;
    }
    let memo_path = memo_path(cache_dir, rustc, rustup_toolchain);
    remembered(
        rustc,
        stamp_of(rustc),
        cache_dir,
        &memo_path,
        rustup_toolchain,
    )
}

/// `rustc`'s size and mtime, which its memo must match.
fn stamp_of(rustc: &Path) -> Option<(u64, i128)> {
    std::fs::metadata(rustc).ok().map(|m| {
        (
            m.size(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        )
    })
}

/// The memo of `rustc` at `memo_path`, if it was made for this very file (`stamp`) and
/// `RUSTUP_TOOLCHAIN`.
fn remembered(
    rustc: &Path,
    stamp: Option<(u64, i128)>,
    cache_dir: &Path,
    memo_path: &Path,
    rustup_toolchain: Option<&str>,
) -> Option<Toolchain> {
    let (size, mtime_ns) = stamp?;
    let bytes = crate::fsutil::read_below(cache_dir, memo_path).ok()?;
    let memo = serde_json::from_slice::<Memo>(&bytes).ok()?;
    (memo.rustc == rustc
        && memo.size == size
        && memo.mtime_ns == mtime_ns
        && memo.rustup_toolchain.as_deref() == rustup_toolchain)
        .then_some(memo.toolchain)
}

/// Whether `path` is one of rustup's proxies: rustup installs them as links to itself (hard
/// or symbolic) named after the tool. Runs on every invocation, so a plain file costs one
/// `lstat`.
fn is_rustup_proxy(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let (real, meta) = if meta.file_type().is_symlink() {
        match std::fs::canonicalize(path).and_then(|r| std::fs::metadata(&r).map(|m| (r, m))) {
            Ok(found) => found,
            Err(_) => return false,
        }
    } else {
        (path.to_owned(), meta)
    };
    if real.file_name().is_some_and(|n| n == "rustup") {
        return true;
    }
    // A hard link: the same file as the `rustup` beside it.
    meta.nlink() > 1
        && real
            .parent()
            .and_then(|dir| std::fs::metadata(dir.join("rustup")).ok())
            .is_some_and(|r| r.dev() == meta.dev() && r.ino() == meta.ino())
}

/// How long a process waits for another computing the same identity: many times what
/// computing it takes.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The lock at `path`, polled until `wait` has passed; `None` then (or if it cannot be had).
fn wait_for_lock(path: &Path, wait: std::time::Duration) -> Option<std::fs::File> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(lock) = crate::fsutil::lock_file(path, libc::LOCK_EX | libc::LOCK_NB) {
            return Some(lock);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn memo_path(cache_dir: &Path, rustc: &Path, rustup_toolchain: Option<&str>) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(rustc.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(rustup_toolchain.unwrap_or_default().as_bytes());
    let name = h.finalize().to_hex();
    cache_dir
        .join("toolchains")
        .join(format!("{}.json", &name[..32]))
}

fn run(rustc: &Path, args: &'static [&'static str]) -> Result<String, ToolchainError> {
    let shown = if args.len() == 1 {
        args[0]
    } else {
        "--print sysroot"
    };
    let out = Command::new(rustc)
        .args(args)
        .output()
        .map_err(|source| ToolchainError::Spawn {
            program: rustc.to_owned(),
            args: shown,
            source,
        })?;
    if !out.status.success() {
        return Err(ToolchainError::Failed {
            program: rustc.to_owned(),
            args: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn compute(rustc: &Path) -> Result<Toolchain, ToolchainError> {
    let version = run(rustc, &["-vV"])?;
    let field = |name: &str| {
        version
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let host = field("host:");
    let release = field("release:");
    let sysroot = PathBuf::from(run(rustc, &["--print", "sysroot"])?.trim());
    let sysroot_hash = hash_sysroot(&sysroot)?;
    let mut id = blake3::Hasher::new();
    id.update(version.as_bytes());
    id.update(b"\0");
    id.update(sysroot_hash.as_bytes());
    Ok(Toolchain {
        rustc: rustc.to_owned(),
        version,
        host,
        release,
        sysroot,
        sysroot_hash,
        id: id.finalize().to_hex().to_string(),
    })
}

/// Hashes the compiler's own libraries and every target's standard library, by relative name
/// and content, so the identity does not depend on where the toolchain is installed.
fn hash_sysroot(sysroot: &Path) -> Result<String, ToolchainError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| ToolchainError::Sysroot { path, source }
    };
    let lib = sysroot.join("lib");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&lib).map_err(err(&lib))? {
        let entry = entry.map_err(err(&lib))?;
        if entry.file_type().map_err(err(&lib))?.is_file() {
            files.push(entry.path());
        }
    }
    let rustlib = lib.join("rustlib");
    if let Ok(targets) = std::fs::read_dir(&rustlib) {
        for target in targets.flatten() {
            let target_lib = target.path().join("lib");
            if let Ok(libs) = std::fs::read_dir(&target_lib) {
                for f in libs.flatten() {
                    if f.file_type().is_ok_and(|t| t.is_file()) {
                        files.push(f.path());
                    }
                }
            }
        }
    }
    files.sort();
    let contents = hash_all(&files);
    let mut h = blake3::Hasher::new();
    for (f, content) in files.iter().zip(contents) {
        let rel = f.strip_prefix(sysroot).unwrap_or(f);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(content.map_err(err(f))?.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The content hash of each of `files`, in order, read on up to four threads: a sysroot is
/// a few hundred MB, most of it in two libraries (LLVM and the compiler driver), and a
/// build's first jobs wait for it.
fn hash_all(files: &[PathBuf]) -> Vec<std::io::Result<String>> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Largest first, so the big libraries start at once and the small ones fill in.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_cached_key(|&i| {
        std::cmp::Reverse(std::fs::metadata(&files[i]).map_or(0, |m| m.len()))
    });
    let results: Vec<OnceLock<std::io::Result<String>>> =
        files.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let _ = results[i].set(super::hash_file_contents(&files[i]));
        }
    };
    let helpers = std::thread::available_parallelism().map_or(0, |n| n.get().min(4) - 1);
    std::thread::scope(|scope| {
        // A thread the system refuses (a process limit) is simply not there: this one works
        // through whatever is left.
        for _ in 0..helpers {
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|| Err(std::io::Error::other("not hashed")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hashed_on_threads_come_back_in_order_and_errors_stay_with_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files: Vec<PathBuf> = (0..9)
            .map(|i| {
                let f = dir.path().join(format!("lib{i}.so"));
                std::fs::write(&f, vec![i as u8; 1000 * (9 - i)]).expect("write");
                f
            })
            .collect();
        files.insert(4, dir.path().join("missing.so"));
        let got = hash_all(&files);
        assert_eq!(got.len(), files.len());
        for (f, h) in files.iter().zip(&got) {
            match super::super::hash_file_contents(f) {
                Ok(want) => assert_eq!(h.as_ref().expect("hashed"), &want),
                Err(_) => assert!(h.is_err(), "{} has no hash", f.display()),
            }
        }
    }

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_only_until_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let held = wait_for_lock(&path, std::time::Duration::ZERO).expect("free lock");
        let start = std::time::Instant::now();
        assert!(wait_for_lock(&path, std::time::Duration::from_millis(50)).is_none());
        assert!(start.elapsed() >= std::time::Duration::from_millis(50));
        drop(held);
        assert!(wait_for_lock(&path, std::time::Duration::ZERO).is_some());
    }

    /// Writes an executable script, and waits until it can be run (another test thread
    /// forking at the wrong moment can hold it open for writing for an instant).
    fn script(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("write script");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for _ in 0..50 {
            if Command::new(path).arg("-vV").output().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A fake toolchain at `root`: `bin/rustc` answers `-vV` and `--print sysroot`, and its
    /// one library's bytes name it.
    fn fake_toolchain(root: &Path, name: &str) {
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::write(root.join("lib/librustc_driver.so"), name).expect("write");
        script(
            &root.join("bin/rustc"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in\n  -vV) printf 'rustc 9.9.9 ({name})\\nhost: \
                 x86_64-unknown-linux-gnu\\nrelease: 9.9.9\\n' ;;\n  *) echo '{}' ;;\nesac\n",
                root.display()
            ),
        );
    }

    #[test]
    fn a_rustup_proxy_is_identified_by_the_toolchain_it_runs_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fake_toolchain(&a, "a");
        fake_toolchain(&b, "b");
        // The proxy runs whichever toolchain `selected` names, as rustup follows
        // `rust-toolchain.toml`, overrides and the default.
        let selected = dir.path().join("selected");
        std::fs::write(&selected, a.display().to_string()).expect("write");
        let proxies = dir.path().join("proxies");
        std::fs::create_dir_all(&proxies).expect("mkdir");
        script(
            &proxies.join("rustup"),
            &format!(
                "#!/bin/sh\nexec \"$(cat '{}')/bin/rustc\" \"$@\"\n",
                selected.display()
            ),
        );
        std::fs::hard_link(proxies.join("rustup"), proxies.join("rustc")).expect("link");
        let proxy = proxies.join("rustc");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("mkdir");

        let first = identify(&proxy, &cache, None).expect("identify a");
        assert_eq!(first.rustc, a.join("bin/rustc"));
        std::fs::write(&selected, b.display().to_string()).expect("write");
        let second = identify(&proxy, &cache, None).expect("identify b");
        assert_ne!(second.id, first.id, "the proxy now runs another toolchain");
        assert_eq!(second.rustc, b.join("bin/rustc"));
        // Under a toolchain name (`RUSTUP_TOOLCHAIN=stable`), which stays across updates.
        std::fs::write(&selected, a.display().to_string()).expect("write");
        let named = identify(&proxy, &cache, Some("stable")).expect("identify named");
        assert_eq!(named.id, first.id);
    }

    #[test]
    fn the_identity_is_remembered_and_the_same_across_cache_dirs() {
        let rustc = crate::key::invocation_key::resolve_program(
            Path::new("rustc"),
            Path::new("/"),
            std::env::var("PATH").ok().as_deref(),
        )
        .expect("rustc on PATH");
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let first = identify(&rustc, a.path(), None).expect("identify");
        assert_eq!(identify(&rustc, a.path(), None).expect("memo"), first);
        assert_eq!(
            identify(&rustc, b.path(), None).expect("again").id,
            first.id
        );
    }
}
