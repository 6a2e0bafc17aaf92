//! Settings: environment variables over `$XDG_CONFIG_HOME/kache/config.toml` over defaults.
//!
//! The one settings loader: [`Sources`] reads the config file once and answers every lookup
//! (the file's value, then the environment's, an empty variable counting as unset), with one
//! set of parsers (bool, size, duration) and errors that name where the bad value came from.
//! The remote's settings ([`crate::remote::RemoteConfig`]) are read through it too.
//!
//! Read once per process from an injectable environment, so tests need not touch the real one.
//! Must not create directories or open the store.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::remote::RemoteConfig;

/// Default store size limit: 10 GiB.
pub(crate) const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {}: {message}", origin.with_value(value))]
    Value {
        origin: Origin,
        value: String,
        message: String,
    },
    /// A problem with settings taken together (half an AWS key pair, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Where a setting's value came from: named in every error, shown by `kache config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    Env(String),
    /// `key` is dotted for tables: `remote.url`.
    File {
        path: PathBuf,
        key: String,
    },
}

impl Origin {
    /// `KACHE_MAX_SIZE="x"`, or `max_size = "x" in /path/config.toml`.
    fn with_value(&self, value: &str) -> String {
        match self {
            Origin::Default => format!("default {value:?}"),
            Origin::Env(name) => format!("{name}={value:?}"),
            Origin::File { path, key } => format!("{key} = {value:?} in {}", path.display()),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Env(name) => write!(f, "environment ({name})"),
            Origin::File { path, key } => write!(f, "{} ({key})", path.display()),
        }
    }
}

/// A setting's text and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    /// Parses the text, naming the origin on failure.
    pub(crate) fn parse<T>(
        &self,
        parser: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parser(&self.value).map_err(|message| self.error(message))
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            origin: self.origin.clone(),
            value: self.value.clone(),
            message: message.into(),
        }
    }
}

/// Keys the config file may hold; anything else is an error (a typo would otherwise be
/// silently ignored).
const FILE_KEYS: &[&str] = &[
    "dir",
    "max_size",
    "log",
    "disable",
    "incremental",
    "key_env_vars",
    "remote",
];
/// Keys of the file's `[remote]` table (credentials stay in the environment or AWS's files).
pub(crate) const REMOTE_FILE_KEYS: &[&str] = &[
    "url",
    "endpoint",
    "region",
    "path_style",
    "read_only",
    "budget_ms",
    "breaker_failures",
    "breaker_cooldown_secs",
    "miss_ttl_secs",
    "no_credentials",
];

/// The environment and the config file, read once.
pub(crate) struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<(PathBuf, toml::Table)>,
}

impl<'a> Sources<'a> {
    /// Reads the config file (`KACHE_CONFIG`, else the default path). A missing file at the
    /// default path is fine; a `KACHE_CONFIG` that names nothing, or a directory, is an error,
    /// as is an unreadable or invalid file or an unknown key in it.
    pub(crate) fn load(env: &'a dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let named = env("KACHE_CONFIG").is_some_and(|s| !s.is_empty());
        let file = match config_file_path(env) {
            // `/dev/null` is fine: it reads as an empty file (the tests use it for "none").
            Some(path) if path.exists() && !path.is_dir() => Some(read_file(&path)?),
            Some(path) if named || path.exists() => {
                let message = if path.exists() {
                    "it is a directory"
                } else {
                    "no such file (named by KACHE_CONFIG)"
                };
                return Err(ConfigError::Read {
                    path,
                    message: message.into(),
                });
            }
            _ => None,
        };
        Ok(Sources { env, file })
    }

    /// The environment alone, no file.
    pub(crate) fn env_only(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Sources { env, file: None }
    }

    /// The config file read, if any.
    pub(crate) fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// A non-empty environment variable (empty counts as unset).
    pub(crate) fn var(&self, name: &str) -> Option<Setting> {
        (self.env)(name)
            .filter(|v| !v.trim().is_empty())
            .map(|value| Setting {
                value,
                origin: Origin::Env(name.to_owned()),
            })
    }

