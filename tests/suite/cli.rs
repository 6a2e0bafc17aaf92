//! The commands people run, tested on the real binary against a store populated by real
//! `RUSTC_WRAPPER=kache cargo build`s of the fixture workspace (e2e/fixtures/ws): `stats`
//! agrees with the event log, `gc` (by hand and automatic) keeps the store under its limit
//! without breaking the next build, `explain` names what changed, `init` edits cargo's config
//! file politely, and bad input is a one-line error with exit code 2, never a panic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

/// Every command people run (not `help`).
const COMMANDS: [&str; 12] = [
    "stats",
    "explain",
    "list",
    "gc",
    "clear",
    "verify",
    "monitor",
    "init",
    "sync",
    "config",
    "doctor",
    "completions",
];

/// The kache binary under test (never another wrapper: these tests are about its commands).
fn kache_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kache"))
}

/// `kache <args>` with `KACHE_DIR=cache_dir`, no other `KACHE_*` setting from outside, and no
/// terminal on standard input.
fn kache_cmd(cache_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kache_exe());
    cmd.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("KACHE_")) {
            cmd.env_remove(key);
        }
    }
    // No user config file either.
    cmd.env("KACHE_CONFIG", "/dev/null");
    cmd.env("KACHE_DIR", cache_dir);
    cmd
}

