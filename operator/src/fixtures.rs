//! Sample Distributions shared by unit tests, reconciler scenarios, benches and e2e tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{Distribution, DistributionSpec};

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
