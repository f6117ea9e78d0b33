//! Origin fetches with request collapsing: concurrent misses on one key share a single origin
//! GET run in its own task (so it survives viewers hanging up). The result is stored before the
//! in-flight slot is released; failures reach every waiter at once and leave nothing behind.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};

use super::{Edge, Generation};
use crate::cache::Entry;
use crate::origin::{ObjectMeta, OriginBody, OriginError, OriginRequest, OriginStatus, Validators};
use crate::policy::freshness::{self, CacheControl, Decision, OriginFreshness};

/// How a fetched answer relates to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// New body from the origin, stored.
    Stored,
    /// New body, not stored (no-store/private, or invalidated meanwhile).
    NotStored,
    /// 304 from the origin: the stale entry was refreshed.
    Refreshed,
}

/// An origin body too large to cache, handed to whichever request takes it first.
pub struct PassThrough {
    pub meta: ObjectMeta,
    pub prefix: Bytes,
    pub rest: OriginBody,
}

pub enum Fetched {
    Entry { entry: Arc<Entry>, kind: FetchKind },
    Stream(Mutex<Option<Box<PassThrough>>>),
}

pub type FetchResult = Result<Arc<Fetched>, OriginError>;
type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

/// Origin fetches in progress, by cache key.
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<String, SharedFetch>>,
}

impl Inflight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SharedFetch>> {
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

/// Removes the in-flight slot when the fetch task ends, however it ends.
struct SlotGuard {
    edge: Arc<Edge>,
    key: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.edge.inflight.lock().remove(&self.key);
    }
}

/// Joins or starts the fetch for `key`. Returns the result and whether this request joined a
/// fetch another request had started.
pub async fn fetch_collapsed(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
) -> (FetchResult, bool) {
    let (fut, collapsed) = join_or_start(edge, generation, key, stale);
    if collapsed {
        edge.metrics.collapsed.inc();
    }
    let wait = generation.settings.collapse_wait;
    match tokio::time::timeout(wait, fut).await {
        Ok(r) => (r, collapsed),
        Err(_) => (
            Err(OriginError::Timeout(
                "waited too long for the origin fetch".into(),
            )),
            collapsed,
        ),
    }
}

/// Starts a background refresh for `key` unless one is already running.
pub fn refresh_in_background(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Arc<Entry>,
) {
    let (fut, collapsed) = join_or_start(edge, generation, key, Some(stale));
    if !collapsed {
        // The task runs on its own; nothing needs the result here.
        drop(fut);
    }
}

fn join_or_start(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    key: &str,
    stale: Option<Arc<Entry>>,
) -> (SharedFetch, bool) {
    let mut map = edge.inflight.lock();
    if let Some(f) = map.get(key) {
        return (f.clone(), true);
    }
    let guard = SlotGuard {
        edge: edge.clone(),
        key: key.to_owned(),
    };
    let task = tokio::spawn(run_fetch(edge.clone(), generation.clone(), guard, stale));
    let fut: SharedFetch = async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(OriginError::Other(format!("fetch task failed: {e}"))),
        }
    }
    .boxed()
    .shared();
    map.insert(key.to_owned(), fut.clone());
    (fut, false)
}

async fn run_fetch(
    edge: Arc<Edge>,
    generation: Arc<Generation>,
    guard: SlotGuard,
    stale: Option<Arc<Entry>>,
) -> FetchResult {
    let key = guard.key.as_str();
    let epoch = edge.invalidation_epoch.load(Ordering::Acquire);
    let path = crate::cache::key::key_path(key).to_owned();
    let validators = stale
        .as_ref()
        .filter(|e| !e.is_negative())
        .map(|e| e.validators())
        .unwrap_or_default();
    let result = fetch_entry(&edge, &generation, &path, validators, stale.as_deref()).await;
    if let Ok(fetched) = &result {
        if let Fetched::Entry {
            entry,
            kind: FetchKind::Stored | FetchKind::Refreshed,
        } = &**fetched
        {
            if edge.invalidation_epoch.load(Ordering::Acquire) == epoch {
                generation.store.insert(key.to_owned(), entry.clone()).await;
            }
        }
    }
    drop(guard);
    result
}

