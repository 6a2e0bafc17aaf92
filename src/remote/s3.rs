//! The S3 implementation of [`RemoteStore`], on the `rust-s3` crate in its synchronous
//! (`attohttpc`, no async runtime) mode, with rustls (aws-lc-rs) for TLS.
//!
//! Owns building the client from a [`RemoteConfig`], bounding every request by the process's
//! remaining time budget, and mapping client errors to [`RemoteError`]. Must not sign requests
//! itself, retry beyond the budget, log or `Debug`-print credentials, or read anything from the
//! environment (that is [`RemoteConfig::from_env`]'s job).

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use s3::creds::Credentials as S3Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};

use super::{Credentials, RemoteConfig, RemoteError, RemoteStore};

pub struct S3Remote {
    bucket: Box<Bucket>,
    prefix: String,
    read_only: bool,
    budget: Duration,
    /// Wall time spent in remote calls so far; the budget is for the whole process, so a
    /// slow first call leaves less for the next.
    spent: Mutex<Duration>,
    max_object_bytes: u64,
    /// For `Debug` only: where requests go and as whom, without secrets.
    described: String,
}

impl fmt::Debug for S3Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Bucket` holds the credentials, so it is never formatted.
        f.debug_struct("S3Remote")
            .field("target", &self.described)
            .field("read_only", &self.read_only)
            .field("budget", &self.budget)
            .field("remaining", &self.remaining_budget())
            .finish()
    }
}

impl S3Remote {
    /// Builds the client. No network; reads the shared credentials file when the config
    /// says to. Cheap enough to do lazily, only when a lookup actually needs the remote.
    pub fn new(config: &RemoteConfig) -> Result<Self, RemoteError> {
        // Retries inside the client would spend the budget on a server that just failed; the
        // circuit breaker is our retry policy.
        s3::set_retries(0);

        let (credentials, who) = match &config.credentials {
            Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => (
                S3Credentials::new(
                    Some(access_key_id),
                    Some(secret_access_key),
                    None,
                    session_token.as_deref(),
                    None,
                ),
                format!("key {}", super::redact_key_id(access_key_id)),
            ),
            Credentials::Profile { name, file } => {
                if !file.is_file() {
                    return Err(RemoteError::Config(format!(
                        "no credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set \
                         and {} does not exist (or set KACHE_S3_NO_CREDENTIALS=1)",
                        file.display()
                    )));
                }
                (
                    S3Credentials::from_credentials_file(file, Some(name)),
                    format!("profile {name} from {}", file.display()),
                )
            }
            Credentials::Anonymous => (S3Credentials::anonymous(), "anonymous".to_string()),
        };
        // The credentials error type's messages name files and sections, never values.
        let credentials =
            credentials.map_err(|e| RemoteError::Config(format!("credentials ({who}): {e}")))?;

        let region = match &config.endpoint {
            Some(endpoint) => Region::Custom {
                region: config.region.clone(),
                endpoint: endpoint.clone(),
            },
            None => aws_region(&config.region),
        };
        let mut bucket = Bucket::new(&config.bucket, region, credentials)
            .map_err(|e| RemoteError::Config(format!("S3 client: {e}")))?;
        if config.path_style {
            bucket.set_path_style();
        }
        let described = format!(
            "s3://{}/{} at {} (region {}, {}-style, {who})",
            config.bucket,
            config.prefix,
            config.endpoint.as_deref().unwrap_or("AWS"),
            config.region,
            if config.path_style {
                "path"
            } else {
                "virtual-host"
            },
        );
        Ok(S3Remote {
            bucket,
            prefix: config.prefix.clone(),
            read_only: config.read_only,
            budget: config.budget,
            spent: Mutex::new(Duration::ZERO),
            max_object_bytes: config.max_object_bytes,
            described,
        })
    }

    /// Time left for remote calls in this process.
    pub(crate) fn remaining_budget(&self) -> Duration {
        let spent = self.spent.lock().map(|s| *s).unwrap_or(self.budget);
        self.budget.saturating_sub(spent)
    }

    fn path(&self, key: &str) -> Result<String, RemoteError> {
        // Keys come from the layout helpers; this only stops a caller bug from escaping the
        // prefix or producing a name the signer and server would disagree on.
        let ok = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
        if !ok {
            return Err(RemoteError::InvalidKey(key.to_string()));
        }
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// Runs one request on a helper thread and waits at most the remaining budget. The
    /// client's own timeout does not cover DNS resolution, so only an outside deadline makes
    /// the bound hold; a request still running past it is abandoned with its thread (the
    /// process is short-lived), and a panic inside the client becomes an error.
    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Bucket) -> Result<T, RemoteError> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let remaining = self.remaining_budget();
        if remaining.is_zero() {
            return Err(RemoteError::BudgetSpent);
        }
        let mut bucket = (*self.bucket).clone();
        bucket.set_request_timeout(Some(remaining));
        let (tx, rx) = mpsc::sync_channel(1);
        let start = Instant::now();
        let spawned = thread::Builder::new()
            .name("kache-remote".into())
            .spawn(move || {
                let _ = tx.send(op(&bucket));
            });
        let result = match spawned {
            Err(e) => Err(RemoteError::Unavailable(format!(
                "cannot start request thread: {e}"
            ))),
            Ok(_detached) => match rx.recv_timeout(remaining) {
                Ok(result) => result,
                Err(mpsc::RecvTimeoutError::Timeout) => Err(RemoteError::Timeout),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(RemoteError::Unavailable(
                    "S3 client failed unexpectedly".into(),
                )),
            },
        };
        if let Ok(mut spent) = self.spent.lock() {
            *spent += start.elapsed();
        }
        result
    }
}

/// AWS's own endpoint for `region`. Regions the client crate does not know (newer ones) get
/// the standard `s3.<region>.amazonaws.com`, instead of the crate's fallback of using the
/// region name as a host name.
fn aws_region(region: &str) -> Region {
    match region.parse::<Region>() {
        Ok(Region::Custom { .. }) | Err(_) => Region::Custom {
            region: region.to_string(),
            endpoint: format!("https://s3.{region}.amazonaws.com"),
        },
        Ok(known) => known,
    }
}

impl RemoteStore for S3Remote {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let path = self.path(key)?;
        let limit = self.max_object_bytes;
        self.call(move |bucket| {
            let mut body = LimitedWriter {
                buf: Vec::new(),
                limit,
                exceeded: false,
            };
            let status = bucket.get_object_to_writer(&path, &mut body);
            if body.exceeded {
                return Err(RemoteError::TooLarge { limit });
            }
            match status.map_err(map_error)? {
                200..=299 => Ok(Some(body.buf)),
                404 => Ok(None),
                status => Err(RemoteError::Http { status }),
            }
        })
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        if self.read_only {
            return Err(RemoteError::ReadOnly);
        }
        let path = self.path(key)?;
        // The request thread may outlive this call (on timeout), so it needs its own copy.
        let body = body.to_vec();
        self.call(move |bucket| {
            let response = bucket.put_object(&path, &body).map_err(map_error)?;
            match response.status_code() {
                200..=299 => Ok(()),
                status => Err(RemoteError::Http { status }),
            }
        })
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        let path = self.path(key)?;
        self.call(move |bucket| {
            let (_, status) = bucket.head_object(&path).map_err(map_error)?;
            match status {
                200..=299 => Ok(true),
                404 => Ok(false),
                status => Err(RemoteError::Http { status }),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let full = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, _) => prefix.to_string(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{prefix}", self.prefix),
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.call(move |bucket| {
            let pages = bucket.list(full, None).map_err(map_error)?;
            Ok(pages
                .into_iter()
                .flat_map(|page| page.contents)
                .filter_map(|o| o.key.strip_prefix(&strip).map(str::to_owned))
                .collect())
        })
    }
}

/// Collects a response body, refusing to grow past `limit` so a huge or hostile object cannot
/// exhaust memory.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: u64,
    exceeded: bool,
}

impl Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if (self.buf.len() as u64).saturating_add(data.len() as u64) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("object larger than the configured bound"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn map_error(error: S3Error) -> RemoteError {
    match error {
        S3Error::Atto(e) => match e.kind() {
            attohttpc::ErrorKind::Io(io) => map_io(io),
            _ => RemoteError::Unavailable(e.to_string()),
        },
        S3Error::Io(io) => map_io(&io),
        S3Error::HttpFailWithBody(status, _) => RemoteError::Http { status },
        S3Error::Credentials(e) => RemoteError::Config(format!("credentials: {e}")),
        other => RemoteError::Unavailable(other.to_string()),
    }
}

fn map_io(e: &io::Error) -> RemoteError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => RemoteError::Timeout,
        _ => RemoteError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn config(endpoint: &str, budget_ms: u64) -> RemoteConfig {
        let vars = [
            ("KACHE_REMOTE", "s3://bucket/pre"),
            ("KACHE_S3_ENDPOINT", endpoint),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY1234"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
        ];
        let budget = budget_ms.to_string();
        let get = |name: &str| {
            if name == "KACHE_REMOTE_BUDGET_MS" {
                return Some(budget.clone());
            }
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        match RemoteConfig::from_env(&get) {
            Ok(Some(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    /// Object names are the layout key under the prefix (moved here from the settings'
    /// unused `object_path`, which the client never called).
    #[test]
    fn object_names_are_the_key_under_the_prefix() {
        let remote = S3Remote::new(&config("http://127.0.0.1:9", 100)).expect("client");
        assert_eq!(
            remote.path("v1/entries/ab/ab.tar.zst").ok().as_deref(),
            Some("pre/v1/entries/ab/ab.tar.zst")
        );
        let mut bare = config("http://127.0.0.1:9", 100);
        bare.prefix = String::new();
        let remote = S3Remote::new(&bare).expect("client");
        assert_eq!(remote.path("v1/x").ok().as_deref(), Some("v1/x"));
    }

    #[test]
    fn debug_is_redacted() {
        let remote = S3Remote::new(&config("http://127.0.0.1:9", 100)).expect("client");
        let shown = format!("{remote:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("AKIAEXAMPLEKEY1234"), "{shown}");
        assert!(shown.contains("****1234"), "{shown}");
    }

    #[test]
    fn bad_keys_never_reach_the_network() {
        let remote = S3Remote::new(&config("http://127.0.0.1:9", 100)).expect("client");
        for key in ["", "/abs", "a/../b", "a//b", "a b", "a?b", "%2e"] {
            assert!(
                matches!(remote.get(key), Err(RemoteError::InvalidKey(_))),
                "{key:?}"
            );
        }
        assert_eq!(remote.remaining_budget(), Duration::from_millis(100));
    }

    #[test]
    fn a_silent_server_costs_at_most_the_budget_then_nothing() {
        // Accepts connections (the kernel does, via the backlog) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let remote =
            S3Remote::new(&config(&format!("http://127.0.0.1:{port}"), 300)).expect("client");
        let start = Instant::now();
        let r = remote.get("v1/entries/ab/ab.tar.zst");
        assert!(matches!(r, Err(RemoteError::Timeout)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(remote.remaining_budget().is_zero());
        // Budget spent: later calls fail at once without a request.
        let start = Instant::now();
        assert!(matches!(
            remote.exists("v1/entries/ab/ab.tar.zst"),
            Err(RemoteError::BudgetSpent)
        ));
        assert!(start.elapsed() < Duration::from_millis(50));
        drop(listener);
    }

    #[test]
    fn https_endpoints_speak_tls() {
        // Guards the TLS feature selection: attohttpc's `*-ring` features, for one, compile
        // without TLS and fail every https request at run time.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        // Gives up after a while, so a client that never connects fails the test, not hangs it.
        let server = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nonblocking(false).ok()?;
                    let mut first = [0u8; 1];
                    stream.read_exact(&mut first).ok()?;
                    return Some(first[0]);
                }
                thread::sleep(Duration::from_millis(10));
            }
            None
        });
        let remote =
            S3Remote::new(&config(&format!("https://127.0.0.1:{port}"), 5000)).expect("client");
        let r = remote.get("v1/entries/ab/ab.tar.zst");
        assert!(
            matches!(r, Err(RemoteError::Unavailable(_))),
            "closed during the handshake: {r:?}"
        );
        assert_eq!(
            server.join().expect("server"),
            Some(0x16),
            "a TLS handshake record"
        );
    }

    #[test]
    fn unknown_aws_regions_get_the_standard_endpoint() {
        assert_eq!(
            aws_region("xx-new-1").host(),
            "s3.xx-new-1.amazonaws.com".to_string()
        );
        assert_eq!(aws_region("eu-west-1"), Region::EuWest1);
    }
}
