//! The `Distribution` custom resource (kubefront.io/v1alpha1): types, schema and CEL rules.
//!
//! Durations and quantities are kept as the strings the user wrote (`24h`, `365d`, `512Mi`): the
//! schema checks their syntax with a pattern, CEL checks the TTL ordering, and the reconciler
//! parses them once with the edge proxy's own parsers (`Dur`, `ByteSize`) when rendering. Keeping
//! them as strings means a value the schema let through can never make the object undecodable
//! (which would hide it from the controller); a parse failure is reported in status instead.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::cel::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

pub use kubefront_edge::config::CUSTOM_ERROR_CODES;

/// API group of every kubefront resource.
pub const GROUP: &str = "kubefront.io";

/// Regex for a duration string the edge proxy's `Dur` parser accepts and CEL can convert:
/// whole days on their own (`365d`) or Go duration parts (`90s`, `1h30m`, `36h`), or `0`.
pub const DURATION_PATTERN: &str = r"^(0|[0-9]{1,6}d|([0-9]{1,12}(ns|us|ms|s|m|h))+)$";

/// Regex for a byte quantity the edge proxy's `ByteSize` parser accepts (`512Mi`, `1G`, `1000`).
pub const QUANTITY_PATTERN: &str = r"^[0-9]{1,19}(k|K|M|G|T|Ki|Mi|Gi|Ti)?$";

/// Allowed characters of a CloudFront path pattern (same set as the edge proxy validates).
pub const PATH_PATTERN_REGEX: &str = r#"^[A-Za-z0-9_.*$/~"'@:+?&%=-]{1,255}$"#;

/// DNS-1123 label, the form of region names and namespaces.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// DNS-1123 subdomain, the form of ServiceAccount names.
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Name of a trusted key group (what behaviors refer to).
pub const KEY_GROUP_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,63}$";

/// RFC 9110 token: header names and methods of the CORS policy, the client IP header.
pub const TOKEN_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$";

/// A CORS origin: `*` or `scheme://host[:port]` (no path, no trailing slash).
pub const CORS_ORIGIN_PATTERN: &str = r"^(\*|https?://[!-~]*[!-.0-~])$";

/// Secret data keys are Key-Pair-Ids; the edge accepts these characters in them.
pub const KEY_PAIR_ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

/// Converts a duration string (already matching [`DURATION_PATTERN`]) into whole seconds in
/// CEL. CEL's `duration()` takes Go syntax, which has no `d` unit, so the pattern allows days
/// only on their own (`365d`) and those are converted arithmetically. Only bounded string
/// operations are used so the API server's cost estimate stays within budget.
pub fn cel_duration(expr: &str) -> String {
    format!(
        "({expr}.endsWith('d') ? int({expr}.substring(0, size({expr}) - 1)) * 86400 : ({expr} == '0' ? 0 : duration({expr}).getSeconds()))"
    )
}

/// `expr` as a CEL duration when the optional field is set, `fallback` (CEL) otherwise.
fn cel_duration_or(obj: &str, field: &str, fallback: &str) -> String {
    format!(
        "(has({obj}.{field}) ? {} : {fallback})",
        cel_duration(&format!("{obj}.{field}"))
    )
}

/// TTL ordering within the cache block, with the same defaults the edge config uses.
fn cache_ttl_rule(lower: &str, upper: &str) -> Rule {
    let lo = cel_duration_or("self", lower, default_ttl_cel(lower));
    let hi = cel_duration_or("self", upper, default_ttl_cel(upper));
    Rule::new(format!("{lo} <= {hi}"))
        .message(kube::core::cel::Message::Message(format!(
            "{lower} must not be greater than {upper}"
        )))
        .field_path(format!(".{lower}"))
        .reason(kube::core::cel::Reason::FieldValueInvalid)
}

fn default_ttl_cel(field: &str) -> &'static str {
    match field {
        "minTTL" => "0",
        "defaultTTL" => "86400",
        _ => "31536000",
    }
}

/// Every behavior's effective TTLs (unset ones fall back to `spec.cache`) must be ordered.
fn behavior_ttl_rule() -> Rule {
    let cache = |f: &str| {
        format!(
            "(has(self.cache) ? {} : {})",
            cel_duration_or("self.cache", f, default_ttl_cel(f)),
            default_ttl_cel(f)
        )
    };
    let eff = |f: &str| cel_duration_or("b", f, &cache(f));
    Rule::new(format!(
        "!has(self.behaviors) || self.behaviors.all(b, {min} <= {def} && {def} <= {max})",
        min = eff("minTTL"),
        def = eff("defaultTTL"),
        max = eff("maxTTL"),
    ))
    .message(
        "each behavior needs minTTL <= defaultTTL <= maxTTL (unset values fall back to spec.cache)",
    )
    .field_path(".behaviors")
    .reason(kube::core::cel::Reason::FieldValueInvalid)
}

fn error_code_rule() -> Rule {
    let codes: Vec<String> = CUSTOM_ERROR_CODES.iter().map(|c| c.to_string()).collect();
    Rule::new(format!("self in [{}]", codes.join(", "))).message(kube::core::cel::Message::Message(
        format!("errorCode must be one of {}", codes.join(", ")),
    ))
}

fn path_pattern_rule() -> Rule {
    Rule::new(format!(
        "self.matches('{}')",
        PATH_PATTERN_REGEX.replace('\'', "\\'")
    ))
    .message("pathPattern must be 1-255 characters of A-Z a-z 0-9 _ - . * $ / ~ \" ' @ : + ? & % =")
}

/// Edge objects are named `<distribution>-<region>`; a Service name must be a DNS-1035 label.
fn object_name_rule() -> Rule {
    Rule::new(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.spec.regions.all(r, size(self.metadata.name) + size(r.name) <= 62)",
    )
    .message("metadata.name must be a DNS-1035 label and <name>-<region> at most 63 characters, because edge objects are named <distribution>-<region>")
}

