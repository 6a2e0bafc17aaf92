//! Test helper: a real S3-compatible server (moto) on 127.0.0.1 for the remote tests.
//!
//! Owns starting `moto_server` on a free loopback port, waiting until it answers, creating the
//! test bucket, and killing it on drop. Must not install anything: when moto is missing the
//! tests fail and say which command sets the machine up.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The one-time test setup (`docs/remote.md`); the README's `e2e/run-tests` runs it for you.
pub const SETUP_COMMAND: &str = "pip install 'moto[server]' (or run the README's test command, e2e/run-tests, which installs it)";

/// Moto can take several seconds to import on a busy two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MotoServer {
    child: Option<Child>,
    pub port: u16,
    pub endpoint: String,
    pub bucket: String,
    log: PathBuf,
    /// Holds the log directory for the server's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl MotoServer {
    /// The variables that point a kache build at this server (prefix `shared`).
    pub fn kache_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KACHE_REMOTE", format!("s3://{}/shared", self.bucket)),
            ("KACHE_S3_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Starts moto and creates `bucket` in it. Panics with the setup command if moto is not
    /// installed, and with moto's log if it does not come up.
    pub fn start(bucket: &str) -> MotoServer {
        let program = find_moto();
        let dir = tempfile::tempdir().expect("temp dir for the moto log");
        let mut last_failure = String::new();
        // The free port is found by binding and releasing it, so another process may take it
        // before moto does; a few attempts make that race harmless.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("moto-{attempt}.log"));
            let log_file = std::fs::File::create(&log).expect("create moto log");
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn();
            let child = match child {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot run {}: {e}. The S3 tests need moto; set up with: {SETUP_COMMAND}",
                    program.display()
                ),
            };
            let mut server = MotoServer {
                child: Some(child),
                port,
                endpoint: format!("http://127.0.0.1:{port}"),
                bucket: bucket.to_string(),
                log,
                _dir: None,
            };
            match server.wait_and_create_bucket() {
                Ok(()) => {
                    server._dir = Some(dir);
                    return server;
                }
                Err(why) => {
                    last_failure = format!("{why}\n--- moto log ---\n{}", server.log_text());
                    server.stop();
                }
            }
        }
        panic!("moto_server did not come up: {last_failure}");
    }

    /// Kills the server now (the tests of failure behaviour need a dead endpoint).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_and_create_bucket(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("moto_server exited early with {status}"));
            }
            match http_status(self.port, "PUT", &format!("/{}", self.bucket)) {
                Ok(200) => return Ok(()),
                Ok(other) => return Err(format!("creating the bucket answered HTTP {other}")),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(format!("no answer within {START_TIMEOUT:?}: {e}")),
            }
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_moto() -> PathBuf {
    if let Some(explicit) = std::env::var_os("KACHE_TEST_MOTO_SERVER") {
        return PathBuf::from(explicit);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("moto_server");
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "moto_server is not on PATH. The S3 remote tests run against a local moto server; \
         set the machine up once with: {SETUP_COMMAND}"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A minimal unsigned HTTP/1.1 request (moto does not check signatures), returning the status.
fn http_status(port: u16, method: &str, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected answer {:?}", head.lines().next()))
}
