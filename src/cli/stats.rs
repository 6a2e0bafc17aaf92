//! `kache stats`: what the cache did, from the event log and the store.
//!
//! [`summarize`] folds events into figures and [`render`] lays them out; both are pure, so the
//! figures are tested without a store. Only [`run`] reads the log and the index.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::format::{self, truncate};
use crate::config::{Config, parse_duration_secs};
use crate::events::summary::{
    CFigures, Percentiles, ReasonCount, RunFigures, SlowMiss, Summary, WarningCount,
};
use crate::events::{self, BuildEvent};

#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// Only count invocations newer than this, e.g. 24h or 7d
    #[arg(long, value_name = "AGE", value_parser = parse_duration_secs)]
    since: Option<u64>,
    /// Print the figures as JSON
    #[arg(long)]
    json: bool,
    /// Zero the counters: later reports count only what happens from now on
    #[arg(long, conflicts_with_all = ["since", "json"])]
    zero: bool,
}

/// How many slowest misses the report keeps.
const SLOWEST: usize = 5;
/// How many distinct warnings the JSON keeps.
const WARNINGS: usize = 5;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Stats {
    /// The `--since` window in seconds; `null` for the whole log.
    pub since_secs: Option<u64>,
    /// Unix milliseconds of the oldest and newest invocation counted.
    pub first_ts: Option<u64>,
    pub last_ts: Option<u64>,
    pub invocations: usize,
    pub local_hits: usize,
    pub remote_hits: usize,
    pub misses: usize,
    pub errors: usize,
    pub passthrough: usize,
    /// Hits over cacheable invocations (hits + misses).
    pub hit_rate: f64,
    /// Compile time the hits avoided over compile time that was or would have been spent.
    pub weighted_hit_rate: f64,
    /// Compile time the hits avoided (what the entries cost to compile).
    pub hit_compile_time_ms: f64,
    /// Wall time the hits took inside kache (looking up and restoring).
    pub hit_elapsed_ms: f64,
    /// `hit_compile_time_ms - hit_elapsed_ms`: what the cache gave back.
    pub time_saved_ms: f64,
    /// Compile time the misses spent in rustc.
    pub miss_compile_time_ms: f64,
    /// What one local hit costs: p50, p90 and p99 of their wall times; `null` without hits.
    pub local_hit_elapsed_ms: Option<Percentiles>,
    pub reflinked_bytes: u64,
    pub hardlinked_bytes: u64,
    pub copied_bytes: u64,
    pub passthrough_reasons: Vec<ReasonCount>,
    pub slowest_misses: Vec<SlowMiss>,
    /// The most frequent warnings the invocations logged.
    pub warnings: Vec<WarningCount>,
    /// The C/C++ compiles among the invocations (build scripts through the `cc` crate).
    pub c_compiles: CFigures,
    pub store: StoreFigures,
    /// Present when a remote is configured or the log shows remote traffic.
    pub remote: Option<RemoteFigures>,
    /// Present when the log holds build-script runs (counted in the figures above too).
    pub build_script_runs: Option<RunFigures>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StoreFigures {
    pub size: u64,
    pub limit: u64,
    pub entries: u64,
    pub blobs: u64,
    /// Bytes identical outputs would have taken without sharing blobs.
    pub dedup_saved_bytes: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub(crate) struct RemoteFigures {
    pub configured: bool,
    pub hits: usize,
    pub downloaded_bytes: u64,
    /// What the upload worker sent (from `<cache>/uploads.jsonl`).
    pub uploaded_bytes: u64,
    /// Entries waiting in the upload queue.
    pub queued: usize,
    /// Invocations whose remote lookup failed (and compiled locally).
    pub errors: usize,
}

/// Folds events into figures (store and remote settings are filled in by the caller).
pub(crate) fn summarize(events: &[BuildEvent]) -> Stats {
    let mut summary = Summary::default();
    for e in events {
        summary.record(e);
    }
    Stats::from_summary(&summary)
}

impl Stats {
    /// The figures of `s`; the store's and the remote's settings are left for the caller.
    fn from_summary(s: &Summary) -> Stats {
        let remote = RemoteFigures {
            hits: s.remote_hits,
            downloaded_bytes: s.downloaded_bytes,
            errors: s.remote_errors,
            ..RemoteFigures::default()
        };
        let remote_traffic = remote.hits + remote.errors > 0 || remote.downloaded_bytes > 0;
        Stats {
            since_secs: None,
            first_ts: s.first_ts,
            last_ts: s.last_ts,
            invocations: s.invocations,
            local_hits: s.local_hits,
            remote_hits: s.remote_hits,
            misses: s.misses,
            errors: s.errors,
            passthrough: s.passthrough,
            hit_rate: s.hit_rate(),
            weighted_hit_rate: s.weighted_hit_rate(),
            hit_compile_time_ms: s.hit_compile_time_ms,
            hit_elapsed_ms: s.hit_elapsed_ms,
            time_saved_ms: s.time_saved_ms(),
            miss_compile_time_ms: s.miss_compile_time_ms,
            local_hit_elapsed_ms: s.local_hit_elapsed(),
            reflinked_bytes: s.reflinked_bytes,
            hardlinked_bytes: s.hardlinked_bytes,
            copied_bytes: s.copied_bytes,
            passthrough_reasons: s.passthrough_reasons(),
            slowest_misses: s.slowest_misses(SLOWEST),
            warnings: s.warnings(WARNINGS),
            c_compiles: s.c_compiles.clone(),
            store: StoreFigures::default(),
            remote: remote_traffic.then_some(remote),
            build_script_runs: s.build_script_runs.clone(),
        }
    }
}

pub(crate) fn run(config: &Config, args: StatsArgs) -> anyhow::Result<ExitCode> {
    if args.zero {
        super::zero::zero(&config.dir)
            .with_context(|| format!("zeroing the counters in {}", config.dir.display()))?;
        println!("statistics zeroed");
        return Ok(ExitCode::SUCCESS);
    }
    let mut events = events::read_all(&config.dir)
        .with_context(|| format!("reading the event log in {}", config.dir.display()))?;
    if let Some(zeroed) = super::zero::zeroed_at(&config.dir) {
        events.retain(|e| e.ts >= zeroed);
    }
    if let Some(secs) = args.since {
        let cutoff = events::now_ms().saturating_sub(secs.saturating_mul(1000));
        events.retain(|e| e.ts >= cutoff);
    }
    let mut s = summarize(&events);
    s.since_secs = args.since;
    s.store.limit = config.max_size;
    // Reading figures must not create a store where there is none.
    if let Some(store) = super::open_existing(config)? {
        let totals = store.totals().context("reading the store's totals")?;
        s.store.size = totals.size;
        s.store.entries = totals.entries;
        s.store.blobs = totals.blobs;
        s.store.dedup_saved_bytes = totals.dedup_saved();
    }
    let configured = matches!(config.remote, Ok(Some(_)));
    let uploaded = crate::sync::upload::uploaded_bytes(&config.dir);
    let queued = crate::sync::upload::queue_len(&config.dir);
    if configured || uploaded > 0 || queued > 0 {
        let r = s.remote.get_or_insert_with(RemoteFigures::default);
        r.configured = configured;
        r.uploaded_bytes = uploaded;
        r.queued = queued;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(ExitCode::SUCCESS)
}

/// Width of the label column.
const LABEL: usize = 16;

/// The human report: a table at most 80 columns wide.
pub(crate) fn render(s: &Stats) -> String {
    let mut o = String::new();
    let window = match (s.since_secs, s.first_ts, s.last_ts) {
        (Some(secs), _, _) => format!("in the last {}", format::duration_ms(secs as f64 * 1e3)),
        (None, Some(a), Some(b)) => format!(
            "over {} of the event log",
            format::duration_ms(b.saturating_sub(a) as f64)
        ),
        _ => "(the event log is empty)".to_owned(),
    };
    let _ = writeln!(o, "{} invocations {window}", s.invocations);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<LABEL$}{:>8}{:>9}   compile time",
        "result", "count", "share"
    );
    let share = |n: usize| format::percent(n as f64, s.invocations as f64);
    let rows: [(&str, usize, String); 5] = [
        (
            "local hit",
            s.local_hits,
            if s.local_hits + s.remote_hits > 0 {
                format!("{} avoided", format::duration_ms(s.hit_compile_time_ms))
            } else {
                String::new()
            },
        ),
        ("remote hit", s.remote_hits, String::new()),
        (
            "miss",
            s.misses,
            if s.misses > 0 {
                format!("{} spent", format::duration_ms(s.miss_compile_time_ms))
            } else {
                String::new()
            },
        ),
        ("passthrough", s.passthrough, String::new()),
        ("error", s.errors, String::new()),
    ];
    for (label, n, time) in rows {
        let _ = writeln!(
            o,
            "  {:<w$}{:>8}{:>9}   {time}",
            label,
            n,
            share(n),
            w = LABEL - 2
        );
    }
    let _ = writeln!(
        o,
        "{:<LABEL$}{:>8}   by compile time {}",
        "hit rate",
        format::percent(s.hit_rate, 1.0),
        format::percent(s.weighted_hit_rate, 1.0)
    );
    let _ = writeln!(
        o,
        "{:<LABEL$}{:>8}   net of {} spent restoring",
        "time saved",
        format::duration_ms(s.time_saved_ms.max(0.0)),
        format::duration_ms(s.hit_elapsed_ms)
    );
    if let Some(r) = &s.build_script_runs {
        let _ = writeln!(
            o,
            "{:<LABEL$}{:>8}   {} hit · {} missed · {} not cached · {} saved",
            "script runs",
            r.hits + r.misses + r.passthrough,
            r.hits,
            r.misses,
            r.passthrough,
            format::duration_ms(r.time_saved_ms.max(0.0))
        );
    }
    let c = &s.c_compiles;
    if c.invocations > 0 {
        let _ = writeln!(
            o,
            "{:<LABEL$}{:>8}   {} hits ({} avoided) · {} misses · {} passthrough",
            "C/C++ compiles",
            c.invocations,
            c.hits,
            format::duration_ms(c.hit_compile_time_ms),
            c.misses,
            c.passthrough
        );
    }
    let _ = writeln!(o);
    let restored = s.reflinked_bytes + s.hardlinked_bytes + s.copied_bytes;
    // The methods on a line of their own: with GiB figures they do not fit beside the total.
    let _ = writeln!(o, "{:<LABEL$}{:>10}", "restored", format::bytes(restored));
    let _ = writeln!(
        o,
        "{:<LABEL$}reflink {} · hardlink {} · copy {}",
        "",
        format::bytes(s.reflinked_bytes),
        format::bytes(s.hardlinked_bytes),
        format::bytes(s.copied_bytes)
    );
    let st = &s.store;
    let _ = writeln!(
        o,
        "{:<LABEL$}{:>10}   {} of the {} limit",
        "store",
        format::bytes(st.size),
        format::percent(st.size as f64, st.limit as f64),
        format::bytes(st.limit)
    );
    let _ = writeln!(
        o,
        "{:<LABEL$}{} · {} · {} saved by dedup",
        "",
        format::count(st.entries, "entry", "entries"),
        format::count(st.blobs, "blob", "blobs"),
        format::bytes(st.dedup_saved_bytes)
    );
    if let Some(r) = &s.remote {
        let _ = writeln!(
            o,
            "{:<LABEL$}{:>10}   hits · {} downloaded · {} uploaded",
            "remote",
            r.hits,
            format::bytes(r.downloaded_bytes),
            format::bytes(r.uploaded_bytes),
        );
        let _ = writeln!(
            o,
            "{:<LABEL$}{:>10}   queued for upload · {} remote errors",
            "", r.queued, r.errors
        );
    }
    if !s.slowest_misses.is_empty() || !s.passthrough_reasons.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<40}not cached, by reason", "slowest misses");
        let n = s
            .slowest_misses
            .len()
            .max(s.passthrough_reasons.len().min(SLOWEST));
        for i in 0..n {
            let left = s
                .slowest_misses
                .get(i)
                .map(|m| {
                    format!(
                        "  {:<24}{:>10}",
                        truncate(&m.crate_name, 23),
                        format::duration_ms(m.compile_time_ms)
                    )
                })
                .unwrap_or_default();
            let right = s
                .passthrough_reasons
                .get(i)
                .map(|r| format!("  {:<26}{:>8}", truncate(&r.reason, 25), r.count))
                .unwrap_or_default();
            let _ = writeln!(o, "{:<40}{right}", left);
        }
    }
    // Right-padded cells leave trailing blanks; a report should not.
    o.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Outcome;

    fn event(name: &str, result: Outcome, compile_ms: f64) -> BuildEvent {
        BuildEvent {
            schema: events::SCHEMA,
            ts: 1_000,
            crate_name: Some(name.into()),
            result,
            compile_time_ms: compile_ms,
            elapsed_ms: if result.is_hit() {
                2.0
            } else {
                compile_ms + 1.0
            },
            ..BuildEvent::default()
        }
    }

    fn sample() -> Vec<BuildEvent> {
        let mut evs = vec![
            event("serde", Outcome::Miss, 3000.0),
            event("syn", Outcome::Miss, 5000.0),
            event("serde", Outcome::LocalHit, 3000.0),
            event("syn", Outcome::LocalHit, 5000.0),
            event("itoa", Outcome::LocalHit, 200.0),
            event("?", Outcome::Passthrough, 0.0),
            event("?", Outcome::Passthrough, 0.0),
            event("bad", Outcome::Passthrough, 0.0),
        ];
        evs[5].passthrough_reason = Some("probe".into());
        evs[6].passthrough_reason = Some("probe".into());
        evs[7].passthrough_reason = Some("unsupported_emit (llvm-ir)".into());
        evs[2].hardlinked_bytes = 1000;
        evs[3].copied_bytes = 24;
        evs[7].ts = 61_000;
        evs
    }

    /// Issue 10 item 11: a crate missed several times is listed once among the slowest.
    #[test]
    fn slowest_misses_name_each_crate_once() {
        let evs = vec![
            event("syn", Outcome::Miss, 5000.0),
            event("syn", Outcome::Miss, 4000.0),
            event("serde", Outcome::Miss, 3000.0),
        ];
        let names: Vec<_> = summarize(&evs)
            .slowest_misses
            .into_iter()
            .map(|m| (m.crate_name, m.compile_time_ms))
            .collect();
        assert_eq!(names, [("syn".into(), 5000.0), ("serde".into(), 3000.0)]);
    }

    #[test]
    fn figures() {
        let s = summarize(&sample());
        assert_eq!(
            (s.invocations, s.local_hits, s.misses, s.passthrough),
            (8, 3, 2, 3)
        );
        assert!((s.hit_rate - 0.6).abs() < 1e-9);
        assert!((s.weighted_hit_rate - 8200.0 / 16200.0).abs() < 1e-9);
        assert!((s.time_saved_ms - (8200.0 - 6.0)).abs() < 1e-9);
        assert_eq!(s.slowest_misses[0].crate_name, "syn");
        assert_eq!(
            s.passthrough_reasons,
            vec![
                ReasonCount {
                    reason: "probe".into(),
                    count: 2
                },
                ReasonCount {
                    reason: "unsupported_emit".into(),
                    count: 1
                },
            ]
        );
        assert_eq!((s.hardlinked_bytes, s.copied_bytes), (1000, 24));
        assert_eq!((s.first_ts, s.last_ts), (Some(1_000), Some(61_000)));
        assert!(s.remote.is_none(), "no remote traffic, none configured");
    }

    #[test]
    fn build_script_runs_are_counted_apart() {
        let mut run = event("zstd-sys:build-script", Outcome::LocalHit, 900.0);
        run.crate_types = vec![crate::events::RUN_CRATE_TYPE.to_owned()];
        run.elapsed_ms = 10.0;
        let mut events = sample();
        assert_eq!(summarize(&events).build_script_runs, None);
        events.push(run);
        let s = summarize(&events);
        let runs = s.build_script_runs.clone().expect("runs");
        assert_eq!((runs.hits, runs.misses, runs.passthrough), (1, 0, 0));
        assert_eq!(runs.time_saved_ms, 890.0);
        assert!(render(&s).contains("script runs"));
    }

    #[test]
    fn c_compiles_are_counted_apart() {
        let mut evs = sample();
        let mut c = |name: &str, result: Outcome, ms: f64| {
            let mut e = event(name, result, ms);
            e.compiler = events::Compiler::C;
            evs.push(e);
        };
        c("sqlite3.c", Outcome::Miss, 9000.0);
        c("sqlite3.c", Outcome::LocalHit, 9000.0);
        c("?", Outcome::Passthrough, 0.0);
        let s = summarize(&evs);
        assert_eq!(
            s.c_compiles,
            CFigures {
                invocations: 3,
                hits: 1,
                misses: 1,
                passthrough: 1,
                hit_compile_time_ms: 9000.0
            }
        );
        assert_eq!(
            (s.local_hits, s.misses),
            (4, 3),
            "C compiles count in the totals"
        );
        let text = render(&s);
        assert!(text.contains("C/C++ compiles"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert!(!render(&summarize(&sample())).contains("C/C++"));
    }

    #[test]
    fn empty_log() {
        let s = summarize(&[]);
        assert_eq!(s.invocations, 0);
        assert_eq!(s.hit_rate, 0.0);
        assert!(render(&s).contains("the event log is empty"));
    }

    #[test]
    fn report_fits_80_columns() {
        let mut s = summarize(&sample());
        s.slowest_misses[0].crate_name = "a_crate_with_a_very_long_name_indeed_yes".into();
        // The widest figures: "1023.9 GiB" (the restored line once reached 82 columns).
        let widest = (1u64 << 40) - (100 << 20);
        (s.reflinked_bytes, s.hardlinked_bytes, s.copied_bytes) = (widest, widest, widest);
        s.store = StoreFigures {
            size: 9 << 30,
            limit: 10 << 30,
            entries: 123_456,
            blobs: 234_567,
            dedup_saved_bytes: 1 << 30,
        };
        s.remote = Some(RemoteFigures {
            configured: true,
            hits: 12_345,
            downloaded_bytes: 5 << 30,
            uploaded_bytes: 6 << 30,
            queued: 1_234,
            errors: 56,
        });
        let text = render(&s);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
            assert_eq!(line, line.trim_end());
        }
        assert!(text.contains("hit rate"), "{text}");
        assert!(text.contains("60.0%"), "{text}");
        assert!(text.contains("probe"), "{text}");
        assert!(text.contains("a_crate_with_a_very_lo…"), "{text}");
        assert!(text.contains("remote"), "{text}");
    }
}