fn kache(cache_dir: &Path, args: &[&str]) -> Output {
    kache_cmd(cache_dir, args)
        .output()
        .unwrap_or_else(|e| panic!("run kache {args:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `kache <args>`, which must succeed, and returns its stdout.
fn ok(cache_dir: &Path, args: &[&str]) -> String {
    let o = kache(cache_dir, args);
    assert!(
        o.status.success(),
        "kache {args:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn json(cache_dir: &Path, args: &[&str]) -> Value {
    let text = ok(cache_dir, args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("kache {args:?}: bad JSON ({e}):\n{text}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// One figure of an event, as `stats` adds it up.
type Figure = fn(&BuildEvent) -> f64;

/// The sum of one figure of the events, of all or of those with one outcome.
fn sum(events: &[BuildEvent], figure: Figure, wanted: Option<Outcome>) -> f64 {
    events
        .iter()
        .filter(|e| wanted.is_none_or(|w| e.result == w))
        .map(figure)
        .sum()
}

fn compile_ms(e: &BuildEvent) -> f64 {
    e.compile_time_ms
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: stats says {got}, the event log says {want}"
    );
}

#[test]
fn stats_list_and_gc_on_a_real_store() {
    let Warmed { sandbox, ws, .. } = Sandbox::warmed("ws");
    let cache = sandbox.cache_dir();
    let expected = ws.run_bin(APP_BIN, &[]);
    ws.rm_target();
    ws.kache_build(&[]);
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "warm build output");

    // --- stats --json agrees with the event log, figure by figure ----------------------
    let events = sandbox.events();
    let s = json(cache, &["stats", "--json"]);
    assert_eq!(num(&s["invocations"]) as usize, events.len());
    for (field, outcome) in [
        ("local_hits", Outcome::LocalHit),
        ("remote_hits", Outcome::RemoteHit),
        ("misses", Outcome::Miss),
        ("passthrough", Outcome::Passthrough),
        ("errors", Outcome::Error),
    ] {
        assert_eq!(
            num(&s[field]) as usize,
            count(&events, outcome),
            "{field}\n{}",
            describe(&events)
        );
    }
    assert!(num(&s["misses"]) > 0.0 && num(&s["local_hits"]) > 0.0);
    let hit_ms = sum(&events, compile_ms, Some(Outcome::LocalHit));
    let miss_ms = sum(&events, compile_ms, Some(Outcome::Miss));
    assert_close(num(&s["hit_compile_time_ms"]), hit_ms, "hit compile time");
    assert_close(
        num(&s["miss_compile_time_ms"]),
        miss_ms,
        "miss compile time",
    );
    assert_close(
        num(&s["weighted_hit_rate"]),
        hit_ms / (hit_ms + miss_ms),
        "weighted hit rate",
    );
    let hits = count(&events, Outcome::LocalHit) as f64;
    assert_close(
        num(&s["hit_rate"]),
        hits / (hits + count(&events, Outcome::Miss) as f64),
        "hit rate",
    );
    let restored_by: [(&str, Figure); 3] = [
        ("reflinked_bytes", |e| e.reflinked_bytes as f64),
        ("hardlinked_bytes", |e| e.hardlinked_bytes as f64),
        ("copied_bytes", |e| e.copied_bytes as f64),
    ];
    for (field, figure) in restored_by {
        assert_close(num(&s[field]), sum(&events, figure, None), field);
    }
    let restored: f64 = ["reflinked_bytes", "hardlinked_bytes", "copied_bytes"]
        .iter()
        .map(|f| num(&s[*f]))
        .sum();
    assert_close(
        restored,
        sum(&events, |e| e.size as f64, Some(Outcome::LocalHit)),
        "bytes restored",
    );
    let probes = s["passthrough_reasons"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["reason"] == "probe"))
        .map(|r| num(&r["count"]) as usize);
    let probe_events = events
        .iter()
        .filter(|e| e.passthrough_reason.as_deref() == Some("probe"))
        .count();
    assert_eq!(probes.unwrap_or(0), probe_events, "probe passthroughs");
    let stored: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.result == Outcome::Miss)
        .filter_map(|e| e.cache_key.as_deref())
        .collect();
    assert_eq!(
        num(&s["store"]["entries"]) as usize,
        stored.len(),
        "entries"
    );
    let store_size = num(&s["store"]["size"]) as u64;
    assert!(store_size > 0);
    assert!(num(&s["store"]["blobs"]) > 0.0);
    let slowest = s["slowest_misses"].as_array().expect("slowest misses");
    assert!(!slowest.is_empty() && slowest.len() <= 5);
    let slowest_ms = events
        .iter()
        .filter(|e| e.result == Outcome::Miss)
        .map(compile_ms)
        .fold(0.0, f64::max);
    assert_close(
        num(&slowest[0]["compile_time_ms"]),
        slowest_ms,
        "slowest miss",
    );

    // The human report: a table for an 80-column terminal.
    let text = ok(cache, &["stats"]);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    for needle in [
        "hit rate",
        "time saved",
        "restored",
        "store",
        "slowest misses",
        "probe",
    ] {
        assert!(
            text.contains(needle),
            "`kache stats` lacks {needle:?}:\n{text}"
        );
    }
    // --since keeps recent invocations only; everything here is recent.
    let recent = json(cache, &["stats", "--since", "1h", "--json"]);
    assert_eq!(recent["invocations"], s["invocations"]);

    // --- list ------------------------------------------------------------------------
    let listed = json(cache, &["list", "--json", "--sort", "size"]);
    let listed = listed.as_array().expect("list is an array");
    assert_eq!(listed.len(), stored.len());
    let sizes: Vec<u64> = listed.iter().map(|e| num(&e["size"]) as u64).collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "sorted by size: {sizes:?}"
    );
    // The warm build hit every entry once; list folds those hits in from the log.
    let hits: u64 = listed.iter().map(|e| num(&e["hits"]) as u64).sum();
    assert_eq!(hits as usize, count(&events, Outcome::LocalHit));
    let core = ok(cache, &["list", "fixture-core"]);
    assert!(core.contains("fixture_core 0.3.1"), "{core}");
    assert!(!core.contains("itoa"), "{core}");

    // --- gc --max-size: a dry run changes nothing; then the store fits the limit ------
    let limit = store_size / 2;
    let limit_arg = limit.to_string();
    let dry = json(
        cache,
        &["gc", "--max-size", &limit_arg, "--dry-run", "--json"],
    );
    assert!(num(&dry["entries_evicted"]) > 0.0);
    assert_eq!(
        num(&json(cache, &["stats", "--json"])["store"]["size"]) as u64,
        store_size
    );
    let gc = json(cache, &["gc", "--max-size", &limit_arg, "--json"]);
    assert!(num(&gc["size_after"]) as u64 <= limit, "{gc}");
    let after = json(cache, &["stats", "--json"]);
    let size_after = num(&after["store"]["size"]) as u64;
    assert!(size_after <= limit, "store {size_after} > limit {limit}");
    assert!(num(&after["store"]["entries"]) < stored.len() as f64);
    let verify = kache(cache, &["verify"]);
    assert!(
        verify.status.success(),
        "verify after gc: {}",
        stdout(&verify)
    );

    // The next build restores what is left and recompiles what was evicted.
    let mut log = sandbox.cursor();
    ws.rm_target();
    ws.kache_build(&[]);
    let rebuilt = compiles(&log.take());
    assert_no_faults(&rebuilt, "build after gc");
    assert!(
        count(&rebuilt, Outcome::Miss) > 0,
        "evicted units recompile\n{}",
        describe(&rebuilt)
    );
    assert!(
        count(&rebuilt, Outcome::LocalHit) > 0,
        "kept units hit\n{}",
        describe(&rebuilt)
    );
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "output after gc");

    // --- clear --yes empties the store, and the cache fills again -------------------
    let cleared = json(cache, &["clear", "--yes", "--json"]);
    assert!(num(&cleared["entries_removed"]) > 0.0, "{cleared}");
    let empty = json(cache, &["stats", "--json"]);
    assert_eq!(num(&empty["store"]["entries"]), 0.0);
    assert_eq!(num(&empty["store"]["size"]), 0.0);
    assert_eq!(ok(cache, &["list"]).trim(), "no entries");
    ws.rm_target();
    ws.kache_build(&[]);
    let refilled = compiles(&log.take());
    assert_no_faults(&refilled, "build after clear");
    assert_all(&refilled, Outcome::Miss, "build after clear");
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "output after clear");
}

