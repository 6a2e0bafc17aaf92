//! Sharing through S3, end to end: two "machines" (two cache dirs, two checkouts at different
//! paths) and a real S3-compatible server (moto on 127.0.0.1). Machine A builds and pushes;
//! machine B, starting from an empty cache, restores every path-independent unit from the
//! remote without running rustc. Also: a read-only remote uploads nothing, a dead remote
//! never fails a build, and a tampered object is rejected and compiled locally. Crafted
//! objects with valid keys and blobs cannot write outside `target/` nor make kache hash a
//! device or a FIFO.
//!
//! Needs `moto_server` on PATH (`e2e/run-tests` installs it).

use std::process::Command;

use crate::support::*;
use crate::support_s3::MotoServer;
use kache::remote::s3::S3Remote;
use kache::remote::{RemoteConfig, RemoteStore, entry_object};
use serde_json::Value;

const BUCKET: &str = "kache-e2e";
const APP_BIN: &str = "fixture-app";

fn with_remote(ws: &mut Workspace, server: &MotoServer) {
    for (k, v) in server.kache_env() {
        ws.set_env(k, &v);
    }
}

/// `kache sync --push` for a cache dir, with the remote settings.
fn push(cache_dir: &std::path::Path, server: &MotoServer) -> Value {
    let mut cmd = Command::new(kache_bin_under_test());
    cmd.args(["sync", "--push", "--json"])
        .env("KACHE_DIR", cache_dir)
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in server.kache_env() {
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
    let vars = server.kache_env();
    let config = RemoteConfig::from_env(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("remote config")
    .expect("remote configured");
    S3Remote::new(&config).expect("client")
}

/// A request to the test server, tried a few times: on a loaded machine one can time out.
fn retried<T, E: std::fmt::Display>(what: &str, mut request: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..3 {
        match request() {
            Ok(v) => return v,
            Err(e) => last = Some(e.to_string()),
        }
    }
    panic!("{what}: {}", last.unwrap_or_default())
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
    assert_all(&built, Outcome::Miss, "machine A, cold");
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
    assert_all(&shared, Outcome::RemoteHit, "machine B, from the remote");
    for e in &shared {
        assert_eq!(e.compiler_runs, 0, "{}", describe(&shared));
        assert!(e.downloaded_bytes > 0, "{e:?}");
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
    for (k, v) in server.kache_env() {
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
    assert_eq!(
        count(&events, Outcome::RemoteHit),
        0,
        "{}",
        describe(&events)
    );
}

#[test]
fn a_dead_remote_never_fails_the_build() {
    let mut server = MotoServer::start(BUCKET);
    let endpoint_env = server.kache_env();
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
    assert_eq!(count(&events, Outcome::RemoteHit), 0);
    assert_eq!(
        count(&events, Outcome::Miss),
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
    let key = core.cache_key.as_deref().expect("cache key");
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
        core_b.iter().all(|e| e.result == Outcome::Miss),
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

/// A remote entry is outside data even with the right key and valid blobs: one whose output
/// is named by an absolute path outside `target/` (setuid), one whose dep-info name climbs
/// out of the out dir, and entries whose recorded modes are setuid, setgid, sticky and
/// world-writable. The first two are compiled locally, nothing is written outside `target/`,
/// and no restored file keeps a mode bit beyond 0o755.
#[test]
fn a_crafted_remote_entry_writes_nothing_outside_target_and_no_setuid_file() {
    use kache::remote::bundle::{self, Source};
    let server = MotoServer::start(BUCKET);
    let machine_a = Sandbox::new();
    let mut a = machine_a.checkout("a/ws");
    with_remote(&mut a, &server);
    let mut log_a = machine_a.cursor();
    a.kache_build(&[]);
    let built = compiles(&log_a.take());
    push(machine_a.cache_dir(), &server);
    let expected = a.run_bin(APP_BIN, &[]);

    let machine_b = Sandbox::new();
    // `b/ws/target/debug/deps/../../../../x` is `<machine B>/x`.
    let outside = machine_b.root().join("evil-setuid");
    let climbed = machine_b.root().join("x");
    for e in &built {
        let Some(key) = e.cache_key.as_deref() else {
            continue;
        };
        // A client per entry: each has a time budget meant for one build step.
        let remote = s3(&server);
        let object = entry_object(key).expect("object name");
        let bytes = retried("get a bundle", || remote.get(&object)).expect("bundle uploaded");
        let unpacked = bundle::unpack(&bytes, u64::MAX).expect("unpack");
        let mut meta: Value = serde_json::from_slice(&unpacked.meta).expect("meta JSON");
        let attack = match crate_name(e) {
            "fixture_core" => EntryAttack::OutputAt(&outside),
            "fixture_macros" => EntryAttack::DepInfoNamed("../../../../x"),
            _ => EntryAttack::EveryModePrivileged,
        };
        attack_entry(&mut meta, &attack);
        let files: Vec<(&str, Source)> = unpacked
            .files
            .iter()
            .map(|(name, data)| (name.as_str(), Source::Bytes(data)))
            .collect();
        let meta = serde_json::to_vec(&meta).expect("JSON");
        let crafted = bundle::pack(&meta, &files).expect("pack");
        retried("put the crafted bundle", || remote.put(&object, &crafted));
    }

    let mut b = machine_b.checkout("b/ws");
    with_remote(&mut b, &server);
    let mut log_b = machine_b.cursor();
    b.kache_build(&[]);
    let events = compiles(&log_b.take());
    assert!(!outside.exists(), "an output was written outside target/");
    assert!(!climbed.exists(), "a dep-info file climbed out of target/");
    assert_eq!(
        privileged_files(machine_b.root()),
        Vec::<String>::new(),
        "restored files must not be setuid/setgid/sticky or group/other-writable"
    );
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
    for name in ["fixture_core", "fixture_macros"] {
        let theirs = of_crate(&events, name);
        assert!(
            theirs.len() == 1 && theirs[0].result == Outcome::Miss,
            "{name} is compiled: its crafted entry cannot be used\n{}",
            describe(&events)
        );
    }
    assert!(
        count(&events, Outcome::RemoteHit) > 0,
        "entries with masked modes are still used\n{}",
        describe(&events)
    );
}

/// A remote manifest names the local files kache will hash to check it. Crafted candidates
/// (each with a correct entry key) naming `/dev/zero`, a FIFO in the checkout, and a path
/// climbing out of the workspace to `/dev/zero` must neither hang the build (the remote
/// budget does not cover local hashing) nor match: they are skipped, and the genuine
/// candidate behind them is still a remote hit.
#[test]
fn a_remote_manifest_naming_a_device_or_a_fifo_never_hangs_the_build() {
    use kache::key::manifest::ManifestFile;
    use kache::remote::{candidate_object, manifest_object};
    use kache::sync::{Candidate, RemoteManifests};
    let server = MotoServer::start(BUCKET);
    let machine_a = Sandbox::new();
    let mut a = machine_a.checkout("a/ws");
    with_remote(&mut a, &server);
    let mut log_a = machine_a.cursor();
    a.kache_build(&[]);
    let built = compiles(&log_a.take());
    push(machine_a.cache_dir(), &server);
    let expected = a.run_bin(APP_BIN, &[]);

    let core_entry = built
        .iter()
        .find(|e| crate_name(e) == "fixture_core")
        .and_then(|e| e.cache_key.as_deref())
        .expect("fixture_core was stored");
    let conn = rusqlite::Connection::open(machine_a.cache_dir().join("index.db")).expect("index");
    let invocation_key: String = conn
        .query_row(
            "SELECT invocation_key FROM manifests WHERE entry = ?1",
            [core_entry],
            |r| r.get(0),
        )
        .expect("core's invocation key");
    drop(conn);
    // Each candidate is its own object; the crafted ones go beside the genuine one, which is
    // moved to the older single-object layout (read after every candidate object): so every
    // crafted candidate is looked at before the genuine one matches.
    let remote = s3(&server);
    let genuine_object = candidate_object(&invocation_key, core_entry).expect("object name");
    let bytes = remote
        .get(&genuine_object)
        .expect("get")
        .expect("candidate uploaded");
    let genuine: Candidate = serde_json::from_slice(&bytes).expect("candidate JSON");
    retried("hide the genuine candidate", || {
        remote.put(&genuine_object, b"not a candidate")
    });
    let mut crafted = Vec::new();
    for path in [
        "${ws}/fifo",
        "/dev/zero",
        "crates/core/../../../../../../dev/zero",
    ] {
        let mut manifest = genuine.manifest.clone();
        manifest.files.insert(
            0,
            ManifestFile {
                path: path.into(),
                hash: "0".repeat(64),
            },
        );
        let candidate = Candidate {
            entry: manifest.entry_key(&invocation_key),
            manifest,
        };
        let object = candidate_object(&invocation_key, &candidate.entry).expect("object name");
        let json = serde_json::to_vec(&candidate).expect("JSON");
        retried("put a crafted candidate", || remote.put(&object, &json));
        crafted.push(candidate);
    }
    crafted.push(genuine);
    let manifests = RemoteManifests {
        candidates: crafted,
    };
    let json = serde_json::to_vec(&manifests).expect("JSON");
    let object = manifest_object(&invocation_key).expect("object name");
    retried("put the crafted manifest", || remote.put(&object, &json));

    let machine_b = Sandbox::new();
    let mut b = machine_b.checkout("b/ws");
    let fifo = b.path("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", fifo.display());
    with_remote(&mut b, &server);
    let mut log_b = machine_b.cursor();
    let out = b
        .kache(&["build", "--locked"])
        .run_within(std::time::Duration::from_secs(300))
        .expect("the build hung on a file the remote manifest named");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let events = compiles(&log_b.take());
    assert_no_faults(&events, "crafted manifests");
    let core = of_crate(&events, "fixture_core");
    assert!(
        core.len() == 1 && core[0].result == Outcome::RemoteHit,
        "the genuine candidate still matches\n{}",
        describe(&events)
    );
    assert_eq!(b.run_bin(APP_BIN, &[]), expected);
}
