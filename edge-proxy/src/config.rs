//! `EdgeConfig`: the contract between the operator (which renders it into a ConfigMap) and the
//! edge proxy (which loads it from a file and merges CLI flags over it).
//!
//! This module deliberately depends only on serde so the operator can use the one definition
//! without pulling in the proxy's runtime (`default-features = false`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod origin;
pub mod security;
pub mod viewer;
pub use origin::{
    is_valid_bucket_name, Failover, HttpOrigin, OriginConfig, OriginCustomHeader, OriginTimeouts,
    OriginTls, S3Origin,
};
pub use security::SecurityConfig;
pub use viewer::{TlsCertificate, TlsConfig, TlsVersion, ViewerProtocolPolicy};

/// The only config format version this build understands. Bumped on breaking changes so an
/// old proxy rejects a newer operator's config loudly instead of misreading it.
pub const CONFIG_VERSION: &str = "kubefront.io/edge/v1";

/// Status codes that may be given a custom error response (CloudFront's allowed set).
pub const CUSTOM_ERROR_CODES: &[u16] = &[400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];

/// A config the edge proxy can run with. Field names are the camelCase YAML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeConfig {
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub server: ServerConfig,
    pub origin: OriginConfig,
    /// Object served for `/` (CloudFront's `DefaultRootObject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_root_object: Option<String>,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Ordered path-pattern overrides; the first match wins, `*` is the implicit default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behaviors: Vec<Behavior>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_error_responses: Vec<CustomErrorResponse>,
    /// Signed URLs/cookies, viewer limits and the response headers policy.
    #[serde(default, skip_serializing_if = "SecurityConfig::is_default")]
    pub security: SecurityConfig,
    /// HTTP, HTTPS or both for viewers; behaviors may override it per path.
    #[serde(default, skip_serializing_if = "ViewerProtocolPolicy::is_default")]
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    /// Which viewer methods are answered (CloudFront's allowed methods); anything beyond GET
    /// and HEAD is forwarded to an HTTP origin with its body and never cached.
    #[serde(default, skip_serializing_if = "AllowedMethods::is_default")]
    pub allowed_methods: AllowedMethods,
}

/// CloudFront's three choices of allowed methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllowedMethods {
    /// GET and HEAD, answered from the cache.
    #[default]
    GetHead,
    /// Also OPTIONS, forwarded.
    GetHeadOptions,
    /// Every method: OPTIONS, PUT, POST, PATCH, DELETE and any other token are forwarded.
    All,
}

impl FromStr for AllowedMethods {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "get-head" => Ok(AllowedMethods::GetHead),
            "get-head-options" => Ok(AllowedMethods::GetHeadOptions),
            "all" => Ok(AllowedMethods::All),
            other => Err(format!(
                "{other:?} is not a choice of allowed methods (get-head, get-head-options, all)"
            )),
        }
    }
}

impl AllowedMethods {
    fn is_default(&self) -> bool {
        *self == AllowedMethods::GetHead
    }

    /// Whether `method` (a token) is answered.
    pub fn allows(self, method: &str) -> bool {
        match method {
            "GET" | "HEAD" => true,
            "OPTIONS" => self != AllowedMethods::GetHead,
            _ => self == AllowedMethods::All,
        }
    }

    /// The `Allow` header of a 405.
    pub fn allow_header(self) -> &'static str {
        match self {
            AllowedMethods::GetHead => "GET, HEAD",
            AllowedMethods::GetHeadOptions => "GET, HEAD, OPTIONS",
            AllowedMethods::All => "GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE",
        }
    }
}

fn default_version() -> String {
    CONFIG_VERSION.to_string()
}

/// Listener addresses and viewer-facing limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Dur,
    /// The HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN), beside `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Also accept HTTP/2 with prior knowledge (h2c) on the plain listener.
    #[serde(default, skip_serializing_if = "is_false")]
    pub h2c: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "0.0.0.0:9090".into()
}
fn default_shutdown_grace() -> Dur {
    Dur::secs(20)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            shutdown_grace: default_shutdown_grace(),
            tls: None,
            h2c: false,
        }
    }
}

