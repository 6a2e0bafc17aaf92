//! Cross-process memory of the remote's recent behaviour, kept as two tiny files in the cache
//! directory: the circuit breaker (`remote-breaker`: consecutive failures and until when the
//! remote is skipped) and the miss cache (`remote-misses`: object keys the remote recently
//! did not have, with their expiry).
//!
//! Owns those two files and nothing else. Must not talk to the remote, and must never fail a
//! build: many kache processes read and write these files at once, so writes are a temporary
//! file plus rename (readers see old or new, never torn), a lost update is accepted, and
//! anything unreadable or malformed reads as "closed" / "empty".

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BREAKER_FILE: &str = "remote-breaker";
const BREAKER_MAGIC: &str = "kache-breaker 1";
const MISSES_FILE: &str = "remote-misses";
const MISSES_MAGIC: &str = "kache-misses 1";
/// Beyond this the soonest-expiring misses are dropped: the file is re-read and rewritten on
/// every insert, so it must stay small.
const MAX_MISSES: usize = 4096;
/// A larger file is not ours (or is damaged); reading it would only cost time.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Skips the remote for `cooldown` after `threshold` consecutive failures. After the
/// cool-down the next call is let through as a probe: success closes the breaker, another
/// failure opens it again at once (the failure count is still at the threshold).
#[derive(Debug, Clone)]
pub struct Breaker {
    path: PathBuf,
    threshold: u32,
    cooldown: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BreakerState {
    failures: u32,
    open_until_ms: u64,
}

impl Breaker {
    pub fn new(cache_dir: &Path, threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            path: cache_dir.join(BREAKER_FILE),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Whether calls should skip the remote now.
    pub fn is_open(&self) -> bool {
        self.is_open_at(SystemTime::now())
    }

    pub(crate) fn is_open_at(&self, now: SystemTime) -> bool {
        let state = self.read();
        let now = millis(now);
        // An expiry further away than one cool-down means the clock went backwards since it
        // was written; trusting it could disable the remote for a long time.
        now < state.open_until_ms && state.open_until_ms - now <= duration_ms(self.cooldown)
    }

    /// The remote answered: forget past failures.
    pub(crate) fn record_success(&self) {
        // Removing is one syscall and needs no read; the usual case (no file) costs a failed
        // unlink only.
        let _ = fs::remove_file(&self.path);
    }

    /// The remote failed; returns whether the breaker is now open.
    pub(crate) fn record_failure(&self) -> bool {
        self.record_failure_at(SystemTime::now())
    }

    pub(crate) fn record_failure_at(&self, now: SystemTime) -> bool {
        let mut state = self.read();
        state.failures = state.failures.saturating_add(1);
        let open = state.failures >= self.threshold;
        if open {
            state.open_until_ms = millis(now).saturating_add(duration_ms(self.cooldown));
        }
        let text = format!(
            "{BREAKER_MAGIC}\n{} {}\n",
            state.failures, state.open_until_ms
        );
        let _ = write_atomic(&self.path, text.as_bytes());
        open
    }

    fn read(&self) -> BreakerState {
        read_small(&self.path)
            .and_then(|text| parse_breaker(&text))
            .unwrap_or_default()
    }
}

fn parse_breaker(text: &str) -> Option<BreakerState> {
    let mut lines = text.lines();
    if lines.next()? != BREAKER_MAGIC {
        return None;
    }
    let mut fields = lines.next()?.split(' ');
    let failures = fields.next()?.parse().ok()?;
    let open_until_ms = fields.next()?.parse().ok()?;
    if fields.next().is_some() || lines.next().is_some() || !text.ends_with('\n') {
        return None;
    }
    Some(BreakerState {
        failures,
        open_until_ms,
    })
}

/// Remembers definite remote misses for `ttl`, so one build does not ask the remote twice
/// for an object it does not have. A zero `ttl` disables it.
#[derive(Debug, Clone)]
pub struct MissCache {
    path: PathBuf,
    ttl: Duration,
}

impl MissCache {
    pub fn new(cache_dir: &Path, ttl: Duration) -> Self {
        MissCache {
            path: cache_dir.join(MISSES_FILE),
            ttl,
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.contains_at(key, SystemTime::now())
    }

    pub(crate) fn contains_at(&self, key: &str, now: SystemTime) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let now = millis(now);
        let ttl = duration_ms(self.ttl);
        self.read()
            .iter()
            .any(|(expiry, k)| k == key && now < *expiry && expiry - now <= ttl)
    }

