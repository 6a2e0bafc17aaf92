//! Keeping the store healthy: eviction (`gc`, also started automatically in the background
//! when a store pushes the cache past its limit), emptying it (`clear`) and consistency checks
//! (`verify`).
//!
//! Eviction removes index rows first (one transaction) and blob files after, while holding the
//! store's exclusive maintenance lock; a restore holds the shared lock from before it reads
//! the index until its links are made, so a blob is never deleted under a restore, and builds
//! wait at most for the deletion of files, never for a whole gc. Every blob file is deleted
//! through [`Store::delete_unindexed_blobs`] (a write transaction checks the index first) and
//! every commit checks its blobs inside its own, so no interleaving leaves the index naming a
//! missing blob. Blob files not named by the index are only removed once they are old enough
//! that no store in progress is likely to be about to commit them.
//! Nothing here runs rustc or decides hit or miss; nothing here may block a build: the
//! wrapper only ever *starts* a gc, in a detached process.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Store, StoreError, Use, now_secs, remove_entry_in, write_tx};
use crate::key::hash_file_contents;

/// Unindexed blobs and temporary files younger than this may belong to a store in progress.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(15 * 60);

/// An automatic gc brings the store down to this share of its limit, so the stores that
/// follow do not start another one at once.
pub(crate) const AUTO_GC_TARGET: f64 = 0.9;

