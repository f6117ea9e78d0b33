//! Viewer-facing security of the edge: CloudFront-compatible signed URLs and cookies checked
//! before any cache lookup, path normalization that cannot escape the origin prefix, request
//! size limits, and the response headers policy (CORS + security headers).
//!
//! Everything here is pure and synchronous; the server calls [`Security::authorize`] per viewer
//! request and [`ResponseHeadersPolicy::apply`] per response.

pub mod b64;
#[cfg(feature = "runtime")]
pub mod cli;
pub mod headers;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod pattern;
pub mod policy;
pub mod signed;
pub mod verified;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, Uri};

use crate::config::security::{ClientIpConfig, SecurityConfig, ViewerLimits};
pub use headers::{Preflight, ResponseHeadersPolicy};
pub use keys::{HashAlgorithm, PublicKey};
pub use metrics::SecurityMetrics;
pub use signed::{Allowed, DenyReason, SignatureGate, SignedRequest};

/// The viewer's TCP peer address, put into request extensions by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerAddr(pub std::net::SocketAddr);

/// Present in request extensions when the viewer connected over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerTlsConnection;

/// Why the security section cannot be put into force.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("security.trustedKeyGroups: key {id:?}: cannot read {file}: {source}")]
    KeyFile {
        id: String,
        file: String,
        source: std::io::Error,
    },
    #[error("security.trustedKeyGroups: key {id:?}: {source}")]
    Key { id: String, source: keys::KeyError },
    #[error("security.trustedKeyGroups: key id {0:?} is given two different keys")]
    ConflictingKeyId(String),
    #[error(transparent)]
    Headers(#[from] headers::HeaderPolicyError),
    #[error("security.trustedChildren: cannot read {file}: {source}")]
    ChildTokenFile {
        file: String,
        source: std::io::Error,
    },
    #[error("security.trustedChildren: {0}")]
    ChildToken(&'static str),
}

/// The header and token a shield's child edges send.
#[derive(Clone)]
pub struct ChildToken {
    header: http::HeaderName,
    token: Vec<u8>,
}

impl std::fmt::Debug for ChildToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildToken")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl ChildToken {
    fn load(cfg: &crate::config::security::TrustedChildren) -> Result<ChildToken, SecurityError> {
        let text = std::fs::read_to_string(&cfg.value_file).map_err(|source| {
            SecurityError::ChildTokenFile {
                file: cfg.value_file.clone(),
                source,
            }
        })?;
        let token = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
        if token.len() < 16 {
            return Err(SecurityError::ChildToken(
                "the token must be at least 16 bytes",
            ));
        }
        let header = http::HeaderName::from_bytes(cfg.header.as_bytes())
            .map_err(|_| SecurityError::ChildToken("bad header name"))?;
        Ok(ChildToken { header, token })
    }

    /// Whether `headers` carry the token (every value compared in constant time).
    fn matches(&self, headers: &http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        headers
            .get_all(&self.header)
            .iter()
            .any(|v| bool::from(v.as_bytes().ct_eq(&self.token)))
    }
}

/// The compiled security section.
#[derive(Debug, Clone)]
pub struct Security {
    pub gate: SignatureGate,
    pub headers: ResponseHeadersPolicy,
    pub limits: ViewerLimits,
    pub client_ip: ClientIpConfig,
    pub metrics: SecurityMetrics,
    /// Child edges of an origin shield, trusted to have checked signatures themselves.
    pub children: Option<ChildToken>,
}

/// A request that may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub allowed: Allowed,
    /// The request target without CloudFront's signing parameters, when it had any: use it
    /// for the cache key and the origin request.
    pub stripped_uri: Option<Uri>,
}

/// A request that must be refused, with a body that says only the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// Short, static text; never internals.
    pub body: &'static str,
}

