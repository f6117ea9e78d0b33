//! The edge config a Distribution renders into: the spec (with the Secrets of its trusted key
//! groups) as the edge proxy's own config type, validated with the proxy's own rules, so every
//! problem is reported in status naming the spec field before any edge sees it. Pure.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kubefront_edge::config::security::{
    ClientIpConfig, CorsConfig, HstsConfig, KeyGroup, ResponseHeadersPolicyConfig, SignedPath,
    TrustedKey, ViewerLimits,
};
use kubefront_edge::config::{
    AllowedMethods, Behavior, ByteSize, CacheKeyConfig, CustomErrorResponse, Dur, EdgeConfig,
    QueryMode, QueryStrings, SecurityConfig,
};
use kubefront_edge::security::{PublicKey, Security, SecurityError};

use crate::crd::{
    AllowedMethodsSpec, CacheKeySpec, ClientIpSpec, DistributionSpec, DurationString, KeyGroupName,
    QuantityString, QueryStringMode, ResponseHeadersPolicySpec, ViewerLimitsSpec,
};

/// Status reason of a spec value that cannot be rendered.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Status reason: a Secret the spec names does not exist.
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Status reason: a Secret the spec names exists but its content cannot be used.
pub const REASON_SECRET_INVALID: &str = "SecretInvalid";

/// A spec value that cannot be rendered, naming the field (`spec.cache.minTTL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RenderError {
    pub field: String,
    pub message: String,
    /// Status/event reason: [`REASON_INVALID_SPEC`], [`REASON_SECRET_NOT_FOUND`] or
    /// [`REASON_SECRET_INVALID`].
    pub reason: &'static str,
}

impl RenderError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            reason: REASON_INVALID_SPEC,
        }
    }

    pub(crate) fn secret(
        reason: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            reason,
        }
    }
}

/// The data of one Secret (`data`, with `stringData` already merged in by the API server).
pub type SecretData = BTreeMap<String, ByteString>;

/// The Secrets named by `spec.trustedKeyGroups[].secretRef`, by name, as the reconciler read
/// them from the Distribution's namespace. A name missing from the map is a Secret that does
/// not exist.
pub type KeySecrets = BTreeMap<String, SecretData>;

fn parse_dur(field: &str, v: &DurationString) -> Result<Dur, RenderError> {
    v.0.parse()
        .map_err(|e: kubefront_edge::config::ParseDurError| RenderError::new(field, e.to_string()))
}

fn parse_opt_dur(field: &str, v: &Option<DurationString>) -> Result<Option<Dur>, RenderError> {
    v.as_ref().map(|d| parse_dur(field, d)).transpose()
}

fn parse_size(field: &str, v: &QuantityString) -> Result<ByteSize, RenderError> {
    v.0.parse()
        .map_err(|e: kubefront_edge::config::ParseSizeError| RenderError::new(field, e.to_string()))
}

fn cache_key(key: &CacheKeySpec) -> CacheKeyConfig {
    let query_strings = if !key.query_string_allowlist.is_empty() {
        QueryStrings::Allow(key.query_string_allowlist.clone())
    } else {
        match key.query_strings {
            Some(QueryStringMode::All) => QueryStrings::Mode(QueryMode::All),
            _ => QueryStrings::Mode(QueryMode::None),
        }
    };
    CacheKeyConfig {
        query_strings,
        headers: key.headers.clone(),
    }
}

