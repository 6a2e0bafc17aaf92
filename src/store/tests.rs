use super::*;
use crate::key::manifest::ManifestFile;

fn entry(key: &str, blob: &str) -> Entry {
    Entry {
        key: key.into(),
        invocation_key: format!("inv-{key}"),
        crate_name: "foo".into(),
        crate_version: Some("1.0.0".into()),
        crate_types: vec!["lib".into()],
        outputs: vec![StoredOutput {
            name: "libfoo.rlib".into(),
            blob: blob.into(),
            mode: 0o644,
            size: 3,
        }],
        stdout: Vec::new(),
        stderr: b"warning".to_vec(),
        depinfo: None,
        compile_ms: 12.5,
        key_fields: Vec::new(),
    }
}

fn manifest() -> Manifest {
    Manifest {
        files: vec![ManifestFile {
            path: "src/lib.rs".into(),
            hash: "h".into(),
        }],
        env: Vec::new(),
    }
}

fn refs(store: &Store, blob: &str) -> Option<i64> {
    store
        .conn()
        .query_row("SELECT refs FROM blobs WHERE hash = ?1", [blob], |r| {
            r.get(0)
        })
        .optional()
        .expect("query")
}

#[test]
fn commit_load_and_refcounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let blob = store.blob_path("b1");
    std::fs::create_dir_all(blob.parent().expect("fan-out dir")).expect("mkdir");
    std::fs::write(&blob, b"abc").expect("write the blob");
    let mut stat = StatCache::new(store.conn());
    store
        .commit_entry(&entry("k1", "b1"), &manifest(), &mut stat)
        .expect("commit");
    // Committing the same key twice must not count its blobs twice.
    store
        .commit_entry(&entry("k1", "b1"), &manifest(), &mut stat)
        .expect("commit again");
    store
        .commit_entry(&entry("k2", "b1"), &manifest(), &mut stat)
        .expect("commit k2");
    assert_eq!(refs(&store, "b1"), Some(2));
    let loaded = store.load_entry("k1").expect("load").expect("present");
    assert_eq!(loaded, entry("k1", "b1"));
    let manifests = store.manifests("inv-k1").expect("manifests");
    assert_eq!(manifests, vec![("k1".to_string(), manifest())]);

    assert!(store.remove_entry("k1").expect("remove").is_empty());
    assert_eq!(refs(&store, "b1"), Some(1));
    assert!(store.manifests("inv-k1").expect("manifests").is_empty());
    assert_eq!(
        store.remove_entry("k2").expect("remove"),
        vec!["b1".to_string()]
    );
    assert_eq!(refs(&store, "b1"), None);
}

#[test]
fn identical_outputs_share_one_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let a = dir.path().join("a.rlib");
    let b = dir.path().join("b.bin");
    std::fs::write(&a, b"same bytes").expect("write");
    std::fs::write(&b, b"same bytes").expect("write");
    let (ha, _) = store.ingest_blob(&a, true).expect("ingest a");
    let (hb, size) = store.ingest_blob(&b, false).expect("ingest b");
    assert_eq!(ha, hb);
    assert_eq!(size, 10);
    let blob = store.blob_path(&ha);
    assert_eq!(std::fs::read(&blob).expect("read"), b"same bytes");
    // Owner-writable like rustc's own outputs, so a hardlinked output never stops cargo
    // without kache from rebuilding over it; never group/other-writable.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&blob).expect("meta").permissions().mode();
    assert_eq!(mode & 0o7777, 0o644);
    let leftovers = std::fs::read_dir(dir.path().join("cache/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn a_corrupt_index_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.db"), vec![0x42u8; 8192]).expect("write");
    let store = Store::open(dir.path()).expect("open heals");
    assert!(store.manifests("x").expect("query").is_empty());
}

#[test]
fn a_file_is_not_a_cache_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    std::fs::write(&file, b"").expect("write");
    assert!(matches!(
        Store::open(&file),
        Err(StoreError::NotADirectory(_))
    ));
}