impl Refusal {
    fn denied(reason: DenyReason) -> Self {
        let body = match reason {
            DenyReason::Missing => "403 Forbidden: missing\n",
            DenyReason::Malformed => "403 Forbidden: malformed\n",
            DenyReason::UnknownKey => "403 Forbidden: unknown-key\n",
            DenyReason::BadSignature => "403 Forbidden: bad-signature\n",
            DenyReason::Expired => "403 Forbidden: expired\n",
            DenyReason::NotYetValid => "403 Forbidden: not-yet-valid\n",
            DenyReason::IpNotAllowed => "403 Forbidden: ip-not-allowed\n",
            DenyReason::ResourceMismatch => "403 Forbidden: wrong-resource\n",
        };
        Self {
            status: StatusCode::FORBIDDEN,
            body,
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Self {
            gate: SignatureGate::default(),
            headers: ResponseHeadersPolicy::default(),
            limits: ViewerLimits::default(),
            client_ip: ClientIpConfig::default(),
            metrics: SecurityMetrics::shared().clone(),
            children: None,
        }
    }
}

impl Security {
    /// Parses every key (reading `publicKeyFile`s) and compiles the rules. Assumes
    /// `SecurityConfig::validate` passed.
    pub fn from_config(cfg: &SecurityConfig) -> Result<Self, SecurityError> {
        let mut by_id: HashMap<String, (String, Arc<PublicKey>)> = HashMap::new();
        let mut groups: HashMap<&str, Vec<String>> = HashMap::new();
        for g in &cfg.trusted_key_groups {
            for k in &g.keys {
                let pem = match (&k.public_key_pem, &k.public_key_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(f)) => {
                        std::fs::read_to_string(f).map_err(|source| SecurityError::KeyFile {
                            id: k.id.clone(),
                            file: f.clone(),
                            source,
                        })?
                    }
                    (None, None) => String::new(),
                };
                let key = PublicKey::from_pem(&pem).map_err(|source| SecurityError::Key {
                    id: k.id.clone(),
                    source,
                })?;
                let canon = pem.split_whitespace().collect::<String>();
                match by_id.get(&k.id) {
                    Some((other, _)) if *other != canon => {
                        return Err(SecurityError::ConflictingKeyId(k.id.clone()))
                    }
                    Some(_) => {}
                    None => {
                        by_id.insert(k.id.clone(), (canon, Arc::new(key)));
                    }
                }
                groups
                    .entry(g.name.as_str())
                    .or_default()
                    .push(k.id.clone());
            }
        }
        let rules = cfg
            .signed_paths
            .iter()
            .map(|p| signed::SignedPathRule {
                pattern: p.path_pattern.clone(),
                public: p.public,
                keys: p
                    .key_groups
                    .iter()
                    .flat_map(|g| groups.get(g.as_str()).into_iter().flatten())
                    .filter_map(|id| by_id.get(id).map(|(_, k)| (id.clone(), k.clone())))
                    .collect(),
            })
            .collect();
        let metrics = SecurityMetrics::shared().clone();
        let verified = verified::VerifiedSignatures::new(
            verified::DEFAULT_CAPACITY,
            metrics.verification("memo"),
            metrics.verification("computed"),
        );
        Ok(Self {
            gate: SignatureGate { rules, verified },
            headers: ResponseHeadersPolicy::from_config(&cfg.response_headers)?,
            limits: cfg.limits,
            client_ip: cfg.client_ip.clone(),
            metrics: SecurityMetrics::shared().clone(),
            children: cfg
                .trusted_children
                .as_ref()
                .map(ChildToken::load)
                .transpose()?,
        })
    }

    /// Whether the request comes from a child edge of this shield (`trustedChildren`).
    pub fn from_child_edge(&self, headers: &http::HeaderMap) -> bool {
        self.children.as_ref().is_some_and(|c| c.matches(headers))
    }

    /// The policy to run when `from_config` failed at a point where the edge cannot refuse to
    /// run (a reload that passed validation): every signed path refuses every request
    /// (`unknown-key`), public paths keep working. Fails closed, never open.
    pub fn fail_closed(cfg: &SecurityConfig) -> Self {
        let rules = cfg
            .signed_paths
            .iter()
            .map(|p| signed::SignedPathRule {
                pattern: p.path_pattern.clone(),
                keys: HashMap::new(),
                public: p.public,
            })
            .collect();
        Self {
            gate: SignatureGate::new(rules),
            headers: ResponseHeadersPolicy::from_config(&cfg.response_headers).unwrap_or_default(),
            limits: cfg.limits,
            client_ip: cfg.client_ip.clone(),
            metrics: SecurityMetrics::shared().clone(),
            // Failing closed: nobody is trusted as a child.
            children: None,
        }
    }

