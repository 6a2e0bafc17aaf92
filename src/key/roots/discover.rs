//! Which roots one rustc invocation has, and how each is found.
//!
//! | root | what it is | how it is found | remapped to |
//! |---|---|---|---|
//! | `ws` | the package's source tree | rustc's working directory when it holds a `Cargo.toml`: cargo runs rustc in the workspace root for packages under it, and in the package's own directory for every other one (registry crates, git checkouts, vendored sources, `../sibling` path dependencies, `[patch]`ed copies, the crate `cargo install` builds), so each package's sources key relative to its own tree wherever that tree lives | `.` |
//! | `ws` (alias) | the same tree, spelled through a symlink | `CARGO_MANIFEST_DIR` when it names a place inside the workspace through a symlinked ancestor (`cargo --manifest-path link/ws/Cargo.toml`) | `.` |
//! | `target` | cargo's target dir, or its separate build dir (`build.build-dir`), where every rustc output goes | read off cargo's layout of `--out-dir` (`<T>/<profile>/deps`, `<T>/<profile>/examples`, `<T>/<profile>/build/<pkg>-<hash>`, with `<T>/<triple>/…` under `--target`), confirmed by the `-L dependency=<profile dir>/deps` cargo always passes; else the nearest ancestor of `--out-dir` holding cargo's `CACHEDIR.TAG`. Cargo writes that tag only in a target dir it created itself, so the layout is what finds `cargo install`'s temporary dir, a pre-made `CARGO_TARGET_DIR` and a build dir | `/kache/target` |
//! | `cargo_home` | cargo's home | `CARGO_HOME`, else `$HOME/.cargo` | `/kache/cargo` |
//! | `sysroot` | the toolchain | `rustc --print sysroot` (keyed, never remapped: rustc remaps its own sources) | — |
//! | `out` | this invocation's output dir | `--out-dir` (so artifact notifications and dep-info name it even when no target dir is recognised) | `/kache/out` |
//!
//! A build-script *run* ([`Roots::for_script_run`]) has no rustc arguments: its `ws` is the
//! package dir, its `out` is `OUT_DIR`, and its `target` is read off `OUT_DIR`'s layout
//! (`<T>[/<triple>]/<profile>/build/<pkg>-<hash>/out`), else found by `CACHEDIR.TAG`.
//!
//! Discovery only reads: the working directory's `Cargo.toml`, symlinks and `CACHEDIR.TAG`.
//! A root found wrongly can only cost hits, never give a wrong artifact: every path under a
//! root is remapped in what rustc writes, and files under it are still keyed by content.

use std::path::{Path, PathBuf};

use super::{Roots, root};
use crate::fsutil::absolute;
use crate::invocation::RustcArgs;

/// What roots are discovered from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RootSources<'a> {
    /// rustc's working directory.
    pub cwd: &'a Path,
    pub args: &'a RustcArgs,
    /// `CARGO_MANIFEST_DIR`.
    pub manifest_dir: Option<&'a Path>,
    /// `CARGO_HOME`, else `$HOME/.cargo`.
    pub cargo_home: Option<&'a Path>,
    pub sysroot: Option<&'a Path>,
}

impl Roots {
    /// The roots of one invocation (see the module documentation for each).
    pub(crate) fn discover(sources: &RootSources) -> Roots {
        let RootSources {
            cwd,
            args,
            manifest_dir,
            cargo_home,
            sysroot,
        } = *sources;
        let out_dir = absolute(cwd, args.out_dir.as_deref().unwrap_or(Path::new(".")));
        let mut roots = Vec::new();
        if cwd.join("Cargo.toml").is_file() {
            roots.push(root("ws", cwd, "."));
        }
        if let Some(target) = cargo_target_dir(cwd, &out_dir, args) {
            roots.push(root("target", &target, "/kache/target"));
        }
        if let Some(home) = cargo_home {
            roots.push(root("cargo_home", home, "/kache/cargo"));
        }
        if let Some(sysroot) = sysroot {
            roots.push(root("sysroot", sysroot, "/kache/sysroot"));
        }
        roots.push(root("out", &out_dir, "/kache/out"));
        let mut roots = Roots::new(roots);
        if let Some(dir) = manifest_dir {
            roots.add_workspace_alias(&absolute(cwd, dir));
        }
        roots
    }

