//! End to end: `RUSTC_WRAPPER=kache cargo build` on the fixture workspace
//! (e2e/fixtures/ws): cold, warm, from a second checkout, no-op, and after three kinds
//! of change. Every output is compared with a build of the same sources without kache.

use crate::support::*;
use std::collections::BTreeSet;

/// The fixture's crates that depend on fixture-core, so cargo rebuilds them with it.
const CORE_AND_DEPENDENTS: &[&str] = &[
    "fixture_core",
    "fixture_app",
    "fixture_where",
    "fixture_plugin",
];

/// Crate names every full build of the fixture compiles (registry crates included).
const EVERY_CRATE: &[&str] = &[
    "build_script_build",
    "cc",
    "find_msvc_tools",
    "fixture_app",
    "fixture_core",
    "fixture_macros",
    "fixture_plugin",
    "fixture_where",
    "itoa",
    "shlex",
];

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

#[test]
fn cold_warm_relocated_noop_and_invalidated_builds() {
    let sandbox = Sandbox::new();
    let mut first = sandbox.checkout("first/ws");
    let mut log = sandbox.cursor();

    // What the app prints when built without kache.
    let expected = first.reference_output(&[], APP_BIN);

    // --- cold: everything compiles, nothing is found -------------------------------
    first.kache_build(&[]);
    let cold = compiles(&log.take());
    assert_no_faults(&cold, "cold build");
    assert_all(&cold, Outcome::Miss, "cold build");
    assert_eq!(count(&cold, Outcome::LocalHit), 0);
    assert_eq!(
        crates(&cold),
        names(EVERY_CRATE),
        "cold build: the units compiled\n{}",
        describe(&cold)
    );
    let cold_units = units(&cold);
    assert_eq!(
        cold_units.len(),
        cold.len(),
        "cold build: a unit was compiled twice\n{}",
        describe(&cold)
    );
    assert_eq!(first.run_bin(APP_BIN, &[]), expected, "cold build output");
    assert_eq!(first.run_bin(WHERE_BIN, &[]), first.app_manifest_dir());

    // --- rm -rf target; warm: every unit comes from the cache ------------------------
    first.rm_target();
    first.kache_build(&[]);
    let warm = compiles(&log.take());
    assert_no_faults(&warm, "warm build");
    assert_all_local_hits(&warm, "warm build");
    assert_eq!(
        units(&warm),
        cold_units,
        "warm build: the units that missed cold must now all hit\n{}",
        describe(&warm)
    );
    assert_eq!(first.run_bin(APP_BIN, &[]), expected, "warm build output");
    assert_eq!(first.run_bin(WHERE_BIN, &[]), first.app_manifest_dir());

    // --- a second checkout at another path, fresh target: still all hits ------------
    // Except fixture-where, whose output embeds the checkout's path
    // (env!("CARGO_MANIFEST_DIR")): it may miss, but must print its own new path.
    let second = sandbox.checkout("second/somewhere/else/ws");
    second.kache_build(&[]);
    let relocated = compiles(&log.take());
    assert_no_faults(&relocated, "second checkout");
    assert_eq!(
        units(&relocated),
        cold_units,
        "second checkout: the units compiled\n{}",
        describe(&relocated)
    );
    assert_all_local_hits(&path_independent(&relocated), "second checkout");
    assert_eq!(
        second.run_bin(APP_BIN, &[]),
        expected,
        "second checkout output"
    );
    assert_eq!(
        second.run_bin(WHERE_BIN, &[]),
        second.app_manifest_dir(),
        "fixture-where must print the second checkout's path, not the first's"
    );

    // --- a no-op build runs no rustc at all, so it logs nothing ---------------------
    assert_up_to_date(&second, &mut log, "no-op build");

    // --- a source edit in crates/app: only app's units recompile --------------------
    first.edit("crates/app/src/main.rs", "\"edit-0\"", "\"edit-1\"");
    let expected = first.reference_output(&[], APP_BIN);
    assert!(expected.contains("mark=edit-1"), "reference: {expected}");
    first.kache_build(&[]);
    let edited = compiles(&log.take());
    assert_no_faults(&edited, "after editing crates/app/src/main.rs");
    assert_all(
        &edited,
        Outcome::Miss,
        "after editing crates/app/src/main.rs",
    );
    assert_eq!(
        crates(&edited),
        names(&["fixture_app"]),
        "after editing crates/app/src/main.rs only fixture-app recompiles\n{}",
        describe(&edited)
    );
    assert_eq!(
        first.run_bin(APP_BIN, &[]),
        expected,
        "output after the edit"
    );

    // --- FIXTURE_GREETING changes: the crates whose dep-info names it miss ----------
    first.set_env("FIXTURE_GREETING", "bonjour from the e2e test");
    let expected = first.reference_output(&[], APP_BIN);
    assert!(expected.contains("bonjour"), "reference: {expected}");
    first.kache_build(&[]);
    let greeted = compiles(&log.take());
    assert_no_faults(&greeted, "after changing FIXTURE_GREETING");
    let readers = first.crates_with_env_dep("FIXTURE_GREETING");
    assert!(
        readers.contains("fixture_core"),
        "fixture-core's dep-info must name FIXTURE_GREETING; readers: {readers:?}"
    );
    let missed = crates_with(&greeted, Outcome::Miss);
    assert!(
        readers.is_subset(&missed),
        "after changing FIXTURE_GREETING every crate whose dep-info names it ({readers:?}) \
         must miss\n{}",
        describe(&greeted)
    );
    assert!(
        crates(&greeted).is_subset(&names(CORE_AND_DEPENDENTS)),
        "after changing FIXTURE_GREETING only fixture-core and its dependents may rebuild\n{}",
        describe(&greeted)
    );
    assert!(
        greeted
            .iter()
            .all(|event| matches!(event.result, Outcome::Miss | Outcome::LocalHit)),
        "after changing FIXTURE_GREETING\n{}",
        describe(&greeted)
    );
    assert_eq!(
        first.run_bin(APP_BIN, &[]),
        expected,
        "output after changing FIXTURE_GREETING"
    );

    // --- feature `loud` on fixture-core: core and its dependents miss ---------------
    // (cargo also recompiles core's build script: features are cfgs there too.)
    let loud = ["--features", "fixture-core/loud"];
    let expected = first.reference_output(&loud, APP_BIN);
    assert!(expected.contains("feature=loud"), "reference: {expected}");
    first.kache_build(&loud);
    let louder = compiles(&log.take());
    assert_no_faults(&louder, "with feature loud");
    assert_all(&louder, Outcome::Miss, "with feature loud");
    let mut allowed = names(CORE_AND_DEPENDENTS);
    allowed.insert("build_script_build".to_string());
    let missed = crates(&louder);
    assert!(
        names(CORE_AND_DEPENDENTS).is_subset(&missed) && missed.is_subset(&allowed),
        "with feature loud exactly fixture-core (and its build script) and its dependents \
         recompile\n{}",
        describe(&louder)
    );
    assert_eq!(
        first.run_bin(APP_BIN, &[]),
        expected,
        "output with feature loud"
    );
}
