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
    let meta = std::fs::metadata(rustc).ok();
    let stamp = meta.as_ref().map(|m| {
        (
            m.size(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        )
    });
    let memo_path = memo_path(cache_dir, rustc, rustup_toolchain);
    let remembered = || {
        let (size, mtime_ns) = stamp?;
        let bytes = crate::fsutil::read_below(cache_dir, &memo_path).ok()?;
        let memo = serde_json::from_slice::<Memo>(&bytes).ok()?;
        (memo.rustc == rustc
            && memo.size == size
            && memo.mtime_ns == mtime_ns
            && memo.rustup_toolchain.as_deref() == rustup_toolchain)
            .then_some(memo.toolchain)
    };
    if let Some(toolchain) = remembered() {
        return Ok(toolchain);
    }
    // cargo starts its first jobs together, and each would read the whole sysroot: one
    // computes while the others wait for its memo. Without the lock (a read-only cache), or
    // past a deadline (its holder stopped), each computes.
    let _computing = crate::fsutil::make_dirs_below(cache_dir, &cache_dir.join("toolchains"))
        .ok()
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
    order.sort_by_key(|&i| std::cmp::Reverse(std::fs::metadata(&files[i]).map_or(0, |m| m.len())));
    let results: Vec<OnceLock<std::io::Result<String>>> =
        files.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let _ = results[i].set(super::hash_file_contents(&files[i]));
                }
            });
        }
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
