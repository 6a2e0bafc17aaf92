//! `kache stats --zero`: zero the counters, as `sccache -z` does.
//!
//! The event log is the record of what happened and `explain` and `gc` read it, so it is
//! kept: zeroing writes the moment (`stats-zeroed-ms` in the cache dir, atomically) and
//! `stats` counts only later events. Must not touch the log or the store.

use std::path::Path;

use crate::events;
use crate::fsutil::{read_below, write_atomic};

const MARKER: &str = "stats-zeroed-ms";

/// Records now as the moment the counters start from.
pub(crate) fn zero(dir: &Path) -> std::io::Result<()> {
    write_atomic(
        dir,
        &dir.join(MARKER),
        events::now_ms().to_string().as_bytes(),
    )
}

/// Unix milliseconds of the last `stats --zero`, if any (an unreadable marker counts as none:
/// the figures are then the whole log's, as before zeroing).
pub(crate) fn zeroed_at(dir: &Path) -> Option<u64> {
    let bytes = read_below(dir, &dir.join(MARKER)).ok()?;
    String::from_utf8(bytes).ok()?.trim().parse().ok()
}
