//! Autoscaling and placement of a region's edge pods: the effective pod settings (the
//! Distribution's defaults with the region's overrides), their checks, and the objects they
//! add (HorizontalPodAutoscaler, ServiceAccount). Pure, like `render`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{ServiceAccount, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::crd::{AutoscalingSpec, Distribution, EdgePodSpec, RegionSpec, ServiceAccountSpec};
use crate::render::{
    RenderError, ANNOTATION_CREDENTIALS_HASH, ANNOTATION_RESTART_HASH, FIELD_MANAGER,
    LABEL_MANAGED_BY,
};

/// Topology keys the default spread constraints use: zones first, then nodes.
pub const DEFAULT_SPREAD_KEYS: [&str; 2] =
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"];

/// Field manager that holds a Deployment's `spec.replicas` while an autoscaler drives it.
/// Server-side apply resets a field to its default (1 replica) when its only owner stops
/// sending it; this second owner keeps the current count until the autoscaler's own writes
/// take the field over, so turning autoscaling on never scales a region down to one pod.
pub const REPLICAS_MANAGER: &str = "kubefront-operator-replicas";

/// Label prefixes and keys the operator selects and tracks its objects by: user pod labels
/// must not change them, or the Deployment, Service and PodDisruptionBudget would lose (or
/// steal) pods.
const RESERVED_LABEL_PREFIX: &str = "kubefront.io/";
const RESERVED_LABELS: [&str; 3] = [
    LABEL_MANAGED_BY,
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
];

/// The pod settings a region runs with: each field of the region's `pod` replaces the same
/// field of `spec.pod`.
pub fn effective_pod(dist: &Distribution, region: &RegionSpec) -> EdgePodSpec {
    let defaults = dist.spec.pod.clone().unwrap_or_default();
    let Some(own) = region.pod.clone() else {
        return defaults;
    };
    EdgePodSpec {
        node_selector: own.node_selector.or(defaults.node_selector),
        tolerations: own.tolerations.or(defaults.tolerations),
        affinity: own.affinity.or(defaults.affinity),
        topology_spread_constraints: own
            .topology_spread_constraints
            .or(defaults.topology_spread_constraints),
        priority_class_name: own.priority_class_name.or(defaults.priority_class_name),
        service_account: own.service_account.or(defaults.service_account),
        pod_annotations: own.pod_annotations.or(defaults.pod_annotations),
        pod_labels: own.pod_labels.or(defaults.pod_labels),
        image_pull_secrets: own.image_pull_secrets.or(defaults.image_pull_secrets),
    }
}

/// Checks what the schema cannot: pod labels and annotations that would override the
/// operator's own, and service account settings that cannot both apply. `path` is where the
/// settings are in the spec (`spec.pod`, `spec.regions[1].pod`), for the status message.
pub fn check_pod(pod: &EdgePodSpec, path: &str) -> Result<(), RenderError> {
    if let Some(key) = pod
        .pod_labels
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| k.starts_with(RESERVED_LABEL_PREFIX) || RESERVED_LABELS.contains(&k.as_str()))
    {
        return Err(RenderError::new(
            format!("{path}.podLabels"),
            format!("label {key:?} is set by the operator to select the region's pods and cannot be overridden"),
        ));
    }
    if let Some(key) = pod
        .pod_annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| k.starts_with(RESERVED_LABEL_PREFIX))
    {
        return Err(RenderError::new(
            format!("{path}.podAnnotations"),
            format!(
                "annotation {key:?} is the operator's ({ANNOTATION_RESTART_HASH}, {ANNOTATION_CREDENTIALS_HASH}, ...) and cannot be set"
            ),
        ));
    }
    if let Some(ServiceAccountSpec {
        name: Some(_),
        annotations: Some(_),
    }) = &pod.service_account
    {
        return Err(RenderError::new(
            format!("{path}.serviceAccount.annotations"),
            "annotations apply only to the ServiceAccount the operator creates: leave serviceAccount.name unset, or annotate your own ServiceAccount",
        ));
    }
    Ok(())
}

/// Checks the Distribution's pod defaults and `region`'s overrides, naming the field where
/// the problem is.
pub fn check_region(dist: &Distribution, region: &RegionSpec) -> Result<(), RenderError> {
    if let Some(p) = &dist.spec.pod {
        check_pod(p, "spec.pod")?;
    }
    if let Some(p) = &region.pod {
        let i = dist
            .spec
            .regions
            .iter()
            .position(|r| r.name == region.name)
            .unwrap_or_default();
        check_pod(p, &format!("spec.regions[{i}].pod"))?;
    }
    Ok(())
}