/// Cache sizing and the default TTL policy (CloudFront's cache policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// Byte-weighted capacity of the in-memory cache, per replica.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Larger objects stream through to the viewer uncached.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: ByteSize,
    /// Objects larger than this (and at most `maxObjectSize`) are fetched from the origin and
    /// cached as slices of this size with `Range` GETs, each slice collapsed and stored on its
    /// own: a viewer `Range` costs only the slices it covers. Also the largest single fill.
    #[serde(
        default = "default_slice_size",
        skip_serializing_if = "is_default_slice_size"
    )]
    pub slice_size: ByteSize,
    #[serde(default, rename = "minTTL")]
    pub min_ttl: Dur,
    #[serde(default = "default_default_ttl", rename = "defaultTTL")]
    pub default_ttl: Dur,
    #[serde(default = "default_max_ttl", rename = "maxTTL")]
    pub max_ttl: Dur,
    /// How long past expiry a stale copy may be served when the origin fails.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: Dur,
    /// How long past expiry a stale copy is served while one background refresh runs.
    #[serde(default)]
    pub stale_while_revalidate: Dur,
    /// TTL for cached 403/404 answers from the origin.
    #[serde(default = "default_negative_ttl", rename = "negativeTTL")]
    pub negative_ttl: Dur,
    /// How long an origin failure (5xx, timeout, bad credentials…) is remembered for a key
    /// with no stale copy to serve, so a struggling origin is not hammered (CloudFront's
    /// error-caching minimum TTL). A `customErrorResponses` entry's `ttl` overrides it for
    /// its status code. Never replaces a cached object. 0 disables.
    #[serde(
        default = "default_error_caching_min_ttl",
        rename = "errorCachingMinTTL",
        skip_serializing_if = "is_default_error_caching_min_ttl"
    )]
    pub error_caching_min_ttl: Dur,
    #[serde(default)]
    pub key: CacheKeyConfig,
}

fn default_memory() -> ByteSize {
    ByteSize(512 * 1024 * 1024)
}
fn default_max_object_size() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_slice_size() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}
fn is_default_slice_size(b: &ByteSize) -> bool {
    *b == default_slice_size()
}
/// Smallest accepted `cache.sliceSize`: smaller slices cost more origin requests than they save.
pub const MIN_SLICE_SIZE: u64 = 64 * 1024;
/// Largest accepted `cache.sliceSize` (one slice is one in-memory fill).
pub const MAX_SLICE_SIZE: u64 = 1024 * 1024 * 1024;
fn default_default_ttl() -> Dur {
    Dur::secs(86_400)
}
fn default_max_ttl() -> Dur {
    Dur::secs(365 * 86_400)
}
fn default_stale_if_error() -> Dur {
    Dur::secs(86_400)
}
fn default_negative_ttl() -> Dur {
    Dur::secs(10)
}
fn default_error_caching_min_ttl() -> Dur {
    Dur::secs(10)
}
fn is_default_error_caching_min_ttl(d: &Dur) -> bool {
    *d == default_error_caching_min_ttl()
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory: default_memory(),
            max_object_size: default_max_object_size(),
            slice_size: default_slice_size(),
            min_ttl: Dur::ZERO,
            default_ttl: default_default_ttl(),
            max_ttl: default_max_ttl(),
            stale_if_error: default_stale_if_error(),
            stale_while_revalidate: Dur::ZERO,
            negative_ttl: default_negative_ttl(),
            error_caching_min_ttl: default_error_caching_min_ttl(),
            key: CacheKeyConfig::default(),
        }
    }
}

/// What besides the normalized path distinguishes cached objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheKeyConfig {
    #[serde(default)]
    pub query_strings: QueryStrings,
    /// Request header names (case-insensitive) that are part of the key and forwarded to origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

/// `none`, `all`, or an allowlist of query parameter names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryStrings {
    Mode(QueryMode),
    Allow(Vec<String>),
}

