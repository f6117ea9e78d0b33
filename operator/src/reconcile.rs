//! Reconcile and cleanup of one Distribution over a [`Context`]. Every API call the operator
//! makes for a Distribution happens here (region clients come from `regions`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{future, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::{Distribution, DistributionStatus, RegionSpec, RegionStatus, RegionTarget};
use crate::lease::Leadership;
use crate::metrics::Metrics;
use crate::placement;
use crate::prune;
use crate::regions::{RegionError, Regions, RemoteClient};
use crate::render::{
    self, KeySecrets, RegionObjects, RenderContext, RenderError, LABEL_DISTRIBUTION,
    LABEL_DISTRIBUTION_NAMESPACE, MANAGED_SELECTOR,
};
use crate::rollout;
use crate::status::{self, PodsConfig, RegionApplied, RegionFailure, RegionOutcome};
use crate::sync::{
    conflict, delete_owned, delete_owned_if_permitted, fetch, sync, SyncError, Synced,
};
use crate::target::{self, StaleTarget};
use crate::tenancy::TargetNamespacePolicy;

/// Finalizer that removes objects owner references cannot reach (remote clusters, other
/// namespaces) before the Distribution goes.
pub const FINALIZER: &str = "kubefront.io/cleanup";
/// Set to "true" on a Distribution to forget regions that cannot be cleaned up (their cluster
/// is gone for good): prune and deletion go on without them, leaving their objects behind.
pub const ANNOTATION_FORGET_UNREACHABLE: &str = "kubefront.io/forget-unreachable-regions";
/// Region reason: an object with the region's name exists and is not this Distribution's.
pub const REASON_CONFLICT: &str = "Conflict";
/// Region reason: the admin's namespace policy does not let this Distribution use the namespace.
pub const REASON_NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// Region reason / event: objects at an earlier target could not be removed.
pub const REASON_PRUNE_FAILED: &str = "PruneFailed";
/// Default periodic resync when everything is fine (Secrets the spec names are watched as
/// well).
pub const RESYNC: Duration = Duration::from_secs(300);
const REQUEUE_FAILING: Duration = Duration::from_secs(30);
const REQUEUE_ROLLING: Duration = Duration::from_secs(60);
/// While pods reload a new config (the kubelet refreshes mounted ConfigMaps within about a
/// minute), look again this often.
const REQUEUE_RELOADING: Duration = Duration::from_secs(10);

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
    #[error("not the leader (lease not renewed within the renew deadline); nothing written")]
    NotLeader,
    #[error("generating the origin shield token: {0}")]
    Token(String),
}

