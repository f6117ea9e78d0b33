//! One edge object at a time: the ownership check on the live object, then a server-side apply
//! only when needed. "Needed" is decided without a hand-written diff:
//!
//! - the applied configuration changed: its hash (annotation [`ANNOTATION_APPLIED_HASH`]) differs
//!   from the live object's, so apply (server-side apply also removes fields this field manager
//!   applied before and no longer sends);
//! - otherwise the live object may have drifted (someone edited or removed a field): a
//!   server-side dry-run apply shows what applying would produce, and only a difference from the
//!   live object leads to the real apply. Values the API server normalizes (`cpu: 0.5` →
//!   `500m`) are normalized on both sides, so they never cause a write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::crd::Distribution;
use crate::metrics::Metrics;
use crate::ownership::{self, Ownership};
use crate::render::{content_hash, FIELD_MANAGER};

/// Hash of the configuration the operator last applied to the object.
pub const ANNOTATION_APPLIED_HASH: &str = "kubefront.io/applied-hash";

/// Why one object could not be brought in sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{} not owned by this Distribution; nothing was written in this region: delete or rename {}, or rename the region", .objects.join(", "), if .objects.len() == 1 { "it" } else { "them" })]
    Conflict {
        /// `Kind namespace/name (holder)` of every object in the way.
        objects: Vec<String>,
    },
    #[error("{kind}: {source}")]
    Api {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{kind}: encoding the object: {source}")]
    Encode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// `Kind namespace/name exists (…)` when the live object is in the way of `region` of `dist`.
pub fn conflict<K: Resource<DynamicType = ()>>(
    live: Option<&K>,
    dist: &Distribution,
    region: &str,
) -> Option<String> {
    let meta = live?.meta();
    if ownership::of(meta, dist, region).may_apply() {
        return None;
    }
    Some(format!(
        "{} {}/{} exists ({})",
        kind_name::<K>(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        ownership::holder(meta)
    ))
}

/// The live object named like `desired`, if any.
pub async fn fetch<K>(api: &Api<K>, desired: &K) -> Result<Option<K>, SyncError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    api.get_opt(&name).await.map_err(|source| SyncError::Api {
        kind: kind_name::<K>(),
        source,
    })
}

/// A synced object and whether it was written.
pub struct Synced<K> {
    pub object: K,
    pub written: bool,
}

/// The kinds the operator writes, as `'static` names (metrics, events).
pub fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Secret" => "Secret",
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "Deployment" => "Deployment",
        "ServiceAccount" => "ServiceAccount",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler",
        _ => "Object",
    }
}

/// The applied configuration of `desired`: its JSON with the hash of that JSON stamped on as
/// [`ANNOTATION_APPLIED_HASH`], and the hash.
pub fn stamp<K: Serialize>(desired: &K) -> Result<(Value, String), serde_json::Error> {
    let mut v = serde_json::to_value(desired)?;
    let hash = content_hash(&[v.to_string().as_bytes()]);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION_APPLIED_HASH.into(), Value::String(hash.clone()));
        }
    }
    Ok((v, hash))
}

fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(ANNOTATION_APPLIED_HASH)
        .map(String::as_str)
}

