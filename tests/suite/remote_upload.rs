//! Uploads against a real S3-compatible server (moto on 127.0.0.1), issue 9 item 11:
//! - a blob damaged on disk is never packed into a bundle: the entry is dropped locally and
//!   nothing of it reaches the bucket;
//! - uploaders of the same invocation key at the same moment keep each other's candidates
//!   (a reader finds both);
//! - a manifest object an older version wrote is still read (in memory, no server needed).
//!
//! Needs `moto_server` on PATH (`e2e/run-tests` installs it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Barrier, Mutex};

use crate::support_s3::MotoServer;
use kache::key::manifest::{Manifest, ManifestFile};
use kache::remote::s3::S3Remote;
use kache::remote::{RemoteConfig, RemoteError, RemoteStore, entry_object};
use kache::store::{Entry, StatCache, Store, StoredOutput};
use kache::sync::{fetch, upload};

const BUCKET: &str = "kache-upload";
const INVOCATION: &str = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

fn remote(server: &MotoServer) -> S3Remote {
    let vars: HashMap<&str, String> = [
        ("KACHE_REMOTE", format!("s3://{}/team", server.bucket)),
        ("KACHE_S3_ENDPOINT", server.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]
    .into_iter()
    .collect();
    let config = match RemoteConfig::from_env(&|name| vars.get(name).cloned()) {
        Ok(Some(c)) => c,
        other => panic!("config: {other:?}"),
    };
    S3Remote::new(&config).expect("S3 client")
}

fn manifest(source_hash: &str) -> Manifest {
    Manifest {
        files: vec![ManifestFile {
            path: "src/lib.rs".into(),
            hash: source_hash.into(),
        }],
        env: Vec::new(),
    }
}

/// Stores, in a new store at `dir`, an entry of `INVOCATION` compiled from a source with
/// hash `source_hash`, whose one output holds `bytes`; queues it for upload. Returns the
/// store and the entry.
fn stored(dir: &Path, source_hash: &str, bytes: &[u8]) -> (Store, Entry) {
    let store = Store::open(dir).expect("open the store");
    let src = dir.join("output.rlib");
    std::fs::write(&src, bytes).expect("write the output");
    let (blob, size) = store.ingest_blob(&src, false).expect("ingest");
    let m = manifest(source_hash);
    let entry = Entry {
        key: m.entry_key(INVOCATION),
        invocation_key: INVOCATION.into(),
        crate_name: "foo".into(),
        crate_version: None,
        crate_types: vec!["lib".into()],
        outputs: vec![StoredOutput {
            name: "libfoo.rlib".into(),
            blob,
            mode: 0o644,
            size,
        }],
        stdout: Vec::new(),
        stderr: Vec::new(),
        depinfo: None,
        compile_ms: 1.0,
        key_fields: Vec::new(),
    };
    let mut stat = StatCache::new(store.conn());
    store.commit_entry(&entry, &m, &mut stat).expect("commit");
    drop(stat);
    upload::enqueue(dir, &entry.key, INVOCATION).expect("enqueue");
    (store, entry)
}

/// Fetches `INVOCATION` into a fresh store, accepting only `wanted`; the entry key found.
fn fetch_only(remote: &dyn RemoteStore, wanted: &Manifest) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut stat = StatCache::new(store.conn());
    fetch::fetch(
        remote,
        &store,
        &mut stat,
        INVOCATION,
        1 << 30,
        &[],
        &mut |m, _| m == wanted,
    )
    .expect("fetch")
    .map(|f| f.entry_key)
}

