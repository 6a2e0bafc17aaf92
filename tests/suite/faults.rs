//! Faults: whatever happens to the store, the build succeeds with the right outputs and at
//! most one warning line per rustc invocation; what is damaged is dropped (self-healing), and
//! the next build stores again.
//!
//! - damaged blobs (bytes flipped, truncated, deleted);
//! - a damaged index (garbage header, truncated to nothing, pages overwritten, deleted) and a
//!   damaged entry or manifest row;
//! - a read-only cache dir (a read-only bind mount: root cannot write either);
//! - a full disk (a small tmpfs as the cache dir);
//! - `kill -9` at every stage of a store and in the middle of a restore (through the test-only
//!   hook `KACHE_TEST_CRASH_AT`, see src/testhook.rs): the killed build fails, as any build
//!   whose compiler is killed does; the next one succeeds and the store stays consistent;
//! - locks held by a process that was killed: they die with it, nothing waits on them;
//! - what kache leaves in `target/` (hardlinks to blobs, a restore killed halfway): cargo
//!   without kache, `KACHE_DISABLE=1` and a cache dir that is a file rebuild over it, and a
//!   write into a linked output in place is caught and healed;
//! - tampered index rows (an output outside `target/`, a climbing dep-info name, setuid
//!   modes): nothing is written outside `target/`, no restored file is setuid.
//!
//! Mounting needs root: those tests are `#[ignore = "needs root: …"]`, so a plain `cargo test`
//! lists them as ignored, and `e2e/run-tests` runs them (`--include-ignored`) as root, where a
//! mount that fails is a failure. The crash tests need the hook, compiled in only with
//! `--features fault-injection` (which `e2e/run-tests` passes); without it they are ignored.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

/// Units of one build of the fixture (every crate but the two probes).
const UNITS: usize = 10;

/// Panics unless kache printed at most one line per rustc invocation, each a warning.
fn assert_warnings_are_one_liners(output: &Output, invocations: usize, context: &str) {
    let lines = kache_lines(output);
    assert!(
        lines.len() <= invocations
            && lines
                .iter()
                .all(|line| line.trim_start().starts_with("kache: warning:")),
        "{context}: at most one `kache: warning:` line per invocation ({invocations}), got:\n{}",
        lines.join("\n")
    );
}

/// The events with a `warning`.
fn warned(events: &[BuildEvent]) -> Vec<BuildEvent> {
    events
        .iter()
        .filter(|e| e.warning.is_some())
        .cloned()
        .collect()
}

/// `rm -rf target`, a kache build that must succeed, and its events (probes left out).
fn rebuild(ws: &Workspace, log: &mut EventCursor) -> (Output, Vec<BuildEvent>) {
    ws.rm_target();
    let output = ws.kache_build(&[]);
    (output, compiles(&log.take()))
}

/// A store that has stopped warning: `rm -rf target` and build until a build is all hits
/// (at most twice: the first may store what the fault lost).
fn assert_heals(ws: &Workspace, log: &mut EventCursor, expected: &str, context: &str) {
    let (_, events) = rebuild(ws, log);
    assert_no_faults(&events, &format!("{context}: the build after"));
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "{context}: the build after"
    );
    let (_, events) = rebuild(ws, log);
    assert_all_local_hits(&events, &format!("{context}: stored again, so"));
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "{context}: the hits");
}

// --- damaged blobs ------------------------------------------------------------------------