impl Error {
    /// Metric / event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "ApiError",
            Error::Cleanup { .. } => "CleanupFailed",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::NotLeader => "NotLeader",
            Error::Token(_) => "TokenFailed",
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
    /// Which namespaces local regions may target besides their Distribution's own.
    pub tenancy: TargetNamespacePolicy,
    /// Requeue interval of a Distribution whose regions are all fine.
    pub resync: Duration,
    /// With leader election: whether this replica still leads (checked before writing).
    pub leadership: Option<Leadership>,
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
            tenancy: TargetNamespacePolicy::own_namespace_only(),
            resync: RESYNC,
            leadership: None,
            failures: Mutex::new(HashMap::new()),
            managed: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the default policy (own namespace only) with the admin's.
    pub fn with_tenancy(mut self, tenancy: TargetNamespacePolicy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Only act while `leadership` holds (none: always, no election).
    pub fn with_leadership(mut self, leadership: Option<Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// Whether this replica may write now.
    fn leads(&self) -> Result<(), Error> {
        match &self.leadership {
            Some(l) if !l.holds() => Err(Error::NotLeader),
            _ => Ok(()),
        }
    }

    /// Replaces the default resync interval ([`RESYNC`]).
    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync;
        self
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
    ctx.leads()?;
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
    // Conflicting credential Secrets are reported by rendering, naming the field.
    let Ok(Some((r, _))) = crate::origin::credentials_ref(&dist.spec.origin) else {
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

/// Reads the Secrets the origin's custom headers and CA bundles name (each once). A missing
/// one is left out of the map: rendering reports it, naming the field.
async fn origin_secrets(dist: &Distribution, local: &Client) -> Result<KeySecrets, Error> {
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let api = Api::<Secret>::namespaced(local.clone(), &ns);
    let mut out = KeySecrets::new();
    for name in dist.spec.origin.secret_names() {
        if out.contains_key(name) {
            continue;
        }
        let secret = api
            .get_opt(name)
            .await
            .map_err(kube_err(format!("reading origin Secret {name}")))?;
        if let Some(s) = secret {
            out.insert(name.to_string(), s.data.unwrap_or_default());
        }
    }
    Ok(out)
}

/// The shield token of a Distribution with an origin shield: read from the Secret the
/// operator owns next to the Distribution, generated (once) when the Secret is missing or
/// holds no token. Owned by the Distribution, so it goes with it.
async fn shield_token(dist: &Distribution, local: &Client) -> Result<Option<Vec<u8>>, Error> {
    if dist.spec.origin_shield.is_none() {
        return Ok(None);
    }
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let name = crate::origin::shield_secret_name(dist);
    let api = Api::<Secret>::namespaced(local.clone(), &ns);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading shield Secret {name}")))?;
    let token = existing
        .and_then(|s| s.data?.remove(crate::origin::SHIELD_TOKEN_KEY))
        .filter(|t| !t.0.is_empty());
    if let Some(t) = token {
        return Ok(Some(t.0));
    }
    let token = new_shield_token().map_err(|e| Error::Token(e.to_string()))?;
    let secret = shield_secret(dist, &name, &ns, &token);
    api.patch(
        &name,
        &PatchParams::apply(render::FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(kube_err(format!("writing shield Secret {name}")))?;
    Ok(Some(token.into_bytes()))
}

/// 32 random bytes from the kernel, hex-encoded (a header value must be visible ASCII).
fn new_shield_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The operator-owned shield token Secret. It carries the Distribution's labels but not the
/// managed-by one: it is not a region object, and region pruning must never see it.
fn shield_secret(dist: &Distribution, name: &str, ns: &str, token: &str) -> Secret {
    let labels = BTreeMap::from([
        (LABEL_DISTRIBUTION.to_string(), dist.name_any()),
        (LABEL_DISTRIBUTION_NAMESPACE.to_string(), ns.to_string()),
    ]);
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels),
            owner_references: dist.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            crate::origin::SHIELD_TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// Everything rendering reads from the Distribution's namespace.
struct Inputs {
    creds: Option<BTreeMap<String, ByteString>>,
    keys: KeySecrets,
    origin_secrets: KeySecrets,
    shield_token: Option<Vec<u8>>,
}

/// Renders every region first (pure), so a spec problem applies nothing anywhere.
fn render_all(
    dist: &Distribution,
    ctx: &Context,
    inputs: &Inputs,
) -> Result<Vec<RegionObjects>, RenderError> {
    let base = render::edge_config(&dist.spec, &inputs.keys)?;
    let cfgs = crate::origin::region_configs(dist, &base)?;
    let rctx = RenderContext {
        edge_image: &ctx.edge_image,
        credentials: inputs.creds.as_ref(),
        origin_secrets: &inputs.origin_secrets,
        shield_token: inputs.shield_token.as_deref(),
    };
    dist.spec
        .regions
        .iter()
        .zip(&cfgs)
        .map(|(r, cfg)| render::render_region(dist, r, cfg, &rctx))
        .collect()
}

async fn apply(dist: &Distribution, ctx: &Context) -> Result<Action, Error> {
    let generation = dist.metadata.generation;
    let old = dist.status.as_ref();
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let local = ctx.regions.local();
    let inputs = Inputs {
        creds: credentials(dist, local).await?,
        keys: key_secrets(dist, local).await?,
        origin_secrets: origin_secrets(dist, local).await?,
        shield_token: shield_token(dist, local).await?,
    };

    let rendered = match render_all(dist, ctx, &inputs) {
        Ok(r) => r,
        Err(invalid) => return report_invalid(dist, ctx, &invalid, &now).await,
    };

    let outcomes: Vec<RegionOutcome> = future::join_all(
        dist.spec
            .regions
            .iter()
            .enumerate()
            .zip(&rendered)
            .map(|((i, region), objs)| apply_region(dist, i, region, objs, ctx)),
    )
    .await;

    let mut regions = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        let prev = old.and_then(|s| s.regions.iter().find(|r| r.name == o.name));
        report_outcome(dist, ctx, o, prev).await;
        regions.push(status::region_status(o, prev, generation, &now));
    }

    // Targets the spec no longer has (regions removed, renamed or moved): prune them. One
    // that cannot be pruned stays recorded (on its region, or as a listed failing region).
    let failed = prune_stale(dist, ctx).await;
    let prune_failing = !failed.is_empty();
    for (region, targets) in failed {
        let Some((first, message)) = targets.first().cloned() else {
            continue;
        };
        match regions.iter_mut().find(|r| r.name == region) {
            Some(st) => st.stale_targets = targets.into_iter().map(|(t, _)| t).collect(),
            None => {
                let prev = old.and_then(|s| s.regions.iter().find(|r| r.name == region));
                let outcome = RegionOutcome {
                    name: region.clone(),
                    cluster: first.cluster_label(),
                    namespace: first.namespace.clone(),
                    target: Some(first),
                    result: Err(RegionFailure {
                        reason: REASON_PRUNE_FAILED.into(),
                        message,
                    }),
                };
                let mut st = status::region_status(&outcome, prev, generation, &now);
                st.stale_targets = targets.into_iter().skip(1).map(|(t, _)| t).collect();
                regions.push(st);
            }
        }
    }

    let new = status::distribution_status(regions, None, old, generation, &now);
    write_status(dist, ctx, &new).await?;
    ctx.set_managed(dist, dist.spec.regions.len() as i64);
    reset_backoff(dist, ctx);

    let failing = prune_failing || outcomes.iter().any(|o| o.result.is_err());
    let rolling = outcomes
        .iter()
        .any(|o| matches!(&o.result, Ok(a) if !a.available));
    let reloading = outcomes
        .iter()
        .any(|o| matches!(&o.result, Ok(a) if a.available && a.config.pending()));
    Ok(Action::requeue(if failing {
        REQUEUE_FAILING.min(ctx.resync)
    } else if reloading {
        REQUEUE_RELOADING.min(ctx.resync)
    } else if rolling {
        REQUEUE_ROLLING.min(ctx.resync)
    } else {
        ctx.resync
    }))
}

/// The spec cannot be rendered: nothing is applied anywhere; every region keeps running its
/// last config and says why it was not updated. Regions dropped from the spec stay listed
/// until a valid spec prunes them.
async fn report_invalid(
    dist: &Distribution,
    ctx: &Context,
    invalid: &RenderError,
    now: &Timestamp,
) -> Result<Action, Error> {
    let (old, generation) = (dist.status.as_ref(), dist.metadata.generation);
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
                invalid,
                prev,
                generation,
                now,
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
    let new = status::distribution_status(regions, Some(invalid), old, generation, now);
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
    Ok(Action::requeue(ctx.resync))
}

/// Events and failure metrics of one region's outcome (a repeated failure is not re-announced).
async fn report_outcome(
    dist: &Distribution,
    ctx: &Context,
    o: &RegionOutcome,
    prev: Option<&RegionStatus>,
) {
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
}

/// Whether the Distribution carries the forget annotation.
fn forgets_unreachable(dist: &Distribution) -> bool {
    dist.annotations()
        .get(ANNOTATION_FORGET_UNREACHABLE)
        .is_some_and(|v| v == "true")
}

/// Why a target could not be cleaned.
#[derive(Debug, thiserror::Error)]
enum CleanError {
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl CleanError {
    /// The kubeconfig Secret of the target's cluster no longer exists.
    fn secret_gone(&self) -> bool {
        matches!(self, CleanError::Region(RegionError::SecretNotFound { .. }))
    }
}

/// What to do about a region that cannot be cleaned, for messages.
fn forget_hint() -> String {
    format!(
        "if its cluster is gone for good, annotate the Distribution {ANNOTATION_FORGET_UNREACHABLE}=true to forget it"
    )
}

/// Every stale target: the ones the stored status names, plus, when the status does not know
/// where the regions are, leftovers found by label where the spec puts regions.
async fn stale_targets(dist: &Distribution, ctx: &Context) -> Vec<StaleTarget> {
    let mut stale = target::stale_targets(dist, dist.status.as_ref());
    if !target::status_knows_targets(dist.status.as_ref()) {
        let own = dist.namespace().unwrap_or_else(|| "default".into());
        for place in target::places(dist) {
            if place.is_local() && !ctx.tenancy.allows(&own, &place.namespace) {
                continue;
            }
            let Ok((client, _)) = ctx
                .regions
                .client_for_cluster(dist, place.kubeconfig_secret_ref.as_ref())
                .await
            else {
                continue; // unreachable: the region's own apply reports it
            };
            match prune::discover(&client, dist, &place).await {
                Ok(found) => stale.extend(found),
                Err(e) => {
                    tracing::debug!(error = %e, target = %place, "looking for leftovers failed")
                }
            }
        }
    }
    stale.sort();
    stale.dedup();
    stale
}

/// Prunes every stale target. Returns, per region, the targets that could not be pruned
/// (with the error), unless the forget annotation says to give up on them.
async fn prune_stale(
    dist: &Distribution,
    ctx: &Context,
) -> BTreeMap<String, Vec<(RegionTarget, String)>> {
    let forget = forgets_unreachable(dist);
    let mut failed: BTreeMap<String, Vec<(RegionTarget, String)>> = BTreeMap::new();
    for stale in stale_targets(dist, ctx).await {
        match clean_target(dist, ctx, &stale.target).await {
            Ok(deleted) => {
                if deleted > 0 {
                    ctx.event(
                        dist,
                        EventType::Normal,
                        "Pruned",
                        format!(
                            "region {} no longer at {}: deleted {deleted} object(s)",
                            stale.region, stale.target
                        ),
                    )
                    .await;
                }
            }
            Err(err) if forget => {
                let message = err.to_string();
                ctx.event(
                    dist,
                    EventType::Warning,
                    "Forgotten",
                    format!(
                        "region {} at {}: not pruned ({message}); forgotten because of {ANNOTATION_FORGET_UNREACHABLE}",
                        stale.region, stale.target
                    ),
                )
                .await;
            }
            Err(err) => {
                ctx.metrics.failure(REASON_PRUNE_FAILED);
                let message = format!("pruning {}: {err}; {}", stale.target, forget_hint());
                ctx.event(
                    dist,
                    EventType::Warning,
                    REASON_PRUNE_FAILED,
                    format!("region {}: {message}", stale.region),
                )
                .await;
                failed
                    .entry(stale.region)
                    .or_default()
                    .push((stale.target, message));
            }
        }
    }
    failed
}

/// Deletes the objects at `target`, reaching its cluster (or, when the kubeconfig Secret is
/// gone, through the last client built from it).
async fn clean_target(
    dist: &Distribution,
    ctx: &Context,
    target: &RegionTarget,
) -> Result<usize, CleanError> {
    let client = match ctx
        .regions
        .client_for_cluster(dist, target.kubeconfig_secret_ref.as_ref())
        .await
    {
        Ok((client, _)) => client,
        Err(e @ RegionError::SecretNotFound { .. }) => {
            let known = match &target.kubeconfig_secret_ref {
                Some(sref) => ctx.regions.last_known(dist, sref).await,
                None => None,
            };
            known.ok_or(e)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(prune::delete_target(&client, dist, target, &ctx.metrics).await?)
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
    ctx.leads()?;
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

fn sync_failure(e: SyncError) -> RegionFailure {
    let reason = match &e {
        SyncError::Conflict { .. } => REASON_CONFLICT,
        SyncError::Api { source, .. } => failure_reason(source),
        SyncError::Encode { .. } => "RenderFailed",
    };
    RegionFailure {
        reason: reason.into(),
        message: e.to_string(),
    }
}

/// Brings one region (`spec.regions[index]`) in sync. Never fails the whole reconcile:
/// problems become its status.
async fn apply_region(
    dist: &Distribution,
    index: usize,
    region: &RegionSpec,
    objs: &RegionObjects,
    ctx: &Context,
) -> RegionOutcome {
    let target = RegionTarget::of(dist, region);
    let leads = ctx.leads().map_err(|e| RegionFailure {
        reason: e.reason().into(),
        message: e.to_string(),
    });
    let result = match leads.and_then(|()| allowed(dist, index, &target, ctx)) {
        Ok(()) => apply_region_objects(dist, region, objs, &target, ctx).await,
        Err(refused) => Err(refused),
    };
    RegionOutcome {
        name: region.name.clone(),
        cluster: target.cluster_label(),
        namespace: target.namespace.clone(),
        target: Some(target),
        result,
    }
}

/// The admin's namespace policy for local regions (remote ones are bounded by their
/// kubeconfig's identity).
fn allowed(
    dist: &Distribution,
    index: usize,
    target: &RegionTarget,
    ctx: &Context,
) -> Result<(), RegionFailure> {
    let own = dist.namespace().unwrap_or_else(|| "default".into());
    if !target.is_local() || ctx.tenancy.allows(&own, &target.namespace) {
        return Ok(());
    }
    Err(RegionFailure {
        reason: REASON_NAMESPACE_NOT_ALLOWED.into(),
        message: format!(
            "spec.regions[{index}].namespace: namespace {:?} is not open to Distributions of namespace {own:?}, nothing was written (allowed by the cluster admin: {}; operator flag --allow-target-namespace)",
            target.namespace,
            ctx.tenancy.describe()
        ),
    })
}

async fn apply_region_objects(
    dist: &Distribution,
    region: &RegionSpec,
    objs: &RegionObjects,
    target: &RegionTarget,
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
    let ns = target.namespace.as_str();
    if let (Some(remote), Some(w)) = (&remote, &ctx.remote_watches) {
        w.ensure(remote, ns);
    }
    let metrics = &ctx.metrics;
    let r = region.name.as_str();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    // Every live object first: if any is not ours, nothing at all is written in the region.
    let live_secret = match &objs.secret {
        Some(s) => fetch(&secrets, s).await.map_err(sync_failure)?,
        None => None,
    };
    let live_sa = match &objs.service_account {
        Some(s) => fetch(&accounts, s).await.map_err(sync_failure)?,
        None => None,
    };
    let live_hpa = match &objs.autoscaler {
        Some(h) => fetch(&autoscalers, h).await.map_err(sync_failure)?,
        None => None,
    };
    let live_cm = fetch(&config_maps, &objs.config_map)
        .await
        .map_err(sync_failure)?;
    let live_svc = fetch(&services, &objs.service)
        .await
        .map_err(sync_failure)?;
    let live_pdb = fetch(&pdbs, &objs.pdb).await.map_err(sync_failure)?;
    let live_dep = fetch(&deployments, &objs.deployment)
        .await
        .map_err(sync_failure)?;
    let conflicts: Vec<String> = [
        conflict(live_secret.as_ref(), dist, r),
        conflict(live_cm.as_ref(), dist, r),
        conflict(live_svc.as_ref(), dist, r),
        conflict(live_pdb.as_ref(), dist, r),
        conflict(live_dep.as_ref(), dist, r),
        conflict(live_sa.as_ref(), dist, r),
        conflict(live_hpa.as_ref(), dist, r),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !conflicts.is_empty() {
        return Err(sync_failure(SyncError::Conflict { objects: conflicts }));
    }

    let mut written = Vec::new();
    match &objs.secret {
        Some(s) => {
            let s = sync(&secrets, s, live_secret, dist, r, metrics)
                .await
                .map_err(sync_failure)?;
            if s.written {
                written.push("Secret");
            }
        }
        None => {
            // Credentials were removed from the spec: drop the mirror.
            if delete_owned(&secrets, &target.name, dist, metrics)
                .await
                .map_err(sync_failure)?
            {
                written.push("Secret(deleted)");
            }
        }
    };
    if sync(&config_maps, &objs.config_map, live_cm, dist, r, metrics)
        .await
        .map_err(sync_failure)?
        .written
    {
        written.push("ConfigMap");
    }
    if sync(&services, &objs.service, live_svc, dist, r, metrics)
        .await
        .map_err(sync_failure)?
        .written
    {
        written.push("Service");
    }
    if sync(&pdbs, &objs.pdb, live_pdb, dist, r, metrics)
        .await
        .map_err(sync_failure)?
        .written
    {
        written.push("PodDisruptionBudget");
    }
    match &objs.service_account {
        Some(sa) => {
            if sync(&accounts, sa, live_sa, dist, r, metrics)
                .await
                .map_err(sync_failure)?
                .written
            {
                written.push("ServiceAccount");
            }
        }
        None => {
            // An existing ServiceAccount named in the spec, or none: drop the one created.
            if delete_owned_if_permitted(&accounts, &target.name, dist, metrics)
                .await
                .map_err(sync_failure)?
            {
                written.push("ServiceAccount(deleted)");
            }
        }
    }
    // Without autoscaling the Deployment's count is applied again: the autoscaler goes
    // first so it cannot scale the Deployment after that.
    if objs.autoscaler.is_none()
        && delete_owned_if_permitted(&autoscalers, &target.name, dist, metrics)
            .await
            .map_err(sync_failure)?
    {
        written.push("HorizontalPodAutoscaler(deleted)");
    }
    if let (Some(auto), Some(live)) = (&region.autoscaling, &live_dep) {
        if hold_replicas(&deployments, live, auto, metrics).await? {
            written.push("Deployment(replicas)");
        }
    }
    let mut dep: Synced<Deployment> =
        sync(&deployments, &objs.deployment, live_dep, dist, r, metrics)
            .await
            .map_err(sync_failure)?;
    if dep.written {
        written.push("Deployment");
    }
    if let Some(auto) = &region.autoscaling {
        // Just created (no count yet): start at the autoscaler's minimum.
        if hold_replicas(&deployments, &dep.object, auto, metrics).await? {
            written.push("Deployment(replicas)");
            if let Some(now) = deployments.get_opt(&target.name).await.map_err(|source| {
                sync_failure(SyncError::Api {
                    kind: "Deployment",
                    source,
                })
            })? {
                dep.object = now;
            }
        }
    }
    if let Some(hpa) = &objs.autoscaler {
        if sync(&autoscalers, hpa, live_hpa, dist, r, metrics)
            .await
            .map_err(sync_failure)?
            .written
        {
            written.push("HorizontalPodAutoscaler");
        }
    }

    // Under an autoscaler the region wants what the autoscaler last set.
    let replicas = match &region.autoscaling {
        Some(a) => dep.object.spec.replicas.unwrap_or(a.min_replicas),
        None => region.replicas,
    };
    let st = dep.object.status.unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let current =
        st.observed_generation.unwrap_or(0) >= dep.object.metadata.generation.unwrap_or(0);
    let available = replicas == 0
        || (current
            && st.updated_replicas.unwrap_or(0) >= replicas
            && st.available_replicas.unwrap_or(0) >= replicas
            && ready >= replicas);
    let prev = dist
        .status
        .as_ref()
        .and_then(|s| s.regions.iter().find(|p| p.name == region.name));
    let config = pods_config(
        &client,
        dist,
        region,
        objs,
        ns,
        prev,
        written.contains(&"ConfigMap") || dep.written || !available,
        st.replicas.unwrap_or(0),
    )
    .await;
    Ok(RegionApplied {
        replicas,
        ready_replicas: ready,
        available,
        config_hash: objs.config_hash.clone(),
        config,
        endpoint: format!("http://{}.{ns}.svc:{}", target.name, render::SERVICE_PORT),
        written,
    })
}

/// With autoscaling on, makes [`placement::REPLICAS_MANAGER`] hold the Deployment's replica
/// count when only the operator's main field manager (or nobody) does, so the apply without
/// a count that follows keeps it. Returns whether it wrote.
async fn hold_replicas(
    api: &Api<Deployment>,
    live: &Deployment,
    auto: &crate::crd::AutoscalingSpec,
    metrics: &Metrics,
) -> Result<bool, RegionFailure> {
    let Some(replicas) = placement::replicas_to_hold(live, auto) else {
        return Ok(false);
    };
    let name = live.name_any();
    let ns = live.namespace().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(placement::REPLICAS_MANAGER).force(),
        &Patch::Apply(&placement::replicas_patch(&name, &ns, replicas)),
    )
    .await
    .map_err(|source| {
        sync_failure(SyncError::Api {
            kind: "Deployment",
            source,
        })
    })?;
    metrics.write("Deployment");
    Ok(true)
}

/// Which config the region's pods run. Asked of the pods unless nothing could have changed
/// since status recorded every pod on this config (`moving`: something was written or the
/// Deployment is rolling), so a settled region costs no requests.
#[allow(clippy::too_many_arguments)]
async fn pods_config(
    client: &Client,
    dist: &Distribution,
    region: &RegionSpec,
    objs: &RegionObjects,
    ns: &str,
    prev: Option<&RegionStatus>,
    moving: bool,
    deployment_pods: i32,
) -> PodsConfig {
    let settled = prev.filter(|p| {
        !moving
            && p.config_hash.as_deref() == Some(objs.config_hash.as_str())
            && p.pods == Some(deployment_pods)
            && p.updated_pods == p.pods
    });
    if let Some(p) = settled {
        return PodsConfig::Counted(rollout::PodConfigs {
            pods: p.pods.unwrap_or(0),
            updated: p.updated_pods.unwrap_or(0),
            rejected: None,
        });
    }
    if deployment_pods == 0 {
        return PodsConfig::Counted(rollout::PodConfigs::default());
    }
    let selector = render::pod_selector(dist, &region.name);
    match rollout::observe(client, ns, &selector, &objs.config_hash).await {
        Ok(c) => PodsConfig::Counted(c),
        Err(e) => {
            tracing::warn!(distribution = %dist.name_any(), region = %region.name, error = %e, "cannot read the edge pods' config");
            PodsConfig::Unknown(format!(
                "pods not observable ({e}); the operator needs list on pods and get on pods/proxy"
            ))
        }
    }
}

/// Whether the namespace `ns` of the operator's own cluster is being deleted (false when
/// that cannot be read, e.g. without RBAC on namespaces).
async fn namespace_terminating(ctx: &Context, ns: &str) -> bool {
    let api: Api<Namespace> = Api::all(ctx.regions.local().clone());
    match api.get_opt(ns).await {
        Ok(Some(n)) => n.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        Err(e) => {
            tracing::debug!(error = %e, namespace = ns, "cannot read the namespace");
            false
        }
    }
}

/// Finalizer cleanup: delete the objects of every region (spec, status, and leftovers found by
/// label), local ones too (owner references would do it, but only where a garbage collector
/// runs and only in the Distribution's own namespace).
///
/// A region that cannot be cleaned blocks the deletion (event `CleanupFailed`) unless the
/// Distribution carries the forget annotation, or its kubeconfig Secret is gone because the
/// Distribution's whole namespace is being deleted (nothing could ever bring it back there).
async fn cleanup(dist: &Distribution, ctx: &Context) -> Result<Action, Error> {
    let mut targets: Vec<StaleTarget> = dist
        .spec
        .regions
        .iter()
        .map(|r| StaleTarget {
            region: r.name.clone(),
            target: RegionTarget::of(dist, r),
        })
        .collect();
    if let Some(st) = &dist.status {
        for r in &st.regions {
            for t in r.target.iter().chain(&r.stale_targets) {
                targets.push(StaleTarget {
                    region: r.name.clone(),
                    target: t.clone(),
                });
            }
        }
    }
    // Leftovers the status does not name (regions renamed while status was lost).
    let mut as_stale = dist.clone();
    as_stale.spec.regions.clear();
    if !target::status_knows_targets(dist.status.as_ref()) {
        for place in target::places(dist) {
            if let Ok((client, _)) = ctx
                .regions
                .client_for_cluster(dist, place.kubeconfig_secret_ref.as_ref())
                .await
            {
                if let Ok(found) = prune::discover(&client, &as_stale, &place).await {
                    targets.extend(found);
                }
            }
        }
    }
    targets.sort();
    targets.dedup();
    let forget = forgets_unreachable(dist);
    let ns = dist.namespace().unwrap_or_else(|| "default".into());
    let results =
        future::join_all(targets.iter().map(|t| clean_target(dist, ctx, &t.target))).await;
    let mut terminating = None;
    for (t, res) in targets.iter().zip(results) {
        let err = match res {
            Ok(n) => {
                tracing::info!(distribution = %dist.name_any(), region = %t.region, target = %t.target, deleted = n, "region cleaned up");
                continue;
            }
            Err(err) => err,
        };
        let message = err.to_string();
        if forget {
            ctx.event(
                dist,
                EventType::Warning,
                "Forgotten",
                format!(
                    "region {} at {}: not cleaned up ({message}); forgotten because of {ANNOTATION_FORGET_UNREACHABLE}",
                    t.region, t.target
                ),
            )
            .await;
            continue;
        }
        if err.secret_gone() {
            if terminating.is_none() {
                terminating = Some(namespace_terminating(ctx, &ns).await);
            }
            if terminating == Some(true) {
                ctx.event(
                    dist,
                    EventType::Warning,
                    "Forgotten",
                    format!(
                        "region {} at {}: not cleaned up, its kubeconfig Secret was deleted with namespace {ns}; remove its objects by label {} in that cluster",
                        t.region, t.target, prune::selector(dist)
                    ),
                )
                .await;
                continue;
            }
        }
        let message = format!("{message}; {}", forget_hint());
        ctx.event(
            dist,
            EventType::Warning,
            "CleanupFailed",
            format!("region {} at {}: {message}", t.region, t.target),
        )
        .await;
        return Err(Error::Cleanup {
            region: t.region.clone(),
            message,
        });
    }
    ctx.event(
        dist,
        EventType::Normal,
        "CleanedUp",
        format!("removed edge objects from {} target(s)", targets.len()),
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
        .filter(|d| {
            // The shield token Secret too: deleting it must regenerate (and roll) at once.
            d.spec.referenced_secrets().contains(name)
                || (d.spec.origin_shield.is_some() && crate::origin::shield_secret_name(d) == name)
        })
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