    /// The first of `vars` that is set and not empty, else the file's `key` (dotted for a
    /// table: `remote.url`; `""` for none). File values are strings, numbers or booleans.
    pub(crate) fn get(&self, vars: &[&str], key: &str) -> Result<Option<Setting>, ConfigError> {
        if let Some(s) = vars.iter().find_map(|v| self.var(v)) {
            return Ok(Some(s));
        }
        let Some((path, value)) = self.file_value(key) else {
            return Ok(None);
        };
        let origin = Origin::File {
            path: path.to_owned(),
            key: key.to_owned(),
        };
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::Value {
                    origin,
                    value: other.to_string(),
                    message: "expected a string, a number or a boolean".into(),
                });
            }
        };
        Ok(Some(Setting { value, origin }))
    }

    /// [`Sources::get`], parsed.
    pub(crate) fn parse<T>(
        &self,
        vars: &[&str],
        key: &str,
        parser: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(vars, key)?.map(|s| s.parse(parser)).transpose()
    }

    fn file_value(&self, key: &str) -> Option<(&Path, &toml::Value)> {
        let (path, table) = self.file.as_ref()?;
        let mut parts = key.split('.');
        let mut value = table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some((path.as_path(), value))
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case: the one boolean syntax.
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1/0, true/false, yes/no or on/off".into()),
    }
}

/// A whole number of at least `min`.
pub(crate) fn parse_whole(text: &str, min: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("expected a whole number >= {min}")),
    }
}

/// What to do with `-C incremental` (see docs/how-it-works.md, "Incremental compiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum IncrementalMode {
    /// Cache the invocation keyed as incremental; a miss runs rustc with the flag, so the
    /// crate being edited keeps its incremental reuse, and a hit leaves the session dir alone.
    #[default]
    Cache,
    /// Run such invocations uncached.
    Passthrough,
    /// Remove the flag and cache the invocation like any other (no incremental reuse).
    Strip,
}

fn parse_incremental(text: &str) -> Result<IncrementalMode, String> {
    match text.trim() {
        "cache" => Ok(IncrementalMode::Cache),
        "passthrough" | "pass" => Ok(IncrementalMode::Passthrough),
        "strip" => Ok(IncrementalMode::Strip),
        _ => Err("expected \"cache\", \"pass\" or \"strip\"".into()),
    }
}

/// The cache directory must be absolute: cargo runs the wrapper in each crate's directory,
/// so a relative one would be a different cache per crate.
fn parse_dir(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(
            "the cache directory must be an absolute path (cargo runs kache in each crate's \
             directory, so a relative one would split the cache)"
                .into(),
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub dir: PathBuf,
    pub max_size: u64,
    pub log_filter: Option<String>,
    pub disabled: bool,
    pub incremental: IncrementalMode,
    /// Variables that proc-macros read behind rustc's back, added to every key.
    pub key_env_vars: Vec<String>,
    /// The remote's settings (`None`: no remote). Kept apart so that a bad remote setting
    /// only costs the remote: builds go on with the local cache, commands other than `sync`
    /// still work.
    pub remote: Result<Option<RemoteConfig>, ConfigError>,
}

impl Config {
    /// Loads from the process environment.
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads with `env` standing in for the process environment.
    pub(crate) fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_sources(&Sources::load(env)?)
    }

    pub(crate) fn from_sources(s: &Sources) -> Result<Self, ConfigError> {
        let dir = match s.parse(&["KACHE_DIR"], "dir", parse_dir)? {
            Some(dir) => dir,
            None => default_dir(s.env),
        };
        let max_size = s
            .parse(&["KACHE_MAX_SIZE"], "max_size", parse_size)?
            .unwrap_or(DEFAULT_MAX_SIZE);
        let incremental = s
            .parse(&["KACHE_INCREMENTAL"], "incremental", parse_incremental)?
            .unwrap_or_default();
        // A set variable replaces the file's list even when empty (documented): it is the
        // way to clear the list for one build.
        let key_env_vars = match (s.env)("KACHE_KEY_ENV_VARS") {
            Some(list) => list
                .split([',', ' ', ':'])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file_list(s, "key_env_vars")?,
        };
        let disabled = s
            .parse(&["KACHE_DISABLE"], "disable", parse_bool)?
            .unwrap_or(false);
        let log_filter = s.get(&["KACHE_LOG"], "log")?.map(|l| l.value);
        Ok(Config {
            dir,
            max_size,
            log_filter,
            disabled,
            incremental,
            key_env_vars,
            remote: RemoteConfig::load(s),
        })
    }
}

