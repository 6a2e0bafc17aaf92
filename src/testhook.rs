//! A fault injector for the crash tests (`tests/suite/faults.rs`): with
//! `KACHE_TEST_CRASH_AT=<stage>` (or `<stage>:<crate name>`) set, the process kills itself with
//! SIGKILL, exactly as `kill -9` would, when it reaches that stage (for that crate).
//!
//! Compiled in only with the `fault-injection` cargo feature (off by default; `e2e/run-tests`
//! turns it on): in the binary people install, [`crash_point`] is an empty function and the
//! variable does nothing. With the feature but without the variable, it costs one environment
//! lookup per stage reached.
//!
//! Stages, in the order an invocation meets them:
//! - `mid_restore`: a hit's outputs are in place, the shared maintenance lock is held, cargo
//!   has not been told yet;
//! - `after_compile`: rustc succeeded, nothing is stored;
//! - `after_blob`: the first output is in the blob directory, the entry is not committed;
//! - `before_commit`: every blob is in place, the entry is not committed;
//! - `in_commit`: inside the index's write transaction, before it commits;
//! - `after_commit`: the entry is visible, the event is not logged.

/// Kills the process if `KACHE_TEST_CRASH_AT` names this stage (and this crate, if it names one).
#[cfg(feature = "fault-injection")]
pub(crate) fn crash_point(stage: &str, crate_name: &str) {
    let Some(spec) = std::env::var_os("KACHE_TEST_CRASH_AT") else {
        return;
    };
    let spec = spec.to_string_lossy();
    let (want_stage, want_crate) = match spec.split_once(':') {
        Some((s, c)) => (s, Some(c)),
        None => (&*spec, None),
    };
    if want_stage == stage && want_crate.is_none_or(|c| c == crate_name) {
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so this does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Without the `fault-injection` feature: nothing, whatever the environment says.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn crash_point(_stage: &str, _crate_name: &str) {}
