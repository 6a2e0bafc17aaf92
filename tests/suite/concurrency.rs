//! Concurrency: builds and rustc processes racing on one store.
//!
//! - Four `cargo build`s of four checkouts of the fixture at once against an empty store,
//!   then again (fresh target dirs) against the warm one: every build succeeds with the
//!   right output, the second round is all hits, and `kache verify` finds a clean store.
//! - Eight rustc invocations at once that all store the same key (same crate, same
//!   arguments, different out dirs), for three different keys, then once more to hit:
//!   every output is right, each key is stored once, and the store stays consistent.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Barrier;

use crate::support::*;

#[test]
fn four_builds_at_once_cold_then_warm() {
    let sandbox = Sandbox::new();
    let checkouts: Vec<Workspace> = (0..4)
        .map(|i| sandbox.checkout(&format!("c{i}/{}ws", "deeper/".repeat(i))))
        .collect();
    let expected = checkouts[0].reference_output(&[], APP_BIN);
    let mut log = sandbox.cursor();

    build_all_at_once(&checkouts, "cold round");
    let cold = compiles(&log.take());
    assert_no_faults(&cold, "cold round");
    let every_unit = units(&cold);
    for ws in &checkouts {
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "cold round output");
        assert_eq!(ws.run_bin(WHERE_BIN, &[]), ws.app_manifest_dir());
    }
    verify(sandbox.cache_dir(), false).assert_clean("after the cold round");

    for ws in &checkouts {
        ws.rm_target();
    }
    build_all_at_once(&checkouts, "warm round");
    let warm = compiles(&log.take());
    assert_no_faults(&warm, "warm round");
    assert_eq!(units(&warm), every_unit, "warm round\n{}", describe(&warm));
    // Each checkout's own fixture-where was stored in the cold round, so even it hits.
    assert_all_local_hits(&warm, "warm round");
    assert_eq!(warm.len(), cold.len(), "warm round: one event per unit");
    for ws in &checkouts {
        assert_eq!(ws.run_bin(APP_BIN, &[]), expected, "warm round output");
        assert_eq!(ws.run_bin(WHERE_BIN, &[]), ws.app_manifest_dir());
    }
    verify(sandbox.cache_dir(), false).assert_clean("after the warm round");
}

fn build_all_at_once(checkouts: &[Workspace], context: &str) {
    let start = Barrier::new(checkouts.len());
    std::thread::scope(|scope| {
        let builds: Vec<_> = checkouts
            .iter()
            .map(|ws| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    ws.kache_build(&[])
                })
            })
            .collect();
        for build in builds {
            build
                .join()
                .unwrap_or_else(|_| panic!("{context}: a build failed (see its panic above)"));
        }
    });
}

const RACERS: usize = 8;

#[test]
fn rustc_processes_racing_to_store_the_same_key() {
    let sandbox = Sandbox::new();
    let rustc = real_rustc();
    let src = sandbox.root().join("race");
    fs::create_dir_all(&src).expect("create the race dir");
    fs::write(
        src.join("main.rs"),
        "fn main() { println!(\"{}\", racer::value()); }\n",
    )
    .expect("write main.rs");
    let mut log = sandbox.cursor();

    for round in 0..4 {
        // Three rounds store a new key each; the last one repeats round 2's key.
        let value = if round == 3 { 2 } else { round };
        fs::write(
            src.join("lib.rs"),
            format!("pub fn value() -> String {{ format!(\"racer-{value}\") }}\n"),
        )
        .expect("write lib.rs");
        let out_dirs: Vec<PathBuf> = (0..RACERS)
            .map(|i| sandbox.root().join(format!("out/round{round}/racer{i}")))
            .collect();
        let start = Barrier::new(RACERS);
        std::thread::scope(|scope| {
            for out in &out_dirs {
                let (start, rustc, src, cache) = (&start, &rustc, &src, sandbox.cache_dir());
                scope.spawn(move || {
                    fs::create_dir_all(out).expect("create an out dir");
                    start.wait();
                    compile_racer(cache, rustc, src, out);
                });
            }
        });
        for out in &out_dirs {
            let printed = Command::new(out.join("race_bin"))
                .output()
                .expect("run the racer binary");
            assert_eq!(
                String::from_utf8_lossy(&printed.stdout).trim(),
                format!("racer-{value}"),
                "round {round}: {} prints its own round's value",
                out.display()
            );
        }
        let events = compiles(&log.take());
        assert_no_faults(&events, &format!("round {round}"));
        assert_eq!(
            events.len(),
            2 * RACERS,
            "round {round}: one event per rustc"
        );
        for name in ["racer", "race_bin"] {
            let theirs = of_crate(&events, name);
            let keys: BTreeSet<&str> = theirs
                .iter()
                .map(|e| e.cache_key.as_deref().expect("a cached event has a key"))
                .collect();
            assert_eq!(
                keys.len(),
                1,
                "round {round}: every {name} has the same key\n{}",
                describe(&theirs)
            );
            if round == 3 {
                assert_all_local_hits(&theirs, "round 3 repeats round 2");
            } else {
                assert!(
                    count(&theirs, Outcome::Miss) >= 1,
                    "round {round}: someone compiled {name}\n{}",
                    describe(&theirs)
                );
            }
        }
        verify(sandbox.cache_dir(), false).assert_clean(&format!("after round {round}"));
    }
}

/// `kache rustc` for the library, then for the binary using it, both into `out`.
fn compile_racer(cache_dir: &Path, rustc: &Path, src: &Path, out: &Path) {
    let out_str = out.to_str().expect("UTF-8 path");
    let rlib = out.join("libracer-race.rlib");
    let lib_args = [
        "--crate-name",
        "racer",
        "--edition=2021",
        "lib.rs",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "metadata=race",
        "-C",
        "extra-filename=-race",
        "--out-dir",
        out_str,
    ];
    run_wrapped(cache_dir, rustc, src, &lib_args);
    let extern_arg = format!("racer={}", rlib.display());
    let dependency = format!("dependency={out_str}");
    let bin_args = [
        "--crate-name",
        "race_bin",
        "--edition=2021",
        "main.rs",
        "--crate-type",
        "bin",
        "--emit=dep-info,link",
        "--extern",
        &extern_arg,
        "-L",
        &dependency,
        "--out-dir",
        out_str,
    ];
    run_wrapped(cache_dir, rustc, src, &bin_args);
}

fn run_wrapped(cache_dir: &Path, rustc: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(kache_bin());
    cmd.arg(rustc).args(args).current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("KACHE_") || k.starts_with("CARGO_"))
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("KACHE_DIR", cache_dir);
    let output = cmd.output().expect("run kache");
    assert!(
        output.status.success(),
        "kache rustc {args:?} failed ({})\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The rustc cargo would run: `<sysroot>/bin/rustc`, not the rustup proxy.
fn real_rustc() -> PathBuf {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    assert!(output.status.success(), "rustc --print sysroot failed");
    let sysroot = String::from_utf8(output.stdout).expect("UTF-8 sysroot");
    let rustc = Path::new(sysroot.trim()).join("bin/rustc");
    assert!(rustc.is_file(), "no rustc at {}", rustc.display());
    rustc
}
