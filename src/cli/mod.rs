//! The commands people run: `kache stats`, `kache gc`, `kache verify`, ...
//!
//! Each command is a thin layer that reads the store or the event log through the library and
//! formats the answer for a terminal or as JSON. No pipeline logic lives here.

mod format;
mod gc;
mod stats;
mod verify;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// A build cache for Rust. Use it as `RUSTC_WRAPPER=kache cargo build`.
#[derive(Debug, Parser)]
#[command(name = "kache", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hit rate, time saved, store size and why invocations were not cached.
    Stats(stats::StatsArgs),
    /// Evict least-recently-used entries until the store is under its limits.
    Gc(gc::GcArgs),
    /// Re-hash every blob and check the index against the blobs.
    Verify(verify::VerifyArgs),
}

const COMMANDS: &[&str] = &[
    "stats",
    "gc",
    "verify",
    "help",
    "--help",
    "-h",
    "--version",
    "-V",
];

/// Whether `word` (argv[1]) starts a command rather than naming a compiler to wrap.
pub fn is_command(word: &str) -> bool {
    COMMANDS.contains(&word)
}

/// Runs a command; exit code 0 on success, 1 when the command found problems or failed,
/// 2 on bad usage.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kache: error: {e}");
            return ExitCode::from(2);
        }
    };
    if config.dir.exists() && !config.dir.is_dir() {
        eprintln!(
            "kache: error: cache directory {} is not a directory (set KACHE_DIR)",
            config.dir.display()
        );
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Stats(a) => stats::run(&config, a),
        Command::Gc(a) => gc::run(&config, a),
        Command::Verify(a) => verify::run(&config, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kache: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
