//! What a C/C++ compile read, recorded as a direct-mode manifest after a miss: the source and
//! every header from the `-MD` depfile kache added, with their content hashes, plus the paths
//! that must stay absent for the same headers to be found again.
//!
//! Shadowing: `#include "x.h"` resolves to the first directory of the search path holding
//! `x.h`. A header created later in an earlier directory changes what the same command
//! compiles without touching any file the depfile names. So for each header found as
//! `D/rel`, the manifest records `E/rel` as absent for every directory `E` searched before
//! `D` (the including files' own directories first, then `-iquote`, `-I`, `CPATH`,
//! `-isystem`, the `*_INCLUDE_PATH` variables, the compiler's system directories,
//! `-idirafter`). When several directories prefix a header's path, all readings are recorded;
//! when none does, every suffix of its path is recorded absent in every directory. Extra
//! absent paths can only cost a miss. `__has_include(<x>)` is a lookup that may find nothing
//! and so appear in no depfile: its answer is pinned by recording the search for `x` itself.
//!
//! Not stored at all: sources using `__DATE__`/`__TIME__` without `SOURCE_DATE_EPOCH`, or
//! `__TIMESTAMP__`; assembly using `.include`/`.incbin` (the compiler does not report those
//! files); `__has_include` with a computed name; files changed while the compiler ran.
//! Must not run the compiler or write to the store.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use super::args::{CcArgs, DirKind};
use super::key::{CompilerInfo, include_path_vars};
use crate::key::FileHasher;
use crate::key::depinfo::DepInfo;
use crate::key::manifest::{ABSENT, Manifest, ManifestFile};
use crate::key::roots::Roots;

/// Why a successful compile is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotStored {
    /// An input changed while the compiler ran.
    ChangedDuringCompile(String),
    /// The object depends on the time of the compile.
    UsesTime(&'static str),
    /// Assembly pulls in files the compiler does not report.
    AsmInclude(&'static str),
    /// A `__has_include` whose name is computed.
    ComputedHasInclude,
    /// A depfile path kache cannot read back exactly (`$`, `#`, backslashes).
    UnusualPath(String),
    /// The depfile does not name the source.
    NoSourceInDepfile,
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChangedDuringCompile(p) => write!(f, "{p} changed while the compiler ran"),
            Self::UsesTime(m) => write!(f, "uses {m}"),
            Self::AsmInclude(d) => write!(f, "assembly uses {d}"),
            Self::ComputedHasInclude => f.write_str("__has_include with a computed name"),
            Self::UnusualPath(p) => write!(f, "unusual path {p} in the depfile"),
            Self::NoSourceInDepfile => f.write_str("the depfile does not name the source"),
        }
    }
}

/// Everything [`record`] reads besides the depfile.
pub(crate) struct RecordInputs<'a> {
    pub args: &'a CcArgs,
    pub cwd: &'a Path,
    pub roots: &'a Roots,
    pub info: &'a CompilerInfo,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub compile_start: SystemTime,
}