#[test]
fn automatic_gc_keeps_the_store_under_its_limit() {
    let Warmed { sandbox, ws, .. } = Sandbox::warmed("ws");
    let cache = sandbox.cache_dir();
    let full = num(&json(cache, &["stats", "--json"])["store"]["size"]) as u64;

    // A source edit makes the app miss; storing it passes a limit below what the store
    // already holds, which starts a gc in the background.
    ws.edit("crates/app/src/main.rs", "\"edit-0\"", "\"edit-1\"");
    let limit = full * 7 / 10;
    let mut log = sandbox.cursor();
    ws.kache(&["build", "--locked"])
        .env("KACHE_MAX_SIZE", &limit.to_string())
        .run();
    let stored = compiles(&log.take());
    assert_no_faults(&stored, "build past the limit");
    assert_eq!(
        crates_with(&stored, Outcome::Miss).len(),
        1,
        "{}",
        describe(&stored)
    );
    let expected = ws.run_bin(APP_BIN, &[]);
    assert!(expected.contains("mark=edit-1"), "{expected}");

    // The gc runs detached (the build did not wait for it); wait for it here.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let size = num(&json(cache, &["stats", "--json"])["store"]["size"]) as u64;
        if size <= limit && !auto_gc_running(cache) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the automatic gc did not bring the store ({size} bytes) under {limit}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Down to about 90% of the limit, not to nothing.
    let s = json(cache, &["stats", "--json"]);
    assert!(num(&s["store"]["entries"]) > 0.0, "{s}");
    assert!(num(&s["store"]["size"]) as u64 <= limit * 9 / 10 + 1, "{s}");
    let verify = kache(cache, &["verify"]);
    assert!(
        verify.status.success(),
        "verify after the automatic gc: {}",
        stdout(&verify)
    );

    // The next build works: evicted units compile again, kept ones are restored.
    ws.rm_target();
    ws.kache_build(&[]);
    let next = compiles(&log.take());
    assert_no_faults(&next, "build after the automatic gc");
    assert!(count(&next, Outcome::Miss) > 0, "{}", describe(&next));
    assert!(count(&next, Outcome::LocalHit) > 0, "{}", describe(&next));
    assert_eq!(
        ws.run_bin(APP_BIN, &[]),
        expected,
        "output after the automatic gc"
    );
}

fn explain_lines(cache: &Path, krate: &str) -> String {
    ok(cache, &["explain", krate])
}

