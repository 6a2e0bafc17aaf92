//! The invocation key: everything about an invocation that is known before compiling.
//!
//! Arguments are keyed with output locations removed (`--out-dir`, the `-C incremental`
//! directory: whether rustc compiles incrementally is keyed on its own), with flags that only shape diagnostics removed (`--color`,
//! `--diagnostic-width`), with order-free lists sorted (`--cfg`, `--check-cfg`, `--extern`)
//! and with root paths relativised (except in linker arguments, which end up in the artifact
//! verbatim). Files named on the command line that rustc reads
//! (`--extern` crates, `-l` archives, a target JSON, the linker) are keyed by content.

use std::path::{Path, PathBuf};

use super::roots::Roots;
use super::toolchain::Toolchain;
use super::{FileHasher, KeyBuilder, KeyField, Label};
use crate::fsutil::absolute;
use crate::invocation::RustcArgs;

#[derive(Debug, thiserror::Error)]
#[error("cannot hash {path}: {source}")]
pub(crate) struct KeyError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub(crate) struct KeyInputs<'a> {
    pub args: &'a RustcArgs,
    pub toolchain: &'a Toolchain,
    /// Programs in front of rustc (clippy-driver), keyed by content.
    pub drivers: &'a [PathBuf],
    pub roots: &'a Roots,
    pub cwd: &'a Path,
    /// The keyed environment (see [`super::env::keyed_vars`]).
    pub env: &'a [(String, Option<String>)],
    pub path_var: Option<&'a str>,
    /// Where clippy starts looking for its configuration (`CLIPPY_CONF_DIR`, else
    /// `CARGO_MANIFEST_DIR`), when a driver runs in front of rustc.
    pub driver_conf_dir: Option<&'a Path>,
    /// Whether rustc runs with `-C incremental`. Its outputs differ from a non-incremental
    /// compile's (other codegen units), so this is keyed; the session dir's path is not.
    pub incremental: bool,
}

