//! `kache doctor`: checks the set-up end to end and says what to fix: the wrapper wired into
//! cargo, the cache dir owned and writable, reflink support of its filesystem, the remote
//! reachable, the toolchain memo fresh.
//!
//! Each check is one line: `ok`, `warn` (works, but slower or not as documented) or `FAIL`
//! (kache will not cache). Exit 1 when any check fails. Writes only a probe file in the cache
//! dir's `tmp/` (removed) and the toolchain memo, which a build would write anyway.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use super::exit::Exit;
use crate::config::Config;
use crate::remote::RemoteStore;

#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {}

#[derive(PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        self.failed |= level == Level::Fail;
        println!("{tag}  {what}: {}", detail.as_ref());
    }
}

pub(crate) fn run(config: &Config, _args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report { failed: false };
    wrapper(&mut r);
    let writable = cache_dir(&mut r, &config.dir);
    if writable {
        reflinks(&mut r, &config.dir);
        toolchain(&mut r, &config.dir);
    }
    remote(&mut r, config);
    Ok(if r.failed {
        Exit::Failure.into()
    } else {
        ExitCode::SUCCESS
    })
}

fn wrapper(r: &mut Report) {
    if let Some(w) = std::env::var("RUSTC_WRAPPER")
        .ok()
        .filter(|w| !w.is_empty())
    {
        if super::init::names_kache(&w) {
            r.line(Level::Ok, "wrapper", format!("RUSTC_WRAPPER={w}"));
        } else {
            r.line(
                Level::Fail,
                "wrapper",
                format!("RUSTC_WRAPPER={w} is not kache"),
            );
        }
        return;
    }
    match super::init::wrapper_setting() {
        Ok((path, Some(w))) if super::init::names_kache(&w) => r.line(
            Level::Ok,
            "wrapper",
            format!("build.rustc-wrapper in {}", path.display()),
        ),
        Ok((path, Some(w))) => r.line(
            Level::Fail,
            "wrapper",
            format!("{} sets another wrapper: {w}", path.display()),
        ),
        Ok((_, None)) => r.line(
            Level::Fail,
            "wrapper",
            "cargo does not use kache: run `kache init` or set RUSTC_WRAPPER=kache",
        ),
        Err(e) => r.line(Level::Fail, "wrapper", format!("{e:#}")),
    }
}

/// Whether the dir exists (or can be created on first use) and is ours and writable.
fn cache_dir(r: &mut Report, dir: &Path) -> bool {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            r.line(
                Level::Warn,
                "cache dir",
                format!("{shown} does not exist yet (the first build creates it)"),
            );
            return false;
        }
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        r.line(
            Level::Fail,
            "cache dir",
            format!(
                "{shown} belongs to uid {}, not to you (uid {me})",
                meta.uid()
            ),
        );
        return false;
    }
    let probe = dir
        .join("tmp")
        .join(format!(".doctor.{}", std::process::id()));
    match crate::fsutil::write_atomic(dir, &probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.line(
                Level::Ok,
                "cache dir",
                format!("{shown} is yours and writable"),
            );
            true
        }
        Err(e) => {
            r.line(
                Level::Fail,
                "cache dir",
                format!("cannot write in {shown}: {e}"),
            );
            false
        }
    }
}

fn reflinks(r: &mut Report, dir: &Path) {
    let tmp = dir.join("tmp");
    let (a, b) = (
        tmp.join(format!(".doctor-a.{}", std::process::id())),
        tmp.join(format!(".doctor-b.{}", std::process::id())),
    );
    let result = std::fs::write(&a, b"probe").and_then(|()| reflink_copy::reflink(&a, &b));
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    match result {
        Ok(()) => r.line(
            Level::Ok,
            "reflinks",
            "supported: hits are copy-on-write clones",
        ),
        Err(_) => r.line(
            Level::Warn,
            "reflinks",
            "not supported by this filesystem: hits are hardlinks or copies",
        ),
    }
}

fn toolchain(r: &mut Report, dir: &Path) {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let rustc = match sysroot {
        Ok(o) if o.status.success() => {
            Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("bin/rustc")
        }
        _ => {
            r.line(
                Level::Fail,
                "toolchain",
                "cannot run `rustc --print sysroot`",
            );
            return;
        }
    };
    let rustup = std::env::var("RUSTUP_TOOLCHAIN").ok();
    match crate::key::toolchain::identify(&rustc, dir, rustup.as_deref()) {
        Ok(t) => r.line(
            Level::Ok,
            "toolchain",
            format!("memo fresh for {}", t.release),
        ),
        Err(e) => r.line(Level::Fail, "toolchain", e.to_string()),
    }
}

fn remote(r: &mut Report, config: &Config) {
    let rc = match &config.remote {
        Ok(Some(rc)) => rc,
        Ok(None) => {
            r.line(Level::Ok, "remote", "none configured");
            return;
        }
        Err(e) => {
            r.line(Level::Fail, "remote", e.to_string());
            return;
        }
    };
    let probe = crate::remote::manifest_object(&"0".repeat(64));
    let answer =
        crate::remote::s3::S3Remote::new(rc).and_then(|s3| probe.and_then(|key| s3.exists(&key)));
    match answer {
        Ok(_) => r.line(
            Level::Ok,
            "remote",
            format!("s3://{}/{} answers", rc.bucket, rc.prefix),
        ),
        Err(e) => r.line(Level::Fail, "remote", format!("s3://{}: {e}", rc.bucket)),
    }
}