#[test]
fn a_blob_damaged_on_disk_is_never_uploaded() {
    let server = MotoServer::start(BUCKET);
    let remote = remote(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, entry) = stored(dir.path(), "h1", &[7u8; 4096]);
    // Bit rot: same size, other bytes.
    let blob = store.blob_path(&entry.outputs[0].blob);
    let mut bytes = std::fs::read(&blob).expect("read the blob");
    bytes[100] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("damage the blob");

    let report = upload::drain(&remote, &store, false, &mut |_| {});
    assert_eq!(
        (report.uploaded, report.dropped, report.remaining),
        (0, 1, 0),
        "{report:?}"
    );
    let object = entry_object(&entry.key).expect("object name");
    assert!(
        !remote.exists(&object).expect("exists"),
        "no bundle uploaded"
    );
    assert!(
        remote.list("v1/").expect("list").is_empty(),
        "nothing of the entry reached the bucket"
    );
    // Healed locally: the entry and its damaged blob are gone, so the next build stores
    // it again.
    assert!(store.load_entry(&entry.key).expect("load").is_none());
    assert!(!blob.exists());
}

/// Lets every uploader read whatever it reads first, then holds each candidate write until
/// all uploaders are about to write theirs: the interleaving in which a read-modify-write
/// of one shared manifest object loses all but one of them.
struct InLockstep<'a> {
    inner: &'a S3Remote,
    before_candidate_write: &'a Barrier,
}

impl RemoteStore for InLockstep<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        self.inner.get(key)
    }
    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        if !key.starts_with("v1/entries/") {
            self.before_candidate_write.wait();
        }
        self.inner.put(key, body)
    }
    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        self.inner.exists(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        self.inner.list(prefix)
    }
}

#[test]
fn concurrent_uploaders_of_one_invocation_key_keep_each_others_candidates() {
    let server = MotoServer::start(BUCKET);
    let remote = remote(&server);
    let uploaders = 3;
    let barrier = Barrier::new(uploaders);
    let dirs: Vec<_> = (0..uploaders)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    std::thread::scope(|s| {
        for (i, dir) in dirs.iter().enumerate() {
            let (remote, barrier) = (&remote, &barrier);
            s.spawn(move || {
                let (store, _) = stored(dir.path(), &format!("h{i}"), &[i as u8; 1000]);
                let lockstep = InLockstep {
                    inner: remote,
                    before_candidate_write: barrier,
                };
                let report = upload::drain(&lockstep, &store, false, &mut |_| {});
                assert_eq!(report.uploaded, 1, "uploader {i}: {report:?}");
            });
        }
    });
    for i in 0..uploaders {
        let wanted = manifest(&format!("h{i}"));
        assert_eq!(
            fetch_only(&remote, &wanted),
            Some(wanted.entry_key(INVOCATION)),
            "uploader {i}'s candidate is on the remote"
        );
    }
}

/// A bucket in memory: the older-version test lays objects out by hand and needs no server.
#[derive(Default)]
struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.objects.lock().expect("memory store poisoned")
    }
}

impl RemoteStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        Ok(self.objects().get(key).cloned())
    }
    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        self.objects().insert(key.to_string(), body.to_vec());
        Ok(())
    }
    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        Ok(self.objects().contains_key(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let objects = self.objects();
        Ok(objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[test]
fn a_manifest_object_written_by_an_older_version_is_still_read() {
    use kache::remote::{candidate_object, manifest_object};
    use kache::sync::{Candidate, RemoteManifests};
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, entry) = stored(dir.path(), "old", &[3u8; 500]);
    let current = MemoryStore::new();
    upload::drain(&current, &store, false, &mut |_| {});
    // The same entry as an older version laid it out: the bundle, and one manifest object
    // listing the candidates of the invocation key.
    let older = MemoryStore::new();
    let object = entry_object(&entry.key).expect("object name");
    let bundle = current.get(&object).expect("get").expect("bundle uploaded");
    older.put(&object, &bundle).expect("put");
    let candidate_name = candidate_object(INVOCATION, &entry.key).expect("name");
    let candidate: Candidate = serde_json::from_slice(
        &current
            .get(&candidate_name)
            .expect("get")
            .expect("candidate uploaded"),
    )
    .expect("candidate parses");
    let legacy = RemoteManifests {
        candidates: vec![candidate],
    };
    older
        .put(
            &manifest_object(INVOCATION).expect("name"),
            &serde_json::to_vec(&legacy).expect("json"),
        )
        .expect("put");
    assert_eq!(
        fetch_only(&older, &manifest("old")),
        Some(entry.key.clone())
    );
}
