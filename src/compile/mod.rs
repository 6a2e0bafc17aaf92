//! Running the real compiler once: the compiler chain with rustc's arguments, stdout and
//! stderr passed through to cargo as they come (cargo's pipelining waits for rustc's artifact
//! notifications) and captured for replay on later hits. Must not hash or store anything.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Compiled {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs the compiler with output passed through and captured.
pub(crate) fn run_captured(chain: &[PathBuf], args: &[OsString]) -> io::Result<Compiled> {
    let start = Instant::now();
    let mut child = command(chain, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || tee(stdout, io::stdout()));
    let err = tee(stderr, io::stderr());
    let out = out_thread.join().unwrap_or_default();
    let status = child.wait()?;
    Ok(Compiled {
        exit_code: exit_code(status),
        stdout: out,
        stderr: err,
        elapsed: start.elapsed(),
    })
}

/// Runs the compiler with inherited stdio (passthrough); returns its exit code.
pub(crate) fn run_plain(chain: &[PathBuf], args: &[OsString]) -> io::Result<i32> {
    command(chain, args).status().map(exit_code)
}

fn command(chain: &[PathBuf], args: &[OsString]) -> Command {
    let (program, rest) = match chain.split_first() {
        Some((p, rest)) => (p.clone(), rest),
        None => (PathBuf::from("rustc"), &[][..]),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest).args(args);
    cmd
}

/// Copies a pipe to `sink` chunk by chunk, keeping what passed.
pub(crate) fn tee(source: Option<impl Read>, mut sink: impl Write) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut source) = source else {
        return kept;
    };
    let mut buf = [0u8; 16 * 1024];
    loop {
        match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                // cargo may have gone away; the compile's result still matters.
                let _ = sink.write_all(&buf[..n]).and_then(|()| sink.flush());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

/// The exit code as a shell would report it (128 + signal for a killed compiler).
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
