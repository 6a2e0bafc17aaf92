//! Keeping the store healthy: eviction (`gc`) and consistency checks (`verify`).
//!
//! Eviction removes index rows first (one transaction) and blob files after, while holding the
//! store's exclusive maintenance lock; restores hold the shared lock while they link, so a
//! blob is never deleted under a restore. Blob files not named by the index are only removed
//! once they are old enough that no store in progress can still be about to commit them.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Store, StoreError, now_secs, remove_entry_in, write_tx};
use crate::key::hash_file_contents;

/// Unindexed blobs and temporary files younger than this may belong to a store in progress.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub size_before: u64,
    pub size_after: u64,
    pub entries_evicted: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub orphans_removed: usize,
    pub temp_files_removed: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub corrupt_blobs: Vec<String>,
    pub missing_blobs: Vec<String>,
    pub orphan_blobs: Vec<String>,
    pub wrong_refcounts: usize,
    pub damaged_entries: Vec<String>,
    pub repaired: bool,
}

impl VerifyReport {
    pub fn problems(&self) -> usize {
        self.corrupt_blobs.len()
            + self.missing_blobs.len()
            + self.orphan_blobs.len()
            + self.wrong_refcounts
            + self.damaged_entries.len()
    }
}

impl Store {
    /// Total bytes of indexed blobs.
    pub fn size(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.conn()
                .query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Evicts least-recently-used entries until the store is at most `max_size` bytes and no
    /// entry is older than `max_age` (by last use); then removes unreferenced blobs, old
    /// orphans and stale temporary files.
    pub fn gc(
        &self,
        max_size: u64,
        max_age: Option<Duration>,
        dry_run: bool,
    ) -> Result<GcReport, StoreError> {
        let _lock = self.lock_exclusive();
        let mut report = GcReport {
            dry_run,
            size_before: self.size()?,
            ..GcReport::default()
        };
        let candidates: Vec<(String, i64)> = self
            .conn()
            .prepare("SELECT key, last_used FROM entries ORDER BY last_used ASC, created ASC")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let age_cutoff = max_age.map(|a| now_secs() - a.as_secs() as i64);
        let blob_sizes: HashMap<String, u64> = self
            .conn()
            .prepare("SELECT hash, size FROM blobs")?
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;

        let tx = write_tx(self.conn())?;
        let mut size = report.size_before;
        let mut freed_blobs = Vec::new();
        for (key, last_used) in candidates {
            let too_old = age_cutoff.is_some_and(|c| last_used < c);
            if size <= max_size && !too_old {
                break;
            }
            for blob in remove_entry_in(&tx, &key)? {
                let bytes = blob_sizes.get(&blob).copied().unwrap_or(0);
                size = size.saturating_sub(bytes);
                report.bytes_freed += bytes;
                freed_blobs.push(blob);
            }
            report.entries_evicted += 1;
        }
        if dry_run {
            tx.rollback()?;
        } else {
            tx.commit()?;
            for blob in &freed_blobs {
                let _ = fs::remove_file(self.blob_path(blob));
            }
        }
        report.blobs_removed = freed_blobs.len();
        report.size_after = size;
        if !dry_run {
            let indexed = self.indexed_blobs()?;
            for (hash, path) in self.blob_files() {
                if !indexed.contains(&hash) && older_than(&path, ORPHAN_GRACE) {
                    let _ = fs::remove_file(&path);
                    report.orphans_removed += 1;
                }
            }
            if let Ok(tmp) = fs::read_dir(self.dir().join("tmp")) {
                for f in tmp.flatten() {
                    if older_than(&f.path(), ORPHAN_GRACE) && fs::remove_file(f.path()).is_ok() {
                        report.temp_files_removed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Re-hashes every blob and checks the index against the blob directory. With `repair`,
    /// removes what is broken and recomputes reference counts.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, StoreError> {
        let _lock = self.lock_exclusive();
        let mut report = VerifyReport::default();
        let rows: Vec<(String, i64, i64)> = self
            .conn()
            .prepare("SELECT hash, size, refs FROM blobs")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut bad: HashSet<String> = HashSet::new();
        for (hash, size, _) in &rows {
            let path = self.blob_path(hash);
            report.blobs_checked += 1;
            match fs::metadata(&path) {
                Err(_) => {
                    report.missing_blobs.push(hash.clone());
                    bad.insert(hash.clone());
                }
                Ok(m) => {
                    report.bytes_checked += m.len();
                    let ok = m.len() == *size as u64
                        && hash_file_contents(&path).is_ok_and(|h| &h == hash);
                    if !ok {
                        report.corrupt_blobs.push(hash.clone());
                        bad.insert(hash.clone());
                    }
                }
            }
        }
        let actual_refs: HashMap<String, i64> = self
            .conn()
            .prepare("SELECT blob, COUNT(*) FROM outputs GROUP BY blob")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let recorded: HashMap<&str, i64> = rows.iter().map(|(h, _, r)| (h.as_str(), *r)).collect();
        report.wrong_refcounts = actual_refs
            .iter()
            .filter(|(h, n)| recorded.get(h.as_str()) != Some(n))
            .count()
            + recorded
                .keys()
                .filter(|h| !actual_refs.contains_key(**h))
                .count();
        let mut damaged: Vec<String> = self
            .conn()
            .prepare("SELECT DISTINCT entry, blob FROM outputs")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .filter_map(Result::ok)
            .filter(|(_, b)| bad.contains(b) || !recorded.contains_key(b.as_str()))
            .map(|(e, _)| e)
            .collect();
        damaged.sort();
        damaged.dedup();
        report.damaged_entries = damaged;
        let indexed: HashSet<String> = rows.iter().map(|(h, _, _)| h.clone()).collect();
        report.orphan_blobs = self
            .blob_files()
            .into_iter()
            .filter(|(h, _)| !indexed.contains(h))
            .map(|(h, _)| h)
            .collect();

        if repair && report.problems() > 0 {
            let tx = write_tx(self.conn())?;
            for key in &report.damaged_entries {
                remove_entry_in(&tx, key)?;
            }
            tx.execute("DELETE FROM blobs", [])?;
            tx.execute(
                "INSERT INTO blobs(hash, size, refs)
                 SELECT blob, MAX(size), COUNT(*) FROM outputs GROUP BY blob",
                [],
            )?;
            tx.commit()?;
            let keep = self.indexed_blobs()?;
            for (hash, path) in self.blob_files() {
                if !keep.contains(&hash) || bad.contains(&hash) {
                    let _ = fs::remove_file(path);
                }
            }
            report.repaired = true;
        }
        Ok(report)
    }

    fn indexed_blobs(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .conn()
            .prepare("SELECT hash FROM blobs")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Every file in the blob directory, by name.
    fn blob_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(fans) = fs::read_dir(self.dir().join("blobs")) else {
            return out;
        };
        for fan in fans.flatten() {
            if let Ok(files) = fs::read_dir(fan.path()) {
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    out.push((name, f.path()));
                }
            }
        }
        out
    }

    /// Blobs are linked into place while this shared lock is held; maintenance takes it
    /// exclusively before deleting any. `None` when the lock file cannot be opened, in which
    /// case the caller goes on unprotected rather than failing the build.
    pub fn lock_shared(&self) -> Option<fs::File> {
        lock(self.dir(), libc::LOCK_SH)
    }

    fn lock_exclusive(&self) -> Option<fs::File> {
        lock(self.dir(), libc::LOCK_EX)
    }
}

fn lock(dir: &Path, how: libc::c_int) -> Option<fs::File> {
    use std::os::fd::AsRawFd;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("maintenance.lock"))
        .ok()?;
    // SAFETY: flock on a descriptor we own; it is released when the file is dropped.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
    (rc == 0).then_some(f)
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|a| a >= age)
}
