//! Small filesystem and path primitives every step uses: atomic writes, file identity,
//! opening paths under the cache dir without following links, and making a path absolute.
//! Knows nothing of entries, keys or rustc; it sits below everything else.
//!
//! Everything kache opens below its cache dir goes through [`open_below`] / [`make_dirs_below`]
//! / [`write_atomic`]: a symlink planted anywhere under the dir (a file, a fan-out dir, a lock)
//! is refused rather than followed, so kache never creates or appends to a file outside it.
//! Only the cache dir itself may be a symlink, and only one of ours (see
//! [`is_foreign_symlink`]).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// `p` as seen from `cwd`: unchanged when absolute, else joined to `cwd`. Purely lexical:
/// nothing is resolved, so a path keeps the spelling the compiler was given.
pub(crate) fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    }
}

/// The error for a symlink found where kache expects its own file or directory. Its text
/// names the path and says "symlink", as the one warning line shows it.
pub(crate) fn symlink_refused(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symlink; kache does not follow links inside its cache dir",
        path.display()
    ))
}

/// Checks that every directory between `root` (excluded) and `path` (excluded) is a real
/// directory, not a symlink; with `create`, makes the missing ones. `path` must lie below
/// `root`.
fn real_dirs_between(root: &Path, path: &Path, create: bool) -> io::Result<()> {
    let rel = path.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is outside the cache dir", path.display()),
        )
    })?;
    let mut dir = root.to_path_buf();
    let parents: Vec<Component> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        if !matches!(part, Component::Normal(_)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain path below the cache dir", path.display()),
            ));
        }
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_refused(&dir)),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Ok(()) => {}
                // Made by a concurrent process: check what it is on the next pass.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_dir()) {
                        return Err(symlink_refused(&dir));
                    }
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes `dir` (below `root`) and the directories between them, refusing any that is a
/// symlink.
pub(crate) fn make_dirs_below(root: &Path, dir: &Path) -> io::Result<()> {
    real_dirs_between(root, &dir.join("_"), true)
}

/// Opens `path` (below `root`) with `options`, never through a symlink: not at its last
/// component (`O_NOFOLLOW`), nor at any directory between `root` and it.
pub(crate) fn open_below(root: &Path, path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    real_dirs_between(root, path, false)?;
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                symlink_refused(path)
            } else {
                e
            }
        })
}

