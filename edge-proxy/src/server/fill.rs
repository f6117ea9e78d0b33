//! One origin GET turned into something a viewer can be answered from, as soon as the origin's
//! headers are in: a new entry whose body is still filling (streamed to every reader as it
//! arrives), the head of a sliced object with its first slice, a negative entry, a refreshed
//! entry after a 304, or a pass-through stream when the object is larger than `maxObjectSize`.
//! The body itself is written by a [`Pump`] the fetch task runs afterwards. Failures are
//! returned, never stored here.
//!
//! Every cacheable miss asks the origin for one slice (`Range: bytes=i*S-(i+1)*S-1`, nginx
//! slice-module style): a small object comes back whole in that answer, a large one tells its
//! length in `Content-Range`, so the edge learns whether to slice without a HEAD round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};

use super::{Edge, Generation};
use crate::cache::key::{key_path, slice_key};
use crate::cache::slice::probe_range;
use crate::cache::{Body, Entry, Fill, FillWriter};
use crate::origin::{ObjectMeta, OriginBody, OriginError, OriginRequest, OriginStatus};
use crate::policy::freshness::{self, CacheControl, Decision, OriginFreshness, TtlPolicy};
use crate::policy::ranges::parse_content_range;

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
    /// Personal (`Set-Cookie`, `Cache-Control: private`): never stored, and only the request
    /// that started the fetch may have it; collapsed waiters fetch on their own.
    Private,
}

/// An origin body too large to cache, handed to whichever request takes it first.
pub struct PassThrough {
    pub meta: ObjectMeta,
    pub prefix: Bytes,
    pub rest: OriginBody,
}

pub enum Fetched {
    /// An entry to answer from; its body may still be filling. For a sliced object `entry` is
    /// the head (metadata, `Body::Sliced`) and `first` the slice fetched with it.
    Entry {
        entry: Arc<Entry>,
        kind: FetchKind,
        first: Option<(u64, Arc<Entry>)>,
    },
    Stream(Mutex<Option<Box<PassThrough>>>),
    /// Larger than `maxObjectSize` (or sliced and not storable), learned from a slice answer:
    /// the viewer's request is forwarded as is.
    Large,
    /// A slice answer shows the object is no longer the one the head describes (other ETag or
    /// length, or gone): the head is outdated.
    Changed,
}

pub type FetchResult = Result<Arc<Fetched>, OriginError>;

/// What to ask the origin for.
#[derive(Debug, Clone)]
pub enum Target {
    /// The object under its own key, starting with slice `Some(i)` (its length is learned
    /// from the answer); `None`: a plain GET (after a 416 to a slice probe).
    Object { first: Option<u64> },
    /// Slice `index` of the object `head` describes, under `If-Match` of its ETag.
    Slice { index: u64, head: Arc<Entry> },
}

impl Target {
    pub fn object(first: u64) -> Target {
        Target::Object { first: Some(first) }
    }
}

/// The rest of a streamed body: read from the origin into a fill, then the entries in
/// `commit` are stored (the one whose body is filling gets the finished bytes), in order.
pub struct Pump {
    pub body: OriginBody,
    pub writer: FillWriter,
    pub commit: Vec<(String, Arc<Entry>)>,
    pub store: bool,
}

/// An answer plus, when its body streams, the pump that fills it.
pub struct Filled {
    pub result: FetchResult,
    pub pump: Option<Pump>,
}

impl From<FetchResult> for Filled {
    fn from(result: FetchResult) -> Filled {
        Filled { result, pump: None }
    }
}

fn entry_result(
    entry: Arc<Entry>,
    kind: FetchKind,
    first: Option<(u64, Arc<Entry>)>,
) -> FetchResult {
    Ok(Arc::new(Fetched::Entry { entry, kind, first }))
}