    pub(crate) fn insert(&self, key: &str) {
        self.insert_at(key, SystemTime::now());
    }

    pub(crate) fn insert_at(&self, key: &str, now: SystemTime) {
        // Keys are stored one per line after a space; anything that could break that framing
        // is simply not remembered.
        if self.ttl.is_zero() || key.is_empty() || key.len() > 1024 {
            return;
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return;
        }
        let now = millis(now);
        let ttl = duration_ms(self.ttl);
        let mut entries: Vec<(u64, String)> = self
            .read()
            .into_iter()
            .filter(|(expiry, k)| k != key && now < *expiry && expiry - now <= ttl)
            .collect();
        entries.push((now.saturating_add(ttl), key.to_string()));
        if entries.len() > MAX_MISSES {
            entries.sort_by_key(|e| std::cmp::Reverse(e.0));
            entries.truncate(MAX_MISSES);
        }
        let mut text = String::with_capacity(entries.len() * 80 + 64);
        text.push_str(MISSES_MAGIC);
        text.push('\n');
        for (expiry, k) in &entries {
            text.push_str(&format!("{expiry} {k}\n"));
        }
        text.push_str(&format!("end {}\n", entries.len()));
        let _ = write_atomic(&self.path, text.as_bytes());
    }

    fn read(&self) -> Vec<(u64, String)> {
        read_small(&self.path)
            .and_then(|text| parse_misses(&text))
            .unwrap_or_default()
    }
}

/// The trailer with the entry count makes a file cut short by anything other than our
/// atomic rename (a full disk, a copy) read as empty rather than as a shorter list.
fn parse_misses(text: &str) -> Option<Vec<(u64, String)>> {
    let mut lines = text.lines();
    if lines.next()? != MISSES_MAGIC || !text.ends_with('\n') {
        return None;
    }
    let mut entries = Vec::new();
    for line in lines {
        let (first, rest) = line.split_once(' ')?;
        if first == "end" {
            let count: usize = rest.parse().ok()?;
            return (count == entries.len()).then_some(entries);
        }
        let expiry = first.parse().ok()?;
        if rest.is_empty() || rest.contains(' ') {
            return None;
        }
        entries.push((expiry, rest.to_string()));
    }
    None
}

fn read_small(path: &Path) -> Option<String> {
    // Not through a symlink planted in the cache dir (`is_file` is false for a link).
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    fs::read_to_string(path).ok()
}

/// Temporary file in the same directory, then rename: concurrent readers see the old or the
/// new content, never a mix. The name is unique per process and call so writers never share
/// a temporary file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}.{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    ));
    // A fresh file, never one reached through a symlink.
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(duration_ms).unwrap_or(0)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn opens_after_threshold_and_closes_after_cooldown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Breaker::new(dir.path(), 3, Duration::from_secs(60));
        assert!(!b.is_open_at(t(0)));
        assert!(!b.record_failure_at(t(0)));
        assert!(!b.record_failure_at(t(1)));
        assert!(!b.is_open_at(t(1)));
        assert!(b.record_failure_at(t(2)));
        assert!(b.is_open_at(t(3)));
        assert!(b.is_open_at(t(61)));
        assert!(!b.is_open_at(t(62)), "cool-down over: let a probe through");
        // The probe fails: open again at once.
        assert!(b.record_failure_at(t(62)));
        assert!(b.is_open_at(t(63)));
        b.record_success();
        assert!(!b.is_open_at(t(63)));
        assert!(!b.record_failure_at(t(64)), "success reset the count");
    }

