//! Responses: how an answer was produced (`Served`, which drives `X-Cache`, `Cache-Status` and
//! the metrics label), and building them from a cached entry, a pass-through stream, HEAD
//! metadata, or a short plain-text error.

use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::{slice_stream, EdgeBody};
use super::cache_status::{CacheStatus, Fwd};
use super::fetch::PassThrough;
use super::metrics::CacheLabel;
use crate::cache::{Body, Entry};
use crate::origin::{ObjectMeta, OriginError};
use crate::policy::conditional;
use crate::policy::ranges::{self, RangeOutcome};

pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// How the answer was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Hit,
    StaleWhileRevalidate,
    /// Stale copy because the origin failed with this status (or a shared fetch was slow).
    StaleIfError(u16),
    Miss {
        stored: bool,
        collapsed: bool,
        stale: bool,
    },
    Refreshed {
        collapsed: bool,
    },
    /// A 304 that now forbids storing: served once, entry dropped.
    RefreshedDropped,
    /// Larger than `maxObjectSize`: streamed through.
    TooLarge,
    /// HEAD on a miss, answered from an origin HEAD.
    HeadMiss,
    /// A method other than GET/HEAD, forwarded with its body (`allowedMethods`).
    Forwarded,
    Rejected,
    OriginError(u16),
    /// A remembered origin failure (error caching); the origin was not asked.
    CachedError(u16),
    /// Stale under must-revalidate / proxy-revalidate / s-maxage and the origin failed.
    MustRevalidate(u16),
    /// `Cache-Control: only-if-cached` and nothing fresh stored.
    OnlyIfCached,
}

impl Served {
    pub fn x_cache(self, status: StatusCode) -> &'static str {
        if status.is_client_error() && status != StatusCode::RANGE_NOT_SATISFIABLE
            || status.is_server_error()
        {
            return "Error";
        }
        match self {
            Served::Hit | Served::StaleWhileRevalidate | Served::StaleIfError(_) => "Hit",
            Served::Miss { .. } | Served::TooLarge | Served::HeadMiss | Served::Forwarded => "Miss",
            Served::Refreshed { .. } | Served::RefreshedDropped => "RefreshHit",
            Served::Rejected
            | Served::OriginError(_)
            | Served::CachedError(_)
            | Served::MustRevalidate(_)
            | Served::OnlyIfCached => "Error",
        }
    }

    pub fn label(self) -> CacheLabel {
        match self {
            Served::Hit => CacheLabel::hit,
            Served::StaleWhileRevalidate | Served::StaleIfError(_) => CacheLabel::stale,
            Served::Miss { .. } | Served::TooLarge | Served::HeadMiss | Served::Forwarded => {
                CacheLabel::miss
            }
            Served::Refreshed { .. } | Served::RefreshedDropped => CacheLabel::refresh_hit,
            Served::Rejected
            | Served::OriginError(_)
            | Served::CachedError(_)
            | Served::MustRevalidate(_)
            | Served::OnlyIfCached => CacheLabel::error,
        }
    }

    /// Whether the answer comes from a stored entry (then `Cache-Status` carries `ttl=`).
    fn is_stored_answer(self) -> bool {
        matches!(
            self,
            Served::Hit
                | Served::StaleWhileRevalidate
                | Served::StaleIfError(_)
                | Served::Refreshed { .. }
                | Served::Miss { stored: true, .. }
        )
    }

    /// The RFC 9211 parts of this answer.
    pub fn cache_status(self) -> CacheStatus {
        match self {
            Served::Hit => CacheStatus::HIT,
            Served::StaleWhileRevalidate => CacheStatus::HIT.detail("stale-while-revalidate"),
            Served::StaleIfError(code) => CacheStatus::forwarded(Fwd::Stale)
                .fwd_status(code)
                .detail("stale-if-error"),
            Served::Miss {
                stored,
                collapsed,
                stale,
            } => {
                let mut s = if stale {
                    CacheStatus::forwarded(Fwd::Stale).fwd_status(200)
                } else {
                    CacheStatus::forwarded(Fwd::Miss)
                };
                s = s.collapsed(collapsed).stored(stored);
                if stored {
                    s
                } else {
                    s.detail("no-store")
                }
            }
            Served::Refreshed { collapsed } => CacheStatus::forwarded(Fwd::Stale)
                .fwd_status(304)
                .collapsed(collapsed)
                .stored(true),
            Served::RefreshedDropped => CacheStatus::forwarded(Fwd::Stale)
                .fwd_status(304)
                .detail("no-store"),
            Served::TooLarge => CacheStatus::forwarded(Fwd::Miss).detail("too-large"),
            Served::Forwarded => CacheStatus::forwarded(Fwd::Method),
            Served::HeadMiss => CacheStatus::forwarded(Fwd::Miss).detail("head"),
            Served::Rejected => CacheStatus::default().detail("rejected"),
            Served::OriginError(code) => CacheStatus::forwarded(Fwd::Miss)
                .fwd_status(code)
                .detail("origin-error"),
            Served::CachedError(code) => CacheStatus::default()
                .fwd_status(code)
                .detail("cached-error"),
            Served::MustRevalidate(code) => CacheStatus::forwarded(Fwd::Stale)
                .fwd_status(code)
                .detail("must-revalidate"),
            Served::OnlyIfCached => CacheStatus::default().detail("only-if-cached"),
        }
    }
}

