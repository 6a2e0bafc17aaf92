//! Sharing the cache through object storage (S3 first).
//!
//! Owns the [`RemoteStore`] trait and its [`RemoteError`], the remote settings
//! ([`RemoteConfig`], read through the settings loader in [`crate::config`]), the object layout under
//! `<prefix>/v1/`, and through its submodules the S3 client ([`s3`]), the one-file entry
//! format ([`bundle`]), the circuit breaker and miss cache ([`breaker`]), the failure policy
//! that combines them with a store ([`guard`]) and, in unit tests only, an in-memory store
//! (`memory`).
//!
//! Must not know about rustc, keys' meaning or the local store: it moves opaque bytes under
//! names it is given. Nothing here may panic on anything from outside (environment, server
//! answers, bundle bytes), and nothing here may print or log a credential.
//!
//! Object layout (see `docs/remote.md`), relative to `s3://<bucket>/<prefix>/`:
//!
//! ```text
//! v1/entries/<first 2 hex of key>/<key>.tar.zst                   one bundle per cache entry
//! v1/candidates/<first 2 hex of inv key>/<inv key>/<entry key>.json
//!                                        one candidate (entry + manifest) per object
//! v1/manifests/<first 2 hex of key>/<key>.json    older writers' candidates, read only
//! ```

pub mod breaker;
pub mod bundle;
pub mod guard;
#[cfg(test)]
mod memory;
pub mod s3;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Sources, parse_bool, parse_whole};

/// A place to share cache objects. `key` is an object name relative to the store's root,
/// as made by [`entry_object`] or [`manifest_object`]; implementations add their own prefix.
///
/// Calls block: the wrapper is a short-lived synchronous process, and every call is bounded
/// by the implementation's time budget.
pub trait RemoteStore: Send + Sync {
    /// The object's bytes, or `None` when the remote definitely does not have it.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    /// Stores `body` under `key`, replacing any previous object (objects are
    /// content-addressed, so a replacement carries the same content).
    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError>;
    /// Whether the object is there, without downloading it.
    fn exists(&self, key: &str) -> Result<bool, RemoteError>;
    /// Names of the objects whose name starts with `prefix`, as [`RemoteStore::get`] takes
    /// them.
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError>;
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The request ran out of time (the rest of the process's budget).
    #[error("remote request timed out")]
    Timeout,
    /// The process's time budget was already spent, so no request was made.
    #[error("remote time budget spent; request not attempted")]
    BudgetSpent,
    /// Could not talk to the remote at all (refused, reset, DNS, TLS, ...).
    #[error("remote unavailable: {0}")]
    Unavailable(String),
    /// The remote answered with a status we do not treat as success or a miss.
    #[error("remote answered HTTP {status}")]
    Http { status: u16 },
    /// The settings are unusable; retrying will not help.
    #[error("remote configuration: {0}")]
    Config(String),
    /// A write was asked of a read-only remote.
    #[error("remote is read-only")]
    ReadOnly,
    /// The object is larger than the configured bound; it was not fully downloaded.
    #[error("remote object exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// The circuit breaker is open: recent calls failed, so this one was not attempted.
    #[error("remote skipped: recent failures, cooling down")]
    BreakerOpen,
    /// The object name is not one the layout produces.
    #[error("invalid remote object key {0:?}")]
    InvalidKey(String),
}

impl RemoteError {
    /// Whether this error says something about the remote's health, so the circuit breaker
    /// should count it. Mistakes on our side (configuration, read-only, oversized object,
    /// bad key) and a budget spent by earlier, successful calls say nothing about the remote
    /// and would only hide it from healthy builds.
    pub fn is_remote_failure(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout | RemoteError::Unavailable(_) | RemoteError::Http { .. }
        )
    }
}

/// The layout generation; bump it when the bundle or manifest format changes incompatibly,
/// so old and new kache versions sharing a bucket never read each other's objects.
pub(crate) const LAYOUT_VERSION: &str = "v1";

/// Object name of the bundle for entry `key` (lowercase hex).
pub fn entry_object(key: &str) -> Result<String, RemoteError> {
    let fan = fan_out(key)?;
    Ok(format!("{LAYOUT_VERSION}/entries/{fan}/{key}.tar.zst"))
}

