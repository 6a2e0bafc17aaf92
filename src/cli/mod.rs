//! The commands people run: `kache stats`, `kache gc`, `kache explain`, ...
//!
//! Each command is a thin layer that reads the store or the event log through the library and
//! formats the answer for a terminal or as JSON. No pipeline logic lives here.
//!
//! Exit codes: 0 success, 1 the command failed or found problems, 2 bad usage (unknown flag,
//! bad value, unusable cache directory or settings, a confirmation that cannot be asked).

mod clear;
mod explain;
mod format;
mod gc;
mod init;
mod list;
mod monitor;
mod progress;
mod stats;
mod sync;
mod verify;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::invocation::CompilerFamily;

/// A build cache for Rust.
#[derive(Debug, Parser)]
#[command(
    name = "kache",
    version,
    about,
    long_about = "A build cache for Rust.\n\n\
        Use it as cargo's compiler wrapper: `RUSTC_WRAPPER=kache cargo build`, or run \
        `kache init` once to make every cargo build use it.",
    after_help = "Settings come from KACHE_* environment variables and \
        ~/.config/kache/config.toml; see docs/configuration.md.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hit rate, time saved, store size and why invocations were not cached
    Stats(stats::StatsArgs),
    /// Why did a crate miss? Name what changed since its nearest stored entry
    Explain(explain::ExplainArgs),
    /// List stored entries
    List(list::ListArgs),
    /// Evict least-recently-used entries until the store is under its limits
    Gc(gc::GcArgs),
    /// Remove every stored entry
    Clear(clear::ClearArgs),
    /// Re-hash every blob and check the index against the blobs
    Verify(verify::VerifyArgs),
    /// Watch hits and misses live as builds run
    Monitor(monitor::MonitorArgs),
    /// Make cargo use kache: set build.rustc-wrapper in $CARGO_HOME/config.toml
    Init(init::InitArgs),
    /// Upload entries queued for the remote (KACHE_REMOTE) and wait for them
    Sync(sync::SyncArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

const COMMANDS: &[&str] = &[
    "sync",
    "stats",
    "explain",
    "list",
    "gc",
    "clear",
    "verify",
    "monitor",
    "init",
    "completions",
    "help",
    "--help",
    "-h",
    "--version",
    "-V",
];

/// Whether `word` (argv[1]) starts a command rather than naming a compiler to wrap.
///
/// A word names a compiler when [`CompilerFamily::classify`] says so: a path, or a known
/// compiler name (`rustc`, `gcc`, `clang++`, ...). Any other word goes to the command-line
/// parser, so `kache stat` or `kache ls` says "unrecognized subcommand" (exit 2) instead of
/// running a program called `stat` or `ls`.
pub fn is_command(word: &str) -> bool {
    COMMANDS.contains(&word) || CompilerFamily::classify(std::ffi::OsStr::new(word)).is_none()
}

/// Runs a command and returns its exit code (see the module documentation).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    finish(match cli.command {
        // These two need neither settings nor a cache, so a broken one does not stop them.
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kache", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(a) => init::run(a),
        Command::Sync(a) => with_config(|c| sync::run(c, a)),
        Command::Stats(a) => with_config(|c| stats::run(c, a)),
        Command::Explain(a) => with_config(|c| explain::run(c, a)),
        Command::List(a) => with_config(|c| list::run(c, a)),
        Command::Gc(a) => with_config(|c| gc::run(c, a)),
        Command::Clear(a) => with_config(|c| clear::run(c, a)),
        Command::Verify(a) => with_config(|c| verify::run(c, a)),
        Command::Monitor(a) => with_config(|c| monitor::run(c, a)),
    })
}

/// Runs a command that needs the settings and the cache directory; unusable ones are bad
/// usage (exit 2), said in one line.
fn with_config(
    command: impl FnOnce(&Config) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kache: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if config.dir.exists() && !config.dir.is_dir() {
        eprintln!(
            "kache: error: cache directory {} is not a directory (set KACHE_DIR)",
            config.dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    command(&config)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kache: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_is_a_command_word() {
        for sub in Cli::command().get_subcommands() {
            assert!(
                is_command(sub.get_name()),
                "{} missing from COMMANDS",
                sub.get_name()
            );
        }
    }

    #[test]
    fn compilers_are_wrapped_and_typos_are_commands() {
        assert!(!is_command("/usr/bin/rustc"));
        assert!(!is_command("./rustc"));
        assert!(!is_command("gcc") && !is_command("x86_64-linux-gnu-g++"));
        assert!(
            is_command("sh") && is_command("ls") && is_command("stat"),
            "a program in PATH that is no compiler is not run"
        );
        assert!(is_command("stats"));
        assert!(is_command("--frobnicate"));
        assert!(is_command("stat-typo-that-is-no-program"));
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
