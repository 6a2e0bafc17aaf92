//! `kache sync --push`: upload every entry still queued for the remote and wait for it.

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::progress::Bar;
use crate::config::Config;
use crate::remote::RemoteConfig;
use crate::remote::guard::Guarded;
use crate::remote::s3::S3Remote;
use crate::store::Store;
use crate::store::maintenance::Progress;
use crate::sync::upload;

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Upload what is queued (entries compiled here since the last upload).
    #[arg(long, required = true)]
    push: bool,
    /// Count what would be uploaded without uploading.
    #[arg(long)]
    dry_run: bool,
    /// Run as the detached worker the wrapper starts: quiet, and exit at once if another
    /// worker is running.
    #[arg(long, hide = true)]
    background: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let Some(remote_config) = RemoteConfig::from_process_env().context("remote settings")? else {
        bail!("no remote configured: set KACHE_REMOTE=s3://bucket/prefix (see docs/remote.md)");
    };
    if remote_config.read_only && !args.dry_run {
        bail!("the remote is read-only (KACHE_REMOTE_READONLY): nothing may be uploaded");
    }
    // A worker started for a cache dir that has since been deleted has nothing to send,
    // and must not bring the directory back.
    if args.background && !config.dir.join("upload-queue").is_dir() {
        return Ok(ExitCode::SUCCESS);
    }
    // One worker at a time; a foreground push waits for a background one to finish.
    let Some(_lock) = upload::lock(&config.dir, !args.background) else {
        return Ok(ExitCode::SUCCESS);
    };
    let store = Store::open(&config.dir)
        .with_context(|| format!("opening the cache at {}", config.dir.display()))?;
    let remote = Guarded::new(
        S3Remote::new(&remote_config).context("connecting to the remote")?,
        &config.dir,
        &remote_config,
    );
    let bar = (!args.background).then(Bar::stderr);
    let mut report = upload::drain(&remote, &store, args.dry_run, &mut |step| {
        if let Some(bar) = &bar {
            match step {
                Some(total) => bar.phase("uploading", total as u64, false),
                None => bar.advance(1),
            }
        }
    });
    // Entries queued while this worker ran would otherwise wait for the next build.
    while args.background && !args.dry_run && report.remaining > 0 && report.failed == 0 {
        let more = upload::drain(&remote, &store, false, &mut |_| {});
        if more.uploaded + more.already_there + more.dropped == 0 {
            break;
        }
        report = more;
    }
    drop(bar);
    if args.background {
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if args.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        println!(
            "{verb} {} entries ({}), {} already on the remote, {} failed, {} still queued",
            if args.dry_run {
                report.remaining
            } else {
                report.uploaded
            },
            super::format::bytes(report.bytes),
            report.already_there,
            report.failed,
            if args.dry_run { 0 } else { report.remaining },
        );
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
