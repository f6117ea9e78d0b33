//! Status computation: per-region conditions and the top-level `Ready`/`Progressing`/`Degraded`,
//! with transition times kept stable so an unchanged world produces an identical status (and so
//! no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{DistributionStatus, RegionStatus, RegionTarget};
use crate::render::RenderError;
use crate::rollout::PodConfigs;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Region: every object matches the rendered state.
pub const APPLIED: &str = "Applied";
/// Region: the Deployment has all replicas updated and ready.
pub const AVAILABLE: &str = "Available";

/// What reconciling one region produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOutcome {
    pub name: String,
    pub cluster: String,
    pub namespace: String,
    /// Where the region's objects are (recorded in status for later prunes).
    pub target: Option<RegionTarget>,
    pub result: Result<RegionApplied, RegionFailure>,
}

/// Region reason: pods still run an older config (reload pending).
pub const REASON_WAITING_FOR_CONFIG: &str = "WaitingForConfig";
/// Region reason: an edge refused the current config on reload.
pub const REASON_CONFIG_REJECTED: &str = "ConfigRejected";

/// Which config a region's pods run.
#[derive(Debug, Clone, PartialEq)]
pub enum PodsConfig {
    Counted(PodConfigs),
    /// The pods could not be asked (message says why); availability is the Deployment's alone.
    Unknown(String),
}

impl PodsConfig {
    /// Pods are known to lag behind the config.
    pub fn pending(&self) -> bool {
        matches!(self, PodsConfig::Counted(c) if !c.converged())
    }
}

/// A region whose objects are in sync.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionApplied {
    pub replicas: i32,
    pub ready_replicas: i32,
    /// Deployment observed the current generation, all replicas updated and available.
    pub available: bool,
    pub config_hash: String,
    /// How many pods run `config_hash`.
    pub config: PodsConfig,
    pub endpoint: String,
    /// Kinds that were written this reconcile (empty when nothing drifted).
    pub written: Vec<&'static str>,
}

/// Why a region could not be brought in sync. `reason` is a status/event reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionFailure {
    pub reason: String,
    pub message: String,
}

/// Builds a condition list, keeping `lastTransitionTime` from the previous list when a
/// condition's status did not change.
struct Conditions<'a> {
    old: &'a [Condition],
    generation: Option<i64>,
    now: &'a Timestamp,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    fn new(old: &'a [Condition], generation: Option<i64>, now: &'a Timestamp) -> Self {
        Self {
            old,
            generation,
            now,
            out: Vec::with_capacity(3),
        }
    }

    fn set(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let since = self
            .old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(*self.now));
        self.out.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: self.generation,
            last_transition_time: since,
        });
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// One region's status from its outcome.
pub fn region_status(
    outcome: &RegionOutcome,
    old: Option<&RegionStatus>,
    generation: Option<i64>,
    now: &Timestamp,
) -> RegionStatus {
    let old_conds = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let mut conditions = Conditions::new(old_conds, generation, now);
    let mut st = RegionStatus {
        name: outcome.name.clone(),
        cluster: outcome.cluster.clone(),
        namespace: outcome.namespace.clone(),
        target: outcome.target.clone(),
        ..Default::default()
    };
    match &outcome.result {
        Ok(a) => {
            st.replicas = a.replicas;
            st.ready_replicas = a.ready_replicas;
            st.endpoint = Some(a.endpoint.clone());
            st.config_hash = Some(a.config_hash.clone());
            conditions.set(
                APPLIED,
                "True",
                "Applied",
                "all objects match the Distribution".into(),
            );
            let replicas = format!("{}/{} replicas ready", a.ready_replicas, a.replicas);
            let (available, reason, msg) = match &a.config {
                _ if !a.available => (false, "WaitingForReplicas", replicas),
                PodsConfig::Counted(c) => {
                    st.pods = Some(c.pods);
                    st.updated_pods = Some(c.updated);
                    let on = format!(
                        "{replicas}, {}/{} pods on config {}",
                        c.updated, c.pods, a.config_hash
                    );
                    match &c.rejected {
                        Some(_) => (false, REASON_CONFIG_REJECTED, on),
                        None if c.converged() => (true, "MinimumReplicasAvailable", on),
                        None => (false, REASON_WAITING_FOR_CONFIG, on),
                    }
                }
                PodsConfig::Unknown(why) => (
                    true,
                    "MinimumReplicasAvailable",
                    format!("{replicas}; {why}"),
                ),
            };
            conditions.set(AVAILABLE, bool_str(available), reason, msg);
            match &a.config {
                PodsConfig::Counted(PodConfigs {
                    rejected: Some((pod, error)),
                    ..
                }) => conditions.set(
                    DEGRADED,
                    "True",
                    REASON_CONFIG_REJECTED,
                    format!(
                        "pod {pod} refused config {}: {error}; it keeps serving its previous config",
                        a.config_hash
                    ),
                ),
                _ => conditions.set(DEGRADED, "False", "AsExpected", String::new()),
            }
        }
        Err(f) => {
            // Keep the last known numbers: the edge may well still be serving.
            if let Some(o) = old {
                st.replicas = o.replicas;
                st.ready_replicas = o.ready_replicas;
                st.endpoint = o.endpoint.clone();
                st.config_hash = o.config_hash.clone();
                st.pods = o.pods;
                st.updated_pods = o.updated_pods;
            }
            conditions.set(APPLIED, "False", &f.reason, f.message.clone());
            conditions.set(
                AVAILABLE,
                "Unknown",
                &f.reason,
                "region cannot be observed".into(),
            );
            conditions.set(DEGRADED, "True", &f.reason, f.message.clone());
        }
    }
    st.conditions = conditions.out;
    st
}