/// Computes the invocation key and its readable fields.
pub(crate) fn invocation_key(
    inputs: &KeyInputs,
    hasher: &mut dyn FileHasher,
) -> Result<(String, Vec<KeyField>), KeyError> {
    let KeyInputs {
        args,
        toolchain,
        roots,
        cwd,
        ..
    } = inputs;
    let rel = |s: &str| roots.relativize(s).into_owned();
    let mut hash = |path: &Path| {
        hasher.hash_file(path).map_err(|source| KeyError {
            path: path.to_owned(),
            source,
        })
    };
    let mut k = KeyBuilder::new("invocation");
    k.field("toolchain", &toolchain.id);
    k.field("rustc-release", &toolchain.release);
    for driver in inputs.drivers {
        let program =
            resolve_program(driver, cwd, inputs.path_var).unwrap_or_else(|| driver.to_owned());
        k.field("driver", hash(&program)?);
    }
    if !inputs.drivers.is_empty() {
        // clippy reads its configuration behind rustc's back (it is not in the dep-info).
        let start = inputs.driver_conf_dir.unwrap_or(cwd);
        let value = match find_clippy_conf(&absolute(cwd, start)) {
            Some(conf) => format!("{} {}", rel(&conf.to_string_lossy()), hash(&conf)?),
            None => "none".to_owned(),
        };
        k.field("clippy-conf", value);
    }
    k.field("cwd", rel(&cwd.to_string_lossy()));
    // Which roots exist decides the remapping; their order follows path lengths, which vary
    // between checkouts and do not change which mapping applies.
    let mut remaps: Vec<String> = roots
        .iter()
        .map(|r| format!("{}={}", r.name, r.remap_to))
        .collect();
    remaps.sort();
    remaps.dedup();
    k.field("remap", remaps.join(","));

    let mut cfgs = Vec::new();
    let mut check_cfgs = Vec::new();
    let mut emits = Vec::new();
    for item in &args.items {
        let value = item.value.as_deref().unwrap_or_default();
        match item.flag.as_str() {
            "--out-dir" | "-o" | "--diagnostic-width" | "--color" | "--extern" => {}
            "-C" if value.starts_with("incremental") => {}
            // Written into the artifact as given (an rpath into `OUT_DIR`, the file an
            // instrumented binary writes its profile to), out of `--remap-path-prefix`'s
            // reach: a root path in them is keyed as is.
            "-C" | "-Z" if VERBATIM_OPTIONS.iter().any(|o| value.starts_with(o)) => {
                k.field(Label::Arg(item.flag.clone()), value)
            }
            "--cfg" => cfgs.push(value.to_owned()),
            "--check-cfg" => check_cfgs.push(value.to_owned()),
            "--emit" => emits.extend(
                value
                    .split(',')
                    .map(|e| e.split('=').next().unwrap_or(e).to_owned()),
            ),
            "" => k.field("input", rel(value)),
            flag => k.field(Label::Arg(flag.to_owned()), rel(value)),
        }
    }
    if inputs.incremental {
        k.field("incremental", "on");
    }
    for (label, mut list) in [("cfg", cfgs), ("check-cfg", check_cfgs), ("emit", emits)] {
        list.sort();
        list.dedup();
        for v in list {
            k.field(label, v);
        }
    }

    let mut externs: Vec<_> = args.externs.iter().collect();
    externs.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    for e in externs {
        let value = match &e.path {
            Some(p) => {
                let p = absolute(cwd, p);
                format!("{} {}", rel(&p.to_string_lossy()), hash(&p)?)
            }
            None => "(no path)".to_owned(),
        };
        k.field(Label::Extern(e.name.clone()), value);
    }

    for lib in &args.native_libs {
        let static_kind = lib.kind == "static";
        let candidates: Vec<String> = if static_kind {
            vec![format!("lib{}.a", lib.name), format!("{}.lib", lib.name)]
        } else {
            vec![format!("lib{}.so", lib.name), format!("lib{}.a", lib.name)]
        };
        let found = args
            .search_paths
            .iter()
            .filter(|(kind, _)| matches!(kind.as_str(), "native" | "all" | "framework"))
            .flat_map(|(_, dir)| candidates.iter().map(move |c| absolute(cwd, &dir.join(c))))
            .find(|p| p.is_file());
        let value = match found {
            Some(p) => hash(&p)?,
            // Not in a -L directory: a system library, found by the linker on its own.
            None => "system".to_owned(),
        };
        k.field(format!("native-lib {}:{}", lib.kind, lib.name), value);
    }

    match args.target.as_deref() {
        Some(t) if t.ends_with(".json") => {
            k.field("target-json", hash(&absolute(cwd, Path::new(t)))?);
        }
        Some(t) => k.field("target", t),
        None => k.field("target", &toolchain.host),
    }

    if args.links() {
        let linker = args.codegen_value("linker").unwrap_or("cc");
        let value = match resolve_program(Path::new(linker), cwd, inputs.path_var) {
            Some(p) => hash(&p)?,
            None => format!("not found: {linker}"),
        };
        k.field("linker", value);
    }

    for (name, value) in inputs.env {
        let v = match value {
            Some(v) => format!("={}", rel(v)),
            None => "unset".to_owned(),
        };
        k.field(Label::Env(name.clone()), v);
    }
    Ok(k.finish())
}

/// `-C`/`-Z` options whose paths reach the artifact verbatim.
const VERBATIM_OPTIONS: &[&str] = &["link-arg", "pre-link-arg", "profile-generate"];