/// Object name of the direct-mode manifest for invocation key `key` (lowercase hex).
pub fn manifest_object(key: &str) -> Result<String, RemoteError> {
    let fan = fan_out(key)?;
    Ok(format!("{LAYOUT_VERSION}/manifests/{fan}/{key}.json"))
}

/// Prefix under which the candidates of invocation key `key` are listed.
pub(crate) fn candidate_prefix(key: &str) -> Result<String, RemoteError> {
    let fan = fan_out(key)?;
    Ok(format!("{LAYOUT_VERSION}/candidates/{fan}/{key}/"))
}

/// Object name of one candidate: entry `entry` reached from invocation key `key`. Each is
/// written once by its uploader and never rewritten, so concurrent uploaders of one
/// invocation key cannot drop each other's candidates (as a read-modify-write of one shared
/// object would).
pub fn candidate_object(key: &str, entry: &str) -> Result<String, RemoteError> {
    fan_out(entry)?;
    Ok(format!("{}{entry}.json", candidate_prefix(key)?))
}

/// The two-hex-digit directory for `key`. Keys are restricted to lowercase hex so that no
/// key can step outside its directory or collide with another spelling of itself.
fn fan_out(key: &str) -> Result<&str, RemoteError> {
    let ok = (2..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match key.get(..2) {
        Some(fan) if ok => Ok(fan),
        _ => Err(RemoteError::InvalidKey(key.to_string())),
    }
}

/// Default per-process remote time budget.
pub(crate) const DEFAULT_BUDGET: Duration = Duration::from_millis(2000);
/// Default bound on one downloaded object.
pub(crate) const DEFAULT_MAX_OBJECT_BYTES: u64 = 1 << 30;
/// Default consecutive failures that open the circuit breaker.
pub(crate) const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// Default time the breaker stays open.
pub(crate) const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(120);
/// Default lifetime of a remembered remote miss.
pub(crate) const DEFAULT_MISS_TTL: Duration = Duration::from_secs(600);

/// Where the S3 credentials come from. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// From `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// A profile of an AWS shared credentials file, read when the client is built.
    Profile { name: String, file: PathBuf },
    /// Unsigned requests, for a publicly readable bucket.
    Anonymous,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Static {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Static")
                .field("access_key_id", &redact_key_id(access_key_id))
                .field("secret_access_key", &"<redacted>")
                .field(
                    "session_token",
                    &session_token.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
            Credentials::Profile { name, file } => f
                .debug_struct("Profile")
                .field("name", name)
                .field("file", file)
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Shows only the last four characters of an access key id, as the AWS CLI does: enough to
/// tell which key was used, too little to matter.
pub(crate) fn redact_key_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if id.chars().count() > 8 {
        format!("****{tail}")
    } else {
        "****".to_string()
    }
}

/// Remote settings. Built by [`RemoteConfig::load`]; `Debug` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// `scheme://host[:port]` of an S3-compatible server; `None` means AWS S3.
    pub endpoint: Option<String>,
    pub region: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`.
    pub path_style: bool,
    pub read_only: bool,
    /// Wall time all remote calls of one process may spend together.
    pub budget: Duration,
    pub max_object_bytes: u64,
    pub credentials: Credentials,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub miss_ttl: Duration,
}

impl RemoteConfig {
    /// Reads the settings with `env` standing in for the environment and no config file.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        Self::load(&Sources::env_only(env))
    }

    /// Reads the settings through the one settings loader: each from its environment
    /// variable(s), else the config file's `[remote]` table. `Ok(None)` when no remote is
    /// configured (`KACHE_REMOTE` and `remote.url` unset or empty). Touches no file beyond the
    /// config file already read and no network, so it is cheap enough for every invocation.
    pub(crate) fn load(s: &Sources) -> Result<Option<Self>, ConfigError> {
        let Some(url) = s.get(&["KACHE_REMOTE"], "remote.url")? else {
            return Ok(None);
        };
        let (bucket, prefix) = url.parse(|u| parse_s3_url(u.trim()))?;
        let endpoint = s.parse(
            &[
                "KACHE_S3_ENDPOINT",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ],
            "remote.endpoint",
            |e| parse_endpoint(e.trim()),
        )?;
        let region = s
            .get(&["AWS_REGION", "AWS_DEFAULT_REGION"], "remote.region")?
            .map(|r| r.value.trim().to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        // Self-hosted servers rarely have wildcard DNS for virtual-hosted buckets; AWS prefers
        // virtual-hosted. So the default follows whether an endpoint was given.
        let path_style = s
            .parse(&["KACHE_S3_PATH_STYLE"], "remote.path_style", parse_bool)?
            .unwrap_or(endpoint.is_some());
        let read_only = s
            .parse(&["KACHE_REMOTE_READONLY"], "remote.read_only", parse_bool)?
            .unwrap_or(false);
        let whole = |min| move |t: &str| parse_whole(t, min);
        let budget = s
            .parse(&["KACHE_REMOTE_BUDGET_MS"], "remote.budget_ms", whole(1))?
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_BUDGET);
        let breaker_failures = s
            .parse(
                &["KACHE_REMOTE_BREAKER_FAILURES"],
                "remote.breaker_failures",
                whole(1),
            )?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(DEFAULT_BREAKER_FAILURES);
        let breaker_cooldown = s
            .parse(
                &["KACHE_REMOTE_BREAKER_COOLDOWN_SECS"],
                "remote.breaker_cooldown_secs",
                whole(0),
            )?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_BREAKER_COOLDOWN);
        let miss_ttl = s
            .parse(
                &["KACHE_REMOTE_MISS_TTL_SECS"],
                "remote.miss_ttl_secs",
                whole(0),
            )?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_MISS_TTL);
        let credentials = read_credentials(s)?;

        Ok(Some(RemoteConfig {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            read_only,
            budget,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            credentials,
            breaker_failures,
            breaker_cooldown,
            miss_ttl,
        }))
    }
}

/// The S3 remote behind its failure policy: the one place a remote is set up (the wrapper and
/// `kache sync` both come here).
pub(crate) fn connect(
    config: &RemoteConfig,
    cache_dir: &std::path::Path,
) -> Result<guard::Guarded<s3::S3Remote>, RemoteError> {
    Ok(guard::Guarded::new(
        s3::S3Remote::new(config)?,
        cache_dir,
        config,
    ))
}

fn read_credentials(s: &Sources) -> Result<Credentials, ConfigError> {
    if s.parse(
        &["KACHE_S3_NO_CREDENTIALS"],
        "remote.no_credentials",
        parse_bool,
    )?
    .unwrap_or(false)
    {
        return Ok(Credentials::Anonymous);
    }
    let var = |name: &str| s.var(name).map(|v| v.value);
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials::Static {
            access_key_id: access_key_id.trim().to_string(),
            secret_access_key: secret_access_key.trim().to_string(),
            session_token: var("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
        }),
        // Half a key pair is a mistake worth reporting rather than silently using a profile.
        (Some(_), None) => Err(ConfigError::Invalid(
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
        )),
        (None, Some(_)) => Err(ConfigError::Invalid(
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
        )),
        (None, None) => {
            let name = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
            let file = match var("AWS_SHARED_CREDENTIALS_FILE") {
                Some(f) => PathBuf::from(f),
                None => match var("HOME") {
                    Some(home) => PathBuf::from(home).join(".aws").join("credentials"),
                    None => {
                        return Err(ConfigError::Invalid(
                            "no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                             AWS_SHARED_CREDENTIALS_FILE, or KACHE_S3_NO_CREDENTIALS=1"
                                .into(),
                        ));
                    }
                },
            };
            Ok(Credentials::Profile { name, file })
        }
    }
}

/// Splits `s3://bucket[/prefix]` into bucket and normalised prefix.
fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("expected s3://bucket[/prefix]")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !bucket_ok {
        return Err("invalid bucket name".into());
    }
    let prefix = prefix.trim_matches('/');
    // The prefix is pasted into object names: keep it to characters that need no escaping and
    // segments that cannot walk upwards on servers that normalise paths.
    let prefix_ok = prefix.is_empty()
        || prefix.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if !prefix_ok {
        return Err("invalid prefix (allowed: A-Z a-z 0-9 . - _ and single /)".into());
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Accepts `http(s)://host[:port][/]`; a path would be silently dropped by the client, so it is
/// refused instead.
fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or("expected http://host[:port] or https://host[:port]")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err("missing host".into());
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err("only scheme://host[:port] is supported".into());
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Option<RemoteConfig>, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RemoteConfig::from_env(&|name| map.get(name).cloned())
    }

    fn ok(vars: &[(&str, &str)]) -> RemoteConfig {
        match config(vars) {
            Ok(Some(c)) => c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY1234"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
    ];

    #[test]
    fn unset_or_empty_means_no_remote() {
        assert!(matches!(config(&[]), Ok(None)));
        assert!(matches!(config(&[("KACHE_REMOTE", "  ")]), Ok(None)));
    }

    #[test]
    fn defaults_for_aws() {
        let c = ok(&[("KACHE_REMOTE", "s3://my-bucket"), KEYS[0], KEYS[1]]);
        assert_eq!(c.bucket, "my-bucket");
        assert_eq!(c.prefix, "");
        assert_eq!(c.endpoint, None);
        assert_eq!(c.region, "us-east-1");
        assert!(!c.path_style);
        assert!(!c.read_only);
        assert_eq!(c.budget, DEFAULT_BUDGET);
        assert_eq!(c.breaker_failures, DEFAULT_BREAKER_FAILURES);
        assert_eq!(
            c.credentials,
            Credentials::Static {
                access_key_id: "AKIAEXAMPLEKEY1234".into(),
                secret_access_key: "very-secret-value".into(),
                session_token: None,
            }
        );
    }

    #[test]
    fn prefix_is_normalised() {
        let c = ok(&[("KACHE_REMOTE", "s3://b/team/ci/"), KEYS[0], KEYS[1]]);
        assert_eq!(c.prefix, "team/ci");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "https://b/x",
            "s3://",
            "s3:///prefix",
            "s3://b/a/../c",
            "s3://b/a//c",
            "s3://b/a b",
            "s3://b/%2e%2e",
            "s3://bu cket",
        ] {
            let r = config(&[("KACHE_REMOTE", url), KEYS[0], KEYS[1]]);
            assert!(r.is_err(), "{url}: {r:?}");
        }
    }

    #[test]
    fn endpoint_precedence_and_path_style_default() {
        let base = [("KACHE_REMOTE", "s3://b"), KEYS[0], KEYS[1]];
        let c = ok(&[
            base[0],
            base[1],
            base[2],
            ("AWS_ENDPOINT_URL", "http://aws:1"),
        ]);
        assert_eq!(c.endpoint.as_deref(), Some("http://aws:1"));
        assert!(c.path_style);
        let c = ok(&[
            base[0],
            base[1],
            base[2],
            ("AWS_ENDPOINT_URL", "http://aws:1"),
            ("KACHE_S3_ENDPOINT", "https://minio.local:9000/"),
        ]);
        assert_eq!(c.endpoint.as_deref(), Some("https://minio.local:9000"));
        let c = ok(&[
            base[0],
            base[1],
            base[2],
            ("KACHE_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("KACHE_S3_PATH_STYLE", "false"),
        ]);
        assert!(!c.path_style);
        let c = ok(&[base[0], base[1], base[2], ("KACHE_S3_PATH_STYLE", "1")]);
        assert!(c.path_style);
    }

    #[test]
    fn bad_endpoints_are_config_errors() {
        for e in [
            "minio:9000",
            "ftp://x",
            "http://",
            "http://h/path",
            "http://u:p@h",
        ] {
            let r = config(&[
                ("KACHE_REMOTE", "s3://b"),
                KEYS[0],
                KEYS[1],
                ("KACHE_S3_ENDPOINT", e),
            ]);
            assert!(r.is_err(), "{e}: {r:?}");
        }
    }

    #[test]
    fn region_flags_and_numbers() {
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            KEYS[0],
            KEYS[1],
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("KACHE_REMOTE_READONLY", "1"),
            ("KACHE_REMOTE_BUDGET_MS", "500"),
            ("KACHE_REMOTE_BREAKER_FAILURES", "5"),
            ("KACHE_REMOTE_BREAKER_COOLDOWN_SECS", "0"),
            ("KACHE_REMOTE_MISS_TTL_SECS", "30"),
        ]);
        assert_eq!(c.region, "eu-west-1");
        assert!(c.read_only);
        assert_eq!(c.budget, Duration::from_millis(500));
        assert_eq!(c.breaker_failures, 5);
        assert_eq!(c.breaker_cooldown, Duration::ZERO);
        assert_eq!(c.miss_ttl, Duration::from_secs(30));
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            KEYS[0],
            KEYS[1],
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "ap-south-1"),
        ]);
        assert_eq!(c.region, "ap-south-1");
        for (name, value) in [
            ("KACHE_REMOTE_READONLY", "maybe"),
            ("KACHE_REMOTE_BUDGET_MS", "0"),
            ("KACHE_REMOTE_BUDGET_MS", "-1"),
            ("KACHE_REMOTE_BUDGET_MS", "2s"),
            ("KACHE_REMOTE_BREAKER_FAILURES", "0"),
        ] {
            let r = config(&[("KACHE_REMOTE", "s3://b"), KEYS[0], KEYS[1], (name, value)]);
            assert!(r.is_err(), "{name}={value}");
        }
    }

    #[test]
    fn credential_sources() {
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            KEYS[0],
            KEYS[1],
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        assert!(matches!(
            c.credentials,
            Credentials::Static { session_token: Some(ref t), .. } if t == "tok"
        ));
        let c = ok(&[("KACHE_REMOTE", "s3://b"), ("HOME", "/home/me")]);
        assert_eq!(
            c.credentials,
            Credentials::Profile {
                name: "default".into(),
                file: PathBuf::from("/home/me/.aws/credentials")
            }
        );
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            ("AWS_PROFILE", "ci"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/etc/creds"),
        ]);
        assert_eq!(
            c.credentials,
            Credentials::Profile {
                name: "ci".into(),
                file: PathBuf::from("/etc/creds")
            }
        );
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            KEYS[0],
            KEYS[1],
            ("KACHE_S3_NO_CREDENTIALS", "yes"),
        ]);
        assert_eq!(c.credentials, Credentials::Anonymous);
        let r = config(&[("KACHE_REMOTE", "s3://b"), KEYS[0]]);
        assert!(r.is_err());
        let r = config(&[("KACHE_REMOTE", "s3://b"), KEYS[1]]);
        assert!(r.is_err());
        let r = config(&[("KACHE_REMOTE", "s3://b")]);
        assert!(r.is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = ok(&[
            ("KACHE_REMOTE", "s3://b"),
            KEYS[0],
            KEYS[1],
            ("AWS_SESSION_TOKEN", "session-secret"),
        ]);
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("session-secret"), "{shown}");
        assert!(!shown.contains("AKIAEXAMPLEKEY1234"), "{shown}");
        assert!(shown.contains("****1234"), "{shown}");
    }

    #[test]
    fn only_remote_faults_count_as_failures() {
        for e in [
            RemoteError::Timeout,
            RemoteError::Unavailable("refused".into()),
            RemoteError::Http { status: 503 },
            RemoteError::Http { status: 403 },
        ] {
            assert!(e.is_remote_failure(), "{e}");
        }
        for e in [
            RemoteError::BudgetSpent,
            RemoteError::Config("x".into()),
            RemoteError::ReadOnly,
            RemoteError::TooLarge { limit: 1 },
            RemoteError::BreakerOpen,
            RemoteError::InvalidKey("x".into()),
        ] {
            assert!(!e.is_remote_failure(), "{e}");
        }
    }

    #[test]
    fn layout() {
        let key = "ab12cd";
        assert_eq!(
            entry_object(key).ok().as_deref(),
            Some("v1/entries/ab/ab12cd.tar.zst")
        );
        assert_eq!(
            manifest_object(key).ok().as_deref(),
            Some("v1/manifests/ab/ab12cd.json")
        );
        for bad in ["", "a", "AB12", "../x", "ab/cd", "abz", &"a".repeat(129)] {
            assert!(
                matches!(entry_object(bad), Err(RemoteError::InvalidKey(_))),
                "{bad}"
            );
        }
    }
}
