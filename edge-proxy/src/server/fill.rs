//! One origin GET turned into something a viewer can be answered from: a new entry (or a
//! negative one), a refreshed entry after a 304, or a pass-through stream when the object is
//! larger than `maxObjectSize`. Failures are returned, never stored here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};

use super::{Edge, Generation};
use crate::cache::Entry;
use crate::origin::{ObjectMeta, OriginBody, OriginError, OriginRequest, OriginStatus, Validators};
use crate::policy::freshness::{self, CacheControl, Decision, OriginFreshness, TtlPolicy};

/// How a fetched answer relates to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// New body from the origin, to be stored.
    Stored,
    /// New body, not stored (no-store/private, or invalidated meanwhile).
    NotStored,
    /// 304 from the origin: the stale entry was refreshed.
    Refreshed,
    /// 304 that now says no-store/private: served once, the stored entry is dropped.
    RefreshedDropped,
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

/// Fetches `path` (conditionally with `validators` when a stale entry exists) and classifies
/// the answer. `answered` is called once the origin's answer (or failure) is in.
pub async fn fill(
    edge: &Edge,
    generation: &Generation,
    path: &str,
    validators: Validators,
    stale: Option<&Entry>,
    answered: impl FnOnce(),
) -> FetchResult {
    let settings = &generation.settings;
    let started = Instant::now();
    let request_time = SystemTime::now();
    let res = generation
        .origin
        .fetch(OriginRequest {
            validators,
            ..OriginRequest::get(path)
        })
        .await;
    answered();
    edge.metrics
        .origin_duration
        .observe(started.elapsed().as_secs_f64());
    let resp = match res {
        Ok(r) => r,
        Err(e) => {
            origin_failed(edge, path, &e);
            return Err(e);
        }
    };
    edge.mark_ready();
    edge.health.success();
    let response_time = SystemTime::now();
    let now = Instant::now();
    let policy = settings.ttl.for_path(path);
    match resp.status {
        OriginStatus::NotModified => {
            count_origin(edge, "not_modified");
            let Some(old) = stale else {
                return Err(OriginError::status(502, "304 to an unconditional request"));
            };
            let mut meta = resp.meta;
            if meta.cache_control.is_none() && meta.expires.is_none() {
                let stored = old.stored_meta();
                meta.cache_control = stored.cache_control;
                meta.expires = stored.expires;
            }
            let fresh = origin_freshness(&meta);
            let (ttl, kind) = match freshness::decide(policy, &fresh, SystemTime::now()) {
                Decision::Store { ttl } => (ttl, FetchKind::Refreshed),
                Decision::Bypass => (Duration::ZERO, FetchKind::RefreshedDropped),
            };
            let rules = stale_rules(generation, policy, &fresh);
            let entry = old
                .refreshed(&meta, ttl, rules, now)
                .with_initial_age(initial_age(&meta, request_time, response_time));
            Ok(Arc::new(Fetched::Entry {
                entry: Arc::new(entry),
                kind,
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
            let Some(body) = resp.body else {
                return Err(OriginError::Body("origin sent no body".into()));
            };
            let max = settings.max_object_size;
            if meta.content_length.is_some_and(|n| n > max) {
                generation.misses.large.insert(path.to_owned(), ());
                return Ok(pass_through(meta, Bytes::new(), body));
            }
            let deadline = tokio::time::Instant::now() + settings.fill_timeout;
            let buffered = match tokio::time::timeout_at(deadline, buffer(body, &meta, max)).await {
                Err(_) => Err(OriginError::Timeout(format!(
                    "body not received within {} s (origin.timeouts.total)",
                    settings.fill_timeout.as_secs()
                ))),
                Ok(r) => r,
            };
            let buf = match buffered {
                Ok(Buffered::Whole(b)) => b,
                Ok(Buffered::TooLarge(prefix, rest)) => {
                    generation.misses.large.insert(path.to_owned(), ());
                    return Ok(pass_through(meta, prefix, rest));
                }
                Err(e) => {
                    count_origin_error(edge, "body");
                    edge.health.failure(path, &e);
                    return Err(e);
                }
            };
            let fresh = origin_freshness(&meta);
            let (ttl, kind) = match freshness::decide(policy, &fresh, SystemTime::now()) {
                Decision::Store { ttl } => (ttl, FetchKind::Stored),
                Decision::Bypass => (Duration::ZERO, FetchKind::NotStored),
            };
            let rules = stale_rules(generation, policy, &fresh);
            let entry = Entry::from_origin(&meta, buf, ttl, rules, now)
                .with_initial_age(initial_age(&meta, request_time, response_time));
            Ok(Arc::new(Fetched::Entry {
                entry: Arc::new(entry),
                kind,
            }))
        }
        OriginStatus::PartialContent
        | OriginStatus::PreconditionFailed
        | OriginStatus::RangeNotSatisfiable => Err(OriginError::status(
            502,
            "conditional answer to an unconditional fetch",
        )),
    }
}

enum Buffered {
    Whole(Bytes),
    /// Over the size cap (length undeclared): what was read, and the rest of the stream.
    TooLarge(Bytes, OriginBody),
}

/// Reads a cacheable body whole; a short body is an error, never an entry.
async fn buffer(
    mut body: OriginBody,
    meta: &ObjectMeta,
    max: u64,
) -> Result<Buffered, OriginError> {
    let declared = meta.content_length;
    let mut buf = BytesMut::with_capacity(declared.map_or(16 * 1024, |n| n as usize));
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > max {
            return Ok(Buffered::TooLarge(buf.freeze(), body));
        }
    }
    if let Some(n) = declared {
        if n != buf.len() as u64 {
            return Err(OriginError::Body(format!(
                "truncated body: {} of {n} bytes",
                buf.len()
            )));
        }
    }
    // `buf` was allocated for exactly this body, so the stored Bytes pins no oversized
    // network buffer.
    Ok(Buffered::Whole(buf.freeze()))
}

/// Counts and reports a failed origin fetch (metrics by kind and by S3 code, health, a
/// rate-limited warning).
pub fn origin_failed(edge: &Edge, path: &str, e: &OriginError) {
    count_origin(edge, "error");
    count_origin_error(edge, e.kind());
    edge.metrics
        .origin_error_codes
        .get_or_create(&super::metrics::CodeLabels { code: e.code() })
        .inc();
    edge.health.failure(path, e);
}

fn stale_rules(
    generation: &Generation,
    policy: &TtlPolicy,
    fresh: &OriginFreshness,
) -> freshness::StaleRules {
    let w = &generation.settings.windows;
    freshness::stale_rules(
        fresh.cache_control.as_ref(),
        w.stale_if_error,
        w.stale_while_revalidate,
        policy.max,
    )
}

fn initial_age(meta: &ObjectMeta, request_time: SystemTime, response_time: SystemTime) -> Duration {
    let date = meta
        .date
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    freshness::corrected_initial_age(meta.age, date, request_time, response_time)
}

fn pass_through(meta: ObjectMeta, prefix: Bytes, rest: OriginBody) -> Arc<Fetched> {
    let pass = Box::new(PassThrough { meta, prefix, rest });
    Arc::new(Fetched::Stream(Mutex::new(Some(pass))))
}

pub fn count_origin(edge: &Edge, outcome: &'static str) {
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
        date: meta
            .date
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> OriginBody {
        let items: Vec<Result<Bytes, OriginError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn buffers_whole_bodies_and_rejects_short_ones() {
        let meta = ObjectMeta {
            content_length: Some(6),
            ..ObjectMeta::default()
        };
        match buffer(body(&[b"abc", b"def"]), &meta, 100).await {
            Ok(Buffered::Whole(b)) => assert_eq!(&b[..], b"abcdef"),
            _ => panic!("whole body expected"),
        }
        let err = buffer(body(&[b"abc"]), &meta, 100).await.err();
        assert!(matches!(err, Some(OriginError::Body(_))), "{err:?}");
    }

    #[tokio::test]
    async fn undeclared_oversized_bodies_turn_into_streams() {
        let meta = ObjectMeta::default();
        match buffer(body(&[b"abc", b"def", b"ghi"]), &meta, 4).await {
            Ok(Buffered::TooLarge(prefix, mut rest)) => {
                assert_eq!(&prefix[..], b"abcdef");
                let next = rest.next().await.and_then(Result::ok);
                assert_eq!(next.as_deref(), Some(&b"ghi"[..]));
            }
            _ => panic!("stream expected"),
        }
    }
}
