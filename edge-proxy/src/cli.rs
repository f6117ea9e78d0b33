//! Command line: every flag also reads `KUBEFRONT_<FLAG>`; flags win over the config file.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use kubefront_edge::config::{
    ByteSize, Dur, EdgeConfig, HttpOrigin, OriginCustomHeader, S3Origin, TlsCertificate, TlsConfig,
    TlsVersion, ViewerProtocolPolicy,
};

#[derive(Debug, Parser)]
#[command(
    name = "kubefront-edge",
    version,
    about = "kubefront edge cache in front of a private S3 bucket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file; exits non-zero naming the offending field.
    CheckConfig { file: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// YAML EdgeConfig file; reloaded when it changes.
    #[arg(long, env = "KUBEFRONT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Viewer listen address [default: 0.0.0.0:8080].
    #[arg(long, env = "KUBEFRONT_LISTEN")]
    pub listen: Option<String>,
    /// Admin listen address (/healthz, /readyz, /metrics, /invalidate) [default: 0.0.0.0:9090].
    #[arg(long, env = "KUBEFRONT_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// HTTPS listen address (HTTP/1.1 and HTTP/2 by ALPN), beside --listen.
    #[arg(long, env = "KUBEFRONT_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain; repeat with --tls-key for several (chosen by SNI, first is the
    /// default). Watched: a replaced file is loaded without a restart.
    #[arg(long = "tls-cert", env = "KUBEFRONT_TLS_CERT", value_delimiter = ',')]
    pub tls_certs: Vec<String>,
    /// PEM private key of the --tls-cert at the same position.
    #[arg(long = "tls-key", env = "KUBEFRONT_TLS_KEY", value_delimiter = ',')]
    pub tls_keys: Vec<String>,
    /// Lowest TLS version accepted: 1.2 (CloudFront's TLSv1.2_2021) or 1.3.
    #[arg(long, env = "KUBEFRONT_TLS_MIN_VERSION")]
    pub tls_min_version: Option<TlsVersion>,
    /// The HTTPS port viewers use, named in redirect-to-https answers [default: 443].
    #[arg(long, env = "KUBEFRONT_TLS_PUBLIC_PORT")]
    pub tls_public_port: Option<u16>,
    /// Offer HTTP/2 on the HTTPS listener (ALPN h2).
    #[arg(long, env = "KUBEFRONT_TLS_HTTP2", action = ArgAction::Set)]
    pub tls_http2: Option<bool>,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener.
    #[arg(long, env = "KUBEFRONT_H2C", num_args = 0..=1, default_missing_value = "true")]
    pub h2c: Option<bool>,
    /// allow-all, redirect-to-https (301) or https-only (403) for viewers on plain HTTP.
    #[arg(long, env = "KUBEFRONT_VIEWER_PROTOCOL_POLICY")]
    pub viewer_protocol_policy: Option<ViewerProtocolPolicy>,
    /// An S3 origin: the private bucket.
    #[arg(long, env = "KUBEFRONT_ORIGIN_BUCKET")]
    pub origin_bucket: Option<String>,
    /// get-head (default), get-head-options or all: methods beyond GET/HEAD are forwarded to
    /// an HTTP origin with their bodies, never cached; a successful unsafe one invalidates
    /// its path (and `Location` / `Content-Location`).
    #[arg(long, env = "KUBEFRONT_ALLOWED_METHODS")]
    pub allowed_methods: Option<kubefront_edge::config::AllowedMethods>,
    /// An HTTP origin instead: `http://` or `https://` base URL; the viewer's path (and the
    /// query parameters in the cache key) are appended.
    #[arg(long, env = "KUBEFRONT_ORIGIN_URL")]
    pub origin_url: Option<String>,
    /// `Host` sent to an HTTP origin [default: the URL's host].
    #[arg(long, env = "KUBEFRONT_ORIGIN_HOST_HEADER")]
    pub origin_host_header: Option<String>,
    /// `NAME:VALUE` or `NAME:@FILE` added to every origin request (repeatable); a secret
    /// belongs in a file so it never shows in `ps`.
    #[arg(long = "origin-header", value_parser = parse_origin_header)]
    pub origin_headers: Vec<OriginCustomHeader>,
    /// S3-compatible endpoint URL (MinIO, Garage); AWS when absent.
    #[arg(long, env = "KUBEFRONT_ORIGIN_ENDPOINT")]
    pub origin_endpoint: Option<String>,
    #[arg(long, env = "KUBEFRONT_ORIGIN_REGION")]
    pub origin_region: Option<String>,
    /// Path-style bucket addressing (needed by most S3-compatible servers).
    #[arg(long, env = "KUBEFRONT_ORIGIN_PATH_STYLE", num_args = 0..=1, default_missing_value = "true")]
    pub origin_path_style: Option<bool>,
    /// Key prefix viewer paths are mapped under, e.g. `site/`.
    #[arg(long, env = "KUBEFRONT_ORIGIN_PREFIX")]
    pub origin_prefix: Option<String>,
    #[arg(long, env = "KUBEFRONT_ORIGIN_CONNECT_TIMEOUT")]
    pub origin_connect_timeout: Option<Dur>,
    /// Until origin response headers arrive.
    #[arg(long, env = "KUBEFRONT_ORIGIN_FIRST_BYTE_TIMEOUT")]
    pub origin_first_byte_timeout: Option<Dur>,
    /// Whole origin fetch including the body, per attempt.
    #[arg(long, env = "KUBEFRONT_ORIGIN_TOTAL_TIMEOUT")]
    pub origin_total_timeout: Option<Dur>,
    /// Longest wait for the next origin body chunk (streams through the edge use this, never
    /// the total timeout) [default: the first-byte timeout].
    #[arg(long, env = "KUBEFRONT_ORIGIN_IDLE_TIMEOUT")]
    pub origin_idle_timeout: Option<Dur>,
    /// Attempts per idempotent origin fetch, including the first.
    #[arg(long, env = "KUBEFRONT_ORIGIN_MAX_ATTEMPTS")]
    pub origin_max_attempts: Option<u32>,
    /// Byte-weighted cache capacity, e.g. 512Mi.
    #[arg(long, env = "KUBEFRONT_CACHE_MEMORY")]
    pub cache_memory: Option<ByteSize>,
    /// Larger objects stream through uncached, e.g. 64Mi.
    #[arg(long, env = "KUBEFRONT_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<ByteSize>,
    #[arg(long, env = "KUBEFRONT_DEFAULT_TTL")]
    pub default_ttl: Option<Dur>,
    #[arg(long, env = "KUBEFRONT_MIN_TTL")]
    pub min_ttl: Option<Dur>,
    #[arg(long, env = "KUBEFRONT_MAX_TTL")]
    pub max_ttl: Option<Dur>,
    #[arg(long, env = "KUBEFRONT_STALE_IF_ERROR")]
    pub stale_if_error: Option<Dur>,
    #[arg(long, env = "KUBEFRONT_STALE_WHILE_REVALIDATE")]
    pub stale_while_revalidate: Option<Dur>,
    /// How long origin 403/404 answers are cached.
    #[arg(long, env = "KUBEFRONT_NEGATIVE_TTL")]
    pub negative_ttl: Option<Dur>,
    /// How long an origin failure is remembered for a key with no stale copy (0 disables).
    #[arg(long, env = "KUBEFRONT_ERROR_CACHING_MIN_TTL")]
    pub error_caching_min_ttl: Option<Dur>,
    /// Object served for `/`, e.g. index.html.
    #[arg(long, env = "KUBEFRONT_DEFAULT_ROOT_OBJECT")]
    pub default_root_object: Option<String>,
    /// Bearer token for POST /invalidate; the endpoint is disabled without one.
    #[arg(long, env = "KUBEFRONT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "KUBEFRONT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// One log line per viewer request.
    #[arg(long, env = "KUBEFRONT_ACCESS_LOG", action = ArgAction::Set, default_value_t = true)]
    pub access_log: bool,
    /// Tokio worker threads [default: number of CPUs]; 1 runs a single-threaded runtime.
    #[arg(long, env = "KUBEFRONT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Signed URLs/cookies, response headers policy, viewer limits.
    #[command(flatten)]
    pub security: kubefront_edge::security::cli::SecurityArgs,
}