#[test]
fn damaged_blobs_are_dropped_and_stored_again() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    let cache = sandbox.cache_dir();
    let core = blob_of(cache, &ws.deps_file("libfixture_core-", ".rlib"));
    let itoa = blob_of(cache, &ws.deps_file("libitoa-", ".rlib"));
    let macros = blob_of(cache, &ws.deps_file("libfixture_macros-", ".so"));
    ws.rm_target();

    // Flip bytes in place (size kept), truncate, delete.
    let mut file = fs::File::options()
        .read(true)
        .write(true)
        .open(&core)
        .expect("open core's blob");
    let len = file.metadata().expect("stat").len();
    file.seek(SeekFrom::Start(len / 2)).expect("seek");
    file.write_all(b"\xde\xad\xbe\xef").expect("flip bytes");
    drop(file);
    let len = fs::metadata(&itoa).expect("stat").len();
    fs::File::options()
        .write(true)
        .open(&itoa)
        .and_then(|f| f.set_len(len / 3))
        .expect("truncate itoa's blob");
    fs::remove_file(&macros).expect("delete the proc-macro's blob");

    let output = ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "output with damaged blobs"
    );
    let damaged = ["fixture_core", "itoa", "fixture_macros"];
    for name in damaged {
        let theirs = of_crate(&events, name);
        assert!(
            theirs.len() == 1 && theirs[0].result == Outcome::Miss && theirs[0].warning.is_some(),
            "{name}'s damaged entry is dropped with a warning and the crate compiled\n{}",
            describe(&events)
        );
    }
    assert_eq!(
        warned(&events).len(),
        damaged.len(),
        "only the damaged units warn\n{}",
        describe(&events)
    );
    assert_warnings_are_one_liners(&output, damaged.len(), "damaged blobs");
    verify(cache, false).assert_clean("after the damaged entries were replaced");
    assert_heals(&ws, &mut log, &expected, "damaged blobs");
}

// --- the index ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum IndexDamage {
    GarbageHeader,
    TruncatedToNothing,
    PagesOverwritten,
    Deleted,
}

#[test]
fn a_damaged_index_is_replaced() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);
    let db = sandbox.cache_dir().join("index.db");

    for damage in [
        IndexDamage::GarbageHeader,
        IndexDamage::TruncatedToNothing,
        IndexDamage::PagesOverwritten,
        IndexDamage::Deleted,
    ] {
        let context = format!("index {damage:?}");
        checkpoint(&db);
        damage_index(&db, damage);
        let (output, events) = rebuild(&ws, &mut log);
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "{context}");
        assert_warnings_are_one_liners(&output, UNITS, &context);
        assert!(
            events.len() <= UNITS,
            "{context}: one event per unit at most\n{}",
            describe(&events)
        );
        assert_heals(&ws, &mut log, &expected, &context);
        verify(sandbox.cache_dir(), false).assert_consistent(&context);
    }
}

/// Moves everything from the WAL into index.db, as a clean shutdown would.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db).expect("open the index");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint the index");
}

fn damage_index(db: &Path, damage: IndexDamage) {
    match damage {
        IndexDamage::GarbageHeader => {
            let mut f = fs::File::options().write(true).open(db).expect("open");
            f.write_all(&[0xa5; 100]).expect("overwrite the header");
        }
        IndexDamage::TruncatedToNothing => {
            fs::File::options()
                .write(true)
                .open(db)
                .and_then(|f| f.set_len(0))
                .expect("truncate the index");
        }
        IndexDamage::PagesOverwritten => {
            // The header (page 1) intact, every other page garbage: the index opens, and
            // fails on the first query.
            let len = fs::metadata(db).expect("stat").len();
            let page = 4096;
            assert!(
                len >= 4 * page,
                "the index has pages to damage ({len} bytes)"
            );
            let mut f = fs::File::options().write(true).open(db).expect("open");
            f.seek(SeekFrom::Start(page)).expect("seek");
            f.write_all(&vec![0xa5; (len - page) as usize])
                .expect("overwrite the pages");
        }
        IndexDamage::Deleted => fs::remove_file(db).expect("delete the index"),
    }
}

#[test]
fn damaged_entry_and_manifest_rows_are_dropped() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    let conn =
        rusqlite::Connection::open(sandbox.cache_dir().join("index.db")).expect("open the index");
    let changed = conn
        .execute(
            "UPDATE entries SET body = x'7b7b7b' WHERE crate_name = 'fixture_core'",
            [],
        )
        .expect("damage core's entry");
    assert_eq!(changed, 1, "fixture_core has one entry");
    let changed = conn
        .execute(
            "UPDATE manifests SET inputs = x'5b5b5b' WHERE entry IN
               (SELECT key FROM entries WHERE crate_name = 'itoa')",
            [],
        )
        .expect("damage itoa's manifest");
    assert_eq!(changed, 1, "itoa has one manifest");
    drop(conn);

    let (output, events) = rebuild(&ws, &mut log);
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "output with damaged rows"
    );
    for name in ["fixture_core", "itoa"] {
        let theirs = of_crate(&events, name);
        assert!(
            theirs.len() == 1 && theirs[0].result == Outcome::Miss,
            "{name} is compiled: its damaged row cannot be used\n{}",
            describe(&events)
        );
    }
    assert_warnings_are_one_liners(&output, 2, "damaged rows");
    assert_heals(&ws, &mut log, &expected, "damaged rows");
    verify(sandbox.cache_dir(), false).assert_clean("damaged rows");
}