/// The file's array of strings at `key`, or empty.
fn file_list(s: &Sources, key: &str) -> Result<Vec<String>, ConfigError> {
    let Some((path, value)) = s.file_value(key) else {
        return Ok(Vec::new());
    };
    let bad = || ConfigError::Value {
        origin: Origin::File {
            path: path.to_owned(),
            key: key.to_owned(),
        },
        value: value.to_string(),
        message: "expected an array of names".into(),
    };
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
        .collect()
}

fn read_file(path: &Path) -> Result<(PathBuf, toml::Table), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| parse_error(e.message().into()))?;
    for (key, value) in &table {
        if !FILE_KEYS.contains(&key.as_str()) {
            return Err(parse_error(format!("unknown key `{key}`")));
        }
        if key == "remote" {
            let remote = value
                .as_table()
                .ok_or_else(|| parse_error("`remote` must be a table ([remote])".into()))?;
            if let Some(k) = remote
                .keys()
                .find(|k| !REMOTE_FILE_KEYS.contains(&k.as_str()))
            {
                return Err(parse_error(format!("unknown key `remote.{k}`")));
            }
        }
    }
    Ok((path.to_owned(), table))
}

/// `$KACHE_CONFIG`, else `$XDG_CONFIG_HOME/kache/config.toml`, else `~/.config/kache/config.toml`.
pub(crate) fn config_file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("KACHE_CONFIG").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("kache").join("config.toml"))
}

/// `$XDG_CACHE_HOME/kache`, else `$HOME/.cache/kache`, else `<home>/.cache/kache` with the
/// home dir from the password database. Never a shared temporary dir (anyone could have made
/// it first). Empty when no home is known at all: the store refuses an empty dir, so kache
/// is then disabled for the run with one warning.
fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .or_else(passwd_home)
                .map(|h| h.join(".cache"))
        })
        .map(|base| base.join("kache"))
        .unwrap_or_default()
}

/// The effective user's home dir from the password database (`getpwuid_r`).
fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives every use of `pwd`'s
    // pointers, which point into it.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: `pw_dir` is a NUL-terminated string inside `buf`, still alive here.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The largest size accepted: what the index can hold (SQLite integers are signed 64-bit).
pub(crate) const MAX_SIZE_BYTES: u64 = i64::MAX as u64;

