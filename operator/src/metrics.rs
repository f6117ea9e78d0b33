//! Prometheus metrics: reconciles, failures by reason, reconcile duration, managed regions.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// All operator metrics, registered in one registry served at `/metrics`.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ReasonLabels, Counter>,
    pub duration: Histogram,
    pub managed_regions: Gauge<i64, AtomicI64>,
    /// Server-side applies and deletes issued, by kind (zero on a no-op resync).
    pub writes: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubefront_operator");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        let managed_regions = Gauge::<i64, AtomicI64>::default();
        let writes = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Distribution reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles and failing regions, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Distribution",
            duration.clone(),
        );
        registry.register(
            "managed_regions",
            "Regions of all Distributions this operator manages",
            managed_regions.clone(),
        );
        registry.register(
            "writes",
            "Objects applied or deleted, by kind",
            writes.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            managed_regions,
            writes,
        }
    }
}

impl Metrics {
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn write(&self, kind: &str) {
        self.writes
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn observe(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