/// Told how far a long maintenance task has got, to drive a progress bar.
pub(crate) trait Progress {
    /// A new phase of `total` units of work, counted in bytes when `bytes` is set.
    fn phase(&self, name: &'static str, total: u64, bytes: bool);
    /// `n` more units of the current phase are done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
impl Progress for () {
    fn phase(&self, _: &'static str, _: u64, _: bool) {}
    fn advance(&self, _: u64) {}
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct ClearReport {
    pub entries_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct GcReport {
    pub dry_run: bool,
    pub size_before: u64,
    pub size_after: u64,
    pub entries_evicted: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub orphans_removed: usize,
    pub temp_files_removed: usize,
    /// Stat-cache rows of files that no longer exist.
    pub stat_rows_removed: usize,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct VerifyReport {
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
    pub(crate) fn problems(&self) -> usize {
        self.corrupt_blobs.len()
            + self.missing_blobs.len()
            + self.orphan_blobs.len()
            + self.wrong_refcounts
            + self.damaged_entries.len()
    }
}

impl Store {
    /// Total bytes of indexed blobs.
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.conn()
                .query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Folds `hits` in ([`Store::fold_usage`]), then evicts least-recently-used entries until
    /// the store is at most `max_size` bytes and no entry is older than `max_age` (by last
    /// use); then removes unreferenced blobs, old
    /// orphans and stale temporary files.
    pub(crate) fn gc(
        &self,
        max_size: u64,
        max_age: Option<Duration>,
        dry_run: bool,
        hits: &[Use<'_>],
        progress: &dyn Progress,
    ) -> Result<GcReport, StoreError> {
        self.fold_usage(hits)?;
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
        let blob_sizes = self.blob_sizes()?;

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
            // The entries are gone from the index; a restore that read them before that
            // holds the shared lock until its links are made, so wait for it. Stores that
            // reuse a blob deleted here find it gone when they commit (and place it again).
            let _lock = self.lock_exclusive();
            progress.phase("removing blobs", freed_blobs.len() as u64, false);
            let freed = freed_blobs
                .iter()
                .map(|b| (b.clone(), self.blob_path(b)))
                .collect();
            self.delete_unindexed_blobs(freed)?;
            progress.advance(freed_blobs.len() as u64);
            // Orphans too are deleted under the lock, each only once a write transaction
            // has checked that no entry committed since names it.
            let files = self.blob_files();
            progress.phase("looking for orphan blobs", files.len() as u64, false);
            let indexed = self.indexed_blobs()?;
            let old_orphans: Vec<(String, PathBuf)> = files
                .into_iter()
                .filter(|(hash, path)| !indexed.contains(hash) && older_than(path, ORPHAN_GRACE))
                .collect();
            report.orphans_removed = self.delete_unindexed_blobs(old_orphans)?;
            progress.advance(report.orphans_removed as u64);
            if let Ok(tmp) = fs::read_dir(self.dir().join("tmp")) {
                for f in tmp.flatten() {
                    if older_than(&f.path(), ORPHAN_GRACE) && fs::remove_file(f.path()).is_ok() {
                        report.temp_files_removed += 1;
                    }
                }
            }
        }
        if !dry_run {
            // After the exclusive lock is released: builds never wait for this sweep, and
            // it is only a cache of hashes (a failure costs re-reading, never an entry).
            report.stat_rows_removed = super::statcache::prune_missing(self.conn()).unwrap_or(0);
        }
        report.blobs_removed = freed_blobs.len();
        report.size_after = size;
        Ok(report)
    }

    /// Re-hashes every blob and checks the index against the blob directory. With `repair`,
    /// removes what is broken and recomputes reference counts.
    pub(crate) fn verify(
        &self,
        repair: bool,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, StoreError> {
        let _lock = self.lock_exclusive();
        let mut report = VerifyReport::default();
        let rows: Vec<(String, i64, i64)> = self
            .conn()
            .prepare("SELECT hash, size, refs FROM blobs")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut bad: HashSet<String> = HashSet::new();
        let total: i64 = rows.iter().map(|(_, size, _)| size).sum();
        progress.phase("hashing blobs", total.max(0) as u64, true);
        for (hash, size, _) in &rows {
            let path = self.blob_path(hash);
            report.blobs_checked += 1;
            progress.advance((*size).max(0) as u64);
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
        // An entry whose stored description does not parse cannot be restored either.
        {
            let mut bodies = self.conn().prepare("SELECT key, body FROM entries")?;
            let rows = bodies.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let (key, body) = row?;
                if serde_json::from_slice::<super::Entry>(&body).is_err() {
                    damaged.push(key);
                }
            }
        }
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
            // Every entry naming a bad blob was dropped, so bad blobs are unindexed now.
            self.delete_unindexed_blobs(self.blob_files())?;
            report.repaired = true;
        }
        Ok(report)
    }

    /// Removes every entry, manifest and blob. The event log (the history `stats` reads) and
    /// the stat cache (which only names source files' hashes) are kept.
    pub(crate) fn clear(&self, progress: &dyn Progress) -> Result<ClearReport, StoreError> {
        let _lock = self.lock_exclusive();
        let totals = self.totals()?;
        let tx = write_tx(self.conn())?;
        for table in ["entries", "outputs", "blobs", "manifests"] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        tx.commit()?;
        let files = self.blob_files();
        progress.phase("removing blobs", files.len() as u64, false);
        let count = files.len() as u64;
        // A store that committed since the rows went keeps its blobs.
        let removed = self.delete_unindexed_blobs(files)? as u64;
        progress.advance(count);
        Ok(ClearReport {
            entries_removed: totals.entries,
            blobs_removed: removed,
            bytes_freed: totals.size,
        })
    }

    /// The automatic gc (`kache gc --auto`): when no other one is running and the store is
    /// still past `max_size`, evicts down to [`AUTO_GC_TARGET`] of it. `None` when there was
    /// nothing to do.
    pub(crate) fn auto_gc(
        &self,
        max_size: u64,
        hits: &[Use<'_>],
        progress: &dyn Progress,
    ) -> Result<Option<GcReport>, StoreError> {
        let Some(_running) = lock_auto_gc(self.dir()) else {
            return Ok(None);
        };
        // Another gc may have finished between the wrapper's look and this one.
        if self.size()? <= max_size {
            return Ok(None);
        }
        let target = (max_size as f64 * AUTO_GC_TARGET) as u64;
        self.gc(target, None, false, hits, progress).map(Some)
    }

    fn indexed_blobs(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .conn()
            .prepare("SELECT hash FROM blobs")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Every file in the blob directory, by name. A fan-out "dir" that is a symlink is not
    /// listed through: what it points to is not the store's to delete.
    fn blob_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(fans) = fs::read_dir(self.dir().join("blobs")) else {
            return out;
        };
        for fan in fans.flatten() {
            if !fan.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(files) = fs::read_dir(fan.path()) {
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    out.push((name, f.path()));
                }
            }
        }
        out
    }

    /// Every indexed blob's size, to count what evicting entries frees.
    fn blob_sizes(&self) -> Result<HashMap<String, u64>, StoreError> {
        let sizes = self
            .conn()
            .prepare("SELECT hash, size FROM blobs")?
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(sizes)
    }

    /// Removes every entry of one crate (`gc --crate`), as [`Store::gc`] evicts: index rows in
    /// one transaction, then the blobs no other entry uses, under the exclusive lock. With
    /// `dry_run`, counts without removing.
    pub(crate) fn remove_crate(
        &self,
        crate_name: &str,
        dry_run: bool,
    ) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            dry_run,
            size_before: self.size()?,
            ..GcReport::default()
        };
        let keys: Vec<String> = self
            .conn()
            .prepare("SELECT key FROM entries WHERE crate_name = ?1")?
            .query_map([crate_name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let blob_sizes = self.blob_sizes()?;
        let tx = write_tx(self.conn())?;
        let mut freed = Vec::new();
        for key in &keys {
            freed.extend(remove_entry_in(&tx, key)?);
        }
        report.entries_evicted = keys.len();
        report.blobs_removed = freed.len();
        report.bytes_freed = freed.iter().filter_map(|b| blob_sizes.get(b)).sum();
        report.size_after = report.size_before.saturating_sub(report.bytes_freed);
        if dry_run {
            tx.rollback()?;
        } else {
            tx.commit()?;
            let _lock = self.lock_exclusive();
            for blob in &freed {
                let _ = fs::remove_file(self.blob_path(blob));
            }
        }
        Ok(report)
    }

    /// Blobs are linked into place while this shared lock is held; maintenance takes it
    /// exclusively before deleting any. `None` when the lock file cannot be opened, in which
    /// case the caller goes on unprotected rather than failing the build.
    pub(crate) fn lock_shared(&self) -> Option<fs::File> {
        lock(self.dir(), libc::LOCK_SH)
    }

    pub(crate) fn lock_exclusive(&self) -> Option<fs::File> {
        lock(self.dir(), libc::LOCK_EX)
    }
}

/// Called by the wrapper after it stored an entry: when the store is past `max_size`, starts
/// `kache gc --auto` as a detached process (no stdio, its own process group, so neither cargo
/// nor a Ctrl-C in the terminal waits for or stops it) unless one is running already.
/// Returns whether it started one. Costs one `SUM` over the blob table; never blocks.
pub(crate) fn maybe_start_background_gc(store: &Store, max_size: u64) -> bool {
    if !store.size().is_ok_and(|size| size > max_size) {
        return false;
    }
    // Held by a running automatic gc for its whole run. Checked here too, not only in the
    // child, so a busy build past its limit does not fork a process per stored entry.
    if lock_auto_gc(store.dir()).is_none() {
        return false;
    }
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    start_detached_gc(&exe, store.dir(), max_size).is_ok()
}

fn start_detached_gc(exe: &Path, dir: &Path, max_size: u64) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.args(["gc", "--auto"])
        .env("KACHE_DIR", dir)
        .env("KACHE_MAX_SIZE", max_size.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(dir)
        .process_group(0);
    // Not waited for: the wrapper exits right after, and init reaps the orphan.
    cmd.spawn().map(drop)
}

/// The lock an automatic gc holds while it runs; `None` when another holds it (or the lock
/// file cannot be opened, in which case no automatic gc could run either).
fn lock_auto_gc(dir: &Path) -> Option<fs::File> {
    crate::fsutil::lock_file(&dir.join("gc.lock"), libc::LOCK_EX | libc::LOCK_NB)
}

fn lock(dir: &Path, how: libc::c_int) -> Option<fs::File> {
    crate::fsutil::lock_file(&dir.join("maintenance.lock"), how)
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|a| a >= age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::manifest::Manifest;
    use crate::store::{Entry, StatCache, StoredOutput};

    /// Stores an entry whose one output holds `size` bytes of `byte`.
    fn store_entry(store: &Store, key: &str, byte: u8, size: usize) {
        let src = store.dir().join(format!("src-{key}"));
        fs::write(&src, vec![byte; size]).expect("write output");
        let (blob, size) = store.ingest_blob(&src, false).expect("ingest");
        let entry = Entry {
            key: key.into(),
            invocation_key: format!("inv-{key}"),
            crate_name: "foo".into(),
            crate_version: None,
            crate_types: vec!["lib".into()],
            outputs: vec![StoredOutput {
                name: "libfoo.rlib".into(),
                blob,
                mode: 0o644,
                size,
            }],
            stdout: Vec::new(),
            stderr: Vec::new(),
            depinfo: None,
            compile_ms: 1.0,
            key_fields: Vec::new(),
        };
        let mut stat = StatCache::new(store.conn());
        store
            .commit_entry(&entry, &Manifest::default(), &mut stat)
            .expect("commit");
        fs::remove_file(src).expect("remove source");
    }

    #[test]
    fn auto_gc_runs_once_and_only_past_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            store_entry(&store, key, i as u8, 1000);
        }
        assert_eq!(store.size().expect("size"), 4000);
        assert!(
            store.auto_gc(4000, &[], &()).expect("gc").is_none(),
            "at the limit"
        );
        // While another automatic gc holds the lock, this one does nothing.
        let held = lock_auto_gc(dir.path()).expect("lock");
        assert!(store.auto_gc(3000, &[], &()).expect("gc").is_none());
        drop(held);
        let report = store.auto_gc(3000, &[], &()).expect("gc").expect("ran");
        // Down to 90% of 3000: two entries of 1000 go.
        assert_eq!(report.entries_evicted, 2);
        assert_eq!(store.size().expect("size"), 2000);
        assert_eq!(store.blob_files().len(), 2);
    }

    #[test]
    fn clear_removes_entries_and_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store_entry(&store, "a", 1, 10);
        store_entry(&store, "b", 1, 10);
        store_entry(&store, "c", 2, 20);
        let report = store.clear(&()).expect("clear");
        assert_eq!(
            (
                report.entries_removed,
                report.blobs_removed,
                report.bytes_freed
            ),
            (3, 2, 30)
        );
        assert_eq!(store.totals().expect("totals").entries, 0);
        assert!(store.blob_files().is_empty());
        assert_eq!(store.verify(false, &()).expect("verify").problems(), 0);
    }
}
