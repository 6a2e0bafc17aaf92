//! Fetching from the remote on a local miss: the invocation's remote candidates, each
//! refused unless every file it names is under a root, then checked against this checkout's
//! inputs exactly as a local manifest is; then the matching
//! entry's bundle, every file verified against its blake3 before anything is written; then
//! the entry committed to the local store, from which the wrapper restores it as usual.

use crate::key::manifest::Manifest;
use crate::remote::{
    LAYOUT_VERSION, RemoteStore, bundle, candidate_prefix, entry_object, manifest_object,
};
use crate::store::{Entry, StatCache, Store};

use super::{Candidate, MAX_CANDIDATES, RemoteManifests, SyncError};

/// What a successful fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub entry_key: String,
    pub downloaded_bytes: u64,
}

/// Looks for `invocation_key` on the remote; on a match, puts the entry in the local store.
/// `matches` checks a manifest against the current inputs; `system_dirs` are the only
/// absolute dirs a manifest may name files in (a C compiler's include dirs, else none). Candidates are read from their
/// own objects (at most [`MAX_CANDIDATES`] of them), then from the one manifest object older
/// versions wrote.
pub fn fetch(
    remote: &dyn RemoteStore,
    store: &Store,
    stat: &mut StatCache,
    invocation_key: &str,
    max_bundle_bytes: u64,
    system_dirs: &[String],
    matches: &mut dyn FnMut(&Manifest, &mut StatCache) -> bool,
) -> Result<Option<Fetched>, SyncError> {
    let mut downloaded = 0;
    // A candidate object that does not parse only costs a miss, but is reported when
    // nothing else matched (it may be what this build needed).
    let mut rejected = None;
    // Checking a manifest reads local files: only those under this invocation's roots (or a
    // C compiler's system include dirs), checked before `matches` looks at any.
    let mut matches = |m: &Manifest, stat: &mut StatCache| {
        m.stays_within(system_dirs).is_ok() && matches(m, stat)
    };
    let mut take = |candidate: Candidate, downloaded: u64| -> Result<_, SyncError> {
        let taken = take_candidate(
            remote,
            store,
            stat,
            invocation_key,
            max_bundle_bytes,
            &mut matches,
            &candidate,
        )?;
        Ok(taken.map(|bundle_bytes| Fetched {
            entry_key: candidate.entry,
            downloaded_bytes: downloaded + bundle_bytes,
        }))
    };
    let names = remote.list(&candidate_prefix(invocation_key)?)?;
    for name in names.into_iter().take(MAX_CANDIDATES) {
        let Some(bytes) = remote.get(&name)? else {
            continue;
        };
        downloaded += bytes.len() as u64;
        let candidate = match serde_json::from_slice::<Candidate>(&bytes) {
            Ok(c) => c,
            Err(e) => {
                rejected = Some(SyncError::Rejected {
                    object: name,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Some(fetched) = take(candidate, downloaded)? {
            return Ok(Some(fetched));
        }
    }
    let manifest_name = manifest_object(invocation_key)?;
    let Some(bytes) = remote.get(&manifest_name)? else {
        return rejected.map_or(Ok(None), Err);
    };
    downloaded += bytes.len() as u64;
    let manifests: RemoteManifests =
        serde_json::from_slice(&bytes).map_err(|e| SyncError::Rejected {
            object: manifest_name.clone(),
            reason: e.to_string(),
        })?;
    for candidate in manifests.candidates {
        if let Some(fetched) = take(candidate, downloaded)? {
            return Ok(Some(fetched));
        }
    }
    rejected.map_or(Ok(None), Err)
}

/// When `candidate` belongs to `invocation_key` and matches, downloads its bundle, verifies
/// it and commits the entry; returns the bundle's size. `None` when it does not apply.
fn take_candidate(
    remote: &dyn RemoteStore,
    store: &Store,
    stat: &mut StatCache,
    invocation_key: &str,
    max_bundle_bytes: u64,
    matches: &mut dyn FnMut(&Manifest, &mut StatCache) -> bool,
    candidate: &Candidate,
) -> Result<Option<u64>, SyncError> {
    if candidate.manifest.entry_key(invocation_key) != candidate.entry
        || !matches(&candidate.manifest, stat)
    {
        return Ok(None);
    }
    let object = entry_object(&candidate.entry)?;
    let Some(bundle_bytes) = remote.get(&object)? else {
        return Ok(None);
    };
    let entry = unpack_verified(
        &object,
        &bundle_bytes,
        &candidate.entry,
        max_bundle_bytes,
        store,
    )?;
    store.commit_entry(&entry, &candidate.manifest, stat)?;
    Ok(Some(bundle_bytes.len() as u64))
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct PullReport {
    pub manifests: usize,
    pub fetched: usize,
    pub already_here: usize,
    pub rejected: usize,
    pub bytes: u64,
}

/// Downloads every entry the remote has and this store lacks (with `dry_run`, only counts
/// them), so later builds hit locally even while the remote is unreachable. `progress` is
/// told the number of manifest objects, then once per object done.
pub(crate) fn pull(
    remote: &dyn RemoteStore,
    store: &Store,
    max_bundle_bytes: u64,
    dry_run: bool,
    system_dirs: &[String],
    progress: &mut dyn FnMut(Option<usize>),
) -> Result<PullReport, SyncError> {
    let mut report = PullReport::default();
    let mut names = remote.list(&format!("{LAYOUT_VERSION}/candidates/"))?;
    names.extend(remote.list(&format!("{LAYOUT_VERSION}/manifests/"))?);
    progress(Some(names.len()));
    let mut stat = StatCache::new(store.conn());
    for name in names {
        progress(None);
        let Some(bytes) = remote.get(&name)? else {
            continue;
        };
        report.manifests += 1;
        report.bytes += bytes.len() as u64;
        let Some((invocation_key, candidates)) = candidates_in(&name, &bytes) else {
            report.rejected += 1;
            continue;
        };
        let invocation_key = invocation_key.as_str();
        for candidate in candidates {
            // A pulled manifest is later checked as a local one: it must not name files
            // outside the roots (or this machine's C compiler's system include dirs) either.
            if candidate.manifest.entry_key(invocation_key) != candidate.entry
                || candidate.manifest.stays_within(system_dirs).is_err()
            {
                report.rejected += 1;
                continue;
            }
            if store.load_entry(&candidate.entry).ok().flatten().is_some() {
                report.already_here += 1;
                continue;
            }
            if dry_run {
                report.fetched += 1;
                continue;
            }
            let object = entry_object(&candidate.entry)?;
            let Some(bundle_bytes) = remote.get(&object)? else {
                continue;
            };
            report.bytes += bundle_bytes.len() as u64;
            match unpack_verified(
                &object,
                &bundle_bytes,
                &candidate.entry,
                max_bundle_bytes,
                store,
            ) {
                Ok(entry) => {
                    store.commit_entry(&entry, &candidate.manifest, &mut stat)?;
                    report.fetched += 1;
                }
                Err(SyncError::Rejected { .. } | SyncError::Bundle(_)) => report.rejected += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(report)
}

/// The invocation key and candidates in a listed object: one candidate object
/// (`.../candidates/<fan>/<invocation key>/<entry>.json`) or an older manifest object
/// (`.../manifests/<fan>/<invocation key>.json`). `None` when it does not parse.
fn candidates_in(name: &str, bytes: &[u8]) -> Option<(String, Vec<Candidate>)> {
    let mut parts = name.rsplit('/');
    let file = parts.next()?;
    if name.starts_with(&format!("{LAYOUT_VERSION}/candidates/")) {
        let invocation_key = parts.next()?;
        let candidate = serde_json::from_slice::<Candidate>(bytes).ok()?;
        Some((invocation_key.to_owned(), vec![candidate]))
    } else {
        let invocation_key = file.strip_suffix(".json")?;
        let manifests = serde_json::from_slice::<RemoteManifests>(bytes).ok()?;
        Some((invocation_key.to_owned(), manifests.candidates))
    }
}

/// Unpacks a bundle and writes its blobs, refusing anything that does not check out: the
/// entry must be the one asked for and every output's bytes must hash to its blob name.
fn unpack_verified(
    object: &str,
    bytes: &[u8],
    entry_key: &str,
    max_bundle_bytes: u64,
    store: &Store,
) -> Result<Entry, SyncError> {
    let reject = |reason: String| SyncError::Rejected {
        object: object.to_owned(),
        reason,
    };
    let unpacked = bundle::unpack(bytes, max_bundle_bytes)?;
    let entry: Entry =
        serde_json::from_slice(&unpacked.meta).map_err(|e| reject(format!("metadata: {e}")))?;
    if entry.key != entry_key {
        return Err(reject(format!("holds entry {} instead", entry.key)));
    }
    for out in &entry.outputs {
        let Some((_, data)) = unpacked.files.iter().find(|(name, _)| *name == out.blob) else {
            return Err(reject(format!("missing {}", out.name)));
        };
        if data.len() as u64 != out.size || blake3::hash(data).to_hex().as_str() != out.blob {
            return Err(reject(format!("{} does not match its hash", out.name)));
        }
    }
    for out in &entry.outputs {
        if let Some((_, data)) = unpacked.files.iter().find(|(name, _)| *name == out.blob) {
            store.ingest_bytes(&out.blob, data)?;
        }
    }
    Ok(entry)
}
