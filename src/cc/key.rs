//! The key of a C/C++ compile: the compiler's identity, the arguments, the environment the
//! compiler reads, and the working directory where it can reach the object.
//!
//! The compiler's identity is the content of the resolved driver (through the stat cache),
//! the name it was called by (`clang` and `clang++` are one binary), its `-dumpmachine` and
//! `--version`, and the content of gcc's `cc1`/`cc1plus` (which live elsewhere, so swapping
//! gcc's internals misses). Running the compiler for those is memoised on disk in
//! `<cache>/compilers/`, validated by the driver's size and mtime like the toolchain memo.
//! The source and headers are not here: they are the manifest's (direct mode). Must not write
//! anything but that memo.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::args::{CcArgs, Lang};
use crate::key::roots::Roots;
use crate::key::{FileHasher, KeyBuilder, KeyField};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CcKeyError {
    #[error("cannot find the compiler {0}")]
    NoCompiler(PathBuf),
    #[error("cannot run {program} {args}: {source}")]
    Spawn {
        program: PathBuf,
        args: String,
        source: std::io::Error,
    },
    #[error("{program} {args} failed")]
    Failed { program: PathBuf, args: String },
    #[error("cannot hash {path}: {source}")]
    Hash {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Environment variables a C/C++ driver or its subprograms read.
const COMPILER_VARS: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
    "SOURCE_DATE_EPOCH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "GCC_COMPARE_DEBUG",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "IPHONEOS_DEPLOYMENT_TARGET",
    "TVOS_DEPLOYMENT_TARGET",
    "WATCHOS_DEPLOYMENT_TARGET",
    "CCC_OVERRIDE_OPTIONS",
    "LANG",
    "LANGUAGE",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
];

/// Whether the compiler reads `name` (besides the user's extra list).
pub(crate) fn is_keyed_var(name: &str) -> bool {
    COMPILER_VARS.contains(&name) || name.starts_with("LC_")
}

/// The include-path variables, in the order the compiler searches them (after `-I`).
pub(crate) fn include_path_vars(lang: Lang) -> &'static [&'static str] {
    match lang {
        Lang::C | Lang::AsmCpp | Lang::Asm => &["CPATH", "C_INCLUDE_PATH"],
        Lang::Cxx => &["CPATH", "CPLUS_INCLUDE_PATH"],
        Lang::ObjC => &["CPATH", "OBJC_INCLUDE_PATH"],
        Lang::ObjCxx => &["CPATH", "OBJCPLUS_INCLUDE_PATH"],
    }
}

/// What running the compiler told about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompilerInfo {
    pub version: String,
    pub machine: String,
    /// Internal programs (`cc1`, `cc1plus`) that `-print-prog-name` names by path.
    pub internals: Vec<PathBuf>,
    /// The assembler as `-print-prog-name=as` names it: a path, or a name looked up in
    /// `PATH` when the compile runs (so it is resolved per invocation, not memoised).
    pub assembler: String,
    /// Accepts `-ffile-prefix-map=` (gcc ≥ 8, clang ≥ 10).
    pub prefix_map: bool,
    /// The system include directories, per language name, in search order.
    pub system_dirs: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Memo {
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
    info: CompilerInfo,
}

