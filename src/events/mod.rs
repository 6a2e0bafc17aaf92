//! The event log: one `BuildEvent` JSON line per invocation in `<cache dir>/events.jsonl`.
//!
//! Appends are a single `write` on an `O_APPEND` descriptor, so lines from parallel rustc
//! processes never interleave; a line torn by a crash gets a newline before the next one.
//! Past [`ROTATE_BYTES`] the file is renamed to `events.jsonl.1` (replacing the older
//! generation) by one writer at a time, which keeps the newest lines and loses none that a
//! concurrent writer is appending. Readers skip lines they cannot parse. This module owns the
//! schema; it must not compute any of the figures it records. [`tail`] follows the log live;
//! [`summary`] folds events into the figures `stats` and `monitor` show.

pub(crate) mod summary;
pub(crate) mod tail;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::fsutil;

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or is removed; adding a field does not bump it.
/// 2: events of C/C++ compiles (`compiler: "c"`) name the source file in `crate_name` and
/// its language in `crate_types`.
pub(crate) const SCHEMA: u32 = 2;
/// Size past which the log is rotated.
pub(crate) const ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// The crate type of a build-script run's event (and of its entry), which stats counts apart.
pub(crate) const RUN_CRATE_TYPE: &str = "build-script-run";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    LocalHit,
    RemoteHit,
    Miss,
    Error,
    #[default]
    Passthrough,
}

impl Outcome {
    pub(crate) fn is_hit(self) -> bool {
        matches!(self, Outcome::LocalHit | Outcome::RemoteHit)
    }
}

/// Which compiler an invocation wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Compiler {
    /// rustc or clippy-driver (every event before schema 2).
    #[default]
    Rust,
    /// A C/C++ driver (gcc, clang, cc, ...).
    C,
    /// A path to a program that is neither: run unchanged.
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildEvent {
    pub schema: u32,
    /// Unix time in milliseconds when the invocation started.
    pub ts: u64,
    pub crate_name: Option<String>,
    pub crate_version: Option<String>,
    pub crate_types: Vec<String>,
    pub result: Outcome,
    pub elapsed_ms: f64,
    /// rustc's time on a miss; on a hit, the stored compile cost (the time saved).
    pub compile_time_ms: f64,
    pub size: u64,
    pub cache_key: Option<String>,
    pub key_ms: f64,
    pub lookup_ms: f64,
    pub restore_ms: f64,
    pub store_ms: f64,
    pub compiler_runs: u32,
    pub reflinked_bytes: u64,
    pub hardlinked_bytes: u64,
    pub copied_bytes: u64,
    pub downloaded_bytes: u64,
    pub passthrough_reason: Option<String>,
    pub warning: Option<String>,
    pub exit_code: i32,
    pub compiler: Compiler,
}

/// Where the log lives in a cache directory.
pub(crate) fn log_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("events.jsonl")
}

fn rotated_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("events.jsonl.1")
}

fn rotation_lock_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("events.lock")
}

/// Appends one event as one line; rotates first when the log is past its limit.
///
/// The line is one `write` on an `O_APPEND` descriptor. When the file does not end with a
/// newline (a line torn by a crash), the line starts with one, so the torn line cannot
/// swallow it. Nothing under the cache dir is followed if it is a symlink.
pub(crate) fn append(cache_dir: &Path, event: &BuildEvent) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    let path = log_path(cache_dir);
    let mut file = open_log(cache_dir, &path)?;
    if file.metadata()?.len() > ROTATE_BYTES {
        rotate(cache_dir, &file)?;
        file = open_log(cache_dir, &path)?;
    }
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len > 0 && file.read_at(&mut last, len - 1).is_ok_and(|n| n == 1) && last[0] != b'\n' {
        line.insert(0, b'\n');
    }
    file.write_all(&line)
}

fn open_log(cache_dir: &Path, path: &Path) -> io::Result<File> {
    fsutil::open_below(
        cache_dir,
        path,
        OpenOptions::new().read(true).create(true).append(true),
    )
}

/// Renames the log to `events.jsonl.1` if `file` (which this writer found too big) is still
/// the log. Rotations are serialised by an flock on `events.lock`, and a writer that finds the
/// log already replaced by a newer one leaves it alone: renaming that fresh log over `.1`
/// would throw away the generation just rotated. Writers that opened the old file before the
/// rename go on appending to it under its new name, so no line is lost.
fn rotate(cache_dir: &Path, file: &File) -> io::Result<()> {
    let lock = fsutil::open_below(
        cache_dir,
        &rotation_lock_path(cache_dir),
        OpenOptions::new().create(true).truncate(false).write(true),
    )?;
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mine = file.metadata()?;
    let still_the_log = std::fs::symlink_metadata(log_path(cache_dir))
        .is_ok_and(|now| now.ino() == mine.ino() && now.dev() == mine.dev());
    if still_the_log {
        std::fs::rename(log_path(cache_dir), rotated_path(cache_dir))?;
    }
    Ok(())
}