#[test]
fn explain_names_what_changed() {
    let Warmed {
        sandbox, mut ws, ..
    } = Sandbox::warmed("ws");
    let cache = sandbox.cache_dir();
    let first = explain_lines(cache, "fixture_core");
    assert!(first.contains("the only stored entry"), "{first}");

    // An env! variable changes: core's manifest records the value.
    ws.set_env("FIXTURE_GREETING", "bonjour");
    ws.kache_build(&[]);
    let text = explain_lines(cache, "fixture_core");
    assert!(
        text.contains(&format!(
            "env FIXTURE_GREETING (read by the crate): \"{DEFAULT_GREETING}\" → \"bonjour\""
        )),
        "{text}"
    );
    // A dependent names the dependency that changed.
    let app = explain_lines(cache, "fixture-app");
    assert!(app.contains("dependency fixture_core changed"), "{app}");

    // RUSTFLAGS: the flag it adds is named.
    ws.kache(&["build", "--locked"])
        .env("RUSTFLAGS", "--cfg fixture_flag")
        .run();
    let text = explain_lines(cache, "fixture_core");
    assert!(
        text.contains("RUSTFLAGS changed: `--cfg fixture_flag` added"),
        "{text}"
    );
    assert!(text.contains("--cfg `fixture_flag` added"), "{text}");
    assert!(
        !text.contains("FIXTURE_GREETING"),
        "nearest entry has the same greeting: {text}"
    );

    // A source edit in the app: the file is named, and nothing else.
    ws.edit("crates/app/src/main.rs", "\"edit-0\"", "\"edit-1\"");
    ws.kache_build(&[]);
    let x = json(cache, &["explain", "fixture_app", "--json"]);
    let diffs = x["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{x}");
    assert_eq!(diffs[0]["part"], "file");
    assert_eq!(diffs[0]["name"], "crates/app/src/main.rs");
    assert_eq!(diffs[0]["change"], "changed");
    let text = explain_lines(cache, "fixture_app");
    assert!(
        text.contains("crates/app/src/main.rs: content changed"),
        "{text}"
    );

    // An unknown crate is an error (exit 1), said in one line.
    let o = kache(cache, &["explain", "no_such_crate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no crate named `no_such_crate`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn init_edits_cargo_config_politely() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("config.toml");
    let original = "# my settings, keep this comment\n[net]\nretry = 3 # and this one\n";
    std::fs::write(&config, original).expect("write config");
    let init = |args: &[&str]| {
        // CARGO_HOME only for this process: it tells `init` where cargo's config is.
        let o = kache_cmd(home.path(), args)
            .env("CARGO_HOME", home.path())
            .output()
            .expect("run kache init");
        assert!(o.status.success(), "kache {args:?}: {}", stderr(&o));
        std::fs::read_to_string(&config).expect("read config")
    };
    let once = init(&["init"]);
    let twice = init(&["init"]);
    assert_eq!(once, twice, "init is idempotent");
    assert_eq!(twice.matches("rustc-wrapper").count(), 1, "{twice}");
    assert!(
        twice.starts_with(original),
        "comments and settings kept:\n{twice}"
    );
    let parsed: toml::Table = toml::from_str(&twice).expect("valid TOML");
    let exe = std::fs::canonicalize(kache_exe()).expect("canonical kache path");
    assert_eq!(
        parsed["build"]["rustc-wrapper"].as_str(),
        exe.to_str(),
        "{twice}"
    );
    let undone = init(&["init", "--undo"]);
    assert_eq!(undone, original, "--undo removes only our setting");

    // Another wrapper is not replaced without --force.
    std::fs::write(&config, "[build]\nrustc-wrapper = \"sccache\"\n").expect("write");
    let o = kache_cmd(home.path(), &["init"])
        .env("CARGO_HOME", home.path())
        .output()
        .expect("run kache init");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sccache"), "{}", stderr(&o));

    // Issue 10 item 11: the file `init` created is gone after `--undo`, not left empty.
    std::fs::remove_file(&config).expect("remove config");
    for args in [&["init"][..], &["init", "--undo"][..]] {
        let o = kache_cmd(home.path(), args)
            .env("CARGO_HOME", home.path())
            .output()
            .expect("run kache init");
        assert!(o.status.success(), "kache {args:?}: {}", stderr(&o));
    }
    assert!(!config.exists(), "--undo left the config file it created");
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let no_panic = |o: &Output, what: &str| {
        let err = stderr(o);
        assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
        assert!(
            err.lines().next().is_some_and(|l| l.contains("error")),
            "{what}: the first line names the error:\n{err}"
        );
    };
    for (args, needle) in [
        (&["stats", "--frobnicate"][..], "--frobnicate"),
        (&["gc", "--max-size", "banana"][..], "banana"),
        (&["stats", "--since", "soon"][..], "soon"),
        // Out of range is bad input, not an overflow (it once made gc evict everything).
        (&["gc", "--max-age", "999999999999999d"][..], "out of range"),
        (
            &["gc", "--dry-run", "--max-age", "36501d"][..],
            "out of range",
        ),
        (
            &["stats", "--since", "999999999999999d"][..],
            "out of range",
        ),
        (&["gc", "--max-size", "99999999999T"][..], "out of range"),
        (&["list", "--sort", "sideways"][..], "sideways"),
        (&["completions", "tcsh-ish"][..], "tcsh-ish"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let o = kache(&cache, args);
        assert_eq!(o.status.code(), Some(2), "kache {args:?}: {}", stderr(&o));
        no_panic(&o, &format!("kache {args:?}"));
        assert!(
            stderr(&o)
                .lines()
                .next()
                .is_some_and(|l| l.contains(needle)),
            "{}",
            stderr(&o)
        );
    }

    // A cache directory that is a file; a size setting that is not a size.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    for args in [
        &["stats"][..],
        &["gc"][..],
        &["list"][..],
        &["explain", "x"][..],
    ] {
        let o = kache(&file, args);
        assert_eq!(o.status.code(), Some(2), "kache {args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
    }
    let o = kache_cmd(&cache, &["sync", "--push"])
        .env("KACHE_REMOTE", "http://not-s3")
        .output()
        .expect("run kache");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("KACHE_REMOTE"), "{}", stderr(&o));
    let o = kache_cmd(&cache, &["stats"])
        .env("KACHE_MAX_SIZE", "banana")
        .output()
        .expect("run kache");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("KACHE_MAX_SIZE"), "{}", stderr(&o));

    // Refusals that need a person: clear without --yes, monitor without a terminal.
    let o = kache(&cache, &["clear"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let o = kache(&cache, &["monitor"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // No arguments: the help, on stderr, exit 2.
    let o = Command::new(kache_exe()).output().expect("run kache");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("Usage: kache <COMMAND>"),
        "{}",
        stderr(&o)
    );

    // An empty cache is not an error for the reports.
    let s = json(&cache, &["stats", "--json"]);
    assert_eq!(num(&s["invocations"]), 0.0);
    assert_eq!(ok(&cache, &["list"]).trim(), "no entries");
    let help = ok(&cache, &["--help"]);
    for command in COMMANDS {
        assert!(help.contains(command), "--help lists {command}:\n{help}");
    }
    let bash = ok(&cache, &["completions", "bash"]);
    assert!(bash.contains("kache") && bash.contains("explain"), "{bash}");
}

/// Issue 9 item 14: the crash injector is test-only machinery. In a default build (what
/// `cargo install` gives people) `KACHE_TEST_CRASH_AT` does nothing: the compile is stored
/// and succeeds. (`e2e/run-tests` also checks the release binary has no trace of the hook.)
#[cfg(not(feature = "fault-injection"))]
#[test]
fn the_default_build_has_no_crash_hook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let compile = |cache: &Path, stage: &str| {
        let o = wrapped_rustc(cache, dir.path())
            .env("KACHE_TEST_CRASH_AT", stage)
            .output()
            .expect("run kache as a wrapper");
        assert!(o.status.success(), "{stage}: {o:?}");
    };
    // Each store stage on a miss (a fresh cache each), then the restore stage on a hit.
    let cache = dir.path().join("cache");
    for stage in ["after_compile", "after_blob", "before_commit", "in_commit"] {
        let fresh = dir.path().join(format!("cache-{stage}"));
        compile(&fresh, stage);
        assert_eq!(count(&events(&fresh), Outcome::Miss), 1, "{stage}");
    }
    compile(&cache, "after_commit");
    compile(&cache, "mid_restore");
    let events = events(&cache);
    assert_eq!(count(&events, Outcome::Miss), 1, "{}", describe(&events));
    assert_eq!(
        count(&events, Outcome::LocalHit),
        1,
        "{}",
        describe(&events)
    );
}

/// `kache <rustc> ...` compiling a one-line library `hook.rs` (written here) in `work`: the
/// cheapest way to put one entry in a store.
fn wrapped_rustc(cache: &Path, work: &Path) -> Command {
    std::fs::write(work.join("hook.rs"), "pub fn f() -> u32 { 7 }\n").expect("write hook.rs");
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let rustc = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/rustc");
    let mut cmd = kache_cmd(cache, &[]);
    cmd.arg(rustc)
        .args([
            "--crate-name",
            "hook",
            "--crate-type",
            "lib",
            "--edition",
            "2021",
        ])
        .args(["hook.rs", "--out-dir", "out", "--emit=link,metadata"])
        .current_dir(work);
    cmd
}

fn assert_one_line_exit_2(o: &Output, needle: &str, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line\n{err}");
    assert!(err.contains(needle), "{what}: names {needle:?}\n{err}");
}

/// Issue 10 item 8: an unusable cache dir is one line and exit 2; the commands that only
/// read never create a store (a mistyped KACHE_DIR used to get a fresh one, and exit 0).
#[test]
fn unusable_or_missing_cache_dirs_are_one_line_and_never_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let under_file = file.join("cache");
    for args in [
        &["list"][..],
        &["stats"][..],
        &["explain", "hook"][..],
        &["verify"][..],
        &["gc", "--dry-run"][..],
        &["gc"][..],
        &["clear", "--yes"][..],
    ] {
        let o = kache(&under_file, args);
        assert_one_line_exit_2(&o, "not a directory", &format!("{args:?} under a file"));
    }

    let missing = dir.path().join("mistyped");
    for args in [&["verify"][..], &["gc", "--dry-run"][..], &["gc"][..]] {
        let o = kache(&missing, args);
        assert_one_line_exit_2(&o, "no cache at", &format!("{args:?} at a missing dir"));
    }
    for args in [&["list"][..], &["stats"][..]] {
        ok(&missing, args);
    }
    assert!(
        !missing.exists(),
        "a command that reads created the cache dir"
    );
}

/// Issue 10 item 8: on a read-only store (bind-mounted read-only, so root cannot write
/// either) the commands that read work, and those that write say so in one line, exit 2.
#[test]
#[ignore = "needs root: bind-mounts the store read-only"]
fn read_only_store_serves_the_commands_that_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let o = wrapped_rustc(&cache, dir.path())
        .output()
        .expect("run kache");
    assert!(o.status.success(), "{o:?}");
    let _ro = Mount::read_only_bind(&cache)
        .unwrap_or_else(|e| panic!("cannot bind-mount the store read-only: {e}"));
    assert!(ok(&cache, &["list"]).contains("hook"));
    assert_eq!(
        num(&json(&cache, &["stats", "--json"])["store"]["entries"]),
        1.0
    );
    let report = json(&cache, &["gc", "--dry-run", "--max-size", "0", "--json"]);
    assert_eq!(num(&report["entries_evicted"]), 1.0, "{report}");
    ok(&cache, &["verify"]);
    ok(&cache, &["explain", "hook"]);
    for args in [
        &["gc"][..],
        &["clear", "--yes"][..],
        &["verify", "--repair"][..],
    ] {
        let o = kache(&cache, args);
        assert_one_line_exit_2(&o, "read-only", &format!("{args:?} on a read-only store"));
    }
    assert_eq!(
        ok(&cache, &["list", "--json"]).matches("\"hook\"").count(),
        1
    );
}

/// Issue 10 item 12: `kache config` shows each effective setting and where it came from.
#[test]
fn config_shows_each_setting_and_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "incremental = \"strip\"\nmax_size = \"1G\"\n").expect("write");
    let o = kache_cmd(&cache, &["config", "--json"])
        .env("KACHE_CONFIG", &file)
        .env("KACHE_MAX_SIZE", "2G")
        .output()
        .expect("run kache config");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let row = |name: &str| {
        v["settings"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} row in {v}"))
    };
    assert_eq!(row("dir")["value"], cache.display().to_string());
    assert_eq!(row("dir")["from"], "environment (KACHE_DIR)");
    assert_eq!(row("max_size")["value"], "2.0 GiB");
    assert_eq!(row("max_size")["from"], "environment (KACHE_MAX_SIZE)");
    assert_eq!(row("incremental")["value"], "strip");
    assert_eq!(
        row("incremental")["from"],
        format!("{} (incremental)", file.display())
    );
    assert_eq!(row("remote")["value"], "none");
    assert_eq!(row("log")["from"], "default");
    assert!(!cache.exists(), "kache config created the cache dir");
    let text = ok(&cache, &["config"]);
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
}

