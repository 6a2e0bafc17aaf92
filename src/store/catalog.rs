//! Read-only views of the index for the commands people run: store totals, entry listings,
//! and a crate's entries with the manifests that led to them (for `kache explain`).
//!
//! Must not write: callers that want use counts folded in from the event log call
//! [`Store::fold_usage`] first.

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use super::{Entry, Store, StoreError};
use crate::key::manifest::Manifest;

/// What the store holds, in one look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Totals {
    /// Bytes of indexed blobs: what the store takes on disk.
    pub size: u64,
    pub entries: u64,
    pub blobs: u64,
    /// Bytes the stored outputs would take if identical ones did not share a blob.
    pub logical_size: u64,
}

impl Totals {
    /// Bytes saved by storing identical outputs once.
    pub(crate) fn dedup_saved(&self) -> u64 {
        self.logical_size.saturating_sub(self.size)
    }
}

/// One entry as `kache list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EntrySummary {
    pub key: String,
    pub crate_name: String,
    pub crate_version: Option<String>,
    pub crate_types: Vec<String>,
    pub size: u64,
    pub compile_ms: f64,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub last_used: i64,
    pub hits: u64,
}

/// A stored entry with what `explain` compares: its key fields (in the entry) and the
/// manifest of source-level inputs it was stored under.
#[derive(Debug, Clone)]
pub(crate) struct StoredCompile {
    pub entry: Entry,
    pub manifest: Option<Manifest>,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    pub hits: u64,
}

/// The part of an entry's body a listing needs; serde skips the rest (outputs, stderr, ...).
#[derive(Deserialize)]
struct BodyHead {
    crate_version: Option<String>,
    #[serde(default)]
    crate_types: Vec<String>,
}

impl Store {
    pub(crate) fn totals(&self) -> Result<Totals, StoreError> {
        let count = |sql: &str| -> Result<u64, StoreError> {
            Ok(self
                .conn()
                .query_row(sql, [], |r| r.get::<_, i64>(0))?
                .max(0) as u64)
        };
        Ok(Totals {
            size: self.size()?,
            entries: count("SELECT COUNT(*) FROM entries")?,
            blobs: count("SELECT COUNT(*) FROM blobs")?,
            logical_size: count("SELECT COALESCE(SUM(size), 0) FROM outputs")?,
        })
    }

    /// Every entry, or those of one crate, in no particular order.
    pub(crate) fn entry_summaries(
        &self,
        crate_name: Option<&str>,
    ) -> Result<Vec<EntrySummary>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT key, crate_name, size, compile_ms, created, last_used, hits, body
             FROM entries WHERE ?1 IS NULL OR crate_name = ?1",
        )?;
        let rows = stmt.query_map([crate_name], |r| {
            let body: Vec<u8> = r.get(7)?;
            // A body that does not parse still lists, without version and types.
            let head = serde_json::from_slice::<BodyHead>(&body).ok();
            Ok(EntrySummary {
                key: r.get(0)?,
                crate_name: r.get(1)?,
                size: r.get::<_, i64>(2)?.max(0) as u64,
                compile_ms: r.get(3)?,
                created: r.get(4)?,
                last_used: r.get(5)?,
                hits: r.get::<_, i64>(6)?.max(0) as u64,
                crate_version: head.as_ref().and_then(|h| h.crate_version.clone()),
                crate_types: head.map(|h| h.crate_types).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A crate's stored compiles, newest first. Entries whose body does not parse are left
    /// out (they cannot be compared).
    pub(crate) fn crate_compiles(
        &self,
        crate_name: &str,
    ) -> Result<Vec<StoredCompile>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT body, created, last_used, hits, key FROM entries WHERE crate_name = ?1
             ORDER BY created DESC, rowid DESC",
        )?;
        let rows: Vec<(Vec<u8>, i64, i64, i64, String)> = stmt
            .query_map([crate_name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut manifest_of = self.conn().prepare(
            "SELECT inputs FROM manifests WHERE entry = ?1 ORDER BY created DESC LIMIT 1",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (body, created, last_used, hits, key) in rows {
            let Ok(entry) = serde_json::from_slice::<Entry>(&body) else {
                continue;
            };
            let manifest = manifest_of
                .query_row([&key], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
                .and_then(|json| serde_json::from_slice(&json).ok());
            out.push(StoredCompile {
                entry,
                manifest,
                created,
                last_used,
                hits: hits.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// Names of every crate with a stored entry, sorted.
    pub(crate) fn crate_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn()
            .prepare("SELECT DISTINCT crate_name FROM entries ORDER BY crate_name")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }
}