/// Every key group a behavior (or the default behavior) names must be defined in
/// `spec.trustedKeyGroups`.
fn key_group_refs_rule(list: &str, field_path: &str, shown: &str) -> Rule {
    let known = |n: &str| {
        format!("(has(self.trustedKeyGroups) && self.trustedKeyGroups.exists(g, g.name == {n}))")
    };
    let expr = match list {
        "behaviors" => format!(
            "!has(self.behaviors) || self.behaviors.all(b, !has(b.trustedKeyGroups) || b.trustedKeyGroups.all(n, {}))",
            known("n")
        ),
        _ => format!(
            "!has(self.cache) || !has(self.cache.trustedKeyGroups) || self.cache.trustedKeyGroups.all(n, {})",
            known("n")
        ),
    };
    Rule::new(expr)
        .message(kube::core::cel::Message::Message(format!(
            "{shown}: every name must be the name of an entry of spec.trustedKeyGroups"
        )))
        .field_path(field_path)
        .reason(kube::core::cel::Reason::FieldValueInvalid)
}

/// `spec.originShield.region` must name one of the regions.
fn origin_shield_region_rule() -> Rule {
    Rule::new(
        "!has(self.originShield) || self.regions.exists(r, r.name == self.originShield.region)",
    )
    .message("spec.originShield.region must be the name of an entry of spec.regions")
    .field_path(".originShield.region")
    .reason(kube::core::cel::Reason::FieldValueInvalid)
}

/// Methods beyond GET and HEAD reach only an HTTP origin.
fn allowed_methods_rule() -> Rule {
    Rule::new(
        "!has(self.allowedMethods) || self.allowedMethods == 'get-head' || has(self.origin.http)",
    )
    .message("spec.allowedMethods beyond get-head needs an HTTP origin (spec.origin.http)")
    .field_path(".allowedMethods")
    .reason(kube::core::cel::Reason::FieldValueInvalid)
}

/// A duration that must be longer than zero (`0`, `0s`, `0h0m` are not).
fn positive_duration_rule(field: &str) -> Rule {
    Rule::new("!self.matches('^(0+d?|(0+(ns|us|ms|s|m|h))+)$')").message(
        kube::core::cel::Message::Message(format!("{field} must be longer than zero")),
    )
}

/// A CloudFront-style distribution: one origin (S3 or HTTP, with an optional failover), a cache
/// policy and the regions serving it, optionally through an origin shield.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubefront.io",
    version = "v1alpha1",
    kind = "Distribution",
    namespaced,
    shortname = "dist",
    status = "DistributionStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Regions", type_ = "string", json_path = ".status.readyRegions"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = object_name_rule()
)]
#[x_kube(validation = behavior_ttl_rule())]
#[x_kube(validation = key_group_refs_rule("behaviors", ".behaviors", "spec.behaviors[].trustedKeyGroups"))]
#[x_kube(validation = key_group_refs_rule("cache", ".cache.trustedKeyGroups", "spec.cache.trustedKeyGroups"))]
#[x_kube(validation = origin_shield_region_rule())]
#[x_kube(validation = allowed_methods_rule())]
#[serde(rename_all = "camelCase")]
pub struct DistributionSpec {
    pub origin: Origin,
    /// The region every other region fetches misses through; it alone fetches from `origin`,
    /// and the others fall back to `origin` while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_shield: Option<OriginShieldSpec>,
    /// Object served for `/` (CloudFront's DefaultRootObject), e.g. `index.html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub default_root_object: Option<String>,
    #[serde(default)]
    pub cache: CacheSpec,
    /// Ordered path-pattern overrides; the first match wins, `*` is the implicit default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub behaviors: Vec<BehaviorSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 11))]
    pub custom_error_responses: Vec<CustomErrorResponseSpec>,
    /// Where edge caches run; at least one.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(o, o.name == r.name))").message("region names must be unique"))]
    pub regions: Vec<RegionSpec>,
    /// Public keys that may sign URLs and cookies (CloudFront trusted key groups), each from a
    /// Secret. Behaviors (and `cache`, the default behavior) name the groups they require.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(g, self.exists_one(o, o.name == g.name))").message("spec.trustedKeyGroups: names must be unique"))]
    pub trusted_key_groups: Vec<TrustedKeyGroupSpec>,
    /// CORS and security headers added to every viewer response (CloudFront response
    /// headers policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers_policy: Option<ResponseHeadersPolicySpec>,
    /// Limits on viewer requests (oversized and slow requests); edge defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_limits: Option<ViewerLimitsSpec>,
    /// Where the viewer IP (for signed policies' `IpAddress`) comes from behind a load
    /// balancer; absent = the TCP peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpSpec>,
    /// Pod settings of every region (scheduling, identity, pod metadata, pull secrets); a
    /// region's `pod` replaces single fields of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<EdgePodSpec>,
    /// CloudFront's allowed methods: `get-head` (default), `get-head-options`, or `all`
    /// (OPTIONS, PUT, POST, PATCH, DELETE… forwarded to an HTTP origin with their bodies, never
    /// cached; a successful unsafe method invalidates what it changed). HTTP origins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_methods: Option<AllowedMethodsSpec>,
}

/// `spec.allowedMethods`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AllowedMethodsSpec {
    GetHead,
    GetHeadOptions,
    All,
}

/// A CloudFront trusted key group whose public keys live in a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKeyGroupSpec {
    /// What `behaviors[].trustedKeyGroups` and `cache.trustedKeyGroups` refer to.
    pub name: KeyGroupName,
    /// Secret in the Distribution's namespace holding the group's public keys: every data
    /// entry is one key, the entry's name is the Key-Pair-Id viewers send (letters, digits,
    /// `-`, `_`) and its value the public key PEM (RSA of 2048+ bits or EC P-256). Several
    /// entries are valid at once, which is how keys are rotated.
    pub secret_ref: SecretRef,
}

/// Name of a trusted key group (1-63 characters of A-Z, a-z, 0-9, `-`, `_`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct KeyGroupName(pub String);

impl JsonSchema for KeyGroupName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KeyGroupName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 63,
            "pattern": KEY_GROUP_NAME_PATTERN,
            "description": "Name of an entry of spec.trustedKeyGroups."
        })
    }
}

impl From<&str> for KeyGroupName {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// An HTTP token: a header name or a method.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct HttpToken(pub String);

impl JsonSchema for HttpToken {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HttpToken".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 128,
            "pattern": TOKEN_PATTERN,
            "description": "HTTP token (header name or method), or *."
        })
    }
}

