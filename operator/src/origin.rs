//! The origin side of the edge config: `spec.origin` (S3 or HTTP, custom headers, failover)
//! as the edge's `OriginConfig`, which Secret keys its files come from, and the per-region
//! origin of an origin-shielded Distribution. Pure.
//!
//! Secret-backed values (custom header values, CA bundles, the shield token) never enter the
//! edge ConfigMap: the config names files under [`ORIGIN_SECRETS_DIR`], and the region's
//! mirrored Secret (see `render`) holds them under the keys [`secret_files`] lists.

use kubefront_edge::config::{
    security::TrustedChildren, EdgeConfig, Failover, HttpOrigin, OriginConfig, OriginCustomHeader,
    OriginTls, S3Origin,
};

use crate::crd::{
    CustomHeaderSpec, Distribution, HttpOriginSpec, Origin, RegionSpec, S3OriginSpec, SecretRef,
};
use crate::edge_config::RenderError;

/// Where the region's mirrored Secret is mounted (read-only) in the edge container.
pub const ORIGIN_SECRETS_DIR: &str = "/etc/kubefront-origin";
/// Header a shielded region sends to the shield with the Distribution's shared token. The
/// shield's edges trust requests carrying it to have passed the signed-URL checks at the
/// child (`security.trustedChildren`); viewers without it are checked as everywhere.
pub const SHIELD_HEADER: &str = "X-Kubefront-Shield";
/// Key of the shield token, in the operator-owned Secret and in every region's mirror.
pub const SHIELD_TOKEN_KEY: &str = "shield-token";
/// What a shielded region fails over to the real origin on (CloudFront's 5xx set).
pub const SHIELD_FAILOVER_CODES: [u16; 4] = [500, 502, 503, 504];

/// Name of the operator-owned Secret holding a Distribution's shield token. The dot keeps it
/// apart from every region object (`<distribution>-<region>`, DNS labels only).
pub fn shield_secret_name(dist: &Distribution) -> String {
    format!(
        "{}.origin-shield",
        dist.metadata.name.as_deref().unwrap_or_default()
    )
}

/// One value the edge reads from a file: `key` in the region's mirrored Secret (also the file
/// name under [`ORIGIN_SECRETS_DIR`]), copied from `secret`/`secret_key` in the
/// Distribution's namespace; `field` is the spec field that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub key: String,
    pub secret: String,
    pub secret_key: String,
    pub field: String,
}

impl SecretFile {
    /// The path the edge config names.
    pub fn path(&self) -> String {
        file_path(&self.key)
    }
}

fn file_path(key: &str) -> String {
    format!("{ORIGIN_SECRETS_DIR}/{key}")
}

/// Mirrored key of header `i` of the primary (`origin`) or secondary (`failover`) origin.
fn header_key(role: &str, i: usize) -> String {
    format!("{role}-header-{i}")
}

/// Mirrored key of the CA bundle of the primary or secondary origin.
fn ca_key(role: &str) -> String {
    format!("{role}-ca.crt")
}

/// Every Secret value `spec.origin` reads from a file, in a stable order.
pub fn secret_files(origin: &Origin) -> Vec<SecretFile> {
    let mut out = Vec::new();
    collect_files(
        "origin",
        "spec.origin",
        origin.http.as_ref(),
        &origin.custom_headers,
        &mut out,
    );
    if let Some(f) = &origin.failover {
        let s = &f.secondary;
        collect_files(
            "failover",
            "spec.origin.failover.secondary",
            s.http.as_ref(),
            &s.custom_headers,
            &mut out,
        );
    }
    out
}

fn collect_files(
    role: &str,
    at: &str,
    http: Option<&HttpOriginSpec>,
    headers: &[CustomHeaderSpec],
    out: &mut Vec<SecretFile>,
) {
    for (i, h) in headers.iter().enumerate() {
        if let Some(v) = &h.value_from {
            out.push(SecretFile {
                key: header_key(role, i),
                secret: v.secret_key_ref.name.clone(),
                secret_key: v.secret_key_ref.key.clone(),
                field: format!("{at}.customHeaders[{i}].valueFrom.secretKeyRef"),
            });
        }
    }
    if let Some(r) = http.and_then(|h| h.tls.as_ref()?.ca_secret_ref.as_ref()) {
        out.push(SecretFile {
            key: ca_key(role),
            secret: r.name.clone(),
            secret_key: r.key.clone(),
            field: format!("{at}.http.tls.caSecretRef"),
        });
    }
}

