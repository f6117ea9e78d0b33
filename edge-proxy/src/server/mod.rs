//! The running edge: shared state compiled from the config (`Settings`, `Generation`, `Edge`);
//! the viewer listeners are in `listen`, HTTPS in `tls`.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod cache_status;
pub mod error_page;
pub mod fetch;
pub mod fill;
pub mod health;
pub mod listen;
pub mod methods;
pub mod metrics;
pub mod passthrough;
pub mod reload;
pub mod respond;
pub mod sliced;
pub mod tls;
pub mod viewer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::cache::entry::StaleWindows;
use crate::cache::key::KeyPolicy;
use crate::cache::Store;
use crate::config::{CustomErrorResponse, EdgeConfig};
use crate::origin::OriginClient;
use crate::policy::freshness::PathPolicies;
use crate::policy::protocol::ProtocolPolicies;

/// The config compiled into what the request path needs.
pub struct Settings {
    pub config: EdgeConfig,
    /// Answers without explicit freshness get RFC 9111's `Last-Modified` heuristic (HTTP
    /// origins) instead of the default TTL.
    pub heuristic_freshness: bool,
    pub key_policy: KeyPolicy,
    pub ttl: PathPolicies,
    pub windows: StaleWindows,
    pub negative_ttl: Duration,
    pub max_object_size: u64,
    /// `cache.sliceSize`: objects above it are fetched and stored in slices of this size.
    pub slice_size: u64,
    /// `/index.html` for `defaultRootObject: index.html`.
    pub default_root: Option<String>,
    pub error_responses: Vec<CustomErrorResponse>,
    /// Bound on how long a request waits for a shared origin fetch.
    pub collapse_wait: Duration,
    /// How long a collapsed waiter waits for the shared fetch's origin to answer before it
    /// serves stale or fetches on its own (about the first-byte timeout).
    pub header_wait: Duration,
    /// Bound on buffering a body of undeclared length (`origin.timeouts.total`); bodies of
    /// known length stream under the origin's idle timeout instead.
    pub fill_timeout: Duration,
    /// Error caching: default TTL for remembered origin failures.
    pub error_ttl: Duration,
    /// Signed URLs/cookies, viewer limits, response headers policy (`config.security`).
    pub security: Arc<crate::security::Security>,
    /// HTTP vs HTTPS per path (`viewerProtocolPolicy`, behaviors).
    pub protocol: ProtocolPolicies,
    /// The HTTPS port `redirect-to-https` sends viewers to.
    pub https_port: u16,
}

impl Settings {
    pub fn new(config: EdgeConfig) -> Settings {
        let cache = &config.cache;
        let t = &config.origin.timeouts;
        let attempts = config.origin.max_attempts.max(1);
        let per_attempt = t.connect.as_duration() + t.first_byte.as_duration();
        Settings {
            heuristic_freshness: config.origin.http.is_some(),
            key_policy: KeyPolicy::new(&cache.key),
            ttl: PathPolicies::new(cache, &config.behaviors),
            protocol: ProtocolPolicies::new(config.viewer_protocol_policy, &config.behaviors),
            https_port: config.server.tls.as_ref().map_or(443, |t| t.public_port),
            windows: StaleWindows {
                stale_if_error: cache.stale_if_error.as_duration(),
                stale_while_revalidate: cache.stale_while_revalidate.as_duration(),
                must_revalidate: false,
            },
            negative_ttl: cache.negative_ttl.as_duration(),
            max_object_size: cache.max_object_size.0,
            slice_size: cache.slice_size.0.max(1),
            default_root: config.default_root_object.as_ref().map(|r| format!("/{r}")),
            error_responses: config.custom_error_responses.clone(),
            collapse_wait: (per_attempt * attempts).max(t.total.as_duration())
                + Duration::from_secs(2),
            header_wait: per_attempt + Duration::from_millis(500),
            fill_timeout: t.total.as_duration(),
            error_ttl: cache.error_caching_min_ttl.as_duration(),
            // Keys were checked when the config was accepted; if they still fail, signed paths
            // refuse everyone rather than open up.
            security: Arc::new(
                crate::security::Security::from_config(&config.security).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "security config unusable; signed paths refuse all");
                    crate::security::Security::fail_closed(&config.security)
                }),
            ),
            config,
        }
    }

    pub fn error_response(&self, code: u16) -> Option<&CustomErrorResponse> {
        self.error_responses.iter().find(|e| e.error_code == code)
    }

    /// How long an origin failure answered with `status` is remembered.
    pub fn error_ttl_for(&self, status: u16) -> Duration {
        self.error_response(status)
            .and_then(|e| e.ttl)
            .map_or(self.error_ttl, |d| d.as_duration())
    }
}

