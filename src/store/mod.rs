//! The local store: blobs on disk and an SQLite index (`index.db`) of entries, their output
//! files, blob reference counts, direct-mode manifests and the stat cache.
//!
//! Writes are two-phase: blobs first (each complete under its name), then one transaction
//! that makes the entry visible. A crash in between leaves only orphan blobs, which `gc`
//! removes. A corrupt index is moved aside and recreated (the blobs it named become orphans).
//! The store never runs rustc and never decides hit or miss.

pub(crate) mod blobs;
pub(crate) mod catalog;
pub(crate) mod maintenance;
pub(crate) mod statcache;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::key::KeyField;
use crate::key::manifest::Manifest;
pub use statcache::StatCache;

use crate::fsutil;

const INDEX_SCHEMA: i64 = 2;
/// How long a process waits for another's write transaction before giving up on the cache.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The WAL length (in frames) past which a commit empties it; SQLite's automatic
/// checkpoint threshold (`wal_autocheckpoint`) is the same.
const WAL_TRUNCATE_FRAMES: u64 = 128;
/// One WAL frame: a 24-byte header and a 4 KiB page (SQLite's default page size).
const WAL_FRAME_BYTES: u64 = 24 + 4096;

/// One hit on a stored entry, as the event log records it: what [`Store::fold_usage`]
/// counts. The store does not read the log itself; it only stores what it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Use<'a> {
    /// The entry hit; a hit whose event named no key still moves the fold past its time.
    pub key: Option<&'a str>,
    /// Unix milliseconds of the hit.
    pub at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("refusing to use {0}: it is a symlink owned by another user")]
    ForeignSymlink(PathBuf),
    #[error("cache directory {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("refusing cache directory {path}: {reason}")]
    Untrusted { path: PathBuf, reason: String },
    #[error(
        "no cache directory: none of KACHE_DIR, XDG_CACHE_HOME, HOME or a home directory in the password database is set"
    )]
    NoCacheDir,
    #[error("stored entry {key} is damaged: {detail}")]
    Damaged { key: String, detail: String },
    /// A blob the entry names vanished (deleted by maintenance) before the entry committed;
    /// placing the blob again and committing again succeeds.
    #[error("blob {0} was removed while the entry was being stored")]
    BlobVanished(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One stored output file, relative to the invocation's `--out-dir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutput {
    pub name: String,
    pub blob: String,
    pub mode: u32,
    pub size: u64,
}

/// A stored compile result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub invocation_key: String,
    pub crate_name: String,
    pub crate_version: Option<String>,
    pub crate_types: Vec<String>,
    pub outputs: Vec<StoredOutput>,
    /// rustc's stdout and stderr with root paths templated.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The dep-info file's name in the out dir and its templated text, when cargo asked for it.
    pub depinfo: Option<(String, String)>,
    pub compile_ms: f64,
    pub key_fields: Vec<KeyField>,
}

impl Entry {
    pub(crate) fn size(&self) -> u64 {
        self.outputs.iter().map(|o| o.size).sum()
    }
}

pub struct Store {
    dir: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `dir`, once [`trust_cache_dir`] accepts it.
    /// Nothing it opens below `dir` may be a symlink.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        trust_cache_dir(dir, true)?;
        for sub in ["blobs", "tmp"] {
            let sub = dir.join(sub);
            fsutil::make_dirs_below(dir, &sub).map_err(io_err(&sub))?;
        }
        // SQLite opens the WAL and shared-memory files beside the index by name, and the
        // maintenance locks are opened by many processes: refuse links at any of them.
        for name in [
            "index.db",
            "index.db-wal",
            "index.db-shm",
            "index.db-journal",
            "maintenance.lock",
            "gc.lock",
        ] {
            let path = dir.join(name);
            fsutil::refuse_symlink(&path).map_err(io_err(&path))?;
        }
        let db = index_path(dir);
        let conn = match open_index(&db) {
            Ok(c) => c,
            Err(e) if is_corruption(&e) => {
                quarantine(&db);
                open_index(&db)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Store {
            dir: dir.to_owned(),
            conn,
        })
    }