/// The S3 credentials Secret the edge's environment carries, with the field naming it. The
/// edge has one set of S3 credentials, so a secondary S3 origin may name the primary's Secret
/// or none, never another.
pub fn credentials_ref(origin: &Origin) -> Result<Option<(&SecretRef, String)>, RenderError> {
    let primary = origin
        .s3
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref());
    let secondary = origin
        .failover
        .as_ref()
        .and_then(|f| f.secondary.s3.as_ref())
        .and_then(|s| s.credentials_secret_ref.as_ref());
    match (primary, secondary) {
        (Some(p), Some(s)) if p != s => Err(RenderError::new(
            "spec.origin.failover.secondary.s3.credentialsSecretRef",
            format!(
                "must name the same Secret as spec.origin.s3.credentialsSecretRef ({:?}) or none: edges hold one set of S3 credentials",
                p.name
            ),
        )),
        (Some(p), _) => Ok(Some((p, "spec.origin.s3.credentialsSecretRef".into()))),
        (None, Some(s)) => Ok(Some((
            s,
            "spec.origin.failover.secondary.s3.credentialsSecretRef".into(),
        ))),
        (None, None) => Ok(None),
    }
}

fn s3_origin(s3: &S3OriginSpec) -> S3Origin {
    let mut o = S3Origin::new(s3.bucket.clone());
    o.region = s3.region.clone();
    o.endpoint = s3.endpoint.clone();
    o.force_path_style = s3.force_path_style;
    o.prefix = s3.prefix.clone();
    o
}

fn http_origin(role: &str, http: &HttpOriginSpec) -> HttpOrigin {
    let tls = http.tls.as_ref();
    HttpOrigin {
        url: http.url.clone(),
        host_header: http.host_header.clone(),
        tls: OriginTls {
            verify: tls.is_none_or(|t| t.verify),
            ca_file: tls
                .and_then(|t| t.ca_secret_ref.as_ref())
                .map(|_| file_path(&ca_key(role))),
        },
    }
}

fn custom_headers(role: &str, headers: &[CustomHeaderSpec]) -> Vec<OriginCustomHeader> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| OriginCustomHeader {
            name: h.name.0.clone(),
            value: h.value.clone(),
            value_file: h
                .value_from
                .as_ref()
                .map(|_| file_path(&header_key(role, i))),
        })
        .collect()
}

/// One origin (no failover yet) with the edge's default timeouts.
fn origin_of(
    role: &str,
    s3: Option<&S3OriginSpec>,
    http: Option<&HttpOriginSpec>,
    headers: &[CustomHeaderSpec],
) -> OriginConfig {
    // Both or neither set (the schema forbids it) is left for the edge's `validate()` to
    // report, naming the field.
    let mut o = OriginConfig::s3(S3Origin::new(""));
    o.s3 = s3.map(s3_origin);
    o.http = http.map(|h| http_origin(role, h));
    o.custom_headers = custom_headers(role, headers);
    o
}

/// `spec.origin` as the edge's origin (timeouts are set by the caller).
pub fn origin_config(origin: &Origin) -> OriginConfig {
    let mut o = origin_of(
        "origin",
        origin.s3.as_ref(),
        origin.http.as_ref(),
        &origin.custom_headers,
    );
    o.failover = origin.failover.as_ref().map(|f| {
        let s = &f.secondary;
        Box::new(Failover {
            secondary: origin_of(
                "failover",
                s.s3.as_ref(),
                s.http.as_ref(),
                &s.custom_headers,
            ),
            // Out-of-range codes become 0, which the edge refuses naming the index.
            status_codes: f
                .status_codes
                .iter()
                .map(|c| u16::try_from(*c).unwrap_or(0))
                .collect(),
            connect_failures: f.connect_failures,
        })
    });
    o
}

