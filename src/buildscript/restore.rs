//! Putting a stored run back: `OUT_DIR`'s files, each reflinked or copied from its verified
//! blob (never linked: a script's dependents may rewrite them, and nothing in `OUT_DIR` may
//! lead into the store), or, for text stored with its root paths templated, written with
//! this checkout's paths filled in; with their modes. The caller replays stdout and stderr. Must not
//! decide hit or miss, and must not write outside `OUT_DIR`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use crate::key::FileHasher;
use crate::key::roots::{Roots, Spelling};
use crate::restore::RestoreError;
use crate::store::blobs::copy_fast;
use crate::store::{Entry, StatCache, Store};

/// Set in a stored output's mode when its blob is text with the roots templated
/// (`src/buildscript/run.rs`); it is filled in for this checkout on restore.
pub(crate) const TEMPLATED: u32 = 1 << 20;

/// Restores `entry`'s files into `out_dir`; returns the bytes written.
pub(crate) fn restore_out_dir(
    store: &Store,
    entry: &Entry,
    out_dir: &Path,
    roots: &Roots,
    stat: &mut StatCache,
) -> Result<u64, RestoreError> {
    let mut bytes = 0;
    for out in &entry.outputs {
        let bad = || RestoreError::BadBlob {
            name: out.name.clone(),
            blob: out.blob.clone(),
        };
        // The name comes from the index: it must stay inside OUT_DIR.
        let name = Path::new(&out.name);
        if !name.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad());
        }
        let blob = store.blob_path(&out.blob);
        if !fs::symlink_metadata(&blob).is_ok_and(|m| m.file_type().is_file()) {
            return Err(bad());
        }
        match stat.hash_file(&blob) {
            Ok(h) if h == out.blob => {}
            _ => return Err(bad()),
        }
        let dest = out_dir.join(name);
        let write_err = |source| RestoreError::Write {
            path: dest.clone(),
            source,
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(write_err)?;
        }
        crate::restore::remove_if_present(&dest).map_err(write_err)?;
        if out.mode & TEMPLATED != 0 {
            let text = fs::read(&blob)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            let filled = roots
                .fill(&text, Spelling::Plain)
                .ok_or(RestoreError::UnknownRoot)?;
            fs::write(&dest, filled).map_err(write_err)?;
        } else {
            copy_fast(&blob, &dest).map_err(write_err)?;
        }
        // As for rustc outputs: no setuid, setgid or sticky bit, nothing group- or other-writable.
        fs::set_permissions(
            &dest,
            fs::Permissions::from_mode(out.mode & crate::restore::MODE_MASK),
        )
        .map_err(write_err)?;
        if out.mode & TEMPLATED == 0 {
            let _ = stat.record_trusted(&dest, &out.blob);
        }
        bytes += out.size;
    }
    Ok(bytes)
}
