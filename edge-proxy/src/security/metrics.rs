//! Counters for the signature gate, registered into the edge's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::signed::DenyReason;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `allowed` or a `DenyReason` category.
    pub result: &'static str,
}

/// Signed-request outcomes (`kubefront_edge_signed_requests_total{result=…}`) and requests
/// refused by size limits (`kubefront_edge_rejected_requests_total{reason=…}`).
#[derive(Debug, Clone, Default)]
pub struct SecurityMetrics {
    pub signed_requests: Family<ResultLabel, Counter>,
    pub rejected_requests: Family<ReasonLabel, Counter>,
    pub signature_checks: Family<SourceLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `memo` (answered by the verified-signature memo) or `computed` (public-key operation).
    pub source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

impl SecurityMetrics {
    /// A set with every label pre-created, so all categories show as 0 from the start.
    pub fn new() -> Self {
        let m = Self::default();
        let _ = m
            .signed_requests
            .get_or_create(&ResultLabel { result: "allowed" });
        for r in DenyReason::ALL {
            let _ = m
                .signed_requests
                .get_or_create(&ResultLabel { result: r.as_str() });
        }
        for reason in ["uri-too-long", "headers-too-large", "bad-path"] {
            let _ = m.rejected_requests.get_or_create(&ReasonLabel { reason });
        }
        for source in ["memo", "computed"] {
            let _ = m.signature_checks.get_or_create(&SourceLabel { source });
        }
        m
    }

    /// The process-wide set: counters survive config reloads (every compiled `Security` shares
    /// it), and the edge registers it once.
    pub fn shared() -> &'static SecurityMetrics {
        static SHARED: std::sync::OnceLock<SecurityMetrics> = std::sync::OnceLock::new();
        SHARED.get_or_init(SecurityMetrics::new)
    }

    /// Registers under the registry's prefix (the edge uses `kubefront_edge`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "signed_requests",
            "Requests for signed paths by outcome (allowed or the denial category)",
            self.signed_requests.clone(),
        );
        registry.register(
            "rejected_requests",
            "Viewer requests refused before routing, by reason",
            self.rejected_requests.clone(),
        );
        registry.register(
            "signature_checks",
            "Signature checks of signed requests by how they were answered (memo or computed)",
            self.signature_checks.clone(),
        );
    }

    /// The counter for one `signature_checks` source.
    pub fn verification(&self, source: &'static str) -> Counter {
        self.signature_checks
            .get_or_create(&SourceLabel { source })
            .clone()
    }

    pub fn allowed(&self) {
        self.signed_requests
            .get_or_create(&ResultLabel { result: "allowed" })
            .inc();
    }

    pub fn denied(&self, reason: DenyReason) {
        self.signed_requests
            .get_or_create(&ResultLabel {
                result: reason.as_str(),
            })
            .inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected_requests
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_category() {
        let m = SecurityMetrics::new();
        m.denied(DenyReason::Expired);
        m.denied(DenyReason::Expired);
        m.allowed();
        let mut registry = Registry::with_prefix("kubefront_edge");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"kubefront_edge_signed_requests_total{result="expired"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"kubefront_edge_signed_requests_total{result="allowed"} 1"#));
        assert!(text.contains(r#"kubefront_edge_signed_requests_total{result="bad-signature"} 0"#));
        assert!(text.contains(r#"kubefront_edge_rejected_requests_total{reason="uri-too-long"} 0"#));
        assert!(text.contains(r#"kubefront_edge_signature_checks_total{source="memo"} 0"#));
    }
}
