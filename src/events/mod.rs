//! The event log: one `BuildEvent` JSON line per invocation in `<cache dir>/events.jsonl`.
//!
//! Appends are a single `write` on an `O_APPEND` descriptor, so lines from parallel rustc
//! processes never interleave. Past [`ROTATE_BYTES`] the file is renamed to `events.jsonl.1`
//! (replacing the older generation), which keeps the newest lines and loses none that a
//! concurrent writer is appending. Readers skip lines they cannot parse. This module owns the
//! schema; it must not compute any of the figures it records. [`tail`] follows the log live.

pub mod tail;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or is removed; adding a field does not bump it.
/// 2: events of C/C++ compiles (`compiler: "c"`) name the source file in `crate_name` and
/// its language in `crate_types`.
pub const SCHEMA: u32 = 2;
/// Size past which the log is rotated.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

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
    pub fn name(self) -> &'static str {
        match self {
            Outcome::LocalHit => "local_hit",
            Outcome::RemoteHit => "remote_hit",
            Outcome::Miss => "miss",
            Outcome::Error => "error",
            Outcome::Passthrough => "passthrough",
        }
    }

    pub fn is_hit(self) -> bool {
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
pub fn log_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("events.jsonl")
}

fn rotated_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("events.jsonl.1")
}

/// Appends one event as one line; rotates first when the log is past its limit.
pub fn append(cache_dir: &Path, event: &BuildEvent) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    let path = log_path(cache_dir);
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    if file.metadata()?.len() > ROTATE_BYTES {
        // Whoever renames first wins; writers still holding the old file append to `.1`.
        let _ = std::fs::rename(&path, rotated_path(cache_dir));
        file = OpenOptions::new().create(true).append(true).open(&path)?;
    }
    file.write_all(&line)
}

/// Reads every parsable event, oldest first (the rotated generation, then the current log).
pub fn read_all(cache_dir: &Path) -> io::Result<Vec<BuildEvent>> {
    let mut events = Vec::new();
    for path in [rotated_path(cache_dir), log_path(cache_dir)] {
        match File::open(&path) {
            Ok(f) => read_lines(BufReader::new(f), &mut events),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(events)
}

/// Parses event lines, skipping any that are not a `BuildEvent` (torn, foreign, or future).
pub fn read_lines(reader: impl BufRead, into: &mut Vec<BuildEvent>) {
    for line in reader.split(b'\n').map_while(Result::ok) {
        if let Ok(ev) = serde_json::from_slice::<BuildEvent>(&line)
            && ev.schema != 0
        {
            into.push(ev);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
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
}
