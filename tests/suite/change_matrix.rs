//! The change matrix: no change to any input ever gets a stale artifact from the cache.
//!
//! One checkout of the fixture workspace (e2e/fixtures/ws) and one cache for the whole
//! table. For each case: put the checkout back to the base sources, apply the change,
//! delete `target/`, build through a cache that already holds every earlier variant, run
//! the binaries, and compare `fixture-app`'s output with a build of the same sources, env
//! and arguments without kache. Each case also says how the output must differ from the
//! base (so a change that did not take effect cannot pass unnoticed) and which crates kache
//! must have compiled. The revert at the end must be all hits with no compiler run.
//!
//! The reference builds share one target dir (`target-ref`), so plain cargo rebuilds only
//! what the case changed; where a case hides a change from cargo's mtime-based check, it
//! makes the change visible before the reference build.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// What a case's kache build must show besides the reference output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The output differs from the base and contains this text.
    Changed(&'static str),
    /// The output is the base's (the change does not show in what the app prints).
    SameOutput,
    /// The output is the base's and every unit is a hit: no compiler run at all.
    AllHits,
    /// The build fails, as it does without kache, with this text in cargo's stderr.
    BuildFails(&'static str),
}

struct Case {
    name: &'static str,
    /// Applied to a checkout at the base sources and environment.
    change: fn(&mut Workspace),
    /// Extra cargo arguments, for the kache build and the reference build alike.
    args: &'static [&'static str],
    /// The dir under the target dir that holds the binaries.
    profile_dir: &'static str,
    expect: Expect,
    /// Crates that kache must have compiled: no stored variant may stand in for them.
    must_compile: &'static [&'static str],
    /// Runs `cargo check` through kache before the build, in the same target dir.
    check_first: bool,
    /// Runs before the reference build (e.g. to show cargo a change it cannot see).
    before_reference: Option<fn(&Workspace)>,
}

const BASE: Case = Case {
    name: "",
    change: |_| {},
    args: &[],
    profile_dir: "debug",
    expect: Expect::AllHits,
    must_compile: &[],
    check_first: false,
    before_reference: None,
};

/// fixture-core and everything that depends on it.
const CORE_UP: &[&str] = &[
    "fixture_core",
    "fixture_app",
    "fixture_where",
    "fixture_plugin",
];

