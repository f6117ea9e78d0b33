//! Request collapsing: concurrent misses on one key (an object, or one slice of it) share a
//! single origin fetch run in its own task (so it survives viewers hanging up). The shared
//! result is ready as soon as the origin's headers are in; its body keeps filling in that task
//! and every waiter reads the same fill from byte 0, however late it joined. Waiters wait for
//! the origin's answer at most about the first-byte timeout, then serve stale or fetch on their
//! own. Results are stored under an invalidation-epoch check that no interleaving can defeat;
//! failures reach every waiter at once, leave cached objects untouched, and are remembered
//! briefly (error caching).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::watch;

pub use super::fill::{FetchKind, FetchResult, Fetched, PassThrough, Target};
use super::{CachedError, Edge, Generation};
use crate::cache::Entry;
use crate::origin::OriginError;

type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

/// One fetch in flight (headers awaited or body still filling).
struct Slot {
    id: u64,
    /// Invalidation epoch when it started: later requests never join an older fetch.
    epoch: u64,
    fut: SharedFetch,
    /// Turns true once the origin answered (headers or failure).
    answered: watch::Receiver<bool>,
}

/// Origin fetches in progress, by cache key.
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<String, Slot>>,
    next_id: AtomicU64,
}

impl Inflight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so recover from poisoning instead of failing every request.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the in-flight slot when the fetch (its body included) ends, however it ends (only
/// its own slot: a newer fetch may have replaced it after an invalidation). Dropped after the
/// result is stored, so a request finds either the slot or the stored entry.
struct SlotGuard {
    edge: Arc<Edge>,
    key: String,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut map = self.edge.inflight.lock();
        if map.get(&self.key).is_some_and(|s| s.id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// What a request got from the collapsed fetch.
pub enum Collapsed {
    Done(FetchResult),
    /// This request joined another's fetch whose origin did not answer within the header
    /// wait: serve stale or fetch on your own ([`fetch_alone`]).
    GaveUp,
}

/// Joins or starts the fetch of `key` (slice 0 first). Returns the outcome and whether this
/// request joined a fetch another request had started.
pub async fn fetch_collapsed(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
) -> (Collapsed, bool) {
    fetch_collapsed_as(edge, generation, key, stale, Target::object(0)).await
}

/// [`fetch_collapsed`] asking the origin for `target` when this request starts the fetch.
pub async fn fetch_collapsed_as(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
    target: Target,
) -> (Collapsed, bool) {
    // Never declines: the store is not consulted here.
    let Some((fut, mut answered, collapsed)) =
        join_or_start(edge, generation, key, stale, target, false)
    else {
        let e = OriginError::Other("collapsed fetch declined".into());
        return (Collapsed::Done(Err(e)), false);
    };
    let settings = &generation.settings;
    if collapsed {
        edge.metrics.collapsed.inc();
        let waited = tokio::time::timeout(settings.header_wait, answered.wait_for(|a| *a)).await;
        // Err(Elapsed): no answer yet. Ok(Err): the fetch ended (its sender dropped).
        if waited.is_err() {
            edge.metrics.collapse_gave_up.inc();
            return (Collapsed::GaveUp, true);
        }
    }
    match tokio::time::timeout(settings.collapse_wait, fut).await {
        Ok(r) => (Collapsed::Done(r), collapsed),
        Err(_) => (
            Collapsed::Done(Err(OriginError::Timeout(
                "waited too long for the origin fetch".into(),
            ))),
            collapsed,
        ),
    }
}

/// Joins or starts the fetch of slice `index` (stored under `key`) of the object `head`
/// describes. `None`: the slice was stored a moment ago; look it up again.
pub async fn fetch_slice(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    index: u64,
    head: Arc<Entry>,
) -> Option<FetchResult> {
    let target = Target::Slice { index, head };
    let (fut, _, collapsed) = join_or_start(edge, generation, key, None, target, true)?;
    if collapsed {
        edge.metrics.collapsed.inc();
    }
    let waited = tokio::time::timeout(generation.settings.collapse_wait, fut).await;
    Some(waited.unwrap_or_else(|_| {
        Err(OriginError::Timeout(
            "waited too long for a slice fetch".into(),
        ))
    }))
}

/// An uncollapsed fetch for a waiter that gave up on a slow shared one; stored like any other.
pub async fn fetch_alone(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
    target: Target,
) -> FetchResult {
    let epoch = edge.invalidation_epoch.load(Ordering::SeqCst);
    run_fetch(edge, generation, key, stale, target, epoch, || {}, None).await
}

/// Starts a background refresh for `key` unless one is already running.
pub fn refresh_in_background(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Arc<Entry>,
) {
    // The task runs on its own; nothing needs the result here.
    drop(join_or_start(
        edge,
        generation,
        key,
        Some(stale),
        Target::object(0),
        false,
    ));
}

/// The shared fetch of `key`, joined or started. With `check_store`, declines (`None`) when
/// no fetch is in flight but the key is stored: the slot of a finished fetch is removed only
/// after its result is stored, so this closes the gap between a store miss and joining.
fn join_or_start(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
    target: Target,
    check_store: bool,
) -> Option<(SharedFetch, watch::Receiver<bool>, bool)> {
    let epoch = edge.invalidation_epoch.load(Ordering::SeqCst);
    let mut map = edge.inflight.lock();
    if let Some(slot) = map.get(key).filter(|s| s.epoch == epoch) {
        return Some((slot.fut.clone(), slot.answered.clone(), true));
    }
    if check_store && generation.storage().contains(key) {
        return None;
    }
    let id = edge.inflight.next_id.fetch_add(1, Ordering::Relaxed);
    let guard = SlotGuard {
        edge: edge.clone(),
        key: key.to_owned(),
        id,
    };
    let (tx, rx) = watch::channel(false);
    let (edge2, generation2) = (edge.clone(), generation.clone());
    let task = tokio::spawn(async move {
        let key = guard.key.clone();
        let answered = move || {
            let _ = tx.send(true);
        };
        run_fetch(
            &edge2,
            &generation2,
            &key,
            stale,
            target,
            epoch,
            answered,
            Some(guard),
        )
        .await
    });
    let fut: SharedFetch = async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(OriginError::Other(format!("fetch task failed: {e}"))),
        }
    }
    .boxed()
    .shared();
    map.insert(
        key.to_owned(),
        Slot {
            id,
            epoch,
            fut: fut.clone(),
            answered: rx.clone(),
        },
    );
    Some((fut, rx, false))
}

/// Fetches, stores what needs no body, and leaves a streaming body to a pump task that stores
/// its entries when complete and only then releases the slot (`guard`).
#[allow(clippy::too_many_arguments)]
async fn run_fetch(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
    target: Target,
    epoch: u64,
    answered: impl FnOnce(),
    guard: Option<SlotGuard>,
) -> FetchResult {
    let filled =
        super::fill::fill(edge, generation, key, &target, stale.as_deref(), answered).await;
    let result = filled.result;
    match &result {
        Ok(fetched) => {
            generation.misses.errors.invalidate(key);
            match (&**fetched, &filled.pump) {
                (Fetched::Entry { entry, kind, .. }, None) => match kind {
                    FetchKind::Stored | FetchKind::Refreshed => {
                        store_checked(edge, generation, key, entry.clone(), epoch).await;
                    }
                    FetchKind::RefreshedDropped => generation.storage().remove(key).await,
                    FetchKind::NotStored | FetchKind::Private => {}
                },
                (Fetched::Changed, _) => {
                    tracing::debug!(key, "object changed under its slices");
                }
                _ => {}
            }
        }
        Err(e) => remember_error(generation, key, e),
    }
    if let Some(pump) = filled.pump {
        let (edge, generation) = (edge.clone(), generation.clone());
        let path = crate::cache::key::key_path(key).to_owned();
        tokio::spawn(async move {
            if let Some(entries) = pump.run(&edge, &path).await {
                for (k, e) in entries {
                    if !store_checked(&edge, &generation, &k, e, epoch).await {
                        break;
                    }
                }
            }
            drop(guard);
        });
    }
    result
}

/// Stores `entry` unless an invalidation happened since the fetch began. The epoch is read
/// again after the insert: an invalidation that bumped it in between either is seen here (and
/// the entry removed) or runs its removal after the insert (and removes it itself).
async fn store_checked(
    edge: &Edge,
    generation: &Generation,
    key: &str,
    entry: Arc<Entry>,
    epoch: u64,
) -> bool {
    if edge.invalidation_epoch.load(Ordering::SeqCst) != epoch {
        return false;
    }
    let storage = generation.storage();
    storage.insert(key.to_owned(), entry).await;
    if edge.invalidation_epoch.load(Ordering::SeqCst) != epoch {
        storage.remove(key).await;
        return false;
    }
    true
}

/// Error caching: the failure is remembered for keys that have no stale copy to serve.
fn remember_error(generation: &Generation, key: &str, e: &OriginError) {
    let ttl = generation
        .settings
        .error_ttl_for(e.viewer_status().as_u16());
    if ttl.is_zero() {
        return;
    }
    generation.misses.errors.insert(
        key.to_owned(),
        CachedError {
            error: e.clone(),
            until: Instant::now() + ttl,
        },
    );
}

/// A remembered origin failure for `key`, if still current.
pub fn cached_error(generation: &Generation, key: &str) -> Option<OriginError> {
    generation
        .misses
        .errors
        .get(key)
        .filter(|c| c.until > Instant::now())
        .map(|c| c.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EdgeConfig;
    use crate::origin::{ObjectMeta, OriginClient, OriginRequest, OriginResponse, OriginStatus};
    use crate::server::Settings;
    use bytes::Bytes;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// An origin that reads the object when asked, then holds its answer until released.
    struct GatedOrigin {
        body: Mutex<Bytes>,
        calls: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl OriginClient for GatedOrigin {
        fn fetch(&self, _req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
            let body = self.body.lock().unwrap_or_else(|p| p.into_inner()).clone();
            self.calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let _permit = self.gate.acquire().await;
                let chunk: Result<Bytes, OriginError> = Ok(body.clone());
                Ok(OriginResponse {
                    status: OriginStatus::Ok,
                    meta: ObjectMeta {
                        content_length: Some(body.len() as u64),
                        cache_control: Some(http::HeaderValue::from_static("max-age=600")),
                        ..ObjectMeta::default()
                    },
                    body: Some(Box::pin(futures::stream::iter([chunk]))),
                })
            }
            .boxed()
        }

        fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
            async { Ok(()) }.boxed()
        }
    }

    fn edge(origin: Arc<GatedOrigin>, header_wait: Duration) -> Arc<Edge> {
        let mut settings = Settings::new(EdgeConfig::for_bucket("bkt"));
        settings.header_wait = header_wait;
        let generation = Generation::new(settings, origin, crate::cache::Store::new(1 << 20));
        Arc::new(Edge::new(generation, None, None))
    }

    fn origin(body: &'static str) -> Arc<GatedOrigin> {
        Arc::new(GatedOrigin {
            body: Mutex::new(Bytes::from_static(body.as_bytes())),
            calls: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        })
    }

    async fn wait_calls(o: &GatedOrigin, n: usize) {
        while o.calls.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The whole body of an entry, following its fill if it is still filling.
    async fn read_all(e: &Entry) -> Bytes {
        match &e.body {
            crate::cache::Body::Bytes(b) => b.clone(),
            crate::cache::Body::Filling(f) => {
                let mut r = f.reader(0, f.len());
                let mut out = Vec::new();
                while let Some(c) = futures::StreamExt::next(&mut r).await {
                    out.extend_from_slice(&c.expect("whole fill"));
                }
                Bytes::from(out)
            }
            crate::cache::Body::Sliced { .. } => Bytes::new(),
        }
    }

    async fn body_of(r: &Collapsed) -> Option<Bytes> {
        match r {
            Collapsed::Done(Ok(f)) => match &**f {
                Fetched::Entry { entry, .. } => Some(read_all(entry).await),
                _ => None,
            },
            _ => None,
        }
    }

    /// Waits until every fetch (bodies included) has finished and stored its result.
    async fn settled(e: &Edge) {
        while !e.inflight.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_invalidation_during_a_fetch_is_never_undone() {
        for release_old_first in [true, false] {
            let o = origin("old");
            let e = edge(o.clone(), Duration::from_secs(5));
            let g = e.current.load_full();
            let first = tokio::spawn({
                let (e, g) = (e.clone(), g.clone());
                async move { fetch_collapsed(&e, &g, "/x", None).await }
            });
            wait_calls(&o, 1).await;
            // The object changes and is invalidated while the fetch holds the old one.
            *o.body.lock().unwrap_or_else(|p| p.into_inner()) = Bytes::from_static(b"new");
            e.invalidation_epoch.fetch_add(1, Ordering::SeqCst);
            g.store
                .invalidate(&crate::cache::key::PathMatcher::parse("/x").expect("p"))
                .await;
            let second = tokio::spawn({
                let (e, g) = (e.clone(), g.clone());
                async move { fetch_collapsed(&e, &g, "/x", None).await }
            });
            wait_calls(&o, 2).await;
            if release_old_first {
                o.gate.add_permits(1);
                let (r, _) = first.await.expect("first");
                assert_eq!(body_of(&r).await.as_deref(), Some(&b"old"[..]));
                o.gate.add_permits(1);
            } else {
                o.gate.add_permits(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                o.gate.add_permits(1);
                first.await.expect("first");
            }
            let (r, joined) = second.await.expect("second");
            assert!(
                !joined,
                "must not join the fetch from before the invalidation"
            );
            assert_eq!(body_of(&r).await.as_deref(), Some(&b"new"[..]));
            settled(&e).await;
            let stored = g.store.get("/x").await.expect("stored");
            assert_eq!(
                stored.bytes().map(|b| &b[..]),
                Some(&b"new"[..]),
                "old first: {release_old_first}"
            );
            assert!(e.inflight.is_empty());
        }
    }

    #[tokio::test]
    async fn waiters_give_up_on_a_slow_origin_and_the_leader_still_stores() {
        let o = origin("body");
        let e = edge(o.clone(), Duration::from_millis(100));
        let g = e.current.load_full();
        let leader = tokio::spawn({
            let (e, g) = (e.clone(), g.clone());
            async move { fetch_collapsed(&e, &g, "/slow", None).await }
        });
        wait_calls(&o, 1).await;
        let started = std::time::Instant::now();
        let (r, joined) = fetch_collapsed(&e, &g, "/slow", None).await;
        assert!(joined);
        assert!(matches!(r, Collapsed::GaveUp));
        assert!(started.elapsed() < Duration::from_secs(2));
        o.gate.add_permits(1);
        let (r, joined) = leader.await.expect("leader");
        assert!(!joined);
        assert_eq!(body_of(&r).await.as_deref(), Some(&b"body"[..]));
        settled(&e).await;
        assert!(g.store.get("/slow").await.is_some());
    }

    /// An origin answering from a script, one answer per call.
    struct ScriptedOrigin {
        answers: Mutex<Vec<(OriginStatus, &'static str, &'static str)>>,
    }

    impl OriginClient for ScriptedOrigin {
        fn fetch(&self, _req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
            let next = self
                .answers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(0);
            async move {
                let (status, cc, body) = next;
                let chunk: Result<Bytes, OriginError> = Ok(Bytes::from_static(body.as_bytes()));
                Ok(OriginResponse {
                    status,
                    meta: ObjectMeta {
                        content_length: Some(body.len() as u64),
                        etag: Some(http::HeaderValue::from_static("\"e1\"")),
                        cache_control: Some(http::HeaderValue::from_static(cc)),
                        ..ObjectMeta::default()
                    },
                    body: (status == OriginStatus::Ok)
                        .then(|| Box::pin(futures::stream::iter([chunk])) as _),
                })
            }
            .boxed()
        }

        fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
            async { Ok(()) }.boxed()
        }
    }

    #[tokio::test]
    async fn a_304_that_says_no_store_drops_the_entry() {
        let o = Arc::new(ScriptedOrigin {
            answers: Mutex::new(vec![
                (OriginStatus::Ok, "max-age=0", "body"),
                (OriginStatus::NotModified, "max-age=60", ""),
                (OriginStatus::NotModified, "no-store", ""),
            ]),
        });
        let settings = Settings::new(EdgeConfig::for_bucket("bkt"));
        let generation = Generation::new(settings, o, crate::cache::Store::new(1 << 20));
        let e = Arc::new(Edge::new(generation, None, None));
        let g = e.current.load_full();
        let (r, _) = fetch_collapsed(&e, &g, "/o", None).await;
        assert_eq!(body_of(&r).await.as_deref(), Some(&b"body"[..]));
        settled(&e).await;
        let stale = g.store.get("/o").await.expect("stored, stale at once");
        let (r, _) = fetch_collapsed(&e, &g, "/o", Some(stale)).await;
        assert!(
            matches!(&r, Collapsed::Done(Ok(f)) if matches!(&**f, Fetched::Entry { kind: FetchKind::Refreshed, .. }))
        );
        let refreshed = g.store.get("/o").await.expect("refreshed");
        assert!(refreshed.is_fresh(Instant::now()));
        // The next 304 forbids storing: served once from the old body, then gone.
        let (r, _) = fetch_collapsed(&e, &g, "/o", Some(refreshed)).await;
        assert_eq!(body_of(&r).await.as_deref(), Some(&b"body"[..]));
        assert!(
            matches!(&r, Collapsed::Done(Ok(f)) if matches!(&**f, Fetched::Entry { kind: FetchKind::RefreshedDropped, .. }))
        );
        assert!(g.store.get("/o").await.is_none(), "dropped");
    }

    /// An S3-like origin that honours `Range` and `If-Match`, counting requests.
    struct RangeOrigin {
        body: Vec<u8>,
        etag: Mutex<&'static str>,
        calls: AtomicUsize,
    }

    impl OriginClient for RangeOrigin {
        fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let etag = *self.etag.lock().unwrap_or_else(|p| p.into_inner());
            let len = self.body.len() as u64;
            let (a, b) = req
                .range
                .as_ref()
                .and_then(|r| {
                    r.to_str()
                        .ok()?
                        .strip_prefix("bytes=")?
                        .split_once('-')
                        .map(|(a, b)| (a.parse::<u64>().ok(), b.parse::<u64>().ok()))
                })
                .and_then(|(a, b)| Some((a?, b?.min(len - 1))))
                .unwrap_or((0, len - 1));
            let mismatch = req.if_match.as_ref().is_some_and(|m| m != etag);
            let chunk: Result<Bytes, OriginError> =
                Ok(Bytes::copy_from_slice(&self.body[a as usize..=b as usize]));
            async move {
                if mismatch {
                    return Ok(OriginResponse {
                        status: OriginStatus::PreconditionFailed,
                        meta: ObjectMeta::default(),
                        body: None,
                    });
                }
                Ok(OriginResponse {
                    status: OriginStatus::PartialContent,
                    meta: ObjectMeta {
                        content_length: Some(b - a + 1),
                        content_range: http::HeaderValue::from_str(&format!("bytes {a}-{b}/{len}"))
                            .ok(),
                        etag: Some(http::HeaderValue::from_static(etag)),
                        cache_control: Some(http::HeaderValue::from_static("max-age=600")),
                        ..ObjectMeta::default()
                    },
                    body: Some(Box::pin(futures::stream::iter([chunk]))),
                })
            }
            .boxed()
        }

        fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
            async { Ok(()) }.boxed()
        }
    }

    #[tokio::test]
    async fn large_objects_are_fetched_as_slices_and_an_etag_change_is_caught() {
        use crate::cache::key::slice_key;
        let body: Vec<u8> = (0..250u32).map(|i| (i % 251) as u8).collect();
        let o = Arc::new(RangeOrigin {
            body: body.clone(),
            etag: Mutex::new("\"v1\""),
            calls: AtomicUsize::new(0),
        });
        let mut settings = Settings::new(EdgeConfig::for_bucket("bkt"));
        settings.slice_size = 100;
        let generation = Generation::new(settings, o.clone(), crate::cache::Store::new(1 << 20));
        let e = Arc::new(Edge::new(generation, None, None));
        let g = e.current.load_full();
        // A viewer range starting in slice 1: only slice 1 is asked for.
        let (r, _) = fetch_collapsed_as(&e, &g, "/big", None, Target::object(1)).await;
        let Collapsed::Done(Ok(f)) = r else {
            panic!("fetch failed")
        };
        let Fetched::Entry {
            entry: head,
            first: Some((1, slice)),
            ..
        } = &*f
        else {
            panic!("a sliced head with its first slice expected")
        };
        assert_eq!(head.len, 250);
        assert_eq!(head.slicing().map(|s| s.count()), Some(3));
        assert_eq!(&read_all(slice).await[..], &body[100..200]);
        settled(&e).await;
        assert!(g.store.get(&slice_key("/big", 1)).await.is_some());
        let stored_head = g.store.get("/big").await.expect("head stored");
        assert!(stored_head.slicing().is_some());
        // Another slice: its own fetch, stored under its own key.
        let r = fetch_slice(&e, &g, &slice_key("/big", 2), 2, head.clone())
            .await
            .expect("not stored yet")
            .expect("slice");
        let Fetched::Entry { entry, .. } = &*r else {
            panic!("slice entry expected")
        };
        assert_eq!(&read_all(entry).await[..], &body[200..250]);
        settled(&e).await;
        // Already stored: the collapsing layer says so instead of fetching again.
        assert!(fetch_slice(&e, &g, &slice_key("/big", 2), 2, head.clone())
            .await
            .is_none());
        // The object changes: the next slice is refused by If-Match, never spliced in.
        *o.etag.lock().unwrap_or_else(|p| p.into_inner()) = "\"v2\"";
        let r = fetch_slice(&e, &g, &slice_key("/big", 0), 0, head.clone())
            .await
            .expect("not stored")
            .expect("answer");
        assert!(matches!(&*r, Fetched::Changed));
        settled(&e).await;
        assert!(g.store.get(&slice_key("/big", 0)).await.is_none());
        assert_eq!(o.calls.load(Ordering::SeqCst), 3);
    }
}
