//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at the same time, with client-go's semantics:
//!
//! - A candidate judges another holder's lease expired from its own monotonic clock: the
//!   lease must stay unchanged for `leaseDurationSeconds` since this process *observed* its
//!   last change. The `renewTime` written by another machine is never compared with the local
//!   wall clock, so clock skew between nodes cannot shorten a lease.
//! - The holder renews every `retry`; if no renewal succeeded within `renew_deadline` (shorter
//!   than the lease), it stops leading ([`Leadership::holds`] turns false at that instant,
//!   measured on the monotonic clock, which also runs while the process is frozen). Another
//!   candidate can acquire only `duration` after the last renewal it saw, so the old leader
//!   has stopped `duration - renew_deadline` before.
//!
//! Updates carry the Lease's resourceVersion, so concurrent candidates conflict instead of
//! both winning.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

pub const LEASE_NAME: &str = "kubefront-operator";

/// Timing of the election (client-go's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid without renewal, as written into the Lease.
    pub duration: Duration,
    /// The holder stops leading when no renewal succeeded for this long; `< duration`.
    pub renew_deadline: Duration,
    /// Between acquire attempts and between renewals.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("renew deadline {renew:?} must be shorter than the lease duration {lease:?}")]
    DeadlineNotShorter { renew: Duration, lease: Duration },
    #[error("retry period {retry:?} must be shorter than the renew deadline {renew:?}")]
    RetryNotShorter { retry: Duration, renew: Duration },
}

impl Timing {
    pub fn validate(&self) -> Result<(), TimingError> {
        if self.renew_deadline >= self.duration {
            return Err(TimingError::DeadlineNotShorter {
                renew: self.renew_deadline,
                lease: self.duration,
            });
        }
        if self.retry >= self.renew_deadline {
            return Err(TimingError::RetryNotShorter {
                retry: self.retry,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// The parts of a Lease whose change proves its holder alive.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: String,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration_secs: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            transitions: spec.lease_transitions,
            duration_secs: spec.lease_duration_seconds,
        }
    }
}

/// The last Lease record seen and when (local monotonic clock).
struct Observed {
    record: Record,
    at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    timing: Timing,
    observed: Mutex<Option<Observed>>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        identity: impl Into<String>,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity: identity.into(),
            timing,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Notes `record` as seen now unless it is the one seen before; returns when its last
    /// change was observed.
    fn observe(&self, record: &Record, now: Instant) -> Instant {
        let mut o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match o.as_ref() {
            Some(seen) if seen.record == *record => seen.at,
            _ => {
                *o = Some(Observed {
                    record: record.clone(),
                    at: now,
                });
                now
            }
        }
    }

    /// One acquire-or-renew attempt. `Ok(true)` when this process holds the lease afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let secs = self.timing.duration.as_secs().max(1) as i32;
        let wall = MicroTime(Timestamp::now());
        match self.api.get_opt(LEASE_NAME).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(wall.clone()),
                        renew_time: Some(wall),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observe_written(&created);
                        Ok(true)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let now = Instant::now();
                let spec = lease.spec.get_or_insert_with(Default::default);
                let record = Record::of(spec);
                let changed_at = self.observe(&record, now);
                let mine = record.holder == self.identity;
                let valid_for =
                    Duration::from_secs(record.duration_secs.unwrap_or(secs).max(0) as u64);
                let expired = now.saturating_duration_since(changed_at) > valid_for;
                if !mine && !record.holder.is_empty() && !expired {
                    return Ok(false);
                }
                if !mine {
                    spec.acquire_time = Some(wall.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.holder_identity = Some(self.identity.clone());
                }
                spec.renew_time = Some(wall);
                spec.lease_duration_seconds = Some(secs);
                // replace carries metadata.resourceVersion: a concurrent update makes this 409.
                match self
                    .api
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        self.observe_written(&written);
                        Ok(true)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn observe_written(&self, lease: &Lease) {
        if let Some(spec) = &lease.spec {
            self.observe(&Record::of(spec), Instant::now());
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await {
            if let Some(spec) = lease.spec.as_mut() {
                if spec.holder_identity.as_deref() == Some(&self.identity) {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                    let _ = self
                        .api
                        .replace(LEASE_NAME, &PostParams::default(), &lease)
                        .await;
                }
            }
        }
    }

    /// Renews until leadership is lost (a renewal refused because another holds the lease, or
    /// none succeeded within the renew deadline) or `stop` resolves. Each attempt is bounded
    /// by the time left before the deadline, so a hung request cannot stretch it.
    pub async fn keep_renewing(
        &self,
        leadership: &Leadership,
        stop: impl std::future::Future<Output = ()>,
    ) -> Lost {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Lost::Stopped,
                _ = tokio::time::sleep(self.timing.retry) => {}
            }
            let Some(left) = leadership.time_left() else {
                return Lost::DeadlinePassed;
            };
            let attempt = Instant::now();
            match tokio::time::timeout(left, self.try_acquire()).await {
                // The renewal counts from when it was sent, never later than the Lease says.
                Ok(Ok(true)) => leadership.renewed_at(attempt),
                Ok(Ok(false)) => return Lost::TakenOver,
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renew failed"),
                Err(_) => tracing::warn!("lease renew timed out"),
            }
        }
    }
}

/// Why [`LeaderElector::keep_renewing`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    Stopped,
    TakenOver,
    DeadlinePassed,
}

/// Whether this process may act as the leader right now: its last successful renewal is
/// younger than the renew deadline (monotonic clock). Checked before every reconcile and
/// write, so a process that was frozen past its deadline writes nothing when it wakes.
#[derive(Clone, Debug)]
pub struct Leadership {
    last_renewal: Arc<Mutex<Instant>>,
    deadline: Duration,
}

impl Leadership {
    /// Leadership just acquired (or renewed) now.
    pub fn acquired(deadline: Duration) -> Self {
        Self::acquired_at(Instant::now(), deadline)
    }

