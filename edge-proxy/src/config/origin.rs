//! The origin side of the contract: a private S3 bucket or an HTTP(S) server, the timeouts and
//! retries of every fetch, the headers added to origin requests, and an optional secondary
//! origin that takes over when the primary fails (CloudFront's origin groups).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur};

/// Where misses are fetched from: exactly one of `s3` and `http`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Origin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOrigin>,
    #[serde(default)]
    pub timeouts: OriginTimeouts,
    /// Attempts per idempotent origin fetch, including the first.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Headers added to every request to an HTTP origin, e.g. a shared secret the origin checks
    /// (the usual way to keep an HTTP origin private, and how a shield trusts its children).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_headers: Vec<OriginCustomHeader>,
    /// Where a request goes when this origin fails it (once, per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Box<Failover>>,
}

fn default_max_attempts() -> u32 {
    3
}

impl OriginConfig {
    /// An S3 origin with default timeouts.
    pub fn s3(s3: S3Origin) -> OriginConfig {
        OriginConfig {
            s3: Some(s3),
            http: None,
            timeouts: OriginTimeouts::default(),
            max_attempts: default_max_attempts(),
            custom_headers: Vec::new(),
            failover: None,
        }
    }

    /// An HTTP origin with default timeouts.
    pub fn http(url: impl Into<String>) -> OriginConfig {
        OriginConfig {
            s3: None,
            http: Some(HttpOrigin::new(url)),
            ..OriginConfig::s3(S3Origin::new(""))
        }
    }

    /// The S3 settings, created (with an empty bucket) when absent: for flags and overrides
    /// that amend a config. Switches an HTTP origin to S3.
    pub fn s3_mut(&mut self) -> &mut S3Origin {
        self.http = None;
        self.s3.get_or_insert_with(|| S3Origin::new(""))
    }

    /// What this origin is, for logs: the bucket or the URL.
    pub fn describe(&self) -> String {
        match (&self.s3, &self.http) {
            (Some(s3), _) => format!("s3://{}/{}", s3.bucket, s3.prefix),
            (None, Some(h)) => h.url.clone(),
            (None, None) => "(none)".into(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("origin", true)
    }

    fn validate_at(&self, at: &str, may_fail_over: bool) -> Result<(), ConfigError> {
        match (&self.s3, &self.http) {
            (Some(s3), None) => s3.validate(&format!("{at}.s3"))?,
            (None, Some(http)) => http.validate(&format!("{at}.http"))?,
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(at, "give one of s3 and http, not both"))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    format!("{at}.s3"),
                    "required (or origin.http)",
                ))
            }
        }
        if self.max_attempts == 0 || self.max_attempts > 10 {
            return Err(ConfigError::new(
                format!("{at}.maxAttempts"),
                "must be within 1..=10",
            ));
        }
        for (name, d) in [
            ("connect", self.timeouts.connect),
            ("firstByte", self.timeouts.first_byte),
            ("total", self.timeouts.total),
            (
                "idle",
                self.timeouts.idle.unwrap_or(self.timeouts.first_byte),
            ),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    format!("{at}.timeouts.{name}"),
                    "must be greater than zero",
                ));
            }
        }
        if self.custom_headers.len() > MAX_CUSTOM_HEADERS {
            return Err(ConfigError::new(
                format!("{at}.customHeaders"),
                format!("at most {MAX_CUSTOM_HEADERS}"),
            ));
        }
        for (i, h) in self.custom_headers.iter().enumerate() {
            h.validate(&format!("{at}.customHeaders[{i}]"))?;
        }
        if let Some(f) = &self.failover {
            if !may_fail_over {
                return Err(ConfigError::new(
                    format!("{at}.failover"),
                    "a secondary origin cannot fail over again",
                ));
            }
            f.validate(&format!("{at}.failover"))?;
        }
        Ok(())
    }
}

/// CloudFront allows 10 origin custom headers.
pub const MAX_CUSTOM_HEADERS: usize = 10;

/// A private S3 bucket. Credentials never appear here: they come from the AWS credential chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Origin {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Custom endpoint for S3-compatible servers (MinIO, Garage); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    /// Key prefix every viewer path is mapped under; viewers can never escape it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3Origin {
    /// A bucket in the default region, AWS endpoint, no prefix.
    pub fn new(bucket: impl Into<String>) -> S3Origin {
        S3Origin {
            bucket: bucket.into(),
            region: default_region(),
            endpoint: None,
            force_path_style: false,
            prefix: String::new(),
        }
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !is_valid_bucket_name(&self.bucket) {
            return Err(ConfigError::new(
                format!("{at}.bucket"),
                format!(
                    "{:?} is not a valid bucket name (3-63 chars of a-z, 0-9, '.', '-', '_')",
                    self.bucket
                ),
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.region"),
                "must not be empty",
            ));
        }
        if let Some(ep) = &self.endpoint {
            if http_authority(ep).is_none() {
                return Err(ConfigError::new(
                    format!("{at}.endpoint"),
                    format!("{ep:?} must be an http:// or https:// URL"),
                ));
            }
        }
        if self.prefix.starts_with('/') || self.prefix.split('/').any(|s| s == ".." || s == ".") {
            return Err(ConfigError::new(
                format!("{at}.prefix"),
                "must be a relative key prefix without '.' or '..' segments",
            ));
        }
        Ok(())
    }
}