/// Spread constraints: the user's, or zones and nodes best effort, selecting the region's
/// pods (a spread counted over other pods would place nothing evenly).
pub fn spread_constraints(
    pod: &EdgePodSpec,
    selector: &BTreeMap<String, String>,
) -> Vec<TopologySpreadConstraint> {
    if let Some(own) = &pod.topology_spread_constraints {
        return own.clone();
    }
    DEFAULT_SPREAD_KEYS
        .iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// Name of the ServiceAccount the pods run as: the user's existing one, the one the operator
/// creates (named like every object of the region), or none (the namespace's `default`).
pub fn service_account_name(pod: &EdgePodSpec, object_name: &str) -> Option<String> {
    let sa = pod.service_account.as_ref()?;
    Some(sa.name.clone().unwrap_or_else(|| object_name.to_string()))
}

/// The ServiceAccount the operator creates for the region, carrying the user's annotations
/// (with the ownership markers of `meta` winning over same-named ones).
pub fn service_account(pod: &EdgePodSpec, mut meta: ObjectMeta) -> Option<ServiceAccount> {
    let sa = pod.service_account.as_ref()?;
    if sa.name.is_some() {
        return None;
    }
    let mut annotations = sa.annotations.clone().unwrap_or_default();
    annotations.extend(meta.annotations.take().unwrap_or_default());
    meta.annotations = Some(annotations);
    Some(ServiceAccount {
        metadata: meta,
        // The edge never calls the API server; identity webhooks project their own token.
        automount_service_account_token: Some(false),
        ..Default::default()
    })
}

/// The region's HorizontalPodAutoscaler (autoscaling/v2), scaling its Deployment on CPU.
pub fn autoscaler(auto: &AutoscalingSpec, meta: ObjectMeta) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: meta.name.clone().unwrap_or_default(),
            },
            min_replicas: Some(auto.min_replicas),
            max_replicas: auto.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(auto.target_cpu_utilization_percentage),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        metadata: meta,
        ..Default::default()
    }
}

/// Managers owning `spec.replicas` of the live Deployment (from its managed fields).
pub fn replicas_owners(dep: &Deployment) -> Vec<&str> {
    dep.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|s| s.get("f:replicas"))
                .is_some()
        })
        .filter_map(|m| m.manager.as_deref())
        .collect()
}

/// With autoscaling on: the replica count [`REPLICAS_MANAGER`] must take over, when nobody
/// but the operator's main field manager holds `spec.replicas` (just switched to
/// autoscaling, or just created). The current count, kept within the autoscaler's bounds.
pub fn replicas_to_hold(dep: &Deployment, auto: &AutoscalingSpec) -> Option<i32> {
    let owners = replicas_owners(dep);
    if owners.iter().any(|m| *m != FIELD_MANAGER) {
        return None;
    }
    let current = dep.spec.replicas.unwrap_or(1);
    Some(current.clamp(auto.min_replicas, auto.max_replicas.max(auto.min_replicas)))
}

