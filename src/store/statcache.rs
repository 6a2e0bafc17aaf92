//! The stat cache: (path, size, mtime, ctime, inode) → content hash, in the index.
//!
//! It makes direct-mode lookups cheap: an unchanged file is stat'ed, not read. A file that
//! changed in the last [`RECENT_NS`] is always re-hashed and not remembered, because a second
//! write within the filesystem's timestamp granularity could leave its stamp unchanged. Files
//! kache wrote itself (restored or stored outputs) are remembered as *trusted*: their content
//! is known, so their fresh timestamps need not force a re-read.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::fsutil::{FileStamp, hash_from_xattr, now_ns, set_hash_xattr};
use crate::key::{ContentHash, FileHasher, hash_file_contents};

/// Changes younger than this are never trusted from the cache.
pub(crate) const RECENT_NS: i64 = 2_000_000_000;

/// A remembered file: size, mtime, ctime, inode, hash, trusted.
type Row = (i64, i64, i64, i64, String, bool);

pub struct StatCache<'c> {
    conn: &'c Connection,
    memo: HashMap<PathBuf, ContentHash>,
    /// Rows read ahead by [`StatCache::preload_below`], and the dirs they cover (a file
    /// below one of them without a row here has none in the index either).
    preloaded: HashMap<PathBuf, Row>,
    preloaded_dirs: Vec<PathBuf>,
    pending: Vec<(PathBuf, FileStamp, ContentHash, bool)>,
    now_ns: i64,
    /// Files actually read (for tests and debug logs).
    pub files_hashed: usize,
}

impl<'c> StatCache<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self::at(conn, now_ns())
    }

    /// A stat cache whose clock reads `now_ns` (tests use it to age files without waiting).
    pub(crate) fn at(conn: &'c Connection, now_ns: i64) -> Self {
        StatCache {
            conn,
            memo: HashMap::new(),
            preloaded: HashMap::new(),
            preloaded_dirs: Vec::new(),
            pending: Vec::new(),
            now_ns,
            files_hashed: 0,
        }
    }

    /// Remembers the content of a file kache itself just wrote.
    pub(crate) fn record_trusted(&mut self, path: &Path, hash: &str) -> io::Result<()> {
        let stamp = FileStamp::of(&std::fs::metadata(path)?);
        self.memo.insert(path.to_owned(), hash.to_owned());
        if !set_hash_xattr(path, hash, &stamp) {
            self.pending
                .push((path.to_owned(), stamp, hash.to_owned(), true));
        }
        Ok(())
    }

    /// Writes what was learnt to the index; call inside the invocation's write transaction.
    pub(crate) fn flush(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO stat_cache(path, size, mtime_ns, ctime_ns, ino, hash, trusted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (path, s, hash, trusted) in self.pending.drain(..) {
            stmt.execute(params![
                path.to_string_lossy(),
                s.size as i64,
                s.mtime_ns,
                s.ctime_ns,
                s.ino as i64,
                hash,
                trusted
            ])?;
        }
        Ok(())
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Reads every remembered file below `dir` in one query, so checking a whole tree (a
    /// build script's package dir) costs a `stat` per file instead of a query per file.
    pub(crate) fn preload_below(&mut self, dir: &Path) {
        let Some(dir) = dir.to_str().map(|d| d.trim_end_matches('/')) else {
            return;
        };
        // Every path below `dir/` sorts between `dir/` and `dir0` ('0' follows '/').
        let rows = self
            .conn
            .prepare_cached(
                "SELECT path, size, mtime_ns, ctime_ns, ino, hash, trusted FROM stat_cache
                 WHERE path > ?1 AND path < ?2",
            )
            .and_then(|mut s| {
                s.query_map([format!("{dir}/"), format!("{dir}0")], |r| {
                    let path: String = r.get(0)?;
                    let row = (
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    );
                    Ok((PathBuf::from(path), row))
                })?
                .collect::<rusqlite::Result<Vec<(PathBuf, Row)>>>()
            });
        // A failed read ahead only costs the per-file queries it would have saved.
        if let Ok(rows) = rows {
            self.preloaded.extend(rows);
            self.preloaded_dirs.push(PathBuf::from(dir));
        }
    }

    fn cached(&self, path: &Path, stamp: &FileStamp) -> Option<ContentHash> {
        let row = match self.preloaded.get(path) {
            Some(row) => Some(row.clone()),
            None if self.preloaded_dirs.iter().any(|d| path.starts_with(d)) => None,
            None => self
                .conn
                .prepare_cached(
                    "SELECT size, mtime_ns, ctime_ns, ino, hash, trusted FROM stat_cache WHERE path = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([path.to_string_lossy()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })
                    .optional()
                })
                .ok()
                .flatten(),
        };
        let (size, mtime_ns, ctime_ns, ino, hash, trusted) = row?;
        let same = size as u64 == stamp.size
            && mtime_ns == stamp.mtime_ns
            && ctime_ns == stamp.ctime_ns
            && ino as u64 == stamp.ino;
        (same && (trusted || stamp.age_ns(self.now_ns) >= RECENT_NS)).then_some(hash)
    }
}

impl StatCache<'_> {
    /// The hash of the regular file at `path` by `compute`, remembered as the row `row`
    /// (the path itself, or a derived hash's own name for it).
    /// `stated`: the file's metadata, when the caller has just read it.
    fn remembered(
        &mut self,
        path: &Path,
        row: PathBuf,
        plain: bool,
        stated: Option<&std::fs::Metadata>,
        compute: &mut dyn FnMut(&Path) -> io::Result<ContentHash>,
    ) -> io::Result<ContentHash> {
        if let Some(h) = self.memo.get(&row) {
            return Ok(h.clone());
        }
        let stamp = match stated {
            Some(meta) => regular_stamp(path, meta)?,
            None => regular_stamp(path, &std::fs::metadata(path)?)?,
        };
        let hash = match self.known(path, &row, plain, &stamp) {
            Some(h) => h,
            None => {
                let h = compute(path)?;
                self.files_hashed += 1;
                // Re-stat: a file that changed while we read it must not be remembered.
                let after = FileStamp::of(&std::fs::metadata(path)?);
                if after == stamp && stamp.age_ns(self.now_ns) >= RECENT_NS {
                    self.pending.push((row.clone(), stamp, h.clone(), false));
                }
                h
            }
        };
        self.memo.insert(row, hash.clone());
        Ok(hash)
    }

    /// The hash remembered for a file with this stamp, in its xattr (`plain` files only) or
    /// its row. A preloaded row is asked first: it is in memory, and for files kache never
    /// wrote (a registry package's sources) the xattr is not there anyway. Any other row
    /// costs a query, so there the xattr goes first.
    fn known(
        &self,
        path: &Path,
        row: &Path,
        plain: bool,
        stamp: &FileStamp,
    ) -> Option<ContentHash> {
        let xattr = || plain.then(|| hash_from_xattr(path, stamp)).flatten();
        if self.preloaded_dirs.iter().any(|d| row.starts_with(d)) {
            self.cached(row, stamp).or_else(xattr)
        } else {
            xattr().or_else(|| self.cached(row, stamp))
        }
    }
}