/// What an answer from an entry carries, decided from the viewer's validators and `Range`
/// before any body byte is needed (a sliced object fetches its first slice only for `Body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    NotModified,
    Unsatisfiable,
    /// Bytes `start..end` of the body; `partial`: a 206.
    Body {
        start: u64,
        end: u64,
        partial: bool,
    },
}

/// 304 for matching viewer validators, 206/416 for ranges (If-Range checked), else the whole.
pub fn plan(req: &HeaderMap, entry: &Entry, status: StatusCode) -> Plan {
    let len = entry.len;
    if status == StatusCode::OK && entry.status == StatusCode::OK {
        if matches_validators(req, entry) {
            return Plan::NotModified;
        }
        if let Some(range) = req.get(header::RANGE) {
            let applies = match req.get(header::IF_RANGE) {
                None => true,
                Some(ir) => conditional::if_range_allows(
                    ir.as_bytes(),
                    entry.etag.as_ref().map(|v| v.as_bytes()),
                    entry.last_modified,
                ),
            };
            if applies {
                match ranges::evaluate(Some(range.as_bytes()), len) {
                    RangeOutcome::Full => {}
                    RangeOutcome::Partial { start, end } => {
                        return Plan::Body {
                            start,
                            end: end + 1,
                            partial: true,
                        }
                    }
                    RangeOutcome::Unsatisfiable => return Plan::Unsatisfiable,
                }
            }
        }
    }
    Plan::Body {
        start: 0,
        end: len,
        partial: false,
    }
}

/// Builds the answer from a cached entry whose body is in memory or filling.
pub fn entry_response(
    req: &HeaderMap,
    head: bool,
    entry: &Entry,
    status: StatusCode,
    served: Served,
) -> Response<EdgeBody> {
    let plan = plan(req, entry, status);
    planned_response(head, entry, status, served, plan, |start, end| {
        entry_body(entry, start, end)
    })
}

/// Bytes `start..end` of an entry's body, shared (in memory) or following its fill.
pub fn entry_body(entry: &Entry, start: u64, end: u64) -> EdgeBody {
    match &entry.body {
        Body::Bytes(b) if start == 0 && end == b.len() as u64 => EdgeBody::full(b.clone()),
        Body::Bytes(b) => EdgeBody::full(b.slice(start as usize..end as usize)),
        Body::Filling(fill) => EdgeBody::Stream {
            prefix: None,
            rest: fill_stream(fill.reader(start, end)),
            len: Some(end - start),
        },
        // Served by `sliced`; reaching here is a bug, answered with a cut body, not garbage.
        Body::Sliced { .. } => EdgeBody::Stream {
            prefix: None,
            rest: Box::pin(futures::stream::iter([Err(OriginError::Other(
                "sliced entry served without its slices".into(),
            ))])),
            len: Some(end - start),
        },
    }
}

/// A fill reader as a viewer body: a fill that fails cuts the response.
pub fn fill_stream(reader: crate::cache::FillReader) -> crate::origin::OriginBody {
    Box::pin(futures::StreamExt::map(reader, |r| {
        r.map_err(|e| OriginError::Body(e.to_string()))
    }))
}