/// An HTTP(S) server: the viewer's normalized path (and the query parameters in the cache key)
/// are appended to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpOrigin {
    /// `http://host[:port][/base]` or `https://…`; no query, no fragment, no credentials.
    pub url: String,
    /// `Host` sent to the origin; the URL's host (and port) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    #[serde(default, skip_serializing_if = "OriginTls::is_default")]
    pub tls: OriginTls,
}

impl HttpOrigin {
    pub fn new(url: impl Into<String>) -> HttpOrigin {
        HttpOrigin {
            url: url.into(),
            host_header: None,
            tls: OriginTls::default(),
        }
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let field = format!("{at}.url");
        let Some(authority) = http_authority(&self.url) else {
            return Err(ConfigError::new(
                field,
                format!("{:?} must be an http:// or https:// URL", self.url),
            ));
        };
        if authority.contains('@') {
            return Err(ConfigError::new(
                field,
                "must not carry credentials (use customHeaders)",
            ));
        }
        if self.url.contains(['?', '#']) || self.url.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(ConfigError::new(
                field,
                "must be a plain base URL without query, fragment, spaces or control characters",
            ));
        }
        if let Some(h) = &self.host_header {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                return Err(ConfigError::new(
                    format!("{at}.hostHeader"),
                    format!("{h:?} is not a host[:port]"),
                ));
            }
        }
        if self.tls.ca_file.as_deref() == Some("") {
            return Err(ConfigError::new(
                format!("{at}.tls.caFile"),
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// How an `https://` origin's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginTls {
    /// Verify the certificate chain and name (off only for test origins: logged loudly).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// PEM bundle of the CAs to trust instead of the system's (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for OriginTls {
    fn default() -> Self {
        OriginTls {
            verify: true,
            ca_file: None,
        }
    }
}

impl OriginTls {
    fn is_default(&self) -> bool {
        *self == OriginTls::default()
    }
}

/// One header added to origin requests. A secret value belongs in `valueFile` (a mounted
/// Secret, read when the config is loaded) so it never lands in a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginCustomHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_file: Option<String>,
}

/// Headers the edge sets itself on origin requests; a custom header cannot replace them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "via",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
    "expect",
    "authorization",
];

impl OriginCustomHeader {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !is_token(&self.name) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                format!("{:?} is not a header name", self.name),
            ));
        }
        let lower = self.name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-amz-") {
            return Err(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "{} is set by the edge and cannot be a custom header",
                    self.name
                ),
            ));
        }
        match (&self.value, &self.value_file) {
            (Some(v), None) => {
                if !v.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b)) {
                    return Err(ConfigError::new(
                        format!("{at}.value"),
                        "must be visible ASCII",
                    ));
                }
            }
            (None, Some(f)) if !f.is_empty() => {}
            _ => return Err(ConfigError::new(at, "give one of value and valueFile")),
        }
        Ok(())
    }
}

/// CloudFront's origin group: a request the primary fails (a listed status, or no connection)
/// is sent once to `secondary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failover {
    pub secondary: OriginConfig,
    /// Primary answers that fail over (CloudFront's choice: 400, 403, 404, 416, 500, 502, 503,
    /// 504).
    #[serde(default = "default_failover_codes")]
    pub status_codes: Vec<u16>,
    /// Fail over when the primary cannot be reached or times out.
    #[serde(default = "default_true")]
    pub connect_failures: bool,
}

/// CloudFront's failover criteria.
pub const FAILOVER_CODES: &[u16] = &[400, 403, 404, 416, 500, 502, 503, 504];

fn default_failover_codes() -> Vec<u16> {
    vec![500, 502, 503, 504]
}

impl Failover {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        for (i, c) in self.status_codes.iter().enumerate() {
            if !FAILOVER_CODES.contains(c) {
                return Err(ConfigError::new(
                    format!("{at}.statusCodes[{i}]"),
                    format!("{c} is not one of {FAILOVER_CODES:?}"),
                ));
            }
        }
        if self.status_codes.is_empty() && !self.connect_failures {
            return Err(ConfigError::new(
                at,
                "fails over on nothing: give statusCodes or connectFailures: true",
            ));
        }
        self.secondary
            .validate_at(&format!("{at}.secondary"), false)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginTimeouts {
    #[serde(default = "default_connect_timeout")]
    pub connect: Dur,
    /// Until response headers arrive.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte: Dur,
    /// Whole fetch of an object being filled into the cache. Streams through the edge
    /// (objects over `maxObjectSize`) are bounded by `idle` instead, never by this.
    #[serde(default = "default_total_timeout")]
    pub total: Dur,
    /// Longest wait for the next body chunk once the origin answered; `firstByte` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Dur>,
}

impl OriginTimeouts {
    /// The per-chunk body timeout.
    pub fn idle(&self) -> std::time::Duration {
        self.idle.unwrap_or(self.first_byte).as_duration()
    }
}

fn default_connect_timeout() -> Dur {
    Dur::secs(3)
}
fn default_first_byte_timeout() -> Dur {
    Dur::secs(10)
}
fn default_total_timeout() -> Dur {
    Dur::secs(60)
}

impl Default for OriginTimeouts {
    fn default() -> Self {
        Self {
            connect: default_connect_timeout(),
            first_byte: default_first_byte_timeout(),
            total: default_total_timeout(),
            idle: None,
        }
    }
}

/// The authority of an `http://` or `https://` URL, when it has one.
fn http_authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    (!authority.is_empty()).then_some(authority)
}