/// Reads every parsable event, oldest first (the rotated generation, then the current log).
pub(crate) fn read_all(cache_dir: &Path) -> io::Result<Vec<BuildEvent>> {
    let mut events = Vec::new();
    for path in [rotated_path(cache_dir), log_path(cache_dir)] {
        match fsutil::open_below(cache_dir, &path, OpenOptions::new().read(true)) {
            Ok(f) => read_lines(BufReader::new(f), &mut events),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(events)
}

/// Parses event lines, skipping any that are not a `BuildEvent` (torn, foreign, or future).
pub(crate) fn read_lines(reader: impl BufRead, into: &mut Vec<BuildEvent>) {
    for line in reader.split(b'\n').map_while(Result::ok) {
        if let Ok(ev) = serde_json::from_slice::<BuildEvent>(&line)
            && ev.schema != 0
        {
            into.push(ev);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> BuildEvent {
        BuildEvent {
            schema: SCHEMA,
            crate_name: Some(name.into()),
            result: Outcome::Miss,
            ..BuildEvent::default()
        }
    }

    #[test]
    fn append_then_read_skips_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        append(dir.path(), &event("a")).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .and_then(|mut f| f.write_all(b"{not json\n{\"x\":1}\n"))
            .expect("garbage");
        append(dir.path(), &event("b")).expect("append");
        let got = read_all(dir.path()).expect("read");
        let names: Vec<_> = got.iter().filter_map(|e| e.crate_name.clone()).collect();
        assert_eq!(names, vec!["a", "b"]);
        let line = std::fs::read_to_string(log_path(dir.path())).expect("read");
        assert!(line.starts_with("{\"schema\":2,"));
        assert!(line.contains("\"result\":\"miss\""));
    }

    #[test]
    fn rotation_keeps_the_newest_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![b'x'; ROTATE_BYTES as usize + 1];
        std::fs::write(log_path(dir.path()), &big).expect("write");
        append(dir.path(), &event("new")).expect("append");
        let got = read_all(dir.path()).expect("read");
        assert_eq!(got.len(), 1);
        assert!(rotated_path(dir.path()).exists());
        assert!(std::fs::metadata(log_path(dir.path())).expect("meta").len() < 4096);
    }

    /// Fills the log with `n` parsable events, past the rotation limit.
    fn fill_past_the_limit(dir: &Path) -> usize {
        let mut line = serde_json::to_vec(&event("old")).expect("json");
        line.push(b'\n');
        let n = ROTATE_BYTES as usize / line.len() + 1;
        std::fs::write(log_path(dir), line.repeat(n)).expect("write");
        n
    }

    fn count(dir: &Path, name: &str) -> usize {
        read_all(dir)
            .expect("read")
            .iter()
            .filter(|e| e.crate_name.as_deref() == Some(name))
            .count()
    }

    #[test]
    fn a_writer_that_saw_the_old_log_does_not_rotate_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = fill_past_the_limit(dir.path());
        // A writer opened the full log and was delayed before rotating it...
        let slow = open_log(dir.path(), &log_path(dir.path())).expect("open");
        // ...while another rotated it and appended to the fresh log.
        append(dir.path(), &event("new")).expect("append");
        // The delayed rotation must not rename the fresh log over the generation just made.
        rotate(dir.path(), &slow).expect("rotate");
        append(dir.path(), &event("new")).expect("append");
        assert_eq!(
            count(dir.path(), "old"),
            old,
            "the rotated generation is intact"
        );
        assert_eq!(count(dir.path(), "new"), 2);
    }

    #[test]
    fn concurrent_appenders_across_a_rotation_lose_no_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = fill_past_the_limit(dir.path());
        let (threads, each) = (8, 200);
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..each {
                        append(dir.path(), &event("new")).expect("append");
                    }
                });
            }
        });
        assert_eq!(count(dir.path(), "old"), old);
        assert_eq!(count(dir.path(), "new"), threads * each);
    }

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        append(dir.path(), &event("a")).expect("append");
        // A writer killed in the middle of its line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .and_then(|mut f| f.write_all(b"{\"schema\":1,\"crate_na"))
            .expect("torn line");
        append(dir.path(), &event("b")).expect("append");
        append(dir.path(), &event("c")).expect("append");
        let names: Vec<_> = read_all(dir.path())
            .expect("read")
            .iter()
            .filter_map(|e| e.crate_name.clone())
            .collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn a_symlinked_log_is_neither_followed_nor_created_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("theirs.jsonl");
        std::fs::write(&target, b"").expect("write");
        std::os::unix::fs::symlink(&target, log_path(dir.path())).expect("symlink");
        std::os::unix::fs::symlink(outside.path().join("lock"), rotation_lock_path(dir.path()))
            .expect("symlink");
        assert!(append(dir.path(), &event("a")).is_err());
        assert_eq!(
            std::fs::read(&target).expect("read").len(),
            0,
            "not appended to"
        );
        assert!(!outside.path().join("lock").exists());
    }
}
