//! Uploading what was compiled here, without delaying rustc's exit: the wrapper drops the
//! entry's key into `<cache>/upload-queue/` and starts a detached `kache sync --push
//! --background`; one worker at a time (an flock on `<cache>/upload.lock`) drains the queue.
//! A failed upload stays queued with a growing back-off and is dropped after
//! [`MAX_ATTEMPTS`]; the remote's circuit breaker stops a worker from hammering a dead remote.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{Candidate, SyncError};
use crate::events::now_ms;
use crate::fsutil;
use crate::remote::bundle::{self, Source};
use crate::remote::{RemoteError, RemoteStore, candidate_object, entry_object};
use crate::store::Store;

/// Uploads of one entry are given up after this many failed attempts.
pub(crate) const MAX_ATTEMPTS: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QueueItem {
    entry: String,
    invocation_key: String,
    attempts: u32,
    /// Not before this time (unix ms).
    next_try_ms: u64,
}

fn queue_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("upload-queue")
}

/// Queues an entry for upload.
pub fn enqueue(cache_dir: &Path, entry: &str, invocation_key: &str) -> Result<(), SyncError> {
    let item = QueueItem {
        entry: entry.to_owned(),
        invocation_key: invocation_key.to_owned(),
        attempts: 0,
        next_try_ms: 0,
    };
    write_item(cache_dir, &item)
}

fn write_item(cache_dir: &Path, item: &QueueItem) -> Result<(), SyncError> {
    let path = queue_dir(cache_dir).join(&item.entry);
    let json = serde_json::to_vec(item).unwrap_or_default();
    fsutil::write_atomic(cache_dir, &path, &json)
        .map_err(|source| SyncError::Queue { path, source })
}

/// How many entries wait for upload.
pub(crate) fn queue_len(cache_dir: &Path) -> usize {
    fs::read_dir(queue_dir(cache_dir))
        .map(|d| d.flatten().filter(|f| !is_temp(&f.path())).count())
        .unwrap_or(0)
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Starts a detached worker that drains the queue; returns at once. The worker has no
/// stdio and its own session, so cargo never waits for it.
pub(crate) fn spawn_worker() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    cmd.args(["sync", "--push", "--background"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        tracing::debug!("cannot start the upload worker: {e}");
    }
}

/// The worker lock; `None` when another worker holds it and `wait` is false.
pub(crate) fn lock(cache_dir: &Path, wait: bool) -> Option<fs::File> {
    let f = fsutil::open_below(
        cache_dir,
        &cache_dir.join("upload.lock"),
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .ok()?;
    let how = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; released when the file is dropped.
    (unsafe { libc::flock(f.as_raw_fd(), how) } == 0).then_some(f)
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PushReport {
    pub uploaded: usize,
    pub already_there: usize,
    pub bytes: u64,
    pub failed: usize,
    pub dropped: usize,
    /// Entries not uploaded because a blob was damaged on disk (dropped locally too).
    pub damaged: usize,
    pub remaining: usize,
}

/// Uploads every due queued entry. `dry_run` only counts them. `progress` is told the
/// queue length, then once per entry done.
pub fn drain(
    remote: &dyn RemoteStore,
    store: &Store,
    dry_run: bool,
    progress: &mut dyn FnMut(Option<usize>),
) -> PushReport {
    let mut report = PushReport::default();
    let dir = queue_dir(store.dir());
    let mut items: Vec<(PathBuf, QueueItem)> = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|f| f.path())
                .filter(|p| !is_temp(p))
                .filter_map(|p| {
                    let bytes = fsutil::read_below(store.dir(), &p).ok()?;
                    let item = serde_json::from_slice(&bytes).ok()?;
                    Some((p, item))
                })
                .collect()
        })
        .unwrap_or_default();
    items.sort_by_key(|(_, i)| i.next_try_ms);
    progress(Some(items.len()));
    let now = now_ms();
    for (path, mut item) in items {
        if dry_run || item.next_try_ms > now {
            report.remaining += 1;
            progress(None);
            continue;
        }
        match upload_one(remote, store, &item) {
            Ok(Uploaded::Sent(bytes)) => {
                report.uploaded += 1;
                report.bytes += bytes;
                record_upload(store.dir(), &item.entry, bytes);
                let _ = fs::remove_file(&path);
            }
            Ok(Uploaded::AlreadyThere) => {
                report.already_there += 1;
                let _ = fs::remove_file(&path);
            }
            Ok(Uploaded::Gone) => {
                report.dropped += 1;
                let _ = fs::remove_file(&path);
            }
            Ok(Uploaded::Damaged) => {
                report.dropped += 1;
                report.damaged += 1;
                let _ = fs::remove_file(&path);
            }
            Err(e) => {
                item.attempts += 1;
                if item.attempts >= MAX_ATTEMPTS {
                    tracing::warn!("giving up uploading {}: {e}", item.entry);
                    report.dropped += 1;
                    let _ = fs::remove_file(&path);
                } else {
                    report.failed += 1;
                    report.remaining += 1;
                    // 2 s, 4 s, 8 s, ... between attempts.
                    item.next_try_ms = now_ms() + 1000 * (1u64 << item.attempts.min(12));
                    let _ = write_item(store.dir(), &item);
                }
                if matches!(
                    e,
                    SyncError::Remote(RemoteError::BreakerOpen | RemoteError::BudgetSpent)
                ) {
                    // Nothing more will get through now; leave the rest for later.
                    break;
                }
            }
        }
        progress(None);
    }
    report.remaining = queue_len(store.dir());
    report
}

