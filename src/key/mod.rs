//! The cache key.
//!
//! A key is blake3 over a versioned schema of labelled, length-prefixed fields, so no two
//! different field lists can hash alike. Keys come in two layers (direct mode):
//! the *invocation key* covers everything known before compiling (arguments, toolchain, env,
//! `--extern` contents, ...); a [`manifest::Manifest`] recorded from an earlier compile's
//! dep-info lists the source files and env-deps that invocation read; the *entry key* is the
//! invocation key plus that manifest's contents and names the stored result.
//! This module decides what goes into keys; it must not write anything but the toolchain memo.

pub(crate) mod depinfo;
pub(crate) mod diff;
pub(crate) mod env;
pub(crate) mod invocation_key;
pub mod manifest;
pub(crate) mod roots;
pub(crate) mod toolchain;

use std::fmt;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Bumped whenever the meaning of any field changes; old entries then simply stop matching.
pub(crate) const KEY_SCHEMA: u32 = 1;

/// Content hash of a file, as lowercase hex.
pub(crate) type ContentHash = String;

/// Hashes files by content; the store's stat cache implements it so unchanged files are not
/// read again.
pub(crate) trait FileHasher {
    fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash>;

    /// [`FileHasher::hash_file`] for a file (not a symlink) a tree walk has just `lstat`ed
    /// as `meta`, so a hasher that would `stat` it first need not ask the kernel again.
    fn hash_stated(&mut self, path: &Path, meta: &std::fs::Metadata) -> io::Result<ContentHash> {
        let _ = meta;
        self.hash_file(path)
    }

    /// A hash `derive` computes from the file at `path` (reading it), which the stat cache
    /// remembers by the file's stamp under `variant` (naming everything besides the file's
    /// content the result depends on), so an unchanged file is not read again.
    fn derived_hash(
        &mut self,
        path: &Path,
        variant: &str,
        derive: &mut dyn FnMut(&Path) -> io::Result<ContentHash>,
    ) -> io::Result<ContentHash> {
        let _ = variant;
        derive(path)
    }
}

/// How often a file that changes while it is read is read again before giving up.
const HASH_ATTEMPTS: usize = 3;

/// Hashes a whole regular file with blake3.
///
/// Read with `read()` rather than memory-mapped: a mapped file that shrinks under the reader
/// kills it with SIGBUS, and inputs (an `--extern` rlib being rebuilt, a source being saved)
/// do change while kache hashes them. The file must be a regular file by `stat` before it is
/// opened (a FIFO would block the open, a device like `/dev/zero` never ends), it is opened
/// non-blocking and checked again with `fstat`, and no more than its stat'ed size plus one
/// byte is read. A file whose size, mtime or ctime changed while it was read is read again, a
/// few times, then reported as [`io::ErrorKind::Interrupted`] (a miss for the caller).
pub(crate) fn hash_file_contents(path: &Path) -> io::Result<ContentHash> {
    for _ in 0..HASH_ATTEMPTS {
        if let Some(hash) = hash_once(path)? {
            return Ok(hash);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        format!("{} kept changing while it was read", path.display()),
    ))
}

/// One attempt of [`hash_file_contents`]: `None` when the file changed while it was read.
fn hash_once(path: &Path) -> io::Result<Option<ContentHash>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // The path may have been swapped for a FIFO or device between the stat and the open.
    let before = file.metadata()?;
    if !before.is_file() {
        return Err(not_regular());
    }
    let stamp = crate::fsutil::FileStamp::of(&before);
    let mut hasher = blake3::Hasher::new();
    // On the stack: a fresh 1 MiB heap buffer per file was zeroed by `calloc` each time (glibc
    // serves it from the heap once one such buffer has been freed), which was the largest
    // share of kache's own CPU in a cold build that hashes thousands of small files.
    let mut buf = [0u8; 64 * 1024];
    let mut reader = (&file).take(stamp.size.saturating_add(1));
    let mut read = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    let after = crate::fsutil::FileStamp::of(&file.metadata()?);
    if read != stamp.size || after != stamp {
        return Ok(None);
    }
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// One named input of a key, kept in readable form so `kache explain` can show what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyField {
    pub label: Label,
    pub value: String,
}

/// What a key field is. Readers match on the kind instead of taking the text apart; the text
/// ([`fmt::Display`]) is what is hashed and stored, so it must not change for a given kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Label {
    /// A compiler option and one of its values, `arg <flag>` (`arg -C`, `arg --edition`).
    Arg(String),
    /// A keyed environment variable of a rustc invocation, `env <name>`.
    Env(String),
    /// A dependency named by `--extern`, `extern <name>`.
    Extern(String),
    /// Any other field, by its fixed name (`toolchain`, `cfg`, `input`, ...).
    Named(String),
}

impl Label {
    const ARG: &str = "arg ";
    const ENV: &str = "env ";
    const EXTERN: &str = "extern ";
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Arg(flag) => write!(f, "{}{flag}", Label::ARG),
            Label::Env(name) => write!(f, "{}{name}", Label::ENV),
            Label::Extern(name) => write!(f, "{}{name}", Label::EXTERN),
            Label::Named(name) => f.write_str(name),
        }
    }
}