/// The origin of a region behind the shield at `shield_url`: the shield first (with the shared
/// token), the real origin when the shield fails or is unreachable, so regions keep serving
/// while the shield is down. The real origin's own failover is dropped there (a secondary
/// cannot fail over again): only the shield region uses it.
pub fn shielded(real: &OriginConfig, shield_url: String) -> OriginConfig {
    let mut secondary = real.clone();
    secondary.failover = None;
    let mut o = OriginConfig::http(shield_url);
    o.timeouts = real.timeouts;
    o.max_attempts = real.max_attempts;
    o.custom_headers = vec![OriginCustomHeader {
        name: SHIELD_HEADER.into(),
        value: None,
        value_file: Some(file_path(SHIELD_TOKEN_KEY)),
    }];
    o.failover = Some(Box::new(Failover {
        secondary,
        status_codes: SHIELD_FAILOVER_CODES.to_vec(),
        connect_failures: true,
    }));
    o
}

/// Same cluster: both local, or both through the same kubeconfig Secret key. Two Secrets
/// reaching one cluster count as two clusters (the operator cannot tell).
fn same_cluster(a: &RegionSpec, b: &RegionSpec) -> bool {
    a.cluster == b.cluster
}

/// Where `child` reaches the shield region (index `shield` of `spec.regions`): its Service in
/// the same cluster, `spec.regions[shield].endpoint` from another.
fn shield_url(
    dist: &Distribution,
    shield: usize,
    child: &RegionSpec,
) -> Result<String, RenderError> {
    let regions = &dist.spec.regions;
    let Some(s) = regions.get(shield) else {
        return Err(RenderError::new(
            "spec.originShield.region",
            "must be the name of an entry of spec.regions",
        ));
    };
    if same_cluster(s, child) {
        return Ok(crate::render::service_url(dist, s));
    }
    s.endpoint.clone().ok_or_else(|| {
        RenderError::new(
            format!("spec.regions[{shield}].endpoint"),
            format!(
                "region {:?} is the origin shield and region {:?} is in another cluster: set spec.regions[{shield}].endpoint to the URL {:?}'s edges are reachable at from there",
                s.name, child.name, s.name
            ),
        )
    })
}

