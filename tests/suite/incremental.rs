//! Incremental dev builds: cargo's defaults (`CARGO_INCREMENTAL` unset) compile the workspace
//! members with `-C incremental`, and kache caches those units (`KACHE_INCREMENTAL=cache`,
//! the default) without taking incremental reuse away from the crate being edited.
//!
//! What must hold (docs/how-it-works.md, "Incremental compiles", says why it does): every
//! member is a hit after an edit is reverted, after `rm -rf target` and in a second checkout;
//! a hit never creates or touches the session dir; the next edit compiles incrementally,
//! reusing the session rustc left; an entry stored by a compile that started from a stale
//! session behaves as a fresh compile's; and nothing of a session ends up in an output.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// The workspace members: the units cargo compiles with `-C incremental`.
const MEMBERS: &[&str] = &[
    "fixture_core",
    "fixture_macros",
    "fixture_app",
    "fixture_where",
    "fixture_plugin",
];

const APP_MAIN: &str = "crates/app/src/main.rs";

fn incremental_checkout(sandbox: &Sandbox, sub_path: &str) -> Workspace {
    let mut ws = sandbox.checkout(sub_path);
    ws.use_cargo_defaults();
    ws
}

/// `target/debug/incremental/<crate>-<hash>/s-…` session dirs of one crate.
fn sessions(ws: &Workspace, crate_name: &str) -> Vec<PathBuf> {
    let root = ws.target_dir().join("debug/incremental");
    let prefix = format!("{crate_name}-");
    let mut found = Vec::new();
    for unit in fs::read_dir(&root).into_iter().flatten().flatten() {
        if !unit.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        for session in fs::read_dir(unit.path()).into_iter().flatten().flatten() {
            if session.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(session.path());
            }
        }
    }
    found
}

