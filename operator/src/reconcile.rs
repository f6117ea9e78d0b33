//! Reconcile and cleanup of one Distribution over a [`Context`]. Every API call the operator
//! makes for a Distribution happens here (region clients come from `regions`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{future, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crd::{ClusterRef, Distribution, DistributionStatus, RegionSpec, SecretKeyRef};
use crate::metrics::Metrics;
use crate::regions::{RegionError, Regions, RemoteClient};
use crate::render::{
    self, KeySecrets, RegionObjects, RenderContext, RenderError, FIELD_MANAGER, LABEL_DISTRIBUTION,
    LABEL_DISTRIBUTION_NAMESPACE, LABEL_REGION, MANAGED_SELECTOR,
};
use crate::status::{self, RegionApplied, RegionFailure, RegionOutcome};

/// Finalizer that removes objects owner references cannot reach (remote clusters, other
/// namespaces) before the Distribution goes.
pub const FINALIZER: &str = "kubefront.io/cleanup";
/// Set to "true" on a Distribution to let it be deleted even when a region cannot be cleaned
/// (e.g. the remote cluster is gone for good).
pub const ANNOTATION_SKIP_CLEANUP: &str = "kubefront.io/skip-unreachable-cleanup";
/// Periodic resync when everything is fine (Secrets the spec names are watched as well).
pub const RESYNC: Duration = Duration::from_secs(300);
const REQUEUE_FAILING: Duration = Duration::from_secs(30);
const REQUEUE_ROLLING: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cleanup of region {region} failed: {message}")]
    Cleanup { region: String, message: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Metric / event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "ApiError",
            Error::Cleanup { .. } => "CleanupFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// Everything a reconcile needs.
pub struct Context {
    pub regions: Regions,
    pub edge_image: String,
    pub metrics: Arc<Metrics>,
    pub recorder: Option<Recorder>,
    pub remote_watches: Option<RemoteWatches>,
    /// Consecutive failures per Distribution, for exponential error backoff.
    failures: Mutex<HashMap<ObjectRef<Distribution>, u32>>,
    /// Regions per Distribution, summed into the managed_regions gauge.
    managed: Mutex<HashMap<ObjectRef<Distribution>, i64>>,
}

impl Context {
    pub fn new(
        regions: Regions,
        edge_image: impl Into<String>,
        metrics: Arc<Metrics>,
        recorder: Option<Recorder>,
        remote_watches: Option<RemoteWatches>,
    ) -> Self {
        Self {
            regions,
            edge_image: edge_image.into(),
            metrics,
            recorder,
            remote_watches,
            failures: Mutex::new(HashMap::new()),
            managed: Mutex::new(HashMap::new()),
        }
    }

    fn set_managed(&self, dist: &Distribution, regions: i64) {
        let Ok(mut m) = self.managed.lock() else {
            return;
        };
        if regions == 0 {
            m.remove(&ObjectRef::from_obj(dist));
        } else {
            m.insert(ObjectRef::from_obj(dist), regions);
        }
        self.metrics.managed_regions.set(m.values().sum());
    }

    async fn event(&self, dist: &Distribution, type_: EventType, reason: &str, note: String) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &dist.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

/// Controller entry point.
pub async fn reconcile(dist: Arc<Distribution>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Distribution> = Api::namespaced(ctx.regions.local().clone(), &ns);
    let result = finalizer(&api, FINALIZER, dist, |event| async {
        match event {
            FinalizerEvent::Apply(d) => apply(&d, &ctx).await,
            FinalizerEvent::Cleanup(d) => cleanup(&d, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.observe(started.elapsed());
    if let Err(e) = &result {
        ctx.metrics.failure(e.reason());
    }
    result
}

/// Exponential backoff (5s · 2ⁿ, at most 5 minutes) for reconciles that returned an error.
pub fn error_policy(dist: Arc<Distribution>, err: &Error, ctx: Arc<Context>) -> Action {
    let attempts = {
        let mut f = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(ObjectRef::from_obj(&*dist)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs(5u64.saturating_mul(1 << attempts.min(6)).min(300));
    tracing::warn!(distribution = %dist.name_any(), error = %err, attempts, ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn reset_backoff(dist: &Distribution, ctx: &Context) {
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&ObjectRef::from_obj(dist));
    }
}

/// Reads the origin credentials Secret, if the spec names one. `Ok(None)` also when it is
/// missing: rendering reports that as a spec problem naming the field.
async fn credentials(
    dist: &Distribution,
    local: &Client,
) -> Result<Option<BTreeMap<String, ByteString>>, Error> {
    let Some(r) = &dist.spec.origin.s3.credentials_secret_ref else {
        return Ok(None);
    };
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let secret = Api::<Secret>::namespaced(local.clone(), &ns)
        .get_opt(&r.name)
        .await
        .map_err(kube_err(format!("reading credentials Secret {}", r.name)))?;
    Ok(secret.map(|s| s.data.unwrap_or_default()))
}

/// Reads the Secrets of the trusted key groups (each once). A missing one is left out of the
/// map: rendering reports it, naming the field.
async fn key_secrets(dist: &Distribution, local: &Client) -> Result<KeySecrets, Error> {
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let api = Api::<Secret>::namespaced(local.clone(), &ns);
    let mut out = KeySecrets::new();
    for g in &dist.spec.trusted_key_groups {
        let name = &g.secret_ref.name;
        if out.contains_key(name) {
            continue;
        }
        let secret = api
            .get_opt(name)
            .await
            .map_err(kube_err(format!("reading key group Secret {name}")))?;
        if let Some(s) = secret {
            out.insert(name.clone(), s.data.unwrap_or_default());
        }
    }
    Ok(out)
}

/// Renders every region first (pure), so a spec problem applies nothing anywhere.
fn render_all(
    dist: &Distribution,
    ctx: &Context,
    creds: Option<&BTreeMap<String, ByteString>>,
    keys: &KeySecrets,
) -> Result<Vec<RegionObjects>, RenderError> {
    let cfg = render::edge_config(&dist.spec, keys)?;
    let rctx = RenderContext {
        edge_image: &ctx.edge_image,
        credentials: creds,
    };
    dist.spec
        .regions
        .iter()
        .map(|r| render::render_region(dist, r, &cfg, &rctx))
        .collect()
}

async fn apply(dist: &Distribution, ctx: &Context) -> Result<Action, Error> {
    let generation = dist.metadata.generation;
    let old = dist.status.as_ref();
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let creds = credentials(dist, ctx.regions.local()).await?;
    let keys = key_secrets(dist, ctx.regions.local()).await?;

    let rendered = match render_all(dist, ctx, creds.as_ref(), &keys) {
        Ok(r) => r,
        Err(invalid) => {
            // Nothing is applied anywhere: every region keeps running its last config and
            // says why it was not updated. Regions dropped from the spec stay listed until a
            // valid spec prunes them.
            let mut regions: Vec<_> = dist
                .spec
                .regions
                .iter()
                .map(|r| {
                    let prev = old.and_then(|s| s.regions.iter().find(|x| x.name == r.name));
                    status::region_blocked(
                        &r.name,
                        r.cluster_label(),
                        dist.region_namespace(r).to_string(),
                        &invalid,
                        prev,
                        generation,
                        &now,
                    )
                })
                .collect();
            if let Some(old) = old {
                regions.extend(
                    old.regions
                        .iter()
                        .filter(|r| !dist.spec.regions.iter().any(|s| s.name == r.name))
                        .cloned(),
                );
            }
            let new = status::distribution_status(regions, Some(&invalid), old, generation, &now);
            if write_status(dist, ctx, &new).await? {
                ctx.event(
                    dist,
                    EventType::Warning,
                    invalid.reason,
                    invalid.to_string(),
                )
                .await;
            }
            ctx.metrics.failure(invalid.reason);
            reset_backoff(dist, ctx);
            return Ok(Action::requeue(RESYNC));
        }
    };

    let outcomes: Vec<RegionOutcome> = future::join_all(
        dist.spec
            .regions
            .iter()
            .zip(&rendered)
            .map(|(region, objs)| apply_region(dist, region, objs, ctx)),
    )
    .await;

    let mut regions = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        let prev = old.and_then(|s| s.regions.iter().find(|r| r.name == o.name));
        match &o.result {
            Ok(a) if !a.written.is_empty() => {
                ctx.event(
                    dist,
                    EventType::Normal,
                    "Applied",
                    format!("region {}: applied {}", o.name, a.written.join(", ")),
                )
                .await;
            }
            Err(f) => {
                ctx.metrics.failure(&f.reason);
                let was_same = prev.is_some_and(|p| {
                    p.conditions.iter().any(|c| {
                        c.type_ == status::DEGRADED && c.status == "True" && c.reason == f.reason
                    })
                });
                if !was_same {
                    ctx.event(
                        dist,
                        EventType::Warning,
                        &f.reason,
                        format!("region {}: {}", o.name, f.message),
                    )
                    .await;
                }
            }
            _ => {}
        }
        regions.push(status::region_status(o, prev, generation, &now));
    }

    // Prune regions dropped from the spec; one that cannot be reached stays listed as failing.
    if let Some(old) = old {
        for gone in old
            .regions
            .iter()
            .filter(|r| !dist.spec.regions.iter().any(|s| s.name == r.name))
        {
            match prune_region(dist, gone, ctx).await {
                Ok(deleted) => {
                    if deleted > 0 {
                        ctx.event(
                            dist,
                            EventType::Normal,
                            "Pruned",
                            format!(
                                "region {} removed from spec: deleted {deleted} object(s)",
                                gone.name
                            ),
                        )
                        .await;
                    }
                }
                Err(message) => {
                    ctx.metrics.failure("PruneFailed");
                    let outcome = RegionOutcome {
                        name: gone.name.clone(),
                        cluster: gone.cluster.clone(),
                        namespace: gone.namespace.clone(),
                        result: Err(RegionFailure {
                            reason: "PruneFailed".into(),
                            message,
                        }),
                    };
                    regions.push(status::region_status(
                        &outcome,
                        Some(gone),
                        generation,
                        &now,
                    ));
                }
            }
        }
    }

    let new = status::distribution_status(regions, None, old, generation, &now);
    write_status(dist, ctx, &new).await?;
    ctx.set_managed(dist, dist.spec.regions.len() as i64);
    reset_backoff(dist, ctx);

    let failing = outcomes.iter().any(|o| o.result.is_err());
    let rolling = outcomes
        .iter()
        .any(|o| matches!(&o.result, Ok(a) if !a.available));
    Ok(Action::requeue(if failing {
        REQUEUE_FAILING
    } else if rolling {
        REQUEUE_ROLLING
    } else {
        RESYNC
    }))
}

/// Patches status only when it differs from what is stored. Returns whether it wrote.
async fn write_status(
    dist: &Distribution,
    ctx: &Context,
    new: &DistributionStatus,
) -> Result<bool, Error> {
    if dist.status.as_ref() == Some(new) {
        return Ok(false);
    }
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Distribution> = Api::namespaced(ctx.regions.local().clone(), &ns);
    let patch = serde_json::json!({ "status": new });
    api.patch_status(
        &dist.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err("writing status"))?;
    ctx.metrics.write("DistributionStatus");
    Ok(true)
}

/// Maps an API failure to a status reason.
pub fn failure_reason(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 401 => "Unauthorized",
        kube::Error::Api(s) if s.code == 403 => "Forbidden",
        kube::Error::Api(s) if s.code == 404 => "NamespaceNotFound",
        kube::Error::Api(s) if s.code == 422 => "Rejected",
        kube::Error::Api(_) => "ApplyFailed",
        kube::Error::HyperError(_) | kube::Error::Service(_) => "Unreachable",
        kube::Error::Auth(_) | kube::Error::RustlsTls(_) => "Unauthorized",
        _ => "ApplyFailed",
    }
}

fn region_failure(kind: &str, e: kube::Error) -> RegionFailure {
    RegionFailure {
        reason: failure_reason(&e).into(),
        message: format!("{kind}: {e}"),
    }
}

/// Brings one region in sync. Never fails the whole reconcile: problems become its status.
async fn apply_region(
    dist: &Distribution,
    region: &RegionSpec,
    objs: &RegionObjects,
    ctx: &Context,
) -> RegionOutcome {
    let ns = dist.region_namespace(region).to_string();
    let result = apply_region_objects(dist, region, objs, &ns, ctx).await;
    RegionOutcome {
        name: region.name.clone(),
        cluster: region.cluster_label(),
        namespace: ns,
        result,
    }
}

async fn apply_region_objects(
    dist: &Distribution,
    region: &RegionSpec,
    objs: &RegionObjects,
    ns: &str,
    ctx: &Context,
) -> Result<RegionApplied, RegionFailure> {
    let (client, remote) =
        ctx.regions
            .client_for(dist, region)
            .await
            .map_err(|e: RegionError| RegionFailure {
                reason: e.reason().into(),
                message: e.to_string(),
            })?;
    if let (Some(remote), Some(w)) = (&remote, &ctx.remote_watches) {
        w.ensure(remote, ns);
    }
    let mut written = Vec::new();
    let name = render::object_name(dist, &region.name);
    match &objs.secret {
        Some(s) => {
            sync(&Api::namespaced(client.clone(), ns), s, &mut written, ctx).await?;
        }
        None => {
            // Credentials were removed from the spec: drop the mirror.
            if delete_owned::<Secret>(&client, ns, &name, dist, &region.name)
                .await
                .map_err(|e| region_failure("Secret", e))?
            {
                ctx.metrics.write("Secret");
                written.push("Secret(deleted)");
            }
        }
    };
    sync(
        &Api::namespaced(client.clone(), ns),
        &objs.config_map,
        &mut written,
        ctx,
    )
    .await?;
    sync(
        &Api::namespaced(client.clone(), ns),
        &objs.service,
        &mut written,
        ctx,
    )
    .await?;
    sync(
        &Api::namespaced(client.clone(), ns),
        &objs.pdb,
        &mut written,
        ctx,
    )
    .await?;
    let dep: Deployment = sync(
        &Api::namespaced(client.clone(), ns),
        &objs.deployment,
        &mut written,
        ctx,
    )
    .await?;

    let replicas = region.replicas;
    let st = dep.status.unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let current = st.observed_generation.unwrap_or(0) >= dep.metadata.generation.unwrap_or(0);
    let available = replicas == 0
        || (current
            && st.updated_replicas.unwrap_or(0) >= replicas
            && st.available_replicas.unwrap_or(0) >= replicas
            && ready >= replicas);
    Ok(RegionApplied {
        replicas,
        ready_replicas: ready,
        available,
        config_hash: objs.config_hash.clone(),
        endpoint: format!("http://{name}.{ns}.svc:{}", render::SERVICE_PORT),
        written,
    })
}

/// Applies `desired` unless the live object already contains it (no write when in sync).
async fn sync<K>(
    api: &Api<K>,
    desired: &K,
    written: &mut Vec<&'static str>,
    ctx: &Context,
) -> Result<K, RegionFailure>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    let kind: &'static str = match kind.as_ref() {
        "Secret" => "Secret",
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "Deployment" => "Deployment",
        _ => "Object",
    };
    let name = desired.meta().name.clone().unwrap_or_default();
    let want = serde_json::to_value(desired).map_err(|e| RegionFailure {
        reason: "RenderFailed".into(),
        message: e.to_string(),
    })?;
    let live = api
        .get_opt(&name)
        .await
        .map_err(|e| region_failure(kind, e))?;
    if let Some(live) = live {
        if live.meta().deletion_timestamp.is_none() {
            let have = serde_json::to_value(&live).map_err(|e| RegionFailure {
                reason: "RenderFailed".into(),
                message: e.to_string(),
            })?;
            if render::is_subset(&want, &have) {
                return Ok(live);
            }
        }
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&want),
        )
        .await
        .map_err(|e| region_failure(kind, e))?;
    ctx.metrics.write(kind);
    written.push(kind);
    Ok(applied)
}

/// Deletes `name` if it exists and carries this Distribution's labels (never a stranger's
/// object of the same name). Returns whether it deleted.
async fn delete_owned<K>(
    client: &Client,
    ns: &str,
    name: &str,
    dist: &Distribution,
    region: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let labels = obj.labels();
    let ours = labels.get(LABEL_DISTRIBUTION).map(String::as_str) == dist.metadata.name.as_deref()
        && labels.get(LABEL_REGION).map(String::as_str) == Some(region)
        && labels.get(LABEL_DISTRIBUTION_NAMESPACE).map(String::as_str)
            == dist.metadata.namespace.as_deref();
    if !ours || obj.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.meta().uid.clone(),
            resource_version: None,
        }),
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes every object of a region. Returns how many objects were deleted.
async fn delete_region(
    client: &Client,
    ns: &str,
    dist: &Distribution,
    region: &str,
    ctx: &Context,
) -> Result<usize, String> {
    let name = render::object_name(dist, region);
    let mut deleted = 0;
    let err = |kind: &'static str| {
        let name = name.clone();
        move |e: kube::Error| format!("deleting {kind} {ns}/{name}: {e}")
    };
    for (kind, gone) in [
        (
            "Deployment",
            delete_owned::<Deployment>(client, ns, &name, dist, region)
                .await
                .map_err(err("Deployment"))?,
        ),
        (
            "PodDisruptionBudget",
            delete_owned::<PodDisruptionBudget>(client, ns, &name, dist, region)
                .await
                .map_err(err("PodDisruptionBudget"))?,
        ),
        (
            "Service",
            delete_owned::<Service>(client, ns, &name, dist, region)
                .await
                .map_err(err("Service"))?,
        ),
        (
            "ConfigMap",
            delete_owned::<ConfigMap>(client, ns, &name, dist, region)
                .await
                .map_err(err("ConfigMap"))?,
        ),
        (
            "Secret",
            delete_owned::<Secret>(client, ns, &name, dist, region)
                .await
                .map_err(err("Secret"))?,
        ),
    ] {
        if gone {
            ctx.metrics.write(kind);
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Rebuilds enough of a region's spec from its status entry to reach its cluster.
fn region_from_status(st: &crate::crd::RegionStatus) -> RegionSpec {
    let cluster = st.cluster.strip_prefix("kubeconfig:").map(|rest| {
        let (name, key) = rest.split_once('/').unwrap_or((rest, "value"));
        ClusterRef {
            kubeconfig_secret_ref: SecretKeyRef {
                name: name.into(),
                key: key.into(),
            },
        }
    });
    RegionSpec {
        name: st.name.clone(),
        cluster,
        namespace: Some(st.namespace.clone()),
        replicas: 0,
        resources: None,
        service: Default::default(),
    }
}

async fn prune_region(
    dist: &Distribution,
    st: &crate::crd::RegionStatus,
    ctx: &Context,
) -> Result<usize, String> {
    let region = region_from_status(st);
    let (client, _) = ctx
        .regions
        .client_for(dist, &region)
        .await
        .map_err(|e| e.to_string())?;
    delete_region(&client, &st.namespace, dist, &st.name, ctx).await
}

/// Finalizer cleanup: delete the objects of every region (spec and status), local ones too
/// (owner references would do it, but only where a garbage collector runs and only in the
/// Distribution's own namespace).
async fn cleanup(dist: &Distribution, ctx: &Context) -> Result<Action, Error> {
    let mut regions: Vec<RegionSpec> = dist.spec.regions.clone();
    if let Some(st) = &dist.status {
        for r in &st.regions {
            if !regions.iter().any(|x| x.name == r.name) {
                regions.push(region_from_status(r));
            }
        }
    }
    let skip_unreachable = dist
        .annotations()
        .get(ANNOTATION_SKIP_CLEANUP)
        .is_some_and(|v| v == "true");
    let results = future::join_all(regions.iter().map(|region| async move {
        let ns = dist.region_namespace(region).to_string();
        let (client, _) = ctx
            .regions
            .client_for(dist, region)
            .await
            .map_err(|e| e.to_string())?;
        delete_region(&client, &ns, dist, &region.name, ctx).await
    }))
    .await;
    for (region, res) in regions.iter().zip(results) {
        match res {
            Ok(n) => {
                tracing::info!(distribution = %dist.name_any(), region = %region.name, deleted = n, "region cleaned up")
            }
            Err(message) if skip_unreachable => {
                tracing::warn!(distribution = %dist.name_any(), region = %region.name, %message, "cleanup skipped by annotation")
            }
            Err(message) => {
                ctx.event(
                    dist,
                    EventType::Warning,
                    "CleanupFailed",
                    format!("region {}: {message}", region.name),
                )
                .await;
                return Err(Error::Cleanup {
                    region: region.name.clone(),
                    message,
                });
            }
        }
    }
    ctx.event(
        dist,
        EventType::Normal,
        "CleanedUp",
        format!("removed edge objects from {} region(s)", regions.len()),
    )
    .await;
    ctx.set_managed(dist, 0);
    reset_backoff(dist, ctx);
    Ok(Action::await_change())
}

/// The Distributions (of `dists`, the controller's store) that read the Secret `namespace/name`
/// (credentials, key groups, kubeconfigs): a change to it re-reconciles them at once.
pub fn referencing_secret(
    dists: &[Arc<Distribution>],
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<Distribution>> {
    dists
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == namespace)
        .filter(|d| d.spec.referenced_secrets().contains(name))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Maps a managed object back to its Distribution through its labels.
pub fn owner_of<K: Resource>(obj: &K) -> Option<ObjectRef<Distribution>> {
    let l = obj.meta().labels.as_ref()?;
    Some(ObjectRef::new(l.get(LABEL_DISTRIBUTION)?).within(l.get(LABEL_DISTRIBUTION_NAMESPACE)?))
}

/// (kubeconfig Secret, namespace) of a remote watch.
type WatchKey = (String, String);
/// Client identity and the watcher tasks running for it.
type WatchTasks = (String, Vec<tokio::task::AbortHandle>);

/// Watches managed objects in remote clusters (drift repair): one watcher per kind per
/// (cluster, namespace), replaced when the kubeconfig Secret — and so the client — changes.
pub struct RemoteWatches {
    tx: mpsc::UnboundedSender<ObjectRef<Distribution>>,
    /// (kubeconfig Secret, namespace) → (client identity, watcher tasks).
    active: Mutex<HashMap<WatchKey, WatchTasks>>,
}

impl RemoteWatches {
    /// The receiver is the trigger stream for `Controller::reconcile_on`.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<Distribution>>) {
        let (tx, rx) = mpsc::unbounded();
        (
            Self {
                tx,
                active: Mutex::new(HashMap::new()),
            },
            rx,
        )
    }

    /// Starts watchers for (remote, ns) unless ones for the same client already run.
    pub fn ensure(&self, remote: &RemoteClient, ns: &str) {
        let secret = remote
            .identity
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let key = (secret, ns.to_string());
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        if active
            .get(&key)
            .is_some_and(|(id, _)| *id == remote.identity)
        {
            return;
        }
        if let Some((_, old)) = active.remove(&key) {
            old.iter().for_each(|h| h.abort());
        }
        let handles = vec![
            self.spawn::<Deployment>(remote.client.clone(), ns),
            self.spawn::<Service>(remote.client.clone(), ns),
            self.spawn::<ConfigMap>(remote.client.clone(), ns),
            self.spawn::<PodDisruptionBudget>(remote.client.clone(), ns),
            self.spawn::<Secret>(remote.client.clone(), ns),
        ];
        tracing::info!(cluster = %remote.identity, namespace = ns, "watching remote region objects");
        active.insert(key, (remote.identity.clone(), handles));
    }

    fn spawn<K>(&self, client: Client, ns: &str) -> tokio::task::AbortHandle
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let api: Api<K> = Api::namespaced(client, ns);
        let tx = self.tx.clone();
        let cfg = watcher::Config::default().labels(MANAGED_SELECTOR);
        tokio::spawn(async move {
            let mut events = watcher(api, cfg)
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(obj) => {
                        if let Some(r) = owner_of(&obj) {
                            if tx.unbounded_send(r).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "remote watch error (retrying)"),
                }
            }
        })
        .abort_handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_secret_maps_to_the_distributions_of_its_namespace_that_read_it() {
        let signed = Arc::new(fixtures::signed());
        let mut other_ns = fixtures::signed();
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut unsigned = fixtures::example();
        unsigned.metadata.name = Some("plain".into());
        let store = vec![signed.clone(), Arc::new(other_ns), Arc::new(unsigned)];
        let names = |ns: &str, secret: &str| -> Vec<String> {
            referencing_secret(&store, Some(ns), secret)
                .into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect()
        };
        assert_eq!(names("web", "signing-keys"), ["web/site"]);
        assert_eq!(names("elsewhere", "partner-keys"), ["elsewhere/site"]);
        assert_eq!(names("web", "assets-s3"), ["web/site", "web/plain"]);
        assert_eq!(
            names("web", "eu-west-kubeconfig"),
            ["web/site", "web/plain"]
        );
        assert!(names("web", "unrelated").is_empty());
    }
}
