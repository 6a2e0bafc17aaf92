//! Sharing through S3, end to end: two "machines" (two cache dirs, two checkouts at different
//! paths) and a real S3-compatible server (moto on 127.0.0.1). Machine A builds and pushes;
//! machine B, starting from an empty cache, restores every path-independent unit from the
//! remote without running rustc. Also: a read-only remote uploads nothing, a dead remote
//! never fails a build, and a tampered object is rejected and compiled locally.
//!
//! Needs `moto_server` on PATH (`e2e/run-tests` installs it).

mod support;
mod support_s3;

use std::process::Command;

use kache::remote::s3::S3Remote;
use kache::remote::{RemoteConfig, RemoteStore, entry_object};
use serde_json::Value;
use support::*;
use support_s3::MotoServer;

const BUCKET: &str = "kache-e2e";
const APP_BIN: &str = "fixture-app";

/// The variables that point a build at the test server.
fn remote_env(server: &MotoServer) -> Vec<(&'static str, String)> {
    vec![
        ("KACHE_REMOTE", format!("s3://{}/shared", server.bucket)),
        ("KACHE_S3_ENDPOINT", server.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn with_remote(ws: &mut Workspace, server: &MotoServer) {
    for (k, v) in remote_env(server) {
        ws.set_env(k, &v);
    }
}

/// `kache sync --push` for a cache dir, with the remote settings.
fn push(cache_dir: &std::path::Path, server: &MotoServer) -> Value {
    let mut cmd = Command::new(kache_bin_under_test());
    cmd.args(["sync", "--push", "--json"])
        .env("KACHE_DIR", cache_dir)
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in remote_env(server) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kache sync --push");
    assert!(
        out.status.success(),
        "kache sync --push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("sync report is JSON");
    report["push"].clone()
}

fn s3(server: &MotoServer) -> S3Remote {
    let vars = remote_env(server);
    let config = RemoteConfig::from_env(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("remote config")
    .expect("remote configured");
    S3Remote::new(&config).expect("client")
}

/// Units whose output embeds their checkout's path: they must miss elsewhere.
fn path_independent(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| crate_name(e) != "fixture_where")
        .cloned()
        .collect()
}

#[test]
fn a_build_on_one_machine_is_a_remote_hit_on_another() {
    let server = MotoServer::start(BUCKET);

    // Machine A: builds, then pushes whatever the background worker has not sent yet.
    let machine_a = Sandbox::new();
    let mut a = machine_a.checkout("home/alice/src/ws");
    with_remote(&mut a, &server);
    let mut log_a = machine_a.cursor();
    a.kache_build(&[]);
    let built = compiles(&log_a.take());
    assert_all(&built, "miss", "machine A, cold");
    let expected = a.run_bin(APP_BIN, &[]);
    let report = push(machine_a.cache_dir(), &server);
    assert_eq!(report["failed"], 0, "push report: {report}");
    assert_eq!(report["remaining"], 0, "push report: {report}");

    // Machine B: another cache, another path, nothing local.
    let machine_b = Sandbox::new();
    let mut b = machine_b.checkout("builds/bob/checkout/ws");
    with_remote(&mut b, &server);
    let mut log_b = machine_b.cursor();
    b.kache_build(&[]);
    let fetched = compiles(&log_b.take());
    assert_no_faults(&fetched, "machine B");
    let shared = path_independent(&fetched);
    assert!(!shared.is_empty(), "machine B compiled nothing?");
    assert_all(&shared, "remote_hit", "machine B, from the remote");
    for e in &shared {
        assert_eq!(e["compiler_runs"], 0, "{}", describe(&shared));
        assert!(e["downloaded_bytes"].as_u64().unwrap_or(0) > 0, "{e}");
    }
    assert_eq!(b.run_bin(APP_BIN, &[]), expected, "machine B's binary");
    assert_eq!(
        b.run_bin("fixture-where", &[]).trim(),
        b.app_manifest_dir(),
        "a unit that embeds its path is compiled for B's checkout"
    );

    // What came from the remote is now local: a rebuild on B is all local hits.
    b.rm_target();
    b.kache_build(&[]);
    let again = path_independent(&compiles(&log_b.take()));
    assert_all_local_hits(&again, "machine B, second build");
}

#[test]
fn pull_fills_an_empty_store_for_offline_builds() {
    let mut server = MotoServer::start(BUCKET);
    let machine_a = Sandbox::new();
    let mut a = machine_a.checkout("a/ws");
    with_remote(&mut a, &server);
    a.kache_build(&[]);
    push(machine_a.cache_dir(), &server);
    let expected = a.run_bin(APP_BIN, &[]);

    // Machine B pulls everything, then builds with the remote gone: all local hits.
    let machine_b = Sandbox::new();
    let mut cmd = Command::new(kache_bin_under_test());
    cmd.args(["sync", "--pull", "--json"])
        .env("KACHE_DIR", machine_b.cache_dir())
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in remote_env(&server) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kache sync --pull");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(
        report["pull"]["fetched"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(report["pull"]["rejected"], 0, "{report}");
    server.stop();

    let b = machine_b.checkout("b/ws");
    let mut log = machine_b.cursor();
    b.kache_build(&[]);
    let events = path_independent(&compiles(&log.take()));
    assert_all_local_hits(&events, "after sync --pull, offline");
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
}

#[test]
fn a_read_only_remote_receives_nothing() {
    let server = MotoServer::start(BUCKET);
    let machine = Sandbox::new();
    let mut ws = machine.checkout("ro/ws");
    with_remote(&mut ws, &server);
    ws.set_env("KACHE_REMOTE_READONLY", "1");
    ws.kache_build(&[]);
    let queue = machine.cache_dir().join("upload-queue");
    let queued = std::fs::read_dir(&queue).map(|d| d.count()).unwrap_or(0);
    assert_eq!(queued, 0, "a read-only remote must queue no uploads");

    // A second machine with a writable remote finds nothing to fetch.
    let other = Sandbox::new();
    let mut ws2 = other.checkout("rw/ws");
    with_remote(&mut ws2, &server);
    let mut log = other.cursor();
    ws2.kache_build(&[]);
    let events = compiles(&log.take());
    assert_eq!(count(&events, "remote_hit"), 0, "{}", describe(&events));
}

#[test]
fn a_dead_remote_never_fails_the_build() {
    let mut server = MotoServer::start(BUCKET);
    let endpoint_env = remote_env(&server);
    server.stop();
    let machine = Sandbox::new();
    let mut ws = machine.checkout("offline/ws");
    for (k, v) in endpoint_env {
        ws.set_env(k, &v);
    }
    ws.set_env("KACHE_REMOTE_BUDGET_MS", "500");
    let mut log = machine.cursor();
    let reference = ws.reference_output(&[], APP_BIN);
    ws.kache_build(&[]);
    let events = compiles(&log.take());
    assert_eq!(count(&events, "remote_hit"), 0);
    assert_eq!(
        count(&events, "miss"),
        events.len(),
        "every unit compiles locally: {}",
        describe(&events)
    );
    assert_eq!(ws.run_bin(APP_BIN, &[]), reference);
}

#[test]
fn a_tampered_object_is_rejected_and_compiled_locally() {
    let server = MotoServer::start(BUCKET);
    let machine_a = Sandbox::new();
    let mut a = machine_a.checkout("a/ws");
    with_remote(&mut a, &server);
    let mut log_a = machine_a.cursor();
    a.kache_build(&[]);
    let built = compiles(&log_a.take());
    push(machine_a.cache_dir(), &server);
    let expected = a.run_bin(APP_BIN, &[]);

    // Flip the library that the binary links: replace its bundle with other bytes.
    let core = built
        .iter()
        .find(|e| crate_name(e) == "fixture_core")
        .expect("fixture_core was compiled");
    let key = core["cache_key"].as_str().expect("cache key");
    let object = entry_object(key).expect("object name");
    let remote = s3(&server);
    let mut bytes = remote.get(&object).expect("get").expect("bundle uploaded");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    remote.put(&object, &bytes).expect("put tampered");

    let machine_b = Sandbox::new();
    let mut b = machine_b.checkout("b/ws");
    with_remote(&mut b, &server);
    let mut log_b = machine_b.cursor();
    let out = b.kache_build(&[]);
    let events = compiles(&log_b.take());
    let core_b = of_crate(&events, "fixture_core");
    assert!(
        core_b.iter().all(|e| result(e) == "miss"),
        "the tampered entry must be compiled locally: {}",
        describe(&events)
    );
    let warnings = kache_lines(&out);
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("rejected") || l.contains("bundle")),
        "expected a warning about the rejected object, got {warnings:?}"
    );
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
}
