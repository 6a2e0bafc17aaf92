//! kache: a build cache for Rust, used as `RUSTC_WRAPPER=kache cargo build`.
//!
//! The modules follow one rustc invocation through the cache:
//! [`invocation`] (how we were called) → [`key`] (what could change the output) →
//! [`store`] (lookup) → [`restore`] (hit) or [`compile`] → [`store`] (miss) → [`events`]
//! (what happened). [`remote`] and [`sync`] share entries through object storage.
//! [`wrapper`] glues them together; [`cli`] holds the commands people run. [`cc`] is the
//! same pipeline for the C/C++ compiles build scripts run through the `cc` crate, and
//! [`buildscript`] for build-script runs; [`frontend`] is what those three share (the lookup,
//! faults, the event's append). [`probe`] answers cargo's `-vV`/`--print` probes from a memo.
//! [`fsutil`] holds the filesystem and path helpers all of them use.
//! See `docs/architecture.md`; read these docs with
//! `cargo doc --no-deps --document-private-items`.

// The library exists for the `kache` binary and its tests, not as a published API: its docs
// are for kache's developers, and they link to the private modules and items they describe.
#![allow(rustdoc::private_intra_doc_links)]

pub mod buildscript;
mod cc;
pub mod cli;
mod compile;
mod config;
pub mod events;
mod frontend;
mod fsutil;
mod invocation;
pub mod key;
mod probe;
pub mod remote;
mod restore;
pub mod store;
pub mod sync;
mod testhook;
pub mod wrapper;