enum Uploaded {
    Sent(u64),
    AlreadyThere,
    /// The entry left the local store (evicted) before it could be uploaded.
    Gone,
    /// A blob of the entry no longer hashes to its name; the entry was dropped, not sent.
    Damaged,
}

fn upload_one(
    remote: &dyn RemoteStore,
    store: &Store,
    item: &QueueItem,
) -> Result<Uploaded, SyncError> {
    let Some(entry) = store.load_entry(&item.entry)? else {
        return Ok(Uploaded::Gone);
    };
    let Some(manifest) = store
        .manifests(&item.invocation_key)?
        .into_iter()
        .find(|(e, _)| *e == item.entry)
        .map(|(_, m)| m)
    else {
        return Ok(Uploaded::Gone);
    };
    let object = entry_object(&entry.key)?;
    let mut sent = 0;
    let bundle_there = remote.exists(&object)?;
    if !bundle_there {
        let meta = serde_json::to_vec(&entry).unwrap_or_default();
        // Each blob is read once and hashed before it is packed: a blob damaged on disk must
        // not become a remote entry that every reader downloads and rejects. What is packed
        // is exactly what was checked.
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        for out in &entry.outputs {
            if blobs.iter().any(|(b, _)| *b == out.blob) {
                continue;
            }
            let bytes = fsutil::read_below(store.dir(), &store.blob_path(&out.blob));
            match bytes {
                Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() == out.blob => {
                    blobs.push((out.blob.clone(), bytes));
                }
                _ => {
                    // Self-healing, as a hit that finds a damaged blob: the entry is dropped
                    // here too (the next build compiles and stores it again).
                    tracing::warn!(
                        "not uploading {}: its blob {} is damaged; dropping the entry",
                        entry.key,
                        out.blob
                    );
                    store.remove_entry(&entry.key)?;
                    return Ok(Uploaded::Damaged);
                }
            }
        }
        let files: Vec<(&str, Source)> = blobs
            .iter()
            .map(|(b, bytes)| (b.as_str(), Source::Bytes(bytes)))
            .collect();
        let packed = bundle::pack(&meta, &files)?;
        remote.put(&object, &packed)?;
        sent += packed.len() as u64;
    }
    // The candidate goes up after the bundle, so a reader that finds it finds the entry too.
    // It is an object of its own, written whole and never read back and rewritten, so
    // uploaders of the same invocation key at the same time keep each other's.
    let candidate_name = candidate_object(&item.invocation_key, &entry.key)?;
    if bundle_there && remote.exists(&candidate_name)? {
        return Ok(Uploaded::AlreadyThere);
    }
    let body = serde_json::to_vec(&Candidate {
        entry: entry.key.clone(),
        manifest,
    })
    .unwrap_or_default();
    remote.put(&candidate_name, &body)?;
    sent += body.len() as u64;
    Ok(Uploaded::Sent(sent))
}

/// Appends to `<cache>/uploads.jsonl`, which `kache stats` sums.
fn record_upload(cache_dir: &Path, entry: &str, bytes: u64) {
    let line = format!(
        "{{\"ts\":{},\"entry\":\"{entry}\",\"bytes\":{bytes}}}\n",
        now_ms()
    );
    if let Ok(mut f) = fsutil::open_below(
        cache_dir,
        &cache_dir.join("uploads.jsonl"),
        fs::OpenOptions::new().create(true).append(true),
    ) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Total bytes uploaded, from `<cache>/uploads.jsonl`.
pub(crate) fn uploaded_bytes(cache_dir: &Path) -> u64 {
    fsutil::read_below(cache_dir, &cache_dir.join("uploads.jsonl"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v.get("bytes").and_then(|b| b.as_u64()))
                .sum()
        })
        .unwrap_or(0)
}