    #[test]
    fn clock_going_backwards_does_not_keep_it_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Breaker::new(dir.path(), 1, Duration::from_secs(60));
        assert!(b.record_failure_at(t(10_000)));
        assert!(!b.is_open_at(t(0)));
    }

    #[test]
    fn corrupt_breaker_reads_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Breaker::new(dir.path(), 1, Duration::from_secs(60));
        let path = dir.path().join(BREAKER_FILE);
        let far = millis(t(30));
        for junk in [
            String::new(),
            "garbage".to_string(),
            format!("{BREAKER_MAGIC}\n1 {far}"),
            format!("{BREAKER_MAGIC}\n1 {far} 3\n"),
            format!("{BREAKER_MAGIC}\nx {far}\n"),
            format!("kache-breaker 2\n1 {far}\n"),
        ] {
            fs::write(&path, &junk).expect("write");
            assert!(!b.is_open_at(t(0)), "{junk:?}");
        }
        fs::write(&path, vec![0xffu8; 64]).expect("write");
        assert!(!b.is_open_at(t(0)));
        fs::write(&path, format!("{BREAKER_MAGIC}\n1 {far}\n")).expect("write");
        assert!(b.is_open_at(t(0)), "the well-formed file is understood");
        // A directory where the file should be: still closed, and failures do not panic.
        fs::remove_file(&path).expect("rm");
        fs::create_dir(&path).expect("mkdir");
        assert!(!b.is_open_at(t(0)));
        assert!(b.record_failure_at(t(0)));
    }

    #[test]
    fn miss_cache_expires_and_survives_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = MissCache::new(dir.path(), Duration::from_secs(600));
        assert!(!m.contains_at("v1/entries/ab/ab.tar.zst", t(0)));
        m.insert_at("v1/entries/ab/ab.tar.zst", t(0));
        m.insert_at("v1/entries/cd/cd.tar.zst", t(1));
        assert!(m.contains_at("v1/entries/ab/ab.tar.zst", t(599)));
        assert!(m.contains_at("v1/entries/cd/cd.tar.zst", t(599)));
        assert!(!m.contains_at("v1/entries/ab/ab.tar.zst", t(600)));
        assert!(!m.contains_at("v1/entries/ab/ab.tar.zst", t(0) - Duration::from_secs(3600)));
        // Expired entries are dropped on the next write.
        m.insert_at("x", t(700));
        let text = fs::read_to_string(dir.path().join(MISSES_FILE)).expect("read");
        assert!(!text.contains("ab.tar.zst"), "{text}");
        // Keys that would break the line format are not stored.
        m.insert_at("a b", t(700));
        m.insert_at("a\nb", t(700));
        assert!(!m.contains_at("a b", t(701)));
        // Truncation (count mismatch) or junk reads as empty.
        let path = dir.path().join(MISSES_FILE);
        let full = fs::read_to_string(&path).expect("read");
        fs::write(&path, &full[..full.len() - 8]).expect("write");
        assert!(!m.contains_at("x", t(701)));
        fs::write(
            &path,
            format!("{MISSES_MAGIC}\n{} x\nend 2\n", millis(t(900))),
        )
        .expect("w");
        assert!(!m.contains_at("x", t(701)));
        fs::write(
            &path,
            format!("{MISSES_MAGIC}\n{} x\nend 1\n", millis(t(900))),
        )
        .expect("w");
        assert!(m.contains_at("x", t(701)));
        fs::write(&path, "\0\0\0").expect("write");
        assert!(!m.contains_at("x", t(701)));
        m.insert_at("y", t(701));
        assert!(m.contains_at("y", t(702)));
    }

    #[test]
    fn miss_cache_is_bounded_and_ttl_zero_disables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = MissCache::new(dir.path(), Duration::from_secs(600));
        let expiry = millis(t(600));
        let mut text = format!("{MISSES_MAGIC}\n");
        for i in 0..MAX_MISSES + 10 {
            text.push_str(&format!("{expiry} k{i}\n"));
        }
        text.push_str(&format!("end {}\n", MAX_MISSES + 10));
        fs::write(dir.path().join(MISSES_FILE), text).expect("write");
        assert_eq!(m.read().len(), MAX_MISSES + 10);
        m.insert_at("newest", t(1));
        assert_eq!(m.read().len(), MAX_MISSES);
        assert!(m.contains_at("newest", t(2)));
        let off = MissCache::new(dir.path(), Duration::ZERO);
        off.insert_at("z", t(0));
        assert!(!off.contains_at("z", t(0)));
    }

    #[test]
    fn concurrent_writers_never_leave_a_corrupt_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let m = MissCache::new(&path, Duration::from_secs(600));
                    let b = Breaker::new(&path, 2, Duration::from_secs(60));
                    for i in 0..50 {
                        m.insert(&format!("t{n}-{i}"));
                        let _ = m.contains("t0-0");
                        b.record_failure();
                        let _ = b.is_open();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let m = MissCache::new(&path, Duration::from_secs(600));
        let text = fs::read_to_string(path.join(MISSES_FILE)).expect("read");
        assert!(parse_misses(&text).is_some(), "{text}");
        assert!(!m.read().is_empty());
        let text = fs::read_to_string(path.join(BREAKER_FILE)).expect("read");
        assert!(parse_breaker(&text).is_some(), "{text}");
        let leftovers = fs::read_dir(&path)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(leftovers, 0);
    }
}
