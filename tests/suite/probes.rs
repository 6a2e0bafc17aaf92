//! Cargo's `rustc -vV` / `--print` probes, which it runs through kache before any unit in a
//! target dir without `.rustc_info.json`: once the toolchain is known they are remembered,
//! then answered without starting rustc, with exactly rustc's answers (compared in cargo's
//! own record of them, `.rustc_info.json`), and a probe with other arguments is asked again.

use crate::support::*;
use kache::events::BuildEvent;
use std::collections::BTreeSet;
use std::path::Path;

fn probes(events: &[BuildEvent]) -> Vec<&BuildEvent> {
    events
        .iter()
        .filter(|e| e.passthrough_reason.as_deref() == Some("probe"))
        .collect()
}

/// What cargo recorded as the answers of its probes in `target_dir`: (stdout, stderr) pairs.
fn recorded_answers(target_dir: &Path) -> BTreeSet<(String, String)> {
    let path = target_dir.join(".rustc_info.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let info: serde_json::Value = serde_json::from_str(&text).expect("cargo's rustc info");
    let outputs = info["outputs"].as_object().expect("outputs");
    outputs
        .values()
        .map(|o| {
            assert_eq!(o["success"], true, "a failed probe in {text}");
            let text = |k: &str| o[k].as_str().expect("probe output").to_owned();
            (text("stdout"), text("stderr"))
        })
        .collect()
}

#[test]
fn a_fresh_target_dir_gets_cargos_probes_from_the_memo() {
    let Warmed {
        sandbox: _sandbox,
        mut ws,
        mut log,
        ..
    } = Sandbox::warmed("ws");
    let expected = ws.reference_output(&[], APP_BIN);

    // The toolchain is known now: the probes run once more, and are remembered.
    ws.rm_target();
    ws.kache_build(&[]);
    let events = log.take();
    let asked = probes(&events);
    assert!(!asked.is_empty(), "no probe:\n{}", describe(&events));
    // (cargo asks `-vV` twice: the second time it is remembered already.)
    assert!(
        asked.iter().filter(|e| e.compiler_runs == 1).count() >= 2,
        "probes before any was remembered:\n{}",
        describe(&events)
    );
    let rustc_answers = recorded_answers(&ws.target_dir());
    let version = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let version = String::from_utf8(version.stdout).expect("UTF-8");
    assert!(
        rustc_answers.contains(&(version, String::new())),
        "rustc -vV is not among {rustc_answers:?}"
    );

    // Answered from the memo: no rustc starts, and cargo records rustc's very answers.
    ws.rm_target();
    ws.kache_build(&[]);
    let events = log.take();
    let answered = probes(&events);
    assert_eq!(answered.len(), asked.len(), "{}", describe(&events));
    assert!(
        answered.iter().all(|e| e.compiler_runs == 0),
        "remembered probes ran rustc:\n{}",
        describe(&events)
    );
    assert_all_local_hits(&compiles(&events), "the build after the probes");
    assert_eq!(recorded_answers(&ws.target_dir()), rustc_answers);
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);

    // RUSTFLAGS reach cargo's `--print=cfg` probe: a new question, asked of rustc.
    ws.set_env("RUSTFLAGS", "--cfg kache_probe_test");
    ws.rm_target();
    ws.kache_build(&[]);
    let events = log.take();
    let with_cfg: Vec<_> = probes(&events)
        .into_iter()
        .filter(|e| e.compiler_runs == 1)
        .collect();
    assert!(!with_cfg.is_empty(), "{}", describe(&events));
    let answers = recorded_answers(&ws.target_dir());
    assert!(
        answers
            .iter()
            .any(|(out, _)| out.contains("kache_probe_test")),
        "cargo did not get the cfg: {answers:?}"
    );
    let expected = ws.reference_output(&[], APP_BIN);
    assert_eq!(ws.run_bin(APP_BIN, &[]), expected);
}
