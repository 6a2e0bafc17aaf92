//! The `kache` binary: a rustc wrapper when cargo calls it with a compiler, the command-line
//! interface otherwise. Only dispatch lives here.

use std::ffi::OsString;
use std::process::ExitCode;

use kache::cli::exit::of_program;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    // Started by the build-script launcher (it sets this; kache removes it for the script).
    if std::env::var_os(kache::buildscript::run::REAL_VAR).is_some() {
        return of_program(kache::buildscript::run::main(args.split_off(1)));
    }
    // A non-UTF-8 word keeps its `/` through the lossy conversion, so a path stays a path.
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    if first.is_some_and(|w| !kache::cli::is_command(&w)) {
        return of_program(kache::wrapper::run(args.split_off(1)));
    }
    kache::cli::main(args)
}
