//! Content-addressed blobs: `<dir>/blobs/<2 hex>/<blake3>`, uncompressed so they can be
//! linked into place. Written as a temporary file in `<dir>/tmp` and renamed, so a blob under
//! its name is always complete. Must not touch the index.
//!
//! A blob is owner-writable ([`blob_mode`]): a hardlinked output shares its blob's inode and
//! mode, and cargo and rustc *without* kache must be able to rebuild over whatever kache left
//! in `target/` (rustc refuses to replace an output it cannot write, even as root). The store
//! is not protected by the mode but by content: rustc and the linkers replace an output
//! (new file, rename) rather than write into it, and a blob changed through a link anyway is
//! caught when restored (its size or mtime no longer matches the hash recorded with it), then
//! dropped and stored again.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fsutil::{make_dirs_below, unique_suffix};
use crate::key::hash_file_contents;

pub(crate) fn blob_path(dir: &Path, hash: &str) -> PathBuf {
    let fan = hash.get(..2).unwrap_or("00");
    dir.join("blobs").join(fan).join(hash)
}

/// Copies (or links) `src` into the blob directory unless an identical blob is there.
/// `linkable` outputs share their inode with the blob (nothing rewrites them in place);
/// others are reflinked or copied. Returns the content hash and size.
pub(crate) fn ingest(dir: &Path, src: &Path, linkable: bool) -> io::Result<(String, u64)> {
    let hash = hash_file_contents(src)?;
    let meta = fs::metadata(src)?;
    let mode = blob_mode(meta.permissions().mode() & 0o111 != 0);
    let size = meta.len();
    place(dir, &hash, size, mode, |tmp| {
        if linkable && fs::hard_link(src, tmp).is_ok() {
            Ok(())
        } else {
            copy_fast(src, tmp)
        }
    })?;
    Ok((hash, size))
}

/// The mode of a blob, and so of an output hardlinked to it: what rustc gives its outputs
/// (an executable keeps its execute bits, since a build script must stay runnable), never
/// group- or other-writable, never setuid.
pub(crate) fn blob_mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

/// An in-kernel copy (`copy_file_range`), which clones the extents where the filesystem can
/// (btrfs, XFS). No explicit reflink first: where it fails it costs a file created and
/// deleted, and on ext4 right after `rm -rf target` every inode allocation is slow.
pub(crate) fn copy_fast(src: &Path, dest: &Path) -> io::Result<()> {
    fs::copy(src, dest).map(|_| ())
}

/// Writes downloaded bytes as the blob `hash`, after checking that they hash to it.
pub(crate) fn write_bytes(dir: &Path, hash: &str, bytes: &[u8]) -> io::Result<()> {
    if blake3::hash(bytes).to_hex().as_str() != hash {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("content does not match blob name {hash}"),
        ));
    }
    place(dir, hash, bytes.len() as u64, blob_mode(false), |tmp| {
        // A new file, never through a link planted under the temporary name.
        fs::File::options()
            .write(true)
            .create_new(true)
            .open(tmp)?
            .write_all(bytes)
    })
}

/// Puts the blob `hash` in place unless it is there already: `fill` writes a temporary
/// file in `<dir>/tmp`, which gets `mode` and is renamed under the blob's name,
/// so a blob is never seen incomplete.
fn place(
    dir: &Path,
    hash: &str,
    size: u64,
    mode: u32,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dest = blob_path(dir, hash);
    // A symlink planted under the blob's name does not count: the rename below replaces it.
    if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(());
    }
    let tmp = dir
        .join("tmp")
        .join(format!("blob.{}.{:x}", std::process::id(), unique_suffix()));
    let placed = (|| {
        fill(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        if let Some(parent) = dest.parent() {
            // A fan-out dir planted as a symlink would move the blob out of the store.
            make_dirs_below(dir, parent)?;
        }
        fs::rename(&tmp, &dest)
    })();
    if placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    placed
}