/// The compiler's self-description, from the memo when its stamp still matches.
pub(crate) fn compiler_info(compiler: &Path, cache_dir: &Path) -> Result<CompilerInfo, CcKeyError> {
    let meta =
        std::fs::metadata(compiler).map_err(|_| CcKeyError::NoCompiler(compiler.to_owned()))?;
    let (size, mtime_ns) = (
        meta.size(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
    );
    let memo_path = memo_path(cache_dir, compiler);
    if let Ok(bytes) = crate::fsutil::read_below(cache_dir, &memo_path)
        && let Ok(memo) = serde_json::from_slice::<Memo>(&bytes)
        && memo.path == compiler
        && memo.size == size
        && memo.mtime_ns == mtime_ns
    {
        return Ok(memo.info);
    }
    let info = compute(compiler)?;
    let memo = Memo {
        path: compiler.to_owned(),
        size,
        mtime_ns,
        info: info.clone(),
    };
    // The memo only saves time: failing to write it never changes a key.
    if let Ok(json) = serde_json::to_vec(&memo) {
        let _ = crate::fsutil::write_atomic(cache_dir, &memo_path, &json);
    }
    Ok(info)
}

fn memo_path(cache_dir: &Path, compiler: &Path) -> PathBuf {
    let h = blake3::hash(compiler.as_os_str().as_encoded_bytes()).to_hex();
    cache_dir
        .join("compilers")
        .join(format!("{}.json", &h[..32]))
}

fn output(compiler: &Path, args: &[&str], stdin_null: bool) -> Result<Vec<u8>, CcKeyError> {
    let mut cmd = Command::new(compiler);
    cmd.args(args);
    if stdin_null {
        cmd.stdin(std::process::Stdio::null());
    }
    let out = cmd.output().map_err(|source| CcKeyError::Spawn {
        program: compiler.to_owned(),
        args: args.join(" "),
        source,
    })?;
    if !out.status.success() {
        return Err(CcKeyError::Failed {
            program: compiler.to_owned(),
            args: args.join(" "),
        });
    }
    // `-E -v` writes its search list on stderr.
    Ok([out.stdout, out.stderr].concat())
}

fn compute(compiler: &Path) -> Result<CompilerInfo, CcKeyError> {
    let text = |args: &[&str]| {
        output(compiler, args, true).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let version = text(&["--version"])?;
    let machine = text(&["-dumpmachine"])?.trim().to_owned();
    let mut internals = Vec::new();
    for prog in ["cc1", "cc1plus"] {
        let named = text(&[&format!("-print-prog-name={prog}")])?;
        let p = PathBuf::from(named.trim());
        if p.is_absolute() && p.is_file() {
            internals.push(p);
        }
    }
    let assembler = text(&["-print-prog-name=as"])?.trim().to_owned();
    let prefix_map = output(
        compiler,
        &[
            "-ffile-prefix-map=/kache-probe=.",
            "-E",
            "-x",
            "c",
            "/dev/null",
        ],
        true,
    )
    .is_ok();
    let mut system_dirs = Vec::new();
    for lang in ["c", "c++"] {
        // Not every driver knows every language; a missing list only costs the shadow check
        // its exact answer for system headers (see `shadow`).
        if let Ok(out) = output(compiler, &["-x", lang, "-E", "-v", "/dev/null"], true) {
            system_dirs.push((
                lang.to_owned(),
                parse_search_list(&String::from_utf8_lossy(&out)),
            ));
        }
    }
    Ok(CompilerInfo {
        version,
        machine,
        internals,
        assembler,
        prefix_map,
        system_dirs,
    })
}

/// The directories between `#include <...> search starts here:` and `End of search list.`
fn parse_search_list(text: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("#include <...> search starts here:") {
            inside = true;
        } else if line.starts_with("End of search list.") {
            break;
        } else if inside {
            let dir = line.trim().trim_end_matches(" (framework directory)");
            dirs.push(dir.to_owned());
        }
    }
    dirs
}

/// Everything that goes into a C invocation key.
pub(crate) struct CcKeyInputs<'a> {
    pub args: &'a CcArgs,
    /// The driver as called (`argv[1]`), and where it resolves.
    pub called_as: &'a Path,
    pub resolved: &'a Path,
    pub info: &'a CompilerInfo,
    /// `Some` when kache remaps the roots' paths in the object (`-ffile-prefix-map`), so
    /// paths under them are keyed relative to the checkout.
    pub remap: Option<&'a Roots>,
    pub cwd: &'a Path,
    pub env: &'a [(String, Option<String>)],
    /// The assembler the driver will run, resolved through `PATH` (`None`: not found).
    pub assembler: Option<&'a Path>,
}

