//! Direct-mode manifests: what one compile read, so a later identical invocation can prove
//! its inputs unchanged by checking files (through the stat cache) instead of running rustc.
//!
//! A manifest belongs to an invocation key and names the entry key it leads to. Paths are
//! stored relative to a root (`${ws}/src/lib.rs`) or as rustc saw them when relative to its
//! working directory, so a manifest recorded in one checkout is valid in another.
//!
//! A manifest from the remote is outside data, and checking one reads local files: such a
//! manifest may only name files under the invocation's roots ([`Manifest::stays_within`]),
//! and the hasher only ever reads regular files, never more than their size.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::depinfo::DepInfo;
use super::roots::Roots;
use super::{ContentHash, FileHasher, KeyBuilder};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relativised path (`${root}/…`, or relative to rustc's working directory).
    pub path: String,
    /// The content hash, or [`ABSENT`]: the path must not exist.
    pub hash: ContentHash,
}

/// The hash recorded for a path that must not exist: a C header that, once created, would
/// shadow one the compile read (see `cc::shadow`). No content hashes to it, so a reader that
/// does not know the convention sees a mismatch whenever the path exists, and a miss when it
/// does not: either way never a wrong hit.
pub(crate) const ABSENT: &str = "absent";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEnv {
    pub name: String,
    /// Relativised value, unless `absolute`.
    pub value: Option<String>,
    /// The value is embedded in the artifacts as is (e.g. `env!("CARGO_MANIFEST_DIR")`), so
    /// it must match exactly, not merely up to the checkout's location.
    pub absolute: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
    pub env: Vec<ManifestEnv>,
}

/// Why a manifest does not match the current inputs (for `explain` and debug logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    File(String),
    Env(String),
    UnknownRoot(String),
    /// An absolute path, or one that climbs out of its root with `..`.
    OutsideRoots(String),
}

impl Manifest {
    /// The entry key: the invocation key plus everything the manifest pins down.
    pub fn entry_key(&self, invocation_key: &str) -> String {
        let mut k = KeyBuilder::new("entry");
        k.field("invocation", invocation_key);
        for f in &self.files {
            k.field(format!("file:{}", f.path), &f.hash);
        }
        for e in &self.env {
            let mode = if e.absolute { "abs" } else { "rel" };
            let value = match &e.value {
                Some(v) => format!("{mode}={v}"),
                None => format!("{mode}:unset"),
            };
            k.field(format!("env-dep:{}", e.name), value);
        }
        k.finish().0
    }