/// The edge config of every region, in `spec.regions` order: `base` everywhere without an
/// origin shield; with one, the shield region keeps `base` and every other region fetches
/// through the shield.
pub fn region_configs(
    dist: &Distribution,
    base: &EdgeConfig,
) -> Result<Vec<EdgeConfig>, RenderError> {
    let regions = &dist.spec.regions;
    let Some(shield) = &dist.spec.origin_shield else {
        return Ok(vec![base.clone(); regions.len()]);
    };
    let idx = regions
        .iter()
        .position(|r| r.name == shield.region)
        .ok_or_else(|| {
            RenderError::new(
                "spec.originShield.region",
                format!(
                    "{:?} must be the name of an entry of spec.regions",
                    shield.region
                ),
            )
        })?;
    regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == idx {
                let mut cfg = base.clone();
                cfg.security.trusted_children = Some(TrustedChildren {
                    header: SHIELD_HEADER.into(),
                    value_file: file_path(SHIELD_TOKEN_KEY),
                });
                return Ok(cfg);
            }
            let mut cfg = base.clone();
            cfg.origin = shielded(&base.origin, shield_url(dist, idx, r)?);
            cfg.validate().map_err(|e| {
                RenderError::new(
                    "spec.originShield",
                    format!("region {:?} behind the shield: {e}", r.name),
                )
            })?;
            Ok(cfg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge_config::{edge_config, KeySecrets};
    use crate::fixtures;

    fn base(d: &Distribution) -> EdgeConfig {
        edge_config(&d.spec, &KeySecrets::new()).expect("valid")
    }

    #[test]
    fn http_origin_headers_and_failover_reach_the_edge_config() {
        let cfg = base(&fixtures::http());
        let o = &cfg.origin;
        assert_eq!(o.s3, None);
        let h = o.http.as_ref().expect("http");
        assert_eq!(h.url, "https://origin.example.com/site");
        assert_eq!(h.host_header.as_deref(), Some("www.example.com"));
        assert!(h.tls.verify, "verify defaults to true");
        assert_eq!(
            h.tls.ca_file.as_deref(),
            Some("/etc/kubefront-origin/origin-ca.crt")
        );
        let headers: Vec<_> = o
            .custom_headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_deref(), h.value_file.as_deref()))
            .collect();
        assert_eq!(
            headers,
            [
                ("X-Cdn", Some("kubefront"), None),
                (
                    "X-Origin-Secret",
                    None,
                    Some("/etc/kubefront-origin/origin-header-1")
                ),
            ]
        );
        let f = o.failover.as_ref().expect("failover");
        assert_eq!(f.status_codes, [500, 502, 503, 504, 404]);
        assert!(f.connect_failures);
        assert_eq!(
            f.secondary.s3.as_ref().map(|s| s.bucket.as_str()),
            Some("assets-backup")
        );
        // What the edge reads back is what was rendered, and it accepts it.
        let back = EdgeConfig::from_yaml(&cfg.to_yaml()).expect("parses");
        back.validate().expect("the edge accepts it");
        assert_eq!(back, cfg);
        assert!(!cfg.to_yaml().contains(fixtures::ORIGIN_SECRET_VALUE));
    }

    #[test]
    fn failover_defaults_and_secondary_timeouts() {
        let mut d = fixtures::http();
        let f = d.spec.origin.failover.as_mut().expect("failover");
        let json = serde_json::json!({"secondary": {"s3": {"bucket": "b-ck"}}});
        *f = serde_json::from_value(json).expect("defaults");
        d.spec.origin.timeouts = Some(crate::crd::OriginTimeoutsSpec {
            connect: Some("1s".into()),
            ..Default::default()
        });
        let cfg = base(&d);
        let f = cfg.origin.failover.as_ref().expect("failover");
        assert_eq!(f.status_codes, [500, 502, 503, 504]);
        assert!(f.connect_failures);
        assert_eq!(f.secondary.timeouts, cfg.origin.timeouts, "same limits");
    }

    #[test]
    fn shielded_regions_fetch_through_the_shield_and_fail_over_to_the_real_origin() {
        let d = fixtures::http();
        let base = base(&d);
        let cfgs = region_configs(&d, &base).expect("renders");
        assert_eq!(cfgs.len(), 3);
        assert_eq!(
            cfgs[0].origin, base.origin,
            "the shield region uses the real origin"
        );
        let trusted = cfgs[0]
            .security
            .trusted_children
            .as_ref()
            .expect("trusts children");
        assert_eq!(
            (trusted.header.as_str(), trusted.value_file.as_str()),
            ("X-Kubefront-Shield", "/etc/kubefront-origin/shield-token")
        );
        let mut real = base.origin.clone();
        real.failover = None;
        for (i, url) in [
            (1, "http://cdn-us-east.web.svc:80"),
            (2, "https://us-east.cdn.example.com"),
        ] {
            let o = &cfgs[i].origin;
            assert_eq!(o.http.as_ref().map(|h| h.url.as_str()), Some(url), "{i}");
            assert_eq!(
                o.custom_headers,
                [OriginCustomHeader {
                    name: "X-Kubefront-Shield".into(),
                    value: None,
                    value_file: Some("/etc/kubefront-origin/shield-token".into()),
                }]
            );
            let f = o.failover.as_ref().expect("failover");
            assert_eq!(
                f.secondary, real,
                "the real origin, without its own failover"
            );
            assert_eq!(f.status_codes, [500, 502, 503, 504]);
            assert!(f.connect_failures);
            EdgeConfig::from_yaml(&cfgs[i].to_yaml())
                .expect("parses")
                .validate()
                .expect("the edge accepts it");
            assert_eq!(cfgs[i].cache, base.cache, "only the origin differs");
        }
    }

    #[test]
    fn without_a_shield_every_region_gets_the_same_config() {
        let mut d = fixtures::http();
        d.spec.origin_shield = None;
        let base = base(&d);
        let cfgs = region_configs(&d, &base).expect("renders");
        assert!(cfgs.iter().all(|c| *c == base));
    }

    #[test]
    fn a_remote_region_needs_the_shield_endpoint_naming_the_field() {
        let mut d = fixtures::http();
        d.spec.regions[0].endpoint = None;
        let err = region_configs(&d, &base(&d)).expect_err("no endpoint");
        assert_eq!(err.field, "spec.regions[0].endpoint");
        assert!(err.message.contains("\"eu-west\""), "{err}");
        // Same-cluster regions alone need none.
        d.spec.regions.truncate(2);
        region_configs(&d, &base(&d)).expect("same cluster");
        // A shield naming no region (the schema forbids it) is reported, not a panic.
        d.spec.origin_shield = Some(crate::crd::OriginShieldSpec {
            region: "nope".into(),
        });
        let err = region_configs(&d, &base(&d)).expect_err("unknown region");
        assert_eq!(err.field, "spec.originShield.region");
    }

    #[test]
    fn edge_refusals_of_the_origin_name_the_spec_field() {
        type Mutation = Box<dyn Fn(&mut Origin)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|o| o.custom_headers[0].name = "Host".into()),
                "spec.origin.customHeaders[0].name",
            ),
            (
                Box::new(|o| o.custom_headers[0].value = None),
                "spec.origin.customHeaders[0]",
            ),
            (
                Box::new(|o| {
                    if let Some(h) = o.http.as_mut() {
                        h.url = "https://u:p@origin.example.com".into();
                    }
                }),
                "spec.origin.http.url",
            ),
            (Box::new(|o| o.http = None), "spec.origin.s3"),
            (
                Box::new(|o| {
                    if let Some(f) = o.failover.as_mut() {
                        f.status_codes = vec![418];
                    }
                }),
                "spec.origin.failover.statusCodes[0]",
            ),
            (
                Box::new(|o| {
                    if let Some(f) = o.failover.as_mut() {
                        f.status_codes = vec![-1];
                    }
                }),
                "spec.origin.failover.statusCodes[0]",
            ),
        ];
        for (mutate, field) in cases {
            let mut d = fixtures::http();
            mutate(&mut d.spec.origin);
            let err = edge_config(&d.spec, &KeySecrets::new()).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn one_set_of_s3_credentials() {
        let mut d = fixtures::example();
        let (r, field) = credentials_ref(&d.spec.origin).expect("ok").expect("some");
        assert_eq!(
            (r.name.as_str(), field.as_str()),
            ("assets-s3", "spec.origin.s3.credentialsSecretRef")
        );
        let h = fixtures::http();
        let (r, field) = credentials_ref(&h.spec.origin).expect("ok").expect("some");
        assert_eq!(
            (r.name.as_str(), field.as_str()),
            (
                "assets-s3",
                "spec.origin.failover.secondary.s3.credentialsSecretRef"
            )
        );
        let mut secondary = h.spec.origin.failover.clone().expect("failover");
        if let Some(s3) = secondary.secondary.s3.as_mut() {
            s3.credentials_secret_ref = Some(SecretRef {
                name: "other".into(),
            });
        }
        d.spec.origin.failover = Some(secondary);
        let err = credentials_ref(&d.spec.origin).expect_err("two sets");
        assert_eq!(
            err.field,
            "spec.origin.failover.secondary.s3.credentialsSecretRef"
        );
    }

    #[test]
    fn secret_files_list_every_secret_backed_value() {
        let files = secret_files(&fixtures::http().spec.origin);
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.key.as_str(), f.secret.as_str(), f.secret_key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("origin-header-1", "origin-auth", "token"),
                ("origin-ca.crt", "origin-ca", "ca.crt"),
            ]
        );
        assert_eq!(
            files[0].field,
            "spec.origin.customHeaders[1].valueFrom.secretKeyRef"
        );
        let d = fixtures::http();
        let names: Vec<_> = d.spec.referenced_secrets().into_iter().collect();
        assert_eq!(
            names,
            [
                "assets-s3",
                "eu-west-kubeconfig",
                "origin-auth",
                "origin-ca"
            ]
        );
    }

    #[test]
    fn the_http_example_parses_and_renders() {
        let text = include_str!("../../examples/http-distribution.yaml");
        let mut dist = None;
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if v["kind"].as_str() == Some("Distribution") {
                dist = Some(serde_yaml::from_value::<Distribution>(v).expect("Distribution"));
            }
        }
        let dist = dist.expect("a Distribution");
        let base = edge_config(&dist.spec, &KeySecrets::new()).expect("renders");
        region_configs(&dist, &base).expect("every region renders");
    }
}
