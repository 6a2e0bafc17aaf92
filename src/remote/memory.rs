//! An in-process [`RemoteStore`], so code that uses a remote can be tested without a server.
//!
//! Owns nothing persistent; compiled only for unit tests, so the binary people install
//! cannot carry it. It can be told to fail, to exercise the callers' degrade-to-local paths.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{RemoteError, RemoteStore};

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    read_only: bool,
    failing: AtomicBool,
    calls: AtomicUsize,
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn read_only() -> Self {
        MemoryStore {
            read_only: true,
            ..Self::default()
        }
    }

    /// From now on every call fails with [`RemoteError::Unavailable`] (or succeeds again).
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many calls reached the store, failed ones included.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Result<(), RemoteError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(RemoteError::Unavailable("memory store set to fail".into()));
        }
        Ok(())
    }

    fn objects(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>>, RemoteError> {
        self.objects
            .lock()
            .map_err(|_| RemoteError::Unavailable("memory store poisoned".into()))
    }
}

impl RemoteStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        self.enter()?;
        Ok(self.objects()?.get(key).cloned())
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        self.enter()?;
        if self.read_only {
            return Err(RemoteError::ReadOnly);
        }
        self.objects()?.insert(key.to_string(), body.to_vec());
        Ok(())
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        self.enter()?;
        Ok(self.objects()?.contains_key(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        self.enter()?;
        Ok(self
            .objects()?
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failure() {
        let m = MemoryStore::new();
        assert!(matches!(m.get("k"), Ok(None)));
        assert!(m.put("k", b"v").is_ok());
        assert!(matches!(m.exists("k"), Ok(true)));
        assert_eq!(m.get("k").ok().flatten().as_deref(), Some(&b"v"[..]));
        m.set_failing(true);
        assert!(matches!(m.get("k"), Err(RemoteError::Unavailable(_))));
        assert_eq!(m.calls(), 5);
        assert!(matches!(
            MemoryStore::read_only().put("k", b"v"),
            Err(RemoteError::ReadOnly)
        ));
    }
}