/// The longest duration accepted: 100 years. Longer is a typo, and it keeps every later
/// computation (`now - age`, seconds to milliseconds) far from overflowing.
pub(crate) const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

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
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
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
pub(crate) fn parse_duration_secs(text: &str) -> Result<u64, String> {
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
    fn the_default_dir_is_never_a_temporary_one() {
        let c = Config::load(&env_of(&[("HOME", "/h")])).expect("load");
        assert_eq!(c.dir, PathBuf::from("/h/.cache/kache"));
        // Neither XDG_CACHE_HOME nor HOME: the password database's home, not $TMPDIR.
        let c = Config::load(&env_of(&[("TMPDIR", "/shared-tmp")])).expect("load");
        assert!(
            !c.dir.starts_with("/shared-tmp") && !c.dir.starts_with(std::env::temp_dir()),
            "{}",
            c.dir.display()
        );
        assert!(
            c.dir.as_os_str().is_empty() || c.dir.ends_with(".cache/kache"),
            "{}",
            c.dir.display()
        );
    }

    #[test]
    fn defaults_follow_xdg() {
        let c = Config::load(&env_of(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/h")])).expect("load");
        assert_eq!(c.dir, PathBuf::from("/xdg/kache"));
        assert_eq!(c.max_size, DEFAULT_MAX_SIZE);
        assert!(!c.disabled);
        assert_eq!(c.incremental, IncrementalMode::Cache);
        let pass = Config::load(&env_of(&[("KACHE_INCREMENTAL", "pass")])).expect("load");
        assert_eq!(pass.incremental, IncrementalMode::Passthrough);
    }

    /// Issue 10 item 2: one loader, one set of parsers, errors naming their source.
    #[test]
    fn one_loader_one_set_of_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        let path = file.to_string_lossy().into_owned();
        let write = |text: &str| std::fs::write(&file, text).expect("write");

        // Booleans: the same words everywhere (`off` used to disable kache).
        for (value, disabled) in [("off", false), ("0", false), ("on", true), ("YES", true)] {
            let c = Config::load(&env_of(&[("KACHE_DISABLE", value)])).expect("load");
            assert_eq!(c.disabled, disabled, "KACHE_DISABLE={value}");
        }
        let err = Config::load(&env_of(&[("KACHE_DISABLE", "maybe")])).expect_err("maybe");
        assert!(err.to_string().contains("KACHE_DISABLE=\"maybe\""), "{err}");

        // An empty variable counts as unset: the file's value stands.
        write("dir = \"/from/file\"\nincremental = \"strip\"\ndisable = true\n");
        let c = Config::load(&env_of(&[
            ("KACHE_CONFIG", &path),
            ("KACHE_DIR", ""),
            ("KACHE_INCREMENTAL", ""),
            ("KACHE_DISABLE", ""),
        ]))
        .expect("load");
        assert_eq!(c.dir, PathBuf::from("/from/file"));
        assert_eq!(c.incremental, IncrementalMode::Strip);
        assert!(c.disabled);

        // A bad file value is reported under the file's key and path, not a variable's name.
        write("max_size = \"banana\"\n");
        let err = Config::load(&env_of(&[("KACHE_CONFIG", &path)])).expect_err("banana");
        let text = err.to_string();
        assert!(
            text.contains("max_size = \"banana\" in ") && text.contains(&path),
            "{text}"
        );
        assert!(!text.contains("KACHE_MAX_SIZE"), "{text}");
        write("incremental = \"maybe\"\n");
        let err = Config::load(&env_of(&[("KACHE_CONFIG", &path)])).expect_err("maybe");
        assert!(err.to_string().contains("incremental = \"maybe\""), "{err}");

        // KACHE_CONFIG naming nothing, or a directory, is an error; so is an unknown key.
        let missing = dir
            .path()
            .join("missing.toml")
            .to_string_lossy()
            .into_owned();
        assert!(Config::load(&env_of(&[("KACHE_CONFIG", &missing)])).is_err());
        let a_dir = dir.path().to_string_lossy().into_owned();
        assert!(Config::load(&env_of(&[("KACHE_CONFIG", &a_dir)])).is_err());
        write("[remote]\nbucket = \"typo\"\n");
        let err = Config::load(&env_of(&[("KACHE_CONFIG", &path)])).expect_err("unknown");
        assert!(err.to_string().contains("remote.bucket"), "{err}");

        // The file's [remote] table is read, and the environment wins over it.
        write("[remote]\nurl = \"s3://team-cache/ci\"\nread_only = true\nbudget_ms = 500\n");
        let base = [
            ("KACHE_CONFIG", path.as_str()),
            ("KACHE_S3_NO_CREDENTIALS", "1"),
        ];
        let c = Config::load(&env_of(&base)).expect("load");
        let remote = c.remote.expect("remote settings").expect("a remote");
        assert_eq!(
            (remote.bucket.as_str(), remote.prefix.as_str()),
            ("team-cache", "ci")
        );
        assert!(remote.read_only);
        assert_eq!(remote.budget, std::time::Duration::from_millis(500));
        let mut env = base.to_vec();
        env.push(("KACHE_REMOTE_READONLY", "off"));
        let c = Config::load(&env_of(&env)).expect("load");
        assert!(!c.remote.expect("ok").expect("a remote").read_only);
        write("[remote]\nurl = \"s3://team-cache\"\nbudget_ms = 0\n");
        let err = Config::load(&env_of(&base))
            .expect("load")
            .remote
            .expect_err("0");
        assert!(
            err.to_string().contains("remote.budget_ms = \"0\" in "),
            "{err}"
        );
    }

    /// Issue 10 item 9: a relative cache dir would be a different cache in every crate's
    /// directory (cargo runs the wrapper there), so it is refused, from either source.
    #[test]
    fn a_relative_cache_dir_is_refused() {
        let err = Config::load(&env_of(&[("KACHE_DIR", "cache")])).expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "dir = \"./cache\"\n").expect("write");
        let path = file.to_string_lossy().into_owned();
        assert!(Config::load(&env_of(&[("KACHE_CONFIG", &path)])).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::load(&env_of(&[("KACHE_MAX_SIZE", "banana")])).is_err());
        assert!(Config::load(&env_of(&[("KACHE_INCREMENTAL", "maybe")])).is_err());
    }
}
