//! Prometheus metrics for the admin port.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a viewer request was answered (the `cache` label).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CacheLabel {
    hit,
    miss,
    refresh_hit,
    stale,
    error,
}

impl CacheLabel {
    const ALL: [CacheLabel; 5] = [
        CacheLabel::hit,
        CacheLabel::miss,
        CacheLabel::refresh_hit,
        CacheLabel::stale,
        CacheLabel::error,
    ];
}

/// Status codes whose `requests` counters are resolved once and kept (the others go through
/// the family's lock and label hash on every request, as all of them used to).
const COMMON_CODES: [u16; 16] = [
    200, 204, 206, 301, 302, 304, 400, 403, 404, 405, 412, 416, 500, 502, 503, 504,
];

/// `kubefront_edge_requests_total` by `(cache, code)`, with the common series resolved on
/// first use: a hit then costs one atomic add instead of a read lock, a label hash and a map
/// lookup. Series appear in the exposition only once used, as before.
pub struct RequestCounters {
    family: Family<RequestLabels, Counter>,
    resolved: [[std::sync::OnceLock<Counter>; COMMON_CODES.len()]; CacheLabel::ALL.len()],
}

impl RequestCounters {
    fn new(family: Family<RequestLabels, Counter>) -> RequestCounters {
        RequestCounters {
            family,
            resolved: Default::default(),
        }
    }

    pub fn inc(&self, cache: CacheLabel, code: u16) {
        let row = CacheLabel::ALL.iter().position(|c| *c == cache);
        let col = COMMON_CODES.iter().position(|c| *c == code);
        match (row, col) {
            (Some(r), Some(c)) => self.resolved[r][c]
                .get_or_init(|| {
                    self.family
                        .get_or_create(&RequestLabels { cache, code })
                        .clone()
                })
                .inc(),
            _ => self
                .family
                .get_or_create(&RequestLabels { cache, code })
                .inc(),
        };
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub cache: CacheLabel,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// The `hash` label of `config_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabels {
    pub hash: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: RequestCounters,
    pub response_bytes: Counter,
    /// Access log lines dropped because the writer fell behind (see `access_log`).
    pub access_log_dropped: Counter,
    pub origin_requests: Family<OutcomeLabels, Counter>,
    pub origin_errors: Family<KindLabels, Counter>,
    pub origin_error_codes: Family<CodeLabels, Counter>,
    pub origin_degraded: Gauge,
    pub collapse_gave_up: Counter,
    /// Slice answers from another version of the object than its head (answer cut or retried).
    pub slice_changed: Counter,
    pub origin_duration: Histogram,
    pub cache_entries: Gauge,
    pub cache_weighted_bytes: Gauge,
    pub collapsed: Counter,
    pub invalidations: Counter,
    pub config_reloads: Family<ResultLabels, Counter>,
    /// 1 for the config file in effect (label `hash`, see `reload::config_hash`).
    pub config_info: Family<HashLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubefront_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Viewer requests by cache outcome and status code",
            requests.clone(),
        );
        let response_bytes = Counter::default();
        registry.register(
            "response_body_bytes",
            "Response body bytes sent to viewers",
            response_bytes.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the log writer fell behind",
            access_log_dropped.clone(),
        );
        let origin_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "origin_requests",
            "Origin fetches by outcome",
            origin_requests.clone(),
        );
        registry.register(
            "origin_failovers",
            "Fetches the primary origin failed and the secondary was asked, by reason and result",
            crate::origin::failover::FAILOVERS.clone(),
        );
        let origin_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "origin_errors",
            "Failed origin fetches by kind",
            origin_errors.clone(),
        );
        let origin_error_codes = Family::<CodeLabels, Counter>::default();
        registry.register(
            "origin_error_codes",
            "Failed origin fetches by S3 error code (or Timeout, ConnectError, Http5xx…)",
            origin_error_codes.clone(),
        );
        let origin_degraded = Gauge::default();
        registry.register(
            "origin_degraded",
            "1 while the origin is failing (consecutive failures since its last answer)",
            origin_degraded.clone(),
        );
        let collapse_gave_up = Counter::default();
        registry.register(
            "collapse_gave_up",
            "Collapsed waiters that stopped waiting for a slow shared fetch",
            collapse_gave_up.clone(),
        );
        let slice_changed = Counter::default();
        registry.register(
            "slice_changed",
            "Slice fetches that found the object changed under its cached head",
            slice_changed.clone(),
        );
        let origin_duration = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "origin_request_duration_seconds",
            "Time until origin response headers",
            origin_duration.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Entries in the cache",
            cache_entries.clone(),
        );
        let cache_weighted_bytes = Gauge::default();
        registry.register(
            "cache_weighted_bytes",
            "Weighted bytes held by the cache",
            cache_weighted_bytes.clone(),
        );
        let collapsed = Counter::default();
        registry.register(
            "collapsed_requests",
            "Requests that waited on another request's origin fetch instead of fetching",
            collapsed.clone(),
        );
        let invalidations = Counter::default();
        registry.register(
            "invalidations",
            "Invalidation paths applied",
            invalidations.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config file reloads",
            config_reloads.clone(),
        );
        let config_info = Family::<HashLabels, Gauge>::default();
        registry.register(
            "config_info",
            "The config file in effect: 1 with its hash (the operator's kubefront.io/config-hash)",
            config_info.clone(),
        );
        crate::security::SecurityMetrics::shared().register(&mut registry);
        Metrics {
            registry,
            requests: RequestCounters::new(requests),
            response_bytes,
            access_log_dropped,
            origin_requests,
            origin_errors,
            origin_error_codes,
            origin_degraded,
            collapse_gave_up,
            slice_changed,
            origin_duration,
            cache_entries,
            cache_weighted_bytes,
            collapsed,
            invalidations,
            config_reloads,
            config_info,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod request_counter_tests {
    use super::*;

    /// Resolved and unresolved series count into the same exposition.
    #[test]
    fn common_and_rare_codes_are_counted_in_one_family() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.requests.inc(CacheLabel::hit, 200);
        }
        m.requests.inc(CacheLabel::error, 431);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(
            text.contains(r#"kubefront_edge_requests_total{cache="hit",code="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kubefront_edge_requests_total{cache="error",code="431"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"code="204""#),
            "unused series stay out: {text}"
        );
    }
}
