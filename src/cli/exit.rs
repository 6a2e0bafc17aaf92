//! The exit codes of kache's commands, by name; see the table in [`crate::cli`].
//!
//! Owns only the numbers. When kache wraps a compiler or runs a build script it exits with
//! that program's own code instead ([`of_program`]).

use std::process::ExitCode;

/// Why a command exits as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The command did what it was asked.
    Success = 0,
    /// The command failed or found problems (`verify`, `doctor`, a failed `sync`).
    Failure = 1,
    /// Bad usage: an unknown flag or bad value, an unusable cache directory or setting, a
    /// confirmation that cannot be asked, a terminal that is missing.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// The exit code of a program kache ran for cargo (a compiler, a build script): passed on
/// as it is, clamped into what a process can return.
pub fn of_program(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}
