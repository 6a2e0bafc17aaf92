//! Cargo's probes of the compiler (`rustc -vV`, `rustc - --crate-name ___ --print=…`),
//! answered from a memo of what the same toolchain printed for the same arguments and
//! environment before.
//!
//! Cargo runs these before any unit, through the wrapper, in every target dir that has no
//! `.rustc_info.json` yet: a new checkout, `cargo install`, a rebuild after `rm -rf target`.
//! Each is a rustc start (11–14 ms here) on the path of the whole build. Owns
//! `<cache>/probes/`. Remembers only what is a function of the toolchain (its memoised
//! identity, never computed here), the exact arguments and the keyed environment: one
//! compiler (no clippy-driver chain), no argfile, no target given as a file or found as one
//! in the sysroot, no relative `--sysroot`, nothing `native`, stdin `/dev/null`, only the
//! print kinds in [`PRINTS`], and only a successful run. Anything else is a plain
//! passthrough. Must not touch the store or the event log.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::invocation::{Invocation, RustcArgs};
use crate::key::env::KeyEnv;
use crate::key::invocation_key::resolve_program;
use crate::key::toolchain;
use crate::key::{KeyBuilder, Label};

/// The `--print` kinds whose answer depends on nothing but the toolchain, the arguments and
/// the environment (and never on the input, which may not be read).
const PRINTS: &[&str] = &[
    "file-names",
    "sysroot",
    "split-debuginfo",
    "crate-name",
    "cfg",
    "target-libdir",
    "host-tuple",
];

/// Arguments a memoised probe may carry (cargo adds the user's `RUSTFLAGS` to its probe).
const FLAGS: &[&str] = &[
    "",
    "--crate-name",
    "--crate-type",
    "--print",
    "-V",
    "-vV",
    "--version",
    "-v",
    "-C",
    "-Z",
    "--cfg",
    "--check-cfg",
    "--target",
    "--sysroot",
    "--edition",
    "-L",
    "-l",
    "-A",
    "-W",
    "-D",
    "-F",
    "--force-warn",
    "--cap-lints",
];

/// Variables the probe reads beyond the rustc key's own: the toolchain's shared libraries and
/// rustc's override of its version line.
const PROBE_VARS: &[&str] = &["LD_LIBRARY_PATH", "RUSTC_OVERRIDE_VERSION_STRING"];

/// One probe's place in the memo.
pub(crate) struct ProbeMemo {
    cache_dir: PathBuf,
    path: PathBuf,
    args: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    args: Vec<String>,
    stdout: String,
    stderr: String,
}

impl ProbeMemo {
    /// The memo for this probe; `None` when its answer could depend on more than the memo is
    /// keyed by, or the toolchain's identity is not memoised yet.
    pub(crate) fn for_probe(
        inv: &Invocation,
        args: &RustcArgs,
        cache_dir: &Path,
        key_env: &KeyEnv,
        cwd: &Path,
    ) -> Option<ProbeMemo> {
        let [compiler] = inv.compiler_chain.as_slice() else {
            return None;
        };
        let raw: Vec<String> = (inv.raw_args.iter())
            .map(|a| a.to_str().map(str::to_owned))
            .collect::<Option<_>>()?;
        let target_path_set =
            (key_env.keyed.iter()).any(|(k, v)| k == "RUST_TARGET_PATH" && v.is_some());
        if !answer_is_keyed(&raw, args) || target_path_set {
            return None;
        }
        let rustc = resolve_program(compiler, cwd, key_env.path_var.as_deref())?;
        let toolchain =
            toolchain::memoised(&rustc, cache_dir, key_env.rustup_toolchain.as_deref())?;
        // A target rustc does not know by itself is read from a spec in the sysroot, which
        // the toolchain's identity does not cover.
        if let Some(target) = &args.target
            && (toolchain.sysroot.join("lib/rustlib").join(target))
                .join("target.json")
                .exists()
        {
            return None;
        }
        let mut k = KeyBuilder::new("probe");
        k.field("rustc", rustc.to_str()?);
        k.field("toolchain", &toolchain.id);
        for a in &raw {
            k.field("arg", a);
        }
        let probe_vars = PROBE_VARS
            .iter()
            .map(|n| (n.to_string(), std::env::var(n).ok()));
        let rustup = (
            "RUSTUP_TOOLCHAIN".to_owned(),
            key_env.rustup_toolchain.clone(),
        );
        let vars = key_env.keyed.iter().cloned().chain(probe_vars);
        for (name, value) in vars.chain([rustup]) {
            let value = value.map_or_else(|| "unset".to_owned(), |v| format!("={v}"));
            k.field(Label::Env(name), value);
        }
        let (name, _) = k.finish();
        Some(ProbeMemo {
            cache_dir: cache_dir.to_owned(),
            path: cache_dir
                .join("probes")
                .join(format!("{}.json", &name[..32])),
            args: raw,
        })
    }