    /// Checks every recorded input against the current checkout. `env` reads the current
    /// environment.
    pub(crate) fn check(
        &self,
        roots: &Roots,
        cwd: &Path,
        hasher: &mut dyn FileHasher,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Mismatch> {
        for e in &self.env {
            let current = env(&e.name);
            let current = match (&current, e.absolute) {
                (Some(v), false) => Some(roots.relativize(v).into_owned()),
                _ => current,
            };
            if current != e.value {
                return Err(Mismatch::Env(e.name.clone()));
            }
        }
        let mut presence = Presence::new(
            (self.files.iter())
                .filter(|f| f.hash == ABSENT)
                .filter_map(|f| resolve(&f.path, roots, cwd)),
        );
        for f in &self.files {
            let path = resolve(&f.path, roots, cwd)
                .ok_or_else(|| Mismatch::UnknownRoot(f.path.clone()))?;
            if f.hash == ABSENT {
                if presence.anything_at(&path) {
                    return Err(Mismatch::File(f.path.clone()));
                }
                continue;
            }
            match hasher.hash_file(&path) {
                Ok(h) if h == f.hash => {}
                _ => return Err(Mismatch::File(f.path.clone())),
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Whether every file is named under a root (`${name}/…`) or relative to rustc's working
    /// directory, without `..` climbing out of it. Manifests kache records name files outside
    /// every root by absolute path, and those are this machine's own: a manifest from
    /// elsewhere that names one (`/dev/zero`, `${ws}/../../etc/…`) is refused before any
    /// file is looked at. An absolute path under one of `system_dirs` (a C compiler's own
    /// include dirs, as this machine's compiler reports them; none for rustc) is allowed
    /// too: nearly every C source includes a system header, which no root holds.
    pub(crate) fn stays_within(&self, system_dirs: &[String]) -> Result<(), Mismatch> {
        for f in &self.files {
            let in_system_dir = system_dirs.iter().any(|dir| {
                f.path
                    .strip_prefix(dir.trim_end_matches('/'))
                    .is_some_and(|rest| rest.starts_with('/') && !climbs_out(rest))
            });
            if in_system_dir {
                continue;
            }
            let tail = match f.path.strip_prefix("${") {
                Some(rest) => rest.split_once('}').map(|(_, tail)| tail),
                None => Some(f.path.as_str()),
            };
            let inside = tail.is_some_and(|t| {
                // `${ws}x` would be a sibling of the root, not a file under it.
                let rooted = f.path.starts_with("${");
                (!rooted || t.is_empty() || t.starts_with('/'))
                    && (rooted || !t.starts_with('/'))
                    && !climbs_out(t)
            });
            if !inside {
                return Err(Mismatch::OutsideRoots(f.path.clone()));
            }
        }
        Ok(())
    }
}

/// A directory holding at least this many of a manifest's absent paths is listed once
/// instead of stat'ing each (a C compile's manifest names about a thousand absent headers in
/// a dozen system directories).
const LIST_FROM: usize = 8;

/// Answers "is anything at this path?" for a manifest's absent paths: anything there, even
/// a directory or a dangling link, counts. A name missing from its directory's listing is
/// absent; every other answer comes from `lstat`. The listing is only trusted where it is
/// complete ([`crate::fsutil::listing_is_complete`]) and compared without case, and only when every
/// name in it and the name looked up are plain ASCII: on a case-insensitive directory
/// (casefold ext4, APFS) a lookup finds `Foo.h` as `foo.h`, and Unicode folding or
/// normalisation could match other spellings.
struct Presence {
    dirs: std::collections::HashMap<PathBuf, Listing>,
}

enum Listing {
    /// How many absent paths the manifest names in the directory (not listed yet).
    Wanted(usize),
    /// The directory's names, lowercased; `None` when it cannot serve (see [`Presence`]).
    Read(Option<std::collections::HashSet<String>>),
}

impl Presence {
    fn new(absent: impl Iterator<Item = PathBuf>) -> Self {
        let mut dirs = std::collections::HashMap::new();
        for p in absent {
            if let Some(dir) = p.parent() {
                match dirs.entry(dir.to_owned()).or_insert(Listing::Wanted(0)) {
                    Listing::Wanted(n) => *n += 1,
                    Listing::Read(_) => {}
                }
            }
        }
        Presence { dirs }
    }

    fn anything_at(&mut self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str());
        if let (Some(dir), Some(name)) = (path.parent(), name)
            && plain_name(name)
            && let Some(slot) = self.dirs.get_mut(dir)
        {
            if let Listing::Wanted(n) = *slot {
                if n < LIST_FROM {
                    return std::fs::symlink_metadata(path).is_ok();
                }
                *slot = Listing::Read(list_lowercase(dir));
            }
            if let Listing::Read(Some(names)) = slot
                && !names.contains(&name.to_ascii_lowercase())
            {
                return false;
            }
        }
        std::fs::symlink_metadata(path).is_ok()
    }
}

/// A name a lookup can only find by that spelling or another ASCII case of it.
fn plain_name(name: &str) -> bool {
    name != "." && name != ".." && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

fn list_lowercase(dir: &Path) -> Option<std::collections::HashSet<String>> {
    if !crate::fsutil::listing_is_complete(dir) {
        return None;
    }
    let mut names = std::collections::HashSet::new();
    for e in std::fs::read_dir(dir).ok()? {
        let name = e.ok()?.file_name().into_string().ok()?;
        if !name.is_ascii() {
            return None;
        }
        names.insert(name.to_ascii_lowercase());
    }
    Some(names)
}

/// Whether a relative path (leading `/` ignored) leaves its base: more `..` than names at
/// some point, read lexically.
fn climbs_out(path: &str) -> bool {
    let mut depth = 0usize;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// Turns a manifest path back into a real path for this checkout.
pub(crate) fn resolve(path: &str, roots: &Roots, cwd: &Path) -> Option<PathBuf> {
    if let Some(rest) = path.strip_prefix("${") {
        let (name, tail) = rest.split_once('}')?;
        let root = roots.get(name)?;
        return Some(PathBuf::from(format!("{}{}", root.path, tail)));
    }
    let p = Path::new(path);
    Some(if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    })
}

/// An input of a finished compile that could not be read or hashed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("input {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },
    #[error("hashing {path}: {source}")]
    Hash {
        path: String,
        source: std::io::Error,
    },
}

impl Manifest {
    /// Records what a compile read, from its dep-info: each file's hash (paths under a root
    /// relativised, relative ones kept as rustc saw them from `cwd`) and each variable read
    /// with `env!`. `None` when an input changed after `compile_start` (the result might not
    /// match the recorded contents, so it must not be stored). `produced` are the compile's
    /// outputs: a path-valued variable found in them is embedded, so it is recorded as is.
    pub(crate) fn record(
        dep: &DepInfo,
        cwd: &Path,
        roots: &Roots,
        hasher: &mut dyn FileHasher,
        compile_start: SystemTime,
        produced: &[PathBuf],
    ) -> Result<Option<Manifest>, RecordError> {
        let mut files = Vec::with_capacity(dep.files.len());
        for f in &dep.files {
            let path = crate::fsutil::absolute(cwd, Path::new(f));
            let meta = std::fs::metadata(&path).map_err(|source| RecordError::Input {
                path: f.clone(),
                source,
            })?;
            if meta.modified().is_ok_and(|m| m >= compile_start) {
                return Ok(None);
            }
            let hash = hasher
                .hash_file(&path)
                .map_err(|source| RecordError::Hash {
                    path: f.clone(),
                    source,
                })?;
            let keyed = if Path::new(f).is_absolute() {
                roots.relativize(f).into_owned()
            } else {
                f.clone()
            };
            files.push(ManifestFile { path: keyed, hash });
        }
        let mut env = Vec::with_capacity(dep.env.len());
        for (name, value) in &dep.env {
            let relative = value.as_deref().map(|v| roots.relativize(v).into_owned());
            // A path-valued variable read with `env!` is embedded in the artifact as is; then
            // the checkout's location matters and the value must match exactly.
            let absolute = match (value, &relative) {
                (Some(v), Some(r)) if v != r => embedded_in(v, produced),
                _ => false,
            };
            env.push(ManifestEnv {
                name: name.clone(),
                value: if absolute { value.clone() } else { relative },
                absolute,
            });
        }
        Ok(Some(Manifest { files, env }))
    }
}

fn embedded_in(needle: &str, produced: &[PathBuf]) -> bool {
    produced.iter().any(|path| {
        std::fs::read(path)
            .map(|bytes| memchr::memmem::find(&bytes, needle.as_bytes()).is_some())
            // Unreadable: assume the worst, which only costs relocation hits.
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::roots::Root;
    use std::collections::HashMap;

    struct Fixed(HashMap<PathBuf, String>);
    impl FileHasher for Fixed {
        fn hash_file(&mut self, path: &Path) -> std::io::Result<ContentHash> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn roots(ws: &str) -> Roots {
        Roots::new(vec![Root {
            name: "ws",
            path: ws.into(),
            remap_to: ".",
        }])
    }

    fn manifest() -> Manifest {
        Manifest {
            files: vec![
                ManifestFile {
                    path: "src/lib.rs".into(),
                    hash: "h1".into(),
                },
                ManifestFile {
                    path: "${ws}/data.txt".into(),
                    hash: "h2".into(),
                },
            ],
            env: vec![
                ManifestEnv {
                    name: "GREETING".into(),
                    value: Some("hi".into()),
                    absolute: false,
                },
                ManifestEnv {
                    name: "DIR".into(),
                    value: Some("${ws}/x".into()),
                    absolute: false,
                },
            ],
        }
    }

    #[test]
    fn matches_in_another_checkout() {
        let mut files = Fixed(HashMap::from([
            (PathBuf::from("/b/src/lib.rs"), "h1".to_string()),
            (PathBuf::from("/b/data.txt"), "h2".to_string()),
        ]));
        let env = |n: &str| match n {
            "GREETING" => Some("hi".to_string()),
            "DIR" => Some("/b/x".to_string()),
            _ => None,
        };
        assert_eq!(
            manifest().check(&roots("/b"), Path::new("/b"), &mut files, &env),
            Ok(())
        );
        let changed = |n: &str| (n == "GREETING").then(|| "yo".to_string());
        assert_eq!(
            manifest().check(&roots("/b"), Path::new("/b"), &mut files, &changed),
            Err(Mismatch::Env("GREETING".into()))
        );
        files.0.insert(PathBuf::from("/b/data.txt"), "other".into());
        assert_eq!(
            manifest().check(&roots("/b"), Path::new("/b"), &mut files, &env),
            Err(Mismatch::File("${ws}/data.txt".into()))
        );
    }

    #[test]
    fn system_dirs_allow_their_own_headers_only() {
        let with = |path: &str| Manifest {
            files: vec![ManifestFile {
                path: path.into(),
                hash: "h".into(),
            }],
            env: vec![],
        };
        let sys = [
            "/usr/include".to_owned(),
            "/usr/lib/gcc/x/12/include/".to_owned(),
        ];
        for ok in ["/usr/include/stdio.h", "/usr/lib/gcc/x/12/include/stddef.h"] {
            assert_eq!(with(ok).stays_within(&sys), Ok(()), "{ok}");
            assert!(with(ok).stays_within(&[]).is_err(), "{ok}");
        }
        for bad in [
            "/usr/include/../../dev/zero",
            "/usr/includex/a.h",
            "/dev/zero",
        ] {
            assert!(with(bad).stays_within(&sys).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_paths_under_a_root_stay_within_roots() {
        let with = |path: &str| Manifest {
            files: vec![ManifestFile {
                path: path.into(),
                hash: "h".into(),
            }],
            env: vec![],
        };
        for ok in [
            "src/lib.rs",
            "${ws}/src/lib.rs",
            "${cargo_home}/registry/src/x/lib.rs",
            "crates/core/src/../../../shared/path_mod.rs",
        ] {
            assert_eq!(with(ok).stays_within(&[]), Ok(()), "{ok}");
        }
        for bad in [
            "/dev/zero",
            "/etc/passwd",
            "../outside.rs",
            "src/../../outside.rs",
            "${ws}/../../dev/zero",
            "${ws}x/lib.rs",
            "${ws",
        ] {
            assert_eq!(
                with(bad).stays_within(&[]),
                Err(Mismatch::OutsideRoots(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_absent_path_must_stay_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Manifest {
            files: vec![ManifestFile {
                path: "inc/shadow.h".into(),
                hash: ABSENT.into(),
            }],
            env: Vec::new(),
        };
        let mut none = Fixed(HashMap::new());
        let no_env = |_: &str| None;
        let r = roots("/nowhere");
        assert_eq!(m.check(&r, dir.path(), &mut none, &no_env), Ok(()));
        std::fs::create_dir(dir.path().join("inc")).expect("mkdir");
        std::fs::write(dir.path().join("inc/shadow.h"), "").expect("write");
        assert_eq!(
            m.check(&r, dir.path(), &mut none, &no_env),
            Err(Mismatch::File("inc/shadow.h".into()))
        );
    }

    /// Many absent names in one directory are checked against its listing: each kind of
    /// entry that can appear there (file, directory, dangling link, a name beside non-ASCII
    /// ones) must still be seen, and another case of a name must not hide it.
    #[test]
    fn absent_paths_checked_through_a_listing_are_still_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inc = dir.path().join("inc");
        std::fs::create_dir(&inc).expect("mkdir");
        std::fs::write(inc.join("present.h"), "").expect("write");
        let names: Vec<String> = (0..2 * LIST_FROM).map(|i| format!("h{i}.h")).collect();
        let m = Manifest {
            files: names
                .iter()
                .map(|n| ManifestFile {
                    path: format!("inc/{n}"),
                    hash: ABSENT.into(),
                })
                .collect(),
            env: Vec::new(),
        };
        let mut none = Fixed(HashMap::new());
        let no_env = |_: &str| None;
        let r = roots("/nowhere");
        let check = |m: &Manifest, none: &mut Fixed| m.check(&r, dir.path(), none, &no_env);
        assert_eq!(check(&m, &mut none), Ok(()));
        // Another case of a name is another file here (ext4 is case-sensitive).
        std::fs::write(inc.join("H3.H"), "").expect("write");
        assert_eq!(check(&m, &mut none), Ok(()));
        let last = format!("inc/{}", names[names.len() - 1]);
        let seen = Err(Mismatch::File(last.clone()));
        let at = dir.path().join(&last);
        std::fs::write(&at, "").expect("write");
        assert_eq!(check(&m, &mut none), seen);
        std::fs::remove_file(&at).expect("rm");
        std::fs::create_dir(&at).expect("mkdir");
        assert_eq!(check(&m, &mut none), seen);
        std::fs::remove_dir(&at).expect("rmdir");
        std::os::unix::fs::symlink("nowhere", &at).expect("symlink");
        assert_eq!(check(&m, &mut none), seen);
        std::fs::remove_file(&at).expect("rm");
        std::fs::write(inc.join("caf\u{e9}.h"), "").expect("write");
        assert_eq!(check(&m, &mut none), Ok(()));
        std::fs::write(&at, "").expect("write");
        assert_eq!(check(&m, &mut none), seen);
    }

    #[test]
    fn entry_key_depends_on_every_input() {
        let base = manifest().entry_key("inv");
        assert_eq!(base, manifest().entry_key("inv"));
        assert_ne!(base, manifest().entry_key("inv2"));
        let mut m = manifest();
        m.files[0].hash = "x".into();
        assert_ne!(base, m.entry_key("inv"));
        let mut m = manifest();
        m.env[0].absolute = true;
        assert_ne!(base, m.entry_key("inv"));
        let mut m = manifest();
        m.env[0].value = None;
        assert_ne!(base, m.entry_key("inv"));
    }

    #[test]
    fn record_relativises_inputs_and_keeps_embedded_paths_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().to_str().expect("utf-8 temp dir").to_owned();
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/lib.rs"), "x").expect("write");
        std::fs::write(dir.path().join("data.txt"), "d").expect("write");
        let out = dir.path().join("libx.rlib");
        std::fs::write(&out, format!("embedded {ws}/assets here")).expect("write");
        let dep = DepInfo {
            files: vec!["src/lib.rs".into(), format!("{ws}/data.txt")],
            env: vec![
                ("EMBEDDED".into(), Some(format!("{ws}/assets"))),
                ("READ_ONLY".into(), Some(format!("{ws}/other"))),
                ("UNSET".into(), None),
            ],
        };
        let hashes = [
            (dir.path().join("src/lib.rs"), "h1".to_owned()),
            (dir.path().join("data.txt"), "h2".to_owned()),
        ];
        let mut hasher = Fixed(hashes.into_iter().collect());
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let m = Manifest::record(&dep, dir.path(), &roots(&ws), &mut hasher, later, &[out])
            .expect("inputs readable")
            .expect("nothing changed");
        assert_eq!(
            m.files,
            [
                ManifestFile {
                    path: "src/lib.rs".into(),
                    hash: "h1".into()
                },
                ManifestFile {
                    path: "${ws}/data.txt".into(),
                    hash: "h2".into()
                },
            ]
        );
        let env: Vec<_> = m
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone(), e.absolute))
            .collect();
        assert_eq!(
            env,
            [
                ("EMBEDDED", Some(format!("{ws}/assets")), true),
                ("READ_ONLY", Some("${ws}/other".into()), false),
                ("UNSET", None, false),
            ]
        );
    }

    #[test]
    fn record_refuses_an_input_changed_after_the_compile_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::write(dir.path().join("lib.rs"), "x").expect("write");
        let dep = DepInfo {
            files: vec!["lib.rs".into()],
            env: Vec::new(),
        };
        let mut hasher = Fixed(HashMap::new());
        let ws = dir.path().to_str().expect("utf-8 temp dir");
        let got = Manifest::record(&dep, dir.path(), &roots(ws), &mut hasher, before, &[]);
        assert!(matches!(got, Ok(None)), "{got:?}");
    }
}