    /// Size limits: call first, before parsing anything else of the request.
    pub fn check_limits(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        match limits::check_request_size(uri, headers, &self.limits) {
            None => Ok(()),
            Some(status) => {
                let (reason, body) = if status == StatusCode::URI_TOO_LONG {
                    ("uri-too-long", "414 URI Too Long\n")
                } else {
                    ("headers-too-large", "431 Request Header Fields Too Large\n")
                };
                self.metrics.rejected(reason);
                Err(Refusal { status, body })
            }
        }
    }

    /// The signature gate, run before the cache lookup. `normalized_path` is
    /// [`path::normalize_path`] of the request path; `peer` the TCP peer address.
    pub fn authorize(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        normalized_path: &str,
        peer: IpAddr,
        tls: bool,
    ) -> Result<Authorized, Refusal> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.authorize_at(uri, headers, normalized_path, peer, tls, now)
    }

    /// [`Security::authorize`] at a given time (seconds since the epoch).
    pub fn authorize_at(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        normalized_path: &str,
        peer: IpAddr,
        tls: bool,
        now: u64,
    ) -> Result<Authorized, Refusal> {
        let stripped_uri = strip_uri(uri);
        if self.gate.rules.is_empty() {
            return Ok(Authorized {
                allowed: Allowed::Public,
                stripped_uri,
            });
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        // The viewer's own protocol: what a trusted proxy in front says, else this connection's.
        let scheme = forwarded_proto(headers, &self.client_ip)
            .or(tls.then_some("https"))
            .or_else(|| uri.scheme_str())
            .unwrap_or("http");
        let cookies: Vec<&str> = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let req = SignedRequest {
            scheme,
            host,
            raw_path: uri.path(),
            normalized_path,
            raw_query: uri.query(),
            cookies: &cookies,
            client_ip: client_ip(peer, headers, &self.client_ip),
            now,
        };
        match self.gate.check(&req) {
            Ok(allowed) => {
                if allowed != Allowed::Public {
                    self.metrics.allowed();
                }
                Ok(Authorized {
                    allowed,
                    stripped_uri,
                })
            }
            Err(reason) => {
                self.metrics.denied(reason);
                Err(Refusal::denied(reason))
            }
        }
    }
}

/// `uri` without signing parameters, if it had any.
fn strip_uri(uri: &Uri) -> Option<Uri> {
    let q = uri.query()?;
    let stripped = signed::strip_signing_params(q);
    if stripped.as_deref() == Some(q) {
        return None;
    }
    let pq = match stripped {
        Some(s) => format!("{}?{s}", uri.path()),
        None => uri.path().to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).ok()
}