    /// Opens the store at `dir` for a command that only reads it: never creates anything
    /// (`None` when there is no index yet) and never repairs. A store that cannot be written
    /// (a read-only mount, another user's files) is opened read-only, and
    /// [`Store::is_read_only`] says so.
    pub(crate) fn open_existing(dir: &Path) -> Result<Option<Store>, StoreError> {
        for sub in [dir.to_owned(), dir.join("blobs"), dir.join("tmp")] {
            if fsutil::is_foreign_symlink(&sub) {
                return Err(StoreError::ForeignSymlink(sub));
            }
        }
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.to_owned()));
        }
        let db = dir.join("index.db");
        if !db.is_file() {
            return Ok(None);
        }
        use rusqlite::OpenFlags;
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // SQLite opens a file it may not write read-only by itself; a read-only WAL database
        // on a read-only mount may still fail to open its shared-memory file, and then only
        // `immutable` reads it (nobody can be writing to a read-only mount).
        let immutable = || {
            let uri = format!(
                "file:{}?immutable=1",
                db.to_string_lossy()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23")
            );
            Connection::open_with_flags(uri, ro | OpenFlags::SQLITE_OPEN_URI)
        };
        let usable = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        let mut conn = Connection::open_with_flags(&db, rw).or_else(|_| immutable())?;
        let version = match usable(&conn) {
            Ok(v) => v,
            Err(_) => {
                conn = immutable()?;
                usable(&conn)?
            }
        };
        if version != INDEX_SCHEMA {
            // Another version's index, or one never finished: nothing this kache stored.
            return Ok(None);
        }
        Ok(Some(Store {
            dir: dir.to_owned(),
            conn,
        }))
    }

    /// A writable copy of the index in a temporary file (`VACUUM INTO` works on a read-only
    /// database), with the same cache dir: a dry run of maintenance on a read-only store runs
    /// on it. The caller removes the returned file when done.
    pub(crate) fn scratch_copy(&self) -> Result<(Store, PathBuf), StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("kache-scratch-{}-{nanos}.db", std::process::id()));
        self.conn
            .execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
        let conn = Connection::open(&path)?;
        Ok((
            Store {
                dir: self.dir.clone(),
                conn,
            },
            path,
        ))
    }

    /// Whether the index cannot be written (opened by [`Store::open_existing`] on a
    /// read-only store); usage is then not folded into it.
    pub(crate) fn is_read_only(&self) -> bool {
        self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn blob_path(&self, hash: &str) -> PathBuf {
        blobs::blob_path(&self.dir, hash)
    }

    /// Manifests recorded for an invocation key, newest first, with the entry each leads to.
    pub(crate) fn manifests(
        &self,
        invocation_key: &str,
    ) -> Result<Vec<(String, Manifest)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT entry, inputs FROM manifests WHERE invocation_key = ?1
             ORDER BY created DESC LIMIT 32",
        )?;
        let rows = stmt.query_map([invocation_key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (entry, json) = row?;
            // A manifest that does not parse is skipped: it can only cost a miss.
            if let Ok(m) = serde_json::from_slice(&json) {
                out.push((entry, m));
            }
        }
        Ok(out)
    }

    pub fn load_entry(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let json: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT body FROM entries WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        match json {
            None => Ok(None),
            Some(j) => serde_json::from_slice(&j)
                .map(Some)
                .map_err(|e| StoreError::Damaged {
                    key: key.to_owned(),
                    detail: e.to_string(),
                }),
        }
    }

    /// Places an output file in the blob directory (phase one of a store).
    pub fn ingest_blob(&self, src: &Path, linkable: bool) -> Result<(String, u64), StoreError> {
        blobs::ingest(&self.dir, src, linkable).map_err(io_err(src))
    }

    /// Places downloaded bytes in the blob directory once they hash to `hash`.
    pub(crate) fn ingest_bytes(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(hash);
        blobs::write_bytes(&self.dir, hash, bytes).map_err(io_err(&path))
    }

    /// Makes an entry and its manifest visible in one transaction (phase two of a store).
    /// Storing a key that exists already only adds the manifest.
    pub fn commit_entry(
        &self,
        entry: &Entry,
        manifest: &Manifest,
        stat: &mut StatCache,
    ) -> Result<(), StoreError> {
        let tx = write_tx(&self.conn)?;
        let now = now_secs();
        let body = serde_json::to_vec(entry).map_err(|e| StoreError::Damaged {
            key: entry.key.clone(),
            detail: e.to_string(),
        })?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO entries(key, crate_name, size, compile_ms, created, last_used, hits, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6)",
            params![entry.key, entry.crate_name, entry.size() as i64, entry.compile_ms, now, body],
        )?;
        if inserted == 1 {
            // Blob files are deleted only inside a write transaction, after a check that the
            // index does not name them (see `delete_unindexed_blobs`), so a blob present now
            // stays until this entry is gone. One reused from an earlier store may have been
            // deleted since it was looked at: then the caller places it again.
            for o in &entry.outputs {
                let path = self.blob_path(&o.blob);
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == o.size) {
                    return Err(StoreError::BlobVanished(o.blob.clone()));
                }
            }
            for o in &entry.outputs {
                tx.execute(
                    "INSERT OR REPLACE INTO outputs(entry, name, blob, size) VALUES (?1, ?2, ?3, ?4)",
                    params![entry.key, o.name, o.blob, o.size as i64],
                )?;
                tx.execute(
                    "INSERT INTO blobs(hash, size, refs) VALUES (?1, ?2, 1)
                     ON CONFLICT(hash) DO UPDATE SET refs = refs + 1",
                    params![o.blob, o.size as i64],
                )?;
            }
        }
        let inputs = serde_json::to_vec(manifest).unwrap_or_default();
        tx.execute(
            "INSERT OR REPLACE INTO manifests(invocation_key, entry, inputs, created)
             VALUES (?1, ?2, ?3, ?4)",
            params![entry.invocation_key, entry.key, inputs, now],
        )?;
        stat.flush(&tx)?;
        crate::testhook::crash_point("in_commit", &entry.crate_name);
        tx.commit()?;
        self.truncate_wal_if_long();
        Ok(())
    }

    /// Empties the WAL once it holds more than [`WAL_TRUNCATE_FRAMES`] frames.
    ///
    /// A process that opens the index while no other has it open rebuilds the WAL's index by
    /// reading every valid frame, and resets the checkpoint progress to zero; during a build
    /// that is nearly every kache process. SQLite's automatic checkpoint copies the frames
    /// back but restarts the WAL only at the *same* connection's next write, which a kache
    /// process never makes: so the WAL kept growing (12 MiB after one cold `server` build),
    /// every hit read all of it and every miss checkpointed all of it again. A truncating
    /// checkpoint here keeps both small. It never waits: with another process reading or
    /// writing it does what it can without blocking and the WAL is emptied by a later commit.
    fn truncate_wal_if_long(&self) {
        let wal = self.dir.join("index.db-wal");
        let long = fs::symlink_metadata(&wal)
            .is_ok_and(|m| m.len() > WAL_TRUNCATE_FRAMES * WAL_FRAME_BYTES);
        if !long {
            return;
        }
        let truncated = self.conn.busy_timeout(Duration::ZERO).and_then(|()| {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
        });
        if let Err(e) = self.conn.busy_timeout(BUSY_TIMEOUT) {
            tracing::debug!("cannot restore the index's busy timeout: {e}");
        }
        match truncated {
            Ok(0) => {}
            Ok(_) => tracing::debug!("WAL not truncated: another process uses the index"),
            Err(e) => tracing::debug!("cannot checkpoint the WAL: {e}"),
        }
    }

    /// Folds hits (read from the event log by the caller) into the entries' use counts and
    /// LRU times.
    ///
    /// A hit writes nothing to the index (so hits never wait for each other's write locks and
    /// the WAL stays small); the event log, which names every hit's key, is the record of use.
    /// Maintenance folds it in before it needs LRU order. Hits already folded are skipped by
    /// their time.
    pub(crate) fn fold_usage(&self, hits: &[Use<'_>]) -> Result<(), StoreError> {
        // A read-only store (a reader on a read-only mount) shows the counts as last folded.
        if self.is_read_only() {
            return Ok(());
        }
        let tx = write_tx(&self.conn)?;
        let folded_until: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE name = 'usage_folded_ms'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut newest = folded_until;
        {
            let mut update = tx.prepare_cached(
                "UPDATE entries SET hits = hits + 1, last_used = MAX(last_used, ?2) WHERE key = ?1",
            )?;
            for hit in hits {
                let ts = hit.at_ms as i64;
                if ts <= folded_until {
                    continue;
                }
                if let Some(key) = hit.key {
                    update.execute(params![key, ts / 1000])?;
                }
                newest = newest.max(ts);
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta(name, value) VALUES ('usage_folded_ms', ?1)",
            [newest],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Writes what the stat cache learnt when nothing else is written.
    pub(crate) fn flush_stat_cache(&self, stat: &mut StatCache) -> Result<(), StoreError> {
        if stat.has_pending() {
            let tx = write_tx(&self.conn)?;
            stat.flush(&tx)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Drops an entry (damaged, or evicted) and its manifests, then deletes the blob files no
    /// entry references any more (after the transaction, so the index never names a missing
    /// blob); returns their hashes.
    /// Deletes a blob file found damaged (its bytes no longer hash to its name), so the next
    /// store of that content writes it afresh instead of keeping a same-size damaged file.
    /// Entries still naming it find it missing, are dropped and stored again.
    pub(crate) fn discard_damaged_blob(&self, hash: &str) {
        let _ = fs::remove_file(self.blob_path(hash));
    }

    pub(crate) fn remove_entry(&self, key: &str) -> Result<Vec<String>, StoreError> {
        // Shared: it keeps `verify` (exclusive) from counting a blob deleted under its feet.
        let _maintenance = self.lock_shared();
        let tx = write_tx(&self.conn)?;
        let freed = remove_entry_in(&tx, key)?;
        tx.commit()?;
        let paths = freed.iter().map(|b| (b.clone(), self.blob_path(b)));
        self.delete_unindexed_blobs(paths.collect())?;
        Ok(freed)
    }

    /// Deletes those of `blobs` (hash, file) that the index does not name, checking each
    /// inside a write transaction. With [`Store::commit_entry`] checking its blobs inside its
    /// own, this is what keeps the index from ever naming a missing blob: a store that reused
    /// a file deleted here either committed first (then the file is named, and kept) or finds
    /// it gone. Works in batches so builds wait for at most one batch. Returns how many files
    /// it deleted.
    pub(crate) fn delete_unindexed_blobs(
        &self,
        blobs: Vec<(String, PathBuf)>,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for batch in blobs.chunks(256) {
            let tx = write_tx(&self.conn)?;
            {
                let mut named = tx.prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")?;
                for (hash, path) in batch {
                    if !named.exists([hash])? && fs::remove_file(path).is_ok() {
                        deleted += 1;
                    }
                }
            }
            tx.commit()?;
        }
        Ok(deleted)
    }
}

/// Accepts `dir` as a cache dir only if nobody else can have written to it, the way ssh
/// treats `~/.ssh`: it (or what our own symlink to it points to) must be a directory owned by
/// the effective user and not writable by group or others. Anyone who can write the dir can
/// swap the index, blobs or toolchain memo and so run code in our builds. With `create`, a
/// missing dir is made, readable by its owner only.
pub(crate) fn trust_cache_dir(dir: &Path, create: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if dir.as_os_str().is_empty() {
        return Err(StoreError::NoCacheDir);
    }
    if fsutil::is_foreign_symlink(dir) {
        return Err(StoreError::ForeignSymlink(dir.to_owned()));
    }
    if create && fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io_err(dir)(e));
            }
            _ => {}
        }
    }
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(StoreError::NotADirectory(dir.to_owned()));
    }
    // SAFETY: geteuid has no failure mode and touches no memory.
    let me = unsafe { libc::geteuid() };
    let untrusted = |reason: String| StoreError::Untrusted {
        path: dir.to_owned(),
        reason,
    };
    if meta.uid() != me {
        return Err(untrusted(format!(
            "it is owned by uid {}, not by you (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "other users can write to it (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Deletes an entry inside an open transaction; returns blobs whose count fell to zero.
pub(crate) fn remove_entry_in(tx: &Connection, key: &str) -> Result<Vec<String>, StoreError> {
    let blobs: Vec<String> = tx
        .prepare_cached("SELECT blob FROM outputs WHERE entry = ?1")?
        .query_map([key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut freed = Vec::new();
    for b in &blobs {
        tx.execute("UPDATE blobs SET refs = refs - 1 WHERE hash = ?1", [b])?;
        let refs: Option<i64> = tx
            .query_row("SELECT refs FROM blobs WHERE hash = ?1", [b], |r| r.get(0))
            .optional()?;
        if refs.is_some_and(|r| r <= 0) {
            tx.execute("DELETE FROM blobs WHERE hash = ?1", [b])?;
            freed.push(b.clone());
        }
    }
    tx.execute("DELETE FROM outputs WHERE entry = ?1", [key])?;
    tx.execute("DELETE FROM manifests WHERE entry = ?1", [key])?;
    tx.execute("DELETE FROM entries WHERE key = ?1", [key])?;
    Ok(freed)
}

/// Starts a write transaction that takes the write lock up front. A deferred transaction
/// would start as a reader and, in WAL mode, fail at once with `SQLITE_BUSY` (without waiting)
/// when another process committed in between.
pub(crate) fn write_tx(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

/// Opens the index, retrying while another process is creating it.
fn open_index(db: &Path) -> rusqlite::Result<Connection> {
    let mut attempt = 0;
    loop {
        match try_open_index(db) {
            Err(e)
                if attempt < 50
                    && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The index, named through the cache dir's real path: SQLite's no-follow flag refuses a
/// symlink anywhere in the name, and the cache dir itself may be the user's own link.
fn index_path(dir: &Path) -> PathBuf {
    fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .join("index.db")
}

/// The index's open flags: rusqlite's defaults, and never through a symlink.
fn index_flags() -> rusqlite::OpenFlags {
    rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
}

fn try_open_index(db: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(db, index_flags())?;
    // The timeout must be in place before the first statement that can meet a lock,
    // switching to WAL included.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != INDEX_SCHEMA {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let tx = write_tx(&conn)?;
        tx.execute_batch(SCHEMA_SQL)?;
        tx.pragma_update(None, "user_version", INDEX_SCHEMA)?;
        tx.commit()?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A process that opens the index alone rebuilds the WAL's index by reading the whole WAL;
    // checkpointing often copies frames back while other processes keep the index open, and
    // `Store::truncate_wal_if_long` empties the WAL when none does.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_TRUNCATE_FRAMES as i64)?;
    // Closing the last connection would otherwise checkpoint the WAL (with an fsync) at the
    // end of nearly every invocation; SQLite's automatic checkpoints keep the WAL bounded.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS entries(
    key TEXT PRIMARY KEY,
    crate_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    compile_ms REAL NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries(last_used);
CREATE INDEX IF NOT EXISTS entries_crate ON entries(crate_name);
CREATE TABLE IF NOT EXISTS outputs(
    entry TEXT NOT NULL,
    name TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(entry, name)
);
CREATE INDEX IF NOT EXISTS outputs_blob ON outputs(blob);
CREATE TABLE IF NOT EXISTS blobs(
    hash TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS manifests(
    invocation_key TEXT NOT NULL,
    entry TEXT NOT NULL,
    inputs BLOB NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY(invocation_key, entry)
);
CREATE INDEX IF NOT EXISTS manifests_entry ON manifests(entry);
CREATE TABLE IF NOT EXISTS meta(
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stat_cache(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    hash TEXT NOT NULL,
    trusted INTEGER NOT NULL
);
";

impl StoreError {
    /// Whether the index itself is damaged (rather than busy, full or read-only).
    pub(crate) fn is_corrupt_index(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if is_corruption(e))
    }
}

/// Called when an open index reported damage in use: moves it aside (as [`Store::open`] does
/// with one that cannot be opened) once a check on a fresh connection confirms the damage, so
/// an index another process has just recreated is left alone. Returns whether it moved it.
pub(crate) fn quarantine_if_corrupt(dir: &Path) -> bool {
    let db = index_path(dir);
    let verdict = Connection::open_with_flags(&db, index_flags()).and_then(|c| {
        c.busy_timeout(BUSY_TIMEOUT)?;
        c.query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0))
    });
    let corrupt = match verdict {
        Ok(answer) => answer != "ok",
        Err(e) => is_corruption(&e),
    };
    if corrupt {
        quarantine(&db);
    }
    corrupt
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Moves a damaged index (and its WAL) aside so a fresh one can be created.
fn quarantine(db: &Path) {
    let stamp = now_secs();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}.corrupt-{stamp}{suffix}", db.display()));
        let _ = fs::rename(from, to);
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
