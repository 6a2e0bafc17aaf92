//! `kache stats`: what the cache did, from the event log and the store.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::format;
use crate::config::{Config, parse_duration_secs};
use crate::events::{self, BuildEvent, Outcome};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only count invocations newer than this, e.g. 24h or 7d.
    #[arg(long, value_parser = parse_duration_secs)]
    since: Option<u64>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub invocations: usize,
    pub local_hits: usize,
    pub remote_hits: usize,
    pub misses: usize,
    pub errors: usize,
    pub passthrough: usize,
    /// Hits over cacheable invocations (hits + misses).
    pub hit_rate: f64,
    /// Compile time saved over compile time that was or would have been spent.
    pub weighted_hit_rate: f64,
    pub time_saved_ms: f64,
    pub compile_time_ms: f64,
    pub reflinked_bytes: u64,
    pub hardlinked_bytes: u64,
    pub copied_bytes: u64,
    pub downloaded_bytes: u64,
    pub uploaded_bytes: u64,
    pub passthrough_reasons: Vec<(String, usize)>,
    pub slowest_misses: Vec<(String, f64)>,
    pub store_size: u64,
    pub store_limit: u64,
    pub entries: u64,
    pub blobs: u64,
    /// Bytes that identical outputs would have taken without sharing blobs.
    pub dedup_saved_bytes: u64,
}

/// Folds events into figures.
pub fn summarize(events: &[BuildEvent]) -> Stats {
    let mut s = Stats::default();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut misses: Vec<(String, f64)> = Vec::new();
    for e in events {
        s.invocations += 1;
        match e.result {
            Outcome::LocalHit => s.local_hits += 1,
            Outcome::RemoteHit => s.remote_hits += 1,
            Outcome::Miss => s.misses += 1,
            Outcome::Error => s.errors += 1,
            Outcome::Passthrough => s.passthrough += 1,
        }
        if e.result.is_hit() {
            s.time_saved_ms += e.compile_time_ms;
        } else if e.result == Outcome::Miss {
            s.compile_time_ms += e.compile_time_ms;
            let name = e.crate_name.clone().unwrap_or_else(|| "?".into());
            misses.push((name, e.compile_time_ms));
        }
        if let Some(r) = &e.passthrough_reason {
            let name = r.split(' ').next().unwrap_or(r).to_owned();
            *reasons.entry(name).or_default() += 1;
        }
        s.reflinked_bytes += e.reflinked_bytes;
        s.hardlinked_bytes += e.hardlinked_bytes;
        s.copied_bytes += e.copied_bytes;
        s.downloaded_bytes += e.downloaded_bytes;
        s.uploaded_bytes += e.uploaded_bytes;
    }
    let hits = (s.local_hits + s.remote_hits) as f64;
    let cacheable = hits + s.misses as f64;
    s.hit_rate = if cacheable > 0.0 {
        hits / cacheable
    } else {
        0.0
    };
    let total = s.time_saved_ms + s.compile_time_ms;
    s.weighted_hit_rate = if total > 0.0 {
        s.time_saved_ms / total
    } else {
        0.0
    };
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    s.passthrough_reasons = reasons;
    misses.sort_by(|a, b| b.1.total_cmp(&a.1));
    misses.truncate(5);
    s.slowest_misses = misses;
    s
}

pub fn run(config: &Config, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let mut events = events::read_all(&config.dir)
        .with_context(|| format!("reading the event log in {}", config.dir.display()))?;
    if let Some(secs) = args.since {
        let cutoff = events::now_ms().saturating_sub(secs * 1000);
        events.retain(|e| e.ts >= cutoff);
    }
    let mut s = summarize(&events);
    s.store_limit = config.max_size;
    if config.dir.join("index.db").exists() {
        let store = Store::open(&config.dir).context("opening the store")?;
        let conn = store.conn();
        s.store_size = store.size()?;
        s.entries =
            conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))? as u64;
        s.blobs = conn.query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get::<_, i64>(0))? as u64;
        let logical: i64 =
            conn.query_row("SELECT COALESCE(SUM(size), 0) FROM outputs", [], |r| {
                r.get(0)
            })?;
        s.dedup_saved_bytes = (logical as u64).saturating_sub(s.store_size);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human report, at most 80 columns wide.
pub fn render(s: &Stats) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let hits = s.local_hits + s.remote_hits;
    let _ = writeln!(o, "{:<28}{:>12}", "invocations", s.invocations);
    let _ = writeln!(
        o,
        "{:<28}{:>12}   {} / {}",
        "  hits (local / remote)", hits, s.local_hits, s.remote_hits
    );
    let _ = writeln!(o, "{:<28}{:>12}", "  misses", s.misses);
    let _ = writeln!(o, "{:<28}{:>12}", "  passthrough", s.passthrough);
    let _ = writeln!(o, "{:<28}{:>12}", "  errors", s.errors);
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "hit rate",
        format::percent(s.hit_rate, 1.0)
    );
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "hit rate by compile time",
        format::percent(s.weighted_hit_rate, 1.0)
    );
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "time saved",
        format::duration_ms(s.time_saved_ms)
    );
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "restored by reflink",
        format::bytes(s.reflinked_bytes)
    );
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "restored by hardlink",
        format::bytes(s.hardlinked_bytes)
    );
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "restored by copy",
        format::bytes(s.copied_bytes)
    );
    if s.downloaded_bytes + s.uploaded_bytes > 0 {
        let _ = writeln!(
            o,
            "{:<28}{:>12}",
            "remote download",
            format::bytes(s.downloaded_bytes)
        );
        let _ = writeln!(
            o,
            "{:<28}{:>12}",
            "remote upload",
            format::bytes(s.uploaded_bytes)
        );
    }
    let _ = writeln!(
        o,
        "{:<28}{:>12}   of {} ({})",
        "store size",
        format::bytes(s.store_size),
        format::bytes(s.store_limit),
        format::percent(s.store_size as f64, s.store_limit as f64)
    );
    let _ = writeln!(o, "{:<28}{:>12}", "  entries", s.entries);
    let _ = writeln!(o, "{:<28}{:>12}", "  blobs", s.blobs);
    let _ = writeln!(
        o,
        "{:<28}{:>12}",
        "  saved by dedup",
        format::bytes(s.dedup_saved_bytes)
    );
    if !s.slowest_misses.is_empty() {
        let _ = writeln!(o, "slowest misses");
        for (name, ms) in &s.slowest_misses {
            let _ = writeln!(
                o,
                "  {:<26}{:>12}",
                truncate(name, 26),
                format::duration_ms(*ms)
            );
        }
    }
    if !s.passthrough_reasons.is_empty() {
        let _ = writeln!(o, "not cached, by reason");
        for (reason, n) in s.passthrough_reasons.iter().take(8) {
            let _ = writeln!(o, "  {:<26}{:>12}", truncate(reason, 26), n);
        }
    }
    o
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}
