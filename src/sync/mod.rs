//! Moving entries between the local store and a remote: fetching on a local miss
//! ([`fetch`]) and uploading what was compiled here ([`upload`]).
//!
//! The formats on the remote are path-independent: an entry travels as one bundle whose
//! metadata is the entry itself (outputs named by blob hash, stderr and dep-info templated)
//! and whose files are its blobs; each candidate of an invocation key (an entry and the
//! manifest that leads to it) travels as its own small JSON object, so uploaders never
//! rewrite each other's. One JSON object listing several candidates, as older versions
//! wrote, is still read. Must not run rustc; must never let a remote fault
//! reach the build (callers turn every error into a miss).

pub mod fetch;
pub mod upload;

use serde::{Deserialize, Serialize};

use crate::key::manifest::Manifest;
use crate::remote::RemoteError;
use crate::remote::bundle::BundleError;
use crate::store::StoreError;

/// How many candidates of one invocation key a remote lookup reads.
pub(crate) const MAX_CANDIDATES: usize = 8;

/// The manifest object of one invocation key that older versions wrote (read, never written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteManifests {
    /// Newest first.
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub entry: String,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("remote bundle: {0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("remote object {object} rejected: {reason}")]
    Rejected { object: String, reason: String },
    #[error("upload queue {path}: {source}")]
    Queue {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