const CASES: &[Case] = &[
    Case {
        name: "edit a source line",
        change: |ws| ws.edit("crates/app/src/main.rs", "\"edit-0\"", "\"edit-1\""),
        expect: Expect::Changed("mark=edit-1"),
        must_compile: &["fixture_app"],
        ..BASE
    },
    Case {
        name: "edit a module pulled in with #[path]",
        change: |ws| ws.edit("shared/path_mod.rs", "\"path-mod-1\"", "\"path-mod-2\""),
        expect: Expect::Changed("path_mod=path-mod-2"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "swap the contents of two module files",
        change: |ws| {
            let a = ws.read("crates/app/src/swap_a.rs");
            let b = ws.read("crates/app/src/swap_b.rs");
            assert_eq!(a.len(), b.len(), "the swapped files have the same size");
            ws.write("crates/app/src/swap_a.rs", &b);
            ws.write("crates/app/src/swap_b.rs", &a);
        },
        expect: Expect::Changed("swap=side-b/side-a"),
        must_compile: &["fixture_app"],
        ..BASE
    },
    Case {
        name: "edit a file read by include_str!",
        change: |ws| ws.edit("crates/core/data/greeting.txt", "hello", "howdy"),
        expect: Expect::Changed("/ howdy from greeting.txt"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "edit a file read by include_bytes! (same size)",
        change: |ws| {
            let mut bytes = ws.read_bytes("crates/core/data/magic.bin");
            let k = bytes
                .iter()
                .position(|&b| b == b'k')
                .expect("magic.bin has a 'k'");
            bytes[k] = b'K';
            ws.write_bytes("crates/core/data/magic.bin", &bytes);
        },
        expect: Expect::Changed("magic=486"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "change a variable read by env!",
        change: |ws| ws.set_env("FIXTURE_GREETING", "bonjour from the e2e test"),
        expect: Expect::Changed("greeting=bonjour from the e2e test"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "unset a variable read by env! (the build must fail, not hit)",
        change: |ws| ws.unset_env("FIXTURE_GREETING"),
        expect: Expect::BuildFails("FIXTURE_GREETING"),
        must_compile: &["fixture_core"],
        ..BASE
    },
    Case {
        name: "set a variable read by option_env!",
        change: |ws| ws.set_env("FIXTURE_OPTIONAL", "first"),
        expect: Expect::Changed("optional=first"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "change a variable read by option_env!",
        change: |ws| ws.set_env("FIXTURE_OPTIONAL", "second"),
        expect: Expect::Changed("optional=second"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "set a variable read by option_env! to the empty string (not unset)",
        change: |ws| ws.set_env("FIXTURE_OPTIONAL", ""),
        expect: Expect::Changed("optional= note="),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "unset the option_env! variable again (the stored unset variant is right)",
        change: |_| {},
        expect: Expect::AllHits,
        ..BASE
    },
    Case {
        name: "set a build script's rerun-if-env-changed variable",
        change: |ws| ws.set_env("FIXTURE_BUILD_MODE", "fast"),
        expect: Expect::Changed("gen=44 mode=fast"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "edit the file a build script passes on with cargo:rustc-env",
        change: |ws| ws.write("crates/core/note.txt", "note-two\n"),
        expect: Expect::Changed("note=note-two"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "edit a C source compiled into a static lib",
        change: |ws| ws.edit("crates/core/csrc/add.c", "a + b;", "a + b + 100;"),
        expect: Expect::Changed("c_add=105"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "turn on a feature",
        change: |_| {},
        args: &["--features", "fixture-core/loud"],
        expect: Expect::Changed("feature=loud"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "RUSTFLAGS=--cfg",
        change: |ws| ws.set_env("RUSTFLAGS", "--cfg fixture_flag"),
        expect: Expect::Changed("cfg=on"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "-C opt-level (CARGO_PROFILE_DEV_OPT_LEVEL=1; the output does not show it)",
        change: |ws| ws.set_env("CARGO_PROFILE_DEV_OPT_LEVEL", "1"),
        expect: Expect::SameOutput,
        must_compile: &[
            "itoa",
            "fixture_core",
            "fixture_app",
            "fixture_where",
            "fixture_plugin",
        ],
        ..BASE
    },
    Case {
        name: "the release profile",
        change: |_| {},
        args: &["--release"],
        profile_dir: "release",
        expect: Expect::Changed("assertions=off"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "edit a proc-macro's source",
        change: |ws| {
            ws.edit(
                "crates/macros/src/lib.rs",
                "Literal::string(&text.to_uppercase())",
                "Literal::string(&text.to_uppercase().replace(' ', \"_\"))",
            )
        },
        expect: Expect::Changed("macro=QUIET_PLEASE"),
        must_compile: &["fixture_macros", "fixture_app"],
        ..BASE
    },
    Case {
        name: "bump the crates' version (CARGO_PKG_VERSION)",
        change: |ws| {
            ws.edit("Cargo.toml", "version = \"0.3.1\"", "version = \"0.3.2\"");
            ws.edit_all(
                "Cargo.lock",
                "version = \"0.3.1\"",
                "version = \"0.3.2\"",
                4,
            );
        },
        expect: Expect::Changed("version=0.3.2"),
        must_compile: &[
            "fixture_core",
            "fixture_macros",
            "fixture_app",
            "fixture_where",
            "fixture_plugin",
            "build_script_build",
        ],
        ..BASE
    },
    Case {
        name: "change a dependency's version in Cargo.lock (itoa 1.0.18 -> 1.0.17)",
        change: |ws| {
            ws.edit(
                "Cargo.lock",
                "name = \"itoa\"\nversion = \"1.0.18\"",
                "name = \"itoa\"\nversion = \"1.0.17\"",
            );
            ws.edit(
                "Cargo.lock",
                "8f42a60cbdf9a97f5d2305f08a87dc4e09308d1276d28c869c684d7777685682",
                "92ecc6618181def0457392ccd0ee51198e065e016d1d527a7ac1b6dc7c1f09d2",
            );
        },
        expect: Expect::SameOutput,
        must_compile: &["itoa", "fixture_core", "fixture_app"],
        ..BASE
    },
    Case {
        name: "change a crate's edition",
        change: |ws| {
            ws.edit(
                "crates/app/Cargo.toml",
                "edition.workspace = true",
                "edition = \"2018\"",
            )
        },
        expect: Expect::Changed("edition=&u8"),
        must_compile: &["fixture_app", "fixture_where"],
        ..BASE
    },
    Case {
        name: "cargo check, then cargo build (of an edited crate)",
        change: |ws| ws.edit("crates/app/src/main.rs", "\"edit-0\"", "\"edit-2\""),
        check_first: true,
        expect: Expect::Changed("mark=edit-2"),
        must_compile: &["fixture_app"],
        ..BASE
    },
    Case {
        name: "same-size edit of a file whose mtime is then restored",
        change: same_size_edit_with_mtime_restored,
        expect: Expect::Changed("path_mod=path-mod-7"),
        must_compile: CORE_UP,
        before_reference: Some(|ws| touch(&ws.path(MTIME_FILE))),
        ..BASE
    },
    Case {
        name: "add a file to a directory a build script globs (rerun-if-changed=assets)",
        change: |ws| ws.write("crates/core/assets/two.txt", "the second asset\n"),
        expect: Expect::Changed("assets=one.txt+two.txt"),
        must_compile: CORE_UP,
        ..BASE
    },
    Case {
        name: "add files nothing reads (a data file, a .rs file no `mod` names)",
        change: |ws| {
            ws.write("crates/core/data/unused.txt", "nobody reads this\n");
            ws.write("crates/core/src/not_a_module.rs", "pub fn unused() {}\n");
        },
        expect: Expect::AllHits,
        ..BASE
    },
    Case {
        name: "revert to the base",
        change: |_| {},
        expect: Expect::AllHits,
        ..BASE
    },
];

#[test]
fn every_change_builds_what_a_build_without_kache_builds() {
    assert!(
        CASES.len() >= 20,
        "the matrix covers at least 20 kinds of change"
    );
    run_matrix(CASES.iter(), false);
}

/// The cases run again with cargo's defaults (`CARGO_INCREMENTAL` unset), where cargo
/// compiles the workspace members with `-C incremental` and kache caches them
/// (`KACHE_INCREMENTAL=cache`): incremental entries must be as exact as the others. A
/// representative subset, to keep the run time bounded: a source edit in the leaf and in the
/// shared crate, a same-size swap, `include_str!`, `env!`/`option_env!`, a build script's
/// variable, a feature, `RUSTFLAGS`, `-C opt-level` (codegen flags on an incremental unit),
/// a proc-macro edit, `cargo check` then `cargo build` (two incremental units of one crate),
/// and the all-hit reverts.
const WITH_CARGO_DEFAULTS: &[&str] = &[
    "edit a source line",
    "edit a module pulled in with #[path]",
    "swap the contents of two module files",
    "edit a file read by include_str!",
    "change a variable read by env!",
    "set a variable read by option_env!",
    "unset the option_env! variable again (the stored unset variant is right)",
    "set a build script's rerun-if-env-changed variable",
    "turn on a feature",
    "RUSTFLAGS=--cfg",
    "-C opt-level (CARGO_PROFILE_DEV_OPT_LEVEL=1; the output does not show it)",
    "edit a proc-macro's source",
    "cargo check, then cargo build (of an edited crate)",
    "revert to the base",
];

#[test]
fn with_cargo_defaults_incremental_units_are_exact_too() {
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| WITH_CARGO_DEFAULTS.contains(&c.name))
        .collect();
    assert_eq!(
        cases.len(),
        WITH_CARGO_DEFAULTS.len(),
        "every name in the subset names a case"
    );
    run_matrix(cases.into_iter(), true);
}

/// One checkout and one cache for `cases`, in order; `cargo_defaults` leaves
/// `CARGO_INCREMENTAL` unset (see [`Workspace::use_cargo_defaults`]).
fn run_matrix<'a>(cases: impl Iterator<Item = &'a Case>, cargo_defaults: bool) {
    let sandbox = Sandbox::new();
    let mut ws = sandbox.checkout("matrix/ws");
    if cargo_defaults {
        ws.use_cargo_defaults();
    }
    let mut log = sandbox.cursor();

    let base = ws.reference_output(&[], APP_BIN);
    ws.kache_build(&[]);
    let all = log.take();
    let cold = compiles(&all);
    assert_no_faults(&cold, "base build");
    assert_eq!(ws.run_bin(APP_BIN, &[]), base, "base build output");
    if cargo_defaults {
        // The premise: the members really were compiled incrementally, and cached.
        let incremental = ws.target_dir().join("debug/incremental");
        assert!(
            fs::read_dir(&incremental).is_ok_and(|mut d| d.next().is_some()),
            "cargo's defaults compile the members with -C incremental"
        );
        let passed_through = all
            .iter()
            .filter(|e| e.passthrough_reason.as_deref() == Some("incremental"))
            .count();
        assert_eq!(passed_through, 0, "{}", describe(&all));
    }

    for case in cases {
        run_case(&sandbox, &mut ws, case, &base);
    }
}

fn run_case(sandbox: &Sandbox, ws: &mut Workspace, case: &Case, base: &str) {
    let name = case.name;
    ws.reset_to_base();
    (case.change)(ws);
    ws.rm_target();
    let mut log = sandbox.cursor();

    let with_args = |verb: &'static str| {
        let mut args = vec![verb, "--locked"];
        args.extend_from_slice(case.args);
        args
    };
    if case.check_first {
        ws.kache(&with_args("check")).run();
        let checked = compiles(&log.take());
        assert_no_faults(&checked, &format!("[{name}] cargo check"));
    }
    let built = ws.kache(&with_args("build")).run_unchecked();
    let events = compiles(&log.take());
    println!(
        "[{name}] {} units compiled, {} hits",
        compiled(&events).len(),
        count(&events, Outcome::LocalHit)
    );

    if let Expect::BuildFails(needle) = case.expect {
        let stderr = stderr_of(&built);
        assert!(
            !built.status.success() && stderr.contains(needle),
            "[{name}] the kache build must fail mentioning {needle:?}\n{stderr}\n{}",
            describe(&events)
        );
        let target = ws.path(REFERENCE_TARGET);
        let target = target.to_str().expect("UTF-8 path");
        let mut args = with_args("build");
        args.extend(["--target-dir", target]);
        let reference = ws.plain(&args).run_unchecked();
        assert!(
            !reference.status.success() && stderr_of(&reference).contains(needle),
            "[{name}] the reference build must fail too\n{}",
            stderr_of(&reference)
        );
        for crate_name in case.must_compile {
            let theirs = of_crate(&events, crate_name);
            assert!(
                !theirs.is_empty()
                    && theirs
                        .iter()
                        .all(|e| e.result == Outcome::Miss && e.exit_code != 0),
                "[{name}] {crate_name} must be compiled (and fail), never served\n{}",
                describe(&events)
            );
        }
        return;
    }

    assert!(
        built.status.success(),
        "[{name}] the kache build failed\n{}\n{}",
        stderr_of(&built),
        describe(&events)
    );
    assert_no_faults(&events, &format!("[{name}]"));
    for crate_name in case.must_compile {
        let theirs = of_crate(&events, crate_name);
        assert!(
            !theirs.is_empty() && theirs.iter().all(|e| e.result == Outcome::Miss),
            "[{name}] kache must compile {crate_name}: no stored variant is right for it\n{}",
            describe(&events)
        );
    }
    let target = ws.target_dir();
    let actual = ws.run_bin_profile(&target, case.profile_dir, APP_BIN, &[]);
    let where_printed = ws.run_bin_profile(&target, case.profile_dir, WHERE_BIN, &[]);
    assert_eq!(
        where_printed,
        ws.app_manifest_dir(),
        "[{name}] fixture-where prints the checkout's path"
    );

    if let Some(before) = case.before_reference {
        before(ws);
    }
    let expected = ws.reference_output_profile(case.args, case.profile_dir, APP_BIN);
    assert_eq!(
        actual,
        expected,
        "[{name}] the kache build's output differs from the build without kache\n{}",
        describe(&events)
    );
    match case.expect {
        Expect::Changed(marker) => assert!(
            expected != base && expected.contains(marker),
            "[{name}] the change must show as {marker:?}; the output is\n{expected}"
        ),
        Expect::SameOutput => assert_eq!(expected, base, "[{name}]"),
        Expect::AllHits => {
            assert_eq!(expected, base, "[{name}]");
            assert!(!events.is_empty(), "[{name}] the build compiled nothing");
            assert_all_local_hits(&events, &format!("[{name}]"));
        }
        Expect::BuildFails(_) => unreachable!("handled above"),
    }
}

/// The file the mtime case edits: pulled in by `#[path]`, so its dep-info path is not even
/// normalised.
const MTIME_FILE: &str = "shared/path_mod.rs";

/// A same-size edit in place whose mtime is then put back: size and mtime say "unchanged",
/// only the ctime says otherwise. (cargo, comparing mtimes, would not rebuild; with `target/`
/// deleted it must, and then the cache must not trust its stat cache.)
fn same_size_edit_with_mtime_restored(ws: &mut Workspace) {
    let path = ws.path(MTIME_FILE);
    // The stat cache remembers only files that have not changed for 2 s; make sure the base
    // file is remembered, through a build that checks fixture-core's manifest.
    wait_until_unchanged_for(&path, Duration::from_millis(2500));
    ws.rm_target();
    ws.kache_build(&[]);
    let before = fs::metadata(&path).expect("stat the file");
    let remembered = stat_cache_rows(ws.cache_dir(), "%/shared/path_mod.rs");
    assert!(
        remembered
            .iter()
            .any(|&(size, mtime)| size == before.len() as i64 && mtime == mtime_ns(&before)),
        "premise: the stat cache remembers {MTIME_FILE} as it is now (rows: {remembered:?}); \
         otherwise this case would not test it"
    );

    ws.edit(MTIME_FILE, "\"path-mod-1\"", "\"path-mod-7\"");
    let file = fs::File::options()
        .write(true)
        .open(&path)
        .expect("open the file");
    file.set_modified(before.modified().expect("mtime"))
        .expect("restore the mtime");
    drop(file);
    let after = fs::metadata(&path).expect("stat the file");
    assert_eq!(
        (after.len(), mtime_ns(&after)),
        (before.len(), mtime_ns(&before)),
        "premise: same size, same mtime"
    );
    // Past the window in which any change is distrusted, so only the ctime can tell.
    std::thread::sleep(Duration::from_millis(2500));
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

/// Sleeps until neither the content nor the inode of `path` changed for `age`.
fn wait_until_unchanged_for(path: &Path, age: Duration) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).expect("stat the file");
    let newest = meta.mtime().max(meta.ctime()) as u64 + 1;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    let ready = Duration::from_secs(newest) + age;
    if let Some(wait) = ready.checked_sub(now) {
        std::thread::sleep(wait);
    }
}

/// (size, mtime_ns) of the stat cache's rows whose path is `LIKE` the pattern.
fn stat_cache_rows(cache_dir: &Path, pattern: &str) -> Vec<(i64, i64)> {
    let db = rusqlite::Connection::open_with_flags(
        cache_dir.join("index.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the index read-only");
    let mut stmt = db
        .prepare("SELECT size, mtime_ns FROM stat_cache WHERE path LIKE ?1")
        .expect("the index has a stat_cache table");
    stmt.query_map([pattern], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query the stat cache")
        .collect::<Result<_, _>>()
        .expect("read the stat cache")
}

/// Sets a file's mtime to now, so cargo's mtime-based freshness check sees it changed.
fn touch(path: &Path) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .unwrap_or_else(|e| panic!("touch {}: {e}", path.display()));
}
