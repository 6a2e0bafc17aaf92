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

/// What to do with `-C incremental` (see docs/how-it-works.md, "Incremental compiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncrementalMode {
    /// Cache the invocation keyed as incremental; a miss runs rustc with the flag, so the
    /// crate being edited keeps its incremental reuse, and a hit leaves the session dir alone.
    #[default]
    Cache,
    /// Run such invocations uncached.
    Passthrough,
    /// Remove the flag and cache the invocation like any other (no incremental reuse).
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
            None | Some("") | Some("cache") => IncrementalMode::Cache,
            Some("passthrough") | Some("pass") => IncrementalMode::Passthrough,
            Some("strip") => IncrementalMode::Strip,
            Some(other) => {
                return Err(ConfigError::Value {
                    name: "KACHE_INCREMENTAL",
                    value: other.to_owned(),
                    message: "expected \"cache\", \"pass\" or \"strip\"".into(),
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

/// Parses `10G`, `512M`, `1.5GiB`, `4096` (bytes). Units are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 10G, 512M or 4096)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M, G or T)")),
    };
    if !number.is_finite() || number < 0.0 {
        return Err(format!("{text:?} is not a size"));
    }
    Ok((number * multiplier as f64) as u64)
}

/// Parses `30d`, `24h`, `15m`, `90s` into seconds.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30d, 24h or 15m)"))?;
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
    Ok(n * unit_secs)
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
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_secs("24h"), Ok(86_400));
        assert!(parse_duration_secs("soon").is_err());
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

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::load(&env_of(&[("KACHE_MAX_SIZE", "banana")])).is_err());
        assert!(Config::load(&env_of(&[("KACHE_INCREMENTAL", "maybe")])).is_err());
    }
}
