//! `kache gc`: evict least-recently-used entries until the store is under its limits.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::format;
use crate::config::{Config, parse_duration_secs, parse_size};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Size limit, e.g. 10G or 500M (default: KACHE_MAX_SIZE or 10G).
    #[arg(long, value_parser = parse_size)]
    max_size: Option<u64>,
    /// Also evict entries not used for this long, e.g. 30d or 12h.
    #[arg(long, value_parser = parse_duration_secs)]
    max_age: Option<u64>,
    /// Report what would be removed without removing it.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: GcArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.dir)
        .with_context(|| format!("opening the cache at {}", config.dir.display()))?;
    let limit = args.max_size.unwrap_or(config.max_size);
    let report = store
        .gc(limit, args.max_age.map(Duration::from_secs), args.dry_run)
        .context("collecting garbage")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {} in {} entries ({} blobs); store {} → {} (limit {})",
        format::bytes(report.bytes_freed),
        report.entries_evicted,
        report.blobs_removed,
        format::bytes(report.size_before),
        format::bytes(report.size_after),
        format::bytes(limit),
    );
    if report.orphans_removed + report.temp_files_removed > 0 {
        println!(
            "removed {} orphan blobs and {} stale temporary files",
            report.orphans_removed, report.temp_files_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