/// The invocation key and its readable fields.
pub(crate) fn invocation_key(
    inputs: &CcKeyInputs,
    hasher: &mut dyn FileHasher,
) -> Result<(String, Vec<KeyField>), CcKeyError> {
    let hash = |hasher: &mut dyn FileHasher, p: &Path| {
        hasher.hash_file(p).map_err(|source| CcKeyError::Hash {
            path: p.to_owned(),
            source,
        })
    };
    let a = inputs.args;
    let mut k = KeyBuilder::new("c-invocation");
    k.field("family", "c");
    let name = inputs
        .called_as
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    k.field("compiler-name", name);
    k.field("compiler", hash(hasher, inputs.resolved)?);
    k.field("compiler-machine", inputs.info.machine.clone());
    k.field("compiler-version", inputs.info.version.clone());
    for p in &inputs.info.internals {
        let label = format!(
            "compiler-internal:{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        );
        k.field(label, hash(hasher, p)?);
    }
    // gcc runs `as` for every object (clang only with -fno-integrated-as, so keying it there
    // costs at most a miss when binutils change).
    match inputs.assembler {
        Some(p) => k.field("assembler", hash(hasher, p)?),
        None => k.field("assembler", "none"),
    }
    k.field("language", a.lang.name());
    let relative = |text: &str| match inputs.remap {
        Some(r) => r.relativize(text).into_owned(),
        None => text.to_owned(),
    };
    k.field(
        "remapped",
        if inputs.remap.is_some() { "yes" } else { "no" },
    );
    for (i, t) in a.tokens.iter().enumerate() {
        if a.output_indices.contains(&i) {
            continue;
        }
        // Only path operands are relativised: a path inside `-DNAME="/x"` reaches the object
        // as written, whatever kache remaps.
        let value = if a.path_operands.contains(&i) {
            relative(t)
        } else {
            t.clone()
        };
        k.field(format!("arg:{i}"), value);
    }
    // The object names the working directory only in its debug info (DW_AT_comp_dir).
    if a.debug {
        k.field("cwd", relative(&inputs.cwd.to_string_lossy()));
    }
    for (name, value) in inputs.env {
        let value = match value {
            Some(v) => format!("={}", relative(v)),
            None => "unset".to_owned(),
        };
        k.field(format!("env:{name}"), value);
    }
    Ok(k.finish())
}

/// The keyed variables of `vars` plus every name in `extra` (unset ones keyed as unset).
pub(crate) fn keyed_vars(
    vars: impl Iterator<Item = (String, String)>,
    extra: &[String],
) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = vars
        .filter(|(k, _)| is_keyed_var(k) || extra.contains(k))
        .map(|(k, v)| (k, Some(v)))
        .collect();
    for name in COMPILER_VARS
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
    {
        if !out.iter().any(|(k, _)| *k == name) {
            out.push((name, None));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_list() {
        let text = "ignoring nonexistent directory \"/x\"\n\
            #include \"...\" search starts here:\n\
            #include <...> search starts here:\n /usr/lib/gcc/x86_64-linux-gnu/12/include\n \
            /usr/local/include\n /usr/include\nEnd of search list.\n";
        assert_eq!(
            parse_search_list(text),
            vec![
                "/usr/lib/gcc/x86_64-linux-gnu/12/include",
                "/usr/local/include",
                "/usr/include"
            ]
        );
    }

    #[test]
    fn keyed_variables() {
        let vars = [
            ("CPATH", "/inc"),
            ("LC_ALL", "C"),
            ("HOME", "/root"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let keyed = keyed_vars(vars.into_iter(), &[]);
        assert!(keyed.contains(&("CPATH".into(), Some("/inc".into()))));
        assert!(keyed.contains(&("LC_ALL".into(), Some("C".into()))));
        assert!(keyed.contains(&("SOURCE_DATE_EPOCH".into(), None)));
        assert!(!keyed.iter().any(|(k, _)| k == "HOME" || k == "PATH"));
    }
}
