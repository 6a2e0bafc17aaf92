//! Putting a stored run back: `OUT_DIR`'s files, each copied from its verified blob (never
//! linked: a script's dependents may rewrite them, and nothing in `OUT_DIR` may lead into the
//! store), or, for text stored with its root paths templated, written with this checkout's
//! paths filled in; with their modes; and the files the script wrote under the target dir
//! outside `OUT_DIR` (named [`BESIDE_PREFIX`]). The caller replays stdout and stderr. Must
//! not decide hit or miss, and must not write outside `OUT_DIR` and the target dir.
//!
//! An entry is outside data (a remote bundle, an index row): every name, blob and templated
//! text is checked before anything is written, so a damaged entry is refused with `OUT_DIR`
//! untouched. Blobs are opened through [`fsutil::open_below`] (no link followed, in the blob
//! nor in its fan-out dir); a copied blob is verified through the stat cache (the file opened
//! is the one verified), a templated one is read once and hashed from those very bytes.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use crate::fsutil;
use crate::key::FileHasher;
use crate::key::roots::{Roots, Spelling};
use crate::restore::RestoreError;
use crate::store::{Entry, StatCache, Store};

/// Starts the name of a stored output that the script wrote under the target dir outside
/// `OUT_DIR` (the rest is its path relative to the target dir); names relative to `OUT_DIR`
/// never start with `/`.
pub const BESIDE_PREFIX: &str = "/target/";

/// Set in a stored output's mode when its blob is text with the roots templated
/// (`src/buildscript/run.rs`); it is filled in for this checkout on restore.
pub(crate) const TEMPLATED: u32 = 1 << 20;

/// One output, checked and ready to write.
enum Source {
    /// The verified blob, open.
    Blob(fs::File),
    /// Templated text, filled in for this checkout.
    Text(String),
}

/// Restores `entry`'s files into `out_dir`; returns the bytes written.
pub(crate) fn restore_out_dir(
    store: &Store,
    entry: &Entry,
    out_dir: &Path,
    roots: &Roots,
    stat: &mut StatCache,
) -> Result<u64, RestoreError> {
    let target = roots.get("target").map(|t| Path::new(&t.path));
    let mut checked = Vec::with_capacity(entry.outputs.len());
    for out in &entry.outputs {
        // The name comes from the index: it must stay inside OUT_DIR, or the target dir.
        let (base, rel) = match out.name.strip_prefix(BESIDE_PREFIX) {
            Some(rel) => (target.ok_or(RestoreError::UnknownRoot)?, rel),
            None => (out_dir, out.name.as_str()),
        };
        let name = Path::new(rel);
        if rel.is_empty() || !name.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(RestoreError::UnexpectedName {
                name: out.name.clone(),
            });
        }
        checked.push((out, base, name, verified(store, out, roots, stat)?));
    }
    let mut bytes = 0;
    for (out, base, name, source) in checked {
        let dest = base.join(name);
        let write_err = |source| RestoreError::Write {
            path: dest.clone(),
            source,
        };
        if let Some(parent) = dest.parent() {
            // Never through a link (in the target dir, outside OUT_DIR, above all).
            fsutil::make_dirs_below(base, parent).map_err(write_err)?;
        }
        crate::restore::remove_if_present(&dest).map_err(write_err)?;
        match source {
            Source::Text(filled) => fs::write(&dest, filled).map_err(write_err)?,
            Source::Blob(mut blob) => {
                let mut file = fs::File::options()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dest)
                    .map_err(write_err)?;
                // `copy_file_range` underneath: a reflink where the filesystem shares extents.
                io::copy(&mut blob, &mut file).map_err(write_err)?;
            }
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

/// Opens `out`'s blob and proves it holds what the entry says.
fn verified(
    store: &Store,
    out: &crate::store::StoredOutput,
    roots: &Roots,
    stat: &mut StatCache,
) -> Result<Source, RestoreError> {
    let bad = || RestoreError::BadBlob {
        name: out.name.clone(),
        blob: out.blob.clone(),
    };
    let path = store.blob_path(&out.blob);
    let file = fsutil::open_below(store.dir(), &path, fs::OpenOptions::new().read(true))
        .map_err(|_| bad())?;
    let opened = file.metadata().map_err(|_| bad())?;
    if !opened.is_file() {
        return Err(bad());
    }
    if out.mode & TEMPLATED != 0 {
        let mut bytes = Vec::with_capacity(opened.len() as usize);
        (&file)
            .take(opened.len().saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|_| bad())?;
        if blake3::hash(&bytes).to_hex().as_str() != out.blob {
            return Err(bad());
        }
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let filled = roots
            .fill(&text, Spelling::Plain)
            .ok_or(RestoreError::UnknownRoot)?;
        return Ok(Source::Text(filled));
    }
    // Large blobs are not read again on every restore: the stat cache vouches for an
    // unchanged file, and the file it vouched for must be the one open here.
    match stat.hash_file(&path) {
        Ok(h) if h == out.blob => {}
        _ => return Err(bad()),
    }
    let same = fs::symlink_metadata(&path)
        .is_ok_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
    if !same {
        return Err(bad());
    }
    Ok(Source::Blob(file))
}