/// Renders the spec (with the key groups' Secrets) into the edge proxy's own config type and
/// validates it with the proxy's rules, keys included, so anything the schema could not check
/// is caught here and reported in status before any edge sees it.
pub fn edge_config(spec: &DistributionSpec, keys: &KeySecrets) -> Result<EdgeConfig, RenderError> {
    let c = &spec.cache;
    let mut cfg = EdgeConfig::for_bucket("");
    cfg.origin = crate::origin::origin_config(&spec.origin);
    cfg.default_root_object = spec.default_root_object.clone();
    cfg.allowed_methods = match spec.allowed_methods {
        None | Some(AllowedMethodsSpec::GetHead) => AllowedMethods::GetHead,
        Some(AllowedMethodsSpec::GetHeadOptions) => AllowedMethods::GetHeadOptions,
        Some(AllowedMethodsSpec::All) => AllowedMethods::All,
    };
    cfg.cache.memory = parse_size("spec.cache.memory", &c.memory)?;
    cfg.cache.max_object_size = parse_size("spec.cache.maxObjectSize", &c.max_object_size)?;
    cfg.cache.min_ttl = parse_dur("spec.cache.minTTL", &c.min_ttl)?;
    cfg.cache.default_ttl = parse_dur("spec.cache.defaultTTL", &c.default_ttl)?;
    cfg.cache.max_ttl = parse_dur("spec.cache.maxTTL", &c.max_ttl)?;
    cfg.cache.stale_if_error = parse_dur("spec.cache.staleIfError", &c.stale_if_error)?;
    cfg.cache.stale_while_revalidate =
        parse_dur("spec.cache.staleWhileRevalidate", &c.stale_while_revalidate)?;
    cfg.cache.negative_ttl = parse_dur("spec.cache.negativeTTL", &c.negative_ttl)?;
    if let Some(d) = parse_opt_dur("spec.cache.errorCachingMinTTL", &c.error_caching_min_ttl)? {
        cfg.cache.error_caching_min_ttl = d;
    }
    if let Some(t) = &spec.origin.timeouts {
        let f = |n: &str| format!("spec.origin.timeouts.{n}");
        let timeouts = &mut cfg.origin.timeouts;
        if let Some(d) = parse_opt_dur(&f("connect"), &t.connect)? {
            timeouts.connect = d;
        }
        if let Some(d) = parse_opt_dur(&f("firstByte"), &t.first_byte)? {
            timeouts.first_byte = d;
        }
        if let Some(d) = parse_opt_dur(&f("total"), &t.total)? {
            timeouts.total = d;
        }
        timeouts.idle = parse_opt_dur(&f("idle"), &t.idle)?;
    }
    // The secondary origin is fetched under the same limits.
    let timeouts = cfg.origin.timeouts;
    if let Some(f) = cfg.origin.failover.as_mut() {
        f.secondary.timeouts = timeouts;
    }
    cfg.cache.key = cache_key(&c.key);
    for (i, b) in spec.behaviors.iter().enumerate() {
        let f = |n: &str| format!("spec.behaviors[{i}].{n}");
        cfg.behaviors.push(Behavior {
            path_pattern: b.path_pattern.clone(),
            min_ttl: parse_opt_dur(&f("minTTL"), &b.min_ttl)?,
            default_ttl: parse_opt_dur(&f("defaultTTL"), &b.default_ttl)?,
            max_ttl: parse_opt_dur(&f("maxTTL"), &b.max_ttl)?,
            viewer_protocol_policy: None,
        });
    }
    for (i, e) in spec.custom_error_responses.iter().enumerate() {
        let code = |field: &str, v: i32| {
            u16::try_from(v).map_err(|_| {
                RenderError::new(
                    format!("spec.customErrorResponses[{i}].{field}"),
                    format!("{v} is not an HTTP status code"),
                )
            })
        };
        cfg.custom_error_responses.push(CustomErrorResponse {
            error_code: code("errorCode", e.error_code)?,
            response_page_path: e.response_page_path.clone(),
            response_code: e
                .response_code
                .map(|c| code("responseCode", c))
                .transpose()?,
            ttl: parse_opt_dur(&format!("spec.customErrorResponses[{i}].ttl"), &e.ttl)?,
        });
    }
    let (security, signed_from) = security(spec, keys)?;
    cfg.security = security;
    cfg.validate()
        .map_err(|e| RenderError::new(spec_field(&e.field, &signed_from), e.message))?;
    // What the edge does at load: parse every key, compile the rules and headers. A config
    // failing here would make edges refuse it (or fail closed on signed paths).
    Security::from_config(&cfg.security).map_err(|e| match e {
        SecurityError::Headers(h) => RenderError::new("spec.responseHeadersPolicy", h.to_string()),
        other => RenderError::secret(
            REASON_SECRET_INVALID,
            "spec.trustedKeyGroups",
            other.to_string(),
        ),
    })?;
    Ok(cfg)
}

