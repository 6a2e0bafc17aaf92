//! The one fold of build events into figures: `kache stats` feeds it the whole log at once,
//! `kache monitor` one event at a time as builds run, so both count the same way.
//!
//! Owns what an event counts towards (hits, misses, compile time avoided and spent, restore
//! bytes, passthrough reasons, the slowest crates, C compiles, build-script runs, remote
//! traffic). Must not read the log, the store or the settings, and must not format anything:
//! callers decide what to show and how.

use std::collections::HashMap;

use serde::Serialize;

use super::{BuildEvent, Compiler, Outcome};

/// Build-script runs among the invocations (`src/buildscript/`).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub(crate) struct RunFigures {
    pub hits: usize,
    pub misses: usize,
    pub passthrough: usize,
    /// Script run time the hits avoided, net of their restore time.
    pub time_saved_ms: f64,
}

/// The C/C++ compiles among the invocations (build scripts through the `cc` crate).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub(crate) struct CFigures {
    pub invocations: usize,
    pub hits: usize,
    pub misses: usize,
    pub passthrough: usize,
    /// Compile time the C hits avoided.
    pub hit_compile_time_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReasonCount {
    pub reason: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SlowMiss {
    pub crate_name: String,
    pub compile_time_ms: f64,
}

/// Running totals over the events seen so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub invocations: usize,
    /// Unix milliseconds of the oldest and newest invocation counted.
    pub first_ts: Option<u64>,
    pub last_ts: Option<u64>,
    pub local_hits: usize,
    pub remote_hits: usize,
    pub misses: usize,
    pub errors: usize,
    pub passthrough: usize,
    /// Compile time the hits avoided (what the entries cost to compile).
    pub hit_compile_time_ms: f64,
    /// Wall time the hits took inside kache (looking up and restoring).
    pub hit_elapsed_ms: f64,
    /// Compile time the misses spent in the compiler.
    pub miss_compile_time_ms: f64,
    pub reflinked_bytes: u64,
    pub hardlinked_bytes: u64,
    pub copied_bytes: u64,
    pub downloaded_bytes: u64,
    /// Invocations whose remote lookup failed (and compiled locally).
    pub remote_errors: usize,
    pub c_compiles: CFigures,
    /// Present once a build-script run was seen (counted in the figures above too).
    pub build_script_runs: Option<RunFigures>,
    /// By the reason's first word: `unsupported_emit (llvm-ir)` counts as `unsupported_emit`.
    reasons: HashMap<String, usize>,
    /// Each crate's slowest miss, with the position of that event, which orders equal times.
    slowest: HashMap<String, (f64, usize)>,
    /// The wall time of every local hit, for its percentiles.
    local_hit_elapsed: Vec<f64>,
    /// Warning texts and how often each was seen.
    warnings: HashMap<String, usize>,
}

/// Linear-interpolated percentiles of a set of times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WarningCount {
    pub warning: String,
    pub count: usize,
}

impl Summary {
    /// Counts one event.
    pub(crate) fn record(&mut self, e: &BuildEvent) {
        let seq = self.invocations;
        self.invocations += 1;
        self.first_ts = Some(self.first_ts.map_or(e.ts, |t| t.min(e.ts)));
        self.last_ts = Some(self.last_ts.map_or(e.ts, |t| t.max(e.ts)));
        match e.result {
            Outcome::LocalHit => self.local_hits += 1,
            Outcome::RemoteHit => self.remote_hits += 1,
            Outcome::Miss => self.misses += 1,
            Outcome::Error => self.errors += 1,
            Outcome::Passthrough => self.passthrough += 1,
        }
        if e.compiler == Compiler::C {
            let c = &mut self.c_compiles;
            c.invocations += 1;
            match e.result {
                Outcome::LocalHit | Outcome::RemoteHit => {
                    c.hits += 1;
                    c.hit_compile_time_ms += e.compile_time_ms;
                }
                Outcome::Miss => c.misses += 1,
                Outcome::Passthrough => c.passthrough += 1,
                Outcome::Error => {}
            }
        }
        if e.result == Outcome::LocalHit {
            self.local_hit_elapsed.push(e.elapsed_ms);
        }
        if let Some(w) = &e.warning {
            *self.warnings.entry(w.clone()).or_default() += 1;
        }
        if e.result.is_hit() {
            self.hit_compile_time_ms += e.compile_time_ms;
            self.hit_elapsed_ms += e.elapsed_ms;
        } else if e.result == Outcome::Miss {
            self.miss_compile_time_ms += e.compile_time_ms;
            let name = e.crate_name.clone().unwrap_or_else(|| "?".into());
            let slowest = self.slowest.entry(name).or_insert((e.compile_time_ms, seq));
            if e.compile_time_ms.total_cmp(&slowest.0).is_gt() {
                *slowest = (e.compile_time_ms, seq);
            }
        }
        if let Some(r) = &e.passthrough_reason {
            let name = r.split(' ').next().unwrap_or(r).to_owned();
            *self.reasons.entry(name).or_default() += 1;
        }
        if e.crate_types.iter().any(|t| t == super::RUN_CRATE_TYPE) {
            let runs = self
                .build_script_runs
                .get_or_insert_with(RunFigures::default);
            match e.result {
                r if r.is_hit() => {
                    runs.hits += 1;
                    runs.time_saved_ms += e.compile_time_ms - e.elapsed_ms;
                }
                Outcome::Miss => runs.misses += 1,
                _ => runs.passthrough += 1,
            }
        }
        self.reflinked_bytes += e.reflinked_bytes;
        self.hardlinked_bytes += e.hardlinked_bytes;
        self.copied_bytes += e.copied_bytes;
        self.downloaded_bytes += e.downloaded_bytes;
        if e.warning.as_deref().is_some_and(|w| w.contains("remote")) {
            self.remote_errors += 1;
        }
    }