impl From<&str> for HttpToken {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A CORS origin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct CorsOrigin(pub String);

impl JsonSchema for CorsOrigin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CorsOrigin".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 512,
            "pattern": CORS_ORIGIN_PATTERN,
            "description": "An origin such as https://app.example.com (no path), or *."
        })
    }
}

/// CloudFront response headers policy: CORS and security headers on every viewer response.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHeadersPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// `Strict-Transport-Security`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_transport_security: Option<HstsSpec>,
    /// Adds `X-Content-Type-Options: nosniff`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_type_options: bool,
    /// `X-Frame-Options`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_options: Option<FrameOptions>,
    /// `Referrer-Policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<ReferrerPolicy>,
}

/// Cross-origin resource sharing for viewers' browsers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.allowCredentials) && self.allowCredentials) || !self.allowOrigins.exists(o, o == '*')").message("spec.responseHeadersPolicy.cors.allowCredentials must be false when allowOrigins contains \"*\"").field_path(".allowCredentials").reason(kube::core::cel::Reason::FieldValueForbidden))]
pub struct CorsSpec {
    /// Exact origins (`https://app.example.com`) or `*`.
    #[schemars(length(min = 1, max = 32))]
    pub allow_origins: Vec<CorsOrigin>,
    /// Default `GET`, `HEAD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allow_methods: Vec<HttpToken>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allow_headers: Vec<HttpToken>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub expose_headers: Vec<HttpToken>,
    /// How long browsers may cache a preflight answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<DurationString>,
    /// `Access-Control-Allow-Credentials: true`; not allowed with origin `*`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
}

/// `Strict-Transport-Security`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HstsSpec {
    /// `max-age`, e.g. `365d`.
    pub max_age: DurationString,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_subdomains: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

/// `X-Frame-Options`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOptions {
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "SAMEORIGIN")]
    SameOrigin,
}

impl FrameOptions {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameOptions::Deny => "DENY",
            FrameOptions::SameOrigin => "SAMEORIGIN",
        }
    }
}

/// `Referrer-Policy` values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerPolicy {
    NoReferrer,
    NoReferrerWhenDowngrade,
    Origin,
    OriginWhenCrossOrigin,
    SameOrigin,
    StrictOrigin,
    StrictOriginWhenCrossOrigin,
    UnsafeUrl,
}

impl ReferrerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerPolicy::NoReferrer => "no-referrer",
            ReferrerPolicy::NoReferrerWhenDowngrade => "no-referrer-when-downgrade",
            ReferrerPolicy::Origin => "origin",
            ReferrerPolicy::OriginWhenCrossOrigin => "origin-when-cross-origin",
            ReferrerPolicy::SameOrigin => "same-origin",
            ReferrerPolicy::StrictOrigin => "strict-origin",
            ReferrerPolicy::StrictOriginWhenCrossOrigin => "strict-origin-when-cross-origin",
            ReferrerPolicy::UnsafeUrl => "unsafe-url",
        }
    }
}

/// Limits on viewer requests; unset fields keep the edge's defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ViewerLimitsSpec {
    /// Longest request target (path + query) accepted; longer gets 414. Default 8192.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256, max = 65535))]
    pub max_url_bytes: Option<i32>,
    /// Largest total of request header names and values; larger gets 431. Default 20480.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 1048576))]
    pub max_header_bytes: Option<i32>,
    /// A viewer must send its whole request head within this time. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = positive_duration_rule("spec.viewerLimits.headerReadTimeout"))]
    pub header_read_timeout: Option<DurationString>,
    /// Open viewer connections per replica beyond this wait in the accept queue. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<i32>,
}

/// The viewer IP behind a load balancer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpSpec {
    /// Header the load balancer sets, e.g. `X-Forwarded-For`.
    pub header: HttpToken,
    /// Proxies (counted from the right of the header) that are trusted; 1 = the right-most
    /// entry is the viewer.
    #[serde(default = "default_trusted_hops")]
    #[schemars(range(min = 1, max = 16))]
    pub trusted_hops: i32,
}

fn default_trusted_hops() -> i32 {
    1
}

/// Failover status codes CloudFront origin groups accept (the edge's own list).
pub use kubefront_edge::config::origin::FAILOVER_CODES;

/// At most this many `customHeaders` per origin (CloudFront's limit, the edge's too).
pub const MAX_CUSTOM_HEADERS: usize = kubefront_edge::config::origin::MAX_CUSTOM_HEADERS;

/// Exactly one of `s3` and `http`: an origin is one kind of server. `at` is the field shown.
fn one_origin_kind_rule(at: &str) -> Rule {
    Rule::new("has(self.s3) != has(self.http)")
        .message(kube::core::cel::Message::Message(format!(
            "{at}: set exactly one of {at}.s3 and {at}.http"
        )))
        .reason(kube::core::cel::Reason::FieldValueInvalid)
}

/// What the edge accepts as an HTTP origin's base URL: the viewer's path (and the cache key's
/// query) are appended, so the base can carry neither a query nor a fragment.
fn base_url_rule(field: &str) -> Rule {
    Rule::new(
        "(self.startsWith('http://') || self.startsWith('https://')) && !self.contains('?') && !self.contains('#')",
    )
    .message(kube::core::cel::Message::Message(format!(
        "{field} must start with http:// or https:// and contain no '?' or '#'"
    )))
}

/// The origin every region fetches misses from: an S3 bucket or an HTTP(S) server, optionally
/// with a secondary origin that takes over when it fails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = one_origin_kind_rule("spec.origin"))]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3OriginSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOriginSpec>,
    /// Headers added to every origin request (e.g. a shared secret a private HTTP origin
    /// checks); at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub custom_headers: Vec<CustomHeaderSpec>,
    /// A secondary origin for requests this one fails (CloudFront origin group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
    /// Origin fetch timeouts; the edge's defaults where unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<OriginTimeoutsSpec>,
}

/// An HTTP(S) server; the viewer's normalized path is appended to `url`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpOriginSpec {
    /// Base URL, `https://origin.example.com[/base]`: no query, fragment or credentials.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = base_url_rule("url"))]
    pub url: String,
    /// `Host` sent to the origin; the URL's host[:port] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z0-9.:\\[\\]-]+$')").message("hostHeader must be a host[:port]"))]
    pub host_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OriginTlsSpec>,
}

