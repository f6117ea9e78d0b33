//! Sample Distributions shared by unit tests, reconciler scenarios, benches and e2e tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::crd::{Distribution, DistributionSpec};
use crate::render::{KeySecrets, SecretData};

/// The README's example: a local region and a remote one, with credentials and behaviors.
pub const EXAMPLE_SPEC: &str = r#"
origin:
  s3:
    bucket: assets
    region: us-east-1
    endpoint: http://minio.storage:9000
    forcePathStyle: true
    credentialsSecretRef: {name: assets-s3}
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
  key: {queryStringAllowlist: [v], headers: [Accept-Language]}
behaviors:
  - {pathPattern: "/static/*", defaultTTL: 365d}
customErrorResponses:
  - {errorCode: 404, responsePagePath: /404.html, responseCode: 404, ttl: 10s}
regions:
  - name: local
    replicas: 2
  - name: eu-west
    cluster: {kubeconfigSecretRef: {name: eu-west-kubeconfig, key: value}}
    namespace: kubefront-edge
    replicas: 3
    service: {type: LoadBalancer, annotations: {example.com/lb: internal}}
"#;

pub fn spec(yaml: &str) -> DistributionSpec {
    serde_yaml::from_str(yaml).expect("fixture spec parses")
}

/// A stored Distribution (uid, generation) as the API server would return it.
pub fn distribution(name: &str, namespace: &str, spec: DistributionSpec) -> Distribution {
    let mut d = Distribution::new(name, spec);
    d.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        resource_version: Some("100".into()),
        finalizers: Some(vec![crate::reconcile::FINALIZER.into()]),
        ..Default::default()
    };
    d
}

pub fn example() -> Distribution {
    distribution("site", "web", spec(EXAMPLE_SPEC))
}

/// Autoscaling and placement additions to the example: pod defaults for every region
/// (`spec.pod`), and the local region autoscaled with its own node selector, tolerations,
/// priority and a ServiceAccount the operator creates for IRSA.
pub const PLACED_SPEC_EXTRA: &str = r#"
pod:
  nodeSelector: {kubefront.io/pool: edge}
  priorityClassName: edge-default
  podAnnotations: {prometheus.io/scrape: "true"}
  podLabels: {team: cdn}
  imagePullSecrets: [{name: registry-creds}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]
"#;

/// The local region of [`placed`]: what it overrides.
pub const PLACED_LOCAL_REGION: &str = r#"
name: local
replicas: 2
autoscaling: {minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 70}
pod:
  nodeSelector: {node.kubernetes.io/instance-type: c7g.large}
  tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
  priorityClassName: edge-critical
  serviceAccount:
    annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/edge"}
"#;

/// `web/site` with autoscaling and pod settings ([`PLACED_SPEC_EXTRA`],
/// [`PLACED_LOCAL_REGION`]); the remote region keeps the defaults.
pub fn placed() -> Distribution {
    let mut spec = spec(&format!("{EXAMPLE_SPEC}{PLACED_SPEC_EXTRA}"));
    spec.regions[0] = serde_yaml::from_str(PLACED_LOCAL_REGION).expect("region parses");
    distribution("site", "web", spec)
}

/// Test-only public keys (generated with `openssl genpkey`; the private halves were discarded,
/// so nothing can be signed with them): an EC P-256 key, an RSA-2048 key, and an RSA-1024 key
/// the edge must refuse.
pub const EC_P256_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEK9OTl8415k207b2SsNl6J3j5QLje\nx9zVCMKWGh4qKZ/lJFvnnHbHZiUZxf1pdRWkOm4Wl/PfhOjSIwfyULBoMA==\n-----END PUBLIC KEY-----\n";
pub const RSA_2048_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2S+BzZpFLyy0BJE7REd7\nNsikmA7eavz0ItnJRFmNzCEu7EQC5tD/TfgrogfRI4mlRig/VSLL/sw4vTXYhEoL\nxeD/KQvnrKDakndGrwC6k3pPSovvKxjoHCvvApo/Wt/MMLQlRhU4TjU2tf2OgbGE\nm6YQu3aCCV4+S+UJsUcGWcQ34xkezHsbfo5Y63igdwuO+xRrfsHGyahS8ep1qUpI\nhta+L6SEd1wCPg+pCNt9dszApepCzP1jjqSDsr+S4TiRNUTJMXlBMb6kdeZBL/Az\niLbOd4OuvQ+66kY0SfNpdUAabaR8IadlZerfA8awmbICZnc5kTVb3IRncNCICxRA\nswIDAQAB\n-----END PUBLIC KEY-----\n";
pub const RSA_1024_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDdCuB97WAF9Z7/6tztl2J2Wpuz\nD4uPtFoShF3rL0I/EDjfrh8b54RuMZfprX4AQreunAQli+/aFPMWYu0/2a7Ehi/Q\ngKeELzNAv4Mh9A0FS23cyQnIuFjPGeQ3wkwjOiH6s3KM/G+p/mfOb7jZoplD8xav\nu28JOcziQpLyFjdaLQIDAQAB\n-----END PUBLIC KEY-----\n";

