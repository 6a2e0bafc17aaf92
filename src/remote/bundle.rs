//! The one-object format of a shared cache entry: a zstd-compressed tar holding `meta.json`
//! first, then each output under `files/<relative name>`.
//!
//! Owns packing and (defensive) unpacking of that format. Must not touch the filesystem when
//! unpacking, nor trust anything in a downloaded bundle: only regular files with plain
//! relative names are accepted, the decompressed size is bounded, and no input may panic.
//! Integrity of the contents (blake3 against the entry metadata) is the caller's job; the
//! zstd frame checksum only turns most corruption into an early error.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Name of the metadata member.
pub(crate) const META_NAME: &str = "meta.json";
/// Directory of the output members.
const FILES_DIR: &str = "files/";
/// zstd level: level 3 is the library default and compresses rlibs well at a fraction of the
/// cost of higher levels, which matters because packing happens on the miss path.
const LEVEL: i32 = 3;
/// Decoder window bound (16 MiB). Level 3 never uses more than 2 MiB; the bound stops a
/// crafted frame from making the decoder allocate up to zstd's 128 MiB default.
const WINDOW_LOG_MAX: u32 = 24;
/// Longest accepted member name, in bytes.
const MAX_NAME_LEN: usize = 4096;

/// Where the bytes of one output come from when packing.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
}

/// An unpacked entry: the metadata bytes and each output's relative name and contents, in
/// the order they were packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub meta: Vec<u8>,
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write bundle: {0}")]
    Write(io::Error),
    #[error("bundle decompresses to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bundle member {name:?} refused: {reason}")]
    Unsafe { name: String, reason: &'static str },
    #[error("bundle has no {META_NAME}")]
    MissingMeta,
    #[error("corrupt bundle: {0}")]
    Corrupt(String),
}