/// Fetches `target` for `key` (conditionally when a stale entry exists) and classifies the
/// answer. `answered` is called once the origin's answer (or failure) is in.
pub async fn fill(
    edge: &Edge,
    generation: &Generation,
    key: &str,
    target: &Target,
    stale: Option<&Entry>,
    answered: impl FnOnce(),
) -> Filled {
    let settings = &generation.settings;
    let path = key_path(key);
    let mut req = OriginRequest::get(path);
    forward_key(&mut req, key);
    match target {
        Target::Object { first } => {
            if let Some(s) = stale.filter(|e| !e.is_negative()) {
                req.validators = s.validators();
            }
            req.range = first
                .and_then(|i| HeaderValue::from_str(&probe_range(settings.slice_size, i)).ok());
        }
        Target::Slice { index, head } => {
            let Some(slicing) = head.slicing() else {
                return Filled::from(Err(OriginError::Other("slice of an unsliced entry".into())));
            };
            let (start, end) = slicing.bounds(*index);
            req.range = HeaderValue::from_str(&format!("bytes={start}-{}", end - 1)).ok();
            // Every slice must come from the version the head describes.
            if head.etag.is_some() {
                req.if_match = head.etag.clone();
            } else {
                req.if_unmodified_since = head.last_modified_value.clone();
            }
        }
    }
    let started = Instant::now();
    let request_time = SystemTime::now();
    let res = generation.origin.fetch(req).await;
    answered();
    edge.metrics
        .origin_duration
        .observe(started.elapsed().as_secs_f64());
    let resp = match res {
        Ok(r) => r,
        Err(e) => {
            origin_failed(edge, path, &e);
            return Filled::from(Err(e));
        }
    };
    edge.mark_ready();
    edge.health.success();
    let mut resp = resp;
    strip_qualified(&mut resp.meta);
    let answer = Answer {
        edge,
        generation,
        key,
        policy: settings.ttl.for_path(path),
        now: Instant::now(),
        initial_age: initial_age(&resp.meta, request_time, SystemTime::now()),
    };
    match target {
        Target::Slice { index, head } => {
            count_origin(edge, "slice");
            answer.slice(*index, head, resp.status, resp.meta, resp.body)
        }
        Target::Object { .. } if is_private(&resp.meta) => {
            let filled = answer
                .object(stale, resp.status, resp.meta, resp.body)
                .await;
            private(filled)
        }
        Target::Object { first } => match resp.status {
            OriginStatus::RangeNotSatisfiable => {
                // Beyond the end of a smaller object, or an empty one: ask again from the
                // start, then without a range.
                count_origin(edge, "range_not_satisfiable");
                let next = Target::Object {
                    first: first.filter(|i| *i > 0).map(|_| 0),
                };
                if first.is_none() {
                    return Filled::from(Err(OriginError::status(502, "416 to a plain GET")));
                }
                Box::pin(fill(edge, generation, key, &next, stale, already_answered)).await
            }
            _ => {
                answer
                    .object(stale, resp.status, resp.meta, resp.body)
                    .await
            }
        },
    }
}

