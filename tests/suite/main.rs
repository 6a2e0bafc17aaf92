//! kache's integration tests, as one binary (laid out as cargo-nextest's own): one module per
//! area, the helpers they share in [`support`] (the fixture workspace, cargo with and without
//! kache, the event log as `kache::events::BuildEvent`) and [`support_s3`] (a moto server).
//!
//! Run one area with `cargo test --features fault-injection --test suite faults::`; tests
//! that need root are `#[ignore = "needs root: …"]` (add `-- --include-ignored` as root).
//! One binary compiles the helpers once, and the compiler sees every use of them, so a
//! helper no test calls is a dead-code warning (an error under clippy `-D warnings`)
//! instead of hiding under `allow(dead_code)`.

mod support;
mod support_s3;

mod build_scripts;
mod build_shapes;
mod cc;
mod change_matrix;
mod cli;
mod concurrency;
mod e2e_core;
mod faults;
mod incremental;
mod probes;
mod relocation;
mod remote_e2e;
mod remote_s3;
mod remote_upload;
mod trust;
mod verify;
mod zero_copy;
