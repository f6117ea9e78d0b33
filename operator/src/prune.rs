//! Removing a region's objects from a target: after a region was removed, renamed or moved,
//! and on deletion. Only objects carrying this Distribution's UID are deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::crd::{Distribution, RegionTarget};
use crate::metrics::Metrics;
use crate::ownership;
use crate::render::{LABEL_DISTRIBUTION, LABEL_DISTRIBUTION_NAMESPACE, LABEL_REGION};
use crate::sync::{delete_owned, delete_owned_if_permitted, SyncError};
use crate::target::StaleTarget;

/// Deletes every object of the region at `target` (the autoscaler, then the Deployment, so
/// pods stop before their config and identity go). Returns how many objects were deleted.
pub async fn delete_target(
    client: &Client,
    dist: &Distribution,
    target: &RegionTarget,
    metrics: &Metrics,
) -> Result<usize, SyncError> {
    let (ns, name) = (target.namespace.as_str(), target.name.as_str());
    let deleted = [
        delete_owned_if_permitted::<HorizontalPodAutoscaler>(
            &Api::namespaced(client.clone(), ns),
            name,
            dist,
            metrics,
        )
        .await?,
        delete_owned::<Deployment>(&Api::namespaced(client.clone(), ns), name, dist, metrics)
            .await?,
        delete_owned::<PodDisruptionBudget>(
            &Api::namespaced(client.clone(), ns),
            name,
            dist,
            metrics,
        )
        .await?,
        delete_owned::<Service>(&Api::namespaced(client.clone(), ns), name, dist, metrics).await?,
        delete_owned::<ConfigMap>(&Api::namespaced(client.clone(), ns), name, dist, metrics)
            .await?,
        delete_owned::<Secret>(&Api::namespaced(client.clone(), ns), name, dist, metrics).await?,
        delete_owned_if_permitted::<ServiceAccount>(
            &Api::namespaced(client.clone(), ns),
            name,
            dist,
            metrics,
        )
        .await?,
    ];
    Ok(deleted.iter().filter(|d| **d).count())
}

/// The label selector of every object of `dist`.
pub fn selector(dist: &Distribution) -> String {
    format!(
        "{LABEL_DISTRIBUTION}={},{LABEL_DISTRIBUTION_NAMESPACE}={}",
        dist.name_any(),
        dist.namespace().unwrap_or_default()
    )
}

/// Regions of `dist` found at `place` (by label, with this Distribution's UID) that the spec
/// does not put there: leftovers the stored status does not know about. Every region has a
/// ConfigMap, so ConfigMaps are the index.
pub async fn discover(
    client: &Client,
    dist: &Distribution,
    place: &RegionTarget,
) -> Result<Vec<StaleTarget>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &place.namespace);
    let found = api
        .list(&ListParams::default().labels(&selector(dist)))
        .await?;
    let wanted: Vec<(String, RegionTarget)> = dist
        .spec
        .regions
        .iter()
        .map(|r| (r.name.clone(), RegionTarget::of(dist, r)))
        .collect();
    Ok(found
        .items
        .iter()
        .filter(|cm| ownership::is_ours(&cm.metadata, dist))
        .filter_map(|cm| {
            let region = cm.labels().get(LABEL_REGION)?.clone();
            let target = RegionTarget {
                kubeconfig_secret_ref: place.kubeconfig_secret_ref.clone(),
                namespace: place.namespace.clone(),
                name: cm.name_any(),
            };
            (!wanted.contains(&(region.clone(), target.clone())))
                .then_some(StaleTarget { region, target })
        })
        .collect())
}