/// The status of a region that was left alone because the Distribution cannot be rendered
/// (`err`): it keeps running what it ran, so its numbers, hash and availability are kept, and
/// it is not `Applied` for the reason `err` names.
pub fn region_blocked(
    name: &str,
    cluster: String,
    namespace: String,
    err: &RenderError,
    old: Option<&RegionStatus>,
    generation: Option<i64>,
    now: &Timestamp,
) -> RegionStatus {
    let old_conds = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let mut conditions = Conditions::new(old_conds, generation, now);
    let msg = format!("{err} (nothing was changed in this region)");
    conditions.set(APPLIED, "False", err.reason, msg.clone());
    match old_conds.iter().find(|c| c.type_ == AVAILABLE) {
        Some(c) => conditions.out.push(c.clone()),
        None => conditions.set(
            AVAILABLE,
            "Unknown",
            err.reason,
            "nothing applied yet".into(),
        ),
    }
    conditions.set(DEGRADED, "True", err.reason, msg);
    RegionStatus {
        name: name.into(),
        cluster,
        namespace,
        replicas: old.map_or(0, |o| o.replicas),
        ready_replicas: old.map_or(0, |o| o.ready_replicas),
        endpoint: old.and_then(|o| o.endpoint.clone()),
        config_hash: old.and_then(|o| o.config_hash.clone()),
        pods: old.and_then(|o| o.pods),
        updated_pods: old.and_then(|o| o.updated_pods),
        conditions: conditions.out,
        // Nothing moved: where the objects are is where they were.
        target: old.and_then(|o| o.target.clone()),
        stale_targets: old.map(|o| o.stale_targets.clone()).unwrap_or_default(),
    }
}

fn cond_is(conds: &[Condition], type_: &str, status: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == status)
}

