//! The S3 remote against a real S3-compatible server (moto on 127.0.0.1). The bundle format
//! against crafted hostile input is tested once, by the unit tests in `src/remote/bundle.rs`.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`); the tests fail, and say so,
//! when it is missing. Talks to nothing but loopback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support_s3::MotoServer;
use kache::remote::breaker::{Breaker, MissCache};
use kache::remote::bundle::{self, Source};
use kache::remote::guard::Guarded;
use kache::remote::s3::S3Remote;
use kache::remote::{RemoteConfig, RemoteError, RemoteStore, entry_object, manifest_object};

const BUCKET: &str = "kache-test";

fn config_with(server: &MotoServer, extra: &[(&str, &str)]) -> RemoteConfig {
    let mut vars: HashMap<String, String> = [
        ("KACHE_REMOTE", format!("s3://{}/team/ci", server.bucket)),
        ("KACHE_S3_ENDPOINT", server.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    match RemoteConfig::from_env(&|name| vars.get(name).cloned()) {
        Ok(Some(c)) => c,
        other => panic!("config: {other:?}"),
    }
}

fn remote(server: &MotoServer, extra: &[(&str, &str)]) -> S3Remote {
    S3Remote::new(&config_with(server, extra)).expect("S3 client")
}

fn key(n: u8) -> String {
    format!("{n:02x}{}", "0123456789abcdef".repeat(4))
}

#[test]
fn put_get_exists_round_trip_and_missing_keys() {
    let server = MotoServer::start(BUCKET);
    let remote = remote(&server, &[]);
    let entry = entry_object(&key(1)).expect("key");
    let manifest = manifest_object(&key(1)).expect("key");

    assert!(
        matches!(remote.get(&entry), Ok(None)),
        "missing key is a miss"
    );
    assert!(matches!(remote.exists(&entry), Ok(false)));

    // Incompressible-ish body of a few MiB, to exercise more than one read.
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    remote.put(&entry, &body).expect("put entry");
    remote.put(&manifest, br#"{"m":1}"#).expect("put manifest");
    assert!(matches!(remote.exists(&entry), Ok(true)));
    assert_eq!(remote.get(&entry).expect("get").as_deref(), Some(&body[..]));
    assert_eq!(
        remote.get(&manifest).expect("get").as_deref(),
        Some(&br#"{"m":1}"#[..])
    );
    // Overwriting is allowed (objects are content-addressed).
    remote.put(&manifest, br#"{"m":1}"#).expect("put again");

    // The objects live under the configured prefix.
    let unprefixed = S3Remote::new(&RemoteConfig {
        prefix: String::new(),
        ..config_with(&server, &[])
    })
    .expect("client");
    assert!(matches!(
        unprefixed.exists(&format!("team/ci/{entry}")),
        Ok(true)
    ));
    assert!(matches!(unprefixed.exists(&entry), Ok(false)));

    // A bundle survives the trip.
    let packed = bundle::pack(
        br#"{"outputs":2}"#,
        &[
            ("libfoo.rlib", Source::Bytes(&body[..100_000])),
            ("foo.d", Source::Bytes(b"foo.rs:")),
        ],
    )
    .expect("pack");
    let bundle_key = entry_object(&key(2)).expect("key");
    remote.put(&bundle_key, &packed).expect("put bundle");
    let fetched = remote.get(&bundle_key).expect("get").expect("present");
    let unpacked = bundle::unpack(&fetched, 1 << 30).expect("unpack");
    assert_eq!(unpacked.meta, br#"{"outputs":2}"#);
    assert_eq!(unpacked.files[0].1, &body[..100_000]);

    // An object larger than the bound is refused, not buffered.
    let small = S3Remote::new(&RemoteConfig {
        max_object_bytes: 1000,
        ..config_with(&server, &[])
    })
    .expect("client");
    assert!(matches!(
        small.get(&entry),
        Err(RemoteError::TooLarge { limit: 1000 })
    ));

    // Figures for the wiring: client construction and a small GET on loopback.
    let start = Instant::now();
    let fresh = remote_for_timing(&server);
    let construct = start.elapsed();
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert!(matches!(fresh.get(&manifest), Ok(Some(_))));
            t.elapsed()
        })
        .collect();
    times.sort();
    let miss = Instant::now();
    assert!(matches!(
        fresh.get(&entry_object(&key(9)).expect("key")),
        Ok(None)
    ));
    eprintln!(
        "S3Remote::new {construct:?}; GET small object on loopback: median {:?}, max {:?}; \
         GET miss {:?}",
        times[times.len() / 2],
        times[times.len() - 1],
        miss.elapsed()
    );
}

fn remote_for_timing(server: &MotoServer) -> S3Remote {
    remote(server, &[("KACHE_REMOTE_BUDGET_MS", "60000")])
}

#[test]
fn read_only_refuses_put_but_reads() {
    let server = MotoServer::start(BUCKET);
    let writer = remote(&server, &[]);
    let reader = remote(&server, &[("KACHE_REMOTE_READONLY", "1")]);
    let present = entry_object(&key(3)).expect("key");
    let refused = entry_object(&key(4)).expect("key");
    writer.put(&present, b"shared").expect("put");

    assert!(matches!(
        reader.put(&refused, b"nope"),
        Err(RemoteError::ReadOnly)
    ));
    assert!(
        matches!(writer.exists(&refused), Ok(false)),
        "nothing was written"
    );
    assert_eq!(
        reader.get(&present).expect("get").as_deref(),
        Some(&b"shared"[..])
    );
    assert!(matches!(reader.exists(&present), Ok(true)));
}

#[test]
fn credentials_from_a_profile_file() {
    let server = MotoServer::start(BUCKET);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n\
         [ci]\naws_access_key_id = AKIAPROFILEKEY0000\naws_secret_access_key = profile-secret\n",
    )
    .expect("write credentials");
    let file = file.to_string_lossy().into_owned();
    // Empty values read as unset, so this drops the static keys `config_with` provides.
    let profile = |name: &str| {
        config_with(
            &server,
            &[
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("AWS_PROFILE", name),
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ],
        )
    };
    let config = profile("ci");
    assert!(matches!(
        config.credentials,
        kache::remote::Credentials::Profile { .. }
    ));
    let remote = S3Remote::new(&config).expect("client from profile");
    let shown = format!("{remote:?}");
    assert!(!shown.contains("profile-secret") && !shown.contains("AKIAPROFILEKEY0000"));
    let k = manifest_object(&key(5)).expect("key");
    remote.put(&k, b"{}").expect("put with profile credentials");
    assert!(matches!(remote.exists(&k), Ok(true)));

    assert!(matches!(
        S3Remote::new(&profile("absent")),
        Err(RemoteError::Config(_))
    ));
}

#[test]
fn stopped_server_fails_fast_and_opens_the_breaker() {
    let mut server = MotoServer::start(BUCKET);
    let remote = remote(&server, &[]);
    let k = entry_object(&key(6)).expect("key");
    remote.put(&k, b"x").expect("put while up");
    server.stop();

    let start = Instant::now();
    let r = remote.get(&k);
    assert!(
        matches!(r, Err(ref e) if e.is_remote_failure()),
        "expected a remote failure, got {r:?}"
    );
    assert!(matches!(remote.exists(&k), Err(ref e) if e.is_remote_failure()));
    assert!(matches!(remote.put(&k, b"y"), Err(ref e) if e.is_remote_failure()));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );

    // Through the failure policy: after the threshold every process skips the remote.
    let cache = tempfile::tempdir().expect("cache dir");
    let guarded = Guarded::with_parts(
        remote,
        Breaker::new(cache.path(), 2, Duration::from_secs(60)),
        MissCache::new(cache.path(), Duration::from_secs(60)),
    );
    assert!(matches!(guarded.get(&k), Err(ref e) if e.is_remote_failure()));
    assert!(matches!(guarded.get(&k), Err(ref e) if e.is_remote_failure()));
    let start = Instant::now();
    assert!(matches!(guarded.get(&k), Err(RemoteError::BreakerOpen)));
    assert!(start.elapsed() < Duration::from_millis(100));
    assert!(Breaker::new(cache.path(), 2, Duration::from_secs(60)).is_open());
}