/// The newest session dir of a crate (rustc keeps the previous one around for a while).
fn newest_session(ws: &Workspace, crate_name: &str) -> PathBuf {
    sessions(ws, crate_name)
        .into_iter()
        .max_by_key(|s| fs::metadata(s).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no session dir for {crate_name}"))
}

/// Object files (rustc's codegen work products) in a session dir, by name, with their inodes.
fn work_products(session: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(session)
        .unwrap_or_else(|e| panic!("read {}: {e}", session.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".o"))
        .map(|e| {
            let ino = e.metadata().expect("stat a work product").ino();
            (e.file_name().to_string_lossy().into_owned(), ino)
        })
        .collect()
}

fn members_with(events: &[BuildEvent], wanted: Outcome) -> Vec<String> {
    let mut names: Vec<String> = crates_with(events, wanted)
        .into_iter()
        .filter(|c| MEMBERS.contains(&c.as_str()))
        .collect();
    names.sort();
    names
}

/// No output in `target/debug` names a session dir: nothing of a session reaches a hit.
fn assert_no_session_path_in_outputs(ws: &Workspace, context: &str) {
    let needle = b"debug/incremental";
    let mut files = Vec::new();
    for dir in ["debug", "debug/deps"] {
        for entry in fs::read_dir(ws.target_dir().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
    }
    assert!(!files.is_empty(), "{context}: no outputs to look at");
    for file in files {
        let bytes = fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{context}: {} names an incremental session dir",
            file.display()
        );
    }
}

#[test]
fn edit_revert_clean_target_and_second_checkout_are_hits_with_cargo_defaults() {
    let sandbox = Sandbox::new();
    let ws = incremental_checkout(&sandbox, "first/ws");
    let mut log = sandbox.cursor();
    let base = ws.reference_output(&[], APP_BIN);

    ws.kache_build(&[]);
    let all = log.take();
    let cold = compiles(&all);
    assert_no_faults(&cold, "cold build");
    assert!(
        all.iter()
            .all(|e| e.passthrough_reason.as_deref() != Some("incremental")),
        "no member passes through as incremental\n{}",
        describe(&all)
    );
    assert_eq!(
        members_with(&cold, Outcome::Miss).len(),
        MEMBERS.len(),
        "{}",
        describe(&cold)
    );
    assert!(
        !sessions(&ws, "fixture_core").is_empty(),
        "rustc ran with -C incremental"
    );
    assert_eq!(ws.run_bin(APP_BIN, &[]), base, "cold build");

    // --- edit → build → revert → build ----------------------------------------------------
    ws.edit(APP_MAIN, "\"edit-0\"", "\"edit-1\"");
    ws.kache_build(&[]);
    let edited = compiles(&log.take());
    assert_no_faults(&edited, "edit");
    assert_eq!(
        crates_with(&edited, Outcome::Miss).len(),
        1,
        "{}",
        describe(&edited)
    );
    assert!(
        !of_crate(&edited, "fixture_app").is_empty(),
        "{}",
        describe(&edited)
    );
    let out = ws.run_bin(APP_BIN, &[]);
    assert!(
        out.contains("mark=edit-1") && out != base,
        "edit shows: {out}"
    );

    ws.edit(APP_MAIN, "\"edit-1\"", "\"edit-0\"");
    ws.kache_build(&[]);
    let reverted = compiles(&log.take());
    assert!(!reverted.is_empty(), "cargo rebuilt the reverted crate");
    assert_all_local_hits(&reverted, "revert");
    assert_eq!(ws.run_bin(APP_BIN, &[]), base, "revert");

    // --- rm -rf target --------------------------------------------------------------------
    ws.rm_target();
    ws.kache_build(&[]);
    let warm = compiles(&log.take());
    assert_eq!(units(&warm), units(&cold), "{}", describe(&warm));
    assert_all_local_hits(&warm, "rm -rf target");
    assert_eq!(ws.run_bin(APP_BIN, &[]), base, "rm -rf target");
    assert_eq!(ws.run_bin(WHERE_BIN, &[]), ws.app_manifest_dir());
    for member in MEMBERS {
        assert!(
            sessions(&ws, member).is_empty(),
            "a hit creates no session dir for {member}"
        );
    }
    assert_no_session_path_in_outputs(&ws, "rm -rf target");

    // --- a second checkout (another worktree) ---------------------------------------------
    let second = incremental_checkout(&sandbox, "second/deeper/ws");
    second.kache_build(&[]);
    let relocated = compiles(&log.take());
    assert_eq!(units(&relocated), units(&cold), "{}", describe(&relocated));
    assert_all_local_hits(&path_independent(&relocated), "second checkout");
    assert_eq!(second.run_bin(APP_BIN, &[]), base, "second checkout");
    assert_eq!(second.run_bin(WHERE_BIN, &[]), second.app_manifest_dir());
    assert_no_session_path_in_outputs(&second, "second checkout");

    // --- KACHE_INCREMENTAL=pass keeps the old behaviour, and explain says why -------------
    ws.edit(APP_MAIN, "\"edit-0\"", "\"edit-9\"");
    ws.kache(&["build", "--locked"])
        .env("KACHE_INCREMENTAL", "pass")
        .run();
    let passed = log.take();
    assert!(
        of_crate(&passed, "fixture_app")
            .iter()
            .all(|e| e.result == Outcome::Passthrough
                && e.passthrough_reason.as_deref() == Some("incremental")),
        "{}",
        describe(&passed)
    );
    let explain = kache_command(ws.cache_dir(), &["explain", "fixture_app"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains("not cached (incremental)") && text.contains("KACHE_INCREMENTAL"),
        "explain names the setting:\n{text}"
    );
    verify(ws.cache_dir(), false).assert_clean("after the incremental builds");
}

#[test]
fn an_edit_after_a_hit_compiles_incrementally_and_right() {
    let sandbox = Sandbox::new();
    let ws = incremental_checkout(&sandbox, "edit/ws");
    let mut log = sandbox.cursor();
    ws.kache_build(&[]);
    assert_no_faults(&compiles(&log.take()), "cold build");
    ws.rm_target();
    ws.kache_build(&[]);
    assert_all_local_hits(&compiles(&log.take()), "rm -rf target");
    assert!(
        sessions(&ws, "fixture_app").is_empty(),
        "a hit creates no session"
    );

    // The first edit after the hit: rustc starts a session (there was none to reuse).
    ws.edit(APP_MAIN, "\"edit-0\"", "\"edit-1\"");
    ws.kache_build(&[]);
    let first = compiles(&log.take());
    assert_no_faults(&first, "first edit");
    assert!(
        of_crate(&first, "fixture_app")
            .iter()
            .all(|e| e.result == Outcome::Miss),
        "{}",
        describe(&first)
    );
    let session = newest_session(&ws, "fixture_app");
    let before = work_products(&session);
    assert!(
        !before.is_empty(),
        "rustc kept codegen work products in {}",
        session.display()
    );
    assert_eq!(ws.run_bin(APP_BIN, &[]), ws.reference_output(&[], APP_BIN));

    // The next edit reuses that session: rustc hardlinks the work products it can reuse
    // into the new session dir, so they keep their inodes. (A comment at the end of the file
    // moves no span, so every codegen unit is reusable.)
    let text = ws.read(APP_MAIN);
    ws.write(
        APP_MAIN,
        &format!("{text}// an edit that changes no code\n"),
    );
    ws.kache_build(&[]);
    let second = compiles(&log.take());
    assert_no_faults(&second, "second edit");
    assert!(
        of_crate(&second, "fixture_app")
            .iter()
            .all(|e| e.result == Outcome::Miss),
        "{}",
        describe(&second)
    );
    let next = newest_session(&ws, "fixture_app");
    assert_ne!(next, session, "rustc started a new session");
    let after = work_products(&next);
    let reused = before
        .iter()
        .filter(|(name, ino)| after.get(*name) == Some(ino))
        .count();
    assert!(
        reused > 0,
        "the compile reused the session's work products\nbefore {before:?}\nafter {after:?}"
    );
    let out = ws.run_bin(APP_BIN, &[]);
    assert!(out.contains("mark=edit-1"), "{out}");

    // Back to the base: a hit, next to a session that holds the edited state.
    ws.write(APP_MAIN, &text.replace("\"edit-1\"", "\"edit-0\""));
    ws.kache_build(&[]);
    assert_all_local_hits(&compiles(&log.take()), "revert");
    assert!(ws.run_bin(APP_BIN, &[]).contains("mark=edit-0"));

    // An edit compiled from that stale session: right, and its stored entry serves a fresh
    // checkout (no session at all) with the same behaviour.
    ws.edit(APP_MAIN, "\"edit-0\"", "\"edit-3\"");
    ws.kache_build(&[]);
    let stale = compiles(&log.take());
    assert_no_faults(&stale, "edit from a stale session");
    assert!(
        of_crate(&stale, "fixture_app")
            .iter()
            .all(|e| e.result == Outcome::Miss),
        "{}",
        describe(&stale)
    );
    let expected = ws.reference_output(&[], APP_BIN);
    assert!(expected.contains("mark=edit-3"), "{expected}");
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "edit from a stale session"
    );

    let fresh = incremental_checkout(&sandbox, "fresh/ws");
    fresh.edit(APP_MAIN, "\"edit-0\"", "\"edit-3\"");
    fresh.kache_build(&[]);
    let served = compiles(&log.take());
    assert!(
        of_crate(&served, "fixture_app")
            .iter()
            .all(|e| e.result == Outcome::LocalHit),
        "{}",
        describe(&served)
    );
    assert_eq!(
        fresh.run_bin(APP_BIN, &[]),
        expected,
        "served to a fresh checkout"
    );

    // rustc links work products between the session dir and the outputs; none of that may
    // write through into a stored blob.
    assert_blobs_intact(ws.cache_dir(), "after the incremental edits");
    verify(ws.cache_dir(), false).assert_clean("after the incremental edits");
}