/// Reads a whole file below `root`, refusing symlinks as [`open_below`] does.
pub(crate) fn read_below(root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_below(root, path, OpenOptions::new().read(true))?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// An `flock` (`how`: `LOCK_EX`, `LOCK_SH`, with or without `LOCK_NB`) on the file at `path`,
/// created if missing (never through a symlink); released when the file is dropped. `None`
/// when it cannot be opened or locked.
pub(crate) fn lock_file(path: &Path, how: libc::c_int) -> Option<File> {
    use std::os::fd::AsRawFd;
    let dir = path.parent()?;
    let f = open_below(
        dir,
        path,
        OpenOptions::new().create(true).truncate(false).write(true),
    )
    .ok()?;
    // SAFETY: flock on a descriptor we own; it is released when the file is dropped.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
    (rc == 0).then_some(f)
}

/// Refuses `path` when it is a symlink (a missing path is fine).
pub(crate) fn refuse_symlink(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(path)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` (below `root`) through a temporary file in the same directory
/// and a rename, so readers see the old content or the new, never a torn file. Directories
/// are made as needed; none of them, nor the temporary file, is followed if it is a link (the
/// rename replaces a link at `path` itself rather than writing through it).
pub(crate) fn write_atomic(root: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(root);
    make_dirs_below(root, dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| {
        let mut f = open_below(root, &tmp, OpenOptions::new().write(true).create_new(true))?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A suffix unique within this process (with the pid, unique across processes).
pub(crate) fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 32)
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl FileStamp {
    pub(crate) fn of(meta: &Metadata) -> Self {
        FileStamp {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }

    /// Nanoseconds since the file last changed (content or inode), by the wall clock.
    pub(crate) fn age_ns(&self, now_ns: i64) -> i64 {
        now_ns - self.mtime_ns.max(self.ctime_ns)
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Whether `path` is a symlink that someone other than us (or root) owns: the store refuses
/// to follow such links, so nobody can redirect its writes.
pub(crate) fn is_foreign_symlink(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let me = unsafe { libc::geteuid() };
            m.uid() != me && m.uid() != 0
        }
        _ => false,
    }
}

/// The extended attribute in which kache records the content hash of a file it wrote.
const HASH_XATTR: &[u8] = b"user.kache.hash\0";

/// Records `hash` on the file for the stamp it has now (size and mtime; setting the attribute
/// itself changes the ctime, so the ctime cannot be part of it). `false` when the filesystem
/// does not support user attributes, or `path` is a symlink (never followed: the attribute
/// would land on whatever it points to).
pub(crate) fn set_hash_xattr(path: &Path, hash: &str, stamp: &FileStamp) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let value = format!("{hash}:{}:{}", stamp.size, stamp.mtime_ns);
    // SAFETY: both pointers are valid NUL-terminated / length-delimited buffers for the call.
    let rc = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            HASH_XATTR.as_ptr().cast(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    rc == 0
}

/// The hash recorded by [`set_hash_xattr`], if the file still has the size and mtime it had
/// then.
pub(crate) fn hash_from_xattr(path: &Path, stamp: &FileStamp) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is valid for `buf.len()` bytes; the kernel writes at most that many.
    let n = unsafe {
        libc::getxattr(
            cpath.as_ptr(),
            HASH_XATTR.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    let mut parts = text.split(':');
    let (hash, size, mtime) = (parts.next()?, parts.next()?, parts.next()?);
    (size.parse::<u64>().ok()? == stamp.size && mtime.parse::<i64>().ok()? == stamp.mtime_ns)
        .then(|| hash.to_owned())
}

/// The filesystem type (`statfs`'s magic number) of the filesystem holding `path`.
#[cfg(target_os = "linux")]
fn fs_magic(path: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `cpath` is NUL-terminated and `st` is a valid out-pointer for the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // The magic numbers fit in 32 bits; `f_type`'s width differs between architectures.
    Some(st.f_type as u32)
}

#[cfg(not(target_os = "linux"))]
fn fs_magic(_path: &Path) -> Option<u32> {
    None
}

/// Whether a directory listing of `dir` names every entry a lookup in it can find. True only
/// on local filesystems known to have no entries that appear on lookup alone (autofs mount
/// points, FAT short names, network filesystems' hidden names).
#[cfg(target_os = "linux")]
pub fn listing_is_complete(dir: &Path) -> bool {
    fs_magic(dir).is_some_and(|magic| {
        [
            libc::EXT4_SUPER_MAGIC as u32,
            libc::XFS_SUPER_MAGIC as u32,
            libc::BTRFS_SUPER_MAGIC as u32,
            libc::TMPFS_MAGIC as u32,
            libc::OVERLAYFS_SUPER_MAGIC as u32,
        ]
        .contains(&magic)
    })
}

#[cfg(not(target_os = "linux"))]
pub fn listing_is_complete(_dir: &Path) -> bool {
    false
}

/// Whether a reflink into `dir` is worth trying. Not on ext2/3/4 or tmpfs, which cannot
/// clone: there a failed attempt costs a file created and deleted per restore, and on ext4
/// right after `rm -rf target` every inode allocation is slow. Anything else (btrfs, XFS,
/// an unknown type) is tried; a failure then falls back to a link or a copy.
#[cfg(target_os = "linux")]
pub(crate) fn may_reflink(dir: &Path) -> bool {
    !fs_magic(dir)
        .is_some_and(|m| [libc::EXT4_SUPER_MAGIC as u32, libc::TMPFS_MAGIC as u32].contains(&m))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn may_reflink(_dir: &Path) -> bool {
    true
}
