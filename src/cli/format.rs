//! Sizes, durations and percentages for people.

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub(crate) fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else if ms < 172_800_000.0 {
        format!("{:.1} h", ms / 3_600_000.0)
    } else {
        // From two days on, days: `stats --since 7d` says "7.0 d", not "168.0 h".
        format!("{:.1} d", ms / 86_400_000.0)
    }
}

/// How long ago something happened, from its age in seconds: `12 s ago`, `5 min ago`, ...
pub(crate) fn ago(secs: i64) -> String {
    match secs {
        i64::MIN..=1 => "just now".to_owned(),
        2..=119 => format!("{secs} s ago"),
        120..=7_199 => format!("{} min ago", secs / 60),
        7_200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// `s` cut to `width` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `1 entry`, `2 entries`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn percent(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", 100.0 * part / whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 << 30), "10.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(duration_ms(0.25), "250 µs");
        assert_eq!(duration_ms(12.34), "12.3 ms");
        assert_eq!(duration_ms(90_000.0), "1.5 min");
        assert_eq!(duration_ms(5_400_000.0), "1.5 h");
        assert_eq!(duration_ms(7.0 * 86_400_000.0), "7.0 d");
        assert_eq!(percent(1.0, 4.0), "25.0%");
        assert_eq!(percent(1.0, 0.0), "-");
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(45), "45 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(0, "entry", "entries"), "0 entries");
    }
}
