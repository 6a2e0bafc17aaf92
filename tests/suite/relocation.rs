//! Relocation: the same workspace at another path, and under a symlinked directory, is
//! served entirely from the cache (no compiler run) except the one unit that embeds its
//! path, `fixture-where` (`env!("CARGO_MANIFEST_DIR")`), which must print its *own* path.

use std::path::Path;

use crate::support::*;

fn canonical(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
        .display()
        .to_string()
}

#[test]
fn checkouts_at_other_paths_and_under_a_symlink_are_all_hits() {
    let Warmed {
        sandbox,
        ws: first,
        mut log,
        cold,
    } = Sandbox::warmed("first/ws");
    let expected = first.reference_output(&[], APP_BIN);
    let every_unit = units(&cold);

    // --- another path, at another depth ------------------------------------------------
    let second = sandbox.checkout("second/a/much/deeper/path/ws");
    second.kache_build(&[]);
    let relocated = compiles(&log.take());
    assert_no_faults(&relocated, "second checkout");
    assert_eq!(
        units(&relocated),
        every_unit,
        "second checkout\n{}",
        describe(&relocated)
    );
    assert_all_local_hits(&path_independent(&relocated), "second checkout");
    assert_eq!(second.run_bin(APP_BIN, &[]), expected, "second checkout");
    assert_eq!(
        second.run_bin(WHERE_BIN, &[]),
        second.app_manifest_dir(),
        "fixture-where prints the second checkout's path"
    );

    // --- under a symlinked directory, entered like a shell does (cd link/ws) -------------
    // cargo takes its working directory from getcwd(), which resolves the symlink: the
    // build sees the real path, and fixture-where prints that.
    let third = sandbox.checkout_via_symlink("third/real/dir/ws", "third/link");
    let shell_pwd = third.root().display().to_string();
    third
        .kache(&["build", "--locked"])
        .env("PWD", &shell_pwd)
        .run();
    let symlinked = compiles(&log.take());
    assert_no_faults(&symlinked, "checkout under a symlink");
    assert_eq!(
        units(&symlinked),
        every_unit,
        "checkout under a symlink\n{}",
        describe(&symlinked)
    );
    assert_all_local_hits(&path_independent(&symlinked), "checkout under a symlink");
    assert_eq!(
        third.run_bin(APP_BIN, &[]),
        expected,
        "checkout under a symlink"
    );
    assert_eq!(
        third.run_bin(WHERE_BIN, &[]),
        canonical(&third.path("crates/app")),
        "fixture-where prints its own (real) path"
    );

    // --- back in the first checkout: its own fixture-where is still stored -------------
    first.rm_target();
    first.kache_build(&[]);
    let again = compiles(&log.take());
    assert_all_local_hits(&again, "first checkout again");
    assert_eq!(
        first.run_bin(WHERE_BIN, &[]),
        first.app_manifest_dir(),
        "fixture-where prints the first checkout's path, not the last one built"
    );
}

#[test]
fn a_workspace_named_through_a_symlink_is_all_hits() {
    let Warmed {
        sandbox,
        ws: first,
        mut log,
        cold,
    } = Sandbox::warmed("first/ws");
    let expected = first.reference_output(&[], APP_BIN);
    let every_unit = units(&cold);

    // cargo keeps the spelling of --manifest-path: CARGO_MANIFEST_DIR, --out-dir and the
    // target dir all go through the symlink, while rustc's working directory resolves it.
    let linked = sandbox.checkout_via_symlink("real/dir/ws", "link");
    let manifest = linked.path("Cargo.toml");
    let manifest = manifest.to_str().expect("UTF-8 path");
    linked
        .kache(&["build", "--locked", "--manifest-path", manifest])
        .current_dir(sandbox.root())
        .run();
    let events = compiles(&log.take());
    assert_no_faults(&events, "workspace named through a symlink");
    assert_eq!(units(&events), every_unit, "{}", describe(&events));
    assert_eq!(linked.run_bin(APP_BIN, &[]), expected);
    assert_eq!(
        linked.run_bin(WHERE_BIN, &[]),
        linked.app_manifest_dir(),
        "fixture-where prints the path cargo was given"
    );
    // The C archive's debug info names the physical directory the C compiler ran in, which
    // the fixture's -ffile-prefix-map (given the symlinked spelling) does not cover: its
    // bytes really differ, so fixture_core and what links it must compile again. Everything
    // else must come from the cache.
    let links_the_c_archive = [
        "fixture_core",
        "fixture_app",
        "fixture_plugin",
        "fixture_where",
    ];
    let shared: Vec<_> = events
        .iter()
        .filter(|e| !links_the_c_archive.contains(&crate_name(e)))
        .cloned()
        .collect();
    assert!(shared.len() >= 5, "{}", describe(&events));
    assert_all_local_hits(&shared, "workspace named through a symlink");
}
