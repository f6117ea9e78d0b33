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

/// Installs a new config, keeping the origin client and cache where they are unchanged.
pub async fn apply(edge: &Edge, cfg: EdgeConfig) {
    let old = edge.current.load_full();
    let old_cfg = &old.settings.config;
    if old_cfg.server != cfg.server {
        tracing::warn!("server (listen addresses) changes need a restart; ignored until then");
    }
    let same_origin = old_cfg.origin == cfg.origin;
    let same_size = old_cfg.cache.memory == cfg.cache.memory;
    let origin = if same_origin {
        old.origin.clone()
    } else {
        Arc::new(S3Origin::new(&cfg.origin).await) as Arc<dyn crate::origin::OriginClient>
    };
    let store = if same_origin && same_size {
        old.store.clone()
    } else {
        Store::new(cfg.cache.memory.0)
    };
    let flushed = !(same_origin && same_size);
    edge.current.store(Arc::new(Generation {
        settings: Settings::new(cfg),
        origin,
        store,
    }));
    if flushed {
        old.store.invalidate_all();
        tracing::info!(
            origin_changed = !same_origin,
            "config reloaded; cache flushed"
        );
    } else {
        tracing::info!("config reloaded; cache kept");
    }
}
