//! Pure rendering: a Distribution and one of its regions → the Kubernetes objects that run the
//! edge cache there (the edge config itself comes from `edge_config`). No I/O, so it is
//! snapshot-tested and benchmarked on its own.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount,
    ServicePort, ServiceSpec as K8sServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::Resource;
use kubefront_edge::config::EdgeConfig;
use sha2::{Digest, Sha256};

use crate::crd::{Distribution, RegionSpec};
pub use crate::edge_config::{
    edge_config, KeySecrets, RenderError, SecretData, REASON_INVALID_SPEC, REASON_SECRET_INVALID,
    REASON_SECRET_NOT_FOUND,
};
use crate::origin::{ORIGIN_SECRETS_DIR, SHIELD_TOKEN_KEY};
use crate::ownership::ANNOTATION_DISTRIBUTION_UID;
use crate::placement;

/// Field manager for every server-side apply.
pub const FIELD_MANAGER: &str = "kubefront-operator";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_DISTRIBUTION: &str = "kubefront.io/distribution";
/// Namespace of the owning Distribution: remote objects cannot carry an owner reference, so
/// watch events are mapped back to their Distribution through this label.
pub const LABEL_DISTRIBUTION_NAMESPACE: &str = "kubefront.io/distribution-namespace";
pub const LABEL_REGION: &str = "kubefront.io/region";
/// On the ConfigMap: hash of the edge config it holds, the value each edge reports for the file
/// it has loaded (`/config`, `kubefront_edge_config_info`). Not on the pod template: a config
/// change reaches running pods by file reload and keeps their caches.
pub const ANNOTATION_CONFIG_HASH: &str = "kubefront.io/config-hash";
/// On the pod template: hash of the config a running edge cannot reload (listen addresses,
/// shutdown grace), so only such changes restart pods.
pub const ANNOTATION_RESTART_HASH: &str = "kubefront.io/restart-hash";
pub const ANNOTATION_CREDENTIALS_HASH: &str = "kubefront.io/credentials-hash";
/// On the pod template: hash of the mirrored origin value files (header values, CA bundles,
/// shield token), which the edge reads only when it loads its config.
pub const ANNOTATION_ORIGIN_FILES_HASH: &str = "kubefront.io/origin-files-hash";
/// Label selector matching everything this operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kubefront-operator";
/// Key of the edge config inside the ConfigMap (mounted at /etc/kubefront/edge.yaml).
pub const CONFIG_KEY: &str = "edge.yaml";
pub const CONFIG_DIR: &str = "/etc/kubefront";
pub const VIEWER_PORT: i32 = 8080;
pub const ADMIN_PORT: i32 = 9090;
pub const SERVICE_PORT: i32 = 80;
/// The distroless `nonroot` user both images run as.
pub const RUN_AS_UID: i64 = 65532;
/// How long a terminating edge pod keeps serving before it is sent SIGTERM. Once a pod is
/// marked terminating, the EndpointSlice controller, kube-proxy on every node and external
/// load balancers drop it within a few seconds; an edge that stopped listening earlier would
/// refuse viewers still sent to it. The edge closes its listeners at SIGTERM (then drains for
/// `server.shutdownGrace`), so the sleep comes first, as a preStop hook (the distroless image
/// has no `sleep` binary: the kubelet's own sleep action).
pub const PRE_STOP_SLEEP_SECONDS: i64 = 10;
/// Extra time after preStop + drain before the kubelet kills the container.
pub const TERMINATION_MARGIN_SECONDS: i64 = 10;
/// Keys of the origin credentials Secret and the env vars they become.
pub const CREDENTIAL_KEYS: [(&str, &str); 2] = [
    ("accessKeyId", "AWS_ACCESS_KEY_ID"),
    ("secretAccessKey", "AWS_SECRET_ACCESS_KEY"),
];

/// Everything one region runs, in apply order (credentials and config before the Deployment).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionObjects {
    pub secret: Option<Secret>,
    pub config_map: ConfigMap,
    pub service: Service,
    pub pdb: PodDisruptionBudget,
    pub deployment: Deployment,
    /// Present while `autoscaling` is set; the Deployment then carries no replica count.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// The ServiceAccount the operator creates for the pods (`pod.serviceAccount` without a
    /// name); applied before the Deployment.
    pub service_account: Option<ServiceAccount>,
    /// Hash of the rendered edge config (on the ConfigMap; what updated edges report).
    pub config_hash: String,
}

/// No Secrets: for a spec whose origin reads none.
pub static NO_SECRETS: KeySecrets = BTreeMap::new();

/// What a region render needs besides the Distribution.
pub struct RenderContext<'a> {
    pub edge_image: &'a str,
    /// Contents of the origin credentials Secret, when the spec names one.
    pub credentials: Option<&'a BTreeMap<String, ByteString>>,
    /// The Secrets (by name) the origin's custom headers and CA bundles come from; a name
    /// missing here is a Secret that does not exist.
    pub origin_secrets: &'a KeySecrets,
    /// The Distribution's shield token, when it has an origin shield.
    pub shield_token: Option<&'a [u8]>,
}

/// Name of every edge object of `region`.
pub fn object_name(dist: &Distribution, region: &str) -> String {
    format!(
        "{}-{}",
        dist.metadata.name.as_deref().unwrap_or_default(),
        region
    )
}

/// Short, stable hash of text (config or credentials) for pod-template annotations.
pub fn content_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

/// Labels every object of the region carries (contract: managed-by, distribution, region).
pub fn labels(dist: &Distribution, region: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(dist, region);
    l.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    l.insert("app.kubernetes.io/name".into(), "kubefront-edge".into());
    l.insert(
        "app.kubernetes.io/instance".into(),
        object_name(dist, region),
    );
    l.insert(
        LABEL_DISTRIBUTION_NAMESPACE.into(),
        dist.metadata.namespace.clone().unwrap_or_default(),
    );
    l
}

