//! `kache verify [--repair]` on a store filled by a real build of the fixture workspace:
//! a healthy store is clean (exit 0); every kind of damage is found and counted (corrupt,
//! truncated and missing blobs, orphan blobs, wrong reference counts, the entries they
//! damage, entries whose stored description does not parse), with exit code 1; `--repair`
//! removes what is broken and rebuilds the counts (exit 0), and the next build stores the
//! dropped entries again.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::support::*;

fn name_of(blob: &Path) -> String {
    blob.file_name()
        .and_then(|n| n.to_str())
        .expect("blob names are UTF-8")
        .to_string()
}

/// The entries whose outputs use one of `blobs`.
fn entries_using(db: &rusqlite::Connection, blobs: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for blob in blobs {
        let mut stmt = db
            .prepare("SELECT DISTINCT entry FROM outputs WHERE blob = ?1")
            .expect("query outputs");
        let rows = stmt
            .query_map([blob], |r| r.get::<_, String>(0))
            .expect("query outputs");
        for row in rows {
            out.insert(row.expect("an entry key"));
        }
    }
    out
}

/// `kache verify` (text): its exit code and the count on the line starting with each label.
fn text_counts(cache_dir: &Path, labels: &[&str]) -> (Option<i32>, Vec<usize>) {
    let output = kache_command(cache_dir, &["verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let counts = labels
        .iter()
        .map(|label| {
            stdout
                .lines()
                .find(|line| line.trim_start().starts_with(label))
                .and_then(|line| line.split_whitespace().last())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("`kache verify` prints a count of {label}:\n{stdout}"))
        })
        .collect();
    (output.status.code(), counts)
}

const LABELS: &[&str] = &[
    "corrupt blobs",
    "missing blobs",
    "orphan blobs",
    "wrong reference counts",
    "damaged entries",
];

#[test]
fn verify_finds_every_problem_and_repair_fixes_them() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let cache = sandbox.cache_dir();
    let expected = ws.reference_output(&[], APP_BIN);

    // --- a healthy store ----------------------------------------------------------------
    let healthy = verify(cache, false);
    healthy.assert_clean("a freshly filled store");
    assert_eq!(
        healthy.report["blobs_checked"].as_u64(),
        Some(blob_files(cache).len() as u64),
        "verify re-hashes every blob\n{:#}",
        healthy.report
    );
    assert_eq!(
        text_counts(cache, LABELS),
        (Some(0), vec![0; LABELS.len()]),
        "the text report of a healthy store"
    );

    // --- every kind of damage -------------------------------------------------------------
    let flipped = blob_of(cache, &ws.deps_file("libfixture_core-", ".rlib"));
    let truncated = blob_of(cache, &ws.deps_file("libfixture_macros-", ".so"));
    let deleted = blob_of(cache, &ws.deps_file("libitoa-", ".rlib"));
    let miscounted = blob_of(cache, &ws.deps_file("libcc-", ".rlib"));
    let unparsable_crate = "shlex";
    ws.rm_target();

    let mut f = fs::File::options()
        .write(true)
        .open(&flipped)
        .expect("open a blob");
    f.seek(SeekFrom::Start(100)).expect("seek");
    f.write_all(b"\x00\xff\x00\xff").expect("flip bytes");
    drop(f);
    let len = fs::metadata(&truncated).expect("stat").len();
    fs::File::options()
        .write(true)
        .open(&truncated)
        .and_then(|f| f.set_len(len - 1))
        .expect("truncate a blob");
    fs::remove_file(&deleted).expect("delete a blob");
    let orphan_name = "ab".repeat(32);
    let orphan = blob_path(cache, &orphan_name);
    fs::create_dir_all(orphan.parent().expect("a fan dir")).expect("create the fan dir");
    fs::write(&orphan, b"nobody's blob").expect("plant an orphan blob");

    let db = rusqlite::Connection::open(cache.join("index.db")).expect("open the index");
    db.execute(
        "UPDATE blobs SET refs = refs + 6 WHERE hash = ?1",
        [name_of(&miscounted)],
    )
    .expect("miscount a blob's references");
    let unparsable: String = db
        .query_row(
            "SELECT key FROM entries WHERE crate_name = ?1",
            [unparsable_crate],
            |r| r.get(0),
        )
        .expect("shlex has an entry");
    db.execute(
        "UPDATE entries SET body = x'7b7b7b' WHERE key = ?1",
        [&unparsable],
    )
    .expect("damage an entry's description");
    let bad_blobs = [name_of(&flipped), name_of(&truncated), name_of(&deleted)];
    let mut damaged = entries_using(
        &db,
        &bad_blobs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    damaged.insert(unparsable.clone());
    drop(db);

    let found = verify(cache, false);
    assert!(!found.clean, "problems mean exit code 1");
    assert_eq!(
        found.list("corrupt_blobs"),
        BTreeSet::from([name_of(&flipped), name_of(&truncated)]),
        "corrupt blobs (flipped bytes, truncated)"
    );
    assert_eq!(
        found.list("missing_blobs"),
        BTreeSet::from([name_of(&deleted)])
    );
    assert_eq!(found.list("orphan_blobs"), BTreeSet::from([orphan_name]));
    assert_eq!(found.wrong_refcounts(), 1, "{:#}", found.report);
    assert_eq!(
        found.list("damaged_entries"),
        damaged,
        "damaged entries: those using a bad blob, and the unparsable one"
    );
    assert_eq!(
        text_counts(cache, LABELS),
        (Some(1), vec![2, 1, 1, 1, damaged.len()]),
        "the text report counts each problem"
    );
    assert!(
        orphan.exists() && flipped.exists(),
        "verify without --repair changes nothing"
    );

    // --- repair ---------------------------------------------------------------------------
    let repaired = verify(cache, true);
    assert!(
        repaired.clean && repaired.report["repaired"] == true,
        "verify --repair leaves no problem (exit 0)\n{:#}\n{}",
        repaired.report,
        repaired.stderr
    );
    verify(cache, false).assert_clean("after repair");
    for gone in [&flipped, &truncated, &orphan] {
        assert!(!gone.exists(), "{} was removed", gone.display());
    }
    let db = rusqlite::Connection::open(cache.join("index.db")).expect("open the index");
    let (refs, uses): (i64, i64) = db
        .query_row(
            "SELECT refs, (SELECT COUNT(*) FROM outputs WHERE blob = hash) FROM blobs
             WHERE hash = ?1",
            [name_of(&miscounted)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the miscounted blob is still indexed");
    assert_eq!(refs, uses, "the reference count was rebuilt");
    let left: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE key = ?1",
            [&unparsable],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "the unparsable entry was removed");
    drop(db);

    // --- the next build stores the dropped entries again ----------------------------------
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_no_faults(&events, "the build after repair");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
    for name in ["fixture_core", "fixture_macros", "itoa", unparsable_crate] {
        let theirs = of_crate(&events, name);
        assert!(
            !theirs.is_empty() && theirs.iter().all(|e| e.result == Outcome::Miss),
            "{name}'s entry was dropped, so it compiles and is stored again\n{}",
            describe(&events)
        );
    }
    assert!(
        of_crate(&events, "cc")
            .iter()
            .all(|e| e.result == Outcome::LocalHit),
        "the miscounted blob's entry survived the repair\n{}",
        describe(&events)
    );
    ws.rm_target();
    ws.kache_build(&[]);
    assert_all_local_hits(&compiles(&log.take()), "stored again after repair");
    verify(cache, false).assert_clean("after the rebuild");
}