    /// The roots of a build-script run: its package dir, the target dir its `OUT_DIR` lies in
    /// (the triple dir cargo adds under `--target` is left out, `target` names `<T>` itself),
    /// `CARGO_HOME` and `OUT_DIR`.
    pub(crate) fn for_script_run(
        package_dir: &Path,
        out_dir: &Path,
        triple: Option<&str>,
        cargo_home: Option<&Path>,
    ) -> Roots {
        let mut roots = Vec::new();
        if package_dir.join("Cargo.toml").is_file() {
            roots.push(root("ws", package_dir, "."));
        }
        if let Some(target) =
            script_run_target_dir(out_dir, triple).or_else(|| tagged_target_dir(out_dir))
        {
            roots.push(root("target", &target, "/kache/target"));
        }
        if let Some(home) = cargo_home {
            roots.push(root("cargo_home", home, "/kache/cargo"));
        }
        roots.push(root("out", out_dir, "/kache/out"));
        Roots::new(roots)
    }

    /// Adds the spelling of the workspace that cargo uses when it reached the workspace
    /// through a symlink (`cargo --manifest-path link/ws/Cargo.toml`): rustc's working
    /// directory is then the physical path, while `CARGO_MANIFEST_DIR` and `--out-dir` carry
    /// the symlinked one. Both spellings key and remap alike.
    pub(crate) fn add_workspace_alias(&mut self, manifest_dir: &Path) {
        let Some(ws) = self.get("ws").map(|r| PathBuf::from(&r.path)) else {
            return;
        };
        if manifest_dir.starts_with(&ws) {
            return;
        }
        let Ok(physical) = manifest_dir.canonicalize() else {
            return;
        };
        let Ok(inside) = physical.strip_prefix(&ws) else {
            return;
        };
        let depth = inside.components().count();
        let Some(alias) = manifest_dir.ancestors().nth(depth) else {
            return;
        };
        // Only when the symlinked spelling names the same place inside the workspace.
        if manifest_dir
            .strip_prefix(alias)
            .is_ok_and(|tail| tail == inside)
        {
            let mut roots = std::mem::take(&mut self.roots);
            roots.push(root("ws", alias, "."));
            *self = Roots::new(roots);
        }
    }
}

/// The target (or build) dir the invocation writes into: from cargo's layout, else from the
/// `CACHEDIR.TAG` cargo leaves in target dirs it created.
fn cargo_target_dir(cwd: &Path, out_dir: &Path, args: &RustcArgs) -> Option<PathBuf> {
    layout_target_dir(cwd, out_dir, args).or_else(|| tagged_target_dir(out_dir))
}

/// `<T>` from cargo's output layout:
/// - `<T>[/<triple>]/<profile>/deps` — libraries, binaries, tests;
/// - `<T>[/<triple>]/<profile>/examples` — examples;
/// - `<T>/<profile>/build/<pkg>-<hash>` — build scripts (host, never under a triple).
///
/// `<triple>` is there only when rustc is given `--target` (a target JSON's dir is named
/// after the file's stem). The profile dir must be one cargo also passes as
/// `-L dependency=<profile dir>/deps`, which keeps a non-cargo `--out-dir` that happens to
/// end in `deps` from being taken for a target dir.
fn layout_target_dir(cwd: &Path, out_dir: &Path, args: &RustcArgs) -> Option<PathBuf> {
    let name = out_dir.file_name()?;
    let parent = out_dir.parent()?;
    let profile = if name == "deps" || name == "examples" {
        parent
    } else if parent.file_name()? == "build" {
        parent.parent()?
    } else {
        return None;
    };
    let deps = profile.join("deps");
    let confirmed = args
        .search_paths
        .iter()
        .any(|(kind, dir)| kind == "dependency" && absolute(cwd, dir) == deps);
    if !confirmed {
        return None;
    }
    let mut target = profile.parent()?;
    if let Some(triple) = args.target.as_deref() {
        let dir_name = triple.strip_suffix(".json").map_or(triple, |json| {
            Path::new(json)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(json)
        });
        if target.file_name().is_some_and(|n| n == dir_name) {
            target = target.parent()?;
        }
    }
    Some(target.to_owned())
}

/// `<T>` from a build-script run's `OUT_DIR`: `<T>[/<triple>]/<profile>/build/<pkg>-<hash>/out`.
fn script_run_target_dir(out_dir: &Path, triple: Option<&str>) -> Option<PathBuf> {
    if out_dir.file_name()? != "out" {
        return None;
    }
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    let mut target = build.parent()?.parent()?;
    if triple.is_some_and(|t| target.file_name().is_some_and(|n| n == t)) {
        target = target.parent()?;
    }
    Some(target.to_owned())
}