/// The apply configuration of a Deployment holding only `spec.replicas`.
pub fn replicas_patch(name: &str, namespace: &str, replicas: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn labels(kv: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_region_replaces_single_fields_of_the_defaults() {
        let mut d = fixtures::example();
        d.spec.pod = Some(EdgePodSpec {
            node_selector: labels(&[("pool", "edge")]),
            priority_class_name: Some("edge-high".into()),
            pod_labels: labels(&[("team", "cdn")]),
            ..Default::default()
        });
        d.spec.regions[1].pod = Some(EdgePodSpec {
            node_selector: labels(&[("pool", "eu")]),
            topology_spread_constraints: Some(vec![]),
            ..Default::default()
        });
        let local = effective_pod(&d, &d.spec.regions[0]);
        assert_eq!(local, d.spec.pod.clone().expect("defaults"));
        let eu = effective_pod(&d, &d.spec.regions[1]);
        assert_eq!(eu.node_selector, labels(&[("pool", "eu")]));
        assert_eq!(eu.priority_class_name.as_deref(), Some("edge-high"));
        assert_eq!(eu.pod_labels, labels(&[("team", "cdn")]));
        assert_eq!(
            spread_constraints(&eu, &BTreeMap::new()),
            vec![],
            "[] turns the default spread off"
        );
    }

    #[test]
    fn the_default_spread_covers_zones_and_nodes_best_effort() {
        let sel = labels(&[("kubefront.io/region", "local")]).expect("sel");
        let c = spread_constraints(&EdgePodSpec::default(), &sel);
        let keys: Vec<_> = c.iter().map(|c| c.topology_key.as_str()).collect();
        assert_eq!(keys, DEFAULT_SPREAD_KEYS);
        assert!(c.iter().all(|c| c.when_unsatisfiable == "ScheduleAnyway"
            && c.max_skew == 1
            && c.label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                == Some(&sel)));
    }

    #[test]
    fn operator_labels_and_annotations_cannot_be_overridden() {
        let cases = [
            (
                labels(&[("kubefront.io/region", "x")]),
                None,
                "spec.pod.podLabels",
            ),
            (
                labels(&[("app.kubernetes.io/instance", "x")]),
                None,
                "spec.pod.podLabels",
            ),
            (
                None,
                labels(&[("kubefront.io/restart-hash", "x")]),
                "spec.pod.podAnnotations",
            ),
        ];
        for (pod_labels, pod_annotations, field) in cases {
            let pod = EdgePodSpec {
                pod_labels,
                pod_annotations,
                ..Default::default()
            };
            let err = check_pod(&pod, "spec.pod").expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        let fine = EdgePodSpec {
            pod_labels: labels(&[("team", "cdn"), ("app.kubernetes.io/part-of", "cdn")]),
            pod_annotations: labels(&[("prometheus.io/scrape", "true")]),
            ..Default::default()
        };
        check_pod(&fine, "spec.pod").expect("allowed");
        let mut d = fixtures::example();
        d.spec.regions[1].pod = Some(EdgePodSpec {
            pod_labels: labels(&[("kubefront.io/distribution", "other")]),
            ..Default::default()
        });
        assert_eq!(
            check_region(&d, &d.spec.regions[1])
                .expect_err("region")
                .field,
            "spec.regions[1].pod.podLabels"
        );
        check_region(&d, &d.spec.regions[0]).expect("other regions are fine");
    }

    #[test]
    fn the_operator_creates_and_annotates_a_service_account_only_without_a_name() {
        let annotated = EdgePodSpec {
            service_account: Some(ServiceAccountSpec {
                name: None,
                annotations: labels(&[("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/e")]),
            }),
            ..Default::default()
        };
        let meta = ObjectMeta {
            name: Some("site-local".into()),
            annotations: labels(&[("kubefront.io/distribution-uid", "u")]),
            ..Default::default()
        };
        let sa = service_account(&annotated, meta.clone()).expect("created");
        let a = sa.metadata.annotations.expect("annotations");
        assert_eq!(a.len(), 2);
        assert_eq!(
            service_account_name(&annotated, "site-local").as_deref(),
            Some("site-local")
        );
        let existing = EdgePodSpec {
            service_account: Some(ServiceAccountSpec {
                name: Some("edge".into()),
                annotations: None,
            }),
            ..Default::default()
        };
        assert!(service_account(&existing, meta.clone()).is_none());
        assert_eq!(
            service_account_name(&existing, "site-local").as_deref(),
            Some("edge")
        );
        assert!(service_account(&EdgePodSpec::default(), meta).is_none());
        assert_eq!(service_account_name(&EdgePodSpec::default(), "x"), None);
        let both = EdgePodSpec {
            service_account: Some(ServiceAccountSpec {
                name: Some("edge".into()),
                annotations: labels(&[("a", "b")]),
            }),
            ..Default::default()
        };
        assert_eq!(
            check_pod(&both, "spec.regions[0].pod")
                .expect_err("both")
                .field,
            "spec.regions[0].pod.serviceAccount.annotations"
        );
    }

    fn deployment(replicas: Option<i32>, owners: &[&str]) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                managed_fields: Some(
                    owners
                        .iter()
                        .map(|m| ManagedFieldsEntry {
                            manager: Some(m.to_string()),
                            fields_v1: Some(FieldsV1(
                                serde_json::json!({"f:spec": {"f:replicas": {}}}),
                            )),
                            ..Default::default()
                        })
                        .chain([ManagedFieldsEntry {
                            manager: Some("kube-controller-manager".into()),
                            fields_v1: Some(FieldsV1(serde_json::json!({"f:status": {}}))),
                            ..Default::default()
                        }])
                        .collect(),
                ),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn replicas_are_held_only_until_someone_else_owns_them() {
        let auto = AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 6,
            target_cpu_utilization_percentage: 70,
        };
        // Switching on: the operator owned the count; keep it (within bounds).
        assert_eq!(
            replicas_to_hold(&deployment(Some(4), &[FIELD_MANAGER]), &auto),
            Some(4)
        );
        assert_eq!(
            replicas_to_hold(&deployment(Some(9), &[FIELD_MANAGER]), &auto),
            Some(6)
        );
        // Just created without a count: nobody owns it, start at the minimum.
        assert_eq!(replicas_to_hold(&deployment(Some(1), &[]), &auto), Some(2));
        // The autoscaler (or anyone else) writes it: hands off.
        assert_eq!(
            replicas_to_hold(&deployment(Some(5), &["kube-controller-manager"]), &auto),
            None
        );
        assert_eq!(
            replicas_to_hold(&deployment(Some(5), &[REPLICAS_MANAGER]), &auto),
            None
        );
        assert_eq!(
            replicas_owners(&deployment(Some(5), &[FIELD_MANAGER, REPLICAS_MANAGER])),
            [FIELD_MANAGER, REPLICAS_MANAGER]
        );
    }

    #[test]
    fn the_autoscaler_targets_the_region_deployment_on_cpu() {
        let auto = AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 10,
            target_cpu_utilization_percentage: 65,
        };
        let hpa = autoscaler(
            &auto,
            ObjectMeta {
                name: Some("site-local".into()),
                ..Default::default()
            },
        );
        let spec = hpa.spec;
        assert_eq!(spec.scale_target_ref.name, "site-local");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 10));
        let m = &spec.metrics.expect("metrics")[0];
        assert_eq!(
            m.resource
                .as_ref()
                .and_then(|r| r.target.average_utilization),
            Some(65)
        );
    }
}
