//! The cache key.
//!
//! A key is blake3 over a versioned schema of labelled, length-prefixed fields, so no two
//! different field lists can hash alike. Keys come in two layers (direct mode):
//! the *invocation key* covers everything known before compiling (arguments, toolchain, env,
//! `--extern` contents, ...); a [`manifest::Manifest`] recorded from an earlier compile's
//! dep-info lists the source files and env-deps that invocation read; the *entry key* is the
//! invocation key plus that manifest's contents and names the stored result.
//! This module decides what goes into keys; it must not write anything but the toolchain memo.

pub mod depinfo;
pub mod env;
pub mod invocation_key;
pub mod manifest;
pub mod roots;
pub mod toolchain;

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Bumped whenever the meaning of any field changes; old entries then simply stop matching.
pub const KEY_SCHEMA: u32 = 1;

/// Content hash of a file, as lowercase hex.
pub type ContentHash = String;

/// Hashes files by content; the store's stat cache implements it so unchanged files are not
/// read again.
pub trait FileHasher {
    fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash>;
}

/// Hashes a whole file with blake3 (memory-mapped when large).
pub fn hash_file_contents(path: &Path) -> io::Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// One named input of a key, kept in readable form so `kache explain` can show what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyField {
    pub label: String,
    pub value: String,
}

/// Builds a key from labelled fields and remembers them for explanation.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    hasher: blake3::Hasher,
    fields: Vec<KeyField>,
}

impl KeyBuilder {
    /// `domain` separates kinds of keys (invocation vs. entry) that share a field list.
    pub fn new(domain: &str) -> Self {
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
    pub fn field(&mut self, label: impl Into<String>, value: impl Into<String>) {
        let (label, value) = (label.into(), value.into());
        self.raw(&label, value.as_bytes());
        self.fields.push(KeyField { label, value });
    }

    pub fn finish(self) -> (String, Vec<KeyField>) {
        (self.hasher.finalize().to_hex().to_string(), self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
