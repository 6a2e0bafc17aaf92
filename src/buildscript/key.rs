//! The key of one build-script run, and the manifest recorded from it.
//!
//! The *invocation key* covers what is known before the script runs: the script binary's
//! content, every variable cargo hands the script (`TARGET`, `PROFILE`, `CARGO_FEATURE_*`,
//! `CARGO_CFG_*`, `CARGO_PKG_*`, `DEP_*` with the content behind path-valued ones, ...) and the
//! C toolchain variables (`CC`, `CFLAGS`, `PKG_CONFIG_*`, ...), all with root paths
//! relativised, plus the identity of `rustc` and of the C tools the script can reach (by
//! content, not by `PATH`, so two machines with the same toolchain share runs). The
//! *manifest* holds what the run declared (`rerun-if-changed` paths, by content;
//! `rerun-if-env-changed` values) and always the whole package directory, which for a
//! registry or git package cannot change under the same version and for a path package is
//! what cargo itself watches when nothing is declared. This module decides what is keyed; it
//! must not run the script or write anything.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::invocation::C_DRIVERS;
use crate::key::manifest::{Manifest, ManifestEnv, ManifestFile};
use crate::key::roots::{Roots, Spelling};
use crate::key::{ContentHash, FileHasher, KeyBuilder, KeyField, toolchain};
use crate::store::StatCache;

/// Bumped when what a run's key covers changes, or what a stored run may hold (2: empty
/// directories and links, which a kache that knows only files would restore as files); old
/// runs then stop matching, and older kaches never find newer runs.
const BUILD_SCRIPT_KEY_SCHEMA: &str = "build-script-run/2";

/// Exact names cargo (or the user, for the C toolchain) hands a build script that can change
/// what it produces.
const EXACT: &[&str] = &[
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_LINKER",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "OUT_DIR",
    "CC",
    "CXX",
    "AR",
    "RANLIB",
    "LD",
    "AS",
    "CPP",
    "NM",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "ARFLAGS",
    "RANLIBFLAGS",
    "CRATE_CC_NO_DEFAULTS",
    "LIBCLANG_PATH",
    "CLANG_PATH",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "CMAKE",
    "MAKE",
    "NINJA",
    "SOURCE_DATE_EPOCH",
];

/// Prefixes of keyed names.
const PREFIXES: &[&str] = &[
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "CARGO_PKG_",
    "DEP_",
    "CC_",
    "CXX_",
    "AR_",
    "CFLAGS_",
    "CXXFLAGS_",
    "CPPFLAGS_",
    "LDFLAGS_",
    "ARFLAGS_",
    "RANLIB_",
    "TARGET_",
    "HOST_",
    "PKG_CONFIG",
    "CMAKE_",
    "BINDGEN_",
];

/// Tools besides the C compiler drivers ([`C_DRIVERS`]) a script can reach through `PATH`;
/// all are keyed by content.
const OTHER_TOOLS: &[&str] = &[
    "ar",
    "ranlib",
    "ld",
    "as",
    "cmake",
    "make",
    "ninja",
    "pkg-config",
    "nasm",
];

/// Variables whose value names a program the script runs (its first word).
const TOOL_VARS: &[&str] = &[
    "CC",
    "CXX",
    "AR",
    "RANLIB",
    "LD",
    "PKG_CONFIG",
    "CMAKE",
    "MAKE",
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("hashing {path}: {source}")]
    Hash { path: PathBuf, source: io::Error },
    /// A directory input holds more than [`Budget`] allows: the run is not cached (a miss,
    /// never a fault).
    #[error("{path} holds more than a build-script input may (entries or bytes)")]
    TooLarge { path: PathBuf },
    #[error(transparent)]
    Toolchain(#[from] toolchain::ToolchainError),
}

/// Whether a variable the script gets is keyed.
pub(crate) fn is_keyed(name: &str, extra: &[String]) -> bool {
    EXACT.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || extra.iter().any(|e| e == name)
}