/// Issue 10 item 12: `stats --zero` zeroes the counters (the log stays for explain and gc);
/// `gc --crate NAME` removes one crate's entries and the blobs only they used.
#[test]
fn stats_zero_and_gc_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let compile = || {
        let o = wrapped_rustc(&cache, dir.path())
            .output()
            .expect("run kache");
        assert!(o.status.success(), "{o:?}");
    };
    compile();
    assert_eq!(num(&json(&cache, &["stats", "--json"])["invocations"]), 1.0);
    assert!(ok(&cache, &["stats", "--zero"]).contains("zeroed"));
    assert_eq!(num(&json(&cache, &["stats", "--json"])["invocations"]), 0.0);
    compile();
    let s = json(&cache, &["stats", "--json"]);
    assert_eq!(num(&s["invocations"]), 1.0, "{s}");
    assert_eq!(num(&s["local_hits"]), 1.0, "{s}");
    assert_eq!(events(&cache).len(), 2, "the event log is kept");

    let dry = json(&cache, &["gc", "--crate", "hook", "--dry-run", "--json"]);
    assert_eq!(num(&dry["entries_evicted"]), 1.0, "{dry}");
    assert!(
        ok(&cache, &["list"]).contains("hook"),
        "a dry run removes nothing"
    );
    let other = json(&cache, &["gc", "--crate", "not-stored", "--json"]);
    assert_eq!(num(&other["entries_evicted"]), 0.0, "{other}");
    let done = json(&cache, &["gc", "--crate", "hook", "--json"]);
    assert_eq!(num(&done["entries_evicted"]), 1.0, "{done}");
    assert!(num(&done["blobs_removed"]) >= 1.0, "{done}");
    assert_eq!(ok(&cache, &["list"]).trim(), "no entries");
    assert!(blob_files(&cache).is_empty(), "the crate's blobs are gone");
    ok(&cache, &["verify"]);
}

