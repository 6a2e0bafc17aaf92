//! `kache sync --push / --pull`: move entries between the local store and the remote
//! explicitly (e.g. at the end of a CI job, or before going offline).

use std::process::ExitCode;

use super::exit::Exit;
use std::time::Duration;

use anyhow::{Context, bail};

use super::progress::Bar;
use crate::config::Config;
use crate::store::maintenance::Progress;
use crate::sync::{fetch, upload};

/// A build invocation gets about two seconds of remote time; an explicit sync moves whole
/// stores and gets this much.
const SYNC_BUDGET: Duration = Duration::from_secs(900);

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).multiple(true).args(["push", "pull"])))]
pub(crate) struct SyncArgs {
    /// Upload what is queued (entries compiled here since the last upload) and wait for it.
    #[arg(long)]
    push: bool,
    /// Download every entry the remote has and this store lacks.
    #[arg(long)]
    pull: bool,
    /// Count what would move without moving it.
    #[arg(long)]
    dry_run: bool,
    /// Run as the detached upload worker the wrapper starts: quiet, and exit at once if
    /// another worker is running.
    #[arg(long, hide = true)]
    background: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Config, args: SyncArgs) -> anyhow::Result<ExitCode> {
    // A bad remote setting is bad usage (exit 2), like any other setting.
    let remote = config
        .remote
        .clone()
        .map_err(|e| super::Unusable(e.to_string()))?;
    let Some(mut remote_config) = remote else {
        bail!("no remote configured: set KACHE_REMOTE=s3://bucket/prefix (see docs/remote.md)");
    };
    if args.push && remote_config.read_only && !args.dry_run {
        bail!("the remote is read-only (KACHE_REMOTE_READONLY): nothing may be uploaded");
    }
    // A worker started for a cache dir that has since been deleted has nothing to send,
    // and must not bring the directory back.
    if args.background && !config.dir.join("upload-queue").is_dir() {
        return Ok(ExitCode::SUCCESS);
    }
    remote_config.budget = remote_config.budget.max(SYNC_BUDGET);
    let store = super::open_store(config)?;
    let remote =
        crate::remote::connect(&remote_config, &config.dir).context("connecting to the remote")?;
    let mut report = serde_json::Map::new();
    let mut failed = false;
    if args.pull {
        let bar = Bar::stderr();
        let system_dirs = c_system_dirs(&config.dir);
        let pulled = fetch::pull(
            &remote,
            &store,
            remote_config.max_object_bytes,
            args.dry_run,
            &system_dirs,
            &mut |step| match step {
                Some(total) => bar.phase("downloading", total as u64, false),
                None => bar.advance(1),
            },
        )
        .context("pulling from the remote")?;
        drop(bar);
        if !args.json {
            let verb = if args.dry_run {
                "would download"
            } else {
                "downloaded"
            };
            println!(
                "{verb} {} entries ({}), {} already here, {} rejected",
                pulled.fetched,
                super::format::bytes(pulled.bytes),
                pulled.already_here,
                pulled.rejected
            );
        }
        report.insert("pull".into(), serde_json::to_value(&pulled)?);
    }
    if args.push {
        // One worker at a time; a foreground push waits for a background one to finish.
        let Some(_lock) = upload::lock(&config.dir, !args.background) else {
            return Ok(ExitCode::SUCCESS);
        };
        let bar = (!args.background).then(Bar::stderr);
        let mut pushed = upload::drain(&remote, &store, args.dry_run, &mut |step| {
            if let Some(bar) = &bar {
                match step {
                    Some(total) => bar.phase("uploading", total as u64, false),
                    None => bar.advance(1),
                }
            }
        });
        // Entries queued while this worker ran would otherwise wait for the next build.
        while args.background && !args.dry_run && pushed.remaining > 0 && pushed.failed == 0 {
            let more = upload::drain(&remote, &store, false, &mut |_| {});
            if more.uploaded + more.already_there + more.dropped == 0 {
                break;
            }
            pushed = more;
        }
        drop(bar);
        failed = pushed.failed > 0;
        if args.background {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.json {
            let verb = if args.dry_run {
                "would upload"
            } else {
                "uploaded"
            };
            println!(
                "{verb} {} entries ({}), {} already on the remote, {} failed, {} still queued",
                if args.dry_run {
                    pushed.remaining
                } else {
                    pushed.uploaded
                },
                super::format::bytes(pushed.bytes),
                pushed.already_there,
                pushed.failed,
                if args.dry_run { 0 } else { pushed.remaining },
            );
        }
        report.insert("push".into(), serde_json::to_value(&pushed)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if failed {
        Exit::Failure.into()
    } else {
        ExitCode::SUCCESS
    })
}

/// The system include dirs of the C compiler builds here use (`CC`, else `cc`): pulled C
/// entries name headers there. None when there is no such compiler.
fn c_system_dirs(cache_dir: &std::path::Path) -> Vec<String> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let path_var = std::env::var("PATH").ok();
    let cwd = std::env::current_dir().unwrap_or_default();
    crate::key::invocation_key::resolve_program(
        std::path::Path::new(&compiler),
        &cwd,
        path_var.as_deref(),
    )
    .and_then(|p| p.canonicalize().ok())
    .and_then(|p| crate::cc::key::compiler_info(&p, cache_dir).ok())
    .map(|info| info.system_dirs.into_iter().flat_map(|(_, d)| d).collect())
    .unwrap_or_default()
}