    /// Hits over cacheable invocations (hits + misses); 0 when there were none.
    pub(crate) fn hit_rate(&self) -> f64 {
        let hits = (self.local_hits + self.remote_hits) as f64;
        let cacheable = hits + self.misses as f64;
        if cacheable > 0.0 {
            hits / cacheable
        } else {
            0.0
        }
    }

    /// Compile time the hits avoided over compile time that was or would have been spent.
    pub(crate) fn weighted_hit_rate(&self) -> f64 {
        let total = self.hit_compile_time_ms + self.miss_compile_time_ms;
        if total > 0.0 {
            self.hit_compile_time_ms / total
        } else {
            0.0
        }
    }

    /// What the cache gave back: compile time avoided minus the time the hits took.
    pub(crate) fn time_saved_ms(&self) -> f64 {
        self.hit_compile_time_ms - self.hit_elapsed_ms
    }

    /// Passthrough reasons, most frequent first (ties by name).
    pub(crate) fn passthrough_reasons(&self) -> Vec<ReasonCount> {
        let mut reasons: Vec<_> = self
            .reasons
            .iter()
            .map(|(reason, &count)| ReasonCount {
                reason: reason.clone(),
                count,
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        reasons
    }

    /// The `n` slowest misses, one per crate (its slowest compile): a crate rebuilt five
    /// times is one finding. Equal times keep the order the log has them in.
    pub(crate) fn slowest_misses(&self, n: usize) -> Vec<SlowMiss> {
        let mut misses: Vec<_> = self.slowest.iter().collect();
        misses.sort_by(|(_, (a, i)), (_, (b, j))| b.total_cmp(a).then(i.cmp(j)));
        misses
            .into_iter()
            .take(n)
            .map(|(name, &(ms, _))| SlowMiss {
                crate_name: name.clone(),
                compile_time_ms: ms,
            })
            .collect()
    }

    /// p50, p90 and p99 of the local hits' wall times (what a hit costs); none without hits.
    pub(crate) fn local_hit_elapsed(&self) -> Option<Percentiles> {
        if self.local_hit_elapsed.is_empty() {
            return None;
        }
        let mut xs = self.local_hit_elapsed.clone();
        xs.sort_by(f64::total_cmp);
        // Between the two nearest ranks, as numpy does by default.
        let at = |p: f64| {
            let k = (xs.len() - 1) as f64 * p / 100.0;
            let (lo, hi) = (k.floor() as usize, k.ceil() as usize);
            xs[lo] + (xs[hi] - xs[lo]) * (k - lo as f64)
        };
        Some(Percentiles {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
        })
    }

    /// The `n` most frequent warnings, most frequent first (ties by text).
    pub(crate) fn warnings(&self, n: usize) -> Vec<WarningCount> {
        let mut warnings: Vec<_> = self
            .warnings
            .iter()
            .map(|(warning, &count)| WarningCount {
                warning: warning.clone(),
                count,
            })
            .collect();
        warnings.sort_by(|a, b| b.count.cmp(&a.count).then(a.warning.cmp(&b.warning)));
        warnings.truncate(n);
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SCHEMA;

    fn event(name: &str, result: Outcome, compile_ms: f64, elapsed_ms: f64) -> BuildEvent {
        BuildEvent {
            schema: SCHEMA,
            crate_name: Some(name.into()),
            result,
            compile_time_ms: compile_ms,
            elapsed_ms,
            ..BuildEvent::default()
        }
    }

    #[test]
    fn hit_percentiles_slowest_crates_and_warnings() {
        let mut s = Summary::default();
        assert_eq!(s.local_hit_elapsed(), None);
        for ms in [4.0, 1.0, 3.0, 2.0] {
            s.record(&event("a", Outcome::LocalHit, 10.0, ms));
        }
        s.record(&event("r", Outcome::RemoteHit, 10.0, 50.0));
        let p = s.local_hit_elapsed().expect("hits");
        assert_eq!(
            p.p50, 2.5,
            "between the two middle ranks; remote hits not counted"
        );
        assert!((p.p99 - 3.97).abs() < 1e-9, "{p:?}");
        for (name, ms) in [("b", 7.0), ("c", 9.0), ("b", 9.0), ("c", 1.0)] {
            let mut e = event(name, Outcome::Miss, ms, ms);
            e.warning = Some(format!("w{name}"));
            s.record(&e);
        }
        let slowest: Vec<_> = s
            .slowest_misses(5)
            .into_iter()
            .map(|m| (m.crate_name, m.compile_time_ms))
            .collect();
        assert_eq!(
            slowest,
            [("c".into(), 9.0), ("b".into(), 9.0)],
            "one per crate; equal times in log order"
        );
        let warnings: Vec<_> = s.warnings(1).into_iter().map(|w| w.warning).collect();
        assert_eq!(warnings, ["wb"]);
    }
}
