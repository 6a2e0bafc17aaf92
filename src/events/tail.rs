//! Following the event log as it grows, like `tail -F`: new complete lines are parsed as they
//! arrive, and the follower survives rotation (the file renamed to `.1` and a new one created:
//! the old one is read to its end first) and truncation (the file got shorter than what was
//! read: start again from its beginning; a truncation that is refilled past the old length
//! between two polls looks like growth, which is why callers poll often). Only reads; never
//! writes or rotates.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{BuildEvent, read_lines};

/// Why the follower had to start over on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reopened {
    /// The path now names another file (the log was rotated or replaced).
    Rotated,
    /// The file shrank below what had been read.
    Truncated,
}

/// What one [`LogTail::poll`] found.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub events: Vec<BuildEvent>,
    pub reopened: Option<Reopened>,
}

pub(crate) struct LogTail {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    /// Bytes of the current file consumed so far.
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl LogTail {
    /// Follows `path` from its current end, or from its beginning with `from_start`. The
    /// file need not exist yet.
    pub(crate) fn open(path: &Path, from_start: bool) -> LogTail {
        let mut tail = LogTail {
            path: path.to_owned(),
            file: None,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
        };
        if let Ok(mut f) = File::open(path)
            && let Ok(meta) = f.metadata()
        {
            tail.ino = meta.ino();
            if !from_start && f.seek(SeekFrom::End(0)).is_ok() {
                tail.offset = meta.len();
            }
            tail.file = Some(f);
        }
        tail
    }

    /// Reads what was appended since the last poll. I/O errors are not fatal: the log may be
    /// between a rename and its re-creation, and the next poll tries again.
    pub(crate) fn poll(&mut self) -> Batch {
        let mut batch = Batch::default();
        let mut bytes = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(meta) if self.file.is_some() && meta.ino() != self.ino => {
                // Rotated: finish the old file (writers that opened it before the rename
                // still append there), then start on the new one.
                self.read_more(&mut bytes);
                self.take_lines(&bytes, &mut batch.events);
                bytes.clear();
                self.partial.clear();
                self.reopen();
                batch.reopened = Some(Reopened::Rotated);
            }
            Ok(meta) if self.file.is_some() && meta.len() < self.offset => {
                if let Some(f) = &mut self.file
                    && f.seek(SeekFrom::Start(0)).is_ok()
                {
                    self.offset = 0;
                }
                self.partial.clear();
                batch.reopened = Some(Reopened::Truncated);
            }
            Ok(_) if self.file.is_none() => self.reopen(),
            _ => {}
        }
        self.read_more(&mut bytes);
        self.take_lines(&bytes, &mut batch.events);
        batch
    }

    /// Opens the file now at the path, from its beginning: a file that appears after we
    /// started holds nothing we have seen.
    fn reopen(&mut self) {
        self.offset = 0;
        self.file = File::open(&self.path).ok();
        self.ino = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.ino());
    }

    fn read_more(&mut self, into: &mut Vec<u8>) {
        if let Some(f) = &mut self.file {
            let before = into.len();
            // A read error leaves what was read so far; the next poll goes on from there.
            let _ = f.read_to_end(into);
            self.offset += (into.len() - before) as u64;
        }
    }

    /// Parses the complete lines of `partial + bytes`, keeping an unfinished last line.
    fn take_lines(&mut self, bytes: &[u8], into: &mut Vec<BuildEvent>) {
        self.partial.extend_from_slice(bytes);
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            read_lines(&self.partial[..], into);
            self.partial = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Outcome, SCHEMA, append, log_path};
    use std::io::Write;

    fn event(name: &str) -> BuildEvent {
        BuildEvent {
            schema: SCHEMA,
            crate_name: Some(name.into()),
            result: Outcome::Miss,
            ..BuildEvent::default()
        }
    }

    fn names(b: &Batch) -> Vec<String> {
        b.events
            .iter()
            .filter_map(|e| e.crate_name.clone())
            .collect()
    }

    #[test]
    fn follows_appends_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = log_path(dir.path());
        append(dir.path(), &event("old")).expect("append");
        let mut tail = LogTail::open(&path, false);
        assert!(tail.poll().events.is_empty(), "starts at the end");

        append(dir.path(), &event("a")).expect("append");
        // Half a line: not parsed until its newline arrives.
        let line = serde_json::to_string(&event("b")).expect("json");
        let (head, rest) = line.split_at(10);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(head.as_bytes()).expect("write");
        assert_eq!(names(&tail.poll()), ["a"]);
        f.write_all(rest.as_bytes()).expect("write");
        f.write_all(b"\n").expect("write");
        assert_eq!(names(&tail.poll()), ["b"]);

        // Rotation: a line lands in the old file after the rename, then the new file starts.
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).expect("rename");
        f.write_all(
            format!("{}\n", serde_json::to_string(&event("late")).expect("json")).as_bytes(),
        )
        .expect("write");
        append(dir.path(), &event("c")).expect("append");
        let batch = tail.poll();
        assert_eq!(batch.reopened, Some(Reopened::Rotated));
        assert_eq!(names(&batch), ["late", "c"]);

        // Truncation: the file shrinks; what is written after is read from the start.
        std::fs::write(&path, b"").expect("truncate");
        assert_eq!(tail.poll().reopened, Some(Reopened::Truncated));
        append(dir.path(), &event("d")).expect("append");
        assert_eq!(names(&tail.poll()), ["d"]);
        assert!(tail.poll().events.is_empty());
    }

    #[test]
    fn a_log_that_appears_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = log_path(dir.path());
        let mut tail = LogTail::open(&path, false);
        assert!(tail.poll().events.is_empty());
        append(dir.path(), &event("first")).expect("append");
        append(dir.path(), &event("second")).expect("append");
        assert_eq!(names(&tail.poll()), ["first", "second"]);
    }
}