impl Default for QueryStrings {
    fn default() -> Self {
        QueryStrings::Mode(QueryMode::None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    None,
    All,
}

/// A path-pattern override of the TTL policy (CloudFront cache behavior).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// CloudFront path pattern: `*` matches any run of characters, `?` exactly one.
    pub path_pattern: String,
    #[serde(default, rename = "minTTL", skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<Dur>,
    #[serde(
        default,
        rename = "defaultTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_ttl: Option<Dur>,
    #[serde(default, rename = "maxTTL", skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<Dur>,
    /// Overrides the Distribution-wide `viewerProtocolPolicy` for matching paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_protocol_policy: Option<ViewerProtocolPolicy>,
}

/// Replace an error answer with an object from the origin (CloudFront custom error pages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomErrorResponse {
    pub error_code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_page_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    /// How long the error answer is cached (CloudFront's ErrorCachingMinTTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Dur>,
}

/// A config problem, naming the offending field by its YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("invalid config {path}: {source}")]
    Invalid { path: String, source: ConfigError },
}

impl EdgeConfig {
    /// A config with defaults for everything but the bucket.
    pub fn for_bucket(bucket: impl Into<String>) -> Self {
        Self {
            version: default_version(),
            server: ServerConfig::default(),
            origin: OriginConfig::s3(S3Origin::new(bucket)),
            default_root_object: None,
            cache: CacheConfig::default(),
            behaviors: Vec::new(),
            custom_error_responses: Vec::new(),
            security: SecurityConfig::default(),
            viewer_protocol_policy: ViewerProtocolPolicy::default(),
            allowed_methods: AllowedMethods::default(),
        }
    }

    /// Parses YAML (JSON is YAML too) without validating.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, LoadError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: display.clone(),
            source,
        })?;
        let cfg = Self::from_yaml(&text).map_err(|source| LoadError::Parse {
            path: display.clone(),
            source,
        })?;
        cfg.validate().map_err(|source| LoadError::Invalid {
            path: display,
            source,
        })?;
        Ok(cfg)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Checks every rule the schema cannot express; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::new(
                "version",
                format!(
                    "unsupported version {:?}, expected {CONFIG_VERSION:?}",
                    self.version
                ),
            ));
        }
        validate_socket_addr("server.listen", &self.server.listen)?;
        validate_socket_addr("server.adminListen", &self.server.admin_listen)?;
        if let Some(tls) = &self.server.tls {
            tls.validate()?;
        }
        self.origin.validate()?;
        if let Some(root) = &self.default_root_object {
            if root.is_empty() || root.starts_with('/') || root.contains("..") {
                return Err(ConfigError::new(
                    "defaultRootObject",
                    "must be a relative object name such as index.html",
                ));
            }
        }
        self.cache.validate()?;
        for (i, b) in self.behaviors.iter().enumerate() {
            b.validate(&format!("behaviors[{i}]"), &self.cache)?;
        }
        for (i, e) in self.custom_error_responses.iter().enumerate() {
            e.validate(&format!("customErrorResponses[{i}]"))?;
        }
        self.security.validate()?;
        if !self.allowed_methods.is_default() && self.origin.http.is_none() {
            return Err(ConfigError::new(
                "allowedMethods",
                "methods beyond GET and HEAD need an HTTP origin (origin.http)",
            ));
        }
        Ok(())
    }
}

fn validate_socket_addr(field: &str, value: &str) -> Result<(), ConfigError> {
    value
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| ConfigError::new(field, format!("{value:?} is not an IP:port address")))
}

