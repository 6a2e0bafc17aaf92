//! The commands people run: `kache stats`, `kache gc`, `kache explain`, ...
//!
//! Each command is a thin layer that reads the store or the event log through the library and
//! formats the answer for a terminal or as JSON. No pipeline logic lives here.
//!
//! Exit codes ([`exit::Exit`]): 0 success, 1 the command failed or found problems, 2 bad usage
//! (unknown flag, bad value, unusable cache directory or settings, a confirmation that cannot
//! be asked).

mod clear;
mod doctor;
pub mod exit;
mod explain;
mod format;
mod gc;
mod init;
mod list;
mod monitor;
mod progress;
mod settings;
mod stats;
mod sync;
mod verify;
mod zero;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::events::BuildEvent;
use crate::invocation::CompilerFamily;
use crate::store::{Store, StoreError, Use};
use exit::Exit;

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
    arg_required_else_help = true,
    // Help fits 80 columns even on a wider terminal or a pipe (clap's default is 100).
    max_term_width = 80
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
    /// Move entries to (--push) or from (--pull) the remote (KACHE_REMOTE)
    Sync(sync::SyncArgs),
    /// Show the cache location and the effective settings, with where each came from
    Config(settings::ConfigArgs),
    /// Check the set-up: wrapper wired into cargo, cache dir, reflinks, remote, toolchain
    Doctor(doctor::DoctorArgs),
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
    "config",
    "doctor",
    "help",
    "--help",
    "-h",
    "--version",
    "-V",
];

/// Whether `word` (`argv[1]`) starts a command rather than naming a compiler to wrap.
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
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    finish(match cli.command {
        // These two need neither settings nor a cache, so a broken one does not stop them.
        Command::Completions { shell } => {
            let mut cmd = without_hidden_flags(Cli::command());
            clap_complete::generate(shell, &mut cmd, "kache", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(a) => init::run(a),
        Command::Config(a) => settings::run(a),
        Command::Doctor(a) => with_config(|c| doctor::run(c, a)),
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

/// The command line as completions offer it: clap's generators list hidden flags too, and
/// `gc --auto` and `sync --background` are for kache's own detached processes, not people.
fn without_hidden_flags(cmd: clap::Command) -> clap::Command {
    // Every subcommand is in COMMANDS (a unit test checks), whose names are `'static` as a
    // new `Command` wants them.
    let names: Vec<&'static str> = COMMANDS
        .iter()
        .copied()
        .filter(|name| cmd.find_subcommand(name).is_some())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| {
            let visible: Vec<clap::Arg> = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .cloned()
                .collect();
            // Groups that name a dropped flag go too (derive makes one per Args struct).
            let groups: Vec<clap::ArgGroup> = sub
                .get_groups()
                .filter(|g| {
                    g.get_args()
                        .all(|id| visible.iter().any(|a| a.get_id() == id))
                })
                .cloned()
                .collect();
            let mut lean = clap::Command::new(name).args(visible).groups(groups);
            if let Some(about) = sub.get_about() {
                lean = lean.about(about.clone());
            }
            lean
        })
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
            return Ok(Exit::Usage.into());
        }
    };
    // The directory, or the nearest part of its path that exists, must be a directory: a
    // path under a regular file can never become a cache.
    if let Some(blocker) = config.dir.ancestors().find(|p| p.exists())
        && !blocker.is_dir()
    {
        let what = if blocker == config.dir {
            String::new()
        } else {
            format!(" ({} is a file)", blocker.display())
        };
        eprintln!(
            "kache: error: cache directory {} is not a directory{what} (set KACHE_DIR)",
            config.dir.display()
        );
        return Ok(Exit::Usage.into());
    }
    // A dir that does not exist yet is made (and checked) by the store when a command needs
    // it; one that exists must be trustworthy even for commands that only read it.
    let exists = std::fs::symlink_metadata(&config.dir).is_ok();
    if (exists || config.dir.as_os_str().is_empty())
        && let Err(e) = crate::store::trust_cache_dir(&config.dir, false)
    {
        eprintln!("kache: error: {e}");
        return Ok(Exit::Usage.into());
    }
    command(&config)
}

/// A cache directory or setting a command cannot use: bad usage (exit 2), said in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unusable(String);

fn unusable(dir: &std::path::Path, e: StoreError) -> anyhow::Error {
    let message = match e {
        StoreError::Sqlite(e) => format!("cache index in {}: {e}", dir.display()),
        other => other.to_string(),
    };
    Unusable(message).into()
}

/// The store, for a command that changes it (created when missing). A store that cannot be
/// written is unusable for it.
fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::open(&config.dir).map_err(|e| unusable(&config.dir, e))?;
    if store.is_read_only() {
        return Err(read_only(config));
    }
    Ok(store)
}

/// The error for a command that must write to a read-only store.
fn read_only(config: &Config) -> anyhow::Error {
    Unusable(format!(
        "cache directory {} is read-only",
        config.dir.display()
    ))
    .into()
}

/// The store, for a command that only reads it: opened read-only when it cannot be written,
/// never created. `None` when nothing is stored there yet.
fn open_existing(config: &Config) -> anyhow::Result<Option<Store>> {
    Store::open_existing(&config.dir).map_err(|e| unusable(&config.dir, e))
}

/// [`open_existing`] for a command that is pointless without a store (`verify`, `gc`): a
/// mistyped `KACHE_DIR` is an error rather than a fresh, empty, healthy-looking store.
fn open_required(config: &Config) -> anyhow::Result<Store> {
    open_existing(config)?.ok_or_else(|| {
        Unusable(format!(
            "no cache at {} (set KACHE_DIR)",
            config.dir.display()
        ))
        .into()
    })
}

/// The event log of `config`'s cache, for folding its hits into the store; `None` when it
/// cannot be read (the counts then stay as last folded).
fn logged_events(config: &Config) -> Option<Vec<BuildEvent>> {
    crate::events::read_all(&config.dir).ok()
}

/// The hits among `events`, for [`Store::fold_usage`]: the log is the record of use.
fn uses(events: &[BuildEvent]) -> Vec<Use<'_>> {
    events
        .iter()
        .filter(|e| e.result.is_hit())
        .map(|e| Use {
            key: e.cache_key.as_deref(),
            at_ms: e.ts,
        })
        .collect()
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<Unusable>().is_some() => {
            eprintln!("kache: error: {e}");
            Exit::Usage.into()
        }
        Err(e) => {
            eprintln!("kache: error: {e:#}");
            Exit::Failure.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_is_a_command_word() {
        // `is_command` is true for any word that names no compiler, so it cannot tell a
        // listed subcommand from a forgotten one: check the list itself. A missing one
        // would be run as a compiler if it looked like one, and lose its lean completions.
        for sub in Cli::command().get_subcommands() {
            assert!(
                COMMANDS.contains(&sub.get_name()),
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
        without_hidden_flags(Cli::command()).debug_assert();
    }
}