/// Packs `meta_json` and `files` into one bundle. Names are relative, `/`-separated, and
/// must pass the same checks [`unpack`] applies, so whatever packs also unpacks.
/// Headers carry no time, owner or mode, so equal inputs give equal bundles.
pub fn pack<N: AsRef<str>>(
    meta_json: &[u8],
    files: &[(N, Source<'_>)],
) -> Result<Vec<u8>, BundleError> {
    let mut seen = HashSet::new();
    for (name, _) in files {
        let name = name.as_ref();
        check_relative_name(name)?;
        if !seen.insert(name) {
            return Err(BundleError::Unsafe {
                name: name.to_string(),
                reason: "duplicate name",
            });
        }
    }

    let mut encoder =
        zstd::stream::write::Encoder::new(Vec::new(), LEVEL).map_err(BundleError::Write)?;
    encoder.include_checksum(true).map_err(BundleError::Write)?;
    let mut builder = tar::Builder::new(encoder);
    append(&mut builder, META_NAME, meta_json.len() as u64, meta_json)?;
    for (name, source) in files {
        let member = format!("{FILES_DIR}{}", name.as_ref());
        match source {
            Source::Bytes(bytes) => append(&mut builder, &member, bytes.len() as u64, *bytes)?,
            Source::Path(path) => {
                let read_err = |source| BundleError::Read {
                    path: path.to_path_buf(),
                    source,
                };
                let file = File::open(path).map_err(read_err)?;
                let meta = file.metadata().map_err(read_err)?;
                if !meta.is_file() {
                    return Err(read_err(io::Error::other("not a regular file")));
                }
                let reader = Exact {
                    inner: file,
                    remaining: meta.len(),
                };
                // A file that shrinks while being read must fail the pack rather than leave a
                // member shorter than its header says; `Exact` turns that into an error.
                append(&mut builder, &member, meta.len(), reader).map_err(|e| match e {
                    BundleError::Write(source) => read_err(source),
                    other => other,
                })?;
            }
        }
    }
    let encoder = builder.into_inner().map_err(BundleError::Write)?;
    encoder.finish().map_err(BundleError::Write)
}

fn append<W: Write, R: Read>(
    builder: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: R,
) -> Result<(), BundleError> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder
        .append_data(&mut header, name, data)
        .map_err(BundleError::Write)
}

/// Reads exactly `remaining` bytes from `inner`, failing if it ends early and stopping at
/// `remaining` if it grew.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being packed",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Unpacks a bundle in memory, refusing anything but regular files with safe relative names
/// and failing once more than `max_decompressed_bytes` (tar headers included) come out of
/// the decompressor.
pub fn unpack(bytes: &[u8], max_decompressed_bytes: u64) -> Result<Bundle, BundleError> {
    let exceeded = Rc::new(Cell::new(false));
    let io_err = |e: io::Error, exceeded: &Cell<bool>| {
        if exceeded.get() {
            BundleError::TooLarge {
                limit: max_decompressed_bytes,
            }
        } else {
            BundleError::Corrupt(e.to_string())
        }
    };

    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(bytes).map_err(|e| io_err(e, &exceeded))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| io_err(e, &exceeded))?;
    let limited = Limited {
        inner: decoder,
        remaining: max_decompressed_bytes,
        exceeded: Rc::clone(&exceeded),
    };
    let mut archive = tar::Archive::new(limited);

    let mut meta = None;
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let entries = archive.entries().map_err(|e| io_err(e, &exceeded))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(e, &exceeded))?;
        let name = match std::str::from_utf8(&entry.path_bytes()) {
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(BundleError::Unsafe {
                    name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                    reason: "name is not UTF-8",
                });
            }
        };
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(BundleError::Unsafe {
                name,
                reason: entry_kind_reason(kind),
            });
        }
        let target = if name == META_NAME {
            None
        } else if let Some(relative) = name.strip_prefix(FILES_DIR) {
            check_relative_name(relative)?;
            Some(relative.to_string())
        } else {
            check_relative_name(&name)?;
            return Err(BundleError::Unsafe {
                name,
                reason: "member outside files/",
            });
        };
        if !seen.insert(name.clone()) {
            return Err(BundleError::Unsafe {
                name,
                reason: "duplicate name",
            });
        }
        // Refuse an oversized member before reading it, and never trust the header's size
        // for an allocation: the data behind it may not exist.
        let size = entry.size();
        if size > max_decompressed_bytes {
            return Err(BundleError::TooLarge {
                limit: max_decompressed_bytes,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        entry
            .read_to_end(&mut data)
            .map_err(|e| io_err(e, &exceeded))?;
        if data.len() as u64 != size {
            return Err(BundleError::Corrupt(format!("{name}: truncated member")));
        }
        match target {
            None => meta = Some(data),
            Some(relative) => files.push((relative, data)),
        }
    }

    // Read to the end of the zstd frame so its checksum is verified even when the damage is
    // in the tar trailer, and so trailing data counts against the bound.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| io_err(e, &exceeded))?;

    match meta {
        Some(meta) => Ok(Bundle { meta, files }),
        None => Err(BundleError::MissingMeta),
    }
}

fn entry_kind_reason(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char | tar::EntryType::Block => "device file",
        tar::EntryType::Fifo => "fifo",
        tar::EntryType::Directory => "directory",
        _ => "not a regular file",
    }
}

