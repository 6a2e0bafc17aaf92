//! Putting a stored run back: `OUT_DIR`'s files, each copied from its verified blob (never
//! linked: a script's dependents may rewrite them, and nothing in `OUT_DIR` may lead into the
//! store), or, for text stored with its root paths templated, written with this checkout's
//! paths filled in; with their modes; its empty directories and its symbolic links (a link's
//! target is its blob's text, and must pass [`link_stays_inside`]); and the files the script
//! wrote under the target dir outside `OUT_DIR` (named [`BESIDE_PREFIX`]). The caller
//! replays stdout and stderr. Must not decide hit or miss, and must not write outside
//! `OUT_DIR` and the target dir.
//!
//! An entry is outside data (a remote bundle, an index row): every name, blob, templated
//! text and link target is checked before anything is written, so a damaged entry is refused
//! with `OUT_DIR` untouched. Blobs are opened through [`fsutil::open_below`] (no link
//! followed, in the blob nor in its fan-out dir); a copied blob is verified through the stat
//! cache (the file opened is the one verified), a templated one, a link target and an empty
//! directory's (empty) blob are read once and hashed from those very bytes. Links are made
//! last, so no file is written through one, and nothing existing at a link's place is
//! followed.

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
/// Set in a stored output's mode when it is an empty directory of `OUT_DIR` (its blob is
/// empty).
pub(crate) const EMPTY_DIR: u32 = 1 << 21;
/// Set in a stored output's mode when it is a symbolic link in `OUT_DIR`: its blob is the
/// link's target.
pub(crate) const SYMLINK: u32 = 1 << 22;

/// Whether a link at `name` (relative to `OUT_DIR`) pointing at `target` stays inside
/// `OUT_DIR`, whatever else `OUT_DIR` holds: `target` is relative, made of `..` only at its
/// start (each climbing a real directory the link sits in, never past `OUT_DIR`) and names
/// after them. A `..` after a name is refused: the name could be a link to a directory
/// elsewhere in `OUT_DIR`, or to `OUT_DIR` itself, so `..` could climb out of it. Every other
/// link in `OUT_DIR` passes this rule too, so following a chain of them stays inside.
pub(crate) fn link_stays_inside(name: &str, target: &str) -> bool {
    let depth = Path::new(name).components().count().saturating_sub(1);
    let mut ups = 0;
    let mut named = false;
    if target.is_empty() || target.contains('\0') {
        return false;
    }
    for c in Path::new(target).components() {
        match c {
            Component::ParentDir if !named => ups += 1,
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    ups <= depth
}

/// One output, checked and ready to write.
enum Source {
    /// The verified blob, open.
    Blob(fs::File),
    /// Templated text, filled in for this checkout.
    Text(String),
    /// An empty directory.
    Dir,
    /// A symbolic link to this target, checked.
    Link(String),
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
        let (base, rel, beside) = match out.name.strip_prefix(BESIDE_PREFIX) {
            Some(rel) => (target.ok_or(RestoreError::UnknownRoot)?, rel, true),
            None => (out_dir, out.name.as_str(), false),
        };
        let name = Path::new(rel);
        let kind = out.mode & (TEMPLATED | EMPTY_DIR | SYMLINK);
        // An output is of one kind, and links and empty dirs are recorded in OUT_DIR only.
        let odd_kind = kind.count_ones() > 1 || (beside && kind & (EMPTY_DIR | SYMLINK) != 0);
        if rel.is_empty()
            || odd_kind
            || !name.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(RestoreError::UnexpectedName {
                name: out.name.clone(),
            });
        }
        checked.push((out, base, name, verified(store, out, roots, stat)?));
    }
    // Links last: no file or directory is then made through a link this restore made.
    checked.sort_by_key(|(_, _, _, source)| matches!(source, Source::Link(_)));
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
        bytes += out.size;
        if let Source::Link(target) = &source {
            // Only a link or file at `dest` is removed, and `symlink` follows nothing there.
            crate::restore::remove_if_present(&dest).map_err(write_err)?;
            std::os::unix::fs::symlink(target, &dest).map_err(write_err)?;
            continue;
        }
        match source {
            Source::Link(_) => {}
            Source::Dir => fsutil::make_dirs_below(base, &dest).map_err(write_err)?,
            Source::Text(filled) => {
                crate::restore::remove_if_present(&dest).map_err(write_err)?;
                fs::write(&dest, filled).map_err(write_err)?;
            }
            Source::Blob(mut blob) => {
                crate::restore::remove_if_present(&dest).map_err(write_err)?;
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
        if out.mode & (TEMPLATED | EMPTY_DIR) == 0 {
            let _ = stat.record_trusted(&dest, &out.blob);
        }
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
    if out.mode & (TEMPLATED | EMPTY_DIR | SYMLINK) != 0 {
        let mut bytes = Vec::with_capacity(opened.len() as usize);
        (&file)
            .take(opened.len().saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|_| bad())?;
        if blake3::hash(&bytes).to_hex().as_str() != out.blob {
            return Err(bad());
        }
        if out.mode & EMPTY_DIR != 0 {
            return if bytes.is_empty() {
                Ok(Source::Dir)
            } else {
                Err(bad())
            };
        }
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        if out.mode & SYMLINK != 0 {
            // The target comes from outside too: checked again, by the rule it was recorded by.
            if !link_stays_inside(&out.name, &text) {
                return Err(RestoreError::LinkOutside {
                    name: out.name.clone(),
                });
            }
            return Ok(Source::Link(text));
        }
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

#[cfg(test)]
mod tests {
    use super::link_stays_inside;

    #[test]
    fn only_links_that_stay_in_out_dir_pass() {
        for (name, target) in [
            ("libssl.so", "libssl.so.3"),
            ("lib/libssl.so", "libssl.so.3"),
            ("lib64", "lib"),
            ("lib/x.h", "../include/x.h"),
            ("a/b/c", "../../d"),
            ("a/b", "./c"),
        ] {
            assert!(link_stays_inside(name, target), "{name} -> {target}");
        }
        for (name, target) in [
            ("x", "/etc/passwd"),
            ("x", ".."),
            ("x", "../x"),
            ("lib/x", "../../x"),
            ("a/b", "c/../../.."),
            // `d` could be a link to `.`: `d/..` would then be OUT_DIR's parent.
            ("x", "d/.."),
            ("x", ""),
        ] {
            assert!(!link_stays_inside(name, target), "{name} -> {target}");
        }
    }
}