/// The file clippy would read: the first `.clippy.toml` or `clippy.toml` from `start` upwards.
fn find_clippy_conf(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        [".clippy.toml", "clippy.toml"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Finds a program the way the OS would: a path with a slash as is, a bare name in `PATH`
/// (the first executable file; an empty or relative entry is relative to `cwd`). Always
/// absolute, so what is remembered by the path names one file whatever the directory.
pub(crate) fn resolve_program(
    program: &Path,
    cwd: &Path,
    path_var: Option<&str>,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        let p = absolute(cwd, program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var?)
        .map(|dir| absolute(cwd, &dir.join(program)))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::roots::Root;
    use std::ffi::OsString;

    #[test]
    fn programs_are_found_as_the_os_finds_them_and_always_absolute() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (plain, exe) = (dir.path().join("plain"), dir.path().join("exe"));
        for d in [&plain, &exe] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("tool"), "#!/bin/sh\n").expect("write");
        }
        let mode = |p: &Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        mode(&plain.join("tool"), 0o644);
        mode(&exe.join("tool"), 0o755);
        // A file that cannot be run is passed over, and a relative entry is the cwd's.
        let found = resolve_program(Path::new("tool"), dir.path(), Some("plain:exe"));
        assert_eq!(found, Some(exe.join("tool")));
        assert_eq!(
            resolve_program(Path::new("plain/tool"), dir.path(), None),
            None,
            "not executable"
        );
        assert_eq!(
            resolve_program(Path::new("exe/tool"), dir.path(), None),
            Some(exe.join("tool"))
        );
    }

    struct ByName;
    impl FileHasher for ByName {
        fn hash_file(&mut self, path: &Path) -> std::io::Result<String> {
            Ok(format!(
                "h({})",
                path.file_name().unwrap_or_default().to_string_lossy()
            ))
        }
    }

    fn toolchain() -> Toolchain {
        Toolchain {
            rustc: "/tc/bin/rustc".into(),
            version: "rustc 1.0".into(),
            host: "x86_64-unknown-linux-gnu".into(),
            release: "1.0".into(),
            sysroot: "/tc".into(),
            sysroot_hash: "s".into(),
            id: "tc-id".into(),
        }
    }

    fn key_of(args: &[&str], ws: &str, env: &[(String, Option<String>)]) -> String {
        let raw: Vec<OsString> = args.iter().map(|a| a.replace("$WS", ws).into()).collect();
        let parsed = RustcArgs::parse(&raw, Path::new(ws)).expect("parse");
        let roots = Roots::new(vec![Root {
            name: "ws",
            path: ws.into(),
            remap_to: ".",
        }]);
        let tc = toolchain();
        let inputs = KeyInputs {
            args: &parsed,
            toolchain: &tc,
            drivers: &[],
            roots: &roots,
            cwd: Path::new(ws),
            env,
            path_var: None,
            driver_conf_dir: None,
            incremental: !parsed.incremental_items.is_empty(),
        };
        invocation_key(&inputs, &mut ByName).expect("key").0
    }

    const BASE: &[&str] = &[
        "--crate-name",
        "foo",
        "src/lib.rs",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "--cfg",
        "feature=\"a\"",
        "--cfg",
        "feature=\"b\"",
        "--out-dir",
        "$WS/target/debug/deps",
        "--extern",
        "a=$WS/target/debug/deps/liba.rmeta",
        "--extern",
        "b=$WS/target/debug/deps/libb.rmeta",
        "-C",
        "opt-level=0",
    ];

    #[test]
    fn stable_across_checkouts_and_list_order() {
        let base = key_of(BASE, "/one", &[]);
        assert_eq!(base, key_of(BASE, "/two/deeper", &[]));
        let mut swapped = BASE.to_vec();
        swapped.swap(7, 9);
        swapped.swap(13, 15);
        assert_eq!(base, key_of(&swapped, "/one", &[]));
    }

    #[test]
    fn link_args_keep_their_paths() {
        for (flag, arg) in [
            ("-C", "link-arg=-Wl,-rpath,$WS/target/debug/build/x-1/out"),
            ("-C", "link-args=-L$WS/l"),
            ("-C", "profile-generate=$WS/target/pgo"),
            ("-Z", "pre-link-arg=$WS/crt0.o"),
        ] {
            let args = [BASE, &[flag, arg]].concat();
            assert_ne!(
                key_of(&args, "/one", &[]),
                key_of(&args, "/two", &[]),
                "{arg}"
            );
        }
        let no_path = [BASE, &["-C", "link-arg=-fuse-ld=lld"]].concat();
        assert_eq!(key_of(&no_path, "/one", &[]), key_of(&no_path, "/two", &[]));
    }

    #[test]
    fn output_and_cosmetic_flags_are_not_keyed() {
        let base = key_of(BASE, "/one", &[]);
        let mut v = BASE.to_vec();
        v.extend(["--diagnostic-width=80", "--color=always"]);
        assert_eq!(base, key_of(&v, "/one", &[]));
    }

    #[test]
    fn incremental_is_keyed_but_not_its_directory() {
        let base = key_of(BASE, "/one", &[]);
        let mut a = BASE.to_vec();
        a.extend(["-C", "incremental=$WS/target/debug/incremental"]);
        let incremental = key_of(&a, "/one", &[]);
        assert_ne!(base, incremental, "incremental outputs are other bytes");
        let mut b = BASE.to_vec();
        b.extend(["-C", "incremental=/elsewhere/incr"]);
        assert_eq!(incremental, key_of(&b, "/one", &[]));
        assert_eq!(incremental, key_of(&a, "/two", &[]));
    }

    #[test]
    fn clippy_configuration_is_keyed_when_a_driver_runs() {
        let ws = tempfile::tempdir().expect("tempdir");
        let crate_dir = ws.path().join("crates/a");
        std::fs::create_dir_all(&crate_dir).expect("mkdir");
        let raw: Vec<OsString> = BASE.iter().map(|a| a.replace("$WS", "/w").into()).collect();
        let parsed = RustcArgs::parse(&raw, ws.path()).expect("parse");
        let tc = toolchain();
        let roots = Roots::default();
        let driver = ws.path().join("clippy-driver");
        std::fs::write(&driver, b"driver").expect("driver");
        let key = |drivers: &[PathBuf]| {
            let inputs = KeyInputs {
                args: &parsed,
                toolchain: &tc,
                drivers,
                roots: &roots,
                cwd: ws.path(),
                env: &[],
                path_var: None,
                driver_conf_dir: Some(&crate_dir),
                incremental: false,
            };
            invocation_key(&inputs, &mut ContentOf).expect("key").0
        };
        let drivers = vec![driver.clone()];
        let none = key(&drivers);
        std::fs::write(
            ws.path().join("clippy.toml"),
            "too-many-arguments-threshold = 3",
        )
        .expect("conf");
        let with_conf = key(&drivers);
        assert_ne!(
            none, with_conf,
            "a new clippy.toml up the tree changes the key"
        );
        std::fs::write(
            ws.path().join("clippy.toml"),
            "too-many-arguments-threshold = 4",
        )
        .expect("conf");
        assert_ne!(with_conf, key(&drivers), "its content changes the key");
        let plain = key(&[]);
        std::fs::remove_file(ws.path().join("clippy.toml")).expect("rm");
        assert_eq!(
            plain,
            key(&[]),
            "without a driver clippy.toml is not an input"
        );
    }

    /// Real contents where the file exists (the clippy config), names for the made-up rest.
    struct ContentOf;
    impl FileHasher for ContentOf {
        fn hash_file(&mut self, path: &Path) -> std::io::Result<String> {
            crate::key::hash_file_contents(path).or_else(|_| ByName.hash_file(path))
        }
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = key_of(BASE, "/one", &[]);
        let variants: Vec<Vec<&str>> = vec![
            [BASE, &["-C", "opt-level=3"]].concat(),
            [BASE, &["--cfg", "x"]].concat(),
            [BASE, &["--extern", "c=$WS/libc.rlib"]].concat(),
            [BASE, &["--edition=2021"]].concat(),
            [BASE, &["--target", "wasm32-unknown-unknown"]].concat(),
            [BASE, &["-lstatic=z"]].concat(),
            BASE.iter()
                .map(|a| if *a == "src/lib.rs" { "src/main.rs" } else { a })
                .collect(),
            BASE.iter()
                .map(|a| if *a == "lib" { "rlib" } else { a })
                .collect(),
        ];
        for v in variants {
            assert_ne!(base, key_of(&v, "/one", &[]), "{v:?}");
        }
        let env = vec![("CARGO_PKG_VERSION".to_string(), Some("1.0.0".to_string()))];
        assert_ne!(base, key_of(BASE, "/one", &env));
        let unset = vec![("MY_VAR".to_string(), None)];
        assert_ne!(key_of(BASE, "/one", &env), key_of(BASE, "/one", &unset));
    }
}