/// Index rows are outside data: an entry whose output is named by an absolute path outside
/// `target/` (setuid), one whose dep-info name climbs out of the out dir, and entries whose
/// recorded modes are setuid, setgid, sticky and world-writable. The first two are dropped
/// and compiled, nothing is written outside `target/`, and no restored file keeps a mode
/// bit beyond 0o755.
#[test]
fn tampered_index_rows_write_nothing_outside_target_and_no_setuid_file() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    // `ws/target/debug/deps/../../../../x` is `<sandbox>/x`.
    let outside = sandbox.root().join("evil-setuid");
    let climbed = sandbox.root().join("x");
    let conn =
        rusqlite::Connection::open(sandbox.cache_dir().join("index.db")).expect("open the index");
    let rows: Vec<(String, String, Vec<u8>)> = conn
        .prepare("SELECT key, crate_name, body FROM entries")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("read the entries");
    for (key, crate_name, body) in rows {
        let mut entry: Value = serde_json::from_slice(&body).expect("entry JSON");
        let attack = match crate_name.as_str() {
            "fixture_core" => EntryAttack::OutputAt(&outside),
            "fixture_macros" => EntryAttack::DepInfoNamed("../../../../x"),
            _ => EntryAttack::EveryModePrivileged,
        };
        attack_entry(&mut entry, &attack);
        let body = serde_json::to_vec(&entry).expect("JSON");
        conn.execute(
            "UPDATE entries SET body = ?1 WHERE key = ?2",
            rusqlite::params![body, key],
        )
        .expect("tamper with the entry");
    }
    drop(conn);

    let (output, events) = rebuild(&ws, &mut log);
    assert!(!outside.exists(), "an output was written outside target/");
    assert!(!climbed.exists(), "a dep-info file climbed out of target/");
    assert_eq!(
        privileged_files(sandbox.root()),
        Vec::<String>::new(),
        "restored files must not be setuid/setgid/sticky or group/other-writable"
    );
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "output with tampered rows"
    );
    for name in ["fixture_core", "fixture_macros"] {
        let theirs = of_crate(&events, name);
        assert!(
            theirs.len() == 1 && theirs[0].result == Outcome::Miss,
            "{name} is compiled: its tampered row cannot be used\n{}",
            describe(&events)
        );
    }
    assert!(
        count(&events, Outcome::LocalHit) > 0,
        "entries with masked modes are still used\n{}",
        describe(&events)
    );
    assert_warnings_are_one_liners(&output, 2, "tampered rows");
    assert_heals(&ws, &mut log, &expected, "tampered rows");
    verify(sandbox.cache_dir(), false).assert_clean("tampered rows");
}

// --- what kache leaves in target/ ----------------------------------------------------------