/// The object without what changes on every write or is not ours to compare (resource
/// version, managed-field timestamps, generation, status).
fn comparable(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["managedFields", "resourceVersion", "generation"] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// Whether applying (as the dry run returned it) would leave the live object as it is.
pub fn unchanged_by_apply(live: &Value, dry_run: &Value) -> bool {
    comparable(live.clone()) == comparable(dry_run.clone())
}

/// Brings one object in sync for `region` of `dist`, given the live object as [`fetch`] read
/// it; never writes to an object it does not own.
pub async fn sync<K>(
    api: &Api<K>,
    desired: &K,
    live: Option<K>,
    dist: &Distribution,
    region: &str,
    metrics: &Metrics,
) -> Result<Synced<K>, SyncError>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let kind = kind_name::<K>();
    let api_err = |source| SyncError::Api { kind, source };
    let name = desired.meta().name.clone().unwrap_or_default();
    let (want, hash) = stamp(desired).map_err(|source| SyncError::Encode { kind, source })?;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(live) = live {
        if let Some(c) = conflict(Some(&live), dist, region) {
            return Err(SyncError::Conflict { objects: vec![c] });
        }
        let current = ownership::of(live.meta(), dist, region) == Ownership::Ours
            && live.meta().deletion_timestamp.is_none()
            && applied_hash(live.meta()) == Some(hash.as_str());
        if current {
            let dry = api
                .patch(&name, &apply.clone().dry_run(), &Patch::Apply(&want))
                .await
                .map_err(api_err)?;
            let encode = |source| SyncError::Encode { kind, source };
            let (l, d) = (
                serde_json::to_value(&live).map_err(encode)?,
                serde_json::to_value(&dry).map_err(encode)?,
            );
            if unchanged_by_apply(&l, &d) {
                return Ok(Synced {
                    object: live,
                    written: false,
                });
            }
        }
    }
    let object = api
        .patch(&name, &apply, &Patch::Apply(&want))
        .await
        .map_err(api_err)?;
    metrics.write(kind);
    Ok(Synced {
        object,
        written: true,
    })
}

/// Deletes `name` if it exists and carries this Distribution's UID (never a stranger's
/// object of the same name). Returns whether it deleted.
pub async fn delete_owned<K>(
    api: &Api<K>,
    name: &str,
    dist: &Distribution,
    metrics: &Metrics,
) -> Result<bool, SyncError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let kind = kind_name::<K>();
    let Some(obj) = api
        .get_opt(name)
        .await
        .map_err(|source| SyncError::Api { kind, source })?
    else {
        return Ok(false);
    };
    if !ownership::is_ours(obj.meta(), dist) || obj.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.meta().uid.clone(),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            metrics.write(kind);
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(source) => Err(SyncError::Api { kind, source }),
    }
}

/// [`delete_owned`] for kinds only some regions use (ServiceAccount, HorizontalPodAutoscaler):
/// an identity that may not read them (a remote cluster's, granted only what its regions use)
/// cannot have created one, so a 403 means there is nothing of ours to clean up.
pub async fn delete_owned_if_permitted<K>(
    api: &Api<K>,
    name: &str,
    dist: &Distribution,
    metrics: &Metrics,
) -> Result<bool, SyncError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match delete_owned(api, name, dist, metrics).await {
        Err(SyncError::Api {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 403 => Ok(false),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn the_stamp_is_the_hash_of_the_configuration_and_changes_with_it() {
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (v, h) = stamp(&cm).expect("stamp");
        assert_eq!(
            v["metadata"]["annotations"][ANNOTATION_APPLIED_HASH],
            json!(h)
        );
        assert_eq!(stamp(&cm).expect("again").1, h, "stable");
        cm.data = Some([("k".to_string(), "v".to_string())].into());
        assert_ne!(stamp(&cm).expect("changed").1, h);
    }

    #[test]
    fn only_a_real_difference_counts_as_drift() {
        let live = json!({"metadata": {"name": "x", "resourceVersion": "5", "generation": 2,
            "managedFields": [{"manager": "kubefront-operator", "time": "t1"}],
            "annotations": {"a": "1"}},
            "spec": {"cpu": "500m"}, "status": {"replicas": 1}});
        let same = json!({"metadata": {"name": "x", "resourceVersion": "5", "generation": 2,
            "managedFields": [{"manager": "kubefront-operator", "time": "t2"}],
            "annotations": {"a": "1"}},
            "spec": {"cpu": "500m"}, "status": {"replicas": 2}});
        assert!(unchanged_by_apply(&live, &same));
        let reverted = json!({"metadata": {"name": "x", "annotations": {}},
            "spec": {"cpu": "500m"}});
        assert!(
            !unchanged_by_apply(&live, &reverted),
            "apply would remove an annotation"
        );
        let spec = json!({"metadata": {"name": "x", "annotations": {"a": "1"}},
            "spec": {"cpu": "1"}});
        assert!(!unchanged_by_apply(&live, &spec));
    }
}
