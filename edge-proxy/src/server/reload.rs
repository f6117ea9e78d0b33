//! Config file reload: the file is polled (ConfigMap updates swap a symlink, which inotify on
//! the file itself misses), a valid change is applied with the CLI overrides on top, and the
//! cache survives unless the origin or the cache size changed.
//!
//! The edge also remembers which file it runs ([`Loaded`]): the hash of the file's bytes, as
//! the operator computes it over the ConfigMap it wrote ([`config_hash`]), and the last file it
//! refused with the reason. The admin `/config` endpoint and `kubefront_edge_config_info`
//! report it, so a rollout by reload can be followed pod by pod.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::metrics::{HashLabels, ResultLabels};
use super::{Edge, Generation, Settings};
use crate::cache::Store;
use crate::config::EdgeConfig;

/// Turns file contents into the effective config (parse, apply overrides, validate).
pub type Effective = Arc<dyn Fn(&str) -> Result<EdgeConfig, String> + Send + Sync>;

/// Hash of a config file's bytes: hex of the first 8 bytes of SHA-256 over the length (u64,
/// big-endian) followed by the bytes. The operator hashes the ConfigMap text it renders the
/// same way (`kubefront.io/config-hash`), so both sides name one file by one value.
pub fn config_hash(text: &str) -> String {
    let mut h = Sha256::new();
    h.update((text.len() as u64).to_be_bytes());
    h.update(text.as_bytes());
    hex_prefix(&h.finalize()[..8])
}

fn hex_prefix(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(16), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A config file the edge refused to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    pub hash: String,
    pub error: String,
    pub at_unix: u64,
}

/// Which config file the edge runs, as `/config` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedState {
    /// [`config_hash`] of the file in effect; `None` when the edge runs on flags only.
    pub hash: Option<String>,
    pub loaded_at_unix: u64,
    /// The last refused file, unless a newer file was loaded since.
    pub rejected: Option<Rejected>,
}

/// Shared record of the loaded config file.
#[derive(Default)]
pub struct Loaded(Mutex<LoadedState>);

impl Loaded {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadedState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self) -> LoadedState {
        self.lock().clone()
    }

    /// A file was loaded (at start or by reload); an earlier refusal is superseded.
    pub fn loaded(&self, hash: String) -> Option<String> {
        let mut s = self.lock();
        s.rejected = None;
        s.loaded_at_unix = unix_now();
        s.hash.replace(hash)
    }

    pub fn rejected(&self, hash: String, error: String) {
        self.lock().rejected = Some(Rejected {
            hash,
            error,
            at_unix: unix_now(),
        });
    }
}

/// Records that the file with `text` is in effect: `/config` and `kubefront_edge_config_info`.
pub fn record_loaded(edge: &Edge, text: &str) {
    let hash = config_hash(text);
    let previous = edge.loaded.loaded(hash.clone());
    let info = &edge.metrics.config_info;
    if let Some(old) = previous {
        info.remove(&HashLabels { hash: old });
    }
    info.get_or_create(&HashLabels { hash }).set(1);
}

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
        let applied = match effective(&text) {
            Ok(cfg) => apply(&edge, cfg).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(()) => {
                record_loaded(&edge, &text);
                edge.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "applied" })
                    .inc();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "config reload rejected; keeping current config");
                edge.loaded.rejected(config_hash(&text), e.clone());
                edge.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "rejected" })
                    .inc();
            }
        }
    }
}

/// The origin's identity: what decides whether cached objects still describe it. Timeouts,
/// retries, addressing style and request headers do not.
fn same_identity(a: &crate::config::OriginConfig, b: &crate::config::OriginConfig) -> bool {
    fn id(o: &crate::config::OriginConfig) -> String {
        let primary = match (&o.s3, &o.http) {
            (Some(s3), _) => format!(
                "s3 {:?} {} {} {}",
                s3.endpoint, s3.bucket, s3.region, s3.prefix
            ),
            (None, Some(h)) => format!("http {} {:?}", h.url, h.host_header),
            (None, None) => String::new(),
        };
        match &o.failover {
            Some(f) => format!("{primary} | {}", id(&f.secondary)),
            None => primary,
        }
    }
    id(a) == id(b)
}

/// Installs a new config. The origin client is rebuilt when any origin setting changed; the
/// cache is kept unless the origin's identity changed (a new cache size copies it over).
/// A config whose origin cannot be set up (an unreadable secret or CA file) is refused and
/// nothing changes.
pub async fn apply(edge: &Edge, cfg: EdgeConfig) -> Result<(), String> {
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
        crate::origin::build(&cfg.origin)
            .await
            .map_err(|e| e.to_string())?
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    #[test]
    fn config_hash_is_the_operators_contract() {
        // The same vector is pinned in the operator (render::tests): both sides must agree.
        assert_eq!(
            config_hash("version: kubefront.io/edge/v1\n"),
            "566d8ee027fd6049"
        );
        assert_ne!(config_hash("a"), config_hash("a "));
    }

    #[test]
    fn a_load_supersedes_an_earlier_refusal() {
        let l = Loaded::default();
        assert_eq!(l.loaded("aaaa".into()), None);
        l.rejected("bbbb".into(), "bad".into());
        let s = l.get();
        assert_eq!(s.hash.as_deref(), Some("aaaa"));
        assert_eq!(s.rejected.as_ref().map(|r| r.hash.as_str()), Some("bbbb"));
        assert_eq!(l.loaded("cccc".into()).as_deref(), Some("aaaa"));
        assert_eq!(l.get().rejected, None);
    }

    #[test]
    fn identity_is_bucket_endpoint_region_prefix() {
        let a = EdgeConfig::for_bucket("bkt").origin;
        let mut b = a.clone();
        b.timeouts.total = Dur::secs(1);
        b.max_attempts = 1;
        b.s3_mut().force_path_style = !a.s3.as_ref().is_some_and(|s| s.force_path_style);
        assert!(
            same_identity(&a, &b),
            "timeouts and retries are not identity"
        );
        for change in [
            |o: &mut crate::config::OriginConfig| o.s3_mut().bucket = "other".into(),
            |o: &mut crate::config::OriginConfig| o.s3_mut().endpoint = Some("http://x:1".into()),
            |o: &mut crate::config::OriginConfig| o.s3_mut().region = "eu-west-1".into(),
            |o: &mut crate::config::OriginConfig| o.s3_mut().prefix = "p/".into(),
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert!(!same_identity(&a, &c));
        }
    }
}
