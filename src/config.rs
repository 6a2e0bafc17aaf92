//! Settings: environment variables over `$XDG_CONFIG_HOME/kache/config.toml` over defaults.
//!
//! Read once per process from an injectable environment, so tests need not touch the real one.
//! Must not create directories or open the store.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default store size limit: 10 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {name}={value:?}: {message}")]
    Value {
        name: &'static str,
        value: String,
        message: String,
    },
}

/// What to do with `-C incremental`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncrementalMode {
    /// Run such invocations uncached (rustc's incremental state is outside the key).
    #[default]
    Passthrough,
    /// Remove the flag and cache the invocation like any other.
    Strip,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub max_size: u64,
    pub log_filter: Option<String>,
    pub disabled: bool,
    pub incremental: IncrementalMode,
    /// Variables that proc-macros read behind rustc's back, added to every key.
    pub key_env_vars: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dir: Option<PathBuf>,
    max_size: Option<toml::Value>,
    log: Option<String>,
    disable: Option<bool>,
    incremental: Option<String>,
    key_env_vars: Option<Vec<String>>,
    /// Read by the remote module; accepted here so the file validates as a whole.
    #[allow(dead_code)]
    remote: Option<toml::Table>,
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads with `env` standing in for the process environment.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match config_file_path(env) {
            Some(path) if path.is_file() => read_file(&path)?,
            _ => FileConfig::default(),
        };
        let dir = env("KACHE_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or(file.dir)
            .unwrap_or_else(|| default_dir(env));
        let max_size = match env("KACHE_MAX_SIZE").filter(|s| !s.is_empty()) {
            Some(v) => parse_size(&v).map_err(|message| ConfigError::Value {
                name: "KACHE_MAX_SIZE",
                value: v,
                message,
            })?,
            None => match file.max_size {
                Some(toml::Value::Integer(n)) if n >= 0 => n as u64,
                Some(toml::Value::String(s)) => {
                    parse_size(&s).map_err(|message| ConfigError::Value {
                        name: "max_size",
                        value: s,
                        message,
                    })?
                }
                Some(other) => {
                    return Err(ConfigError::Value {
                        name: "max_size",
                        value: other.to_string(),
                        message: "expected a size such as \"10G\"".into(),
                    });
                }
                None => DEFAULT_MAX_SIZE,
            },
        };
        let incremental_text = env("KACHE_INCREMENTAL").or(file.incremental);
        let incremental = match incremental_text.as_deref() {
            None | Some("") | Some("passthrough") | Some("pass") => IncrementalMode::Passthrough,
            Some("strip") => IncrementalMode::Strip,
            Some(other) => {
                return Err(ConfigError::Value {
                    name: "KACHE_INCREMENTAL",
                    value: other.to_owned(),
                    message: "expected \"passthrough\" or \"strip\"".into(),
                });
            }
        };
        let key_env_vars = match env("KACHE_KEY_ENV_VARS") {
            Some(list) => list
                .split([',', ' ', ':'])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.key_env_vars.unwrap_or_default(),
        };
        let disabled = match env("KACHE_DISABLE") {
            Some(v) => !matches!(v.as_str(), "" | "0" | "false" | "no"),
            None => file.disable.unwrap_or(false),
        };
        Ok(Config {
            dir,
            max_size,
            log_filter: env("KACHE_LOG").filter(|s| !s.is_empty()).or(file.log),
            disabled,
            incremental,
            key_env_vars,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// `$KACHE_CONFIG`, else `$XDG_CONFIG_HOME/kache/config.toml`, else `~/.config/kache/config.toml`.
pub fn config_file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("KACHE_CONFIG").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("kache").join("config.toml"))
}

fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kache")
}

/// The largest size accepted: what the index can hold (SQLite integers are signed 64-bit).
pub const MAX_SIZE_BYTES: u64 = i64::MAX as u64;

/// The longest duration accepted: 100 years. Longer is a typo, and it keeps every later
/// computation (`now - age`, seconds to milliseconds) far from overflowing.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// `number × unit`, exactly for whole numbers, `None` when the product exceeds `max`.
/// `number` is digits with at most one `.`; the caller has checked it is not empty.
fn scale(number: &str, unit: u64, max: u64) -> Option<u64> {
    let product = match number.parse::<u64>() {
        Ok(whole) => whole.checked_mul(unit)?,
        // A fraction such as `1.5`: f64 is exact enough for a size or a duration, and the
        // comparison below happens before the cast, which would otherwise saturate.
        Err(_) => {
            let v = number.parse::<f64>().ok()? * unit as f64;
            if !v.is_finite() || v > max as f64 {
                return None;
            }
            v as u64
        }
    };
    (product <= max).then_some(product)
}