/// How an `https://` origin's certificate is checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginTlsSpec {
    /// Verify the certificate chain and name. Turn off only for test origins.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// CA bundle (PEM) to trust instead of the system roots; mounted from a mirror of the
    /// Secret, never written into the edge ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
}

fn default_true() -> bool {
    true
}

/// A Secret key holding a PEM CA bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// One header added to origin requests: a literal `value`, or `valueFrom` a Secret (mounted
/// into the edge pods; the value never lands in the edge ConfigMap).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("customHeaders: set exactly one of value and valueFrom").reason(kube::core::cel::Reason::FieldValueInvalid))]
pub struct CustomHeaderSpec {
    pub name: HttpToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueSource>,
}

/// Where a custom header's value comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueSource {
    pub secret_key_ref: SecretKeySelector,
}

/// A named key of a Secret in the Distribution's namespace (both required).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// CloudFront origin group: a request the primary fails is sent once to `secondary`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    pub secondary: SecondaryOriginSpec,
    /// Primary answers that fail over: a subset of 400, 403, 404, 416, 500, 502, 503, 504.
    #[serde(default = "default_failover_codes")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = failover_codes_rule())]
    pub status_codes: Vec<i32>,
    /// Also fail over when the primary cannot be reached or times out.
    #[serde(default = "default_true")]
    pub connect_failures: bool,
}

fn default_failover_codes() -> Vec<i32> {
    vec![500, 502, 503, 504]
}

fn failover_codes_rule() -> Rule {
    let codes: Vec<String> = FAILOVER_CODES.iter().map(|c| c.to_string()).collect();
    Rule::new(format!("self.all(c, c in [{}])", codes.join(", "))).message(
        kube::core::cel::Message::Message(format!(
            "spec.origin.failover.statusCodes: each must be one of {}",
            codes.join(", ")
        )),
    )
}

/// The secondary of a failover: an origin of the same shapes, which cannot fail over again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = one_origin_kind_rule("spec.origin.failover.secondary"))]
pub struct SecondaryOriginSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3OriginSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOriginSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub custom_headers: Vec<CustomHeaderSpec>,
}

/// One region all the others fetch through (CloudFront Origin Shield): one origin fetch per
/// object instead of one per region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OriginShieldSpec {
    /// Name of an entry of `spec.regions`.
    #[schemars(length(min = 1, max = 40))]
    pub region: String,
}

/// How long an edge waits for the origin. Each must be longer than zero.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OriginTimeoutsSpec {
    /// TCP/TLS connect. Default 3s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = positive_duration_rule("spec.origin.timeouts.connect"))]
    pub connect: Option<DurationString>,
    /// Until the origin's response headers arrive. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = positive_duration_rule("spec.origin.timeouts.firstByte"))]
    pub first_byte: Option<DurationString>,
    /// Whole fetch of an object being filled into the cache. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = positive_duration_rule("spec.origin.timeouts.total"))]
    pub total: Option<DurationString>,
    /// Longest wait for the next body chunk once the origin answered (also bounds objects
    /// streamed through uncached). Default: `firstByte`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = positive_duration_rule("spec.origin.timeouts.idle"))]
    pub idle: Option<DurationString>,
}

/// A private S3 bucket (AWS or any S3-compatible server).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3OriginSpec {
    /// Bucket name (3-63 characters of a-z, 0-9, `.`, `-`, `_`).
    #[schemars(length(min = 3, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9._-]*$')").message("bucket must be 3-63 characters of a-z, 0-9, '.', '-', '_', starting with a letter or digit"))]
    pub bucket: String,
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Custom endpoint for S3-compatible servers (`http://minio.storage:9000`); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    /// Key prefix every viewer path is mapped under.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub prefix: String,
    /// Secret in the Distribution's namespace with keys `accessKeyId` and `secretAccessKey`;
    /// absent = the AWS SDK's default chain (IRSA, instance profile…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// A Secret in the Distribution's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the Distribution's namespace.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "value".into()
}

/// A duration string such as `90s`, `24h`, `1h30m` or `365d`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl JsonSchema for DurationString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationString".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
            "description": "Duration such as 90s, 1h30m, 36h or 365d (days only on their own)."
        })
    }
}

impl From<&str> for DurationString {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Display for DurationString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A byte quantity such as `512Mi` or `1G`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct QuantityString(pub String);

impl JsonSchema for QuantityString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "QuantityString".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 24,
            "pattern": QUANTITY_PATTERN,
            "description": "Byte quantity such as 512Mi, 1Gi or 1000000."
        })
    }
}

impl From<&str> for QuantityString {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Display for QuantityString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cache sizing and the default TTL policy. Defaults match the edge proxy's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = cache_ttl_rule("minTTL", "defaultTTL"))]
#[x_kube(validation = cache_ttl_rule("defaultTTL", "maxTTL"))]
pub struct CacheSpec {
    /// Byte-weighted in-memory capacity per replica.
    #[serde(default = "default_memory")]
    pub memory: QuantityString,
    /// Larger objects stream through uncached.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: QuantityString,
    #[serde(default = "default_min_ttl", rename = "minTTL")]
    pub min_ttl: DurationString,
    #[serde(default = "default_default_ttl", rename = "defaultTTL")]
    pub default_ttl: DurationString,
    #[serde(default = "default_max_ttl", rename = "maxTTL")]
    pub max_ttl: DurationString,
    /// How long past expiry a stale copy may be served when the origin fails.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: DurationString,
    /// How long past expiry a stale copy is served while one background refresh runs.
    #[serde(default = "default_min_ttl")]
    pub stale_while_revalidate: DurationString,
    /// TTL for cached 403/404 answers from the origin.
    #[serde(default = "default_negative_ttl", rename = "negativeTTL")]
    pub negative_ttl: DurationString,
    /// How long an origin failure (5xx, timeout, bad credentials) is remembered for an object
    /// with no stale copy, so a struggling origin is not hammered (CloudFront's error caching
    /// minimum TTL). A `customErrorResponses[].ttl` overrides it for its code; `0` disables.
    /// Default 10s.
    #[serde(
        default,
        rename = "errorCachingMinTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_caching_min_ttl: Option<DurationString>,
    #[serde(default)]
    pub key: CacheKeySpec,
    /// Default behavior: key groups whose keys must sign every request no behavior matches,
    /// and every behavior that names none of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub trusted_key_groups: Vec<KeyGroupName>,
}

fn default_memory() -> QuantityString {
    "512Mi".into()
}
fn default_max_object_size() -> QuantityString {
    "64Mi".into()
}
fn default_min_ttl() -> DurationString {
    "0s".into()
}
fn default_default_ttl() -> DurationString {
    "24h".into()
}
fn default_max_ttl() -> DurationString {
    "365d".into()
}
fn default_stale_if_error() -> DurationString {
    "1d".into()
}
fn default_negative_ttl() -> DurationString {
    "10s".into()
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            memory: default_memory(),
            max_object_size: default_max_object_size(),
            min_ttl: default_min_ttl(),
            default_ttl: default_default_ttl(),
            max_ttl: default_max_ttl(),
            stale_if_error: default_stale_if_error(),
            stale_while_revalidate: default_min_ttl(),
            negative_ttl: default_negative_ttl(),
            error_caching_min_ttl: None,
            key: CacheKeySpec::default(),
            trusted_key_groups: Vec::new(),
        }
    }
}