/// A name is a non-empty `/`-separated path of normal components: not absolute, no `.` or
/// `..`, no empty component, no backslash or NUL (which other platforms or C APIs would read
/// differently).
fn check_relative_name(name: &str) -> Result<(), BundleError> {
    let refuse = |reason| {
        Err(BundleError::Unsafe {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("name too long");
    }
    if name.starts_with('/') {
        return refuse("absolute path");
    }
    if name.contains(['\\', '\0']) {
        return refuse("backslash or NUL in name");
    }
    for component in name.split('/') {
        match component {
            "" => return refuse("empty path component"),
            "." | ".." => return refuse("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Fails once more than `remaining` bytes have been read, and records that it did so the
/// caller can tell "too large" from "corrupt" through the tar crate's error wrapping.
struct Limited<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed, so reaching exactly the limit is fine and
        // going past it is noticed.
        let allowed = self.remaining.saturating_add(1);
        let cap = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n as u64 > self.remaining {
            self.exceeded.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "decompressed size limit exceeded",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name, type, data, link target.
    type RawMember<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    /// Builds an uncompressed tar whose single member has a raw, unchecked name and type —
    /// what an attacker could upload, bypassing `pack`'s checks.
    fn raw_tar(members: &[RawMember<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in members {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            {
                let gnu = header.as_gnu_mut().expect("gnu header");
                gnu.name[..name.len()].copy_from_slice(name);
                gnu.linkname[..link.len()].copy_from_slice(link);
            }
            header.set_cksum();
            builder.append(&header, *data).expect("append to Vec");
        }
        builder.into_inner().expect("finish tar")
    }

    fn compress(tar: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(tar, 3).expect("compress")
    }

    const MAX: u64 = 1 << 20;

    fn refused(members: &[RawMember<'_>]) -> BundleError {
        let mut all: Vec<RawMember<'_>> = vec![(b"meta.json", tar::EntryType::Regular, b"{}", b"")];
        all.extend_from_slice(members);
        match unpack(&compress(&raw_tar(&all)), MAX) {
            Ok(b) => panic!("accepted {:?}", b.files),
            Err(e) => e,
        }
    }

    #[test]
    fn round_trip_bytes_and_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("libfoo.rlib");
        std::fs::write(&path, vec![7u8; 100_000]).expect("write");
        let long = format!("deps/{}/x.rmeta", "n".repeat(150));
        let packed = pack(
            br#"{"v":1}"#,
            &[
                ("libfoo.rlib", Source::Path(&path)),
                ("deps/foo.d", Source::Bytes(b"dep info")),
                (long.as_str(), Source::Bytes(b"")),
            ],
        )
        .expect("pack");
        assert!(packed.len() < 10_000, "compressed {}", packed.len());
        let b = unpack(&packed, MAX).expect("unpack");
        assert_eq!(b.meta, br#"{"v":1}"#);
        assert_eq!(b.files.len(), 3);
        assert_eq!(b.files[0], ("libfoo.rlib".to_string(), vec![7u8; 100_000]));
        assert_eq!(b.files[1], ("deps/foo.d".to_string(), b"dep info".to_vec()));
        assert_eq!(b.files[2], (long.clone(), Vec::new()));
        // Deterministic: same input, same bytes.
        let again = pack(
            br#"{"v":1}"#,
            &[
                ("libfoo.rlib", Source::Path(&path)),
                ("deps/foo.d", Source::Bytes(b"dep info")),
                (long.as_str(), Source::Bytes(b"")),
            ],
        )
        .expect("pack");
        assert_eq!(packed, again);
    }

    #[test]
    fn pack_refuses_bad_names_and_missing_files() {
        for name in ["", "/abs", "../up", "a/../b", "a//b", "./a", "a\\b", "a/"] {
            let r = pack(b"{}", &[(name, Source::Bytes(b"x"))]);
            assert!(matches!(r, Err(BundleError::Unsafe { .. })), "{name:?}");
        }
        let r = pack(
            b"{}",
            &[("a", Source::Bytes(b"x")), ("a", Source::Bytes(b"y"))],
        );
        assert!(matches!(r, Err(BundleError::Unsafe { .. })));
        let r = pack(b"{}", &[("a", Source::Path(Path::new("/nonexistent/x")))]);
        assert!(matches!(r, Err(BundleError::Read { .. })));
        let dir = tempfile::tempdir().expect("tempdir");
        let r = pack(b"{}", &[("a", Source::Path(dir.path()))]);
        assert!(matches!(r, Err(BundleError::Read { .. })));
    }

    #[test]
    fn refuses_traversal_absolute_and_odd_names() {
        use tar::EntryType::Regular;
        for name in [
            &b"files/../evil"[..],
            b"../evil",
            b"/etc/passwd",
            b"files//etc/passwd",
            b"files/a/../../evil",
            b"files/./a",
            b"other/x",
            b"files/",
            b"files/a\\b",
            b"files/\xff",
        ] {
            let e = refused(&[(name, Regular, b"x", b"")]);
            assert!(
                matches!(e, BundleError::Unsafe { .. }),
                "{:?}: {e:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn refuses_links_devices_and_directories() {
        use tar::EntryType::*;
        for (kind, link) in [
            (Symlink, &b"/etc/passwd"[..]),
            (Link, b"meta.json"),
            (Char, b""),
            (Block, b""),
            (Fifo, b""),
            (Directory, b""),
            (Continuous, b""),
            (GNUSparse, b""),
            (XGlobalHeader, b""),
        ] {
            let e = refused(&[(b"files/x", kind, b"", link)]);
            // The tar reader itself rejects a sparse header without sparse data.
            let ok = matches!(e, BundleError::Unsafe { .. })
                || (kind == GNUSparse && matches!(e, BundleError::Corrupt(_)));
            assert!(ok, "{kind:?}: {e:?}");
        }
    }

    #[test]
    fn refuses_duplicates_and_missing_meta() {
        use tar::EntryType::Regular;
        let e = refused(&[
            (b"files/a", Regular, b"1", b""),
            (b"files/a", Regular, b"2", b""),
        ]);
        assert!(matches!(e, BundleError::Unsafe { .. }), "{e:?}");
        let e = refused(&[(b"meta.json", Regular, b"{}", b"")]);
        assert!(matches!(e, BundleError::Unsafe { .. }), "{e:?}");
        let tar = raw_tar(&[(b"files/a", Regular, b"1", b"")]);
        assert!(matches!(
            unpack(&compress(&tar), MAX),
            Err(BundleError::MissingMeta)
        ));
    }

    #[test]
    fn bounds_decompressed_size() {
        // 256 MiB of zeros compresses to well under 1 MiB.
        let zeros = vec![0u8; 256 << 20];
        let packed = pack(b"{}", &[("big", Source::Bytes(&zeros))]).expect("pack");
        assert!(packed.len() < 1 << 20, "{}", packed.len());
        let start = std::time::Instant::now();
        let e = unpack(&packed, 8 << 20).expect_err("bomb accepted");
        assert!(
            matches!(e, BundleError::TooLarge { limit } if limit == 8 << 20),
            "{e:?}"
        );
        // Refused early, not after inflating everything.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Exactly at the bound is fine: find the decompressed size and use it as the limit.
        let small = pack(b"{}", &[("a", Source::Bytes(b"abc"))]).expect("pack");
        let exact = zstd::stream::decode_all(&small[..]).expect("decode").len() as u64;
        assert!(unpack(&small, exact).is_ok());
        assert!(matches!(
            unpack(&small, exact - 1),
            Err(BundleError::TooLarge { .. })
        ));
        // Raw zstd of zeros that is not even a tar is bounded too.
        let raw = compress(&zeros);
        assert!(matches!(
            unpack(&raw, 1 << 20),
            Err(BundleError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_tampering_never_panic() {
        for junk in [
            &b""[..],
            b"\x28\xb5\x2f\xfd",
            b"not zstd at all",
            &[0u8; 1024],
        ] {
            assert!(unpack(junk, MAX).is_err());
        }
        let original = pack(
            br#"{"k":"v"}"#,
            &[
                ("a", Source::Bytes(b"hello world, hello world")),
                ("b", Source::Bytes(&[1, 2, 3])),
            ],
        )
        .expect("pack");
        let good = unpack(&original, MAX).expect("unpack");
        for flip in [0x01u8, 0x5a, 0x80, 0xff] {
            let mut refused_count = 0;
            for i in 0..original.len() {
                let mut bad = original.clone();
                bad[i] ^= flip;
                // Either refused, or (for a flip zstd can prove harmless) identical content.
                match unpack(&bad, MAX) {
                    Err(_) => refused_count += 1,
                    Ok(b) => {
                        assert_eq!(b, good, "byte {i} flip {flip:#x} changed content silently")
                    }
                }
            }
            // The frame checksum turns most damage into an error, not a silent pass.
            assert!(
                refused_count > original.len() / 2,
                "flip {flip:#x}: {refused_count}/{} refused",
                original.len()
            );
        }
        for len in 0..original.len() {
            assert!(unpack(&original[..len], MAX).is_err(), "truncated to {len}");
        }
    }
}