#[test]
fn stat_cache_skips_unchanged_old_files_and_rehashes_changed_ones() {
    use crate::key::FileHasher;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let src = dir.path().join("lib.rs");
    std::fs::write(&src, b"fn a() {}").expect("write");
    let later = fsutil::now_ns() + 60_000_000_000;

    // A file changed in the last two seconds is hashed and not remembered.
    let mut stat = StatCache::new(store.conn());
    let h1 = stat.hash_file(&src).expect("hash");
    assert!(!stat.has_pending(), "a fresh file must not be remembered");

    // A minute later it is old enough to remember...
    let mut stat = StatCache::at(store.conn(), later);
    assert_eq!(stat.hash_file(&src).expect("hash"), h1);
    store.flush_stat_cache(&mut stat).expect("flush");
    // ...and then comes from the cache without being read.
    let mut stat = StatCache::at(store.conn(), later);
    assert_eq!(stat.hash_file(&src).expect("hash"), h1);
    assert_eq!(
        stat.files_hashed, 0,
        "unchanged file must come from the cache"
    );

    // Same size, mtime put back: the ctime still moves, so the edit is seen.
    let mtime = std::fs::metadata(&src)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&src, b"fn b() {}").expect("edit");
    std::fs::File::options()
        .write(true)
        .open(&src)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
    let mut stat = StatCache::at(store.conn(), later);
    assert_ne!(stat.hash_file(&src).expect("hash"), h1);
    assert_eq!(stat.files_hashed, 1);
}

#[test]
fn derived_hashes_are_remembered_by_stamp_and_variant_apart_from_the_file_hash() {
    use crate::key::FileHasher;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let text = dir.path().join("lib.pc");
    std::fs::write(&text, b"prefix=/somewhere").expect("write");
    let later = fsutil::now_ns() + 60_000_000_000;
    let mut derivations = 0;
    let derive = |tag: &'static str| {
        move |p: &Path| -> std::io::Result<crate::key::ContentHash> {
            Ok(format!("{tag}:{}", std::fs::read_to_string(p)?))
        }
    };
    let mut stat = StatCache::at(store.conn(), later);
    let a = stat
        .derived_hash(&text, "a", &mut derive("a"))
        .expect("derive");
    let b = stat
        .derived_hash(&text, "b", &mut derive("b"))
        .expect("derive");
    assert_eq!(
        (a.as_str(), b.as_str()),
        ("a:prefix=/somewhere", "b:prefix=/somewhere")
    );
    let plain = stat.hash_file(&text).expect("hash");
    assert_ne!(
        plain, a,
        "a derived hash never stands in for the content hash"
    );
    store.flush_stat_cache(&mut stat).expect("flush");

    // Another process: each variant answered from the index, the file not read.
    let mut stat = StatCache::at(store.conn(), later);
    let mut counted = |p: &Path| -> std::io::Result<crate::key::ContentHash> {
        derivations += 1;
        derive("a")(p)
    };
    assert_eq!(
        stat.derived_hash(&text, "a", &mut counted).expect("derive"),
        a
    );
    assert_eq!(stat.hash_file(&text).expect("hash"), plain);
    assert_eq!((derivations, stat.files_hashed), (0, 0));

    // Changed: derived again.
    std::fs::write(&text, b"prefix=/elsewhere").expect("edit");
    let mut stat = StatCache::at(store.conn(), later);
    let again = stat
        .derived_hash(&text, "a", &mut derive("a"))
        .expect("derive");
    assert_eq!(again, "a:prefix=/elsewhere");
}