fn tagged_target_dir(out_dir: &Path) -> Option<PathBuf> {
    out_dir
        .ancestors()
        .take(6)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// Parses an argument list cargo would pass.
    fn args(list: &[&str]) -> RustcArgs {
        let raw: Vec<OsString> = list.iter().map(OsString::from).collect();
        RustcArgs::parse(&raw, Path::new("/")).expect("parse")
    }

    fn target_of(list: &[&str]) -> Option<String> {
        let a = args(list);
        let out = a.out_dir.clone().unwrap_or_default();
        cargo_target_dir(Path::new("/nowhere"), &out, &a).map(|p| p.display().to_string())
    }

    /// The roots of an invocation run in `cwd` (a temp dir holding a `Cargo.toml`).
    fn discover_in(cwd: &Path, list: &[&str], home: &str) -> Roots {
        let a = args(list);
        Roots::discover(&RootSources {
            cwd,
            args: &a,
            manifest_dir: Some(cwd),
            cargo_home: Some(Path::new(home)),
            sysroot: Some(Path::new("/tc")),
        })
    }

    #[test]
    fn a_script_run_finds_its_target_dir_from_out_dir() {
        let run = |out: &str, triple| {
            script_run_target_dir(Path::new(out), triple).map(|p| p.display().to_string())
        };
        assert_eq!(
            run("/tmp/cargo-installX/release/build/libc-0123/out", None).as_deref(),
            Some("/tmp/cargo-installX")
        );
        assert_eq!(
            run(
                "/t/x86_64-unknown-linux-gnu/debug/build/z-1/out",
                Some("x86_64-unknown-linux-gnu")
            )
            .as_deref(),
            Some("/t")
        );
        assert_eq!(run("/somewhere/else/out", None), None);
    }

    fn package_dir(path: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("Cargo.toml"), "[package]").expect("Cargo.toml");
        (tmp, dir)
    }

    #[test]
    fn target_inside_the_workspace() {
        let lib = [
            "--crate-name=core",
            "src/lib.rs",
            "--out-dir",
            "/ws/target/debug/deps",
            "-L",
            "dependency=/ws/target/debug/deps",
        ];
        assert_eq!(target_of(&lib).as_deref(), Some("/ws/target"));
    }

    #[test]
    fn target_dir_outside_the_workspace_without_a_tag() {
        // CARGO_TARGET_DIR / --target-dir / build.target-dir made before cargo ran, and
        // cargo's separate build dir: same layout, no CACHEDIR.TAG.
        for t in [
            "/ci/cache/tgt",
            "/var/build-dir",
            "/tmp/cargo-installAbC123",
        ] {
            for profile in ["debug", "release", "bench-fast"] {
                let out = format!("{t}/{profile}/deps");
                let dep = format!("dependency={t}/{profile}/deps");
                let list = ["a.rs", "--out-dir", &out, "-L", &dep];
                assert_eq!(target_of(&list).as_deref(), Some(t), "{list:?}");
            }
        }
    }

    #[test]
    fn build_scripts_and_examples() {
        let build_script = [
            "--crate-name",
            "build_script_build",
            "build.rs",
            "--out-dir",
            "/t/debug/build/libc-0123abcd",
            "-L",
            "dependency=/t/debug/deps",
        ];
        assert_eq!(target_of(&build_script).as_deref(), Some("/t"));
        let example = [
            "examples/x.rs",
            "--out-dir",
            "/t/release/examples",
            "-L",
            "dependency=/t/release/deps",
        ];
        assert_eq!(target_of(&example).as_deref(), Some("/t"));
    }

    #[test]
    fn target_triple_layouts() {
        let cross = [
            "src/lib.rs",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--out-dir",
            "/t/x86_64-unknown-linux-gnu/release/deps",
            "-L",
            "dependency=/t/x86_64-unknown-linux-gnu/release/deps",
            "-L",
            "dependency=/t/release/deps",
        ];
        assert_eq!(target_of(&cross).as_deref(), Some("/t"));
        let json = [
            "src/lib.rs",
            "--target",
            "/specs/my-board.json",
            "--out-dir",
            "/t/my-board/debug/deps",
            "-L",
            "dependency=/t/my-board/debug/deps",
        ];
        assert_eq!(target_of(&json).as_deref(), Some("/t"));
        // A host unit of a cross build (proc-macro, build script) has no --target.
        let host = [
            "src/lib.rs",
            "--out-dir",
            "/t/release/deps",
            "-L",
            "dependency=/t/release/deps",
        ];
        assert_eq!(target_of(&host).as_deref(), Some("/t"));
    }

    #[test]
    fn an_out_dir_cargo_did_not_lay_out_is_no_target_dir() {
        // No `-L dependency=` for the profile dir: not cargo's layout.
        assert_eq!(target_of(&["a.rs", "--out-dir", "/home/me/deps"]), None);
        assert_eq!(
            target_of(&[
                "a.rs",
                "--out-dir",
                "/home/me/deps",
                "-L",
                "dependency=/elsewhere/deps"
            ]),
            None
        );
        assert_eq!(target_of(&["a.rs", "--out-dir", "/home/me/out"]), None);
    }

    #[test]
    fn a_tagged_target_dir_is_still_found() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path().join("odd");
        std::fs::create_dir_all(t.join("x/y")).expect("mkdir");
        std::fs::write(t.join("CACHEDIR.TAG"), "Signature").expect("tag");
        let a = args(&["a.rs"]);
        assert_eq!(
            cargo_target_dir(Path::new("/"), &t.join("x/y"), &a),
            Some(t.clone())
        );
    }

    #[test]
    fn a_registry_crate_keys_relative_to_its_own_dir_under_any_cargo_home() {
        // `cargo install foo` (and any registry dependency): rustc runs in the package's dir
        // under CARGO_HOME; the target dir is a fresh temporary one.
        let key = |home: &str, tmp_target: &str| {
            let pkg_path =
                format!("{home}/registry/src/index.crates.io-1949cf8c6b5b557f/foo-1.0.0");
            let (_tmp, pkg) = package_dir(&pkg_path);
            let base = pkg.to_string_lossy().replace(&pkg_path, "");
            let t = format!("{base}{tmp_target}");
            let out = format!("{t}/release/build/foo-0123/out");
            let list = [
                "--crate-name",
                "foo",
                "src/main.rs",
                "--out-dir",
                &format!("{t}/release/deps"),
                "-L",
                &format!("dependency={t}/release/deps"),
            ];
            let roots = discover_in(&pkg, &list, &format!("{base}{home}"));
            [
                roots
                    .relativize(&pkg.join("src/main.rs").to_string_lossy())
                    .into_owned(),
                roots.relativize(&out).into_owned(),
            ]
        };
        let first = key("/home/alice/.cargo", "/tmp/cargo-installAAA");
        assert_eq!(
            first,
            ["${ws}/src/main.rs", "${target}/release/build/foo-0123/out"]
        );
        assert_eq!(first, key("/runner/cargo-home", "/tmp/cargo-installBBB"));
    }

    #[test]
    fn git_vendored_and_sibling_sources_key_relative_to_their_package() {
        for pkg_path in [
            "/h/.cargo/git/checkouts/dep-1a2b3c4d5e6f7a8b/0123456/crates/dep",
            "/ws/vendor/dep",
            "/projects/sibling",
        ] {
            let (_tmp, pkg) = package_dir(pkg_path);
            let list = [
                "--crate-name",
                "dep",
                &format!("{}/src/lib.rs", pkg.display()),
                "--out-dir",
                "/projects/ws/target/debug/deps",
                "-L",
                "dependency=/projects/ws/target/debug/deps",
            ];
            let roots = discover_in(&pkg, &list, "/h/.cargo");
            assert_eq!(
                roots.relativize(&pkg.join("src/lib.rs").to_string_lossy()),
                "${ws}/src/lib.rs",
                "{pkg_path}"
            );
            assert_eq!(
                roots.relativize("/projects/ws/target/debug/build/x-1/out/gen.rs"),
                "${target}/debug/build/x-1/out/gen.rs"
            );
        }
    }

    #[test]
    fn a_symlinked_spelling_of_the_workspace_is_an_alias() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real/ws");
        std::fs::create_dir_all(real.join("crates/core")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link"))
            .expect("symlink");
        let physical = real.canonicalize().expect("canonical");
        let mut r = Roots::new(vec![root("ws", &physical, ".")]);
        r.add_workspace_alias(&dir.path().join("link/ws/crates/core"));
        let logical = dir.path().join("link/ws/crates/core/src/lib.rs");
        assert_eq!(
            r.relativize(&logical.to_string_lossy()),
            "${ws}/crates/core/src/lib.rs"
        );
        // A directory elsewhere is not an alias.
        let mut other = Roots::new(vec![root("ws", &physical, ".")]);
        other.add_workspace_alias(dir.path());
        assert_eq!(other.iter().count(), 1);
    }
}