/// Label selector of the region's pods (as `selector_labels`, plus the Distribution's
/// namespace so same-named Distributions of two namespaces never mix).
pub fn pod_selector(dist: &Distribution, region: &str) -> String {
    format!(
        "{LABEL_DISTRIBUTION}={},{LABEL_REGION}={region},{LABEL_DISTRIBUTION_NAMESPACE}={}",
        dist.metadata.name.as_deref().unwrap_or_default(),
        dist.metadata.namespace.as_deref().unwrap_or_default()
    )
}

fn selector_labels(dist: &Distribution, region: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_DISTRIBUTION.to_string(),
            dist.metadata.name.clone().unwrap_or_default(),
        ),
        (LABEL_REGION.to_string(), region.to_string()),
    ])
}

/// Owner references are only valid within the owner's namespace and cluster; elsewhere the
/// finalizer removes the objects.
fn owner_refs(dist: &Distribution, region: &RegionSpec) -> Option<Vec<OwnerReference>> {
    let same_ns =
        dist.region_namespace(region) == dist.metadata.namespace.as_deref().unwrap_or("default");
    if region.is_local() && same_ns {
        dist.controller_owner_ref(&()).map(|r| vec![r])
    } else {
        None
    }
}

/// Name, labels and ownership markers (UID annotation, owner reference where valid) of every
/// object of the region.
fn meta(dist: &Distribution, region: &RegionSpec) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(dist, &region.name)),
        namespace: Some(dist.region_namespace(region).to_string()),
        labels: Some(labels(dist, &region.name)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_DISTRIBUTION_UID.to_string(),
            dist.metadata.uid.clone().unwrap_or_default(),
        )])),
        owner_references: owner_refs(dist, region),
        ..Default::default()
    }
}

/// Bytes as a Kubernetes quantity, in Mi when exact.
fn bytes_quantity(n: u64) -> Quantity {
    if n % (1 << 20) == 0 {
        Quantity(format!("{}Mi", n >> 20))
    } else {
        Quantity(n.to_string())
    }
}

/// Default resources: the cache's memory plus headroom for buffers and the runtime.
fn default_resources(cache_memory: u64) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            (
                "memory".to_string(),
                bytes_quantity(cache_memory + (128 << 20)),
            ),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            bytes_quantity(cache_memory + (256 << 20)),
        )])),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// What a region's mirrored Secret carries: the S3 credentials (as env) and the origin's value
/// files (as a read-only volume), each key copied from the Distribution's namespace.
#[derive(Default)]
struct Mirror {
    data: BTreeMap<String, ByteString>,
    env: Vec<EnvVar>,
    credentials_hash: Option<String>,
    /// Mirrored keys mounted as files, in the order they were added.
    files: Vec<String>,
}