/// Builds the manifest for a successful compile from its depfile text.
pub(crate) fn record(
    depfile: &str,
    inp: &RecordInputs,
    hasher: &mut dyn FileHasher,
) -> std::io::Result<Result<Manifest, NotStored>> {
    let joined = depfile.replace("\\\r\n", " ").replace("\\\n", " ");
    let deps = DepInfo::parse(&joined).files;
    if let Some(odd) = deps.iter().find(|d| d.contains('\\') || d.contains('$')) {
        return Ok(Err(NotStored::UnusualPath(odd.clone())));
    }
    if !deps.contains(&inp.args.source) {
        return Ok(Err(NotStored::NoSourceInDepfile));
    }
    let sde_set = (inp.env)("SOURCE_DATE_EPOCH").is_some();
    let mut files = Vec::with_capacity(deps.len());
    let mut probes = Vec::new();
    for d in &deps {
        let path = inp.cwd.join(d);
        let meta = std::fs::metadata(&path)?;
        if meta.modified().is_ok_and(|m| m >= inp.compile_start) {
            return Ok(Err(NotStored::ChangedDuringCompile(d.clone())));
        }
        let bytes = std::fs::read(&path)?;
        if let Some(why) = scan(&bytes, inp.args.lang.is_assembly(), sde_set, &mut probes) {
            return Ok(Err(why));
        }
        files.push(ManifestFile {
            path: keyed(inp.roots, d),
            hash: hasher.hash_file(&path)?,
        });
    }
    let search = search_dirs(inp, &deps);
    let mut absent = BTreeSet::new();
    for h in deps.iter().filter(|d| **d != inp.args.source) {
        shadows_of(h, &search, inp.cwd, &mut absent);
    }
    let mut pinned = Vec::new();
    for probe in &probes {
        pin_probe(probe, &search, inp.cwd, &mut absent, &mut pinned);
    }
    for p in pinned {
        let path = inp.cwd.join(&p);
        let hash = hasher.hash_file(&path)?;
        let k = keyed(inp.roots, &p);
        if !files.iter().any(|f| f.path == k) {
            files.push(ManifestFile { path: k, hash });
        }
    }
    files.extend(absent.into_iter().map(|p| ManifestFile {
        path: keyed(inp.roots, &p),
        hash: ABSENT.to_owned(),
    }));
    Ok(Ok(Manifest {
        files,
        env: Vec::new(),
    }))
}

fn keyed(roots: &Roots, path: &str) -> String {
    if Path::new(path).is_absolute() {
        roots.relativize(path).into_owned()
    } else {
        path.to_owned()
    }
}

/// A `__has_include` operand: the name looked up. Quoted names search the including files'
/// directories too; those lead the search path, so walking all of it is the conservative
/// reading for `<...>` and `"..."` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    name: String,
}

/// Looks for what makes a compile unstorable, and collects `__has_include` operands.
fn scan(bytes: &[u8], assembly: bool, sde_set: bool, probes: &mut Vec<Probe>) -> Option<NotStored> {
    use memchr::memmem::find;
    if find(bytes, b"__TIMESTAMP__").is_some() {
        return Some(NotStored::UsesTime("__TIMESTAMP__"));
    }
    if !sde_set {
        for m in ["__DATE__", "__TIME__"] {
            if find(bytes, m.as_bytes()).is_some() {
                return Some(NotStored::UsesTime(m));
            }
        }
    }
    if assembly {
        for d in [".incbin", ".include"] {
            if find(bytes, d.as_bytes()).is_some() {
                return Some(NotStored::AsmInclude(d));
            }
        }
    }
    for pos in memchr::memmem::find_iter(bytes, b"__has_include") {
        let mut rest = &bytes[pos + b"__has_include".len()..];
        if let Some(r) = rest.strip_prefix(b"_next") {
            rest = r;
        }
        // `defined(__has_include)` and `#ifdef __has_include` ask whether the feature exists.
        let trimmed = rest.trim_ascii_start();
        let Some(inner) = trimmed.strip_prefix(b"(") else {
            continue;
        };
        let inner = inner.trim_ascii_start();
        let close = match inner.first() {
            Some(b'<') => b'>',
            Some(b'"') => b'"',
            _ => return Some(NotStored::ComputedHasInclude),
        };
        let body = &inner[1..];
        let Some(end) = body.iter().position(|&c| c == close || c == b'\n') else {
            return Some(NotStored::ComputedHasInclude);
        };
        match std::str::from_utf8(&body[..end]) {
            Ok(name) if body[end] == close && !name.is_empty() => probes.push(Probe {
                name: name.to_owned(),
            }),
            _ => return Some(NotStored::ComputedHasInclude),
        }
    }
    None
}

/// The include search path: the including files' own directories (searched first for
/// `"..."` includes, and only relative to the file that includes), then the ordered list.
/// Each directory is spelled as the compiler spells the headers it finds there (no trailing
/// `/`; `""` is the working directory).
struct SearchPath {
    includers: Vec<String>,
    ordered: Vec<String>,
}