/// Issue 9's scenario: whatever kache leaves in `target/` (outputs hardlinked to blobs by a
/// store or by a restore, or a restore killed halfway), cargo and rustc must be able to
/// rebuild over it without kache, and through every fallback of kache. rustc refuses to
/// replace an output it cannot write (`output file … is not writeable`), even as root.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash hook: cargo test --features fault-injection"
)]
fn cargo_without_kache_rebuilds_over_what_kache_left_in_target() {
    let sandbox = Sandbox::new();
    let ws = sandbox.checkout("ws");
    let not_a_dir = sandbox.root().join("kache-dir-is-a-file");
    fs::write(&not_a_dir, "not a directory").expect("write");
    let not_a_dir = not_a_dir.to_str().expect("UTF-8 path");
    let base = ws.read("crates/core/data/greeting.txt");

    // Each case: what kache does to `target/`, then (after a source edit) the fallback build.
    type Step<'a> = &'a dyn Fn(&Workspace) -> Output;
    let kache_build: Step = &|ws| ws.kache_build(&[]);
    let killed_restore: Step = &|ws| {
        let killed = ws
            .kache(&["build", "--locked"])
            .env("KACHE_TEST_CRASH_AT", "mid_restore:fixture_core")
            .run_unchecked();
        assert!(!killed.status.success(), "the killed build fails");
        killed
    };
    let plain_cargo: Step = &|ws| ws.plain(&["build", "--locked"]).run_unchecked();
    let disabled: Step = &|ws| {
        ws.kache(&["build", "--locked"])
            .env("KACHE_DISABLE", "1")
            .run_unchecked()
    };
    let cache_dir_is_a_file: Step = &|ws| {
        ws.kache(&["build", "--locked"])
            .env("KACHE_DIR", not_a_dir)
            .run_unchecked()
    };
    let cases: [(&str, Step, Step); 4] = [
        (
            "a cold kache build, then plain cargo",
            kache_build,
            plain_cargo,
        ),
        (
            "a warm kache build, then KACHE_DISABLE=1",
            kache_build,
            disabled,
        ),
        (
            "a warm kache build, then KACHE_DIR a regular file",
            kache_build,
            cache_dir_is_a_file,
        ),
        (
            "a restore killed halfway, then plain cargo",
            killed_restore,
            plain_cargo,
        ),
    ];
    for (i, (case, with_kache, fallback)) in cases.into_iter().enumerate() {
        ws.rm_target();
        ws.write("crates/core/data/greeting.txt", &base);
        with_kache(&ws);
        let edited = format!("edited for case {i}");
        ws.write("crates/core/data/greeting.txt", &edited);
        let output = fallback(&ws);
        assert!(output.status.success(), "{case}: {}", stderr_of(&output));
        let printed = ws.run_bin(APP_BIN, &[]);
        assert!(
            printed.contains(&edited),
            "{case}: the rebuilt binary shows the edit: {printed}"
        );
    }
}

/// A hardlinked output is writable (so cargo without kache can rebuild over it), so someone
/// may write into it in place, and so into its blob. A restore must catch that (an append, a
/// same-size overwrite), drop the entry, compile and store again: never restore the damage.
#[test]
fn writes_into_a_hardlinked_output_are_caught_and_healed() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);
    type Damage = fn(&Path);
    let append: Damage = |path| {
        let mut f = fs::File::options().append(true).open(path).expect("open");
        f.write_all(b"appended through a link").expect("append");
    };
    let overwrite: Damage = |path| {
        let mut f = fs::File::options().write(true).open(path).expect("open");
        let len = f.metadata().expect("stat").len();
        f.seek(SeekFrom::Start(len / 2)).expect("seek");
        f.write_all(b"OVERWRITTEN").expect("overwrite");
        assert_eq!(f.metadata().expect("stat").len(), len, "same size");
    };
    for (how, damage) in [("append", append), ("same-size overwrite", overwrite)] {
        // Restored from the store (the first round: linked when stored).
        let (_, events) = rebuild(&ws, &mut log);
        assert_all_local_hits(&events, how);
        let rlib = ws.deps_file("libfixture_core-", ".rlib");
        let blob = blob_of(sandbox.cache_dir(), &rlib);
        if inode(&rlib) != inode(&blob) {
            // A reflinked output shares no inode with its blob: nothing can write through.
            println!("{how}: restored by reflink here; no shared inode to write through");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&rlib).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o7777,
            0o644,
            "{how}: a linked output is owner-writable"
        );
        damage(&rlib);

        let (output, events) = rebuild(&ws, &mut log);
        let core = of_crate(&events, "fixture_core");
        assert!(
            core.len() == 1 && core[0].result == Outcome::Miss && core[0].warning.is_some(),
            "{how}: the damaged blob is caught, dropped and compiled\n{}",
            describe(&events)
        );
        assert_warnings_are_one_liners(&output, 1, how);
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "{how}");
        verify(sandbox.cache_dir(), false).assert_clean(how);
        assert_heals(&ws, &mut log, &expected, how);
    }
}

// --- a read-only cache dir ----------------------------------------------------------------