fn reason_of(conds: &[Condition], type_: &str) -> String {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The whole status. `invalid` is a spec problem found at render time (nothing was applied).
pub fn distribution_status(
    regions: Vec<RegionStatus>,
    invalid: Option<&RenderError>,
    old: Option<&DistributionStatus>,
    generation: Option<i64>,
    now: &Timestamp,
) -> DistributionStatus {
    let old_conds = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let mut conditions = Conditions::new(old_conds, generation, now);
    let total = regions.len();
    let ready: Vec<&RegionStatus> = regions
        .iter()
        .filter(|r| {
            cond_is(&r.conditions, AVAILABLE, "True") && cond_is(&r.conditions, APPLIED, "True")
        })
        .collect();
    let failing: Vec<&RegionStatus> = regions
        .iter()
        .filter(|r| cond_is(&r.conditions, DEGRADED, "True"))
        .collect();
    let rolling: Vec<&RegionStatus> = regions
        .iter()
        .filter(|r| {
            cond_is(&r.conditions, APPLIED, "True") && !cond_is(&r.conditions, AVAILABLE, "True")
        })
        .collect();

    if let Some(err) = invalid {
        let msg = err.to_string();
        conditions.set(READY, "False", err.reason, msg.clone());
        conditions.set(PROGRESSING, "False", err.reason, msg.clone());
        conditions.set(DEGRADED, "True", err.reason, msg);
    } else {
        let is_ready = total > 0 && ready.len() == total;
        let not_ready: Vec<String> = regions
            .iter()
            .filter(|r| !ready.iter().any(|x| x.name == r.name))
            .map(|r| {
                let c = if cond_is(&r.conditions, DEGRADED, "True") {
                    DEGRADED
                } else {
                    AVAILABLE
                };
                let cond = r.conditions.iter().find(|x| x.type_ == c);
                format!(
                    "region {}: {} ({})",
                    r.name,
                    cond.map(|x| x.reason.as_str()).unwrap_or("Unknown"),
                    cond.map(|x| x.message.as_str()).unwrap_or("")
                )
            })
            .collect();
        if is_ready {
            conditions.set(
                READY,
                "True",
                "AllRegionsReady",
                format!("{total} region(s) serving"),
            );
        } else {
            let reason = if !failing.is_empty() {
                "RegionsFailing"
            } else {
                "RegionsNotReady"
            };
            conditions.set(READY, "False", reason, not_ready.join("; "));
        }
        if rolling.is_empty() {
            conditions.set(PROGRESSING, "False", "Complete", String::new());
        } else {
            let names: Vec<&str> = rolling.iter().map(|r| r.name.as_str()).collect();
            conditions.set(
                PROGRESSING,
                "True",
                "RollingOut",
                format!(
                    "waiting for replicas or config reloads in region(s) {}",
                    names.join(", ")
                ),
            );
        }
        match failing.as_slice() {
            [] => conditions.set(DEGRADED, "False", "AsExpected", String::new()),
            [one] => {
                let msg = one
                    .conditions
                    .iter()
                    .find(|c| c.type_ == DEGRADED)
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                conditions.set(
                    DEGRADED,
                    "True",
                    &reason_of(&one.conditions, DEGRADED),
                    format!("region {}: {msg}", one.name),
                )
            }
            many => {
                let msg: Vec<String> = many
                    .iter()
                    .map(|r| format!("region {}: {}", r.name, reason_of(&r.conditions, DEGRADED)))
                    .collect();
                conditions.set(DEGRADED, "True", "RegionsFailing", msg.join("; "))
            }
        }
    }
    DistributionStatus {
        observed_generation: generation,
        conditions: conditions.out,
        ready_regions: Some(format!("{}/{}", ready.len(), total)),
        regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str, available: bool) -> RegionOutcome {
        RegionOutcome {
            name: name.into(),
            cluster: "local".into(),
            namespace: "ns".into(),
            target: None,
            result: Ok(RegionApplied {
                replicas: 2,
                ready_replicas: if available { 2 } else { 0 },
                available,
                config_hash: "abc".into(),
                config: PodsConfig::Counted(PodConfigs {
                    pods: 2,
                    updated: 2,
                    rejected: None,
                }),
                endpoint: "http://x.ns.svc:80".into(),
                written: vec![],
            }),
        }
    }

    fn with_pods(mut o: RegionOutcome, config: PodsConfig) -> RegionOutcome {
        if let Ok(a) = &mut o.result {
            a.config = config;
        }
        o
    }

    fn failed(name: &str) -> RegionOutcome {
        RegionOutcome {
            name: name.into(),
            cluster: "kubeconfig:k".into(),
            namespace: "ns".into(),
            target: None,
            result: Err(RegionFailure {
                reason: "Unreachable".into(),
                message: "connection refused".into(),
            }),
        }
    }

    fn status_of(
        outcomes: &[RegionOutcome],
        old: Option<&DistributionStatus>,
        now: &Timestamp,
    ) -> DistributionStatus {
        let regions = outcomes
            .iter()
            .map(|o| {
                let prev = old.and_then(|s| s.regions.iter().find(|r| r.name == o.name));
                region_status(o, prev, Some(1), now)
            })
            .collect();
        distribution_status(regions, None, old, Some(1), now)
    }

    fn cond<'a>(s: &'a DistributionStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn one_failing_region_degrades_only_itself() {
        let now = Timestamp::now();
        let s = status_of(&[ok("a", true), failed("b")], None, &now);
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, DEGRADED).status, "True");
        assert_eq!(cond(&s, DEGRADED).reason, "Unreachable");
        assert!(
            cond(&s, DEGRADED).message.contains("region b"),
            "{:?}",
            cond(&s, DEGRADED)
        );
        assert!(cond_is(&s.regions[0].conditions, DEGRADED, "False"));
        assert!(cond_is(&s.regions[1].conditions, DEGRADED, "True"));
        assert_eq!(s.ready_regions.as_deref(), Some("1/2"));
    }

    #[test]
    fn all_available_is_ready() {
        let now = Timestamp::now();
        let s = status_of(&[ok("a", true), ok("b", true)], None, &now);
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, PROGRESSING).status, "False");
        assert_eq!(cond(&s, DEGRADED).status, "False");
    }

    #[test]
    fn waiting_for_replicas_is_progressing() {
        let now = Timestamp::now();
        let s = status_of(&[ok("a", false)], None, &now);
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "RegionsNotReady");
        assert_eq!(cond(&s, PROGRESSING).status, "True");
    }

    #[test]
    fn pods_on_an_older_config_keep_the_region_progressing_and_a_refusal_degrades_it() {
        let now = Timestamp::now();
        let counted = |updated, rejected| {
            PodsConfig::Counted(PodConfigs {
                pods: 2,
                updated,
                rejected,
            })
        };
        let s = status_of(&[with_pods(ok("a", true), counted(1, None))], None, &now);
        let r = &s.regions[0];
        assert_eq!((r.pods, r.updated_pods), (Some(2), Some(1)));
        let avail = r
            .conditions
            .iter()
            .find(|c| c.type_ == AVAILABLE)
            .expect("a");
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_str()),
            ("False", REASON_WAITING_FOR_CONFIG)
        );
        assert!(
            avail.message.contains("1/2 pods on config abc"),
            "{avail:?}"
        );
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, PROGRESSING).status, "True");
        assert_eq!(cond(&s, DEGRADED).status, "False");

        let refused = counted(
            1,
            Some(("site-a-1".into(), "origin.maxAttempts: bad".into())),
        );
        let s = status_of(&[with_pods(ok("a", true), refused)], None, &now);
        assert_eq!(cond(&s, DEGRADED).status, "True");
        assert_eq!(cond(&s, DEGRADED).reason, REASON_CONFIG_REJECTED);
        let d = s.regions[0]
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .expect("d");
        assert!(
            d.message.contains("site-a-1") && d.message.contains("origin.maxAttempts: bad"),
            "{d:?}"
        );

        // Pods that cannot be asked leave availability to the Deployment and say why.
        let unknown = PodsConfig::Unknown("pods not observable (403)".into());
        let s = status_of(&[with_pods(ok("a", true), unknown)], None, &now);
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!((s.regions[0].pods, s.regions[0].updated_pods), (None, None));
    }

    #[test]
    fn a_blocked_region_keeps_what_it_runs_and_names_the_field() {
        let now = Timestamp::now();
        let running = status_of(&[ok("a", true)], None, &now);
        let err = RenderError {
            field: "spec.trustedKeyGroups[0].secretRef".into(),
            message: "Secret \"keys\" was not found".into(),
            reason: "SecretNotFound",
        };
        let later = now + k8s_openapi::jiff::SignedDuration::from_secs(60);
        let r = region_blocked(
            "a",
            "local".into(),
            "ns".into(),
            &err,
            Some(&running.regions[0]),
            Some(2),
            &later,
        );
        assert_eq!(r.config_hash.as_deref(), Some("abc"));
        assert_eq!(r.ready_replicas, 2);
        let c = |t: &str| r.conditions.iter().find(|c| c.type_ == t).expect(t).clone();
        assert_eq!(
            (c(APPLIED).status.as_str(), c(APPLIED).reason.as_str()),
            ("False", "SecretNotFound")
        );
        assert!(c(APPLIED)
            .message
            .starts_with("spec.trustedKeyGroups[0].secretRef: "));
        assert_eq!(c(AVAILABLE).status, "True", "still serving the last config");
        assert_eq!(c(DEGRADED).status, "True");
        let s = distribution_status(vec![r], Some(&err), Some(&running), Some(2), &later);
        assert_eq!(cond(&s, DEGRADED).reason, "SecretNotFound");
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(s.ready_regions.as_deref(), Some("0/1"));
    }

    #[test]
    fn unchanged_world_gives_identical_status() {
        let t1 = Timestamp::now();
        let s1 = status_of(&[ok("a", true), failed("b")], None, &t1);
        let t2 = t1 + k8s_openapi::jiff::SignedDuration::from_secs(60);
        let s2 = status_of(&[ok("a", true), failed("b")], Some(&s1), &t2);
        assert_eq!(s1, s2, "transition times must be kept");
        let s3 = status_of(&[ok("a", true), ok("b", true)], Some(&s2), &t2);
        assert_ne!(s2, s3);
        assert_eq!(cond(&s3, READY).last_transition_time, Time(t2));
    }
}
