//! The `security` section of `EdgeConfig`: trusted key groups for CloudFront-style signed URLs
//! and cookies, which paths require them, viewer request limits and the response headers policy.
//!
//! Serde-only like the rest of the contract: the operator renders this from a Distribution
//! (key groups from a Secret, referenced per behavior) and the proxy compiles it at start-up
//! (`crate::security::Security::from_config`), where PEM keys are parsed and checked.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur};

/// Everything the edge needs to restrict and harden viewer access.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityConfig {
    /// Named sets of public keys (CloudFront key groups). Several keys in one group are valid
    /// at once, which is how keys are rotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_key_groups: Vec<KeyGroup>,
    /// Ordered path patterns whose requests must carry a valid signed URL or signed cookies;
    /// the first match wins. Paths matching none are public.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_paths: Vec<SignedPath>,
    /// Where the viewer's IP (checked against a custom policy's `IpAddress`) comes from.
    #[serde(default, skip_serializing_if = "ClientIpConfig::is_default")]
    pub client_ip: ClientIpConfig,
    #[serde(default)]
    pub limits: ViewerLimits,
    #[serde(default, skip_serializing_if = "ResponseHeadersPolicyConfig::is_empty")]
    pub response_headers: ResponseHeadersPolicyConfig,
    /// Child edges of an origin shield: requests carrying this header with the shared token
    /// come from an edge that already checked the viewer's signature, so signed-path checks
    /// are skipped for them (and only for them; the token is compared in constant time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_children: Option<TrustedChildren>,
}

/// The shared secret a shield's children send (`origin.customHeaders` on the children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedChildren {
    /// Header name, e.g. `X-Kubefront-Shield`.
    pub header: String,
    /// File holding the token (a mounted Secret); never inline, so never in a ConfigMap.
    pub value_file: String,
}

/// A CloudFront trusted key group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyGroup {
    pub name: String,
    pub keys: Vec<TrustedKey>,
}

/// One public key, referenced by viewers through `Key-Pair-Id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedKey {
    /// The `Key-Pair-Id` viewers send (CloudFront public key id, e.g. `K2JCJMDEHXQW5F`).
    pub id: String,
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`): RSA (2048+ bits) or EC P-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// Alternatively a file holding the PEM (e.g. a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
}

/// Paths that require a signature from one of the named key groups, or, with `public: true`,
/// paths that stay public although a later, broader entry is signed (a CloudFront cache
/// behavior without trusted key groups). First match wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedPath {
    /// CloudFront path pattern (`*` any run of characters, `?` one), matched against the
    /// normalized path.
    pub path_pattern: String,
    /// Names of `trustedKeyGroups` whose keys may sign for these paths (none when `public`).
    #[serde(default)]
    pub key_groups: Vec<String>,
    /// Matching paths need no signature. Explicit, so a forgotten key group is an error and
    /// never opens a path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// The viewer IP defaults to the TCP peer. Behind a load balancer, name the header it sets and
/// how many proxies (counted from the right of `X-Forwarded-For`) are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIpConfig {
    /// e.g. `X-Forwarded-For`; absent means the TCP peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Number of trusted proxies that appended to the header (the address they saw is the
    /// viewer's). 1 = take the right-most entry.
    #[serde(default = "default_trusted_hops")]
    pub trusted_hops: u32,
}

fn default_trusted_hops() -> u32 {
    1
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self {
            header: None,
            trusted_hops: default_trusted_hops(),
        }
    }
}

impl ClientIpConfig {
    fn is_default(&self) -> bool {
        self.header.is_none()
    }
}

/// Viewer-side limits against oversized and slow requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ViewerLimits {
    /// Longest request target (path + query) accepted; longer gets 414.
    #[serde(default = "default_max_url_bytes")]
    pub max_url_bytes: u32,
    /// Largest total of header names + values accepted; larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: u32,
    /// A viewer must send its complete request head within this time.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// Open viewer connections beyond this wait in the accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_url_bytes() -> u32 {
    8 * 1024
}
fn default_max_header_bytes() -> u32 {
    20 * 1024
}
fn default_header_read_timeout() -> Dur {
    Dur::secs(10)
}
fn default_max_connections() -> u32 {
    10_000
}

impl Default for ViewerLimits {
    fn default() -> Self {
        Self {
            max_url_bytes: default_max_url_bytes(),
            max_header_bytes: default_max_header_bytes(),
            header_read_timeout: default_header_read_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// CloudFront response headers policy: CORS and security headers added to every viewer answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseHeadersPolicyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_transport_security: Option<HstsConfig>,
    /// Adds `X-Content-Type-Options: nosniff`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_type_options: bool,
    /// `X-Frame-Options`: `DENY` or `SAMEORIGIN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_options: Option<String>,
    /// `Referrer-Policy` value, e.g. `strict-origin-when-cross-origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<String>,
}

impl ResponseHeadersPolicyConfig {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Cross-origin resource sharing for viewers' browsers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or `*`.
    pub allow_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Dur>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
}

fn default_cors_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into()]
}