/// Reads a label back from its text (as stored in the index); the inverse of `Display`.
impl From<String> for Label {
    fn from(text: String) -> Label {
        if let Some(flag) = text.strip_prefix(Label::ARG) {
            Label::Arg(flag.to_owned())
        } else if let Some(name) = text.strip_prefix(Label::ENV) {
            Label::Env(name.to_owned())
        } else if let Some(name) = text.strip_prefix(Label::EXTERN) {
            Label::Extern(name.to_owned())
        } else {
            Label::Named(text)
        }
    }
}

/// A fixed field name, or a label's text.
impl From<&str> for Label {
    fn from(text: &str) -> Label {
        Label::from(text.to_owned())
    }
}

impl From<Label> for String {
    fn from(label: Label) -> String {
        label.to_string()
    }
}

/// Builds a key from labelled fields and remembers them for explanation.
#[derive(Debug, Clone)]
pub(crate) struct KeyBuilder {
    hasher: blake3::Hasher,
    fields: Vec<KeyField>,
}

impl KeyBuilder {
    /// `domain` separates kinds of keys (invocation vs. entry) that share a field list.
    pub(crate) fn new(domain: &str) -> Self {
        let mut b = KeyBuilder {
            hasher: blake3::Hasher::new(),
            fields: Vec::new(),
        };
        b.raw("kache-key", domain.as_bytes());
        b.raw("schema", &KEY_SCHEMA.to_le_bytes());
        b
    }

    fn raw(&mut self, label: &str, value: &[u8]) {
        self.hasher.update(&(label.len() as u64).to_le_bytes());
        self.hasher.update(label.as_bytes());
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    /// Adds one labelled field.
    pub(crate) fn field(&mut self, label: impl Into<Label>, value: impl Into<String>) {
        let (label, value) = (label.into(), value.into());
        self.raw(&label.to_string(), value.as_bytes());
        self.fields.push(KeyField { label, value });
    }

    pub(crate) fn finish(self) -> (String, Vec<KeyField>) {
        (self.hasher.finalize().to_hex().to_string(), self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_their_text_in_the_key_and_the_index() {
        for (label, text) in [
            (Label::Arg("-C".into()), "arg -C"),
            (Label::Env("RUSTFLAGS".into()), "env RUSTFLAGS"),
            (Label::Extern("serde".into()), "extern serde"),
            (Label::Named("env:CC".into()), "env:CC"),
        ] {
            assert_eq!(label.to_string(), text);
            assert_eq!(Label::from(text), label);
            let field = KeyField {
                label,
                value: "v".into(),
            };
            let json = serde_json::to_string(&field).expect("json");
            assert_eq!(json, format!("{{\"label\":\"{text}\",\"value\":\"v\"}}"));
            assert_eq!(serde_json::from_str::<KeyField>(&json).ok(), Some(field));
        }
    }

    /// A file shrinking under the hasher must never kill it (with `mmap` it was SIGBUS, exit
    /// 135): each hash is the file's content or an error saying it changed.
    #[test]
    fn a_file_truncated_while_hashed_is_an_error_never_a_signal() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const SIZE: u64 = 64 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.rlib");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(SIZE).expect("grow");
        // A flag of its own: a stop value stored in the counter could be counted past.
        let (shrinks, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let truncator = {
            let (shrinks, stop) = (shrinks.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    file.set_len(SIZE / 16).expect("truncate");
                    shrinks.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    file.set_len(SIZE).expect("grow");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        // Hash until the file has shrunk under the hasher many times (on a loaded machine the
        // truncator may start late), and at least 20 times.
        let (mut hashed, mut changed) = (0, 0);
        while hashed + changed < 20 || shrinks.load(Ordering::Relaxed) < 100 {
            match hash_file_contents(&path) {
                Ok(_) => hashed += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => changed += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        truncator.join().expect("truncator");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(SIZE))
            .expect("grow");
        let zeros = blake3::hash(&vec![0u8; SIZE as usize]).to_hex().to_string();
        assert_eq!(hash_file_contents(&path).expect("stable file"), zeros);
    }

    #[test]
    fn only_regular_files_are_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        for p in [fifo.as_path(), Path::new("/dev/zero")] {
            let err = hash_file_contents(p).expect_err("not a regular file");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{}", p.display());
        }
    }

    #[test]
    fn fields_cannot_collide_by_concatenation() {
        let mut a = KeyBuilder::new("t");
        a.field("ab", "c");
        let mut b = KeyBuilder::new("t");
        b.field("a", "bc");
        assert_ne!(a.finish().0, b.finish().0);
    }

    #[test]
    fn domain_separates() {
        assert_ne!(
            KeyBuilder::new("a").finish().0,
            KeyBuilder::new("b").finish().0
        );
    }

    #[test]
    fn same_fields_same_key() {
        let build = || {
            let mut k = KeyBuilder::new("t");
            k.field("x", "1");
            k.field("y", "2");
            k.finish()
        };
        assert_eq!(build(), build());
    }
}
