//! Installing the launcher: after kache compiled (or restored) a `build_script_build`
//! executable for a package whose runs are cached, the real script is renamed to
//! [`REAL_NAME`] and a copy of the small `kache-launcher` program (shipped beside the kache
//! binary, see `src/bin/kache-launcher.rs`) takes its place, so cargo's later run of the
//! script goes through kache. Must not run the script or touch the store.
//!
//! A copy, not a link: cargo compares the script binary's mtime with the run's own record,
//! and links would share one mtime between every package; and a linker writing a rebuilt
//! script in place must not reach anything but this one file.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::store::blobs::copy_fast;

/// The real script's name beside the launcher (the launcher program uses the same name).
pub const REAL_NAME: &str = "kache-real-build-script-build";
/// The launcher program's name beside the kache binary.
pub(crate) const LAUNCHER_PROGRAM: &str = "kache-launcher";
/// Beside the real script: this kache's resolved path, which the launcher compares with the
/// resolved `RUSTC_WRAPPER` to know it hands the run to kache (the launcher program uses the
/// same name).
pub const KACHE_PATH_FILE: &str = "kache-launcher-kache-path";

/// The launcher program shipped with this kache, if it is there, and this kache's resolved
/// path (`current_exe` resolves links, so a wrapper named through one matches too).
pub(crate) fn launcher_program() -> Option<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let program = exe.with_file_name(LAUNCHER_PROGRAM);
    program.is_file().then_some((program, exe))
}

/// Whether a compile is of a build script: cargo names its crate `build_script_<file stem>`
/// (`build_script_build` for `build.rs`, `build_script_main` for `build/main.rs`, as
/// `openssl-sys` has) and compiles it into `build/<package>-<hash>/`, where nothing else is.
pub(crate) fn is_build_script(crate_name: &str, out_dir: &Path) -> bool {
    crate_name.starts_with("build_script_")
        && out_dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "build")
}

/// The script executable among a build script compile's outputs (the one without an
/// extension; the others are dep-info and the like).
pub(crate) fn script_output<'a>(output_names: &'a [String], crate_name: &str) -> Option<&'a str> {
    output_names
        .iter()
        .map(String::as_str)
        .find(|n| n.starts_with(crate_name) && !n.contains('.'))
}

/// Puts the launcher at `out_dir/script` and the real script beside it, with `kache` (this
/// kache's resolved path) in [`KACHE_PATH_FILE`]. On failure the real script is back at its
/// place, so cargo runs it as if kache had done nothing.
pub(crate) fn install(
    launcher: &Path,
    kache: &Path,
    out_dir: &Path,
    script: &str,
) -> io::Result<()> {
    let path = out_dir.join(script);
    let real = out_dir.join(REAL_NAME);
    crate::restore::remove_if_present(&real)?;
    let kache_path = out_dir.join(KACHE_PATH_FILE);
    crate::restore::remove_if_present(&kache_path)?;
    fs::write(&kache_path, kache.as_os_str().as_encoded_bytes())?;
    fs::rename(&path, &real)?;
    let placed = copy_fast(launcher, &path)
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)));
    if let Err(e) = placed {
        let _ = fs::remove_file(&path);
        fs::rename(&real, &path)?;
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_executable() {
        let names = vec![
            "build_script_build-0f1e.d".to_string(),
            "build_script_build-0f1e".to_string(),
        ];
        assert_eq!(
            script_output(&names, "build_script_build"),
            Some("build_script_build-0f1e")
        );
        assert_eq!(script_output(&["lib.rlib".to_string()], "lib"), None);
        let main = ["build_script_main-77".to_string()];
        assert_eq!(
            script_output(&main, "build_script_main"),
            Some("build_script_main-77")
        );
        let dir = Path::new("/t/release/build/openssl-sys-77");
        assert!(is_build_script("build_script_main", dir));
        assert!(is_build_script("build_script_build", dir));
        assert!(!is_build_script(
            "build_script_main",
            Path::new("/t/release/deps")
        ));
        assert!(!is_build_script("openssl_sys", dir));
    }

    #[test]
    fn install_keeps_the_real_script_beside_the_launcher() {
        let dir = tempfile::tempdir().expect("tempdir");
        let launcher = dir.path().join("launcher");
        fs::write(&launcher, b"launcher").expect("write");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        fs::write(out.join("build_script_build-1"), b"real").expect("write");
        let kache = Path::new("/opt/kache");
        install(&launcher, kache, &out, "build_script_build-1").expect("install");
        assert_eq!(
            fs::read(out.join(KACHE_PATH_FILE)).expect("read"),
            b"/opt/kache"
        );
        assert_eq!(
            fs::read(out.join("build_script_build-1")).expect("read"),
            b"launcher"
        );
        assert_eq!(fs::read(out.join(REAL_NAME)).expect("read"), b"real");
        // A missing launcher leaves the script where cargo expects it.
        fs::write(out.join("build_script_build-2"), b"real2").expect("write");
        assert!(
            install(
                &dir.path().join("nope"),
                kache,
                &out,
                "build_script_build-2"
            )
            .is_err()
        );
        assert_eq!(
            fs::read(out.join("build_script_build-2")).expect("read"),
            b"real2"
        );
    }
}