/// What the invocation key needs from outside this module.
pub(crate) struct RunInputs<'a> {
    pub script: &'a Path,
    /// The keyed variables ([`is_keyed`]), sorted.
    pub env: &'a [(String, String)],
    /// `PATH`: where tools are found, never keyed itself.
    pub path_var: Option<&'a str>,
    /// `RUSTC` as cargo passes it, keyed by the toolchain's identity rather than its path.
    pub rustc: Option<&'a str>,
    pub rustup_toolchain: Option<&'a str>,
    pub roots: &'a Roots,
    pub cache_dir: &'a Path,
}

/// The invocation key of a run and its readable fields.
pub(crate) fn invocation_key(
    inputs: &RunInputs,
    stat: &mut dyn FileHasher,
) -> Result<(String, Vec<KeyField>), KeyError> {
    let mut k = KeyBuilder::new(BUILD_SCRIPT_KEY_SCHEMA);
    let hash = |stat: &mut dyn FileHasher, p: &Path| {
        stat.hash_file(p).map_err(|source| KeyError::Hash {
            path: p.to_owned(),
            source,
        })
    };
    k.field("script", hash(stat, inputs.script)?);
    if let Some(rustc) = inputs.rustc {
        let tc = toolchain::identify(
            &resolve(rustc, inputs.path_var).unwrap_or_else(|| PathBuf::from(rustc)),
            inputs.cache_dir,
            inputs.rustup_toolchain,
        )?;
        k.field("rustc", tc.id);
    }
    for (name, value) in inputs.env {
        k.field(format!("env:{name}"), inputs.roots.relativize(value));
        if name.starts_with("DEP_") {
            // A path-valued `DEP_*` (an include dir another package's script produced) is
            // keyed by what is behind it, since its path is the same for different contents.
            for part in std::env::split_paths(OsStr::new(value)) {
                if part.is_absolute() && part.exists() {
                    let mut templated = RootsTemplated::new(&mut *stat, inputs.roots);
                    k.field(
                        format!("env-content:{name}"),
                        tree_hash(&part, &mut templated, &mut None, &mut Budget::default())?,
                    );
                }
            }
        }
    }
    let mut programs: Vec<String> = (C_DRIVERS.iter().chain(OTHER_TOOLS))
        .map(|t| t.to_string())
        .collect();
    for (name, value) in inputs.env {
        let bare = TOOL_VARS.iter().any(|v| {
            name == v || name.starts_with(&format!("{v}_")) || name.ends_with(&format!("_{v}"))
        });
        if bare && let Some(first) = value.split_whitespace().next() {
            programs.push(first.to_owned());
        }
    }
    programs.sort();
    programs.dedup();
    for program in programs {
        let identity = match resolve(&program, inputs.path_var) {
            Some(path) => hash(stat, &path)?,
            None => "absent".to_owned(),
        };
        let label = if program.contains('/') {
            format!("tool:{}", inputs.roots.relativize(&program))
        } else {
            format!("tool:{program}")
        };
        k.field(label, identity);
    }
    Ok(k.finish())
}

/// A program as the script would find it (`Command`'s rule): a path as given (the script runs
/// in this process's working directory), else the first match on `PATH`. Not canonicalised: a
/// rustup proxy works only under its own name (hashing follows symlinks).
fn resolve(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_default();
    crate::key::invocation_key::resolve_program(Path::new(program), &cwd, path_var)
}

/// How much the directory inputs of one run (or one manifest check) may hold. A package
/// dir is read once and then answered from the stat cache, but an input naming a huge tree
/// (a tampered manifest, a `DEP_*` value naming `/usr`) would be walked on every run: past
/// these, the run is not cached.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub entries: u64,
    pub bytes: u64,
}

impl Default for Budget {
    /// Well above the largest registry packages with C sources (tens of thousands of files,
    /// a few hundred MiB).
    fn default() -> Self {
        Budget {
            entries: 200_000,
            bytes: 4 << 30,
        }
    }
}