/// What the cache key holds beyond the path goes to the origin (HTTP origins use it): the
/// origin never sees a value that does not also pick the entry it answers for.
pub fn forward_key(req: &mut OriginRequest, key: &str) {
    req.query = crate::cache::key::key_query(key).map(str::to_owned);
    req.headers = crate::cache::key::key_headers(key)
        .filter_map(|(n, v)| {
            Some((
                http::HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
}

/// Whether an answer is meant for one request only: RFC 9111 §3.5 (a shared cache must not
/// store `private`), a `Set-Cookie` answer (personal), and `Vary: *` (§4.1: never a match).
fn is_private(meta: &ObjectMeta) -> bool {
    meta.other.contains_key(http::header::SET_COOKIE)
        || directives(meta).is_some_and(|c| c.private)
        || meta.other.get_all(http::header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|f| f.trim_ascii() == b"*")
        })
}

/// `filled` made personal: nothing of it is stored and its entry is marked [`FetchKind::Private`].
fn private(mut filled: Filled) -> Filled {
    if let Some(p) = &mut filled.pump {
        p.store = false;
    }
    if let Ok(f) = &filled.result {
        if let Fetched::Entry { entry, .. } = &**f {
            filled.result = entry_result(entry.clone(), FetchKind::Private, None);
        }
    }
    filled
}

/// The status and whole body of an answer other than 200/206 (a redirect, 204, 400…), read
/// within `limit`; a body over [`MAX_STATUS_BODY`] is refused rather than buffered.
pub async fn status_answer(
    code: u16,
    body: Option<OriginBody>,
    limit: Duration,
) -> Result<(StatusCode, Bytes), OriginError> {
    let status =
        StatusCode::from_u16(code).map_err(|_| OriginError::status(502, "invalid status code"))?;
    let Some(body) = body else {
        return Ok((status, Bytes::new()));
    };
    match tokio::time::timeout(limit, buffer(body, MAX_STATUS_BODY)).await {
        Ok(Ok(Buffered::Whole(b))) => Ok((status, b)),
        Ok(Ok(Buffered::TooLarge(..))) => Err(OriginError::status(
            502,
            format!("a {code} answer with a body over {MAX_STATUS_BODY} bytes"),
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(OriginError::Timeout(format!(
            "{code} body not received in time"
        ))),
    }
}

/// The largest body of an answer other than 200/206 the edge reads (redirect and error pages
/// are small; anything larger is refused rather than buffered).
const MAX_STATUS_BODY: u64 = 1 << 20;

/// The `answered` of a second request within one fetch (the first already reported); a plain
/// fn so the recursion instantiates `fill` once.
fn already_answered() {}

/// Shared context for classifying one origin answer.
struct Answer<'a> {
    edge: &'a Edge,
    generation: &'a Generation,
    key: &'a str,
    policy: &'a TtlPolicy,
    now: Instant,
    initial_age: Duration,
}

impl Answer<'_> {
    async fn object(
        &self,
        stale: Option<&Entry>,
        status: OriginStatus,
        mut meta: ObjectMeta,
        body: Option<OriginBody>,
    ) -> Filled {
        let settings = &self.generation.settings;
        let path = key_path(self.key);
        match status {
            OriginStatus::NotModified => {
                count_origin(self.edge, "not_modified");
                let Some(old) = stale else {
                    return Filled::from(Err(OriginError::status(
                        502,
                        "304 to an unconditional request",
                    )));
                };
                if meta.cache_control.is_none() && meta.expires.is_none() {
                    meta.cache_control = old.headers.get(http::header::CACHE_CONTROL).cloned();
                    meta.expires = old.headers.get(http::header::EXPIRES).cloned();
                }
                let fresh = origin_freshness(&meta);
                let (ttl, kind) = match self.decide(&fresh) {
                    Some(ttl) => (ttl, FetchKind::Refreshed),
                    None => (Duration::ZERO, FetchKind::RefreshedDropped),
                };
                let entry = old
                    .refreshed(&meta.headers(), ttl, self.rules(&fresh), self.now)
                    .with_initial_age(self.initial_age);
                entry_result(Arc::new(entry), kind, None).into()
            }
            OriginStatus::NotFound | OriginStatus::Forbidden => {
                let (code, outcome, text) = if status == OriginStatus::NotFound {
                    (StatusCode::NOT_FOUND, "not_found", "404 Not Found\n")
                } else {
                    (StatusCode::FORBIDDEN, "forbidden", "403 Forbidden\n")
                };
                count_origin(self.edge, outcome);
                let ttl = settings
                    .error_response(code.as_u16())
                    .and_then(|e| e.ttl)
                    .map_or(settings.negative_ttl, |d| d.as_duration());
                let entry = Arc::new(Entry::negative(
                    code,
                    Bytes::from_static(text.as_bytes()),
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    ttl,
                    self.now,
                ));
                let kind = if ttl.is_zero() {
                    FetchKind::NotStored
                } else {
                    FetchKind::Stored
                };
                entry_result(entry, kind, None).into()
            }
            OriginStatus::Ok => {
                count_origin(self.edge, "ok");
                let Some(body) = body else {
                    return Filled::from(Err(OriginError::Body("origin sent no body".into())));
                };
                let max = settings.max_object_size;
                match meta.content_length {
                    Some(n) if n > max => {
                        self.generation.misses.large.insert(path.to_owned(), ());
                        Filled::from(Ok(pass_through(meta, Bytes::new(), body)))
                    }
                    Some(n) => self.whole(meta, n, body),
                    None => self.buffered(meta, body).await,
                }
            }
            OriginStatus::PartialContent => {
                count_origin(self.edge, "ok");
                let Some(body) = body else {
                    return Filled::from(Err(OriginError::Body("origin sent no body".into())));
                };
                let Some((start, end, len)) = meta
                    .content_range
                    .as_ref()
                    .and_then(|v| parse_content_range(v.as_bytes()))
                else {
                    return Filled::from(Err(OriginError::status(
                        502,
                        "206 without a usable Content-Range",
                    )));
                };
                if start == 0 && end + 1 == len {
                    // The whole object in one answer.
                    meta.content_range = None;
                    meta.content_length = Some(len);
                    if len > settings.max_object_size {
                        self.generation.misses.large.insert(path.to_owned(), ());
                        return Filled::from(Ok(pass_through(meta, Bytes::new(), body)));
                    }
                    return self.whole(meta, len, body);
                }
                self.first_slice(meta, start, end + 1, len, body)
            }
            OriginStatus::PreconditionFailed => Filled::from(Err(OriginError::status(
                502,
                "conditional answer to an unconditional fetch",
            ))),
            OriginStatus::Other(code) => self.other_status(code, meta, body).await,
            OriginStatus::RangeNotSatisfiable => {
                Filled::from(Err(OriginError::status(502, "416 to a plain GET")))
            }
        }
    }

    /// The whole object in this answer: an entry whose body fills as the origin streams.
    fn whole(&self, meta: ObjectMeta, len: u64, body: OriginBody) -> Filled {
        let fresh = origin_freshness(&meta);
        let (ttl, kind) = self.stored_kind(&fresh);
        let (writer, fill) = Fill::new(len);
        let entry = Arc::new(
            Entry::new(
                &meta.headers(),
                Body::Filling(fill),
                len,
                ttl,
                self.rules(&fresh),
                self.now,
            )
            .with_initial_age(self.initial_age),
        );
        Filled {
            result: entry_result(entry.clone(), kind, None),
            pump: Some(Pump {
                body,
                writer,
                commit: vec![(self.key.to_owned(), entry)],
                store: kind == FetchKind::Stored,
            }),
        }
    }

    /// Bytes `start..end` of a `len`-byte object larger than one slice: the object is sliced
    /// (or, above `maxObjectSize` or not storable, forwarded).
    fn first_slice(
        &self,
        meta: ObjectMeta,
        start: u64,
        end: u64,
        len: u64,
        body: OriginBody,
    ) -> Filled {
        let settings = &self.generation.settings;
        let size = settings.slice_size;
        let fresh = origin_freshness(&meta);
        let decided = self.decide(&fresh);
        if len > settings.max_object_size || decided.is_none() {
            // The body is dropped unread: what the origin already sent is the whole cost.
            self.generation
                .misses
                .large
                .insert(key_path(self.key).to_owned(), ());
            return Filled::from(Ok(Arc::new(Fetched::Large)));
        }
        if start % size != 0 || end != (start + size).min(len) {
            return Filled::from(Err(OriginError::status(
                502,
                format!(
                    "origin answered bytes {start}-{} to a slice request",
                    end - 1
                ),
            )));
        }
        let ttl = decided.unwrap_or_default();
        let rules = self.rules(&fresh);
        let headers = meta.headers();
        let head = Arc::new(
            Entry::new(&headers, Body::Sliced { size }, len, ttl, rules, self.now)
                .with_initial_age(self.initial_age),
        );
        let index = start / size;
        let (writer, fill) = Fill::new(end - start);
        let slice = Arc::new(
            Entry::new(
                &headers,
                Body::Filling(fill),
                end - start,
                ttl,
                rules,
                self.now,
            )
            .with_initial_age(self.initial_age),
        );
        Filled {
            result: entry_result(
                head.clone(),
                FetchKind::Stored,
                Some((index, slice.clone())),
            ),
            pump: Some(Pump {
                body,
                writer,
                // The slice first: whoever finds the head finds its first slice too.
                commit: vec![
                    (slice_key(self.key, index), slice),
                    (self.key.to_owned(), head),
                ],
                store: true,
            }),
        }
    }

    /// A slice of a known object; anything but the exact bytes of the same version means the
    /// object changed.
    fn slice(
        &self,
        index: u64,
        head: &Entry,
        status: OriginStatus,
        meta: ObjectMeta,
        body: Option<OriginBody>,
    ) -> Filled {
        let Some(slicing) = head.slicing() else {
            return Filled::from(Ok(Arc::new(Fetched::Changed)));
        };
        let (start, end) = slicing.bounds(index);
        match (status, body) {
            (OriginStatus::PartialContent, Some(body)) => {
                let exact = meta
                    .content_range
                    .as_ref()
                    .and_then(|v| parse_content_range(v.as_bytes()))
                    == Some((start, end - 1, head.len));
                let same_etag = match (&meta.etag, &head.etag) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if !exact || !same_etag {
                    return Filled::from(Ok(Arc::new(Fetched::Changed)));
                }
                let windows = crate::cache::entry::StaleWindows {
                    stale_if_error: head.stale_if_error,
                    stale_while_revalidate: head.stale_while_revalidate,
                    must_revalidate: head.must_revalidate,
                };
                let (writer, fill) = Fill::new(end - start);
                let slice = Arc::new(Entry::new(
                    &meta.headers(),
                    Body::Filling(fill),
                    end - start,
                    head.ttl,
                    windows,
                    self.now,
                ));
                Filled {
                    result: entry_result(slice.clone(), FetchKind::Stored, None),
                    pump: Some(Pump {
                        body,
                        writer,
                        commit: vec![(self.key.to_owned(), slice)],
                        store: true,
                    }),
                }
            }
            (OriginStatus::Ok, _) => Filled::from(Err(OriginError::status(
                502,
                "origin ignored the Range of a slice request",
            ))),
            (OriginStatus::NotModified, _) | (OriginStatus::PartialContent, None) => {
                Filled::from(Err(OriginError::status(502, "unexpected slice answer")))
            }
            _ => Filled::from(Ok(Arc::new(Fetched::Changed))),
        }
    }

    /// A body of undeclared length, read whole under the total timeout (or streamed through
    /// once it outgrows `maxObjectSize`).
    async fn buffered(&self, meta: ObjectMeta, body: OriginBody) -> Filled {
        let settings = &self.generation.settings;
        let max = settings.max_object_size;
        let deadline = tokio::time::Instant::now() + settings.fill_timeout;
        let buf = match tokio::time::timeout_at(deadline, buffer(body, max)).await {
            Err(_) => Err(OriginError::Timeout(format!(
                "body not received within {} s (origin.timeouts.total)",
                settings.fill_timeout.as_secs()
            ))),
            Ok(r) => r,
        };
        let buf = match buf {
            Ok(Buffered::Whole(b)) => b,
            Ok(Buffered::TooLarge(prefix, rest)) => {
                self.generation
                    .misses
                    .large
                    .insert(key_path(self.key).to_owned(), ());
                return Filled::from(Ok(pass_through(meta, prefix, rest)));
            }
            Err(e) => {
                count_origin_error(self.edge, "body");
                self.edge.health.failure(key_path(self.key), &e);
                return Filled::from(Err(e));
            }
        };
        let fresh = origin_freshness(&meta);
        let (ttl, kind) = self.stored_kind(&fresh);
        let entry = Entry::whole(&meta.headers(), buf, ttl, self.rules(&fresh), self.now)
            .with_initial_age(self.initial_age);
        entry_result(Arc::new(entry), kind, None).into()
    }

    /// An answer with another status (a redirect, 204, 400…), read whole (they are small; a
    /// larger one is a failure) and stored when RFC 9111 allows: statuses heuristically
    /// cacheable by default (RFC 9110 §15.1) under the usual TTL rules, others only with
    /// explicit freshness from the origin (§3).
    async fn other_status(&self, code: u16, meta: ObjectMeta, body: Option<OriginBody>) -> Filled {
        count_origin(self.edge, "other_status");
        let limit = self.generation.settings.fill_timeout;
        let (status, buf) = match status_answer(code, body, limit).await {
            Ok(a) => a,
            Err(e) => return Filled::from(Err(e)),
        };
        let fresh = origin_freshness(&meta);
        let storable = freshness::heuristically_cacheable(code) || fresh.is_explicit();
        let (ttl, kind) = match storable.then(|| self.decide(&fresh)).flatten() {
            Some(ttl) if !ttl.is_zero() => (ttl, FetchKind::Stored),
            _ => (Duration::ZERO, FetchKind::NotStored),
        };
        let entry = Entry::status_answer(status, &meta.headers(), buf, ttl, self.now)
            .with_initial_age(self.initial_age);
        entry_result(Arc::new(entry), kind, None).into()
    }

    /// The TTL to store with, `None` when the answer must not be stored. HTTP origins get
    /// RFC 9111's heuristic (a tenth of the time since `Last-Modified`) when they give no
    /// freshness, bounded by the default TTL; S3 objects the default TTL, as CloudFront does.
    fn decide(&self, fresh: &OriginFreshness) -> Option<Duration> {
        let now = SystemTime::now();
        match freshness::decide(self.policy, fresh, now) {
            Decision::Store { ttl } if self.generation.settings.heuristic_freshness => Some(
                freshness::heuristic_lifetime(fresh, now)
                    .map_or(ttl, |h| h.clamp(self.policy.min, ttl.max(self.policy.min))),
            ),
            Decision::Store { ttl } => Some(ttl),
            Decision::Bypass => None,
        }
    }

    fn stored_kind(&self, fresh: &OriginFreshness) -> (Duration, FetchKind) {
        match self.decide(fresh) {
            Some(ttl) => (ttl, FetchKind::Stored),
            None => (Duration::ZERO, FetchKind::NotStored),
        }
    }

    fn rules(&self, fresh: &OriginFreshness) -> freshness::StaleRules {
        let w = &self.generation.settings.windows;
        freshness::stale_rules(
            fresh.cache_control.as_ref(),
            w.stale_if_error,
            w.stale_while_revalidate,
            self.policy.max,
        )
    }
}

impl Pump {
    /// Reads the body into the fill; `Ok` with the entries to store once it is complete.
    pub async fn run(mut self, edge: &Edge, path: &str) -> Option<Vec<(String, Arc<Entry>)>> {
        let store = self.store;
        while let Some(chunk) = self.body.next().await {
            let pushed = chunk.and_then(|c| {
                self.writer
                    .push(c)
                    .map_err(|e| OriginError::Body(e.to_string()))
            });
            if let Err(e) = pushed {
                count_origin_error(edge, "body");
                edge.health.failure(path, &e);
                tracing::debug!(path, error = %e, "fill failed; nothing stored");
                // Drops the writer: every reader fails at the missing bytes.
                return None;
            }
        }
        match self.writer.finish() {
            Ok(bytes) => {
                let stored = self
                    .commit
                    .into_iter()
                    .map(|(k, e)| match e.body {
                        Body::Filling(_) => (k, Arc::new(e.with_body(Body::Bytes(bytes.clone())))),
                        _ => (k, e),
                    })
                    .collect();
                Some(stored).filter(|_| store)
            }
            Err(e) => {
                let e = OriginError::Body(e.to_string());
                count_origin_error(edge, "body");
                edge.health.failure(path, &e);
                None
            }
        }
    }
}

enum Buffered {
    Whole(Bytes),
    /// Over the size cap (length undeclared): what was read, and the rest of the stream.
    TooLarge(Bytes, OriginBody),
}

/// Reads a body of undeclared length whole, up to `max`.
async fn buffer(mut body: OriginBody, max: u64) -> Result<Buffered, OriginError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > max {
            return Ok(Buffered::TooLarge(buf.freeze(), body));
        }
    }
    Ok(Buffered::Whole(Bytes::from(buf.to_vec())))
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

/// The field this cache takes freshness from: `Kubefront-CDN-Cache-Control`, else
/// `CDN-Cache-Control` (RFC 9213: a targeted field replaces `Cache-Control` and `Expires` for
/// the caches it targets, so an origin can say `private` to browsers and `max-age=600` to
/// the CDN), else `Cache-Control`.
fn targeted(meta: &ObjectMeta) -> Option<&HeaderValue> {
    meta.other
        .get("kubefront-cdn-cache-control")
        .or_else(|| meta.other.get("cdn-cache-control"))
}

/// The effective cache directives of an answer (targeted field first).
fn directives(meta: &ObjectMeta) -> Option<CacheControl> {
    targeted(meta)
        .or(meta.cache_control.as_ref())
        .and_then(|v| v.to_str().ok())
        .map(CacheControl::parse)
}

/// Freshness inputs from origin metadata.
pub fn origin_freshness(meta: &ObjectMeta) -> OriginFreshness {
    let date = |v: &Option<HeaderValue>| {
        v.as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    let expires = match targeted(meta) {
        Some(_) => None,
        None => meta.expires.as_ref().map(|v| {
            v.to_str()
                .map_or(SystemTime::UNIX_EPOCH, freshness::parse_expires)
        }),
    };
    OriginFreshness {
        cache_control: directives(meta),
        expires,
        date: date(&meta.date),
        last_modified: date(&meta.last_modified),
    }
}

/// Drops the fields qualified `no-cache="…"` / `private="…"` directives name: the rest of the
/// answer may be stored and shared, those fields may not (RFC 9111 §5.2.2.4, §5.2.2.7).
fn strip_qualified(meta: &mut ObjectMeta) {
    let Some(cc) = meta.cache_control.as_ref().and_then(|v| v.to_str().ok()) else {
        return;
    };
    for name in freshness::qualified_fields(cc) {
        if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
            meta.remove(&name);
        }
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
    async fn buffers_undeclared_bodies_and_turns_oversized_ones_into_streams() {
        match buffer(body(&[b"abc", b"def"]), 100).await {
            Ok(Buffered::Whole(b)) => assert_eq!(&b[..], b"abcdef"),
            _ => panic!("whole body expected"),
        }
        match buffer(body(&[b"abc", b"def", b"ghi"]), 4).await {
            Ok(Buffered::TooLarge(prefix, mut rest)) => {
                assert_eq!(&prefix[..], b"abcdef");
                let next = rest.next().await.and_then(Result::ok);
                assert_eq!(next.as_deref(), Some(&b"ghi"[..]));
            }
            _ => panic!("stream expected"),
        }
    }
}
