//! The memory tier (`Storage`): a byte-weighted moka store. Entries live for their freshness lifetime plus the
//! longest stale window, so stale copies remain available for stale-if-error and
//! stale-while-revalidate; freshness itself is decided per request from the entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::entry::Entry;
use super::key::PathMatcher;

/// Per-entry expiry from the entry's own lifetime.
struct EntryExpiry;

impl Expiry<String, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.retain_for())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.retain_for())
    }
}

#[derive(Clone)]
pub struct Store {
    cache: Cache<String, Arc<Entry>>,
    capacity: u64,
}

impl Store {
    /// A store holding at most `capacity` weighted bytes.
    pub fn new(capacity: u64) -> Store {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|k: &String, v: &Arc<Entry>| v.weight(k))
            .expire_after(EntryExpiry)
            .build();
        Store { cache, capacity }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key).await
    }

    /// Whether `key` is stored (without touching its recency).
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    pub async fn insert(&self, key: String, entry: Arc<Entry>) {
        self.cache.insert(key, entry).await;
    }

    pub async fn remove(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Drops every entry whose path matches, now: one walk over the keys per invalidation
    /// instead of a predicate moka would run on every read. Entries a fetch inserts while the
    /// walk runs are caught by the fetch's own epoch check (`server::fetch`).
    pub async fn invalidate(&self, matcher: &PathMatcher) {
        self.invalidate_matching(std::slice::from_ref(matcher))
            .await;
    }

    /// [`Store::invalidate`] for a whole batch in a single walk: exact paths are a set lookup
    /// per key, prefixes a comparison each.
    pub async fn invalidate_matching(&self, matchers: &[PathMatcher]) {
        let mut exact = std::collections::HashSet::new();
        let mut prefixes = Vec::new();
        for m in matchers {
            match m {
                PathMatcher::Exact(p) => {
                    self.cache.invalidate(p.as_str()).await;
                    exact.insert(p.as_str());
                }
                PathMatcher::Prefix(p) => prefixes.push(p.as_str()),
            }
        }
        let doomed: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(k, _)| {
                let path = super::key::key_path(k);
                exact.contains(path) || prefixes.iter().any(|p| path.starts_with(p))
            })
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            self.cache.invalidate(k.as_str()).await;
        }
    }

    /// Copies every live entry of `other` into this store (a resize on reload keeps the cache).
    pub async fn absorb(&self, other: &Store) {
        for (k, v) in other.cache.iter() {
            self.cache.insert(k.as_ref().clone(), v).await;
        }
    }

    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs moka's pending maintenance (eviction, counters); for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::StaleWindows;
    use bytes::Bytes;

    fn entry(len: usize, ttl: u64) -> Arc<Entry> {
        Arc::new(Entry::whole(
            &http::HeaderMap::new(),
            Bytes::from(vec![b'x'; len]),
            Duration::from_secs(ttl),
            StaleWindows::default(),
            Instant::now(),
        ))
    }

    #[tokio::test]
    async fn stores_and_invalidates_exact_and_prefix() {
        let s = Store::new(1 << 20);
        for k in [
            "/a.txt",
            "/a.txt\u{1}v=1",
            "/img/1.png",
            "/img/2.png",
            "/imgx",
        ] {
            s.insert(k.to_string(), entry(10, 60)).await;
        }
        assert!(s.get("/a.txt").await.is_some());
        s.invalidate(&PathMatcher::parse("/a.txt").expect("p"))
            .await;
        assert!(s.get("/a.txt").await.is_none());
        assert!(s.get("/a.txt\u{1}v=1").await.is_none());
        s.invalidate(&PathMatcher::parse("/img/*").expect("p"))
            .await;
        assert!(s.get("/img/1.png").await.is_none());
        assert!(s.get("/img/2.png").await.is_none());
        assert!(s.get("/imgx").await.is_some());
    }

    #[tokio::test]
    async fn a_batch_is_applied_in_one_walk() {
        let s = Store::new(1 << 20);
        for k in ["/a", "/a\u{1}q=1", "/b", "/img/x", "/img/y", "/keep"] {
            s.insert(k.to_string(), entry(10, 60)).await;
        }
        let batch = ["/a", "/b", "/img/*"].map(|p| PathMatcher::parse(p).expect("p"));
        s.invalidate_matching(&batch).await;
        for gone in ["/a", "/a\u{1}q=1", "/b", "/img/x", "/img/y"] {
            assert!(s.get(gone).await.is_none(), "{gone}");
        }
        assert!(s.get("/keep").await.is_some());
    }

    #[tokio::test]
    async fn weighted_by_bytes() {
        let s = Store::new(100_000);
        for i in 0..200 {
            s.insert(format!("/k{i}"), entry(1000, 60)).await;
        }
        s.run_pending_tasks().await;
        assert!(s.weighted_size() <= 100_000, "{}", s.weighted_size());
        assert!(s.entry_count() < 100, "{}", s.entry_count());
    }

    #[tokio::test]
    async fn entries_expire_after_ttl_plus_stale() {
        let s = Store::new(1 << 20);
        s.insert("/gone".into(), entry(1, 0)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(s.get("/gone").await.is_none());
    }
}