/// Splits `12.5G` into `("12.5", "G")`; `Err` unless the number is digits with at most one dot.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    (digits > 0 && number.matches('.').count() <= 1).then_some((number, unit.trim()))
}

/// Parses `10G`, `512M`, `1.5GiB`, `4096` (bytes). Units are powers of 1024. Sizes above
/// [`MAX_SIZE_BYTES`] are errors, never a wrapped or saturated number.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("{text:?} is not a size (try 10G, 512M or 4096)"))?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M, G or T)")),
    };
    scale(number, multiplier, MAX_SIZE_BYTES)
        .ok_or_else(|| format!("{text:?} is out of range (at most 8388607T)"))
}

/// Parses `30d`, `1.5h`, `15m`, `90s`, `2w` (a bare number is days) into seconds. Durations
/// above [`MAX_DURATION_SECS`] are errors: an overflow here once made `gc --max-age` evict
/// everything.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("{text:?} is not a duration (try 30d, 1.5h or 15m)"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown duration unit in {text:?} (use s, m, h, d or w)"
            ));
        }
    };
    scale(number, unit_secs, MAX_DURATION_SECS)
        .ok_or_else(|| format!("{text:?} is out of range (at most 36500d)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("banana").is_err());
        assert!(parse_size("10Q").is_err());
        assert!(parse_size(".").is_err());
        assert_eq!(parse_size("0.5K"), Ok(512));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_secs("24h"), Ok(86_400));
        assert_eq!(parse_duration_secs("1.5h"), Ok(5400));
        assert_eq!(parse_duration_secs("7"), Ok(7 * 86_400));
        assert!(parse_duration_secs("soon").is_err());
        assert!(parse_duration_secs("h").is_err());
        assert!(parse_duration_secs("1.2.3h").is_err());
        assert!(parse_duration_secs("-1d").is_err());
    }

    /// Issue 9 item 4: `999999999999999d` wrapped around to a few seconds and `gc --max-age`
    /// evicted the whole store. Out of range is an error, at the exact limit and beyond.
    #[test]
    fn out_of_range_durations_and_sizes_are_errors() {
        assert_eq!(parse_duration_secs("36500d"), Ok(MAX_DURATION_SECS));
        assert_eq!(parse_duration_secs("3153600000s"), Ok(MAX_DURATION_SECS));
        for text in [
            "36501d",
            "3153600001s",
            "36500.1d",
            "999999999999999d",
            "18446744073709551616s",
            "99999999999999999999999999999w",
        ] {
            let err = parse_duration_secs(text).expect_err(text);
            assert!(err.contains("out of range"), "{text}: {err}");
        }
        assert_eq!(parse_size("8388607T"), Ok(8_388_607 << 40));
        assert_eq!(parse_size("9223372036854775807"), Ok(MAX_SIZE_BYTES));
        for text in [
            "8388608T",
            "9223372036854775808",
            "18446744073709551616",
            "99999999999999999999T",
            "8388608.5T",
        ] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains("out of range"), "{text}: {err}");
        }
    }

    #[test]
    fn environment_wins_over_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "dir = \"/from/file\"\nmax_size = \"1G\"\nkey_env_vars = [\"A\"]\n",
        )
        .expect("write");
        let path = file.to_string_lossy().into_owned();
        let c = Config::load(&env_of(&[("KACHE_CONFIG", &path)])).expect("load");
        assert_eq!(c.dir, PathBuf::from("/from/file"));
        assert_eq!(c.max_size, 1 << 30);
        assert_eq!(c.key_env_vars, vec!["A"]);
        let c = Config::load(&env_of(&[
            ("KACHE_CONFIG", &path),
            ("KACHE_DIR", "/from/env"),
            ("KACHE_MAX_SIZE", "2G"),
            ("KACHE_KEY_ENV_VARS", "B,C"),
            ("KACHE_INCREMENTAL", "strip"),
        ]))
        .expect("load");
        assert_eq!(c.dir, PathBuf::from("/from/env"));
        assert_eq!(c.max_size, 2 << 30);
        assert_eq!(c.key_env_vars, vec!["B", "C"]);
        assert_eq!(c.incremental, IncrementalMode::Strip);
    }

    #[test]
    fn defaults_follow_xdg() {
        let c = Config::load(&env_of(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/h")])).expect("load");
        assert_eq!(c.dir, PathBuf::from("/xdg/kache"));
        assert_eq!(c.max_size, DEFAULT_MAX_SIZE);
        assert!(!c.disabled);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::load(&env_of(&[("KACHE_MAX_SIZE", "banana")])).is_err());
        assert!(Config::load(&env_of(&[("KACHE_INCREMENTAL", "maybe")])).is_err());
    }
}