/// The answer for `plan`; `body(start, end)` is called only when a body is sent.
pub fn planned_response(
    head: bool,
    entry: &Entry,
    status: StatusCode,
    served: Served,
    plan: Plan,
    body: impl FnOnce(u64, u64) -> EdgeBody,
) -> Response<EdgeBody> {
    let now = Instant::now();
    let mut headers = entry.headers.clone();
    headers.reserve(6);
    let age = entry.age(now);
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    headers.insert(
        X_CACHE.clone(),
        HeaderValue::from_static(served.x_cache(status)),
    );
    let mut cs = served.cache_status();
    if served.is_stored_answer() {
        cs = cs.ttl(entry.ttl.as_secs() as i64 - age.as_secs() as i64);
    }
    super::cache_status::chain(&mut headers, cs.render());
    match plan {
        Plan::NotModified => not_modified(headers),
        Plan::Unsatisfiable => unsatisfiable(headers, entry.len),
        Plan::Body {
            start,
            end,
            partial,
        } => {
            let status = if partial {
                let n = end - start;
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                if let Ok(v) =
                    HeaderValue::from_str(&ranges::content_range(start, end - 1, entry.len))
                {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                StatusCode::PARTIAL_CONTENT
            } else {
                headers.insert(header::CONTENT_LENGTH, entry.content_length.clone());
                status
            };
            let body = if head {
                EdgeBody::empty()
            } else {
                body(start, end)
            };
            build(status, headers, body)
        }
    }
}

/// Whether the viewer's validators match the entry (then 304).
fn matches_validators(req: &HeaderMap, entry: &Entry) -> bool {
    let inm = req.get(header::IF_NONE_MATCH).map(|v| v.as_bytes());
    let ims = req.get(header::IF_MODIFIED_SINCE).map(|v| v.as_bytes());
    (inm.is_some() || ims.is_some())
        && conditional::not_modified(
            inm,
            ims,
            entry.etag.as_ref().map(|v| v.as_bytes()),
            entry.last_modified,
        )
}

fn not_modified(mut headers: HeaderMap) -> Response<EdgeBody> {
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::CONTENT_DISPOSITION,
        header::ACCEPT_RANGES,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
    ] {
        headers.remove(h);
    }
    build(StatusCode::NOT_MODIFIED, headers, EdgeBody::empty())
}

fn unsatisfiable(mut headers: HeaderMap, len: u64) -> Response<EdgeBody> {
    if let Ok(v) = HeaderValue::from_str(&ranges::unsatisfied_range(len)) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    build(
        StatusCode::RANGE_NOT_SATISFIABLE,
        headers,
        EdgeBody::empty(),
    )
}

/// The origin metadata replayed on pass-through and HEAD answers.
fn meta_headers(meta: &ObjectMeta, served: Served) -> HeaderMap {
    // The same allowlist as stored entries.
    let mut headers = crate::cache::headers::replayed(&meta.headers());
    headers.insert(header::AGE, HeaderValue::from_static("0"));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static("Miss"));
    super::cache_status::chain(&mut headers, served.cache_status().render());
    headers
}

/// A HEAD answer from origin metadata (HEAD on a miss), with the viewer's validators applied.
pub fn head_response(req: &HeaderMap, meta: &ObjectMeta) -> Response<EdgeBody> {
    let mut headers = meta_headers(meta, Served::HeadMiss);
    let inm = req.get(header::IF_NONE_MATCH).map(|v| v.as_bytes());
    let ims = req.get(header::IF_MODIFIED_SINCE).map(|v| v.as_bytes());
    let lm = meta
        .last_modified
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    if (inm.is_some() || ims.is_some())
        && conditional::not_modified(inm, ims, meta.etag.as_ref().map(|v| v.as_bytes()), lm)
    {
        return not_modified(headers);
    }
    if let Some(n) = meta.content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    build(StatusCode::OK, headers, EdgeBody::empty())
}

/// A pass-through answer for an object too large to cache. `forwarded`: the viewer's `Range`
/// went to the origin, so its answer (200, or 206 with `Content-Range`) is relayed as is;
/// otherwise the stream is a whole-object GET and a range is cut from it locally.
pub fn stream_response(
    req: &HeaderMap,
    head: bool,
    pass: PassThrough,
    forwarded: bool,
) -> Response<EdgeBody> {
    let meta = &pass.meta;
    let mut headers = meta_headers(meta, Served::TooLarge);
    let mut rest = pass.rest;
    let mut prefix = Some(pass.prefix);
    let mut status = StatusCode::OK;
    let mut body_len = meta.content_length;
    if forwarded {
        if let Some(cr) = &meta.content_range {
            status = StatusCode::PARTIAL_CONTENT;
            headers.insert(header::CONTENT_RANGE, cr.clone());
        }
    } else if let Some(total) = meta.content_length {
        let range_applies = req.get(header::IF_RANGE).is_none();
        if let (Some(range), true) = (req.get(header::RANGE), range_applies) {
            match ranges::evaluate(Some(range.as_bytes()), total) {
                RangeOutcome::Full => {}
                RangeOutcome::Partial { start, end } => {
                    let whole: crate::origin::OriginBody = match prefix.take() {
                        Some(p) if !p.is_empty() => Box::pin(futures::StreamExt::chain(
                            futures::stream::iter([Ok::<bytes::Bytes, OriginError>(p)]),
                            rest,
                        )),
                        _ => rest,
                    };
                    rest = slice_stream(whole, start, end - start + 1);
                    status = StatusCode::PARTIAL_CONTENT;
                    body_len = Some(end - start + 1);
                    if let Ok(v) = HeaderValue::from_str(&ranges::content_range(start, end, total))
                    {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                }
                RangeOutcome::Unsatisfiable => return unsatisfiable(headers, total),
            }
        }
    }
    if let Some(n) = body_len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let body = if head {
        EdgeBody::empty()
    } else {
        EdgeBody::Stream {
            prefix,
            rest,
            len: body_len,
        }
    };
    build(status, headers, body)
}

/// 304 / 412-fallback / 416 answers to a forwarded pass-through request.
pub fn origin_not_modified(meta: &ObjectMeta) -> Response<EdgeBody> {
    not_modified(meta_headers(meta, Served::TooLarge))
}

pub fn origin_unsatisfiable(meta: &ObjectMeta) -> Response<EdgeBody> {
    let mut headers = meta_headers(meta, Served::TooLarge);
    if let Some(cr) = &meta.content_range {
        headers.insert(header::CONTENT_RANGE, cr.clone());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    build(
        StatusCode::RANGE_NOT_SATISFIABLE,
        headers,
        EdgeBody::empty(),
    )
}

pub fn plain(
    status: StatusCode,
    text: &'static str,
    head: bool,
    served: Served,
) -> Response<EdgeBody> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static("Error"));
    headers.insert(CACHE_STATUS.clone(), served.cache_status().render());
    let body = if head {
        EdgeBody::empty()
    } else {
        EdgeBody::from(text)
    };
    build(status, headers, body)
}

