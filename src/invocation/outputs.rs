//! Which files a compile writes into `--out-dir`, predicted from crate types, emit kinds,
//! `-C extra-filename` and the target's file-name conventions. Predicting (rather than
//! listing the directory afterwards) is what lets parallel rustc processes share an out dir.

use super::{EmitKind, PassthroughReason, RustcArgs};

/// Output file names for a target family.
struct Naming {
    dylib: (&'static str, &'static str),
    staticlib: (&'static str, &'static str),
    exe_suffix: &'static str,
}

fn naming(target: &str) -> Option<Naming> {
    let elf = [
        "linux",
        "android",
        "freebsd",
        "netbsd",
        "openbsd",
        "dragonfly",
        "illumos",
        "solaris",
    ];
    if elf.iter().any(|os| target.contains(os)) {
        return Some(Naming {
            dylib: ("lib", ".so"),
            staticlib: ("lib", ".a"),
            exe_suffix: "",
        });
    }
    if target.starts_with("wasm32-") || target.starts_with("wasm64-") {
        return Some(Naming {
            dylib: ("", ".wasm"),
            staticlib: ("lib", ".a"),
            exe_suffix: ".wasm",
        });
    }
    None
}

/// The files the invocation may write into its out dir (not counting dep-info), by name.
pub(crate) fn expected_outputs(
    args: &RustcArgs,
    target: &str,
) -> Result<Vec<String>, PassthroughReason> {
    let naming =
        naming(target).ok_or_else(|| PassthroughReason::UnsupportedTarget(target.to_owned()))?;
    let crate_name = args.crate_name.as_deref().unwrap_or("main");
    let stem = format!(
        "{crate_name}{}",
        args.codegen_value("extra-filename").unwrap_or_default()
    );
    let kinds = args.emit_kinds();
    let mut names = Vec::new();
    if kinds.contains(&EmitKind::Metadata) {
        names.push(format!("lib{stem}.rmeta"));
    }
    if kinds.contains(&EmitKind::Link) {
        for t in args.effective_crate_types() {
            let name = match t {
                "lib" | "rlib" => format!("lib{stem}.rlib"),
                "dylib" | "cdylib" | "proc-macro" => {
                    format!("{}{stem}{}", naming.dylib.0, naming.dylib.1)
                }
                "staticlib" => format!("{}{stem}{}", naming.staticlib.0, naming.staticlib.1),
                _ => format!("{stem}{}", naming.exe_suffix),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if args.emits.iter().any(|e| e.path.is_some()) {
        return Err(PassthroughReason::ExplicitOutput);
    }
    Ok(names)
}

/// The dep-info file rustc writes in the out dir when asked without a path.
pub(crate) fn depinfo_name(args: &RustcArgs) -> String {
    format!(
        "{}{}.d",
        args.crate_name.as_deref().unwrap_or("main"),
        args.codegen_value("extra-filename").unwrap_or_default()
    )
}

/// Outputs that nothing rewrites in place after the build, so they may share an inode with
/// their blob: libraries (`.rlib`, `.rmeta`), proc-macro libraries (only rustc loads them)
/// and build-script executables (only cargo runs them; neither is uplifted into
/// `target/<profile>/`). Binaries, cdylibs, dylibs and staticlibs are not: people `strip`
/// them, and `strip` rewrites a file with several links in place.
pub(crate) fn is_linkable(name: &str, crate_name: &str, crate_types: &[String]) -> bool {
    if name.ends_with(".rlib") || name.ends_with(".rmeta") {
        return true;
    }
    let only = |t: &str| crate_types.len() == 1 && crate_types[0] == t;
    only("proc-macro") || (crate_name == "build_script_build" && only("bin"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::Path;

    fn args(v: &[&str]) -> RustcArgs {
        let raw: Vec<OsString> = v.iter().map(OsString::from).collect();
        RustcArgs::parse(&raw, Path::new("/")).expect("parse")
    }

    const LINUX: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn pipelined_lib() {
        let a = args(&[
            "--crate-name",
            "foo",
            "src/lib.rs",
            "--crate-type",
            "lib",
            "--emit=dep-info,metadata,link",
            "-C",
            "extra-filename=-abc",
        ]);
        assert_eq!(
            expected_outputs(&a, LINUX).expect("names"),
            vec!["libfoo-abc.rmeta", "libfoo-abc.rlib"]
        );
        assert_eq!(depinfo_name(&a), "foo-abc.d");
    }

    #[test]
    fn every_crate_type() {
        let a = args(&[
            "--crate-name",
            "x",
            "x.rs",
            "--crate-type",
            "bin,cdylib,staticlib,proc-macro",
            "--emit=link",
        ]);
        assert_eq!(
            expected_outputs(&a, LINUX).expect("names"),
            vec!["x", "libx.so", "libx.a"]
        );
        let check = args(&[
            "--crate-name",
            "x",
            "x.rs",
            "--crate-type",
            "bin",
            "--emit=dep-info,metadata",
        ]);
        assert_eq!(
            expected_outputs(&check, LINUX).expect("names"),
            vec!["libx.rmeta"]
        );
    }

    #[test]
    fn what_may_share_an_inode_with_its_blob() {
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_linkable("libfoo-1.rlib", "foo", &types(&["lib"])));
        assert!(is_linkable("libfoo-1.rmeta", "foo", &types(&["bin"])));
        assert!(is_linkable(
            "libderive-1.so",
            "derive",
            &types(&["proc-macro"])
        ));
        assert!(is_linkable(
            "build_script_build-1",
            "build_script_build",
            &types(&["bin"])
        ));
        assert!(!is_linkable("app-1", "app", &types(&["bin"])));
        assert!(!is_linkable("libplugin.so", "plugin", &types(&["cdylib"])));
        assert!(!is_linkable("libfoo.so", "foo", &types(&["dylib"])));
        assert!(!is_linkable("libfoo.a", "foo", &types(&["staticlib"])));
    }

    #[test]
    fn unknown_targets_pass_through() {
        let a = args(&["--crate-name", "x", "x.rs"]);
        assert!(expected_outputs(&a, "x86_64-pc-windows-msvc").is_err());
        assert_eq!(
            expected_outputs(&a, "wasm32-unknown-unknown").expect("wasm"),
            vec!["x.wasm"]
        );
    }
}