impl Budget {
    /// Spends one entry of `bytes`; `false` once the budget is exceeded.
    fn spend(&mut self, bytes: u64) -> bool {
        match (self.entries.checked_sub(1), self.bytes.checked_sub(bytes)) {
            (Some(e), Some(b)) => {
                (self.entries, self.bytes) = (e, b);
                true
            }
            _ => false,
        }
    }
}

/// Hashes what a `DEP_*` directory holds as a stored run holds it: a text file naming a root
/// is hashed with the roots templated. Such a directory is usually another package's
/// `OUT_DIR`, restored from the cache with its text filled in for this target dir (a
/// pkg-config file's prefix, a generated config), so hashing the filled-in bytes would key a
/// dependent's run by the target dir's path: every `cargo install`, in its own temporary
/// target dir, would run it again. The path itself is keyed already, relativised, as the
/// variable's value.
struct RootsTemplated<'a> {
    inner: &'a mut dyn FileHasher,
    roots: &'a Roots,
    /// What the hash of a file depends on besides its content: these roots. The stat cache
    /// remembers each file's templated hash under it, so a warm build does not read every
    /// text file behind a `DEP_*` again for each dependent script.
    variant: String,
}

impl<'a> RootsTemplated<'a> {
    fn new(inner: &'a mut dyn FileHasher, roots: &'a Roots) -> Self {
        let mut h = blake3::Hasher::new();
        for root in roots.iter() {
            h.update(root.name.as_bytes());
            h.update(b"=");
            h.update(root.path.as_bytes());
            h.update(b"\0");
        }
        // The schema too: a change to how text is templated must not find old hashes.
        let variant = format!(
            "roots-templated-{}:{}",
            BUILD_SCRIPT_KEY_SCHEMA.replace('/', "-"),
            &h.finalize().to_hex()[..32]
        );
        RootsTemplated {
            inner,
            roots,
            variant,
        }
    }
}

/// A text file's hash with `roots` templated, or (binary, or naming no root) its content hash.
fn templated_hash(path: &Path, roots: &Roots) -> io::Result<ContentHash> {
    let bytes = fs::read(path)?;
    if let Ok(text) = std::str::from_utf8(&bytes)
        && let std::borrow::Cow::Owned(t) = roots.template(text, Spelling::Plain)
    {
        return Ok(format!("templated:{}", blake3::hash(t.as_bytes()).to_hex()));
    }
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

impl FileHasher for RootsTemplated<'_> {
    fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash> {
        // Generated text is small; larger files (static libraries) go to the stat cache.
        const TEXT_LIMIT: u64 = 1 << 20;
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_file() && meta.len() <= TEXT_LIMIT {
            let roots = self.roots;
            return self
                .inner
                .derived_hash(path, &self.variant, &mut |p| templated_hash(p, roots));
        }
        self.inner.hash_file(path)
    }
}