#[test]
fn gc_forgets_remembered_files_that_no_longer_exist() {
    use crate::key::FileHasher;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let (kept, gone) = (dir.path().join("kept.rs"), dir.path().join("gone.rs"));
    std::fs::write(&kept, b"fn kept() {}").expect("write");
    std::fs::write(&gone, b"fn gone() {}").expect("write");
    let later = fsutil::now_ns() + 60_000_000_000;
    let mut stat = StatCache::at(store.conn(), later);
    let mut read = |p: &Path| crate::key::hash_file_contents(p);
    for f in [&kept, &gone] {
        stat.hash_file(f).expect("hash");
        stat.derived_hash(f, "roots-templated:0123", &mut read)
            .expect("derive");
    }
    store.flush_stat_cache(&mut stat).expect("flush");
    std::fs::remove_file(&gone).expect("rm");

    let report = store.gc(u64::MAX, None, false, &[], &()).expect("gc");
    assert_eq!(
        report.stat_rows_removed, 2,
        "the file's row and its derived row"
    );
    // What still exists is still remembered.
    let mut stat = StatCache::at(store.conn(), later);
    stat.hash_file(&kept).expect("hash");
    stat.derived_hash(&kept, "roots-templated:0123", &mut read)
        .expect("derive");
    assert_eq!(stat.files_hashed, 0);
    let again = store.gc(u64::MAX, None, false, &[], &()).expect("gc");
    assert_eq!(again.stat_rows_removed, 0);
}

#[test]
fn a_preloaded_tree_answers_like_the_index() {
    use crate::key::FileHasher;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("src")).expect("mkdir");
    // A sibling whose name extends the dir's: not below it.
    std::fs::create_dir_all(dir.path().join("pkg-2")).expect("mkdir");
    let (a, b, other) = (
        pkg.join("src/a.c"),
        pkg.join("b.c"),
        dir.path().join("pkg-2/c.c"),
    );
    for f in [&a, &b, &other] {
        std::fs::write(f, f.display().to_string()).expect("write");
    }
    let later = fsutil::now_ns() + 60_000_000_000;
    let mut stat = StatCache::at(store.conn(), later);
    let hashes: Vec<_> = [&a, &other]
        .iter()
        .map(|f| stat.hash_file(f).expect("hash"))
        .collect();
    store.flush_stat_cache(&mut stat).expect("flush");
    let mut stat = StatCache::at(store.conn(), later);
    stat.preload_below(&pkg);
    assert_eq!(stat.hash_file(&a).expect("hash"), hashes[0]);
    assert_eq!(stat.hash_file(&other).expect("hash"), hashes[1]);
    assert_eq!(
        stat.files_hashed, 0,
        "both remembered, one of them read ahead"
    );
    // Below the dir but never remembered: read, as without the read-ahead.
    stat.hash_file(&b).expect("hash");
    assert_eq!(stat.files_hashed, 1);
    // A changed file is read again, read ahead or not.
    std::fs::write(&a, "changed").expect("edit");
    let mut stat = StatCache::at(store.conn(), later);
    stat.preload_below(&pkg);
    assert_ne!(stat.hash_file(&a).expect("hash"), hashes[0]);
    assert_eq!(stat.files_hashed, 1);
}

#[test]
fn outputs_kache_wrote_are_trusted_until_they_change() {
    use crate::key::FileHasher;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("cache")).expect("open");
    let out = dir.path().join("libfoo.rlib");
    std::fs::write(&out, b"rlib bytes").expect("write");
    let hash = crate::key::hash_file_contents(&out).expect("hash");
    let mut stat = StatCache::new(store.conn());
    stat.record_trusted(&out, &hash).expect("trust");
    store.flush_stat_cache(&mut stat).expect("flush");

    // Fresh, yet not read again: kache knows what it wrote.
    let mut stat = StatCache::new(store.conn());
    assert_eq!(stat.hash_file(&out).expect("hash"), hash);
    assert_eq!(stat.files_hashed, 0);

    std::fs::write(&out, b"other bytes!").expect("rewrite");
    let mut stat = StatCache::new(store.conn());
    assert_ne!(stat.hash_file(&out).expect("hash"), hash);
    assert_eq!(stat.files_hashed, 1);
}