fn normalize(d: &str) -> String {
    let trimmed = d.trim_end_matches('/');
    if trimmed.is_empty() && d.starts_with('/') {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn push_unique(dirs: &mut Vec<String>, d: &str) {
    let d = normalize(d);
    if !dirs.contains(&d) {
        dirs.push(d);
    }
}

fn search_dirs(inp: &RecordInputs, deps: &[String]) -> SearchPath {
    let mut includers = Vec::new();
    for d in deps {
        let parent = Path::new(d)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        push_unique(&mut includers, &parent);
    }
    let user = |kind: DirKind| {
        inp.args
            .include_dirs
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, d)| d.clone())
    };
    let env_dirs = |name: &str| -> Vec<String> {
        (inp.env)(name)
            .map(|v| v.split(':').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let lang_vars = include_path_vars(inp.args.lang);
    let mut all: Vec<String> = user(DirKind::Quote).chain(user(DirKind::Angle)).collect();
    all.extend(env_dirs(lang_vars[0]));
    all.extend(user(DirKind::System));
    for v in &lang_vars[1..] {
        all.extend(env_dirs(v));
    }
    if !inp.args.no_std_inc {
        let lang = match inp.args.lang {
            super::args::Lang::Cxx | super::args::Lang::ObjCxx => "c++",
            _ => "c",
        };
        if let Some((_, sys)) = inp.info.system_dirs.iter().find(|(l, _)| l == lang) {
            all.extend(sys.iter().cloned());
        }
    }
    all.extend(user(DirKind::After));
    let mut ordered = Vec::new();
    for d in &all {
        push_unique(&mut ordered, d);
    }
    SearchPath { includers, ordered }
}

fn join(dir: &str, rel: &str) -> String {
    match dir {
        "" => rel.to_owned(),
        "/" => format!("/{rel}"),
        _ => format!("{dir}/{rel}"),
    }
}

fn exists(cwd: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(cwd.join(p)).is_ok()
}

/// The outermost missing ancestor of an absent `candidate` (or itself): while it is absent,
/// so is everything below it, so one entry stands for many (`inc/sys/a.h`, `inc/sys/b.h`
/// → `inc/sys`). Lookups stat fewer paths; a directory created there is a (safe) miss.
fn absent_root(cwd: &Path, candidate: &str) -> String {
    let mut cur = candidate;
    while let Some((parent, _)) = cur.rsplit_once('/') {
        if parent.is_empty() || exists(cwd, parent) {
            break;
        }
        cur = parent;
    }
    cur.to_owned()
}

/// The name `h` is found by in directory `d`, when `d` prefixes it.
fn relative_to<'h>(h: &'h str, d: &str) -> Option<&'h str> {
    let rel = match d {
        "" if !h.starts_with('/') => Some(h),
        "" => None,
        "/" => h.strip_prefix('/'),
        _ => h.strip_prefix(d).and_then(|r| r.strip_prefix('/')),
    };
    rel.filter(|r| !r.is_empty())
}

/// Records, for header `h`, the absent paths that would shadow it: for every directory `D`
/// that may be where it was found, the same name in every includer directory and in every
/// directory of the ordered list before `D`.
fn shadows_of(h: &str, search: &SearchPath, cwd: &Path, absent: &mut BTreeSet<String>) {
    let record = |earlier: &[String], rel: &str, absent: &mut BTreeSet<String>| {
        for e in earlier {
            let candidate = join(e, rel);
            if candidate != h && !exists(cwd, &candidate) {
                absent.insert(absent_root(cwd, &candidate));
            }
        }
    };
    let mut matched = false;
    for (j, d) in search.ordered.iter().enumerate() {
        if let Some(rel) = relative_to(h, d) {
            matched = true;
            record(&search.includers, rel, absent);
            record(&search.ordered[..j], rel, absent);
        }
    }
    for d in &search.includers {
        if let Some(rel) = relative_to(h, d) {
            matched = true;
            record(&search.includers, rel, absent);
        }
    }
    if !matched {
        // Found through a directory kache does not know: any suffix may be the name looked up.
        let parts: Vec<&str> = h.split('/').filter(|p| !p.is_empty()).collect();
        for start in 0..parts.len() {
            let rel = parts[start..].join("/");
            record(&search.includers, &rel, absent);
            record(&search.ordered, &rel, absent);
        }
    }
}