/// Hashes a file, or a directory as the sorted list of its entries and their contents
/// (cargo's `rerun-if-changed` on a directory watches everything below it). Target dirs
/// (holding cargo's `CACHEDIR.TAG`) and `.git` are left out. `newest` collects the newest
/// mtime seen, to notice inputs changed while the script ran; `budget` bounds the walk
/// ([`KeyError::TooLarge`] past it).
pub(crate) fn tree_hash(
    path: &Path,
    stat: &mut dyn FileHasher,
    newest: &mut Option<SystemTime>,
    budget: &mut Budget,
) -> Result<ContentHash, KeyError> {
    let err = |p: &Path| {
        let p = p.to_owned();
        move |source| KeyError::Hash { path: p, source }
    };
    let too_large = || KeyError::TooLarge {
        path: path.to_owned(),
    };
    let meta = fs::metadata(path).map_err(err(path))?;
    note_mtime(&meta, newest);
    if !meta.is_dir() {
        return stat.hash_file(path).map_err(err(path));
    }
    let list = |dir: &Path| -> Result<Vec<fs::DirEntry>, KeyError> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(err(dir))?
            .collect::<Result<_, _>>()
            .map_err(err(dir))?;
        entries.sort_by_key(|e| e.file_name());
        Ok(entries)
    };
    let mut h = blake3::Hasher::new();
    // Each directory is listed when it is met, which is also how a target dir is told
    // apart, and the listing waits on the stack until the walk gets there.
    let mut stack = vec![(PathBuf::new(), list(path)?)];
    while let Some((rel, entries)) = stack.pop() {
        for entry in entries {
            let child_rel = rel.join(entry.file_name());
            let child = entry.path();
            let meta = fs::symlink_metadata(&child).map_err(err(&child))?;
            let bytes = if meta.file_type().is_file() {
                meta.len()
            } else {
                0
            };
            if !budget.spend(bytes) {
                return Err(too_large());
            }
            let name = child_rel.as_os_str().as_bytes();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&child).map_err(err(&child))?;
                frame(&mut h, b"l", name, target.as_os_str().as_bytes());
            } else if meta.is_dir() {
                if entry.file_name() == ".git" {
                    continue;
                }
                let below = list(&child)?;
                if below.iter().any(|e| e.file_name() == "CACHEDIR.TAG") {
                    continue;
                }
                frame(&mut h, b"d", name, b"");
                stack.push((child_rel, below));
            } else {
                note_mtime(&meta, newest);
                let content = stat.hash_stated(&child, &meta).map_err(err(&child))?;
                frame(&mut h, b"f", name, content.as_bytes());
            }
        }
    }
    Ok(format!("tree:{}", h.finalize().to_hex()))
}

fn frame(h: &mut blake3::Hasher, kind: &[u8], name: &[u8], value: &[u8]) {
    h.update(kind);
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name);
    h.update(&(value.len() as u64).to_le_bytes());
    h.update(value);
}

fn note_mtime(meta: &fs::Metadata, newest: &mut Option<SystemTime>) {
    if let Ok(m) = meta.modified()
        && newest.is_none_or(|n| m > n)
    {
        *newest = Some(m);
    }
}

/// A [`FileHasher`] that also hashes directories (as [`tree_hash`]), so a manifest can hold
/// declared directories and the package directory.
///
/// A manifest is outside data (the remote, an index row): a directory it names is walked
/// only if it is the package dir or below it, once links are resolved (never `${cargo_home}`,
/// `${target}` or `/`), and all the directories of one manifest share one [`Budget`].
pub(crate) struct TreeHasher<'s, 'c> {
    pub stat: &'s mut StatCache<'c>,
    pub newest: Option<SystemTime>,
    /// The package dir, links resolved (`None` when it cannot be: then no directory is walked).
    package_dir: Option<PathBuf>,
    budget: Budget,
    /// Why the last refused directory was refused.
    pub refused: Option<Refused>,
}

/// Why a directory input was not hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    OutsidePackage,
    TooLarge,
}

impl<'s, 'c> TreeHasher<'s, 'c> {
    pub fn new(stat: &'s mut StatCache<'c>, package_dir: &Path, budget: Budget) -> Self {
        TreeHasher {
            stat,
            newest: None,
            package_dir: package_dir.canonicalize().ok(),
            budget,
            refused: None,
        }
    }

    fn refuse(&mut self, why: Refused, path: &Path) -> io::Error {
        self.refused = Some(why);
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a directory input outside the package dir or too large",
                path.display()
            ),
        )
    }
}