/// Issue 9, item 9: gc (evicting, and sweeping orphans), verify, stores that reuse blobs
/// already on disk and restores, all at once for a few seconds: no interleaving may leave
/// the index naming a missing blob.
#[test]
fn gc_verify_store_and_restore_racing_never_lose_an_indexed_blob() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant, SystemTime};

    let dir = tempfile::tempdir().expect("tempdir");
    Store::open(dir.path()).expect("create the store");
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(4);
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let (dir, stop) = (dir.path(), &stop);
            s.spawn(move || {
                let store = Store::open(dir).expect("open");
                let src = dir.join(format!("src-{t}"));
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Few distinct contents, so stores keep finding their blob on disk,
                    // indexed or orphaned (a blob aged past the grace, as an interrupted
                    // store leaves it, is what the orphan sweep deletes).
                    let byte = (n % 6) as u8;
                    std::fs::write(&src, vec![byte; 1000 + byte as usize]).expect("write");
                    let (blob, size) = store.ingest_blob(&src, false).expect("ingest");
                    if let Ok(f) = std::fs::File::open(store.blob_path(&blob)) {
                        let _ = f.set_modified(long_ago);
                    }
                    let key = format!("{t}-{n}");
                    let mut e = entry(&key, &blob);
                    e.outputs[0].size = size;
                    let mut stat = StatCache::new(store.conn());
                    // A blob deleted under this store is refused at commit, never indexed.
                    match store.commit_entry(&e, &manifest(), &mut stat) {
                        Ok(()) | Err(StoreError::BlobVanished(_)) => {}
                        Err(other) => panic!("commit: {other}"),
                    }
                }
            });
        }
        {
            let (dir, stop) = (dir.path(), &stop);
            s.spawn(move || {
                let store = Store::open(dir).expect("open");
                while !stop.load(Ordering::Relaxed) {
                    store.gc(3000, None, false, &[], &()).expect("gc");
                }
            });
            s.spawn(move || {
                let store = Store::open(dir).expect("open");
                while !stop.load(Ordering::Relaxed) {
                    let report = store.verify(false, &()).expect("verify");
                    assert!(
                        report.missing_blobs.is_empty(),
                        "verify during the race: {:?}",
                        report.missing_blobs
                    );
                }
            });
            s.spawn(move || {
                let store = Store::open(dir).expect("open");
                while !stop.load(Ordering::Relaxed) {
                    // As a restore does: the shared lock from reading the index until the
                    // blobs are read.
                    let _lock = store.lock_shared();
                    for summary in store.entry_summaries(None).expect("list") {
                        let Some(e) = store.load_entry(&summary.key).expect("load") else {
                            continue;
                        };
                        let path = store.blob_path(&e.outputs[0].blob);
                        assert!(
                            std::fs::read(&path).is_ok(),
                            "restore found {} missing",
                            path.display()
                        );
                    }
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let store = Store::open(dir.path()).expect("open");
    let report = store.verify(false, &()).expect("verify");
    assert!(
        report.missing_blobs.is_empty() && report.blobs_checked > 0,
        "after the race: {report:?}"
    );
}

/// Each kache process opens the index alone and commits once; the WAL must not grow with
/// every such commit (a hit reads all of it when it opens the index).
#[test]
fn the_wal_stays_short_across_one_commit_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let blob = store.blob_path("b1");
        std::fs::create_dir_all(blob.parent().expect("fan-out dir")).expect("mkdir");
        std::fs::write(&blob, b"abc").expect("write the blob");
    }
    let big = Manifest {
        files: (0..300)
            .map(|i| ManifestFile {
                path: format!("/usr/include/some/long/header/path/number-{i}.h"),
                hash: "absent".into(),
            })
            .collect(),
        env: Vec::new(),
    };
    let wal = dir.path().join("index.db-wal");
    let mut longest = 0;
    for i in 0..100 {
        // A fresh connection each time, as every kache process has.
        let store = Store::open(dir.path()).expect("open");
        let mut stat = StatCache::new(store.conn());
        store
            .commit_entry(&entry(&format!("k{i}"), "b1"), &big, &mut stat)
            .expect("commit");
        drop(stat);
        drop(store);
        longest = longest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    let bound = 2 * WAL_TRUNCATE_FRAMES * WAL_FRAME_BYTES;
    assert!(
        longest <= bound,
        "the WAL grew to {longest} B (bound {bound} B)"
    );
}