#[test]
#[ignore = "needs root: bind-mounts the cache dir read-only"]
fn a_read_only_cache_dir_never_breaks_the_build() {
    let Warmed {
        sandbox, mut ws, ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);
    let empty = sandbox.root().join("empty-cache");
    fs::create_dir_all(&empty).expect("create an empty cache dir");

    {
        let warm_ro = Mount::read_only_bind(sandbox.cache_dir())
            .unwrap_or_else(|e| panic!("cannot bind-mount a read-only cache dir: {e}"));
        let empty_ro = Mount::read_only_bind(&empty).expect("bind-mount the empty cache dir");
        for (dir, context) in [
            (warm_ro.path(), "read-only warm cache"),
            (empty_ro.path(), "read-only empty cache"),
        ] {
            ws.set_cache_dir(dir);
            ws.rm_target();
            let output = ws.kache_build(&[]);
            assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "{context}");
            assert_warnings_are_one_liners(&output, UNITS, context);
        }
        assert!(
            fs::read_dir(&empty)
                .expect("read the empty dir")
                .next()
                .is_none(),
            "nothing was written to the read-only empty cache dir"
        );
    }

    // Writable again: both stores work, the empty one fills.
    for (dir, context) in [
        (sandbox.cache_dir(), "warm cache, writable again"),
        (empty.as_path(), "empty cache, writable again"),
    ] {
        ws.set_cache_dir(dir);
        let mut log = EventCursor::new(dir);
        assert_heals(&ws, &mut log, &expected, context);
        verify(dir, false).assert_clean(context);
    }
}

// --- a full disk --------------------------------------------------------------------------

#[test]
#[ignore = "needs root: mounts a tmpfs as the cache dir"]
fn a_full_disk_never_breaks_the_build_nor_the_store() {
    let sandbox = Sandbox::new();
    let ws = sandbox.checkout("ws");
    let expected = ws.reference_output(&[], APP_BIN);
    // About a third of what one build stores: some outputs fit, the big ones do not.
    let small = Mount::tmpfs(sandbox.cache_dir(), "8m")
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs as the cache dir: {e}"));
    let mut log = sandbox.cursor();
    let output = ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "full disk");
    assert_warnings_are_one_liners(&output, UNITS, "full disk");
    assert!(
        !kache_lines(&output).is_empty() || events.iter().any(|e| e.warning.is_some()),
        "premise: the disk did fill up (no warning at all)\n{}",
        describe(&events)
    );
    let full = verify(sandbox.cache_dir(), false);
    full.assert_consistent("after filling the disk");

    small.remount("size=512m").expect("grow the tmpfs");
    assert_heals(&ws, &mut log, &expected, "disk no longer full");
    let repaired = verify(sandbox.cache_dir(), true);
    repaired.assert_consistent("verify --repair after the full disk");
    assert!(
        repaired.clean,
        "verify --repair leaves nothing: {:#}",
        repaired.report
    );
    verify(sandbox.cache_dir(), false).assert_clean("after repair");
    drop(small);
}

// --- kill -9 --------------------------------------------------------------------------------

/// A build whose kache kills itself (SIGKILL) at `stage` while handling `crate_name`.
fn crashing_build(ws: &Workspace, stage: &str, crate_name: &str) {
    let crashed = ws
        .kache(&["build", "--locked"])
        .env("KACHE_TEST_CRASH_AT", &format!("{stage}:{crate_name}"))
        .run_unchecked();
    let stderr = stderr_of(&crashed);
    assert!(
        !crashed.status.success() && (stderr.contains("SIGKILL") || stderr.contains("signal: 9")),
        "a build whose kache is killed at {stage} fails, naming the signal\n{stderr}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash hook: cargo test --features fault-injection"
)]
fn killed_at_every_stage_of_a_store_then_the_next_build_succeeds() {
    let Warmed {
        sandbox,
        mut ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");

    let stages = [
        "after_compile",
        "after_blob",
        "before_commit",
        "in_commit",
        "after_commit",
    ];
    for (i, stage) in stages.iter().enumerate() {
        // A greeting not seen before, so fixture-core is compiled and stored.
        ws.set_env("FIXTURE_GREETING", &format!("greeting number {i}"));
        let expected = ws.reference_output(&[], APP_BIN);
        crashing_build(&ws, stage, "fixture_core");
        log.take();

        // The next build, in the same target dir, as a developer would run it.
        ws.kache_build(&[]);
        let events = compiles(&log.take());
        assert_no_faults(&events, &format!("the build after a kill at {stage}"));
        let core = of_crate(&events, "fixture_core");
        let want = if *stage == "after_commit" {
            Outcome::LocalHit
        } else {
            Outcome::Miss
        };
        assert!(
            core.len() == 1 && core[0].result == want,
            "after a kill at {stage}, fixture_core is a {want:?}\n{}",
            describe(&events)
        );
        assert_eq!(
            ws.run_bin(APP_BIN, &[]),
            expected,
            "after a kill at {stage}"
        );
        verify(sandbox.cache_dir(), false).assert_consistent(&format!("after a kill at {stage}"));
        assert_heals(&ws, &mut log, &expected, &format!("kill at {stage}"));
    }
    let repaired = verify(sandbox.cache_dir(), true);
    assert!(repaired.clean, "verify --repair: {:#}", repaired.report);
    verify(sandbox.cache_dir(), false).assert_clean("after the kills and a repair");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash hook: cargo test --features fault-injection"
)]
fn locks_held_by_a_killed_process_do_not_block_anyone() {
    let Warmed {
        sandbox,
        ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    // Killed in the middle of a restore, holding the store's shared maintenance lock.
    ws.rm_target();
    crashing_build(&ws, "mid_restore", "fixture_core");
    log.take();
    // gc and verify take that lock exclusively: they must not wait for the dead holder.
    for args in [&["gc"][..], &["verify"][..]] {
        let output = run_with_deadline(sandbox.cache_dir(), args, Duration::from_secs(120));
        assert!(
            output.status.success(),
            "kache {args:?} after a kill mid-restore\n{}",
            stderr_of(&output)
        );
    }
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_no_faults(&events, "the build after a kill mid-restore");
    assert_all_local_hits(&events, "the build after a kill mid-restore");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);

    // Killed inside the index's write transaction: the next writers do not wait for it
    // (a lock they waited on would show as a timeout warning).
    let mut ws = ws;
    ws.set_env(
        "FIXTURE_GREETING",
        "a greeting for the kill in the transaction",
    );
    let expected = ws.reference_output(&[], APP_BIN);
    crashing_build(&ws, "in_commit", "fixture_core");
    log.take();
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_no_faults(&events, "the build after a kill inside a transaction");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
    verify(sandbox.cache_dir(), false).assert_consistent("after the kills");
}