/// An RFC 9110 token (a header name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// S3 bucket naming rules, relaxed to allow `_` which S3-compatible servers accept.
pub fn is_valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use crate::config::EdgeConfig;

    fn field_of(yaml: &str) -> String {
        let cfg = EdgeConfig::from_yaml(yaml).expect("parse");
        cfg.validate().expect_err("invalid").field
    }

    #[test]
    fn an_http_origin_needs_a_plain_http_url_and_exactly_one_origin_kind() {
        let ok = EdgeConfig::from_yaml(
            "origin: {http: {url: \"https://origin.example.com/base\", hostHeader: example.com}, \
             customHeaders: [{name: X-Origin-Secret, valueFile: /etc/secret}]}",
        )
        .expect("parse");
        ok.validate().expect("valid");
        assert_eq!(ok.origin.describe(), "https://origin.example.com/base");
        for (yaml, field) in [
            ("origin: {http: {url: \"ftp://x\"}}", "origin.http.url"),
            ("origin: {http: {url: \"http://\"}}", "origin.http.url"),
            ("origin: {http: {url: \"http://a/b?c=d\"}}", "origin.http.url"),
            ("origin: {http: {url: \"http://u:p@a/\"}}", "origin.http.url"),
            (
                "origin: {http: {url: \"http://a\", hostHeader: \"a b\"}}",
                "origin.http.hostHeader",
            ),
            ("origin: {}", "origin.s3"),
            (
                "origin: {s3: {bucket: abc}, http: {url: \"http://a\"}}",
                "origin",
            ),
            (
                "origin: {http: {url: \"http://a\"}, customHeaders: [{name: Host, value: x}]}",
                "origin.customHeaders[0].name",
            ),
            (
                "origin: {http: {url: \"http://a\"}, customHeaders: [{name: X-A}]}",
                "origin.customHeaders[0]",
            ),
            (
                "origin: {http: {url: \"http://a\"}, customHeaders: [{name: X-A, value: \"a\\nb\"}]}",
                "origin.customHeaders[0].value",
            ),
        ] {
            assert_eq!(field_of(yaml), field, "{yaml}");
        }
    }

    #[test]
    fn methods_beyond_get_and_head_need_an_http_origin() {
        assert_eq!(
            field_of("origin: {s3: {bucket: abc}}\nallowedMethods: all"),
            "allowedMethods"
        );
        let ok = EdgeConfig::from_yaml(
            "origin: {http: {url: \"http://a\"}}\nallowedMethods: get-head-options",
        )
        .expect("parse");
        ok.validate().expect("valid");
        assert!(ok.allowed_methods.allows("OPTIONS") && !ok.allowed_methods.allows("POST"));
        assert!(
            EdgeConfig::from_yaml("origin: {s3: {bucket: abc}}\nallowedMethods: some").is_err()
        );
    }

    #[test]
    fn failover_names_a_secondary_that_cannot_fail_over_again() {
        let ok = EdgeConfig::from_yaml(
            "origin: {http: {url: \"http://shield:8080\"}, failover: {secondary: {s3: {bucket: assets}}, statusCodes: [500, 503]}}",
        )
        .expect("parse");
        ok.validate().expect("valid");
        let f = ok.origin.failover.as_ref().expect("failover");
        assert!(f.connect_failures);
        assert_eq!(
            f.secondary.s3.as_ref().map(|s| s.bucket.as_str()),
            Some("assets")
        );
        for (yaml, field) in [
            (
                "origin: {http: {url: \"http://a\"}, failover: {secondary: {s3: {bucket: abc}}, statusCodes: [418]}}",
                "origin.failover.statusCodes[0]",
            ),
            (
                "origin: {http: {url: \"http://a\"}, failover: {secondary: {s3: {bucket: A}}}}",
                "origin.failover.secondary.s3.bucket",
            ),
            (
                "origin: {http: {url: \"http://a\"}, failover: {secondary: {http: {url: \"http://b\"}, failover: {secondary: {s3: {bucket: abc}}}}}}",
                "origin.failover.secondary.failover",
            ),
            (
                "origin: {http: {url: \"http://a\"}, failover: {secondary: {s3: {bucket: abc}}, statusCodes: [], connectFailures: false}}",
                "origin.failover",
            ),
        ] {
            assert_eq!(field_of(yaml), field, "{yaml}");
        }
    }
}