/// Maps an edge config field path to the Distribution field it came from. `signed_from[i]`
/// is the spec field `security.signedPaths[i]` was rendered from.
fn spec_field(edge_field: &str, signed_from: &[String]) -> String {
    if let Some(rest) = edge_field.strip_prefix("security.") {
        let index = |s: &str| -> Option<usize> { s.split(']').next()?.parse().ok() };
        if let Some(r) = rest.strip_prefix("signedPaths[") {
            if let Some(f) = index(r).and_then(|i| signed_from.get(i)) {
                return f.clone();
            }
        } else if let Some(r) = rest.strip_prefix("trustedKeyGroups[") {
            if let Some(i) = index(r) {
                return format!("spec.trustedKeyGroups[{i}].secretRef");
            }
        }
        for (edge, spec) in [
            ("responseHeaders", "spec.responseHeadersPolicy"),
            ("limits", "spec.viewerLimits"),
            ("clientIp", "spec.clientIp"),
        ] {
            if let Some(r) = rest.strip_prefix(edge) {
                return format!("{spec}{r}");
            }
        }
        return format!("spec.{rest}");
    }
    // Edge names whose spec counterpart is named differently (files come from Secrets).
    let f = edge_field
        .replace("cache.key.queryStrings", "cache.key.queryStringAllowlist")
        .replace(".valueFile", ".valueFrom")
        .replace(".tls.caFile", ".tls.caSecretRef");
    format!("spec.{f}")
}

