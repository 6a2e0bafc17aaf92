//! `kache verify [--repair]`: re-hash every blob and check the index against the blobs.

use std::process::ExitCode;

use super::exit::Exit;

use anyhow::Context;

use super::progress::Bar;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// Remove damaged entries, corrupt and orphan blobs, and rebuild reference counts
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Config, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = if args.repair {
        super::open_store(config)?
    } else {
        super::open_required(config)?
    };
    let report = store
        .verify(args.repair, &Bar::stderr())
        .context("verifying the store")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} blobs ({})",
            report.blobs_checked,
            super::format::bytes(report.bytes_checked)
        );
        let rows = [
            ("corrupt blobs", report.corrupt_blobs.len()),
            ("missing blobs", report.missing_blobs.len()),
            ("orphan blobs", report.orphan_blobs.len()),
            ("wrong reference counts", report.wrong_refcounts),
            ("damaged entries", report.damaged_entries.len()),
        ];
        for (what, n) in rows {
            println!("{what:<24}{n:>8}");
        }
        if report.repaired {
            println!("repaired: damaged entries and bad blobs removed, reference counts rebuilt");
        }
    }
    let remaining = if report.repaired {
        store.verify(false, &Bar::stderr())?.problems()
    } else {
        report.problems()
    };
    Ok(if remaining == 0 {
        ExitCode::SUCCESS
    } else {
        Exit::Failure.into()
    })
}
