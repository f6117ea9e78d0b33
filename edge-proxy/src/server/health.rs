//! What the edge knows about its origin's health: consecutive failures and the last one (for
//! `/readyz`), and rate-limited logging so a failing origin costs one warning per interval,
//! not one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::origin::OriginError;

/// At most one origin-failure warning per this interval.
const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Failure {
    pub code: &'static str,
    pub status: Option<u16>,
    pub message: String,
    pub path: String,
    pub at: SystemTime,
}

pub struct OriginHealth {
    started: Instant,
    consecutive: AtomicU64,
    last: Mutex<Option<Failure>>,
    /// Milliseconds since `started` before which no further warning is logged.
    quiet_until_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for OriginHealth {
    fn default() -> Self {
        OriginHealth {
            started: Instant::now(),
            consecutive: AtomicU64::new(0),
            last: Mutex::new(None),
            quiet_until_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl OriginHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failed origin fetch and logs it unless a warning went out recently.
    pub fn failure(&self, path: &str, err: &OriginError) {
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let status = match err {
            OriginError::Status { status, .. } => Some(*status),
            _ => None,
        };
        *self.lock() = Some(Failure {
            code: err.code(),
            status,
            message: err.to_string(),
            path: path.to_owned(),
            at: SystemTime::now(),
        });
        if self.should_log() {
            let suppressed = self.suppressed.swap(0, Ordering::AcqRel);
            tracing::warn!(
                path,
                code = err.code(),
                consecutive = n,
                suppressed,
                error = %err,
                "origin fetch failed (similar warnings suppressed for {} s)",
                LOG_EVERY.as_secs()
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records an origin answer (any fact about an object counts).
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Acquire) != 0 {
            let n = self.consecutive.swap(0, Ordering::AcqRel);
            if n != 0 {
                tracing::info!(after_failures = n, "origin answering again");
            }
        }
    }

    fn should_log(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let quiet = self.quiet_until_ms.load(Ordering::Acquire);
        now >= quiet
            && self
                .quiet_until_ms
                .compare_exchange(
                    quiet,
                    now + LOG_EVERY.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Consecutive failures since the last origin answer.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive.load(Ordering::Acquire)
    }

    /// The last failure while the origin is failing; `None` once it answers again.
    pub fn degraded(&self) -> Option<Failure> {
        if self.consecutive_failures() == 0 {
            return None;
        }
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_failures_until_the_origin_answers() {
        let h = OriginHealth::default();
        assert!(h.degraded().is_none());
        let err = OriginError::Status {
            status: 403,
            code: "InvalidAccessKeyId",
            message: "nope".into(),
        };
        for _ in 0..5 {
            h.failure("/a", &err);
        }
        let f = h.degraded().expect("degraded");
        assert_eq!(f.code, "InvalidAccessKeyId");
        assert_eq!(f.status, Some(403));
        assert_eq!(h.consecutive_failures(), 5);
        // Only the first of five warnings was logged.
        assert_eq!(h.suppressed.load(Ordering::Acquire), 4);
        h.success();
        assert!(h.degraded().is_none());
    }
}