/// Security additions to the example: key groups `main` (Secret `signing-keys`) and `partners`
/// (Secret `partner-keys`), a response headers policy, viewer limits and the client IP header.
pub const SIGNED_SPEC_EXTRA: &str = r#"
trustedKeyGroups:
  - {name: main, secretRef: {name: signing-keys}}
  - {name: partners, secretRef: {name: partner-keys}}
responseHeadersPolicy:
  cors:
    allowOrigins: ["https://app.example.com"]
    allowHeaders: [Range]
    exposeHeaders: [ETag]
    maxAge: 10m
  strictTransportSecurity: {maxAge: 365d, includeSubdomains: true}
  contentTypeOptions: true
  frameOptions: DENY
  referrerPolicy: strict-origin-when-cross-origin
viewerLimits: {maxUrlBytes: 4096, headerReadTimeout: 5s}
clientIp: {header: X-Forwarded-For, trustedHops: 2}
"#;

/// `EXAMPLE_SPEC` with `SIGNED_SPEC_EXTRA` and two signed behaviors.
pub fn signed_spec() -> DistributionSpec {
    let mut spec = spec(&format!("{EXAMPLE_SPEC}{SIGNED_SPEC_EXTRA}"));
    spec.behaviors.push(behavior("/private/*", &["main"]));
    spec.behaviors
        .push(behavior("/partners/*", &["main", "partners"]));
    spec
}

fn behavior(pattern: &str, groups: &[&str]) -> crate::crd::BehaviorSpec {
    crate::crd::BehaviorSpec {
        path_pattern: pattern.into(),
        min_ttl: None,
        default_ttl: None,
        max_ttl: None,
        trusted_key_groups: Some(groups.iter().map(|g| (*g).into()).collect()),
    }
}

/// `web/site` with [`signed_spec`].
pub fn signed() -> Distribution {
    distribution("site", "web", signed_spec())
}

/// Secret data from (entry, text) pairs.
pub fn secret_data(entries: &[(&str, &str)]) -> SecretData {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The Secrets [`signed`] reads: `signing-keys` with two keys (a rotation in progress) and
/// `partner-keys` with one.
pub fn key_secrets() -> KeySecrets {
    KeySecrets::from([
        (
            "signing-keys".to_string(),
            secret_data(&[
                ("K2ROTATED", RSA_2048_PUBLIC_PEM),
                ("K1EC", EC_P256_PUBLIC_PEM),
            ]),
        ),
        (
            "partner-keys".to_string(),
            secret_data(&[("KPARTNER", RSA_2048_PUBLIC_PEM)]),
        ),
    ])
}

/// An HTTP origin with a literal and a Secret-backed custom header, a private CA, failover to
/// an S3 bucket, and `us-east` as origin shield for a same-cluster and a remote region.
pub const HTTP_SPEC: &str = r#"
origin:
  http:
    url: https://origin.example.com/site
    hostHeader: www.example.com
    tls: {caSecretRef: {name: origin-ca}}
  customHeaders:
    - {name: X-Cdn, value: kubefront}
    - name: X-Origin-Secret
      valueFrom: {secretKeyRef: {name: origin-auth, key: token}}
  failover:
    secondary:
      s3: {bucket: assets-backup, credentialsSecretRef: {name: assets-s3}}
    statusCodes: [500, 502, 503, 504, 404]
originShield: {region: us-east}
regions:
  - name: us-east
    endpoint: https://us-east.cdn.example.com
  - name: us-west
    namespace: edge-west
  - name: eu-west
    cluster: {kubeconfigSecretRef: {name: eu-west-kubeconfig}}
    namespace: kubefront-edge
"#;

/// The header value and CA bundle of [`HTTP_SPEC`]: never to be seen in a ConfigMap.
pub const ORIGIN_SECRET_VALUE: &str = "s3cr3t-origin-token";
pub const ORIGIN_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n";
/// The shield token the HTTP fixture renders with.
pub const SHIELD_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// `web/cdn` with [`HTTP_SPEC`].
pub fn http() -> Distribution {
    distribution("cdn", "web", spec(HTTP_SPEC))
}

/// The Secrets [`http`]'s origin reads values from.
pub fn origin_secrets() -> KeySecrets {
    KeySecrets::from([
        (
            "origin-auth".to_string(),
            secret_data(&[("token", ORIGIN_SECRET_VALUE)]),
        ),
        (
            "origin-ca".to_string(),
            secret_data(&[("ca.crt", ORIGIN_CA_PEM)]),
        ),
    ])
}
