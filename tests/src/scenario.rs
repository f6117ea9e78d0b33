//! One e2e test's world: a fresh bucket on the shared S3 server, a counting relay in front of
//! it, a real edge pointed at the relay, and an HTTP client for the viewer side.

use std::sync::Arc;
use std::time::Duration;

use kubefront_edge::config::{Dur, EdgeConfig};
use reqwest::header::HeaderMap;

use crate::edge::{Edge, EdgeOptions};
use crate::origin::{Bucket, S3Server};
use crate::relay::CountingRelay;

/// The S3 server for this test binary, or `None` (test skipped, reason printed) when none can
/// be started and skipping is allowed. Panics in CI, and when a server exists but fails.
pub fn s3_server_or_skip(test: &str) -> Option<Arc<S3Server>> {
    match S3Server::shared() {
        Ok(Some(server)) => Some(server),
        Ok(None) => {
            let reason = "no S3 server: build MinIO with `tests/cluster/build minio` \
                          (or set KUBEFRONT_MINIO_BIN, KUBEFRONT_S3_ENDPOINT…, or \
                          KUBEFRONT_TEST_ORIGIN=garage)";
            if crate::e2e_required() {
                panic!("{test}: {reason}; CI / KUBEFRONT_REQUIRE_E2E forbid skipping");
            }
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
        Err(e) => panic!("{test}: the S3 server failed to start: {e}"),
    }
}

/// A viewer HTTP client: no proxy, no decompression, no redirects, generous timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(256)
        // The edge closes a keep-alive connection that sends no request head within
        // `headerReadTimeout` (1 s in the hostile tests). A pooled connection reused at that
        // instant fails the request; dropping idle ones after 500 ms avoids the race.
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .expect("reqwest client builds with static settings")
}

/// A fully read viewer response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `X-Cache` header, or "" when absent.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    /// `ttl=N` from `Cache-Status`.
    pub fn cache_status_ttl(&self) -> Option<i64> {
        self.cache_status()
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("ttl="))
            .and_then(|v| v.parse().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Everything one test needs, torn down on drop (edge killed, relay closed).
pub struct Scenario {
    pub server: Arc<S3Server>,
    pub bucket: Bucket,
    pub relay: CountingRelay,
    pub edge: Edge,
    pub http: reqwest::Client,
    /// The config the edge was started with (listen addresses aside).
    pub config: EdgeConfig,
    pub admin_token: Option<String>,
}

/// A test config: the bucket behind the relay, path-style, short timeouts so failure tests
/// finish quickly, one retry.
pub fn base_config(bucket: &Bucket, relay: &CountingRelay) -> EdgeConfig {
    let mut cfg = EdgeConfig::for_bucket(bucket.name.clone());
    cfg.origin.s3_mut().endpoint = Some(relay.url());
    cfg.origin.s3_mut().force_path_style = true;
    cfg.origin.s3_mut().region = "us-east-1".into();
    cfg.origin.s3_mut().prefix = bucket.prefix.clone();
    cfg.origin.timeouts.connect = Dur::secs(2);
    cfg.origin.timeouts.first_byte = Dur::secs(5);
    cfg.origin.timeouts.total = Dur::secs(60);
    cfg.origin.max_attempts = 2;
    cfg.server.shutdown_grace = Dur::secs(5);
    cfg
}

/// How to start a scenario beyond the config.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub admin_token: Option<String>,
    pub extra_args: Vec<String>,
    /// Start even though the origin is unreachable (don't wait for /readyz).
    pub skip_ready: bool,
    /// Sign with these instead of the server's edge key.
    pub credentials: Option<crate::origin::Credentials>,
}

impl Scenario {
    /// Starts a scenario with `configure` applied to [`base_config`]; `None` = skipped.
    pub async fn start(label: &str, configure: impl FnOnce(&mut EdgeConfig)) -> Option<Scenario> {
        Scenario::start_with(label, configure, StartOptions::default()).await
    }

    pub async fn start_with(
        label: &str,
        configure: impl FnOnce(&mut EdgeConfig),
        opts: StartOptions,
    ) -> Option<Scenario> {
        let server = s3_server_or_skip(label)?;
        let bucket = server
            .bucket(label)
            .await
            .unwrap_or_else(|e| panic!("{label}: creating a bucket: {e}"));
        let relay = CountingRelay::start(server.addr)
            .await
            .unwrap_or_else(|e| panic!("{label}: starting the relay: {e}"));
        let mut config = base_config(&bucket, &relay);
        configure(&mut config);
        let edge = Edge::start(EdgeOptions {
            config: config.clone(),
            credentials: opts
                .credentials
                .clone()
                .unwrap_or_else(|| server.edge.clone()),
            admin_token: opts.admin_token.clone(),
            extra_args: opts.extra_args,
            wait_ready: !opts.skip_ready,
        })
        .await
        .unwrap_or_else(|e| panic!("{label}: starting kubefront-edge: {e}"));
        Some(Scenario {
            server,
            bucket,
            relay,
            edge,
            http: http_client(),
            config,
            admin_token: opts.admin_token,
        })
    }

    /// GET `path` from the edge.
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers).await
    }

    /// Sends `method path` with `headers` to the viewer port and reads the whole reply.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = self.http.request(method.clone(), self.edge.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading body: {e}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET with `target` sent byte-for-byte (no client-side normalisation of `..`, `%2e`…);
    /// returns status and body. Reads until the server closes (`Connection: close`).
    pub async fn raw_get(&self, target: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.edge.viewer)
            .await
            .expect("connect to the viewer port");
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.edge.viewer
        );
        conn.write_all(req.as_bytes()).await.expect("send request");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut raw))
            .await
            .expect("reply within 30 s")
            .expect("read reply");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// POST /invalidate on the admin port with `token` (None = no Authorization header).
    pub async fn invalidate(&self, paths: &[&str], token: Option<&str>) -> Reply {
        let body = serde_json::json!({ "paths": paths }).to_string();
        let mut req = self
            .http
            .post(self.edge.admin_url("/invalidate"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.expect("POST /invalidate");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("invalidate body"),
        }
    }

    /// Origin GETs the relay counted for viewer path `path`.
    pub fn origin_gets(&self, path: &str) -> usize {
        self.relay.count("GET", &self.origin_path(path))
    }

    /// The tail of the origin request path for viewer `path` (`bucket/key`, path-style).
    pub fn origin_path(&self, path: &str) -> String {
        format!("/{}/{}", self.bucket.name, self.bucket.key(path))
    }
}
