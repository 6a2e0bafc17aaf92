//! Small filesystem primitives the store is built from: atomic writes and file identity.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers see the old content or the new, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A suffix unique within this process (with the pid, unique across processes).
pub fn unique_suffix() -> u64 {
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
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> Self {
        FileStamp {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }

    /// Nanoseconds since the file last changed (content or inode), by the wall clock.
    pub fn age_ns(&self, now_ns: i64) -> i64 {
        now_ns - self.mtime_ns.max(self.ctime_ns)
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Whether `path` is a symlink that someone other than us (or root) owns: the store refuses
/// to follow such links, so nobody can redirect its writes.
pub fn is_foreign_symlink(path: &Path) -> bool {
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
/// does not support user attributes.
pub fn set_hash_xattr(path: &Path, hash: &str, stamp: &FileStamp) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let value = format!("{hash}:{}:{}", stamp.size, stamp.mtime_ns);
    // SAFETY: both pointers are valid NUL-terminated / length-delimited buffers for the call.
    let rc = unsafe {
        libc::setxattr(
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
pub fn hash_from_xattr(path: &Path, stamp: &FileStamp) -> Option<String> {
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
