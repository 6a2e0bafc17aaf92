//! The failure policy around a remote: consult the circuit breaker before a call, feed it
//! the outcome after, and answer remembered misses without asking.
//!
//! Owns the decision of which outcomes count as remote failures (see
//! [`RemoteError::is_remote_failure`]) and which as definite misses. Must not retry, sleep,
//! or turn an error into a miss: the caller decides what a failure means for the build.

use std::path::Path;

use super::breaker::{Breaker, MissCache};
use super::{RemoteConfig, RemoteError, RemoteStore};

/// A [`RemoteStore`] that skips the remote while its breaker is open (failing fast with
/// [`RemoteError::BreakerOpen`]) and answers recently seen misses locally.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    breaker: Breaker,
    misses: MissCache,
}

impl<S: RemoteStore> Guarded<S> {
    /// Breaker and miss cache in `cache_dir`, tuned by `config`.
    pub(crate) fn new(inner: S, cache_dir: &Path, config: &RemoteConfig) -> Self {
        Guarded {
            inner,
            breaker: Breaker::new(cache_dir, config.breaker_failures, config.breaker_cooldown),
            misses: MissCache::new(cache_dir, config.miss_ttl),
        }
    }

    pub fn with_parts(inner: S, breaker: Breaker, misses: MissCache) -> Self {
        Guarded {
            inner,
            breaker,
            misses,
        }
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &S {
        &self.inner
    }

    fn observe<T>(&self, result: Result<T, RemoteError>) -> Result<T, RemoteError> {
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(e) if e.is_remote_failure() => {
                self.breaker.record_failure();
            }
            Err(_) => {}
        }
        result
    }
}

impl<S: RemoteStore> RemoteStore for Guarded<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        if self.breaker.is_open() {
            return Err(RemoteError::BreakerOpen);
        }
        if self.misses.contains(key) {
            return Ok(None);
        }
        let result = self.observe(self.inner.get(key));
        if matches!(result, Ok(None)) {
            self.misses.insert(key);
        }
        result
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        if self.breaker.is_open() {
            return Err(RemoteError::BreakerOpen);
        }
        self.observe(self.inner.put(key, body))
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        if self.breaker.is_open() {
            return Err(RemoteError::BreakerOpen);
        }
        if self.misses.contains(key) {
            return Ok(false);
        }
        let result = self.observe(self.inner.exists(key));
        if matches!(result, Ok(false)) {
            self.misses.insert(key);
        }
        result
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        if self.breaker.is_open() {
            return Err(RemoteError::BreakerOpen);
        }
        // An empty listing is a miss like any other: remembered for the miss cache's time.
        if self.misses.contains(prefix) {
            return Ok(Vec::new());
        }
        let result = self.observe(self.inner.list(prefix));
        if result.as_ref().is_ok_and(|names| names.is_empty()) {
            self.misses.insert(prefix);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::MemoryStore;
    use super::*;
    use std::time::Duration;

    fn guarded(dir: &Path) -> Guarded<MemoryStore> {
        Guarded::with_parts(
            MemoryStore::new(),
            Breaker::new(dir, 2, Duration::from_secs(60)),
            MissCache::new(dir, Duration::from_secs(60)),
        )
    }

    #[test]
    fn misses_are_remembered_across_instances() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = guarded(dir.path());
        assert!(matches!(g.get("k"), Ok(None)));
        assert!(matches!(g.get("k"), Ok(None)));
        assert!(matches!(g.exists("k"), Ok(false)));
        assert_eq!(
            g.inner().calls(),
            1,
            "later lookups answered from the miss cache"
        );
        let other = guarded(dir.path());
        assert!(matches!(other.get("k"), Ok(None)));
        assert_eq!(other.inner().calls(), 0);
        // Hits are never cached.
        assert!(g.put("h", b"v").is_ok());
        assert!(matches!(g.get("h"), Ok(Some(_))));
        assert!(matches!(g.get("h"), Ok(Some(_))));
    }

    #[test]
    fn failures_open_the_breaker_for_everyone_and_success_closes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = guarded(dir.path());
        g.inner().set_failing(true);
        assert!(matches!(g.get("a"), Err(RemoteError::Unavailable(_))));
        assert!(matches!(g.put("a", b""), Err(RemoteError::Unavailable(_))));
        let calls = g.inner().calls();
        assert!(matches!(g.get("a"), Err(RemoteError::BreakerOpen)));
        assert!(matches!(g.exists("a"), Err(RemoteError::BreakerOpen)));
        assert_eq!(g.inner().calls(), calls, "open breaker: no call made");
        let other = guarded(dir.path());
        assert!(matches!(other.get("a"), Err(RemoteError::BreakerOpen)));
        // Errors are not misses.
        assert!(!MissCache::new(dir.path(), Duration::from_secs(60)).contains("a"));
        Breaker::new(dir.path(), 2, Duration::from_secs(60)).record_success();
        g.inner().set_failing(false);
        assert!(matches!(g.get("a"), Ok(None)));
    }

    #[test]
    fn our_own_mistakes_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Guarded::with_parts(
            MemoryStore::read_only(),
            Breaker::new(dir.path(), 1, Duration::from_secs(60)),
            MissCache::new(dir.path(), Duration::from_secs(60)),
        );
        assert!(matches!(g.put("a", b""), Err(RemoteError::ReadOnly)));
        assert!(
            !Breaker::new(dir.path(), 1, Duration::from_secs(60)).is_open(),
            "a refused write is no remote failure"
        );
    }
}
