//! The real `kubefront-edge` binary on kernel-chosen loopback ports.
//!
//! The binary is `KUBEFRONT_EDGE_BIN` when set; otherwise the harness runs
//! `cargo build -p kubefront-edge` (once per test binary; a no-op when up to date, `--release`
//! when `KUBEFRONT_EDGE_PROFILE=release`) and uses the artifact cargo reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kubefront_edge::config::EdgeConfig;

use crate::error::HarnessError;
use crate::metrics::Metrics;
use crate::origin::Credentials;
use crate::process::{self, ChildGuard};
use crate::Result;

static EDGE_BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// Path of the `kubefront-edge` binary, building it if needed.
pub fn edge_binary() -> Result<PathBuf> {
    EDGE_BIN
        .get_or_init(|| locate_or_build().map_err(|e| e.to_string()))
        .clone()
        .map_err(HarnessError::Setup)
}

fn locate_or_build() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KUBEFRONT_EDGE_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "kubefront-edge", "--bin", "kubefront-edge"])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest);
    if std::env::var("KUBEFRONT_EDGE_PROFILE").as_deref() == Ok("release") {
        cmd.arg("--release");
    }
    let out = process::run(&mut cmd)?;
    out.lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"kubefront-edge\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("executable")?.as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| {
            HarnessError::Setup("cargo build reported no kubefront-edge executable".into())
        })
}

/// How to run one edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Written to `edge.yaml` and passed with `--config`; listen addresses are forced to
    /// `127.0.0.1:0`.
    pub config: EdgeConfig,
    pub credentials: Credentials,
    pub admin_token: Option<String>,
    pub extra_args: Vec<String>,
    /// Wait for `/readyz` = 200 (off for tests that start with the origin down).
    pub wait_ready: bool,
}

/// A running edge. Killed on drop; its log is printed when the test panicked.
#[derive(Debug)]
pub struct Edge {
    pub viewer: SocketAddr,
    pub admin: SocketAddr,
    /// The HTTPS listener, when the config has `server.tls`.
    pub https: Option<SocketAddr>,
    pub config_path: PathBuf,
    child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Edge {
    pub async fn start(opts: EdgeOptions) -> Result<Edge> {
        let bin = edge_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("kubefront-edge-")
            .tempdir()
            .map_err(HarnessError::io("creating the edge temp dir"))?;
        let mut config = opts.config.clone();
        config.server.listen = "127.0.0.1:0".into();
        config.server.admin_listen = "127.0.0.1:0".into();
        if let Some(tls) = &mut config.server.tls {
            tls.listen = "127.0.0.1:0".into();
        }
        let config_path = dir.path().join("edge.yaml");
        std::fs::write(&config_path, config.to_yaml())
            .map_err(HarnessError::io("writing edge.yaml"))?;
        let log = dir.path().join("edge.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&config_path)
            .args(&opts.extra_args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_ACCESS_KEY_ID", &opts.credentials.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &opts.credentials.secret_key)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("KUBEFRONT_TEST_EDGE_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(token) = &opts.admin_token {
            cmd.env("KUBEFRONT_ADMIN_TOKEN", token);
        }
        let mut child = ChildGuard::spawn("kubefront-edge", cmd, &log)?;
        let mut addrs = None;
        process::wait_until(
            "kubefront-edge (listening line)",
            &mut child,
            Duration::from_secs(30),
            || {
                addrs = std::fs::read_to_string(&log)
                    .ok()
                    .and_then(|text| parse_listening(&text));
                addrs.is_some()
            },
        )?;
        let Listening {
            viewer,
            admin,
            https,
        } = addrs.ok_or_else(|| HarnessError::Setup("edge printed no listening line".into()))?;
        let edge = Edge {
            viewer,
            admin,
            https,
            config_path,
            child,
            dir,
        };
        if opts.wait_ready {
            edge.wait_ready(Duration::from_secs(30)).await?;
        }
        Ok(edge)
    }

    /// Polls `/readyz` until 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = crate::scenario::http_client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(self.admin_url("/readyz")).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: "kubefront-edge /readyz".into(),
                    secs: timeout.as_secs(),
                    log: self.child.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://VIEWER/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.viewer, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn rss_bytes(&self) -> u64 {
        process::rss_bytes(self.pid()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.child.log_path()).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the config file (listen addresses kept) so the edge reloads it.
    pub fn rewrite_config(&self, config: &EdgeConfig) -> Result<()> {
        let mut config = config.clone();
        config.server.listen = "127.0.0.1:0".into();
        config.server.admin_listen = "127.0.0.1:0".into();
        let tmp = self.dir.path().join("edge.yaml.tmp");
        std::fs::write(&tmp, config.to_yaml()).map_err(HarnessError::io("writing edge.yaml"))?;
        std::fs::rename(&tmp, &self.config_path).map_err(HarnessError::io("replacing edge.yaml"))
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let text = crate::scenario::http_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// SIGTERM, then wait up to `timeout`; `None` if it did not exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.child.signal(libc::SIGTERM);
        self.child.wait_timeout(timeout)
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.child.check_alive()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.child.log_tail());
        }
    }
}

/// The addresses the edge's listening line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listening {
    viewer: SocketAddr,
    admin: SocketAddr,
    https: Option<SocketAddr>,
}

/// Finds `listening viewer=IP:PORT [https=IP:PORT] admin=IP:PORT` in the log (ANSI colour
/// codes stripped).
fn parse_listening(log: &str) -> Option<Listening> {
    let clean = strip_ansi(log);
    let line = clean
        .lines()
        .find(|l| l.contains("listening") && l.contains("viewer="))?;
    let field = |key: &str| -> Option<SocketAddr> {
        let start = line.find(key)? + key.len();
        let rest = &line[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .unwrap_or(rest.len());
        rest[..end].trim_matches('"').parse().ok()
    };
    Some(Listening {
        viewer: field("viewer=")?,
        admin: field("admin=")?,
        https: field("https="),
    })
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bound_addresses_in_text_and_coloured_logs() {
        let log = "2025 INFO kubefront_edge: starting\n\
                   2025 \u{1b}[32mINFO\u{1b}[0m kubefront_edge: listening viewer=127.0.0.1:41234 admin=127.0.0.1:41235\n";
        let l = parse_listening(log).expect("parsed");
        assert_eq!(l.viewer.port(), 41234);
        assert_eq!(l.admin.port(), 41235);
        assert_eq!(l.https, None);
        let tls = "INFO kubefront_edge: listening viewer=127.0.0.1:1 https=127.0.0.1:2 admin=127.0.0.1:3 bucket=b";
        let l = parse_listening(tls).expect("parsed");
        assert_eq!(l.https.map(|a| a.port()), Some(2));
        assert_eq!(l.admin.port(), 3);
        assert!(parse_listening("nothing here").is_none());
    }
}