/// Pins the answer of `__has_include(name)`: every candidate before the first one present is
/// recorded absent, and the one present (if any) is returned to be recorded with its content.
fn pin_probe(
    probe: &Probe,
    search: &SearchPath,
    cwd: &Path,
    absent: &mut BTreeSet<String>,
    pinned: &mut Vec<String>,
) {
    if probe.name.starts_with('/') {
        if exists(cwd, &probe.name) {
            pinned.push(probe.name.clone());
        } else {
            absent.insert(probe.name.clone());
        }
        return;
    }
    for d in search.includers.iter().chain(&search.ordered) {
        let candidate = join(d, &probe.name);
        if exists(cwd, &candidate) {
            if std::fs::metadata(cwd.join(&candidate)).is_ok_and(|m| m.is_file()) {
                pinned.push(candidate);
            } else {
                absent.insert(candidate);
            }
            return;
        }
        absent.insert(candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_time_macros_asm_includes_and_probes() {
        let mut probes = Vec::new();
        assert_eq!(
            scan(b"const char *d = __DATE__;", false, false, &mut probes),
            Some(NotStored::UsesTime("__DATE__"))
        );
        assert_eq!(
            scan(b"const char *d = __DATE__;", false, true, &mut probes),
            None
        );
        assert_eq!(
            scan(b".incbin \"blob\"", true, false, &mut probes),
            Some(NotStored::AsmInclude(".incbin"))
        );
        assert_eq!(scan(b".incbin \"blob\"", false, false, &mut probes), None);
        assert_eq!(
            scan(
                b"#if defined(__has_include)\n#if __has_include(<a/b.h>) && __has_include_next( \"c.h\")\n",
                false,
                false,
                &mut probes
            ),
            None
        );
        assert_eq!(
            probes,
            vec![
                Probe {
                    name: "a/b.h".into()
                },
                Probe { name: "c.h".into() }
            ]
        );
        assert_eq!(
            scan(b"#if __has_include(HEADER)", false, false, &mut probes),
            Some(NotStored::ComputedHasInclude)
        );
    }

    #[test]
    fn a_header_is_shadowed_by_earlier_directories_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        // inc2/sub/x.h was read (so inc2/sub includes), found as `sub/x.h` in inc2 or as
        // `x.h` next to its includer.
        let search = SearchPath {
            includers: vec!["src".to_owned(), "inc2/sub".to_owned()],
            ordered: vec!["inc1".to_owned(), "inc2".to_owned(), "inc3".to_owned()],
        };
        std::fs::create_dir_all(dir.path().join("inc2/sub")).expect("mkdir");
        std::fs::write(dir.path().join("inc2/sub/x.h"), "").expect("write");
        std::fs::create_dir_all(dir.path().join("inc1")).expect("mkdir");
        let mut absent = BTreeSet::new();
        shadows_of("inc2/sub/x.h", &search, dir.path(), &mut absent);
        // inc1/sub/x.h, inc2/sub/sub/x.h, src/sub/x.h, src/x.h, each by its outermost
        // missing ancestor.
        assert_eq!(
            absent.into_iter().collect::<Vec<_>>(),
            vec!["inc1/sub", "inc2/sub/sub", "src"]
        );
        let mut absent = BTreeSet::new();
        shadows_of("/elsewhere/y.h", &search, dir.path(), &mut absent);
        assert!(absent.contains("inc1/y.h") && absent.contains("src"));
    }
}