/// Issue 10 item 12: `kache doctor` checks the set-up and fails when cargo does not use kache.
#[test]
fn doctor_checks_the_setup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let cargo_home = dir.path().join("cargo-home");
    std::fs::create_dir_all(&cargo_home).expect("mkdir");
    let o = wrapped_rustc(&cache, dir.path())
        .output()
        .expect("run kache");
    assert!(o.status.success(), "{o:?}");
    let doctor = |wrapper: Option<&str>| {
        let mut cmd = kache_cmd(&cache, &["doctor"]);
        cmd.env("CARGO_HOME", &cargo_home)
            .env_remove("RUSTC_WRAPPER");
        if let Some(w) = wrapper {
            cmd.env("RUSTC_WRAPPER", w);
        }
        cmd.output().expect("run kache doctor")
    };
    let o = doctor(None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL  wrapper"), "{}", stdout(&o));
    let o = doctor(Some(kache_exe().to_str().expect("UTF-8 path")));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for check in ["wrapper", "cache dir", "reflinks", "toolchain", "remote"] {
        assert!(text.contains(&format!("  {check}: ")), "{check}:\n{text}");
    }
}

/// Issue 10 item 10: every help screen fits 80 columns, even on a wide terminal or a pipe
/// (clap did not wrap at all: lines reached 129 characters), and completions do not offer
/// the hidden flags kache's own detached processes use (`gc --auto`, `sync --background`).
#[test]
fn help_fits_80_columns_and_completions_hide_internal_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let mut screens = vec![vec!["--help"], vec!["-h"]];
    for command in COMMANDS {
        screens.push(vec![command, "--help"]);
        screens.push(vec![command, "-h"]);
    }
    for args in &screens {
        let o = kache_cmd(&cache, args)
            .env("COLUMNS", "200")
            .output()
            .expect("run kache");
        let text = stdout(&o);
        assert!(o.status.success() && !text.is_empty(), "{args:?}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{args:?}: too wide: {line:?}");
        }
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ok(&cache, &["completions", shell]);
        assert!(
            script.contains("dry-run") && script.contains("pull"),
            "{shell}"
        );
        for hidden in ["--auto", "--background", "'auto'", "'background'"] {
            assert!(!script.contains(hidden), "{shell} completes {hidden}");
        }
    }
}

