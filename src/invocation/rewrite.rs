//! The arguments of the real rustc run on a miss: the ones cargo gave, less `-C incremental`
//! when it is stripped, after the path remapping kache adds, and with a dep-info request when
//! cargo did not make one (the manifest is recorded from it), which keeps rustc's default
//! `link` output when no `--emit` was given. Must not decide what the
//! remapping is (the roots do) nor whether to strip (the configuration does).

use std::ffi::OsString;
use std::path::Path;

use super::RustcArgs;

/// rustc's arguments for the real compile: `remap` first, so the user's own remaps (later on
/// the line) still win; the original arguments, without the `-C incremental` items when
/// `strip_incremental`; then `--emit=dep-info=<extra_depinfo>` if given (after
/// `--emit=link` when the arguments have no `--emit`).
pub(crate) fn compile_args(
    args: &RustcArgs,
    remap: Vec<String>,
    strip_incremental: bool,
    extra_depinfo: Option<&Path>,
) -> Vec<OsString> {
    let mut dropped = vec![false; args.tokens.len()];
    if strip_incremental {
        for &i in &args.incremental_items {
            for t in args.items[i].span.clone() {
                dropped[t] = true;
            }
        }
    }
    let mut out: Vec<OsString> = remap.into_iter().map(Into::into).collect();
    out.extend(
        args.tokens
            .iter()
            .zip(&dropped)
            .filter(|(_, d)| !**d)
            .map(|(t, _)| OsString::from(t)),
    );
    if let Some(path) = extra_depinfo {
        // An `--emit` replaces rustc's default output (`link`) rather than adding to it:
        // without one of cargo's, ours alone would leave the compile writing nothing else.
        if args.emits.is_empty() {
            out.push("--emit=link".into());
        }
        let mut a = OsString::from("--emit=dep-info=");
        a.push(path);
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(words: &[&str]) -> RustcArgs {
        let raw: Vec<OsString> = words.iter().map(OsString::from).collect();
        RustcArgs::parse(&raw, Path::new("/w")).expect("parses")
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn remap_first_then_the_arguments_then_dep_info() {
        let args = parsed(&["--crate-name", "x", "src/lib.rs", "--emit=link"]);
        let got = strings(compile_args(
            &args,
            vec!["--remap-path-prefix=/w=.".into()],
            false,
            Some(Path::new("/tmp/x.d")),
        ));
        assert_eq!(
            got,
            [
                "--remap-path-prefix=/w=.",
                "--crate-name",
                "x",
                "src/lib.rs",
                "--emit=link",
                "--emit=dep-info=/tmp/x.d"
            ]
        );
    }

    /// A rustc call without `--emit` (not cargo's, which always passes one) compiled nothing
    /// but the dep-info kache asked for, and stored an entry with no outputs.
    #[test]
    fn without_an_emit_the_default_output_is_kept() {
        let args = parsed(&["--crate-name", "x", "src/lib.rs"]);
        let got = strings(compile_args(
            &args,
            Vec::new(),
            false,
            Some(Path::new("/t/x.d")),
        ));
        assert_eq!(
            got,
            [
                "--crate-name",
                "x",
                "src/lib.rs",
                "--emit=link",
                "--emit=dep-info=/t/x.d"
            ]
        );
        assert_eq!(
            strings(compile_args(&args, Vec::new(), false, None)),
            ["--crate-name", "x", "src/lib.rs"]
        );
    }

    #[test]
    fn stripping_drops_every_word_of_the_incremental_items_only() {
        let words = [
            "--crate-name",
            "x",
            "src/lib.rs",
            "-C",
            "incremental=/w/target/inc",
            "-Copt-level=1",
        ];
        let args = parsed(&words);
        assert_eq!(
            strings(compile_args(&args, Vec::new(), true, None)),
            ["--crate-name", "x", "src/lib.rs", "-Copt-level=1"]
        );
        assert_eq!(strings(compile_args(&args, Vec::new(), false, None)), words);
    }
}