/// `kache <args>`, killed (and the test failed) if it has not finished by `deadline`: a
/// guard against hanging forever on a lock, not a measure of speed.
fn run_with_deadline(cache_dir: &Path, args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(kache_bin_under_test())
        .args(args)
        .env("KACHE_DIR", cache_dir)
        .env("KACHE_CONFIG", "/dev/null")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kache");
    let started = Instant::now();
    while child.try_wait().expect("poll kache").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("kache {args:?} still waits after {deadline:?}: a lock outlived its holder");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect kache's output")
}

// --- the suite itself ---------------------------------------------------------------------

/// Issue 9 item 13: a test that needs root used to print `SKIPPED` and pass, so a run without
/// root looked green. Every test that mounts or chowns must be ignored with a reason (visible
/// as ignored), none may print `SKIPPED`, and `e2e/run-tests` must run the ignored ones as root.
#[test]
fn root_needing_tests_are_ignored_not_silently_skipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Spelled with a `#` removed at run time, so this test's own text does not match.
    let needs_root = ["Mount#::", "mounted#(", "chown#(", "plant#("].map(|p| p.replace('#', ""));
    let test_attr = ["#[", "test]"].concat();
    for entry in fs::read_dir(root.join("tests/suite"))
        .expect("read tests/suite/")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read a test file");
        let skip_marker = ["SKIPPED", ":"].concat();
        assert!(
            !text.contains(&skip_marker),
            "{}: a test that cannot run must be ignored, not print {skip_marker}",
            path.display()
        );
        // Each test: from its `#[test]` to the next one. Helpers that follow a test count as
        // part of it, which errs on the side of asking for the attribute.
        for chunk in text.split(&test_attr).skip(1) {
            let body_start = chunk.find("fn ").unwrap_or(0);
            let (attrs, body) = chunk.split_at(body_start);
            let name = body.split(['(', '<']).next().unwrap_or(body);
            if needs_root.iter().any(|n| body.contains(n.as_str())) {
                assert!(
                    attrs.contains("#[ignore = \"needs root: "),
                    "{}: `{name}` needs root, so it must be #[ignore = \"needs root: <why>\"]",
                    path.display()
                );
            }
        }
    }
    let runner = fs::read_to_string(root.join("e2e/run-tests")).expect("read e2e/run-tests");
    assert!(
        runner.contains("--include-ignored") && runner.contains("fault-injection"),
        "e2e/run-tests runs the ignored tests as root, with the crash hook"
    );
}