/// `Strict-Transport-Security`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HstsConfig {
    pub max_age: Dur,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_subdomains: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

impl SecurityConfig {
    /// Whether nothing differs from the defaults (then the section is left out of YAML).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Structural checks; key material itself is parsed (and rejected) by the proxy at load.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.trusted_children {
            let token = !c.header.is_empty()
                && c.header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token {
                return Err(err(
                    "security.trustedChildren.header",
                    format!("{:?} is not a header name", c.header),
                ));
            }
            if c.value_file.is_empty() {
                return Err(err(
                    "security.trustedChildren.valueFile",
                    "must name the token file",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, g) in self.trusted_key_groups.iter().enumerate() {
            let field = format!("security.trustedKeyGroups[{i}]");
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return Err(err(
                    format!("{field}.name"),
                    "must be a non-empty, unique name",
                ));
            }
            if g.keys.is_empty() {
                return Err(err(format!("{field}.keys"), "needs at least one key"));
            }
            for (j, k) in g.keys.iter().enumerate() {
                let kf = format!("{field}.keys[{j}]");
                if k.id.is_empty()
                    || !k
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(err(
                        format!("{kf}.id"),
                        "must be non-empty ASCII letters, digits, '-' or '_'",
                    ));
                }
                if k.public_key_pem.is_some() == k.public_key_file.is_some() {
                    return Err(err(
                        kf,
                        "exactly one of publicKeyPem and publicKeyFile is required",
                    ));
                }
            }
        }
        for (i, p) in self.signed_paths.iter().enumerate() {
            let field = format!("security.signedPaths[{i}]");
            if !(p.path_pattern.starts_with('/') || p.path_pattern.starts_with('*'))
                || p.path_pattern
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b' ')
            {
                return Err(err(
                    format!("{field}.pathPattern"),
                    "must start with '/' or '*' and contain no spaces or control characters",
                ));
            }
            match (p.public, p.key_groups.is_empty()) {
                (false, true) => {
                    return Err(err(
                        format!("{field}.keyGroups"),
                        "needs at least one key group (or public: true)",
                    ))
                }
                (true, false) => {
                    return Err(err(
                        format!("{field}.keyGroups"),
                        "must be empty when public is true",
                    ))
                }
                _ => {}
            }
            for (j, g) in p.key_groups.iter().enumerate() {
                if !names.contains(g.as_str()) {
                    return Err(err(
                        format!("{field}.keyGroups[{j}]"),
                        format!("{g:?} is not a trustedKeyGroups name"),
                    ));
                }
            }
        }
        if let Some(h) = &self.client_ip.header {
            if !is_token(h) {
                return Err(err("security.clientIp.header", "not a header name"));
            }
            if self.client_ip.trusted_hops == 0 {
                return Err(err(
                    "security.clientIp.trustedHops",
                    "must be at least 1 when a header is named",
                ));
            }
        }
        let l = &self.limits;
        if !(256..=65_535).contains(&l.max_url_bytes) {
            return Err(err(
                "security.limits.maxUrlBytes",
                "must be within 256..=65535",
            ));
        }
        if !(1024..=1_048_576).contains(&l.max_header_bytes) {
            return Err(err(
                "security.limits.maxHeaderBytes",
                "must be within 1024..=1048576",
            ));
        }
        if l.header_read_timeout == Dur::ZERO {
            return Err(err("security.limits.headerReadTimeout", "must be positive"));
        }
        if l.max_connections == 0 {
            return Err(err("security.limits.maxConnections", "must be positive"));
        }
        self.response_headers.validate()
    }
}

impl ResponseHeadersPolicyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let f = "security.responseHeaders";
        if let Some(c) = &self.cors {
            if c.allow_origins.is_empty() {
                return Err(err(format!("{f}.cors.allowOrigins"), "must not be empty"));
            }
            for (i, o) in c.allow_origins.iter().enumerate() {
                let ok = o == "*"
                    || ((o.starts_with("http://") || o.starts_with("https://"))
                        && !o.ends_with('/')
                        && o.bytes().all(|b| b.is_ascii_graphic()));
                if !ok {
                    return Err(err(
                        format!("{f}.cors.allowOrigins[{i}]"),
                        format!("{o:?} must be '*' or an origin like https://app.example.com"),
                    ));
                }
            }
            if c.allow_credentials && c.allow_origins.iter().any(|o| o == "*") {
                return Err(err(
                    format!("{f}.cors.allowCredentials"),
                    "cannot be combined with allowOrigins '*'",
                ));
            }
            for (name, list) in [
                ("allowMethods", &c.allow_methods),
                ("allowHeaders", &c.allow_headers),
                ("exposeHeaders", &c.expose_headers),
            ] {
                for (i, v) in list.iter().enumerate() {
                    if !(is_token(v) || v == "*") {
                        return Err(err(
                            format!("{f}.cors.{name}[{i}]"),
                            format!("{v:?} is not a token"),
                        ));
                    }
                }
            }
        }
        if let Some(fo) = &self.frame_options {
            if !fo.eq_ignore_ascii_case("DENY") && !fo.eq_ignore_ascii_case("SAMEORIGIN") {
                return Err(err(
                    format!("{f}.frameOptions"),
                    "must be DENY or SAMEORIGIN",
                ));
            }
        }
        if let Some(rp) = &self.referrer_policy {
            const ALLOWED: &[&str] = &[
                "no-referrer",
                "no-referrer-when-downgrade",
                "origin",
                "origin-when-cross-origin",
                "same-origin",
                "strict-origin",
                "strict-origin-when-cross-origin",
                "unsafe-url",
            ];
            if !ALLOWED.contains(&rp.as_str()) {
                return Err(err(
                    format!("{f}.referrerPolicy"),
                    format!("{rp:?} is not a Referrer-Policy value"),
                ));
            }
        }
        Ok(())
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// RFC 9110 token (header names, methods).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
trustedKeyGroups:
  - name: main
    keys:
      - {id: K2JCJMDEHXQW5F, publicKeyPem: "-----BEGIN PUBLIC KEY-----\n..."}
      - {id: K_NEXT, publicKeyFile: /etc/kubefront/keys/next.pem}