    /// Leadership acquired by an attempt started at `at`.
    pub fn acquired_at(at: Instant, deadline: Duration) -> Self {
        Self {
            last_renewal: Arc::new(Mutex::new(at)),
            deadline,
        }
    }

    fn last(&self) -> Instant {
        *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn renewed(&self) {
        self.renewed_at(Instant::now());
    }

    pub fn renewed_at(&self, at: Instant) {
        *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Time left before the renew deadline; `None` once it passed.
    pub fn time_left(&self) -> Option<Duration> {
        self.time_left_at(Instant::now())
    }

    fn time_left_at(&self, now: Instant) -> Option<Duration> {
        let end = self.last() + self.deadline;
        end.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub fn holds(&self) -> bool {
        self.time_left().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_renew_within_the_lease() {
        let t = Timing::default();
        t.validate().expect("valid");
        assert!(Timing {
            renew_deadline: t.duration,
            ..t
        }
        .validate()
        .is_err());
        assert!(Timing {
            retry: t.renew_deadline,
            ..t
        }
        .validate()
        .is_err());
    }

    #[test]
    fn leadership_ends_at_the_renew_deadline_on_the_monotonic_clock() {
        let l = Leadership::acquired(Duration::from_secs(10));
        assert!(l.holds());
        let t0 = l.last();
        assert!(l.time_left_at(t0 + Duration::from_secs(9)).is_some());
        assert_eq!(l.time_left_at(t0 + Duration::from_secs(10)), None);
        assert_eq!(l.time_left_at(t0 + Duration::from_secs(11)), None);
        l.renewed();
        assert!(l.last() >= t0, "a renewal restarts the deadline");
    }

    #[tokio::test]
    async fn expiry_counts_from_when_a_change_was_observed_not_from_renew_time() {
        let client = {
            let (svc, _h) = tower_test::mock::pair::<
                http::Request<kube::client::Body>,
                http::Response<kube::client::Body>,
            >();
            Client::new(svc, "default")
        };
        let e = LeaderElector::new(client, "ns", "me", Timing::default());
        // A renewTime far in the past (the other node's clock is behind) does not make the
        // lease expired: the record was only seen now.
        let old = MicroTime(Timestamp::from_second(1_000).expect("ts"));
        let rec = Record {
            holder: "other".into(),
            renew_time: Some(old.clone()),
            acquire_time: Some(old),
            transitions: Some(0),
            duration_secs: Some(15),
        };
        let t0 = Instant::now();
        assert_eq!(e.observe(&rec, t0), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            e.observe(&rec, later),
            t0,
            "unchanged: still first seen at t0"
        );
        let mut renewed = rec.clone();
        renewed.renew_time = Some(MicroTime(Timestamp::from_second(1_010).expect("ts")));
        let t1 = later + Duration::from_secs(1);
        assert_eq!(e.observe(&renewed, t1), t1, "a renewal restarts the clock");
    }
}