/// One origin GET turned into something the viewer can be answered from.
async fn fetch_entry(
    edge: &Edge,
    generation: &Generation,
    path: &str,
    validators: Validators,
    stale: Option<&Entry>,
) -> FetchResult {
    let settings = &generation.settings;
    let started = Instant::now();
    let res = generation
        .origin
        .fetch(OriginRequest {
            path: path.to_owned(),
            head: false,
            validators,
        })
        .await;
    edge.metrics
        .origin_duration
        .observe(started.elapsed().as_secs_f64());
    let resp = match res {
        Ok(r) => r,
        Err(e) => {
            count_origin(edge, "error");
            edge.metrics
                .origin_errors
                .get_or_create(&super::metrics::KindLabels { kind: e.kind() })
                .inc();
            tracing::warn!(path, error = %e, "origin fetch failed");
            return Err(e);
        }
    };
    edge.mark_ready();
    let now = Instant::now();
    let policy = settings.ttl.for_path(path);
    match resp.status {
        OriginStatus::NotModified => {
            count_origin(edge, "not_modified");
            let Some(old) = stale else {
                return Err(OriginError::Status {
                    status: 304,
                    message: "304 to an unconditional request".into(),
                });
            };
            let mut meta = resp.meta;
            if meta.cache_control.is_none() && meta.expires.is_none() {
                let stored = old.stored_meta();
                meta.cache_control = stored.cache_control;
                meta.expires = stored.expires;
            }
            let ttl = match freshness::decide(policy, &origin_freshness(&meta), SystemTime::now()) {
                Decision::Store { ttl } => ttl,
                Decision::Bypass => Duration::ZERO,
            };
            let entry = Arc::new(old.refreshed(&meta, ttl, settings.windows, now));
            Ok(Arc::new(Fetched::Entry {
                entry,
                kind: FetchKind::Refreshed,
            }))
        }
        OriginStatus::NotFound | OriginStatus::Forbidden => {
            let (code, outcome, text) = if resp.status == OriginStatus::NotFound {
                (StatusCode::NOT_FOUND, "not_found", "404 Not Found\n")
            } else {
                (StatusCode::FORBIDDEN, "forbidden", "403 Forbidden\n")
            };
            count_origin(edge, outcome);
            let ttl = settings
                .error_response(code.as_u16())
                .and_then(|e| e.ttl)
                .map_or(settings.negative_ttl, |d| d.as_duration());
            let entry = Arc::new(Entry::negative(
                code,
                Bytes::from_static(text.as_bytes()),
                HeaderValue::from_static("text/plain; charset=utf-8"),
                ttl,
                now,
            ));
            let kind = if ttl.is_zero() {
                FetchKind::NotStored
            } else {
                FetchKind::Stored
            };
            Ok(Arc::new(Fetched::Entry { entry, kind }))
        }
        OriginStatus::Ok => {
            count_origin(edge, "ok");
            let meta = resp.meta;
            let Some(mut body) = resp.body else {
                return Err(OriginError::Body("origin sent no body".into()));
            };
            let max = settings.max_object_size;
            if meta.content_length.is_some_and(|n| n > max) {
                return Ok(pass_through(meta, Bytes::new(), body));
            }
            let declared = meta.content_length;
            let mut buf = BytesMut::with_capacity(declared.map_or(16 * 1024, |n| n as usize));
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if (buf.len() + chunk.len()) as u64 > max {
                    // Unknown length and over the limit: stream the rest through.
                    buf.extend_from_slice(&chunk);
                    return Ok(pass_through(meta, buf.freeze(), body));
                }
                buf.extend_from_slice(&chunk);
            }
            if let Some(n) = declared {
                if n != buf.len() as u64 {
                    count_origin_error(edge, "body");
                    return Err(OriginError::Body(format!(
                        "truncated body: {} of {n} bytes",
                        buf.len()
                    )));
                }
            }
            let decision = freshness::decide(policy, &origin_freshness(&meta), SystemTime::now());
            let (ttl, kind) = match decision {
                Decision::Store { ttl } => (ttl, FetchKind::Stored),
                Decision::Bypass => (Duration::ZERO, FetchKind::NotStored),
            };
            // `buf` was allocated for exactly this body, so the stored Bytes pins no
            // oversized network buffer.
            let entry = Arc::new(Entry::from_origin(
                &meta,
                buf.freeze(),
                ttl,
                settings.windows,
                now,
            ));
            Ok(Arc::new(Fetched::Entry { entry, kind }))
        }
    }
}

fn pass_through(meta: ObjectMeta, prefix: Bytes, rest: OriginBody) -> Arc<Fetched> {
    let pass = Box::new(PassThrough { meta, prefix, rest });
    Arc::new(Fetched::Stream(Mutex::new(Some(pass))))
}

fn count_origin(edge: &Edge, outcome: &'static str) {
    edge.metrics
        .origin_requests
        .get_or_create(&super::metrics::OutcomeLabels { outcome })
        .inc();
}

fn count_origin_error(edge: &Edge, kind: &'static str) {
    edge.metrics
        .origin_errors
        .get_or_create(&super::metrics::KindLabels { kind })
        .inc();
}

/// Freshness inputs from origin metadata.
pub fn origin_freshness(meta: &ObjectMeta) -> OriginFreshness {
    OriginFreshness {
        cache_control: meta
            .cache_control
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(CacheControl::parse),
        expires: meta.expires.as_ref().map(|v| {
            v.to_str()
                .map_or(SystemTime::UNIX_EPOCH, freshness::parse_expires)
        }),
        date: None,
    }
}

/// An uncollapsed fetch for a request that lost the race for a pass-through stream.
pub async fn fetch_direct(
    generation: &Generation,
    path: &str,
) -> Result<crate::origin::OriginResponse, OriginError> {
    generation
        .origin
        .fetch(OriginRequest {
            path: path.to_owned(),
            head: false,
            validators: Validators::default(),
        })
        .await
}