/// What besides the normalized path distinguishes cached objects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.queryStrings) && has(self.queryStringAllowlist))").message("set either queryStrings or queryStringAllowlist, not both").field_path(".queryStringAllowlist"))]
pub struct CacheKeySpec {
    /// `none` (default), `all`, or leave this unset and list names in `queryStringAllowlist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_strings: Option<QueryStringMode>,
    /// Query parameter names that are part of the key (implies mode allowlist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub query_string_allowlist: Vec<String>,
    /// Request header names that are part of the key and forwarded to the origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<String>,
}

/// Whether query strings are part of the cache key.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueryStringMode {
    None,
    All,
}

/// A path-pattern override of the TTL policy (CloudFront cache behavior).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BehaviorSpec {
    /// CloudFront path pattern: `*` matches any run of characters, `?` exactly one.
    #[x_kube(validation = path_pattern_rule())]
    #[schemars(length(min = 1, max = 255))]
    pub path_pattern: String,
    #[serde(default, rename = "minTTL", skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<DurationString>,
    #[serde(
        default,
        rename = "defaultTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_ttl: Option<DurationString>,
    #[serde(default, rename = "maxTTL", skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<DurationString>,
    /// Key groups whose keys must sign requests this behavior matches (signed URLs or
    /// cookies). Unset: those of the default behavior (`cache.trustedKeyGroups`), if any.
    /// `[]`: public, even when the default behavior is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4))]
    pub trusted_key_groups: Option<Vec<KeyGroupName>>,
}

/// Replace an error answer with an object from the origin (CloudFront custom error pages).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomErrorResponseSpec {
    #[x_kube(validation = error_code_rule())]
    pub error_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('..')").message("responsePagePath must be an absolute path such as /404.html"))]
    pub response_page_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 200, max = 599))]
    pub response_code: Option<i32>,
    /// How long the error answer is cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<DurationString>,
}

/// One place edge caches run: a namespace in the local cluster or in a remote one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegionSpec {
    /// DNS-1123 label, unique within the Distribution.
    #[schemars(length(min = 1, max = 40))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS1123_LABEL}')")).message("region name must be a DNS-1123 label (lowercase letters, digits, '-')"))]
    pub name: String,
    /// Absent = the operator's own cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRef>,
    /// URL other clusters reach this region's edges at (`https://eu.cdn.example.com`).
    /// Required on the `spec.originShield` region when other regions are in another cluster:
    /// the operator cannot know how a remote Service is exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = base_url_rule("endpoint"))]
    pub endpoint: Option<String>,
    /// Target namespace; default: the Distribution's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS1123_LABEL}')")).message("namespace must be a DNS-1123 label"))]
    pub namespace: Option<String>,
    /// Edge pods of the region (default 2); not applied while `autoscaling` is set.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Edge container resources; default requests the cache memory plus headroom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub service: ServiceSpec,
    /// Scale the region's Deployment with a HorizontalPodAutoscaler (autoscaling/v2) on CPU.
    /// While set, `replicas` is not applied: the count is the autoscaler's (a new Deployment
    /// starts at `minReplicas`, an existing one keeps its count within the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Pod settings of this region; each field set here replaces the same field of
    /// `spec.pod` as a whole (lists and maps are not merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<EdgePodSpec>,
}

/// CPU-based horizontal autoscaling of a region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("autoscaling.maxReplicas must not be less than autoscaling.minReplicas").field_path(".maxReplicas").reason(kube::core::cel::Reason::FieldValueInvalid))]
pub struct AutoscalingSpec {
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the edge container's CPU request, the autoscaler keeps
    /// pods at (default 80). Needs a CPU request (the default resources have one).
    #[serde(
        default = "default_target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_target_cpu() -> i32 {
    80
}

/// Scheduling, identity and metadata of the edge pods. At `spec.pod` the defaults of every
/// region; at `spec.regions[].pod` one region's overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EdgePodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Default (when neither level sets it): spread the region's pods across zones
    /// (`topology.kubernetes.io/zone`) and nodes (`kubernetes.io/hostname`), best effort
    /// (`ScheduleAnyway`). `[]` turns spreading off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountSpec>,
    /// Added to the pod template; the operator's own annotations (`kubefront.io/...`) cannot
    /// be set here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// Added to the pod template; the labels the operator selects pods by
    /// (`kubefront.io/...`, `app.kubernetes.io/managed-by|name|instance`) cannot be set here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// The identity edge pods run as (for cloud workload identity: IRSA, EKS Pod Identity, GKE
