//! Putting a stored entry back in place: each output by reflink, else hardlink (only for
//! outputs nothing rewrites in place, see [`is_linkable`], and only where sharing the blob's
//! mtime is harmless, see [`Linking`]), else copy; then the dep-info file filled in for this
//! checkout. Each blob is verified against its hash first (through the stat cache, so an
//! untouched blob is not re-read). An entry is outside data (a remote bundle, an index row
//! anyone could edit): before anything is written, every output name must be one this
//! invocation's rustc would write and the dep-info name the one it would use, and modes are
//! masked. Must not decide hit or miss, and must not modify a blob's content (it may set a
//! blob's mode to [`blob_mode`] before linking it).

use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::invocation::outputs::is_linkable;
use crate::key::FileHasher;
use crate::key::roots::{Roots, Spelling};
use crate::store::blobs::blob_mode;
use crate::store::{Entry, StatCache, Store};

#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("blob {blob} for {name} is missing or damaged")]
    BadBlob { name: String, blob: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("stored dep-info names a path root this checkout does not have")]
    UnknownRoot,
    #[error("stored entry names {name:?}, which this invocation does not write")]
    UnexpectedName { name: String },
    #[error("stored link {name} points outside its OUT_DIR")]
    LinkOutside { name: String },
}

/// What this invocation's rustc writes into its out dir: nothing else may be restored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    /// `invocation::outputs::expected_outputs` for the invocation.
    pub outputs: &'a [String],
    /// `invocation::outputs::depinfo_name` for the invocation.
    pub depinfo: &'a str,
    /// The invocation's crate name and types, which decide what may be hardlinked
    /// ([`is_linkable`]); never the entry's, which come from outside. `None`: nothing is
    /// (C objects: a later plain compile may write them in place).
    pub links: Option<(&'a str, &'a [String])>,
}

/// The most a restored file's mode may be: no setuid, setgid or sticky bit, and nothing
/// writable by group or others, whatever the entry recorded.
pub(crate) const MODE_MASK: u32 = 0o755;

