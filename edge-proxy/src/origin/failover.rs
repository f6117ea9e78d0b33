//! CloudFront's origin groups: a fetch the primary fails in one of the configured ways (a listed
//! status, or no connection / no answer in time) is sent once to the secondary. The cache above
//! sees one origin; which one answered shows in `kubefront_edge_origin_failovers_total`.

use std::sync::{Arc, LazyLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{OriginClient, OriginError, OriginRequest, OriginResponse, OriginStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    /// `status` (a listed answer) or `connect` (unreachable, timed out).
    pub reason: &'static str,
    /// What the secondary did: `ok` (it answered) or `error`.
    pub result: &'static str,
}

/// Failovers of this process, registered by the metrics registry: origins are rebuilt on
/// reload, the series stay.
pub static FAILOVERS: LazyLock<Family<FailoverLabels, Counter>> = LazyLock::new(Family::default);

/// A primary origin with a secondary that takes over.
pub struct FailoverOrigin {
    pub primary: Arc<dyn OriginClient>,
    pub secondary: Arc<dyn OriginClient>,
    pub status_codes: Vec<u16>,
    pub connect_failures: bool,
}

impl FailoverOrigin {
    /// Why the primary's outcome fails over, if it does.
    fn reason(&self, outcome: &Result<OriginResponse, OriginError>) -> Option<&'static str> {
        let listed = |code: u16| self.status_codes.contains(&code);
        match outcome {
            Ok(r) => {
                let code = match r.status {
                    OriginStatus::NotFound => 404,
                    OriginStatus::Forbidden => 403,
                    OriginStatus::RangeNotSatisfiable => 416,
                    _ => return None,
                };
                listed(code).then_some("status")
            }
            Err(OriginError::Connect(_) | OriginError::Timeout(_)) => {
                self.connect_failures.then_some("connect")
            }
            Err(OriginError::Status { status, .. }) => listed(*status).then_some("status"),
            Err(_) => None,
        }
    }
}

impl OriginClient for FailoverOrigin {
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
        async move {
            let first = self.primary.fetch(req.clone()).await;
            let Some(reason) = self.reason(&first) else {
                return first;
            };
            tracing::debug!(path = %req.path, reason, "primary origin failed; trying the secondary");
            let second = self.secondary.fetch(req).await;
            let result = if second.is_ok() { "ok" } else { "error" };
            FAILOVERS
                .get_or_create(&FailoverLabels { reason, result })
                .inc();
            second
        }
        .boxed()
    }

    /// Methods other than GET/HEAD go to the primary only: a request that may have changed
    /// something there is never repeated elsewhere.
    fn forward(
        &self,
        req: super::ForwardRequest,
    ) -> BoxFuture<'_, Result<super::ForwardResponse, OriginError>> {
        self.primary.forward(req)
    }

    /// Ready when either origin is: the secondary exists to serve while the primary is down.
    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
        async move {
            match self.primary.probe().await {
                Ok(()) => Ok(()),
                Err(e) => self.secondary.probe().await.map_err(|_| e),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::ObjectMeta;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Outcome = fn() -> Result<OriginResponse, OriginError>;

    /// Answers every fetch with one scripted outcome and counts calls.
    struct Fixed {
        outcome: Outcome,
        calls: AtomicUsize,
    }

    impl OriginClient for Fixed {
        fn fetch(&self, _: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let out = (self.outcome)();
            async move { out }.boxed()
        }
        fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
            async { Ok(()) }.boxed()
        }
    }

    fn fixed(outcome: Outcome) -> Arc<Fixed> {
        Arc::new(Fixed {
            outcome,
            calls: AtomicUsize::new(0),
        })
    }

    fn ok(status: OriginStatus) -> Result<OriginResponse, OriginError> {
        Ok(OriginResponse {
            status,
            meta: ObjectMeta::default(),
            body: None,
        })
    }

    #[tokio::test]
    async fn listed_statuses_and_connect_failures_go_to_the_secondary_once() {
        let cases: [(Outcome, bool); 7] = [
            (|| Err(OriginError::status(503, "down")), true),
            (|| Err(OriginError::status(500, "bug")), true),
            (|| Err(OriginError::status(429, "slow")), false),
            (|| Err(OriginError::Connect("refused".into())), true),
            (|| Err(OriginError::Timeout("slow".into())), true),
            (|| ok(OriginStatus::NotFound), true),
            (|| ok(OriginStatus::Ok), false),
        ];
        for (i, (outcome, fails_over)) in cases.into_iter().enumerate() {
            let (primary, secondary) = (fixed(outcome), fixed(|| ok(OriginStatus::Ok)));
            let f = FailoverOrigin {
                primary: primary.clone(),
                secondary: secondary.clone(),
                status_codes: vec![404, 500, 503],
                connect_failures: true,
            };
            let r = f.fetch(OriginRequest::get("/a")).await;
            assert_eq!(primary.calls.load(Ordering::SeqCst), 1, "case {i}");
            assert_eq!(
                secondary.calls.load(Ordering::SeqCst),
                usize::from(fails_over),
                "case {i}"
            );
            if fails_over {
                assert_eq!(r.expect("secondary answer").status, OriginStatus::Ok);
            }
        }
    }

    #[tokio::test]
    async fn connect_failures_can_be_left_to_the_primary() {
        let secondary = fixed(|| ok(OriginStatus::Ok));
        let f = FailoverOrigin {
            primary: fixed(|| Err(OriginError::Connect("refused".into()))),
            secondary: secondary.clone(),
            status_codes: vec![503],
            connect_failures: false,
        };
        assert!(f.fetch(OriginRequest::get("/a")).await.is_err());
        assert_eq!(secondary.calls.load(Ordering::SeqCst), 0);
    }
}