fn parse_origin_header(s: &str) -> Result<OriginCustomHeader, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected NAME:VALUE or NAME:@FILE"))?;
    let name = name.trim().to_owned();
    let value = value.trim_start();
    Ok(match value.strip_prefix('@') {
        Some(file) => OriginCustomHeader {
            name,
            value: None,
            value_file: Some(file.to_owned()),
        },
        None => OriginCustomHeader {
            name,
            value: Some(value.to_owned()),
            value_file: None,
        },
    })
}

impl RunArgs {
    /// Applies the flags that were given over `cfg`.
    pub fn apply(&self, cfg: &mut EdgeConfig) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut cfg.server.listen, &self.listen);
        set(&mut cfg.server.admin_listen, &self.admin_listen);
        self.apply_tls(cfg);
        set(&mut cfg.server.h2c, &self.h2c);
        set(
            &mut cfg.viewer_protocol_policy,
            &self.viewer_protocol_policy,
        );
        self.apply_origin(cfg);
        set(&mut cfg.allowed_methods, &self.allowed_methods);
        set(
            &mut cfg.origin.timeouts.connect,
            &self.origin_connect_timeout,
        );
        set(
            &mut cfg.origin.timeouts.first_byte,
            &self.origin_first_byte_timeout,
        );
        set(&mut cfg.origin.timeouts.total, &self.origin_total_timeout);
        if self.origin_idle_timeout.is_some() {
            cfg.origin.timeouts.idle = self.origin_idle_timeout;
        }
        set(&mut cfg.origin.max_attempts, &self.origin_max_attempts);
        set(&mut cfg.cache.memory, &self.cache_memory);
        set(&mut cfg.cache.max_object_size, &self.max_object_size);
        set(&mut cfg.cache.default_ttl, &self.default_ttl);
        set(&mut cfg.cache.min_ttl, &self.min_ttl);
        set(&mut cfg.cache.max_ttl, &self.max_ttl);
        set(&mut cfg.cache.stale_if_error, &self.stale_if_error);
        set(
            &mut cfg.cache.stale_while_revalidate,
            &self.stale_while_revalidate,
        );
        set(&mut cfg.cache.negative_ttl, &self.negative_ttl);
        set(
            &mut cfg.cache.error_caching_min_ttl,
            &self.error_caching_min_ttl,
        );
        if self.default_root_object.is_some() {
            cfg.default_root_object
                .clone_from(&self.default_root_object);
        }
        self.security.apply(cfg);
    }

    /// `--origin-url` makes the origin HTTP; S3 flags amend (or make) an S3 origin. Both kinds
    /// at once is refused in `effective`.
    fn apply_origin(&self, cfg: &mut EdgeConfig) {
        let s3_flags = self.origin_bucket.is_some()
            || self.origin_endpoint.is_some()
            || self.origin_region.is_some()
            || self.origin_path_style.is_some()
            || self.origin_prefix.is_some();
        if let Some(url) = &self.origin_url {
            let http = cfg
                .origin
                .http
                .get_or_insert_with(|| HttpOrigin::new(url.clone()));
            http.url.clone_from(url);
            if !s3_flags {
                cfg.origin.s3 = None;
            }
        }
        if s3_flags {
            let s3 = cfg.origin.s3.get_or_insert_with(|| S3Origin::new(""));
            if let Some(b) = &self.origin_bucket {
                s3.bucket.clone_from(b);
            }
            if self.origin_endpoint.is_some() {
                s3.endpoint.clone_from(&self.origin_endpoint);
            }
            if let Some(r) = &self.origin_region {
                s3.region.clone_from(r);
            }
            if let Some(p) = self.origin_path_style {
                s3.force_path_style = p;
            }
            if let Some(p) = &self.origin_prefix {
                s3.prefix.clone_from(p);
            }
        }
        if let Some(host) = &self.origin_host_header {
            if let Some(http) = &mut cfg.origin.http {
                http.host_header = Some(host.clone());
            }
        }
        for h in &self.origin_headers {
            cfg.origin
                .custom_headers
                .retain(|c| !c.name.eq_ignore_ascii_case(&h.name));
            cfg.origin.custom_headers.push(h.clone());
        }
    }

    /// The TLS flags over `server.tls`: `--tls-listen` or certificate pairs create the section
    /// (a file's section is kept and amended); pairs given replace the file's list.
    fn apply_tls(&self, cfg: &mut EdgeConfig) {
        let pairs: Vec<TlsCertificate> = self
            .tls_certs
            .iter()
            .zip(&self.tls_keys)
            .map(|(cert, key)| TlsCertificate {
                cert: cert.clone(),
                key: key.clone(),
            })
            .collect();
        if self.tls_listen.is_none() && pairs.is_empty() && cfg.server.tls.is_none() {
            return;
        }
        let tls = cfg.server.tls.get_or_insert_with(|| TlsConfig {
            listen: "0.0.0.0:8443".into(),
            certificates: Vec::new(),
            min_version: TlsVersion::default(),
            http2: true,
            public_port: 443,
        });
        if let Some(l) = &self.tls_listen {
            tls.listen.clone_from(l);
        }
        if !pairs.is_empty() {
            tls.certificates = pairs;
        }
        if let Some(v) = self.tls_min_version {
            tls.min_version = v;
        }
        if let Some(p) = self.tls_public_port {
            tls.public_port = p;
        }
        if let Some(h2) = self.tls_http2 {
            tls.http2 = h2;
        }
    }

    /// The config to run with: the file (if any), flags over it, validated.
    pub fn effective(&self, file_text: Option<&str>) -> anyhow::Result<EdgeConfig> {
        if self.tls_certs.len() != self.tls_keys.len() {
            return Err(anyhow!(
                "--tls-cert and --tls-key come in pairs: {} certificates, {} keys",
                self.tls_certs.len(),
                self.tls_keys.len()
            ));
        }
        let mut cfg = match file_text {
            Some(t) => EdgeConfig::from_yaml(t).context("cannot parse config file")?,
            None => EdgeConfig::for_bucket(""),
        };
        self.apply(&mut cfg);
        if cfg.origin.s3.is_some() && cfg.origin.http.is_some() {
            return Err(anyhow!(
                "origin: --origin-url (HTTP) and --origin-bucket (S3) are two origins; give one"
            ));
        }
        if cfg.origin.s3.as_ref().is_none_or(|s| s.bucket.is_empty()) && cfg.origin.http.is_none() {
            return Err(anyhow!(
                "origin.s3.bucket: required (pass --origin-bucket or --origin-url, or set it in --config)"
            ));
        }
        cfg.validate().map_err(|e| anyhow!("invalid config: {e}"))?;
        // Parse every trusted key now so a bad PEM fails start-up / is a rejected reload.
        kubefront_edge::security::Security::from_config(&cfg.security)
            .map_err(|e| anyhow!("invalid config: {e}"))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kubefront-edge").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn flags_override_file() {
        let cli = parse(&[
            "--origin-bucket",
            "flagbucket",
            "--origin-path-style",
            "--cache-memory",
            "64Mi",
            "--max-object-size",
            "1Mi",
            "--default-ttl",
            "5m",
            "--listen",
            "127.0.0.1:0",
            "--origin-idle-timeout",
            "7s",
            "--error-caching-min-ttl",
            "0s",
        ]);
        let cfg = cli
            .run
            .effective(Some(
                "origin: {s3: {bucket: filebucket, region: eu-west-1}}\ncache: {defaultTTL: 1h}",
            ))
            .expect("valid");
        let s3 = cfg.origin.s3.as_ref().expect("s3");
        assert_eq!(s3.bucket, "flagbucket");
        assert_eq!(s3.region, "eu-west-1");
        assert!(s3.force_path_style);
        assert_eq!(cfg.cache.memory, ByteSize(64 << 20));
        assert_eq!(cfg.cache.default_ttl, Dur::secs(300));
        assert_eq!(cfg.server.listen, "127.0.0.1:0");
        assert_eq!(
            cfg.origin.timeouts.idle(),
            std::time::Duration::from_secs(7)
        );
        assert!(cfg.cache.error_caching_min_ttl.is_zero());
    }

    #[test]
    fn origin_url_makes_an_http_origin_with_headers_and_refuses_a_second_kind() {
        let cfg = parse(&[
            "--origin-url",
            "http://127.0.0.1:9000/base",
            "--origin-host-header",
            "assets.example.com",
            "--origin-header",
            "X-Origin-Secret: @/run/secret",
            "--origin-header",
            "X-Env:prod",
        ])
        .run
        .effective(Some("origin: {s3: {bucket: filebucket}}"))
        .expect("valid");
        assert!(
            cfg.origin.s3.is_none(),
            "the URL replaces the file's S3 origin"
        );
        let http = cfg.origin.http.as_ref().expect("http");
        assert_eq!(http.url, "http://127.0.0.1:9000/base");
        assert_eq!(http.host_header.as_deref(), Some("assets.example.com"));
        let h = &cfg.origin.custom_headers;
        assert_eq!(h[0].value_file.as_deref(), Some("/run/secret"));
        assert_eq!(h[1].value.as_deref(), Some("prod"));
        let err = parse(&["--origin-url", "http://a", "--origin-bucket", "bkt"])
            .run
            .effective(None)
            .expect_err("two origins");
        assert!(err.to_string().contains("give one"), "{err}");
        let err = parse(&["--origin-url", "ftp://a"])
            .run
            .effective(None)
            .expect_err("bad url");
        assert!(err.to_string().contains("origin.http.url"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(&[]).run.effective(None).expect_err("no bucket");
        assert!(err.to_string().contains("origin.s3.bucket"), "{err}");
        let err = parse(&[
            "--origin-bucket",
            "bkt",
            "--min-ttl",
            "2d",
            "--default-ttl",
            "1d",
        ])
        .run
        .effective(None)
        .expect_err("bad ttl");
        assert!(err.to_string().contains("cache.minTTL"), "{err}");
        assert!(Cli::try_parse_from(["kubefront-edge", "--default-ttl", "forever"]).is_err());
        assert!(Cli::try_parse_from(["kubefront-edge", "--cache-memory", "lots"]).is_err());
    }

    #[test]
    fn check_config_subcommand() {
        let cli = parse(&["check-config", "/tmp/x.yaml"]);
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
    }
}