/// An origin failure remembered for a key (error caching), until `until`.
#[derive(Debug, Clone)]
pub struct CachedError {
    pub error: crate::origin::OriginError,
    pub until: std::time::Instant,
}

/// Side tables of a generation, consulted on misses only (never on the hit path).
pub struct MissState {
    /// Recent origin failures by key, for keys without a stale copy (error caching).
    pub errors: moka::sync::Cache<String, CachedError>,
    /// Keys known to be larger than `maxObjectSize`: fetched as pass-through directly, with
    /// the viewer's `Range` and validators.
    pub large: moka::sync::Cache<String, ()>,
}

impl Default for MissState {
    fn default() -> Self {
        MissState {
            errors: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            large: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }
}

impl Generation {
    /// The cache tier behind the seam (today the memory store).
    pub fn storage(&self) -> &dyn crate::cache::Storage {
        &self.store
    }
}

/// Everything replaced together on a reload.
pub struct Generation {
    pub settings: Settings,
    pub origin: Arc<dyn OriginClient>,
    pub store: Store,
    pub misses: Arc<MissState>,
}

impl Generation {
    pub fn new(settings: Settings, origin: Arc<dyn OriginClient>, store: Store) -> Generation {
        Generation {
            settings,
            origin,
            store,
            misses: Arc::new(MissState::default()),
        }
    }
}

/// Process-wide state shared by all requests.
pub struct Edge {
    pub current: ArcSwap<Generation>,
    pub inflight: fetch::Inflight,
    pub metrics: metrics::Metrics,
    pub health: health::OriginHealth,
    ready: AtomicBool,
    /// Bumped by every invalidation; fetches started earlier do not store their result.
    pub invalidation_epoch: AtomicU64,
    pub admin_token: Option<String>,
    /// `None` with `--access-log false` (or a RUST_LOG that silences `kubefront_edge::access`).
    pub access_log: Option<access_log::AccessLog>,
    /// Which config file is in effect (admin `/config`).
    pub loaded: reload::Loaded,
}

impl Edge {
    pub fn new(
        generation: Generation,
        admin_token: Option<String>,
        access_log: Option<access_log::Format>,
    ) -> Edge {
        let metrics = metrics::Metrics::new();
        let access_log = access_log.and_then(|format| {
            let dropped = metrics.access_log_dropped.clone();
            access_log::AccessLog::start(format, std::io::stderr(), dropped)
                .map_err(|e| tracing::error!(error = %e, "cannot start the access log writer; access log off"))
                .ok()
        });
        Edge {
            current: ArcSwap::from_pointee(generation),
            inflight: fetch::Inflight::default(),
            metrics,
            health: health::OriginHealth::default(),
            ready: AtomicBool::new(false),
            invalidation_epoch: AtomicU64::new(0),
            admin_token: admin_token.filter(|t| !t.is_empty()),
            access_log,
            loaded: reload::Loaded::default(),
        }
    }

    pub fn mark_ready(&self) {
        if !self.ready.load(Ordering::Relaxed) {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Probes the origin until it answers once, so `/readyz` turns green without viewer traffic.
pub async fn probe_until_ready(edge: Arc<Edge>) {
    let mut delay = Duration::from_millis(200);
    while !edge.is_ready() {
        let origin = edge.current.load().origin.clone();
        match origin.probe().await {
            Ok(()) => {
                tracing::info!("origin reachable");
                edge.mark_ready();
            }
            Err(e) => {
                tracing::warn!(error = %e, "origin probe failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    #[test]
    fn error_caching_ttl_per_status() {
        let mut cfg = EdgeConfig::for_bucket("bkt");
        cfg.custom_error_responses.push(CustomErrorResponse {
            error_code: 504,
            response_page_path: None,
            response_code: None,
            ttl: Some(Dur::secs(1)),
        });
        let s = Settings::new(cfg.clone());
        assert_eq!(
            s.error_ttl_for(502),
            Duration::from_secs(10),
            "CloudFront's default"
        );
        assert_eq!(s.error_ttl_for(504), Duration::from_secs(1));
        cfg.cache.error_caching_min_ttl = Dur::ZERO;
        assert!(Settings::new(cfg).error_ttl_for(502).is_zero());
        // The collapsed-waiter bound is about the first-byte timeout, not the whole fetch.
        assert!(s.header_wait < s.collapse_wait);
        assert!(s.header_wait <= Duration::from_secs(14));
    }
}