impl Mirror {
    fn files_hash(&self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.files.len() * 2);
        for k in &self.files {
            parts.push(k.as_bytes());
            parts.push(self.data.get(k).map(|v| v.0.as_slice()).unwrap_or_default());
        }
        Some(content_hash(&parts))
    }

    /// Only the file keys are projected, so the credentials never appear as files.
    fn files_volume(&self, secret: &str) -> Option<Volume> {
        (!self.files.is_empty()).then(|| Volume {
            name: "origin-secrets".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                items: Some(
                    self.files
                        .iter()
                        .map(|k| KeyToPath {
                            key: k.clone(),
                            path: k.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                // Readable by the edge's group (fsGroup) only.
                default_mode: Some(0o440),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// The S3 credentials Secret, when the origin names one, as env of the edge container.
fn mirror_credentials(
    spec: &crate::crd::DistributionSpec,
    ctx: &RenderContext<'_>,
    mirrored_name: &str,
    mirror: &mut Mirror,
) -> Result<(), RenderError> {
    let Some((r, field)) = crate::origin::credentials_ref(&spec.origin)? else {
        return Ok(());
    };
    let data = ctx.credentials.ok_or_else(|| {
        RenderError::secret(
            REASON_SECRET_NOT_FOUND,
            &field,
            format!("Secret {:?} was not found", r.name),
        )
    })?;
    let mut hashed: Vec<&[u8]> = Vec::new();
    for (key, var) in CREDENTIAL_KEYS {
        let value = data.get(key).ok_or_else(|| {
            RenderError::secret(
                REASON_SECRET_INVALID,
                &field,
                format!("Secret {:?} has no key {key:?}", r.name),
            )
        })?;
        hashed.push(&value.0);
        mirror.data.insert(key.to_string(), value.clone());
        mirror.env.push(EnvVar {
            name: var.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: mirrored_name.into(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    mirror.credentials_hash = Some(content_hash(&hashed));
    Ok(())
}

/// The origin's Secret-backed values (custom headers, CA bundles) and, with an origin shield,
/// the shield token: the files the edge config names under `ORIGIN_SECRETS_DIR`.
fn mirror_origin_files(
    dist: &Distribution,
    ctx: &RenderContext<'_>,
    mirror: &mut Mirror,
) -> Result<(), RenderError> {
    for f in crate::origin::secret_files(&dist.spec.origin) {
        let data = ctx.origin_secrets.get(&f.secret).ok_or_else(|| {
            RenderError::secret(
                REASON_SECRET_NOT_FOUND,
                &f.field,
                format!("Secret {:?} was not found", f.secret),
            )
        })?;
        let value = data.get(&f.secret_key).ok_or_else(|| {
            RenderError::secret(
                REASON_SECRET_INVALID,
                &f.field,
                format!("Secret {:?} has no key {:?}", f.secret, f.secret_key),
            )
        })?;
        mirror.data.insert(f.key.clone(), value.clone());
        mirror.files.push(f.key);
    }
    if dist.spec.origin_shield.is_some() {
        let token = ctx.shield_token.ok_or_else(|| {
            RenderError::secret(
                REASON_SECRET_NOT_FOUND,
                "spec.originShield",
                format!(
                    "the shield token Secret {:?} is not available yet",
                    crate::origin::shield_secret_name(dist)
                ),
            )
        })?;
        mirror
            .data
            .insert(SHIELD_TOKEN_KEY.into(), ByteString(token.to_vec()));
        mirror.files.push(SHIELD_TOKEN_KEY.into());
    }
    Ok(())
}

/// In-cluster URL of the region's edge Service (what same-cluster regions fetch through).
pub fn service_url(dist: &Distribution, region: &RegionSpec) -> String {
    format!(
        "http://{}.{}.svc:{SERVICE_PORT}",
        object_name(dist, &region.name),
        dist.region_namespace(region)
    )
}

/// Renders every object of one region.
pub fn render_region(
    dist: &Distribution,
    region: &RegionSpec,
    cfg: &EdgeConfig,
    ctx: &RenderContext<'_>,
) -> Result<RegionObjects, RenderError> {
    placement::check_region(dist, region)?;
    let name = object_name(dist, &region.name);
    let config_yaml = cfg.to_yaml();
    let config_hash = content_hash(&[config_yaml.as_bytes()]);
    let selector = selector_labels(dist, &region.name);

    let mut cm_meta = meta(dist, region);
    cm_meta
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_CONFIG_HASH.into(), config_hash.clone());
    let config_map = ConfigMap {
        metadata: cm_meta,
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), config_yaml)])),
        ..Default::default()
    };

    // The edge reloads everything in its config file except the listeners (see the edge's
    // `reload::apply`): only those roll pods.
    let restart_part = serde_yaml::to_string(&cfg.server)
        .map_err(|e| RenderError::new("spec", format!("encoding the edge server config: {e}")))?;
    let mut pod_annotations = BTreeMap::from([(
        ANNOTATION_RESTART_HASH.to_string(),
        content_hash(&[restart_part.as_bytes()]),
    )]);
    let mut mirror = Mirror::default();
    mirror_credentials(&dist.spec, ctx, &name, &mut mirror)?;
    mirror_origin_files(dist, ctx, &mut mirror)?;
    if let Some(h) = mirror.credentials_hash.take() {
        // Env from a Secret is read at container start: roll pods when credentials change.
        pod_annotations.insert(ANNOTATION_CREDENTIALS_HASH.into(), h);
    }
    if let Some(h) = mirror.files_hash() {
        // The edge reads its value files when it loads the config, and a Secret change leaves
        // the ConfigMap alone: roll pods so they read the new values.
        pod_annotations.insert(ANNOTATION_ORIGIN_FILES_HASH.into(), h);
    }
    let env = std::mem::take(&mut mirror.env);
    let files_volume = mirror.files_volume(&name);
    let secret = (!mirror.data.is_empty()).then(|| Secret {
        metadata: meta(dist, region),
        type_: Some("Opaque".into()),
        data: Some(std::mem::take(&mut mirror.data)),
        ..Default::default()
    });
    let mut volume_mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some(v) = files_volume {
        volume_mounts.push(VolumeMount {
            name: v.name.clone(),
            mount_path: ORIGIN_SECRETS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(v);
    }

    let pod = placement::effective_pod(dist, region);
    let resources = region
        .resources
        .clone()
        .unwrap_or_else(|| default_resources(cfg.cache.memory.0));
    let container = Container {
        name: "edge".into(),
        image: Some(ctx.edge_image.into()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: VIEWER_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        env: (!env.is_empty()).then_some(env),
        resources: Some(resources),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        volume_mounts: Some(volume_mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_UID),
            run_as_group: Some(RUN_AS_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The user's pod labels and annotations (checked not to name the operator's own), with
    // the operator's winning.
    let mut pod_labels = pod.pod_labels.clone().unwrap_or_default();
    pod_labels.extend(labels(dist, &region.name));
    let mut user_annotations = pod.pod_annotations.clone().unwrap_or_default();
    user_annotations.extend(pod_annotations);
    let pod_annotations = user_annotations;
    let grace = cfg.server.shutdown_grace.as_duration().as_secs() as i64;
    let deployment = Deployment {
        metadata: meta(dist, region),
        spec: DeploymentSpec {
            // Under an autoscaler the count is not the operator's to apply (see
            // `placement::REPLICAS_MANAGER`).
            replicas: region.autoscaling.is_none().then_some(region.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        PRE_STOP_SLEEP_SECONDS + grace + TERMINATION_MARGIN_SECONDS,
                    ),
                    service_account_name: placement::service_account_name(&pod, &name),
                    node_selector: pod.node_selector.clone(),
                    tolerations: pod.tolerations.clone(),
                    affinity: pod.affinity.clone(),
                    topology_spread_constraints: Some(placement::spread_constraints(
                        &pod, &selector,
                    ))
                    .filter(|c| !c.is_empty()),
                    priority_class_name: pod.priority_class_name.clone(),
                    image_pull_secrets: pod.image_pull_secrets.clone(),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_UID),
                        run_as_group: Some(RUN_AS_UID),
                        fs_group: Some(RUN_AS_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    };

    let mut svc_meta = meta(dist, region);
    // The user's annotations, with the ownership marker winning over a same-named one.
    let mut svc_annotations = region.service.annotations.clone();
    svc_annotations.extend(svc_meta.annotations.take().unwrap_or_default());
    svc_meta.annotations = Some(svc_annotations);
    let service = Service {
        metadata: svc_meta,
        spec: Some(K8sServiceSpec {
            type_: Some(region.service.type_.as_str().into()),
            selector: Some(selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pdb = PodDisruptionBudget {
        metadata: meta(dist, region),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    Ok(RegionObjects {
        secret,
        config_map,
        service,
        pdb,
        deployment,
        autoscaler: region
            .autoscaling
            .as_ref()
            .map(|a| placement::autoscaler(a, meta(dist, region))),
        service_account: placement::service_account(&pod, meta(dist, region)),
        config_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DistributionSpec;
    use crate::fixtures;
    use kubefront_edge::config::{Dur, QueryStrings};
    use kubefront_edge::security::Security;

    /// Golden-file snapshot: `UPDATE_SNAPSHOTS=1 cargo test -p kubefront-operator` rewrites.
    fn snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, actual).expect("write snapshot");
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing snapshot {path:?}; run with UPDATE_SNAPSHOTS=1"));
        assert!(
            expected == actual,
            "snapshot {name} differs; review and rerun with UPDATE_SNAPSHOTS=1\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    }

    fn creds() -> BTreeMap<String, ByteString> {
        [
            ("accessKeyId", "AKIDEXAMPLE"),
            ("secretAccessKey", "secret-example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    fn render(idx: usize) -> RegionObjects {
        render_fixture(&fixtures::example(), idx)
    }

    /// Region `idx` of `d` rendered with test credentials and no origin Secrets.
    fn render_fixture(d: &Distribution, idx: usize) -> RegionObjects {
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let c = creds();
        render_region(
            d,
            &d.spec.regions[idx],
            &cfg,
            &RenderContext {
                edge_image: "kubefront/edge:0.1.0",
                credentials: Some(&c),
                origin_secrets: &NO_SECRETS,
                shield_token: None,
            },
        )
        .expect("renders")
    }

    fn yaml(o: &RegionObjects) -> String {
        let mut out = String::new();
        let docs = [
            serde_yaml::to_string(&o.secret),
            serde_yaml::to_string(&o.config_map),
            serde_yaml::to_string(&o.service),
            serde_yaml::to_string(&o.pdb),
            serde_yaml::to_string(&o.deployment),
        ];
        for d in docs {
            out.push_str("---\n");
            out.push_str(&d.expect("yaml"));
        }
        // Only where the spec asks for them, so the other snapshots stay as they were.
        let optional = [
            o.service_account.as_ref().map(serde_yaml::to_string),
            o.autoscaler.as_ref().map(serde_yaml::to_string),
        ];
        for d in optional.into_iter().flatten() {
            out.push_str("---\n");
            out.push_str(&d.expect("yaml"));
        }
        out
    }

    fn render_placed(idx: usize) -> RegionObjects {
        render_fixture(&fixtures::placed(), idx)
    }

    #[test]
    fn autoscaled_region_snapshot() {
        snapshot("autoscaled-local-region.yaml", &yaml(&render_placed(0)));
    }

    #[test]
    fn an_autoscaled_region_gets_an_hpa_and_no_replica_count() {
        let o = render_placed(0);
        assert_eq!(o.deployment.spec.replicas, None, "the HPA's to set");
        let hpa = o.autoscaler.as_ref().expect("hpa");
        assert_eq!(hpa.metadata.name.as_deref(), Some("site-local"));
        assert_eq!(
            (hpa.spec.min_replicas, hpa.spec.max_replicas),
            (Some(2), 10)
        );
        assert_eq!(
            hpa.spec.metrics.as_ref().and_then(|m| m[0]
                .resource
                .as_ref()
                .and_then(|r| r.target.average_utilization)),
            Some(70)
        );
        assert_eq!(
            hpa.metadata.owner_references, o.deployment.metadata.owner_references,
            "owned (and pruned) like every object of the region"
        );
        assert_eq!(hpa.metadata.labels, o.deployment.metadata.labels);
        let remote = render_placed(1);
        assert!(remote.autoscaler.is_none());
        assert_eq!(remote.deployment.spec.replicas, Some(3));
    }

    #[test]
    fn a_remote_region_gets_the_same_autoscaler_marked_by_uid() {
        let mut d = fixtures::placed();
        d.spec.regions[1].autoscaling = d.spec.regions[0].autoscaling.clone();
        d.spec.regions[1].pod = d.spec.regions[0].pod.clone();
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let c = creds();
        let o = render_region(
            &d,
            &d.spec.regions[1],
            &cfg,
            &RenderContext {
                edge_image: "e",
                credentials: Some(&c),
                origin_secrets: &NO_SECRETS,
                shield_token: None,
            },
        )
        .expect("renders");
        assert_eq!(o.deployment.spec.replicas, None);
        for meta in [
            &o.autoscaler.as_ref().expect("hpa").metadata,
            &o.service_account.as_ref().expect("sa").metadata,
        ] {
            assert_eq!(meta.namespace.as_deref(), Some("kubefront-edge"));
            assert_eq!(
                meta.owner_references, None,
                "no owner references across clusters"
            );
            assert_eq!(
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_DISTRIBUTION_UID))
                    .map(String::as_str),
                Some("uid-site"),
                "what prune and cleanup go by"
            );
        }
    }

    #[test]
    fn pod_settings_appear_in_the_deployment_with_region_overrides() {
        let o = render_placed(0);
        let tpl = &o.deployment.spec.template;
        let pod = tpl.spec.as_ref().expect("pod");
        let map = |kv: &[(&str, &str)]| -> Option<BTreeMap<String, String>> {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        // The region's own values replace the defaults field by field...
        assert_eq!(
            pod.node_selector,
            map(&[("node.kubernetes.io/instance-type", "c7g.large")])
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("edge-critical"));
        assert_eq!(
            pod.tolerations.as_ref().map(|t| t[0].key.clone()),
            Some(Some("dedicated".into()))
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("site-local"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        // ...and what it leaves unset comes from spec.pod.
        assert!(pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some());
        assert_eq!(
            pod.image_pull_secrets.as_ref().map(|s| s[0].name.clone()),
            Some("registry-creds".into())
        );
        let meta = tpl.metadata.as_ref().expect("meta");
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("cdn"));
        assert_eq!(
            labels.get(LABEL_REGION).map(String::as_str),
            Some("local"),
            "selector labels stay the operator's"
        );
        let ann = meta.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann.get("prometheus.io/scrape").map(String::as_str),
            Some("true")
        );
        assert!(ann.contains_key(ANNOTATION_RESTART_HASH));
        // Default spread (none given): zones and nodes over the region's own pods.
        let spread = pod.topology_spread_constraints.as_ref().expect("spread");
        assert_eq!(spread.len(), 2);
        assert_eq!(
            spread[0]
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone()),
            o.deployment.spec.selector.match_labels
        );
        // The ServiceAccount the operator creates carries the IRSA annotation.
        let sa = o.service_account.as_ref().expect("sa");
        assert_eq!(sa.metadata.name.as_deref(), Some("site-local"));
        assert_eq!(
            sa.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
                .map(String::as_str),
            Some("arn:aws:iam::111122223333:role/edge")
        );
        // The remote region only has the defaults, and no ServiceAccount.
        let r = render_placed(1);
        let rpod = r.deployment.spec.template.spec.as_ref().expect("pod");
        assert_eq!(rpod.node_selector, map(&[("kubefront.io/pool", "edge")]));
        assert_eq!(rpod.priority_class_name.as_deref(), Some("edge-default"));
        assert_eq!(rpod.service_account_name, None);
        assert!(r.service_account.is_none());
    }

    #[test]
    fn terminating_pods_keep_serving_until_endpoints_drop_them() {
        let o = render(0);
        let pod = o.deployment.spec.template.spec.as_ref().expect("pod");
        let sleep = pod.containers[0]
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds);
        assert_eq!(sleep, Some(PRE_STOP_SLEEP_SECONDS));
        let d = fixtures::example();
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let drain = cfg.server.shutdown_grace.as_duration().as_secs() as i64;
        assert!(
            pod.termination_grace_period_seconds > Some(PRE_STOP_SLEEP_SECONDS + drain),
            "the kubelet must not kill an edge still draining"
        );
        let rolling = o
            .deployment
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        assert_eq!(
            rolling.and_then(|r| r.max_unavailable.clone()),
            Some(IntOrString::Int(0)),
            "a new pod is ready before an old one stops"
        );
    }

    #[test]
    fn pod_labels_naming_the_operators_selector_are_refused_naming_the_field() {
        let mut d = fixtures::placed();
        if let Some(p) = d.spec.regions[0].pod.as_mut() {
            p.pod_labels = Some(BTreeMap::from([(
                LABEL_REGION.to_string(),
                "x".to_string(),
            )]));
        }
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let c = creds();
        let err = render_region(
            &d,
            &d.spec.regions[0],
            &cfg,
            &RenderContext {
                edge_image: "e",
                credentials: Some(&c),
                origin_secrets: &NO_SECRETS,
                shield_token: None,
            },
        )
        .expect_err("selector label");
        assert_eq!(
            (err.field.as_str(), err.reason),
            ("spec.regions[0].pod.podLabels", REASON_INVALID_SPEC)
        );
        assert!(err.message.contains(LABEL_REGION), "{err}");
    }

    #[test]
    fn content_hash_is_the_edges_config_hash() {
        // Same vector as the edge's `reload::config_hash` test: both sides name a file alike.
        assert_eq!(
            content_hash(&[b"version: kubefront.io/edge/v1\n"]),
            "566d8ee027fd6049"
        );
    }

    #[test]
    fn local_region_snapshot() {
        snapshot("local-region.yaml", &yaml(&render(0)));
    }

    #[test]
    fn remote_region_snapshot() {
        snapshot("remote-region.yaml", &yaml(&render(1)));
    }

    #[test]
    fn edge_config_is_the_proxy_contract_and_round_trips() {
        let d = fixtures::example();
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let text = cfg.to_yaml();
        let back = EdgeConfig::from_yaml(&text).expect("parses");
        back.validate().expect("the proxy accepts it");
        assert_eq!(back, cfg);
        assert_eq!(back.cache.max_ttl, Dur::secs(365 * 86_400));
        assert_eq!(back.behaviors[0].default_ttl, Some(Dur::secs(365 * 86_400)));
        assert_eq!(
            back.cache.key.query_strings,
            QueryStrings::Allow(vec!["v".into()])
        );
    }

    #[test]
    fn error_caching_and_origin_timeouts_reach_the_edge_config() {
        let mut d = fixtures::example();
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        assert_eq!(
            cfg.cache.error_caching_min_ttl,
            Dur::secs(10),
            "edge default"
        );
        assert_eq!(cfg.origin.timeouts, Default::default());
        d.spec.cache.error_caching_min_ttl = Some("0".into());
        d.spec.origin.timeouts = Some(crate::crd::OriginTimeoutsSpec {
            connect: Some("1s".into()),
            first_byte: Some("5s".into()),
            total: Some("2m".into()),
            idle: Some("30s".into()),
        });
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("valid");
        let text = cfg.to_yaml();
        assert!(text.contains("errorCachingMinTTL"), "{text}");
        let back = EdgeConfig::from_yaml(&text).expect("parses");
        assert_eq!(back.cache.error_caching_min_ttl, Dur::ZERO);
        let t = back.origin.timeouts;
        assert_eq!(
            (t.connect, t.first_byte, t.total, t.idle),
            (
                Dur::secs(1),
                Dur::secs(5),
                Dur::secs(120),
                Some(Dur::secs(30))
            )
        );
        // What the schema's pattern lets through but the edge refuses names the spec field.
        if let Some(t) = d.spec.origin.timeouts.as_mut() {
            t.idle = Some("0s".into());
        }
        let err = edge_config(&d.spec, &KeySecrets::new()).expect_err("zero idle");
        assert_eq!(err.field, "spec.origin.timeouts.idle");
    }

    #[test]
    fn hardening_and_wiring_of_the_deployment() {
        let o = render(0);
        let pod = o.deployment.spec.template.spec.as_ref().expect("pod");
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().expect("sc");
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        let psc = pod.security_context.as_ref().expect("psc");
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let env: Vec<_> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
        let ann = o
            .deployment
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations");
        assert_eq!(
            ann.get(ANNOTATION_CONFIG_HASH),
            None,
            "config reloads, no restart"
        );
        assert!(ann.contains_key(ANNOTATION_RESTART_HASH));
        assert_eq!(
            o.config_map
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_CONFIG_HASH)),
            Some(&o.config_hash)
        );
        // Mounted as a whole directory: a subPath mount would never see ConfigMap updates.
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "config")
            .expect("config mount");
        assert_eq!(
            (mount.mount_path.as_str(), mount.sub_path.as_deref()),
            (CONFIG_DIR, None)
        );
        let probe = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        let svc = o.service.spec.as_ref().expect("svc");
        assert_eq!(
            svc.ports
                .as_ref()
                .map(|p| (p[0].port, p[0].target_port.clone())),
            Some((80, Some(IntOrString::String("http".into()))))
        );
    }

    #[test]
    fn config_change_changes_the_hash_and_credentials_roll_pods() {
        let d = fixtures::example();
        let mut d2 = d.clone();
        d2.spec.cache.default_ttl = "12h".into();
        let c = creds();
        let ctx = RenderContext {
            edge_image: "e",
            credentials: Some(&c),
            origin_secrets: &NO_SECRETS,
            shield_token: None,
        };
        let a = render_region(
            &d,
            &d.spec.regions[0],
            &edge_config(&d.spec, &KeySecrets::new()).expect("v"),
            &ctx,
        )
        .expect("r");
        let b = render_region(
            &d2,
            &d2.spec.regions[0],
            &edge_config(&d2.spec, &KeySecrets::new()).expect("v"),
            &ctx,
        )
        .expect("r");
        assert_ne!(a.config_hash, b.config_hash);
        assert_eq!(
            a.deployment, b.deployment,
            "a config-only change leaves the Deployment (and its pods) alone"
        );
        assert_eq!(
            a.config_hash,
            content_hash(&[a.config_map.data.as_ref().expect("data")[CONFIG_KEY].as_bytes()]),
            "the hash of the ConfigMap's bytes, as the edge computes it"
        );
        let mut c2 = creds();
        c2.insert("secretAccessKey".into(), ByteString(b"rotated".to_vec()));
        let ctx2 = RenderContext {
            edge_image: "e",
            credentials: Some(&c2),
            origin_secrets: &NO_SECRETS,
            shield_token: None,
        };
        let r = render_region(
            &d,
            &d.spec.regions[0],
            &edge_config(&d.spec, &KeySecrets::new()).expect("v"),
            &ctx2,
        )
        .expect("r");
        let ann = |o: &RegionObjects| {
            o.deployment
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            ann(&a).get(ANNOTATION_CONFIG_HASH),
            ann(&r).get(ANNOTATION_CONFIG_HASH)
        );
        assert_ne!(
            ann(&a).get(ANNOTATION_CREDENTIALS_HASH),
            ann(&r).get(ANNOTATION_CREDENTIALS_HASH)
        );
    }

    #[test]
    fn render_errors_name_the_spec_field() {
        let mut d = fixtures::example();
        d.spec.cache.max_object_size = "1Gi".into();
        assert_eq!(
            edge_config(&d.spec, &KeySecrets::new())
                .expect_err("too big")
                .field,
            "spec.cache.maxObjectSize"
        );
        let mut d = fixtures::example();
        d.spec.cache.memory = "99999999999Ti".into();
        assert_eq!(
            edge_config(&d.spec, &KeySecrets::new())
                .expect_err("overflow")
                .field,
            "spec.cache.memory"
        );
        let d = fixtures::example();
        let cfg = edge_config(&d.spec, &KeySecrets::new()).expect("v");
        let err = render_region(
            &d,
            &d.spec.regions[0],
            &cfg,
            &RenderContext {
                edge_image: "e",
                credentials: None,
                origin_secrets: &NO_SECRETS,
                shield_token: None,
            },
        )
        .expect_err("missing secret");
        assert_eq!(err.field, "spec.origin.s3.credentialsSecretRef");
        assert_eq!(err.reason, REASON_SECRET_NOT_FOUND);
    }

    fn render_signed(d: &Distribution, keys: &KeySecrets) -> Result<RegionObjects, RenderError> {
        let cfg = edge_config(&d.spec, keys)?;
        let c = creds();
        render_region(
            d,
            &d.spec.regions[0],
            &cfg,
            &RenderContext {
                edge_image: "kubefront/edge:0.1.0",
                credentials: Some(&c),
                origin_secrets: &NO_SECRETS,
                shield_token: None,
            },
        )
    }

    #[test]
    fn signed_region_snapshot() {
        let o = render_signed(&fixtures::signed(), &fixtures::key_secrets()).expect("renders");
        snapshot("signed-local-region.yaml", &yaml(&o));
    }

    #[test]
    fn key_groups_and_signed_paths_are_rendered_in_order() {
        let mut d = fixtures::signed();
        let cfg = edge_config(&d.spec, &fixtures::key_secrets()).expect("valid");
        let sec = &cfg.security;
        let ids = |g: usize| -> Vec<&str> {
            sec.trusted_key_groups[g]
                .keys
                .iter()
                .map(|k| k.id.as_str())
                .collect()
        };
        assert_eq!(sec.trusted_key_groups[0].name, "main");
        assert_eq!(ids(0), ["K1EC", "K2ROTATED"], "sorted by Key-Pair-Id");
        assert_eq!(ids(1), ["KPARTNER"]);
        let k = &sec.trusted_key_groups[0].keys[0];
        assert_eq!(
            k.public_key_pem.as_deref(),
            Some(fixtures::EC_P256_PUBLIC_PEM)
        );
        assert_eq!(
            k.public_key_file, None,
            "inline: no Secret needed in remote regions"
        );
        let paths = |sec: &kubefront_edge::config::SecurityConfig| -> Vec<(String, Vec<String>)> {
            sec.signed_paths
                .iter()
                .map(|p| (p.path_pattern.clone(), p.key_groups.clone()))
                .collect()
        };
        let p = |s: &str, g: &[&str]| (s.to_string(), g.iter().map(|x| x.to_string()).collect());
        assert_eq!(
            paths(sec),
            [
                p("/private/*", &["main"]),
                p("/partners/*", &["main", "partners"])
            ],
            "only behaviors with key groups, in behavior order; the rest is public"
        );
        // A default-behavior group set: behaviors without their own groups use it, and `*`
        // ends the list.
        d.spec.cache.trusted_key_groups = vec!["partners".into()];
        let cfg = edge_config(&d.spec, &fixtures::key_secrets()).expect("valid");
        assert_eq!(
            paths(&cfg.security),
            [
                p("/static/*", &["partners"]),
                p("/private/*", &["main"]),
                p("/partners/*", &["main", "partners"]),
                p("*", &["partners"]),
            ]
        );
        // `trustedKeyGroups: []` keeps a behavior public under a signed default.
        d.spec.behaviors[0].trusted_key_groups = Some(vec![]);
        let cfg = edge_config(&d.spec, &fixtures::key_secrets()).expect("valid");
        assert_eq!(
            paths(&cfg.security)[0],
            p("/static/*", &[]),
            "public entry first"
        );
        assert!(cfg.security.signed_paths[0].public);
        assert!(!cfg.security.signed_paths[1].public);
        // Without any signed entry after them, public entries are left out.
        d.spec.cache.trusted_key_groups.clear();
        d.spec.behaviors.truncate(1);
        let cfg = edge_config(&d.spec, &fixtures::key_secrets()).expect("valid");
        assert!(cfg.security.signed_paths.is_empty());
        let rh = &cfg.security.response_headers;
        assert_eq!(rh.frame_options.as_deref(), Some("DENY"));
        assert_eq!(
            rh.cors.as_ref().map(|c| c.allow_methods.clone()),
            Some(vec!["GET".to_string(), "HEAD".to_string()])
        );
        assert_eq!(cfg.security.limits.max_url_bytes, 4096);
        assert_eq!(
            cfg.security.limits.max_header_bytes, 20480,
            "edge default kept"
        );
        assert_eq!(cfg.security.client_ip.trusted_hops, 2);
        // What the edge reads back is what was rendered, and the edge compiles it.
        let back = EdgeConfig::from_yaml(&cfg.to_yaml()).expect("parses");
        assert_eq!(back, cfg);
        Security::from_config(&back.security).expect("the edge loads the keys");
    }

    #[test]
    fn adding_a_key_changes_the_config_hash_whitespace_does_not() {
        let d = fixtures::signed();
        let keys = fixtures::key_secrets();
        let before = render_signed(&d, &keys).expect("r").config_hash;
        let mut rotated = keys.clone();
        rotated.get_mut("signing-keys").expect("secret").insert(
            "K3NEXT".into(),
            ByteString(fixtures::EC_P256_PUBLIC_PEM.as_bytes().to_vec()),
        );
        let after = render_signed(&d, &rotated).expect("r");
        assert_ne!(before, after.config_hash, "pods roll on rotation");
        assert!(after.config_map.data.as_ref().expect("data")[CONFIG_KEY].contains("K3NEXT"));
        let mut reformatted = keys.clone();
        reformatted.get_mut("signing-keys").expect("secret").insert(
            "K1EC".into(),
            ByteString(format!("\n{}\n\n", fixtures::EC_P256_PUBLIC_PEM.trim()).into_bytes()),
        );
        assert_eq!(
            before,
            render_signed(&d, &reformatted).expect("r").config_hash
        );
    }

    #[test]
    fn key_secret_problems_name_the_field_and_reason() {
        let d = fixtures::signed();
        type Mutation = Box<dyn Fn(&mut KeySecrets)>;
        let set = |secret: &'static str, id: &'static str, pem: &'static str| -> Mutation {
            Box::new(move |k: &mut KeySecrets| {
                k.entry(secret.into())
                    .or_default()
                    .insert(id.into(), ByteString(pem.as_bytes().to_vec()));
            })
        };
        let cases: Vec<(Mutation, &str, &str, &str)> = vec![
            (
                Box::new(|k| {
                    k.remove("partner-keys");
                }),
                "spec.trustedKeyGroups[1].secretRef",
                REASON_SECRET_NOT_FOUND,
                "\"partner-keys\" was not found",
            ),
            (
                Box::new(|k| {
                    k.insert("signing-keys".into(), SecretData::new());
                }),
                "spec.trustedKeyGroups[0].secretRef",
                REASON_SECRET_INVALID,
                "has no keys",
            ),
            (
                set("signing-keys", "K9", "not a key"),
                "spec.trustedKeyGroups[0].secretRef",
                REASON_SECRET_INVALID,
                "key \"K9\": not a PEM",
            ),
            (
                set("signing-keys", "K9", fixtures::RSA_1024_PUBLIC_PEM),
                "spec.trustedKeyGroups[0].secretRef",
                REASON_SECRET_INVALID,
                "1024 bits is too small",
            ),
            (
                set("partner-keys", "key.pem", fixtures::EC_P256_PUBLIC_PEM),
                "spec.trustedKeyGroups[1].secretRef",
                REASON_SECRET_INVALID,
                "\"key.pem\" is not a Key-Pair-Id",
            ),
            (
                set("partner-keys", "K1EC", fixtures::RSA_2048_PUBLIC_PEM),
                "spec.trustedKeyGroups[1].secretRef",
                REASON_SECRET_INVALID,
                "differs from the key with the same id in spec.trustedKeyGroups[0]",
            ),
        ];
        for (mutate, field, reason, text) in cases {
            let mut keys = fixtures::key_secrets();
            mutate(&mut keys);
            let err = edge_config(&d.spec, &keys).expect_err(text);
            assert_eq!((err.field.as_str(), err.reason), (field, reason), "{err}");
            assert!(err.message.contains(text), "{text:?} not in {err}");
        }
    }

    #[test]
    fn security_spec_problems_the_schema_cannot_see_name_the_spec_field() {
        type Mutation = Box<dyn Fn(&mut DistributionSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|s| s.behaviors[2].trusted_key_groups = Some(vec!["nope".into()])),
                "spec.behaviors[2].trustedKeyGroups",
            ),
            (
                Box::new(|s| s.cache.trusted_key_groups = vec!["nope".into()]),
                "spec.cache.trustedKeyGroups",
            ),
            (
                Box::new(|s| {
                    let c = s
                        .response_headers_policy
                        .as_mut()
                        .and_then(|p| p.cors.as_mut());
                    if let Some(c) = c {
                        c.allow_origins = vec![crate::crd::CorsOrigin("*".into())];
                        c.allow_credentials = true;
                    }
                }),
                "spec.responseHeadersPolicy.cors.allowCredentials",
            ),
            (
                Box::new(|s| {
                    if let Some(l) = s.viewer_limits.as_mut() {
                        l.max_url_bytes = Some(10);
                    }
                }),
                "spec.viewerLimits.maxUrlBytes",
            ),
            (
                Box::new(|s| {
                    if let Some(l) = s.viewer_limits.as_mut() {
                        l.header_read_timeout = Some("0s".into());
                    }
                }),
                "spec.viewerLimits.headerReadTimeout",
            ),
        ];
        for (mutate, field) in cases {
            let mut spec = fixtures::signed_spec();
            mutate(&mut spec);
            let err = edge_config(&spec, &fixtures::key_secrets()).expect_err(field);
            assert_eq!(
                (err.field.as_str(), err.reason),
                (field, REASON_INVALID_SPEC),
                "{err}"
            );
        }
    }

    /// Region `idx` of the HTTP fixture, with its Secrets and shield token.
    fn render_http(
        idx: usize,
        origin_secrets: &KeySecrets,
        token: Option<&[u8]>,
    ) -> Result<RegionObjects, RenderError> {
        let d = fixtures::http();
        let base = edge_config(&d.spec, &KeySecrets::new())?;
        let cfgs = crate::origin::region_configs(&d, &base)?;
        let c = creds();
        render_region(
            &d,
            &d.spec.regions[idx],
            &cfgs[idx],
            &RenderContext {
                edge_image: "kubefront/edge:0.1.0",
                credentials: Some(&c),
                origin_secrets,
                shield_token: token,
            },
        )
    }

    #[test]
    fn http_shielded_region_snapshot() {
        let token = fixtures::SHIELD_TOKEN.as_bytes();
        let o = render_http(1, &fixtures::origin_secrets(), Some(token)).expect("renders");
        snapshot("http-shielded-region.yaml", &yaml(&o));
    }

    #[test]
    fn secret_backed_values_are_mirrored_and_mounted_never_in_the_config_map() {
        let token = fixtures::SHIELD_TOKEN.as_bytes();
        for idx in 0..3 {
            let o = render_http(idx, &fixtures::origin_secrets(), Some(token)).expect("renders");
            let text = &o.config_map.data.as_ref().expect("data")[CONFIG_KEY];
            for secret in [
                fixtures::ORIGIN_SECRET_VALUE,
                "TEST-CA",
                fixtures::SHIELD_TOKEN,
            ] {
                assert!(!text.contains(secret), "{secret} in the ConfigMap of {idx}");
            }
            let cfg = EdgeConfig::from_yaml(text).expect("parses");
            let data = o
                .secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .expect("mirrored Secret");
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "accessKeyId",
                    "origin-ca.crt",
                    "origin-header-1",
                    "secretAccessKey",
                    "shield-token"
                ]
            );
            assert_eq!(
                data["origin-header-1"].0,
                fixtures::ORIGIN_SECRET_VALUE.as_bytes()
            );
            // Every file the config names is a projected key of the mounted mirror.
            let pod = o.deployment.spec.template.spec.as_ref().expect("pod");
            let vol = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "origin-secrets")
                .and_then(|v| v.secret.as_ref())
                .expect("secret volume");
            assert_eq!(
                vol.secret_name.as_deref(),
                o.secret.as_ref().and_then(|s| s.metadata.name.as_deref()),
                "the region's own mirror"
            );
            let projected: Vec<&str> = vol
                .items
                .iter()
                .flatten()
                .map(|i| i.path.as_str())
                .collect();
            assert_eq!(
                projected,
                ["origin-header-1", "origin-ca.crt", "shield-token"],
                "credentials stay env only"
            );
            let mount = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == "origin-secrets")
                .expect("mount");
            assert_eq!(
                (mount.mount_path.as_str(), mount.read_only),
                (crate::origin::ORIGIN_SECRETS_DIR, Some(true))
            );
            let mut named: Vec<String> = Vec::new();
            let mut origin = Some(&cfg.origin);
            while let Some(o) = origin {
                named.extend(o.custom_headers.iter().filter_map(|h| h.value_file.clone()));
                named.extend(o.http.as_ref().and_then(|h| h.tls.ca_file.clone()));
                origin = o.failover.as_ref().map(|f| &f.secondary);
            }
            assert!(!named.is_empty());
            for f in named {
                let key = f
                    .strip_prefix(&format!("{}/", crate::origin::ORIGIN_SECRETS_DIR))
                    .expect("under the mount");
                assert!(projected.contains(&key), "{f} not mounted in region {idx}");
            }
            let ann = o
                .deployment
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .expect("annotations");
            assert!(ann.contains_key(ANNOTATION_ORIGIN_FILES_HASH));
            assert!(
                ann.contains_key(ANNOTATION_CREDENTIALS_HASH),
                "secondary S3"
            );
        }
    }

    #[test]
    fn rotating_an_origin_secret_rolls_pods_but_keeps_the_config() {
        let token = fixtures::SHIELD_TOKEN.as_bytes();
        let a = render_http(1, &fixtures::origin_secrets(), Some(token)).expect("r");
        let mut rotated = fixtures::origin_secrets();
        rotated.insert(
            "origin-auth".into(),
            fixtures::secret_data(&[("token", "rotated")]),
        );
        let b = render_http(1, &rotated, Some(token)).expect("r");
        assert_eq!(a.config_hash, b.config_hash);
        let ann = |o: &RegionObjects| {
            o.deployment
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default()
        };
        assert_ne!(
            ann(&a).get(ANNOTATION_ORIGIN_FILES_HASH),
            ann(&b).get(ANNOTATION_ORIGIN_FILES_HASH)
        );
    }

    #[test]
    fn missing_origin_secrets_name_the_field() {
        let token = fixtures::SHIELD_TOKEN.as_bytes();
        let mut secrets = fixtures::origin_secrets();
        secrets.remove("origin-auth");
        let err = render_http(0, &secrets, Some(token)).expect_err("missing");
        assert_eq!(
            (err.field.as_str(), err.reason),
            (
                "spec.origin.customHeaders[1].valueFrom.secretKeyRef",
                REASON_SECRET_NOT_FOUND
            )
        );
        let mut secrets = fixtures::origin_secrets();
        secrets.insert(
            "origin-ca".into(),
            fixtures::secret_data(&[("tls.crt", "x")]),
        );
        let err = render_http(0, &secrets, Some(token)).expect_err("no key");
        assert_eq!(
            (err.field.as_str(), err.reason),
            ("spec.origin.http.tls.caSecretRef", REASON_SECRET_INVALID)
        );
        assert!(err.message.contains("\"ca.crt\""), "{err}");
        let err = render_http(1, &fixtures::origin_secrets(), None).expect_err("no token");
        assert_eq!(err.field, "spec.originShield");
    }
}