/// 502/504 for a failed origin fetch with nothing to stand in.
pub fn origin_failed(err: &OriginError, head: bool, served: Served) -> Response<EdgeBody> {
    let status = err.viewer_status();
    let body = if status == StatusCode::GATEWAY_TIMEOUT {
        "504 Gateway Timeout: origin did not answer in time\n"
    } else {
        "502 Bad Gateway: origin unavailable\n"
    };
    plain(status, body, head, served)
}

pub fn build(status: StatusCode, headers: HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::StaleWindows;
    use bytes::Bytes;
    use std::time::Duration;

    fn entry() -> Entry {
        let meta = ObjectMeta {
            etag: Some(HeaderValue::from_static("\"v1\"")),
            content_type: Some(HeaderValue::from_static("text/plain")),
            ..ObjectMeta::default()
        };
        Entry::whole(
            &meta.headers(),
            Bytes::from_static(b"0123456789"),
            Duration::from_secs(60),
            StaleWindows::default(),
            Instant::now(),
        )
    }

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hits_ranges_and_conditionals_from_an_entry() {
        let e = entry();
        let r = entry_response(&req(&[]), false, &e, StatusCode::OK, Served::Hit);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "10");
        assert_eq!(r.headers()["x-cache"], "Hit");
        assert!(r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("kubefront; hit; ttl="));
        let r = entry_response(
            &req(&[("range", "bytes=2-4")]),
            false,
            &e,
            StatusCode::OK,
            Served::Hit,
        );
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
        let r = entry_response(
            &req(&[("range", "bytes=20-")]),
            false,
            &e,
            StatusCode::OK,
            Served::Hit,
        );
        assert_eq!(r.status(), 416);
        let r = entry_response(
            &req(&[("if-none-match", "\"v1\"")]),
            false,
            &e,
            StatusCode::OK,
            Served::Hit,
        );
        assert_eq!(r.status(), 304);
        assert!(r.headers().get("content-type").is_none());
        // If-Range with another ETag: the whole body.
        let r = entry_response(
            &req(&[("range", "bytes=2-4"), ("if-range", "\"v0\"")]),
            false,
            &e,
            StatusCode::OK,
            Served::Hit,
        );
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn x_cache_and_labels_follow_the_phase() {
        assert_eq!(Served::StaleIfError(403).x_cache(StatusCode::OK), "Hit");
        assert_eq!(
            Served::MustRevalidate(502).x_cache(StatusCode::GATEWAY_TIMEOUT),
            "Error"
        );
        assert_eq!(
            Served::MustRevalidate(502).cache_status().render(),
            "kubefront; fwd=stale; fwd-status=502; detail=must-revalidate"
        );
        assert_eq!(
            Served::Miss {
                stored: false,
                collapsed: true,
                stale: false
            }
            .cache_status()
            .render(),
            "kubefront; fwd=miss; collapsed; detail=no-store"
        );
        assert_eq!(Served::OnlyIfCached.label(), CacheLabel::error);
    }

    #[test]
    fn head_answers_carry_length_and_honour_validators() {
        let meta = ObjectMeta {
            content_length: Some(123),
            etag: Some(HeaderValue::from_static("\"e\"")),
            ..ObjectMeta::default()
        };
        let r = head_response(&req(&[]), &meta);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "123");
        let r = head_response(&req(&[("if-none-match", "\"e\"")]), &meta);
        assert_eq!(r.status(), 304);
    }
}