/// A bare file name: joined to the out dir it stays in the out dir.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Refuses an entry that would write anything rustc would not.
fn check_names(entry: &Entry, expected: Expected) -> Result<(), RestoreError> {
    let unexpected = |name: &str| RestoreError::UnexpectedName {
        name: name.to_owned(),
    };
    for out in &entry.outputs {
        if !is_plain_name(&out.name) || !expected.outputs.contains(&out.name) {
            return Err(unexpected(&out.name));
        }
    }
    if let Some((name, _)) = &entry.depinfo
        && (!is_plain_name(name) || name != expected.depinfo)
    {
        return Err(unexpected(name));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RestoreStats {
    pub reflinked: u64,
    pub hardlinked: u64,
    pub copied: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Reflink,
    Hardlink,
    Copy,
}

/// Whether an output may be a hardlink of its blob. Every link to a blob shares one mtime,
/// and cargo rebuilds a unit whose newest output is older than a dependency's output (it
/// never compares outputs with sources: those go against its own dep-info file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linking {
    /// Copied (or reflinked): a later plain compile may rewrite it in place.
    Never,
    /// Linked only while nothing else links the blob, then touched, so it looks just built.
    /// Touching a blob another checkout links would make that checkout's dependents look
    /// stale there.
    Unshared,
    /// Linked wherever, never touched: the `.rlib` of a unit that also restores its
    /// `.rmeta`. That `.rmeta` is placed fresh ([`Linking::Unshared`]), so the unit's newest
    /// output is new, and cargo compares an rmeta-only edge against the `.rmeta` alone.
    Shared,
}

impl Linking {
    fn of(name: &str, entry: &Entry, expected: Expected) -> Linking {
        match expected.links {
            Some((crate_name, types)) if is_linkable(name, crate_name, types) => {
                let is_rlib_with_rmeta = name.ends_with(".rlib")
                    && entry.outputs.iter().any(|o| o.name.ends_with(".rmeta"));
                if is_rlib_with_rmeta {
                    Linking::Shared
                } else {
                    Linking::Unshared
                }
            }
            _ => Linking::Never,
        }
    }
}

/// Restores `entry` into `out_dir`.
pub(crate) fn restore_entry(
    store: &Store,
    entry: &Entry,
    out_dir: &Path,
    expected: Expected,
    roots: &Roots,
    stat: &mut StatCache,
) -> Result<RestoreStats, RestoreError> {
    check_names(entry, expected)?;
    let mut stats = RestoreStats::default();
    let mut reflink_works = crate::fsutil::may_reflink(out_dir);
    for out in &entry.outputs {
        let blob = store.blob_path(&out.blob);
        let bad = || RestoreError::BadBlob {
            name: out.name.clone(),
            blob: out.blob.clone(),
        };
        // A blob is a regular file kache wrote; never follow a symlink planted in its place,
        // nor one planted as its fan-out dir.
        let fan_is_real = blob
            .parent()
            .is_some_and(|fan| fs::symlink_metadata(fan).is_ok_and(|m| m.file_type().is_dir()));
        if !fan_is_real || !fs::symlink_metadata(&blob).is_ok_and(|m| m.file_type().is_file()) {
            return Err(bad());
        }
        match stat.hash_file(&blob) {
            Ok(h) if h == out.blob => {}
            _ => return Err(bad()),
        }
        let dest = out_dir.join(&out.name);
        let write_err = |source| RestoreError::Write {
            path: dest.clone(),
            source,
        };
        remove_if_present(&dest).map_err(write_err)?;
        let linking = Linking::of(&out.name, entry, expected);
        let method = place(
            &blob,
            &dest,
            linking,
            out.mode & 0o111 != 0,
            &mut reflink_works,
        )
        .map_err(write_err)?;
        match method {
            Method::Hardlink => {
                if linking == Linking::Unshared {
                    touch(&dest).map_err(write_err)?;
                }
                stats.hardlinked += out.size;
                // The link changed the blob's ctime; remember the content we just verified.
                let _ = stat.record_trusted(&blob, &out.blob);
            }
            Method::Reflink | Method::Copy => {
                fs::set_permissions(&dest, fs::Permissions::from_mode(out.mode & MODE_MASK))
                    .map_err(write_err)?;
                if method == Method::Reflink {
                    stats.reflinked += out.size;
                } else {
                    stats.copied += out.size;
                }
            }
        }
        let _ = stat.record_trusted(&dest, &out.blob);
    }
    if let Some((name, text)) = &entry.depinfo {
        let filled = roots
            .fill(text, Spelling::DepInfo)
            .ok_or(RestoreError::UnknownRoot)?;
        let dest = out_dir.join(name);
        remove_if_present(&dest).map_err(|source| RestoreError::Write {
            path: dest.clone(),
            source,
        })?;
        fs::write(&dest, filled).map_err(|source| RestoreError::Write { path: dest, source })?;
    }
    Ok(stats)
}

fn place(
    blob: &Path,
    dest: &Path,
    linking: Linking,
    executable: bool,
    reflink_works: &mut bool,
) -> io::Result<Method> {
    if *reflink_works {
        match reflink_copy::reflink(blob, dest) {
            Ok(()) => return Ok(Method::Reflink),
            Err(_) => {
                // One failure says the filesystem cannot; don't ask again for every output.
                *reflink_works = false;
                remove_if_present(dest)?;
            }
        }
    }
    // A link shares the blob's mode: it must be the output's, and writable by its owner so
    // cargo and rustc without kache can rebuild over it. A blob gets that mode first (blobs
    // from the remote are not executable; older kache versions stored read-only blobs).
    // One `stat` decides whether to link and what the blob's mode is.
    let linkable = match linking {
        Linking::Never => None,
        Linking::Unshared => fs::metadata(blob).ok().filter(|m| m.nlink() == 1),
        // Untouched, a blob dated in the future (the clock was set back since it was
        // written) would make every dependent look stale until then.
        Linking::Shared => fs::metadata(blob)
            .ok()
            .filter(|m| m.modified().is_ok_and(|mtime| mtime <= SystemTime::now())),
    };
    if let Some(meta) = linkable
        && set_mode(blob, &meta, blob_mode(executable)).is_ok()
        && fs::hard_link(blob, dest).is_ok()
    {
        return Ok(Method::Hardlink);
    }
    fs::copy(blob, dest)?;
    Ok(Method::Copy)
}

/// Gives the file at `path`, whose metadata is `meta`, the permission bits `mode`.
fn set_mode(path: &Path, meta: &fs::Metadata, mode: u32) -> io::Result<()> {
    if meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Removes the file (or symlink) at `path`, so what comes next writes a new inode rather than
/// through a link into a blob. Anything else there — a device such as `/dev/null`, a FIFO, a
/// socket, a directory — is never removed: an error, so the caller runs the compiler as given.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !(m.file_type().is_file() || m.file_type().is_symlink()) => {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(_) => {}
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn touch(path: &Path) -> io::Result<()> {
    let now = SystemTime::now();
    File::options()
        .read(true)
        .open(path)?
        .set_times(FileTimes::new().set_modified(now).set_accessed(now))
}

#[cfg(test)]
mod tests {
    use super::remove_if_present;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn only_files_and_links_are_removed_never_a_fifo_or_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("cstring");
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        assert!(remove_if_present(&fifo).is_err());
        let kind = std::fs::symlink_metadata(&fifo)
            .expect("still there")
            .file_type();
        assert!(kind.is_fifo());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        assert!(remove_if_present(&sub).is_err());
        assert!(sub.is_dir());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        assert!(remove_if_present(&file).is_ok());
        assert!(!file.exists());
        assert!(remove_if_present(&file).is_ok(), "absent is fine");
    }
}
