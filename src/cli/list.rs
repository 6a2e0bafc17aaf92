//! `kache list [crate]`: the stored entries, one line each.

use std::process::ExitCode;

use anyhow::Context;

use super::format::{self, truncate};
use crate::config::Config;
use crate::store::catalog::EntrySummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SortBy {
    /// By crate name, then version
    Name,
    /// Largest first
    Size,
    /// Most used first
    Hits,
    /// Most recently used first
    Age,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only this crate's entries (`serde_json`; `serde-json` works too)
    #[arg(value_name = "CRATE")]
    crate_name: Option<String>,
    /// Order of the list
    #[arg(long, value_enum, default_value_t = SortBy::Name)]
    sort: SortBy,
    /// Print the entries as JSON
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Config, args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut entries = if let Some(store) = super::open_existing(config)? {
        // Hits are recorded in the event log; fold them in so counts and ages are current.
        if let Some(events) = super::logged_events(config) {
            store
                .fold_usage(&super::uses(&events))
                .context("folding usage")?;
        }
        let filter = args.crate_name.as_ref().map(|c| c.replace('-', "_"));
        store
            .entry_summaries(filter.as_deref())
            .context("listing entries")?
    } else {
        Vec::new()
    };
    sort(&mut entries, args.sort);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", render(&entries, crate::store::now_secs()));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn sort(entries: &mut [EntrySummary], by: SortBy) {
    match by {
        SortBy::Name => entries.sort_by(|a, b| {
            (&a.crate_name, &a.crate_version, a.created).cmp(&(
                &b.crate_name,
                &b.crate_version,
                b.created,
            ))
        }),
        SortBy::Size => entries.sort_by_key(|e| std::cmp::Reverse(e.size)),
        SortBy::Hits => entries.sort_by_key(|e| std::cmp::Reverse(e.hits)),
        SortBy::Age => entries.sort_by_key(|e| std::cmp::Reverse(e.last_used)),
    }
}

/// A table at most 80 columns wide.
pub(crate) fn render(entries: &[EntrySummary], now: i64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    if entries.is_empty() {
        o.push_str("no entries\n");
        return o;
    }
    // The key column tells apart variants (features, profile, flags) of one crate, which
    // otherwise print as identical rows; `kache explain` compares them.
    let _ = writeln!(
        o,
        "{:<21} {:<8} {:<10} {:>10} {:>6} {:>10} {:>8}",
        "crate", "key", "type", "size", "hits", "used", "compile"
    );
    for e in entries {
        let name = match &e.crate_version {
            Some(v) => format!("{} {v}", e.crate_name),
            None => e.crate_name.clone(),
        };
        let types = if e.crate_types.is_empty() {
            "test".to_owned()
        } else {
            e.crate_types.join(",")
        };
        let _ = writeln!(
            o,
            "{:<21} {:<8} {:<10} {:>10} {:>6} {:>10} {:>8}",
            truncate(&name, 21),
            e.key.get(..8).unwrap_or(&e.key),
            truncate(&types, 10),
            format::bytes(e.size),
            e.hits,
            format::ago(now - e.last_used),
            format::duration_ms(e.compile_ms)
        );
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let _ = writeln!(
        o,
        "{}, {} (before sharing identical outputs)",
        format::count(entries.len() as u64, "entry", "entries"),
        format::bytes(total)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: u64, hits: u64, last_used: i64) -> EntrySummary {
        EntrySummary {
            key: format!("k-{name}"),
            crate_name: name.into(),
            crate_version: Some("1.0.0".into()),
            crate_types: vec!["lib".into()],
            size,
            compile_ms: 1234.0,
            created: 0,
            last_used,
            hits,
        }
    }

    #[test]
    fn sorting() {
        let mut v = vec![e("b", 10, 5, 100), e("a", 30, 1, 300), e("c", 20, 9, 200)];
        let names = |v: &[EntrySummary]| -> Vec<String> {
            v.iter().map(|e| e.crate_name.clone()).collect()
        };
        sort(&mut v, SortBy::Name);
        assert_eq!(names(&v), ["a", "b", "c"]);
        sort(&mut v, SortBy::Size);
        assert_eq!(names(&v), ["a", "c", "b"]);
        sort(&mut v, SortBy::Hits);
        assert_eq!(names(&v), ["c", "b", "a"]);
        sort(&mut v, SortBy::Age);
        assert_eq!(names(&v), ["a", "c", "b"]);
    }

    #[test]
    fn table_fits_80_columns() {
        let text = render(
            &[e(
                "a_very_long_crate_name_that_goes_on_and_on",
                u64::MAX,
                123_456,
                0,
            )],
            10_000_000,
        );
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        assert!(text.contains("1 entry,"), "{text}");
    }

    /// Issue 10 item 11: two variants of one crate used to print as identical rows.
    #[test]
    fn variants_of_a_crate_are_told_apart() {
        let mut a = e("serde", 10, 1, 0);
        let mut b = e("serde", 10, 1, 0);
        a.key = "0123456789abcdef".into();
        b.key = "fedcba9876543210".into();
        let text = render(&[a, b], 0);
        let rows: Vec<_> = text.lines().skip(1).take(2).collect();
        assert_ne!(rows[0], rows[1], "{text}");
        assert!(
            rows[0].contains("01234567") && rows[1].contains("fedcba98"),
            "{text}"
        );
    }
}