impl FileHasher for TreeHasher<'_, '_> {
    fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash> {
        if fs::metadata(path)?.is_dir() {
            let inside = path.canonicalize().is_ok_and(|real| {
                self.package_dir
                    .as_deref()
                    .is_some_and(|pkg| real.starts_with(pkg))
            });
            if !inside {
                return Err(self.refuse(Refused::OutsidePackage, path));
            }
        }
        let mut newest = self.newest;
        let hash = tree_hash(path, self.stat, &mut newest, &mut self.budget);
        self.newest = newest;
        match hash {
            Ok(h) => Ok(h),
            Err(KeyError::TooLarge { .. }) => Err(self.refuse(Refused::TooLarge, path)),
            Err(KeyError::Hash { source, .. }) => Err(source),
            Err(other) => Err(io::Error::other(other.to_string())),
        }
    }
}

/// What a run declared on its stdout (`cargo:` and `cargo::` spellings).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Declared {
    pub files: Vec<String>,
    pub env: Vec<String>,
}

pub(crate) fn declared(stdout: &str) -> Declared {
    let mut d = Declared::default();
    for line in stdout.lines() {
        let Some(rest) = line
            .strip_prefix("cargo::")
            .or_else(|| line.strip_prefix("cargo:"))
        else {
            continue;
        };
        if let Some(p) = rest.strip_prefix("rerun-if-changed=") {
            d.files.push(p.to_owned());
        } else if let Some(v) = rest.strip_prefix("rerun-if-env-changed=") {
            d.env.push(v.to_owned());
        }
    }
    d
}

/// Why a finished run is not recorded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotRecorded {
    /// A declared path does not exist (cargo reruns such a script every time).
    MissingInput(String),
    /// An input was modified after the script started.
    ChangedWhileRunning,
    /// A declared directory lies outside the package dir, or the inputs hold more than the
    /// [`Budget`].
    Refused(Refused),
}