/// Workload Identity). The API token is still not mounted into the edge container; identity
/// webhooks project their own token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.name) && has(self.annotations))").message("serviceAccount.annotations apply only to the ServiceAccount the operator creates: leave serviceAccount.name unset, or annotate your own ServiceAccount").field_path(".annotations").reason(kube::core::cel::Reason::FieldValueForbidden))]
pub struct ServiceAccountSpec {
    /// An existing ServiceAccount in the region's namespace, used as it is (never created,
    /// changed or deleted). Unset: the operator creates `<distribution>-<region>` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS1123_SUBDOMAIN}')")).message("serviceAccount.name must be a DNS-1123 subdomain"))]
    pub name: Option<String>,
    /// On the ServiceAccount the operator creates, e.g.
    /// `eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/edge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

fn default_replicas() -> i32 {
    2
}

/// Where a remote region's API server is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Secret (in the Distribution's namespace) holding a kubeconfig under `key` (default `value`).
    pub kubeconfig_secret_ref: SecretKeyRef,
}

/// How the region's edge Service is exposed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Observed state, written only when it changes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DistributionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub regions: Vec<RegionStatus>,
    /// `<ready>/<total>` regions, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_regions: Option<String>,
}

/// One region's observed state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    pub name: String,
    /// `local` or `kubeconfig:<secret>/<key>`.
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster address of the edge Service (`http://name.ns.svc:80`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Hash of the rendered edge config (the ConfigMap's `kubefront.io/config-hash`). Pods
    /// pick up a new config by reloading their file, without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Running edge pods of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<i32>,
    /// Pods that report `configHash` as the config they have loaded (admin `/config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_pods: Option<i32>,
    /// `Applied`, `Available`, `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the region's objects are (cluster, namespace, object name): what a later move,
    /// rename or removal of the region prunes. Structural, never parsed back from `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RegionTarget>,
    /// Earlier targets of this region (before a move) whose objects could not be removed yet;
    /// retried every reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub stale_targets: Vec<RegionTarget>,
}

/// The full address of a region's edge objects: which cluster (absent = the operator's own),
/// which namespace, and the name every object of the region carries.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct RegionTarget {
    /// The kubeconfig Secret (in the Distribution's namespace) of a remote cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
    pub namespace: String,
    /// Name of the region's ConfigMap, Service, Deployment, PodDisruptionBudget and Secret.
    pub name: String,
}

impl Distribution {
    /// The namespace objects of `region` go to.
    pub fn region_namespace<'a>(&'a self, region: &'a RegionSpec) -> &'a str {
        region
            .namespace
            .as_deref()
            .or(self.metadata.namespace.as_deref())
            .unwrap_or("default")
    }
}

impl DistributionSpec {
    /// Names of every Secret (in the Distribution's namespace) the spec reads: origin
    /// credentials, custom header values and CA bundles, trusted key groups and region
    /// kubeconfigs. A change to any of them must re-reconcile the Distribution.
    pub fn referenced_secrets(&self) -> std::collections::BTreeSet<&str> {
        let secondary_s3 = self
            .origin
            .failover
            .as_ref()
            .and_then(|f| f.secondary.s3.as_ref());
        let creds = self
            .origin
            .s3
            .iter()
            .chain(secondary_s3)
            .filter_map(|s3| s3.credentials_secret_ref.as_ref())
            .map(|r| r.name.as_str());
        let origin_files = self.origin.secret_names();
        let keys = self
            .trusted_key_groups
            .iter()
            .map(|g| g.secret_ref.name.as_str());
        let kubeconfigs = self
            .regions
            .iter()
            .filter_map(|r| r.cluster.as_ref())
            .map(|c| c.kubeconfig_secret_ref.name.as_str());
        creds
            .chain(origin_files)
            .chain(keys)
            .chain(kubeconfigs)
            .collect()
    }
}

impl Origin {
    /// Secrets the primary and secondary origins read values from: custom header values and
    /// CA bundles (not the S3 credentials).
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let secondary = self.failover.as_ref().map(|f| &f.secondary);
        let headers = self
            .custom_headers
            .iter()
            .chain(secondary.into_iter().flat_map(|s| s.custom_headers.iter()))
            .filter_map(|h| h.value_from.as_ref())
            .map(|v| v.secret_key_ref.name.as_str());
        let cas = self
            .http
            .iter()
            .chain(secondary.and_then(|s| s.http.as_ref()))
            .filter_map(|h| h.tls.as_ref()?.ca_secret_ref.as_ref())
            .map(|r| r.name.as_str());
        headers.chain(cas)
    }
}

impl RegionSpec {
    pub fn is_local(&self) -> bool {
        self.cluster.is_none()
    }

    /// How status names the region's cluster.
    pub fn cluster_label(&self) -> String {
        match &self.cluster {
            None => "local".into(),
            Some(c) => format!(
                "kubeconfig:{}/{}",
                c.kubeconfig_secret_ref.name, c.kubeconfig_secret_ref.key
            ),
        }
    }
}

