//! Config file reload: the file is polled (ConfigMap updates swap a symlink, which inotify on
//! the file itself misses), a valid change is applied with the CLI overrides on top, and the
//! cache survives unless the origin or the cache size changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::ResultLabels;
use super::{Edge, Generation, Settings};
use crate::cache::Store;
use crate::config::EdgeConfig;
use crate::origin::s3::S3Origin;

/// Turns file contents into the effective config (parse, apply overrides, validate).
pub type Effective = Arc<dyn Fn(&str) -> Result<EdgeConfig, String> + Send + Sync>;

pub async fn watch(
    edge: Arc<Edge>,
    path: PathBuf,
    initial: String,
    effective: Effective,
    every: Duration,
) {
    let mut last = initial;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "config file unreadable; keeping current config");
                continue;
            }
        };
        if text == last {
            continue;
        }
        last.clone_from(&text);
        match effective(&text) {
            Ok(cfg) => {
                apply(&edge, cfg).await;
                edge.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "applied" })
                    .inc();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "config reload rejected; keeping current config");
                edge.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "rejected" })
                    .inc();
            }
        }
    }
}

/// The origin's identity: what decides whether cached objects still describe it. Timeouts,
/// retries and addressing style do not.
fn same_identity(a: &crate::config::OriginConfig, b: &crate::config::OriginConfig) -> bool {
    a.s3.bucket == b.s3.bucket
        && a.s3.endpoint == b.s3.endpoint
        && a.s3.region == b.s3.region
        && a.s3.prefix == b.s3.prefix
}

/// Installs a new config. The origin client is rebuilt when any origin setting changed; the
/// cache is kept unless the origin's identity changed (a new cache size copies it over).
pub async fn apply(edge: &Edge, cfg: EdgeConfig) {
    let old = edge.current.load_full();
    let old_cfg = &old.settings.config;
    if old_cfg.server != cfg.server {
        tracing::warn!("server (listen addresses) changes need a restart; ignored until then");
    }
    let same_origin = old_cfg.origin == cfg.origin;
    let same_identity = same_identity(&old_cfg.origin, &cfg.origin);
    let same_size = old_cfg.cache.memory == cfg.cache.memory;
    let origin = if same_origin {
        old.origin.clone()
    } else {
        Arc::new(S3Origin::new(&cfg.origin).await) as Arc<dyn crate::origin::OriginClient>
    };
    let store = match (same_identity, same_size) {
        (true, true) => old.store.clone(),
        (true, false) => {
            let s = Store::new(cfg.cache.memory.0);
            s.absorb(&old.store).await;
            s
        }
        (false, _) => Store::new(cfg.cache.memory.0),
    };
    let mut generation = Generation::new(Settings::new(cfg), origin, store);
    if same_identity {
        generation.misses = old.misses.clone();
    }
    edge.current.store(Arc::new(generation));
    if same_identity {
        tracing::info!(
            origin_client_rebuilt = !same_origin,
            cache_resized = !same_size,
            "config reloaded; cache kept"
        );
    } else {
        old.store.invalidate_all();
        tracing::info!("config reloaded; origin identity changed, cache flushed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    #[test]
    fn identity_is_bucket_endpoint_region_prefix() {
        let a = EdgeConfig::for_bucket("bkt").origin;
        let mut b = a.clone();
        b.timeouts.total = Dur::secs(1);
        b.max_attempts = 1;
        b.s3.force_path_style = !a.s3.force_path_style;
        assert!(
            same_identity(&a, &b),
            "timeouts and retries are not identity"
        );
        for change in [
            |o: &mut crate::config::OriginConfig| o.s3.bucket = "other".into(),
            |o: &mut crate::config::OriginConfig| o.s3.endpoint = Some("http://x:1".into()),
            |o: &mut crate::config::OriginConfig| o.s3.region = "eu-west-1".into(),
            |o: &mut crate::config::OriginConfig| o.s3.prefix = "p/".into(),
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert!(!same_identity(&a, &c));
        }
    }
}
