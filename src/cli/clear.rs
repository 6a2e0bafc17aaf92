//! `kache clear`: remove every stored entry. Asks first on a terminal; elsewhere it needs
//! `--yes`, so a script cannot wipe a shared cache by accident.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::exit::Exit;

use anyhow::Context;

use super::format;
use super::progress::Bar;
use crate::config::Config;
use crate::store::maintenance::ClearReport;

#[derive(Debug, clap::Args)]
pub(crate) struct ClearArgs {
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Config, args: ClearArgs) -> anyhow::Result<ExitCode> {
    // Refused before anything else, so a script learns it needs --yes even on an empty cache.
    if !args.yes && !std::io::stdin().is_terminal() {
        eprintln!(
            "kache: error: refusing to clear {} without --yes (standard input is not a terminal)",
            config.dir.display()
        );
        return Ok(Exit::Usage.into());
    }
    if !config.dir.join("index.db").exists() {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&ClearReport::default())?);
        } else {
            println!("nothing to clear in {}", config.dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = super::open_store(config)?;
    if !args.yes {
        let totals = store.totals().context("reading the store's totals")?;
        eprint!(
            "Remove {} ({}) from {}? [y/N] ",
            format::count(totals.entries, "entry", "entries"),
            format::bytes(totals.size),
            config.dir.display()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            eprintln!("nothing removed");
            return Ok(Exit::Failure.into());
        }
    }
    let report = store.clear(&Bar::stderr()).context("clearing the store")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "removed {} and {} blobs, freed {}",
            format::count(report.entries_removed, "entry", "entries"),
            report.blobs_removed,
            format::bytes(report.bytes_freed)
        );
    }
    Ok(ExitCode::SUCCESS)
}