impl CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.memory.0 == 0 {
            return Err(ConfigError::new(
                "cache.memory",
                "must be greater than zero",
            ));
        }
        if self.max_object_size.0 == 0 {
            return Err(ConfigError::new(
                "cache.maxObjectSize",
                "must be greater than zero",
            ));
        }
        if self.max_object_size.0 > self.memory.0 {
            return Err(ConfigError::new(
                "cache.maxObjectSize",
                format!(
                    "{} exceeds cache.memory {}",
                    self.max_object_size, self.memory
                ),
            ));
        }
        // No bound by `memory`: a fill is at most min(sliceSize, object size), and cached
        // objects are at most `maxObjectSize` <= `memory`.
        if !(MIN_SLICE_SIZE..=MAX_SLICE_SIZE).contains(&self.slice_size.0) {
            return Err(ConfigError::new(
                "cache.sliceSize",
                format!(
                    "{} must be between {} and {}",
                    self.slice_size,
                    ByteSize(MIN_SLICE_SIZE),
                    ByteSize(MAX_SLICE_SIZE)
                ),
            ));
        }
        validate_ttls("cache", self.min_ttl, self.default_ttl, self.max_ttl)?;
        for (i, h) in self.key.headers.iter().enumerate() {
            if h.is_empty() || !h.bytes().all(is_tchar) {
                return Err(ConfigError::new(
                    format!("cache.key.headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
        if let QueryStrings::Allow(names) = &self.key.query_strings {
            if let Some(i) = names.iter().position(|n| n.is_empty()) {
                return Err(ConfigError::new(
                    format!("cache.key.queryStrings[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn validate_ttls(scope: &str, min: Dur, default: Dur, max: Dur) -> Result<(), ConfigError> {
    if min > default {
        return Err(ConfigError::new(
            format!("{scope}.minTTL"),
            format!("{min} is greater than defaultTTL {default}"),
        ));
    }
    if default > max {
        return Err(ConfigError::new(
            format!("{scope}.defaultTTL"),
            format!("{default} is greater than maxTTL {max}"),
        ));
    }
    Ok(())
}

impl Behavior {
    fn validate(&self, scope: &str, base: &CacheConfig) -> Result<(), ConfigError> {
        validate_path_pattern(&format!("{scope}.pathPattern"), &self.path_pattern)?;
        validate_ttls(
            scope,
            self.min_ttl.unwrap_or(base.min_ttl),
            self.default_ttl.unwrap_or(base.default_ttl),
            self.max_ttl.unwrap_or(base.max_ttl),
        )
    }
}

/// CloudFront path patterns: up to 255 chars of `A-Za-z0-9_-.*$/~"'@:+?&` (plus `%` escapes).
pub fn validate_path_pattern(field: &str, pattern: &str) -> Result<(), ConfigError> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err(ConfigError::new(field, "must be 1 to 255 characters"));
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.*$/~\"'@:+?&%=".contains(*c)))
    {
        return Err(ConfigError::new(
            field,
            format!("{pattern:?} contains {c:?}, not allowed in a path pattern"),
        ));
    }
    Ok(())
}

impl CustomErrorResponse {
    fn validate(&self, scope: &str) -> Result<(), ConfigError> {
        if !CUSTOM_ERROR_CODES.contains(&self.error_code) {
            return Err(ConfigError::new(
                format!("{scope}.errorCode"),
                format!("{} is not one of {CUSTOM_ERROR_CODES:?}", self.error_code),
            ));
        }
        if let Some(code) = self.response_code {
            if !(200..=599).contains(&code) {
                return Err(ConfigError::new(
                    format!("{scope}.responseCode"),
                    format!("{code} is not an HTTP status code"),
                ));
            }
        }
        if let Some(p) = &self.response_page_path {
            if !p.starts_with('/') || p.contains("..") {
                return Err(ConfigError::new(
                    format!("{scope}.responsePagePath"),
                    "must be an absolute path such as /404.html",
                ));
            }
        }
        Ok(())
    }
}

/// A duration written as a Kubernetes/Go duration string (`90s`, `1h30m`) or with days (`365d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const ZERO: Dur = Dur(Duration::ZERO);

    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use forms like 500ms, 10s, 5m, 1h30m, 365d")]
pub struct ParseDurError(String);

impl FromStr for Dur {
    type Err = ParseDurError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurError(s.to_string());
        let t = s.trim();
        if t.is_empty() {
            return Err(err());
        }
        if t == "0" {
            return Ok(Dur::ZERO);
        }
        let mut total: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 12 {
                return Err(err());
            }
            let n: u128 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let nanos_per: u128 = match &rest[..unit_len] {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "d" => 86_400_000_000_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total = total.checked_add(n * nanos_per).ok_or_else(err)?;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err())?;
        Ok(Dur(Duration::new(secs, (total % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let mut secs = d.as_secs();
        let millis = d.subsec_millis();
        let mut out = String::new();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        if secs > 0 {
            out.push_str(&format!("{secs}s"));
        }
        if millis > 0 {
            out.push_str(&format!("{millis}ms"));
        }
        f.write_str(&out)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur::secs(s)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A byte count written as a Kubernetes quantity (`512Mi`, `1G`) or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: use a Kubernetes quantity such as 512Mi, 1Gi or 1000000")]
pub struct ParseSizeError(String);

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSizeError(s.to_string());
        let t = s.trim();
        let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 {
            return Err(err());
        }
        let n: u64 = t[..digits].parse().map_err(|_| err())?;
        let mult: u64 = match &t[digits..] {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if n >= size && n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
version: kubefront.io/edge/v1
server: {listen: "127.0.0.1:8080", adminListen: "127.0.0.1:9090"}
origin:
  s3: {bucket: assets, region: us-east-1, endpoint: "http://minio:9000", forcePathStyle: true, prefix: site/}
  timeouts: {connect: 1s, firstByte: 5s, total: 30s}
defaultRootObject: index.html
cache:
  memory: 256Mi
  maxObjectSize: 16Mi
  minTTL: 0s
  defaultTTL: 24h
  maxTTL: 365d
  staleIfError: 1d
  staleWhileRevalidate: 60s
  negativeTTL: 10s
  key: {queryStrings: [v, lang], headers: [Accept-Language]}
behaviors:
  - {pathPattern: "/static/*", defaultTTL: 365d}
customErrorResponses:
  - {errorCode: 404, responsePagePath: /404.html, responseCode: 404, ttl: 10s}
"#;

    #[test]
    fn full_config_parses_validates_and_round_trips() {
        let cfg = EdgeConfig::from_yaml(FULL).expect("parse");
        cfg.validate().expect("valid");
        assert_eq!(cfg.cache.memory, ByteSize(256 << 20));
        assert_eq!(cfg.cache.max_ttl, Dur::secs(365 * 86_400));
        assert_eq!(
            cfg.cache.key.query_strings,
            QueryStrings::Allow(vec!["v".into(), "lang".into()])
        );
        assert_eq!(cfg.behaviors[0].default_ttl, Some(Dur::secs(365 * 86_400)));
        let again = EdgeConfig::from_yaml(&cfg.to_yaml()).expect("reparse");
        assert_eq!(cfg, again);
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let cfg = EdgeConfig::from_yaml("origin: {s3: {bucket: assets}}").expect("parse");
        cfg.validate().expect("valid");
        assert_eq!(cfg, EdgeConfig::for_bucket("assets"));
        assert_eq!(
            cfg.cache.key.query_strings,
            QueryStrings::Mode(QueryMode::None)
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = EdgeConfig::from_yaml("origin: {s3: {bucket: a, buckett: b}}").unwrap_err();
        assert!(err.to_string().contains("buckett"), "{err}");
    }

    fn invalid(mutate: impl FnOnce(&mut EdgeConfig)) -> ConfigError {
        let mut cfg = EdgeConfig::for_bucket("assets");
        mutate(&mut cfg);
        cfg.validate().expect_err("should be invalid")
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn validation_names_the_field() {
        let cases: Vec<(&str, Box<dyn FnOnce(&mut EdgeConfig)>)> = vec![
            ("version", Box::new(|c| c.version = "v9".into())),
            (
                "server.listen",
                Box::new(|c| c.server.listen = "nope".into()),
            ),
            (
                "origin.s3.bucket",
                Box::new(|c| c.origin.s3_mut().bucket = "A".into()),
            ),
            (
                "origin.s3.endpoint",
                Box::new(|c| c.origin.s3_mut().endpoint = Some("minio:9000".into())),
            ),
            (
                "origin.s3.prefix",
                Box::new(|c| c.origin.s3_mut().prefix = "../x".into()),
            ),
            (
                "origin.maxAttempts",
                Box::new(|c| c.origin.max_attempts = 0),
            ),
            (
                "origin.timeouts.total",
                Box::new(|c| c.origin.timeouts.total = Dur::ZERO),
            ),
            (
                "defaultRootObject",
                Box::new(|c| c.default_root_object = Some("/index.html".into())),
            ),
            ("cache.memory", Box::new(|c| c.cache.memory = ByteSize(0))),
            (
                "cache.maxObjectSize",
                Box::new(|c| c.cache.max_object_size = ByteSize(1 << 40)),
            ),
            (
                "cache.sliceSize",
                Box::new(|c| c.cache.slice_size = ByteSize(1024)),
            ),
            (
                "cache.minTTL",
                Box::new(|c| c.cache.min_ttl = Dur::secs(999_999)),
            ),
            (
                "cache.defaultTTL",
                Box::new(|c| c.cache.max_ttl = Dur::secs(1)),
            ),
            (
                "cache.key.headers[0]",
                Box::new(|c| c.cache.key.headers = vec!["bad header".into()]),
            ),
            (
                "behaviors[0].pathPattern",
                Box::new(|c| {
                    c.behaviors.push(Behavior {
                        path_pattern: "/a b".into(),
                        min_ttl: None,
                        default_ttl: None,
                        max_ttl: None,
                        viewer_protocol_policy: None,
                    })
                }),
            ),
            (
                "behaviors[0].defaultTTL",
                Box::new(|c| {
                    c.behaviors.push(Behavior {
                        path_pattern: "/x/*".into(),
                        min_ttl: None,
                        default_ttl: Some(Dur::secs(400 * 86_400)),
                        max_ttl: None,
                        viewer_protocol_policy: None,
                    })
                }),
            ),
            (
                "customErrorResponses[0].errorCode",
                Box::new(|c| {
                    c.custom_error_responses.push(CustomErrorResponse {
                        error_code: 418,
                        response_page_path: None,
                        response_code: None,
                        ttl: None,
                    })
                }),
            ),
        ];
        for (field, mutate) in cases {
            assert_eq!(invalid(mutate).field, field);
        }
    }

    #[test]
    fn durations_parse_go_and_day_forms() {
        let ok = [
            ("0", 0),
            ("0s", 0),
            ("10s", 10),
            ("5m", 300),
            ("1h30m", 5400),
            ("24h", 86_400),
            ("365d", 365 * 86_400),
            ("1d12h", 129_600),
        ];
        for (s, secs) in ok {
            assert_eq!(s.parse::<Dur>().expect(s), Dur::secs(secs), "{s}");
        }
        assert_eq!(
            "500ms".parse::<Dur>().expect("ms").0,
            Duration::from_millis(500)
        );
        for bad in [
            "",
            "s",
            "10",
            "-1s",
            "1w",
            "1.5h",
            "10 s",
            "99999999999999999999s",
        ] {
            assert!(bad.parse::<Dur>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations_display_round_trips() {
        for s in ["0s", "10s", "1h30m", "365d", "1d12h", "500ms", "1m1s"] {
            assert_eq!(s.parse::<Dur>().expect(s).to_string(), s);
        }
    }

    #[test]
    fn sizes_parse_kubernetes_quantities() {
        let ok = [
            ("512Mi", 512u64 << 20),
            ("1Gi", 1 << 30),
            ("64Ki", 64 << 10),
            ("1k", 1000),
            ("2M", 2_000_000),
            ("1000", 1000),
        ];
        for (s, n) in ok {
            assert_eq!(s.parse::<ByteSize>().expect(s), ByteSize(n));
        }
        for bad in ["", "Mi", "1.5Gi", "1mi", "-1", "99999999999Ti"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} should fail");
        }
        assert_eq!(ByteSize(512 << 20).to_string(), "512Mi");
        assert_eq!(ByteSize(1500).to_string(), "1500");
    }

    #[test]
    fn bucket_names() {
        for ok in ["assets", "my.bucket-1", "abc", "a_b"] {
            assert!(is_valid_bucket_name(ok), "{ok}");
        }
        for bad in ["ab", "Assets", "-x1", "a/b", &"a".repeat(64)] {
            assert!(!is_valid_bucket_name(bad), "{bad}");
        }
    }
}