signedPaths:
  - {pathPattern: "/private/*", keyGroups: [main]}
clientIp: {header: X-Forwarded-For, trustedHops: 1}
limits: {maxUrlBytes: 8192, maxHeaderBytes: 20480, headerReadTimeout: 5s, maxConnections: 100}
responseHeaders:
  cors: {allowOrigins: ["https://app.example.com"], allowHeaders: [Range], maxAge: 10m}
  strictTransportSecurity: {maxAge: 365d, includeSubdomains: true}
  contentTypeOptions: true
  frameOptions: DENY
  referrerPolicy: strict-origin-when-cross-origin
"#;

    #[test]
    fn full_section_parses_validates_and_round_trips() {
        let cfg: SecurityConfig = serde_yaml::from_str(YAML).expect("parse");
        cfg.validate().expect("valid");
        assert_eq!(cfg.trusted_key_groups[0].keys.len(), 2);
        assert_eq!(cfg.limits.header_read_timeout, Dur::secs(5));
        let cors = cfg.response_headers.cors.as_ref().expect("cors");
        assert_eq!(cors.allow_methods, vec!["GET", "HEAD"]);
        let again: SecurityConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&cfg).expect("ser")).expect("reparse");
        assert_eq!(cfg, again);
    }

    #[test]
    fn empty_section_is_default_and_valid() {
        let cfg: SecurityConfig = serde_yaml::from_str("{}").expect("parse");
        assert_eq!(cfg, SecurityConfig::default());
        cfg.validate().expect("valid");
        assert_eq!(cfg.limits.max_url_bytes, 8192);
    }

    #[test]
    fn validation_names_the_field() {
        let base: SecurityConfig = serde_yaml::from_str(YAML).expect("parse");
        type Mutation = Box<dyn Fn(&mut SecurityConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "security.trustedKeyGroups[0].name",
                Box::new(|c| c.trusted_key_groups[0].name.clear()),
            ),
            (
                "security.trustedKeyGroups[0].keys",
                Box::new(|c| c.trusted_key_groups[0].keys.clear()),
            ),
            (
                "security.trustedKeyGroups[0].keys[0].id",
                Box::new(|c| c.trusted_key_groups[0].keys[0].id = "a b".into()),
            ),
            (
                "security.trustedKeyGroups[0].keys[0]",
                Box::new(|c| c.trusted_key_groups[0].keys[0].public_key_file = Some("/x".into())),
            ),
            (
                "security.signedPaths[0].pathPattern",
                Box::new(|c| c.signed_paths[0].path_pattern = "private".into()),
            ),
            (
                "security.signedPaths[0].keyGroups[0]",
                Box::new(|c| c.signed_paths[0].key_groups[0] = "other".into()),
            ),
            (
                "security.clientIp.trustedHops",
                Box::new(|c| c.client_ip.trusted_hops = 0),
            ),
            (
                "security.limits.maxUrlBytes",
                Box::new(|c| c.limits.max_url_bytes = 10),
            ),
            (
                "security.limits.maxHeaderBytes",
                Box::new(|c| c.limits.max_header_bytes = 0),
            ),
            (
                "security.limits.maxConnections",
                Box::new(|c| c.limits.max_connections = 0),
            ),
            (
                "security.responseHeaders.cors.allowOrigins[0]",
                Box::new(|c| {
                    if let Some(cors) = c.response_headers.cors.as_mut() {
                        cors.allow_origins[0] = "app.example.com".into();
                    }
                }),
            ),
            (
                "security.responseHeaders.frameOptions",
                Box::new(|c| c.response_headers.frame_options = Some("ALLOW".into())),
            ),
            (
                "security.responseHeaders.referrerPolicy",
                Box::new(|c| c.response_headers.referrer_policy = Some("sometimes".into())),
            ),
        ];
        for (field, mutate) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            assert_eq!(c.validate().expect_err(field).field, field);
        }
    }
}
