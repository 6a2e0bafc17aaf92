//! `kache gc`: evict least-recently-used entries until the store is under its limits.
//! `kache gc --auto` is the background run the wrapper starts when a store passes the limit.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::format;
use super::progress::Bar;
use crate::config::{Config, parse_duration_secs, parse_size};
use crate::store::maintenance::GcReport;

#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Size limit, e.g. 10G or 500M [default: KACHE_MAX_SIZE, else 10G]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Also evict entries not used for this long, e.g. 30d or 12h
    #[arg(long, value_name = "AGE", value_parser = parse_duration_secs)]
    max_age: Option<u64>,
    /// Remove every entry of this crate instead (`serde_json`; `serde-json` works too)
    #[arg(long = "crate", value_name = "NAME", conflicts_with_all = ["max_size", "max_age"])]
    crate_name: Option<String>,
    /// Report what would be removed without removing it
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Run as the background gc: only when no other runs and the store is past its limit,
    /// down to 90% of it
    #[arg(long, hide = true, conflicts_with_all = ["max_age", "dry_run", "crate_name"])]
    auto: bool,
}

pub(crate) fn run(config: &Config, args: GcArgs) -> anyhow::Result<ExitCode> {
    // Never a fresh store at a mistyped path; a dry run also works on a read-only one.
    let mut store = super::open_required(config)?;
    let mut scratch = None;
    if store.is_read_only() {
        if !args.dry_run {
            return Err(super::read_only(config));
        }
        // A dry run rolls its evictions back, but SQLite will not even begin them on a
        // read-only index: run it on a copy.
        let (copy, path) = store
            .scratch_copy()
            .context("copying the index for a dry run")?;
        store = copy;
        scratch = Some(path);
    }
    let limit = args.max_size.unwrap_or(config.max_size);
    let events = super::logged_events(config).unwrap_or_default();
    let bar = Bar::stderr();
    let report = if let Some(name) = &args.crate_name {
        store
            .remove_crate(&name.replace('-', "_"), args.dry_run)
            .context("removing the crate's entries")?
    } else if args.auto {
        match store
            .auto_gc(limit, &super::uses(&events), &bar)
            .context("collecting garbage")?
        {
            Some(r) => r,
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        store
            .gc(
                limit,
                args.max_age.map(Duration::from_secs),
                args.dry_run,
                &super::uses(&events),
                &bar,
            )
            .context("collecting garbage")?
    };
    drop(bar);
    if let Some(path) = scratch {
        drop(store);
        let _ = std::fs::remove_file(path);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, limit));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(report: &GcReport, limit: u64) -> String {
    let verb = if report.dry_run {
        "would free"
    } else {
        "freed"
    };
    let mut out = format!(
        "{verb} {} in {} entries ({} blobs)\nstore {} → {} (limit {})\n",
        format::bytes(report.bytes_freed),
        report.entries_evicted,
        report.blobs_removed,
        format::bytes(report.size_before),
        format::bytes(report.size_after),
        format::bytes(limit),
    );
    if report.orphans_removed + report.temp_files_removed > 0 {
        out.push_str(&format!(
            "removed {} orphan blobs and {} stale temporary files\n",
            report.orphans_removed, report.temp_files_removed
        ));
    }
    if report.stat_rows_removed > 0 {
        out.push_str(&format!(
            "forgot {} files that no longer exist\n",
            report.stat_rows_removed
        ));
    }
    out
}