/// The CRD manifest as YAML (what `kubefront-operator crd` prints and crds/distribution.yaml holds).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&Distribution::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use kube::CustomResourceExt;

    fn cel_errors(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        cel_errors_of(fixtures::example(), mutate)
    }

    /// The API server's CEL verdict on `fixture` after `mutate`; empty when it is accepted.
    fn cel_errors_of(fixture: Distribution, mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut obj = serde_json::to_value(fixture).expect("json");
        mutate(&mut obj);
        let crd = Distribution::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json");
        match kube::core::cel::Validator::new().validate(&schema, &obj, None) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn committed_crd_is_current() {
        let committed = include_str!("../../crds/distribution.yaml");
        let generated = crd_yaml().expect("yaml");
        assert!(
            committed == generated,
            "crds/distribution.yaml is stale: run `cargo run -p kubefront-operator -- crd > crds/distribution.yaml`"
        );
    }

    #[test]
    fn example_passes_every_cel_rule() {
        assert_eq!(cel_errors(|_| {}), "");
    }

    #[test]
    fn placed_example_passes_every_cel_rule_and_round_trips() {
        let d = fixtures::placed();
        let placed = serde_json::to_value(&d).expect("json");
        assert_eq!(cel_errors(|o| *o = placed.clone()), "");
        let back: Distribution = serde_json::from_value(placed).expect("parse");
        assert_eq!(back, d);
        let auto = back.spec.regions[0]
            .autoscaling
            .as_ref()
            .expect("autoscaling");
        assert_eq!(auto.target_cpu_utilization_percentage, 70);
        let json = serde_json::to_value(auto).expect("json");
        assert!(
            json.get("targetCPUUtilizationPercentage").is_some(),
            "the field name users write: {json}"
        );
        let ok = cel_errors(|o| {
            o["spec"]["regions"][0]["autoscaling"] =
                serde_json::json!({"minReplicas": 3, "maxReplicas": 3})
        });
        assert_eq!(ok, "", "min == max is a fixed size");
        let ok = cel_errors(|o| {
            o["spec"]["regions"][1]["pod"] =
                serde_json::json!({"serviceAccount": {"name": "edge.sa-1"}})
        });
        assert_eq!(ok, "", "a DNS-1123 subdomain");
    }

    #[test]
    fn cel_rules_reject_bad_specs_naming_the_field() {
        type Mutation = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "minTTL must not be greater than defaultTTL",
                Box::new(|o| o["spec"]["cache"]["minTTL"] = "2d".into()),
            ),
            (
                "defaultTTL must not be greater than maxTTL",
                Box::new(|o| o["spec"]["cache"]["defaultTTL"] = "400d".into()),
            ),
            (
                "defaultTTL must not be greater than maxTTL",
                Box::new(|o| o["spec"]["cache"]["maxTTL"] = "1h".into()),
            ),
            (
                "each behavior needs",
                Box::new(|o| o["spec"]["behaviors"][0]["maxTTL"] = "1h".into()),
            ),
            (
                "region names must be unique",
                Box::new(|o| o["spec"]["regions"][1]["name"] = "local".into()),
            ),
            (
                "region name must be a DNS-1123 label",
                Box::new(|o| o["spec"]["regions"][0]["name"] = "Bad_Name".into()),
            ),
            (
                "errorCode must be one of",
                Box::new(|o| o["spec"]["customErrorResponses"][0]["errorCode"] = 418.into()),
            ),
            (
                "pathPattern must be",
                Box::new(|o| o["spec"]["behaviors"][0]["pathPattern"] = "/a b".into()),
            ),
            (
                "bucket must be",
                Box::new(|o| o["spec"]["origin"]["s3"]["bucket"] = "Assets!".into()),
            ),
            (
                "metadata.name must be a DNS-1035 label",
                Box::new(|o| o["metadata"]["name"] = "1site".into()),
            ),
            (
                "autoscaling.maxReplicas must not be less than autoscaling.minReplicas",
                Box::new(|o| {
                    o["spec"]["regions"][0]["autoscaling"] =
                        serde_json::json!({"minReplicas": 5, "maxReplicas": 2})
                }),
            ),
            (
                "serviceAccount.annotations apply only to the ServiceAccount the operator creates",
                Box::new(
                    |o| o["spec"]["pod"] = serde_json::json!({"serviceAccount": {"name": "edge", "annotations": {"a": "b"}}}),
                ),
            ),
            (
                "serviceAccount.name must be a DNS-1123 subdomain",
                Box::new(|o| {
                    o["spec"]["regions"][1]["pod"] =
                        serde_json::json!({"serviceAccount": {"name": "Edge_SA"}})
                }),
            ),
        ];
        for (want, mutate) in cases {
            let got = cel_errors(mutate);
            assert!(got.contains(want), "expected {want:?} in {got}");
        }
    }

    /// Like `cel_errors`, for the signed fixture, plus what the schema's patterns and enums
    /// say (the local CEL validator checks only the rules).
    fn signed_cel_errors(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        cel_errors_of(fixtures::signed(), mutate)
    }

    #[test]
    fn signed_example_passes_every_cel_rule_and_round_trips() {
        assert_eq!(
            signed_cel_errors(|o| o["spec"]["cache"]["trustedKeyGroups"] = json_list(&["main"])),
            ""
        );
        let d = fixtures::signed();
        let back: Distribution =
            serde_json::from_value(serde_json::to_value(&d).expect("json")).expect("parse");
        assert_eq!(back, d);
    }

    fn json_list(items: &[&str]) -> serde_json::Value {
        items.iter().map(|s| serde_json::Value::from(*s)).collect()
    }

    #[test]
    fn cel_rules_reject_bad_security_specs_naming_the_field() {
        type Mutation = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "spec.behaviors[].trustedKeyGroups: every name must be the name of an entry of spec.trustedKeyGroups",
                Box::new(|o| o["spec"]["behaviors"][1]["trustedKeyGroups"] = json_list(&["nope"])),
            ),
            (
                "spec.cache.trustedKeyGroups: every name must be",
                Box::new(|o| o["spec"]["cache"]["trustedKeyGroups"] = json_list(&["nope"])),
            ),
            (
                "spec.behaviors[].trustedKeyGroups: every name must be",
                Box::new(|o| {
                    o["spec"].as_object_mut().map(|s| s.remove("trustedKeyGroups"));
                }),
            ),
            (
                "spec.trustedKeyGroups: names must be unique",
                Box::new(|o| o["spec"]["trustedKeyGroups"][1]["name"] = "main".into()),
            ),
            (
                "allowCredentials must be false when allowOrigins contains",
                Box::new(|o| {
                    let cors = &mut o["spec"]["responseHeadersPolicy"]["cors"];
                    cors["allowOrigins"] = json_list(&["https://a.example", "*"]);
                    cors["allowCredentials"] = true.into();
                }),
            ),
            (
                "spec.viewerLimits.headerReadTimeout must be longer than zero",
                Box::new(|o| o["spec"]["viewerLimits"]["headerReadTimeout"] = "0s".into()),
            ),
        ];
        for (want, mutate) in cases {
            let got = signed_cel_errors(mutate);
            assert!(got.contains(want), "expected {want:?} in {got}");
        }
        // Credentials with an explicit origin list are fine.
        let ok = signed_cel_errors(|o| {
            o["spec"]["responseHeadersPolicy"]["cors"]["allowCredentials"] = true.into();
        });
        assert_eq!(ok, "");
        let ok =
            signed_cel_errors(|o| o["spec"]["viewerLimits"]["headerReadTimeout"] = "500ms".into());
        assert_eq!(ok, "");
    }

    /// Like `cel_errors`, for the HTTP-origin fixture.
    fn http_cel_errors(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
        cel_errors_of(fixtures::http(), mutate)
    }

    #[test]
    fn http_example_passes_every_cel_rule_and_round_trips() {
        assert_eq!(http_cel_errors(|_| {}), "");
        let ok =
            http_cel_errors(|o| o["spec"]["origin"]["http"]["hostHeader"] = "[::1]:8443".into());
        assert_eq!(ok, "");
        let d = fixtures::http();
        let back: Distribution =
            serde_json::from_value(serde_json::to_value(&d).expect("json")).expect("parse");
        assert_eq!(back, d);
    }

    #[test]
    fn cel_rules_reject_bad_origins_naming_the_field() {
        type Mutation = Box<dyn FnOnce(&mut serde_json::Value)>;
        let origin =
            |o: &mut serde_json::Value| -> serde_json::Value { o["spec"]["origin"].take() };
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "spec.origin: set exactly one of spec.origin.s3 and spec.origin.http",
                Box::new(|o| o["spec"]["origin"]["s3"] = serde_json::json!({"bucket": "abc"})),
            ),
            (
                "spec.origin: set exactly one of spec.origin.s3 and spec.origin.http",
                Box::new(move |o| {
                    let mut v = origin(o);
                    v.as_object_mut().map(|m| m.remove("http"));
                    o["spec"]["origin"] = v;
                }),
            ),
            (
                "url must start with http:// or https:// and contain no '?' or '#'",
                Box::new(|o| o["spec"]["origin"]["http"]["url"] = "https://a.example/x?y=1".into()),
            ),
            (
                "url must start with http:// or https:// and contain no '?' or '#'",
                Box::new(|o| o["spec"]["origin"]["http"]["url"] = "ftp://a.example/x".into()),
            ),
            (
                "url must start with http:// or https:// and contain no '?' or '#'",
                Box::new(|o| o["spec"]["origin"]["http"]["url"] = "https://a.example/#top".into()),
            ),
            (
                "hostHeader must be a host[:port]",
                Box::new(|o| o["spec"]["origin"]["http"]["hostHeader"] = "a b".into()),
            ),
            (
                "customHeaders: set exactly one of value and valueFrom",
                Box::new(|o| o["spec"]["origin"]["customHeaders"][1]["value"] = "x".into()),
            ),
            (
                "customHeaders: set exactly one of value and valueFrom",
                Box::new(|o| {
                    o["spec"]["origin"]["customHeaders"][0]
                        .as_object_mut()
                        .map(|m| m.remove("value"));
                }),
            ),
            (
                "spec.origin.failover.secondary: set exactly one of",
                Box::new(|o| {
                    o["spec"]["origin"]["failover"]["secondary"]["http"] =
                        serde_json::json!({"url": "https://b.example"});
                }),
            ),
            (
                "spec.origin.failover.statusCodes: each must be one of",
                Box::new(|o| {
                    o["spec"]["origin"]["failover"]["statusCodes"] = serde_json::json!([418])
                }),
            ),
            (
                "spec.originShield.region must be the name of an entry of spec.regions",
                Box::new(|o| o["spec"]["originShield"]["region"] = "nope".into()),
            ),
            (
                "endpoint must start with http:// or https://",
                Box::new(|o| {
                    o["spec"]["regions"][0]["endpoint"] = "us-east.cdn.example.com".into()
                }),
            ),
        ];
        for (want, mutate) in cases {
            let got = http_cel_errors(mutate);
            assert!(got.contains(want), "expected {want:?} in {got}");
        }
    }

    #[test]
    fn methods_beyond_get_and_head_need_an_http_origin() {
        let got = cel_errors(|o| o["spec"]["allowedMethods"] = "all".into());
        assert!(
            got.contains("spec.allowedMethods beyond get-head needs an HTTP origin"),
            "{got}"
        );
        let ok = http_cel_errors(|o| o["spec"]["allowedMethods"] = "all".into());
        assert!(!ok.contains("allowedMethods"), "{ok}");
    }

    #[test]
    fn the_custom_header_limit_is_the_edges() {
        // The schema attributes take literals: keep `length(max = 10)` on both customHeaders.
        let crd = Distribution::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json");
        let origin = &schema["properties"]["spec"]["properties"]["origin"]["properties"];
        let secondary =
            &origin["failover"]["properties"]["secondary"]["properties"]["customHeaders"];
        for headers in [&origin["customHeaders"], secondary] {
            assert_eq!(headers["maxItems"], MAX_CUSTOM_HEADERS as u64);
        }
    }

    #[test]
    fn referenced_secrets_cover_credentials_key_groups_and_kubeconfigs() {
        let d = fixtures::signed();
        let names: Vec<&str> = d.spec.referenced_secrets().into_iter().collect();
        assert_eq!(
            names,
            [
                "assets-s3",
                "eu-west-kubeconfig",
                "partner-keys",
                "signing-keys"
            ]
        );
    }

    #[test]
    fn cel_duration_conversion_handles_days_and_compound_forms() {
        // 1d == 24h, and 1d > 23h59m: exercised through the minTTL <= defaultTTL rule.
        let ok = cel_errors(|o| {
            o["spec"]["cache"]["minTTL"] = "1d".into();
            o["spec"]["cache"]["defaultTTL"] = "24h".into();
        });
        assert_eq!(ok, "");
        let bad = cel_errors(|o| {
            o["spec"]["cache"]["minTTL"] = "1d".into();
            o["spec"]["cache"]["defaultTTL"] = "23h59m".into();
        });
        assert!(bad.contains("minTTL"), "{bad}");
        let zero = cel_errors(|o| o["spec"]["cache"]["minTTL"] = "0".into());
        assert_eq!(zero, "");
    }

    #[test]
    fn duration_pattern_accepts_only_what_the_edge_parser_accepts() {
        let re = |s: &str| {
            // Minimal check mirroring DURATION_PATTERN without a regex dependency: every
            // accepted sample must parse with the edge proxy's parser.
            s.parse::<kubefront_edge::config::Dur>().is_ok()
        };
        for s in ["0", "0s", "90s", "24h", "365d", "500ms", "1h30m"] {
            assert!(re(s), "{s}");
        }
    }
}
