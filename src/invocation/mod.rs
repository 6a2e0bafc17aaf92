//! How kache was called: as `kache <compiler> [<compiler>] <args…>` by cargo.
//!
//! Owns splitting argv into the compiler chain (`RUSTC_WRAPPER` and `RUSTC_WORKSPACE_WRAPPER`
//! may stack, e.g. `kache clippy-driver rustc …`) and the rustc arguments, expanding `@argfile`s,
//! and deciding whether an invocation can be cached at all ([`PassthroughReason`]), and
//! predicting the files it writes ([`outputs`]), which both the compile and the restore
//! steps need. Must not touch the store or hash anything.

mod args;
mod compiler;
pub(crate) mod outputs;
mod passthrough;
pub(crate) mod rewrite;

pub(crate) use args::{EmitKind, RustcArgs};
pub(crate) use compiler::{C_DRIVERS, CompilerFamily};
pub(crate) use passthrough::PassthroughReason;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One call of the wrapper: the programs to run and the arguments rustc will see.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// The programs to run, outermost first: `[rustc]` or `[clippy-driver, rustc]`.
    pub compiler_chain: Vec<PathBuf>,
    /// The arguments after the compiler chain, exactly as received (argfiles not expanded).
    pub raw_args: Vec<OsString>,
}

impl Invocation {
    /// Splits `argv[1..]` (everything after `kache`) into the compiler chain and its arguments.
    /// Returns `None` when there is no compiler to run.
    pub(crate) fn from_wrapper_args(mut args: Vec<OsString>) -> Option<Self> {
        if args.is_empty() {
            return None;
        }
        let first = PathBuf::from(args.remove(0));
        let mut compiler_chain = vec![first];
        // cargo runs `$RUSTC_WRAPPER $RUSTC_WORKSPACE_WRAPPER $RUSTC args`: a second program
        // follows when the next word is not a flag and names an existing file.
        if let Some(next) = args.first()
            && looks_like_program(next)
        {
            compiler_chain.push(PathBuf::from(args.remove(0)));
        }
        Some(Invocation {
            compiler_chain,
            raw_args: args,
        })
    }

    /// The rustc at the end of the chain; its identity is the toolchain's.
    pub(crate) fn rustc(&self) -> &Path {
        self.compiler_chain
            .last()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("rustc"))
    }

    /// The programs in front of rustc (e.g. clippy-driver), whose identity also goes in the key.
    pub(crate) fn driver_wrappers(&self) -> &[PathBuf] {
        let n = self.compiler_chain.len();
        &self.compiler_chain[..n.saturating_sub(1)]
    }
}

fn looks_like_program(arg: &OsString) -> bool {
    let Some(s) = arg.to_str() else { return false };
    if s.starts_with('-') || s.starts_with('@') || s.ends_with(".rs") {
        return false;
    }
    let name = Path::new(s)
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // A bare source file name never looks like this; a second compiler always does.
    let rustc_like = name == "rustc" || name.starts_with("rustc-") || name.ends_with("-rustc");
    rustc_like && (s.contains('/') || !Path::new(s).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn plain_wrapper() {
        let inv = Invocation::from_wrapper_args(os(&["/tc/bin/rustc", "--crate-name", "x"]))
            .expect("invocation");
        assert_eq!(inv.compiler_chain, vec![PathBuf::from("/tc/bin/rustc")]);
        assert_eq!(inv.raw_args.len(), 2);
        assert!(inv.driver_wrappers().is_empty());
    }

    #[test]
    fn stacked_workspace_wrapper() {
        let inv =
            Invocation::from_wrapper_args(os(&["/tc/bin/clippy-driver", "/tc/bin/rustc", "-vV"]))
                .expect("invocation");
        assert_eq!(inv.rustc(), Path::new("/tc/bin/rustc"));
        assert_eq!(
            inv.driver_wrappers(),
            &[PathBuf::from("/tc/bin/clippy-driver")]
        );
        assert_eq!(inv.raw_args, os(&["-vV"]));
    }

    #[test]
    fn source_file_is_not_a_program() {
        let inv = Invocation::from_wrapper_args(os(&["rustc", "src/main.rs"])).expect("inv");
        assert_eq!(inv.compiler_chain.len(), 1);
    }

    #[test]
    fn empty_is_none() {
        assert!(Invocation::from_wrapper_args(Vec::new()).is_none());
    }
}