/// Whether `id` is a Key-Pair-Id the edge accepts.
fn is_key_pair_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The trusted key groups with their keys from the Secrets (sorted by Key-Pair-Id, PEM inline:
/// public keys are not secret, so remote regions need no Secret mirror).
fn key_groups(spec: &DistributionSpec, keys: &KeySecrets) -> Result<Vec<KeyGroup>, RenderError> {
    // Key-Pair-Id → (group index, canonical PEM): one id must mean one key everywhere.
    let mut seen: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut groups = Vec::with_capacity(spec.trusted_key_groups.len());
    for (i, g) in spec.trusted_key_groups.iter().enumerate() {
        let field = format!("spec.trustedKeyGroups[{i}].secretRef");
        let name = &g.secret_ref.name;
        let data = keys.get(name).ok_or_else(|| {
            RenderError::secret(
                REASON_SECRET_NOT_FOUND,
                &field,
                format!("Secret {name:?} was not found"),
            )
        })?;
        if data.is_empty() {
            return Err(RenderError::secret(
                REASON_SECRET_INVALID,
                &field,
                format!("Secret {name:?} has no keys: every data entry is one public key (entry name = Key-Pair-Id, value = PEM)"),
            ));
        }
        let invalid = |message: String| RenderError::secret(REASON_SECRET_INVALID, &field, message);
        let mut group = Vec::with_capacity(data.len());
        for (id, value) in data {
            if !is_key_pair_id(id) {
                return Err(invalid(format!(
                    "Secret {name:?}: entry {id:?} is not a Key-Pair-Id (letters, digits, '-', '_')"
                )));
            }
            let pem = std::str::from_utf8(&value.0)
                .map_err(|_| invalid(format!("Secret {name:?}: key {id:?} is not PEM text")))?;
            let pem = format!("{}\n", pem.trim());
            PublicKey::from_pem(&pem)
                .map_err(|e| invalid(format!("Secret {name:?}: key {id:?}: {e}")))?;
            let canon: String = pem.split_whitespace().collect();
            match seen.get(id.as_str()) {
                Some((j, other)) if *other != canon => {
                    return Err(invalid(format!(
                        "Secret {name:?}: key {id:?} differs from the key with the same id in spec.trustedKeyGroups[{j}]"
                    )))
                }
                Some(_) => {}
                None => {
                    seen.insert(id, (i, canon));
                }
            }
            group.push(TrustedKey {
                id: id.clone(),
                public_key_pem: Some(pem),
                public_key_file: None,
            });
        }
        groups.push(KeyGroup {
            name: g.name.0.clone(),
            keys: group,
        });
    }
    Ok(groups)
}

/// `signedPaths` in behavior order: a behavior requires its own key groups, is public with
/// `trustedKeyGroups: []`, and otherwise follows the default behavior; the default behavior's
/// groups end the list as `*`. Also returns, per entry, the spec field it came from.
fn signed_paths(spec: &DistributionSpec) -> (Vec<SignedPath>, Vec<String>) {
    let names = |v: &[KeyGroupName]| v.iter().map(|n| n.0.clone()).collect::<Vec<_>>();
    let default = &spec.cache.trusted_key_groups;
    let mut paths = Vec::new();
    let mut from = Vec::new();
    for (i, b) in spec.behaviors.iter().enumerate() {
        let (groups, field) = match &b.trusted_key_groups {
            Some(own) => (own, format!("spec.behaviors[{i}].trustedKeyGroups")),
            None if !default.is_empty() => (default, "spec.cache.trustedKeyGroups".to_string()),
            None => continue,
        };
        paths.push(SignedPath {
            path_pattern: b.path_pattern.clone(),
            key_groups: names(groups),
            public: groups.is_empty(),
        });
        from.push(field);
    }
    if !default.is_empty() {
        paths.push(SignedPath {
            path_pattern: "*".into(),
            key_groups: names(default),
            public: false,
        });
        from.push("spec.cache.trustedKeyGroups".into());
    }
    // Public entries only matter in front of a signed one.
    while paths.last().is_some_and(|p| p.public) {
        paths.pop();
        from.pop();
    }
    (paths, from)
}

fn response_headers(
    p: &ResponseHeadersPolicySpec,
) -> Result<ResponseHeadersPolicyConfig, RenderError> {
    let tokens = |v: &[crate::crd::HttpToken]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    let f = "spec.responseHeadersPolicy";
    let cors = p
        .cors
        .as_ref()
        .map(|c| -> Result<CorsConfig, RenderError> {
            Ok(CorsConfig {
                allow_origins: c.allow_origins.iter().map(|o| o.0.clone()).collect(),
                allow_methods: if c.allow_methods.is_empty() {
                    vec!["GET".into(), "HEAD".into()]
                } else {
                    tokens(&c.allow_methods)
                },
                allow_headers: tokens(&c.allow_headers),
                expose_headers: tokens(&c.expose_headers),
                max_age: parse_opt_dur(&format!("{f}.cors.maxAge"), &c.max_age)?,
                allow_credentials: c.allow_credentials,
            })
        })
        .transpose()?;
    let strict_transport_security = p
        .strict_transport_security
        .as_ref()
        .map(|h| -> Result<HstsConfig, RenderError> {
            Ok(HstsConfig {
                max_age: parse_dur(&format!("{f}.strictTransportSecurity.maxAge"), &h.max_age)?,
                include_subdomains: h.include_subdomains,
                preload: h.preload,
            })
        })
        .transpose()?;
    Ok(ResponseHeadersPolicyConfig {
        cors,
        strict_transport_security,
        content_type_options: p.content_type_options,
        frame_options: p.frame_options.map(|o| o.as_str().to_string()),
        referrer_policy: p.referrer_policy.map(|r| r.as_str().to_string()),
    })
}

fn viewer_limits(l: &ViewerLimitsSpec) -> Result<ViewerLimits, RenderError> {
    let f = "spec.viewerLimits";
    let count = |field: &str, v: Option<i32>, default: u32| {
        v.map(|n| {
            u32::try_from(n)
                .map_err(|_| RenderError::new(format!("{f}.{field}"), "must not be negative"))
        })
        .transpose()
        .map(|n| n.unwrap_or(default))
    };
    let d = ViewerLimits::default();
    Ok(ViewerLimits {
        max_url_bytes: count("maxUrlBytes", l.max_url_bytes, d.max_url_bytes)?,
        max_header_bytes: count("maxHeaderBytes", l.max_header_bytes, d.max_header_bytes)?,
        header_read_timeout: parse_opt_dur(
            &format!("{f}.headerReadTimeout"),
            &l.header_read_timeout,
        )?
        .unwrap_or(d.header_read_timeout),
        max_connections: count("maxConnections", l.max_connections, d.max_connections)?,
    })
}

fn client_ip(c: &ClientIpSpec) -> Result<ClientIpConfig, RenderError> {
    Ok(ClientIpConfig {
        header: Some(c.header.0.clone()),
        trusted_hops: u32::try_from(c.trusted_hops)
            .map_err(|_| RenderError::new("spec.clientIp.trustedHops", "must not be negative"))?,
    })
}

/// The edge's `security` section, and the spec field of every `signedPaths` entry.
fn security(
    spec: &DistributionSpec,
    keys: &KeySecrets,
) -> Result<(SecurityConfig, Vec<String>), RenderError> {
    let (signed_paths, signed_from) = signed_paths(spec);
    let sec = SecurityConfig {
        // Set for the shield region only (`origin::region_configs`).
        trusted_children: None,
        trusted_key_groups: key_groups(spec, keys)?,
        signed_paths,
        client_ip: spec
            .client_ip
            .as_ref()
            .map(client_ip)
            .transpose()?
            .unwrap_or_default(),
        limits: spec
            .viewer_limits
            .as_ref()
            .map(viewer_limits)
            .transpose()?
            .unwrap_or_default(),
        response_headers: spec
            .response_headers_policy
            .as_ref()
            .map(response_headers)
            .transpose()?
            .unwrap_or_default(),
    };
    Ok((sec, signed_from))
}