/// Records the manifest of a finished run: the package directory and every declared path by
/// content, every declared variable by value (as the script saw it).
pub(crate) fn record_manifest(
    declared: &Declared,
    roots: &Roots,
    package_dir: &Path,
    hasher: &mut TreeHasher,
    env: &dyn Fn(&str) -> Option<String>,
    run_start: SystemTime,
) -> Result<Result<Manifest, NotRecorded>, KeyError> {
    let mut files = Vec::new();
    let package = package_dir.to_string_lossy();
    let mut paths: Vec<(String, PathBuf)> = vec![(
        roots.relativize(&package).into_owned(),
        package_dir.to_owned(),
    )];
    for f in &declared.files {
        let p = Path::new(f);
        let real = if p.is_absolute() {
            p.to_owned()
        } else {
            package_dir.join(p)
        };
        if !real.exists() {
            return Ok(Err(NotRecorded::MissingInput(f.clone())));
        }
        let keyed = if p.is_absolute() {
            roots.relativize(f).into_owned()
        } else {
            f.clone()
        };
        paths.push((keyed, real));
    }
    for (keyed, real) in paths {
        let hash = match hasher.hash_file(&real) {
            Ok(h) => h,
            Err(source) => {
                if let Some(why) = hasher.refused {
                    return Ok(Err(NotRecorded::Refused(why)));
                }
                return Err(KeyError::Hash {
                    path: real.clone(),
                    source,
                });
            }
        };
        files.push(ManifestFile { path: keyed, hash });
    }
    if hasher.newest.is_some_and(|n| n >= run_start) {
        return Ok(Err(NotRecorded::ChangedWhileRunning));
    }
    let env = declared
        .env
        .iter()
        .map(|name| ManifestEnv {
            name: name.clone(),
            value: env(name).map(|v| roots.relativize(&v).into_owned()),
            absolute: false,
        })
        .collect();
    Ok(Ok(Manifest { files, env }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_reads_both_spellings() {
        let d = declared(
            "cargo:rerun-if-changed=a.c\ncargo::rerun-if-env-changed=CFG\nwarning\ncargo:rustc-link-lib=x\n",
        );
        assert_eq!(d.files, vec!["a.c"]);
        assert_eq!(d.env, vec!["CFG"]);
    }

    #[test]
    fn keyed_names() {
        for name in [
            "TARGET",
            "CARGO_FEATURE_STD",
            "DEP_Z:W_INCLUDE",
            "CC_x86_64_unknown_linux_gnu",
            "PKG_CONFIG_PATH",
        ] {
            assert!(is_keyed(name, &[]), "{name}");
        }
        for name in [
            "NUM_JOBS",
            "CARGO_MAKEFLAGS",
            "PATH",
            "HOME",
            "RUSTC_WRAPPER",
            "KACHE_DIR",
        ] {
            assert!(!is_keyed(name, &[]), "{name}");
        }
        assert!(is_keyed("MY_VAR", &["MY_VAR".to_string()]));
    }

    struct Plain;
    impl FileHasher for Plain {
        fn hash_file(&mut self, path: &Path) -> io::Result<ContentHash> {
            crate::key::hash_file_contents(path)
        }
    }

    /// Another package's restored `OUT_DIR` names this target dir in its text (a pkg-config
    /// prefix); the run depending on it keys alike in two target dirs (two `cargo install`s),
    /// and still differently when the text differs otherwise.
    #[test]
    fn a_dep_dir_naming_its_target_dir_keys_alike_in_another_target_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key_in = |install: &str, version: &str| {
            let target = tmp.path().join(install).join("target");
            let build = target.join("debug/build");
            let dep_out = build.join("dep-5678/out");
            fs::create_dir_all(dep_out.join("lib/pkgconfig")).expect("mkdir");
            let pc = format!("prefix={}\nversion={version}\n", dep_out.display());
            fs::write(dep_out.join("lib/pkgconfig/x.pc"), pc).expect("write");
            fs::write(dep_out.join("lib/libx.a"), [0u8, 159, 146, 150]).expect("write");
            let out_dir = build.join("app-1234/out");
            fs::create_dir_all(&out_dir).expect("mkdir");
            let script = build.join("app-1234/build-script-build");
            fs::write(&script, "script").expect("write");
            let package = tmp.path().join("registry/app-1.0.0");
            fs::create_dir_all(&package).expect("mkdir");
            let roots = Roots::for_script_run(&package, &out_dir, None, None);
            let env = vec![(
                "DEP_X_ROOT".to_owned(),
                dep_out.to_string_lossy().into_owned(),
            )];
            let (key, _) = invocation_key(
                &RunInputs {
                    script: &script,
                    env: &env,
                    path_var: None,
                    rustc: None,
                    rustup_toolchain: None,
                    roots: &roots,
                    cache_dir: tmp.path(),
                },
                &mut Plain,
            )
            .expect("key");
            key
        };
        let first = key_in("install-1", "1");
        assert_eq!(key_in("install-2", "1"), first);
        assert_ne!(key_in("install-3", "2"), first);
    }

    #[test]
    fn tree_hash_sees_content_names_and_skips_target_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir_all(d.join("src")).expect("mkdir");
        fs::write(d.join("src/a.c"), "int a;").expect("write");
        let base = tree_hash(d, &mut Plain, &mut None, &mut Budget::default()).expect("hash");
        fs::create_dir_all(d.join("target")).expect("mkdir");
        fs::write(d.join("target/CACHEDIR.TAG"), "x").expect("write");
        fs::write(d.join("target/junk"), "x").expect("write");
        assert_eq!(
            tree_hash(d, &mut Plain, &mut None, &mut Budget::default()).expect("hash"),
            base
        );
        fs::write(d.join("src/a.c"), "int b;").expect("write");
        let changed = tree_hash(d, &mut Plain, &mut None, &mut Budget::default()).expect("hash");
        assert_ne!(changed, base);
        fs::rename(d.join("src/a.c"), d.join("src/b.c")).expect("rename");
        assert_ne!(
            tree_hash(d, &mut Plain, &mut None, &mut Budget::default()).expect("hash"),
            changed
        );
    }

    /// Every stored build-script run is found by hashes of this form: a change to how the
    /// walk goes (not to what it sees) must leave them as they were.
    #[test]
    fn tree_hash_of_a_fixed_tree_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in [
            "src/unix/linux",
            "src/windows",
            "target/debug",
            "tests",
            ".git",
        ] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        for (file, text) in [
            ("build.rs", "fn main() {}"),
            ("src/lib.rs", "mod unix;"),
            ("src/unix/mod.rs", "mod linux;"),
            ("src/unix/linux/mod.rs", "pub const A: u8 = 1;"),
            ("src/windows/mod.rs", ""),
            (
                "target/CACHEDIR.TAG",
                "Signature: 8a477f597d28d172789f06886806bc55",
            ),
            ("target/debug/junk", "x"),
            ("tests/t.rs", "#[test] fn t() {}"),
            (".git/HEAD", "ref: refs/heads/main"),
        ] {
            fs::write(d.join(file), text).expect("write");
        }
        std::os::unix::fs::symlink("src/lib.rs", d.join("link.rs")).expect("symlink");
        assert_eq!(
            tree_hash(d, &mut Plain, &mut None, &mut Budget::default()).expect("hash"),
            "tree:eafbbc53125105bcbc5632994c194305fc55dddfc14f8870c7d8e2dc8a76760e"
        );
    }

    #[test]
    fn directory_inputs_stay_in_the_package_dir_and_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pkg = d.join("home/registry/src/pkg-1.0");
        fs::create_dir_all(pkg.join("csrc")).expect("mkdir");
        fs::write(pkg.join("csrc/a.c"), "int a;").expect("write");
        fs::write(d.join("home/secret"), "s").expect("write");
        std::os::unix::fs::symlink(d, pkg.join("up")).expect("symlink");
        let store = crate::store::Store::open(&d.join("cache")).expect("open");
        let mut stat = StatCache::new(store.conn());
        let mut hasher = TreeHasher::new(&mut stat, &pkg, Budget::default());
        assert!(hasher.hash_file(&pkg).is_ok());
        assert!(hasher.hash_file(&pkg.join("csrc")).is_ok());
        assert!(hasher.hash_file(&pkg.join("csrc/a.c")).is_ok());
        assert_eq!(hasher.refused, None);
        // `${cargo_home}`, `/`, `${ws}/..` and a link out of the package: never walked.
        for outside in [
            d.join("home"),
            PathBuf::from("/"),
            pkg.join(".."),
            pkg.join("up"),
        ] {
            let mut hasher = TreeHasher::new(&mut stat, &pkg, Budget::default());
            assert!(hasher.hash_file(&outside).is_err(), "{}", outside.display());
            assert_eq!(hasher.refused, Some(Refused::OutsidePackage));
        }
        // A recorded run that declared such a directory is not recorded.
        let declared = Declared {
            files: vec![d.join("home").display().to_string()],
            env: vec![],
        };
        let roots = Roots::new(vec![]);
        let mut hasher = TreeHasher::new(&mut stat, &pkg, Budget::default());
        let recorded = record_manifest(
            &declared,
            &roots,
            &pkg,
            &mut hasher,
            &|_| None,
            SystemTime::now(),
        )
        .expect("no fault");
        assert_eq!(recorded, Err(NotRecorded::Refused(Refused::OutsidePackage)));
        // Past the budget (entries or bytes, over all the directories of one manifest).
        let tight = Budget {
            entries: 2,
            bytes: 1 << 20,
        };
        let mut hasher = TreeHasher::new(&mut stat, &pkg, tight);
        assert!(hasher.hash_file(&pkg.join("csrc")).is_ok());
        assert!(hasher.hash_file(&pkg).is_err());
        assert_eq!(hasher.refused, Some(Refused::TooLarge));
        let small = Budget {
            entries: 100,
            bytes: 3,
        };
        let mut hasher = TreeHasher::new(&mut stat, &pkg, small);
        assert!(hasher.hash_file(&pkg.join("csrc")).is_err());
        assert_eq!(hasher.refused, Some(Refused::TooLarge));
    }
}