    /// Prints the remembered answer; `false` (nothing printed) when there is none.
    pub(crate) fn replay(&self) -> bool {
        let Some(answer) = crate::fsutil::read_below(&self.cache_dir, &self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Answer>(&bytes).ok())
            .filter(|a| a.args == self.args)
        else {
            return false;
        };
        // cargo may have gone away; nothing kache could do about it.
        let _ = std::io::stdout().write_all(answer.stdout.as_bytes());
        let _ = std::io::stderr().write_all(answer.stderr.as_bytes());
        true
    }

    /// Remembers a successful run's answer. A memo is an optimisation: failing to write it
    /// costs the next build a rustc start, nothing else.
    pub(crate) fn remember(&self, stdout: &[u8], stderr: &[u8]) {
        let (Ok(stdout), Ok(stderr)) = (std::str::from_utf8(stdout), std::str::from_utf8(stderr))
        else {
            return;
        };
        let answer = Answer {
            args: self.args.clone(),
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
        };
        if let Ok(json) = serde_json::to_vec(&answer)
            && let Err(e) = crate::fsutil::write_atomic(&self.cache_dir, &self.path, &json)
        {
            tracing::debug!("cannot remember the probe's answer: {e}");
        }
    }
}

/// Whether everything the probe's answer can depend on besides the toolchain and the
/// environment is in `raw`, its arguments as given.
fn answer_is_keyed(raw: &[String], args: &RustcArgs) -> bool {
    let plain = raw
        .iter()
        .all(|a| !a.starts_with('@') && !a.contains("native"));
    let items_known = args.items.iter().all(|item| {
        let value = item.value.as_deref().unwrap_or_default();
        FLAGS.contains(&item.flag.as_str())
            && match item.flag.as_str() {
                "" => value == "-",
                "--print" => PRINTS.contains(&value),
                "--target" => !value.contains('/') && !value.ends_with(".json"),
                "--sysroot" => Path::new(value).is_absolute(),
                _ => true,
            }
    });
    let input_known = match args.input.as_deref() {
        None => true,
        Some(_) => stdin_is_dev_null(),
    };
    (args.version_probe || !args.prints.is_empty()) && plain && items_known && input_known
}

/// Whether standard input is `/dev/null` (as cargo gives its probes): rustc reads the `-`
/// input even when it only prints.
fn stdin_is_dev_null() -> bool {
    use std::os::fd::AsFd;
    let Ok(stdin) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(stdin).metadata() else {
        return false;
    };
    std::fs::metadata("/dev/null").is_ok_and(|null| {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_char_device() && meta.rdev() == null.rdev()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn keyed(v: &[&str]) -> bool {
        let raw: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        let os: Vec<OsString> = raw.iter().map(OsString::from).collect();
        let args = RustcArgs::parse(&os, Path::new("/")).expect("parse");
        answer_is_keyed(&raw, &args)
    }

    const CARGO_PROBE: &[&str] = &[
        "--crate-name",
        "___",
        "--print=file-names",
        "--crate-type",
        "bin",
        "--crate-type",
        "rlib",
        "--print=sysroot",
        "--print=split-debuginfo",
        "--print=crate-name",
        "--print=cfg",
    ];

    #[test]
    fn cargos_probes_are_memoised() {
        assert!(keyed(&["-vV"]));
        assert!(keyed(CARGO_PROBE));
        let with_flags = [
            CARGO_PROBE,
            &["-C", "opt-level=3", "--cfg", "foo", "-L", "x"],
        ]
        .concat();
        assert!(keyed(&with_flags));
        assert!(keyed(
            &[CARGO_PROBE, &["--target", "wasm32-unknown-unknown"]].concat()
        ));
    }

    #[test]
    fn answers_that_depend_on_more_than_the_arguments_are_not() {
        let not = |extra: &[&str]| !keyed(&[CARGO_PROBE, extra].concat());
        assert!(not(&["-C", "target-cpu=native"]));
        assert!(not(&["--target", "specs/my-target.json"]));
        assert!(not(&["--target", "mine.json"]));
        assert!(not(&["--sysroot", "relative/sysroot"]));
        let dir = tempfile::tempdir().expect("tempdir");
        let argfile = dir.path().join("args.txt");
        std::fs::write(&argfile, "--cfg\nfoo\n").expect("write");
        assert!(not(&[&format!("@{}", argfile.display())]));
        assert!(not(&["--print=native-static-libs"]));
        assert!(not(&["--print=cfg=out.txt"]));
        assert!(not(&["--emit=link"]));
        assert!(not(&["src/lib.rs"]));
        assert!(!keyed(&["--explain", "E0308"]));
        assert!(!keyed(&["--crate-name", "x", "src/lib.rs"]));
    }
}
