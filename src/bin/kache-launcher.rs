//! The build-script launcher: a tiny, std-only program that kache puts at the path cargo runs
//! a build script from (`build/<pkg>-<hash>/build-script-build`), with the real script moved
//! beside it as `kache-real-build-script-build`.
//!
//! It hands the run to the kache that cargo uses as `RUSTC_WRAPPER` (which restores a stored
//! run or runs the script and records it) and, whenever that is not possible — no wrapper, a
//! wrapper that is not kache, kache missing, crashing or failing before it took the run over —
//! replaces itself with the real script (`exec`), so the script sees exactly what cargo gave:
//! environment (names a shell could not spell included), arguments, working directory,
//! stdin, stdout, stderr, and cargo sees its exit status. It links nothing from kache so it
//! stays small (one copy per build script; `libc` only) and keeps working when kache is gone.
//!
//! The hand-over protocol: kache gets the real script's path in `KACHE_BUILD_SCRIPT_REAL`,
//! cargo's `argv[0]` as its first argument, and a marker path in
//! `KACHE_BUILD_SCRIPT_MARKER`. It writes `restoring` there before it writes into `OUT_DIR`
//! and `committed` once the run is its own (the script started, or a stored run is in place);
//! without `committed` the launcher runs the script itself, after emptying `OUT_DIR` if kache
//! had begun to restore into it. A script that kache ran and that was killed by a signal is
//! reported there as `signal <n>`, and the launcher then dies of the same signal, so cargo
//! reports what it would have without kache.
//!
//! Which wrapper is kache is decided by identity, not by name: kache writes its own resolved
//! path into [`KACHE_PATH_FILE`] beside the real script when it installs the launcher, and
//! the run is handed over only to a `RUSTC_WRAPPER` that resolves to that file (a symlink
//! `mycache -> kache` does; another wrapper whose name happens to contain "kache" does not:
//! it would run this launcher as a compiler, and the script twice).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The real script's name beside the launcher (kache's `buildscript::launcher` uses the same).
const REAL_NAME: &str = "kache-real-build-script-build";
/// Beside the real script: the resolved path of the kache that installed the launcher (the
/// same name as kache's `buildscript::launcher::KACHE_PATH_FILE`).
const KACHE_PATH_FILE: &str = "kache-launcher-kache-path";

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let Some(real) = real_script(&argv0) else {
        eprintln!("kache-launcher: cannot find {REAL_NAME} beside this launcher");
        std::process::exit(101);
    };
    // Set only while kache handles a run (it removes it for the script): seeing it here
    // means a kache that does not know the hand-over ran this launcher as a compiler, and
    // handing over again would loop.
    let reentered = std::env::var_os("KACHE_BUILD_SCRIPT_REAL").is_some();
    if !reentered && let Some(kache) = kache_wrapper(&real) {
        let marker = real.with_file_name(format!(".kache-launcher.{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let status = Command::new(&kache)
            .arg(&argv0)
            .args(&rest)
            .env("KACHE_BUILD_SCRIPT_REAL", &real)
            .env("KACHE_BUILD_SCRIPT_MARKER", &marker)
            .status();
        let state = std::fs::read(&marker).unwrap_or_default();
        let _ = std::fs::remove_file(&marker);
        // kache ran the script and it died of a signal: `signal <n>`.
        let script_signal = state
            .strip_prefix(b"signal ")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
        match status {
            Ok(s) if state == b"committed" || script_signal.is_some() => {
                if let Some(signal) = s.signal().or(script_signal) {
                    die_of(signal);
                }
                std::process::exit(s.code().unwrap_or(1))
            }
            _ => {
                eprintln!(
                    "kache: warning: the build-script cache did not run; running the build script directly"
                );
                if state == b"restoring"
                    && let Some(out) = std::env::var_os("OUT_DIR")
                {
                    empty_dir(Path::new(&out));
                }
            }
        }
    }
    let err = Command::new(&real)
        .arg0(&argv0)
        .args(&rest)
        .env_remove("KACHE_BUILD_SCRIPT_REAL")
        .env_remove("KACHE_BUILD_SCRIPT_MARKER")
        .exec();
    eprintln!("kache-launcher: cannot run {}: {err}", real.display());
    std::process::exit(101);
}

/// The real script beside the path this launcher was started from.
fn real_script(argv0: &OsString) -> Option<PathBuf> {
    let started = std::env::current_exe()
        .ok()
        .unwrap_or_else(|| PathBuf::from(argv0));
    let real = started.parent()?.join(REAL_NAME);
    real.is_file().then_some(real)
}

/// The kache cargo uses as `RUSTC_WRAPPER` (cargo passes it to build scripts), resolved, if
/// it is the kache that installed this launcher.
fn kache_wrapper(real: &Path) -> Option<PathBuf> {
    let wrapper = std::env::var_os("RUSTC_WRAPPER").filter(|w| !w.is_empty())?;
    let installed = std::fs::read(real.with_file_name(KACHE_PATH_FILE)).ok()?;
    // cargo finds a bare name on `PATH`; a path is used as given.
    let found = if Path::new(&wrapper).components().count() > 1 {
        PathBuf::from(&wrapper)
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(&wrapper))
            .find(|p| p.is_file())?
    };
    let resolved = found.canonicalize().ok()?;
    (resolved.as_os_str().as_encoded_bytes() == installed.as_slice()).then_some(resolved)
}

/// Dies of `signal` as the script did, so cargo sees the same status; exits `128 + signal`
/// as a shell would if the signal does not end the process.
fn die_of(signal: i32) -> ! {
    // SAFETY: restoring the default action and raising a signal in a single-threaded process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}