/// The stamp of a regular file. A manifest may name anything; only a regular file is an
/// input (a FIFO would block, a device never ends), and no remembered hash stands in for
/// something else.
fn regular_stamp(path: &Path, meta: &std::fs::Metadata) -> io::Result<FileStamp> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(FileStamp::of(meta))
}

/// The row a derived hash of `path` is remembered as: never an absolute path, so never a
/// file's own row (and never below a dir [`StatCache::preload_below`] read).
fn derived_row(path: &Path, variant: &str) -> PathBuf {
    let mut row = std::ffi::OsString::from(format!("derived:{variant}:"));
    row.push(path.as_os_str());
    PathBuf::from(row)
}

/// The file a row remembers: the row itself, or the path after a derived row's variant
/// (whose own text has no `:/`).
fn file_of_row(row: &str) -> &str {
    match row.strip_prefix("derived:") {
        Some(rest) => rest.find(":/").map_or(rest, |i| &rest[i + 1..]),
        None => row,
    }
}

/// Forgets every remembered file that no longer exists (a deleted checkout, `cargo
/// install`'s temporary target dirs): the table otherwise only grows. Returns how many rows
/// went. One `lstat` per row, then a write transaction per 256 rows.
pub(crate) fn prune_missing(conn: &Connection) -> rusqlite::Result<usize> {
    let rows: Vec<String> = conn
        .prepare("SELECT path FROM stat_cache")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let gone: Vec<&String> = rows
        .iter()
        .filter(|row| {
            std::fs::symlink_metadata(file_of_row(row))
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        })
        .collect();
    // In short transactions, so builds writing their own rows never wait long.
    for batch in gone.chunks(256) {
        let tx = super::write_tx(conn)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM stat_cache WHERE path = ?1")?;
            for row in batch {
                delete.execute([row])?;
            }
        }
        tx.commit()?;
    }
    Ok(gone.len())
}

impl FileHasher for StatCache<'_> {
    fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash> {
        self.remembered(path, path.to_owned(), true, None, &mut hash_file_contents)
    }

    fn hash_stated(&mut self, path: &Path, meta: &std::fs::Metadata) -> io::Result<ContentHash> {
        self.remembered(
            path,
            path.to_owned(),
            true,
            Some(meta),
            &mut hash_file_contents,
        )
    }

    fn derived_hash(
        &mut self,
        path: &Path,
        variant: &str,
        derive: &mut dyn FnMut(&Path) -> io::Result<ContentHash>,
    ) -> io::Result<ContentHash> {
        self.remembered(path, derived_row(path, variant), false, None, derive)
    }
}
