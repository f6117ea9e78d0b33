//! A retry budget: retries may add at most a fixed fraction of the request rate (plus a small
//! burst), so a throttling or failing origin never sees its load multiplied by the attempt count.
//! Each first attempt deposits `ratio` of a token; each retry withdraws one whole token.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milli-tokens per token.
const MILLI: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

impl RetryBudget {
    /// `ratio` retries per request at most (e.g. 0.1), with up to `burst` retries banked.
    pub fn new(ratio: f64, burst: u32) -> RetryBudget {
        let cap = i64::from(burst) * MILLI;
        RetryBudget {
            balance: AtomicI64::new(cap),
            deposit: (ratio.clamp(0.0, 1.0) * MILLI as f64) as i64,
            cap,
        }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + self.deposit).min(self.cap))
            });
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= MILLI).then_some(b - MILLI)
            })
            .is_ok()
    }
}

impl Default for RetryBudget {
    /// 10 % of requests, 10 banked.
    fn default() -> Self {
        RetryBudget::new(0.1, 10)
    }
}

/// Up to +50 % of `d`, from the clock's nanoseconds (no RNG dependency).
pub fn jitter(d: std::time::Duration) -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 500) / 1000.0)
}

/// Runs `attempt` until it succeeds, fails in a way not worth retrying, has run
/// `max_attempts` times, or `budget` has no retry left; backoff 50 ms doubling to 1 s, jittered.
pub async fn with_retries<T, F, Fut>(
    budget: &RetryBudget,
    max_attempts: u32,
    mut attempt: F,
) -> Result<T, super::OriginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, super::OriginError>>,
{
    budget.deposit();
    let mut backoff = std::time::Duration::from_millis(50);
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.retryable() && n < max_attempts => {
                if !budget.try_withdraw() {
                    tracing::debug!(error = %e, "retry budget spent; not retrying");
                    return Err(e);
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                n += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_request_rate() {
        let b = RetryBudget::new(0.1, 10);
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            // Every request fails and wants to retry twice (max_attempts = 3).
            for _ in 0..2 {
                if b.try_withdraw() {
                    retries += 1;
                }
            }
        }
        // 10 banked + 10 % of 1000.
        assert!((100..=110).contains(&retries), "{retries}");
    }

    #[test]
    fn a_quiet_origin_gets_its_burst_back() {
        let b = RetryBudget::new(0.5, 2);
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        b.deposit();
        assert!(!b.try_withdraw());
        b.deposit();
        assert!(b.try_withdraw());
        for _ in 0..100 {
            b.deposit();
        }
        assert!(b.try_withdraw() && b.try_withdraw() && !b.try_withdraw());
    }

    #[tokio::test]
    async fn retries_only_what_is_worth_it_within_attempts_and_budget() {
        use super::super::OriginError;
        use std::sync::atomic::{AtomicU32, Ordering};
        let run = |budget: RetryBudget, max: u32, fail: fn(u32) -> Option<OriginError>| async move {
            let calls = AtomicU32::new(0);
            let r = with_retries(&budget, max, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { fail(n).map_or(Ok(n), Err) }
            })
            .await;
            (r.is_ok(), calls.load(Ordering::SeqCst))
        };
        let flaky = |n: u32| (n < 2).then(|| OriginError::status(503, "busy"));
        assert_eq!(run(RetryBudget::default(), 3, flaky).await, (true, 3));
        assert_eq!(run(RetryBudget::default(), 2, flaky).await, (false, 2));
        assert_eq!(
            run(RetryBudget::new(0.0, 0), 3, flaky).await,
            (false, 1),
            "no budget"
        );
        let fatal = |_| Some(OriginError::status(400, "bad"));
        assert_eq!(run(RetryBudget::default(), 3, fatal).await, (false, 1));
    }
}