/// Issue 10 item 7: `KACHE_LOG=debug` says what a miss hashed and stored and what a hit
/// restored (it was nearly silent), without colour codes when stderr is not a terminal.
#[test]
fn debug_log_says_what_was_hashed_stored_and_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let run = || {
        let o = wrapped_rustc(&cache, dir.path())
            .env("KACHE_LOG", "debug")
            .output()
            .expect("run kache");
        assert!(o.status.success(), "{o:?}");
        stderr(&o)
    };
    let miss = run();
    for needle in [
        "invocation key",
        "key field",
        "miss: stored entry",
        "hashed",
        "hook.rs",
    ] {
        assert!(miss.contains(needle), "miss log lacks {needle:?}:\n{miss}");
    }
    let hit = run();
    assert!(hit.contains("restored"), "hit log:\n{hit}");
    assert!(
        !miss.contains('\u{1b}') && !hit.contains('\u{1b}'),
        "colour codes in a pipe:\n{miss}"
    );
}

/// The docs match the binary: every command and flag in getting-started's command table is
/// one `kache <command> --help` lists.
#[test]
fn every_documented_command_and_flag_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/getting-started.md"),
    )
    .expect("read getting-started.md");
    let mut checked = 0;
    for row in doc.lines().filter(|l| l.starts_with("| `kache ")) {
        let usage = row.split('`').nth(1).expect("a usage in backticks");
        let mut words = usage.split_whitespace().skip(1);
        let command = words.next().expect("a command");
        let help = ok(&cache, &[command, "--help"]);
        for flag in usage
            .split(|c: char| c.is_whitespace() || "[]|\\".contains(c))
            .filter(|w| w.starts_with("--"))
        {
            assert!(
                help.contains(flag),
                "docs name `kache {command} {flag}`, which --help does not list:\n{help}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 12,
        "the command table was found ({checked} rows)"
    );
    // Issue 10 item 11: the table once left out `sync`; every command has its row.
    for command in COMMANDS {
        assert!(
            doc.contains(&format!("| `kache {command}")),
            "getting-started's command table lacks `kache {command}`"
        );
    }
    // ... and `sync --help` once said it only uploads.
    let sync = ok(&cache, &["sync", "--help"]);
    assert!(
        sync.contains("--push") && sync.contains("--pull") && sync.contains("Download"),
        "{sync}"
    );
}

/// Issue 10 item 9: cargo runs kache in each crate's directory, so a relative `KACHE_DIR`
/// split the cache (one in the project, one inside each dependency's source dir). It is
/// refused: a compile runs without the cache (one warning) and commands exit 2 in one line;
/// nothing is created at the relative path.
#[test]
fn a_relative_cache_dir_is_refused_and_never_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relative = Path::new("rel-cache");
    let o = wrapped_rustc(relative, dir.path())
        .output()
        .expect("run kache");
    assert!(o.status.success(), "{o:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("absolute") && err.contains("compiling without the cache"),
        "{err}"
    );
    assert!(dir.path().join("out/libhook.rlib").is_file(), "rustc ran");
    for args in [&["stats"][..], &["list"][..], &["gc", "--dry-run"][..]] {
        let o = kache_cmd(relative, args)
            .current_dir(dir.path())
            .output()
            .expect("run kache");
        assert_one_line_exit_2(&o, "absolute", &format!("{args:?} with a relative dir"));
    }
    assert!(
        !dir.path().join(relative).exists(),
        "a relative cache dir was created"
    );
}

/// Issue 9 item 12: a first word that is neither a command nor a compiler is an unknown
/// command (exit 2), never a program to run. Before the fix `kache ls` listed the directory
/// and `kache stat x` ran stat(1), because any name found in PATH counted as a compiler.
#[test]
fn a_word_that_is_no_command_and_no_compiler_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let marker = dir.path().join("marker-file-listed-by-ls");
    std::fs::write(&marker, "x").expect("write");
    for args in [
        &["ls", dir.path().to_str().expect("utf-8")][..],
        &["stat", marker.to_str().expect("utf-8")][..],
        &["true"][..],
    ] {
        let o = kache(&cache, args);
        assert_eq!(o.status.code(), Some(2), "kache {args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("unrecognized subcommand"),
            "kache {args:?}: {}",
            stderr(&o)
        );
        assert!(
            !stdout(&o).contains("marker-file"),
            "kache {args:?} ran a program:\n{}",
            stdout(&o)
        );
    }
    // A path to a program that is no compiler still runs unchanged (cargo may hand one over).
    let o = kache(&cache, &["/bin/echo", "ran"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ran\n");
}