/// The viewer's address: the TCP peer, or the configured forwarding header's entry written by
/// the outermost trusted proxy.
/// `X-Forwarded-Proto`, trusted only behind the trusted proxies `clientIp` names (like the
/// client IP): without `clientIp.header` any viewer could claim `https`. With several values
/// (`https, http`), the one the outermost trusted proxy wrote.
pub fn forwarded_proto<'h>(headers: &'h HeaderMap, cfg: &ClientIpConfig) -> Option<&'h str> {
    if cfg.header.is_none() || cfg.trusted_hops == 0 {
        return None;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let i = entries.len().saturating_sub(cfg.trusted_hops as usize);
    entries
        .get(i)
        .copied()
        .filter(|p| *p == "https" || *p == "http")
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, cfg: &ClientIpConfig) -> IpAddr {
    let Some(name) = &cfg.header else { return peer };
    let entries: Vec<&str> = headers
        .get_all(name.as_str())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let hops = cfg.trusted_hops as usize;
    entries
        .len()
        .checked_sub(hops)
        .and_then(|i| entries.get(i))
        .and_then(|e| e.parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::keys::test_keys::*;
    use super::*;
    use crate::config::security::{KeyGroup, SignedPath, TrustedKey};

    fn config() -> SecurityConfig {
        let key = |id: &str, pem: &str| TrustedKey {
            id: id.into(),
            public_key_pem: Some(pem.into()),
            public_key_file: None,
        };
        SecurityConfig {
            trusted_key_groups: vec![
                KeyGroup {
                    name: "main".into(),
                    keys: vec![key("KA", RSA_A_PUB), key("KB", RSA_B_PUB)],
                },
                KeyGroup {
                    name: "ec".into(),
                    keys: vec![key("KEC", EC_A_PUB)],
                },
            ],
            signed_paths: vec![
                SignedPath {
                    path_pattern: "/private/*".into(),
                    key_groups: vec!["main".into()],
                    public: false,
                },
                SignedPath {
                    path_pattern: "/mixed/*".into(),
                    key_groups: vec!["main".into(), "ec".into()],
                    public: false,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn compiles_groups_per_rule() {
        let cfg = config();
        cfg.validate().expect("valid");
        let s = Security::from_config(&cfg).expect("compile");
        let keys = |p: &str| {
            let mut k: Vec<_> = s
                .gate
                .rule_for(p)
                .expect("rule")
                .keys
                .keys()
                .cloned()
                .collect();
            k.sort();
            k
        };
        assert_eq!(keys("/private/x"), ["KA", "KB"]);
        assert_eq!(keys("/mixed/x"), ["KA", "KB", "KEC"]);
        assert!(s.gate.rule_for("/public/x").is_none());
    }

    #[test]
    fn load_errors_name_the_key_without_material() {
        let mut cfg = config();
        cfg.trusted_key_groups[0].keys[0].public_key_pem = Some(RSA_1024_PUB.into());
        let err = Security::from_config(&cfg).expect_err("small").to_string();
        assert!(err.contains("\"KA\"") && err.contains("1024"), "{err}");
        assert!(!err.contains("MII"), "{err}");
        let mut cfg = config();
        cfg.trusted_key_groups[1].keys[0].id = "KA".into();
        assert!(matches!(
            Security::from_config(&cfg),
            Err(SecurityError::ConflictingKeyId(_))
        ));
        let mut cfg = config();
        cfg.trusted_key_groups[0].keys[0].public_key_pem = None;
        cfg.trusted_key_groups[0].keys[0].public_key_file = Some("/nonexistent/k.pem".into());
        assert!(matches!(
            Security::from_config(&cfg),
            Err(SecurityError::KeyFile { .. })
        ));
    }

    #[test]
    fn authorize_counts_and_strips() {
        let s = Security::from_config(&config()).expect("compile");
        let uri: Uri = "/private/a?v=1&Expires=1&Signature=abc&Key-Pair-Id=KQ"
            .parse()
            .expect("uri");
        let mut h = HeaderMap::new();
        h.insert("host", "cdn.example.com".parse().expect("host"));
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let unknown_key = || {
            s.metrics
                .signed_requests
                .get_or_create(&metrics::ResultLabel {
                    result: "unknown-key",
                })
                .get()
        };
        let before = unknown_key();
        let r = s
            .authorize_at(&uri, &h, "/private/a", peer, false, 0)
            .expect_err("unknown key");
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body, "403 Forbidden: unknown-key\n");
        let public: Uri = "/public/a?v=1&Signature=x".parse().expect("uri");
        let ok = s
            .authorize_at(&public, &h, "/public/a", peer, false, 0)
            .expect("public");
        assert_eq!(ok.stripped_uri, Some("/public/a?v=1".parse().expect("uri")));
        let plain: Uri = "/public/a?v=1".parse().expect("uri");
        assert_eq!(
            s.authorize_at(&plain, &h, "/public/a", peer, false, 0)
                .expect("public")
                .stripped_uri,
            None
        );
        let only: Uri = "/public/a?Signature=x".parse().expect("uri");
        assert_eq!(
            s.authorize_at(&only, &h, "/public/a", peer, false, 0)
                .expect("public")
                .stripped_uri,
            Some("/public/a".parse().expect("uri"))
        );
        // Shared, process-wide counters: other tests may count too.
        assert!(unknown_key() > before);
    }

    #[test]
    fn fail_closed_refuses_signed_paths_only() {
        let s = Security::fail_closed(&config());
        let mut h = HeaderMap::new();
        h.insert("host", "cdn.example.com".parse().expect("host"));
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let uri: Uri = "/private/a?Expires=1&Signature=abc&Key-Pair-Id=KA"
            .parse()
            .expect("uri");
        let r = s
            .authorize_at(&uri, &h, "/private/a", peer, false, 0)
            .expect_err("closed");
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let public: Uri = "/public/a".parse().expect("uri");
        assert!(s
            .authorize_at(&public, &h, "/public/a", peer, false, 0)
            .is_ok());
    }

    #[test]
    fn a_public_entry_exempts_paths_before_a_broader_signed_one() {
        let mut cfg = config();
        cfg.signed_paths.insert(
            0,
            SignedPath {
                path_pattern: "/private/open/*".into(),
                key_groups: vec![],
                public: true,
            },
        );
        cfg.validate().expect("valid");
        let mut h = HeaderMap::new();
        h.insert("host", "cdn.example.com".parse().expect("host"));
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        for s in [
            Security::from_config(&cfg).expect("compile"),
            Security::fail_closed(&cfg),
        ] {
            let open: Uri = "/private/open/a".parse().expect("uri");
            let allowed = s
                .authorize_at(&open, &h, "/private/open/a", peer, false, 0)
                .expect("exempt");
            assert_eq!(allowed.allowed, Allowed::Public);
            let closed: Uri = "/private/a".parse().expect("uri");
            let r = s
                .authorize_at(&closed, &h, "/private/a", peer, false, 0)
                .expect_err("signed");
            assert_eq!(r.body, "403 Forbidden: missing\n");
        }
    }

    #[test]
    fn limits_refuse_with_static_bodies() {
        let s = Security::default();
        let long: Uri = format!("/{}", "a".repeat(9000)).parse().expect("uri");
        let r = s.check_limits(&long, &HeaderMap::new()).expect_err("414");
        assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn forwarded_proto_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().expect("v"));
        assert_eq!(forwarded_proto(&h, &ClientIpConfig::default()), None);
        let one = ClientIpConfig {
            header: Some("X-Forwarded-For".into()),
            trusted_hops: 1,
        };
        assert_eq!(forwarded_proto(&h, &one), Some("https"));
        h.insert("x-forwarded-proto", "https, http".parse().expect("v"));
        assert_eq!(forwarded_proto(&h, &one), Some("http"));
        let two = ClientIpConfig {
            header: Some("X-Forwarded-For".into()),
            trusted_hops: 2,
        };
        assert_eq!(forwarded_proto(&h, &two), Some("https"));
        h.insert("x-forwarded-proto", "gopher".parse().expect("v"));
        assert_eq!(forwarded_proto(&h, &one), None);
    }

    #[test]
    fn client_ip_from_forwarding_header() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "198.51.100.7, 203.0.113.9".parse().expect("v"),
        );
        h.append("x-forwarded-for", "192.0.2.1".parse().expect("v"));
        let none = ClientIpConfig::default();
        assert_eq!(client_ip(peer, &h, &none), peer);
        let one = ClientIpConfig {
            header: Some("X-Forwarded-For".into()),
            trusted_hops: 1,
        };
        assert_eq!(
            client_ip(peer, &h, &one),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
        let two = ClientIpConfig {
            trusted_hops: 2,
            ..one.clone()
        };
        assert_eq!(
            client_ip(peer, &h, &two),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let many = ClientIpConfig {
            trusted_hops: 9,
            ..one
        };
        assert_eq!(client_ip(peer, &h, &many), peer);
    }
}
