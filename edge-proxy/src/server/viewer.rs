//! The viewer request path: method and path checks, cache lookup, collapsed origin fetch,
//! stale-if-error / stale-while-revalidate, conditional and range answers, custom error pages,
//! metrics and the access log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::body::{slice_stream, EdgeBody};
use super::fetch::{self, FetchKind, Fetched, PassThrough};
use super::metrics::{CacheLabel, RequestLabels};
use super::{Edge, Generation};
use crate::cache::key::normalize_path;
use crate::cache::Entry;
use crate::origin::{OriginError, OriginStatus};
use crate::policy::conditional;
use crate::policy::ranges::{self, RangeOutcome};

/// Longest request target accepted (CloudFront allows 8 KiB URLs).
pub const MAX_URI_LEN: usize = 8192;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// How the answer was produced; drives `X-Cache`, `Cache-Status` and the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    StaleWhileRevalidate,
    StaleIfError(u16),
    Miss {
        stored: bool,
        collapsed: bool,
        stale: bool,
    },
    Refreshed {
        collapsed: bool,
    },
    TooLarge,
    Rejected,
    OriginError(u16),
}

impl Served {
    fn x_cache(self, status: StatusCode) -> &'static str {
        if status.is_client_error() && status != StatusCode::RANGE_NOT_SATISFIABLE
            || status.is_server_error()
        {
            return "Error";
        }
        match self {
            Served::Hit | Served::StaleWhileRevalidate | Served::StaleIfError(_) => "Hit",
            Served::Miss { .. } | Served::TooLarge => "Miss",
            Served::Refreshed { .. } => "RefreshHit",
            Served::Rejected | Served::OriginError(_) => "Error",
        }
    }

    fn label(self) -> CacheLabel {
        match self {
            Served::Hit => CacheLabel::hit,
            Served::StaleWhileRevalidate | Served::StaleIfError(_) => CacheLabel::stale,
            Served::Miss { .. } | Served::TooLarge => CacheLabel::miss,
            Served::Refreshed { .. } => CacheLabel::refresh_hit,
            Served::Rejected | Served::OriginError(_) => CacheLabel::error,
        }
    }

    fn cache_status(self) -> HeaderValue {
        let s: &'static str = match self {
            Served::Hit => "kubefront; hit",
            Served::StaleWhileRevalidate => "kubefront; hit; detail=stale-while-revalidate",
            Served::Miss {
                stored: true,
                collapsed: false,
                stale: false,
            } => "kubefront; fwd=miss; stored",
            Served::Miss {
                stored: true,
                collapsed: true,
                stale: false,
            } => "kubefront; fwd=miss; collapsed; stored",
            Served::Miss {
                stored: false,
                collapsed: false,
                stale: false,
            } => "kubefront; fwd=miss; detail=no-store",
            Served::Miss {
                stored: false,
                collapsed: true,
                stale: false,
            } => "kubefront; fwd=miss; collapsed; detail=no-store",
            Served::Miss {
                stored: true,
                stale: true,
                ..
            } => "kubefront; fwd=stale; fwd-status=200; stored",
            Served::Miss {
                stored: false,
                stale: true,
                ..
            } => "kubefront; fwd=stale; fwd-status=200; detail=no-store",
            Served::Refreshed { collapsed: false } => {
                "kubefront; fwd=stale; fwd-status=304; stored"
            }
            Served::Refreshed { collapsed: true } => {
                "kubefront; fwd=stale; fwd-status=304; collapsed; stored"
            }
            Served::TooLarge => "kubefront; fwd=miss; detail=too-large",
            Served::Rejected => "kubefront; detail=rejected",
            Served::StaleIfError(code) => {
                return dynamic(format!(
                    "kubefront; fwd=stale; fwd-status={code}; detail=stale-if-error"
                ))
            }
            Served::OriginError(code) => {
                return dynamic(format!(
                    "kubefront; fwd=miss; fwd-status={code}; detail=origin-error"
                ))
            }
        };
        HeaderValue::from_static(s)
    }
}

fn dynamic(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("kubefront"))
}

/// What the access log and metrics need about one answer.
struct Outcome {
    served: Served,
    origin_time: Option<Duration>,
}

/// Handles one viewer request; never fails (errors become responses).
pub async fn handle<B>(edge: Arc<Edge>, req: Request<B>) -> Response<EdgeBody> {
    let started = Instant::now();
    let (mut resp, outcome) = answer(&edge, &req).await;
    // Response headers policy (CORS, security headers) on every answer, after the cache.
    edge.current
        .load()
        .settings
        .security
        .headers
        .apply(req.headers(), resp.headers_mut());
    let status = resp.status();
    let bytes = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
    edge.metrics
        .requests
        .get_or_create(&RequestLabels {
            cache: outcome.served.label(),
            code: status.as_u16(),
        })
        .inc();
    edge.metrics.response_bytes.inc_by(bytes);
    if edge.access_log {
        tracing::info!(
            target: "kubefront_edge::access",
            method = %req.method(),
            path = req.uri().path(),
            status = status.as_u16(),
            cache = resp.headers().get(&X_CACHE).and_then(|v| v.to_str().ok()).unwrap_or(""),
            bytes,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            origin_ms = outcome.origin_time.map(|d| d.as_secs_f64() * 1000.0),
        );
    }
    resp
}

async fn answer<B>(edge: &Arc<Edge>, req: &Request<B>) -> (Response<EdgeBody>, Outcome) {
    let security = edge.current.load().settings.security.clone();
    if let Err(refusal) = security.check_limits(req.uri(), req.headers()) {
        let head = req.method() == Method::HEAD;
        return (
            plain(refusal.status, refusal.body, head, Served::Rejected),
            rejected(),
        );
    }
    if let Some(preflight) = security.headers.preflight(req.method(), req.headers()) {
        let mut r = plain(preflight.status, "", false, Served::Rejected);
        r.headers_mut().remove(header::CONTENT_LENGTH);
        r.headers_mut().remove(header::CONTENT_TYPE);
        r.headers_mut().extend(preflight.headers);
        return (r, rejected());
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed\n",
                false,
                Served::Rejected,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return (r, rejected());
        }
    };
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_LEN {
        return (
            plain(
                StatusCode::URI_TOO_LONG,
                "414 URI Too Long\n",
                head,
                Served::Rejected,
            ),
            rejected(),
        );
    }
    let generation = edge.current.load_full();
    let settings = &generation.settings;
    let mut path = match normalize_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(path = req.uri().path(), error = %e, "bad request path");
            return (
                plain(
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request\n",
                    head,
                    Served::Rejected,
                ),
                rejected(),
            );
        }
    };
    // Signed URLs / cookies: checked before the cache; signing parameters never reach the key.
    let peer = req
        .extensions()
        .get::<crate::security::ViewerAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.0.ip());
    let authorized = match security.authorize(req.uri(), req.headers(), &path, peer) {
        Ok(a) => a,
        Err(refusal) => {
            return (
                plain(refusal.status, refusal.body, head, Served::Rejected),
                rejected(),
            )
        }
    };
    let query = authorized
        .stripped_uri
        .as_ref()
        .map_or(req.uri().query(), |u| u.query());
    if path == "/" {
        if let Some(root) = &settings.default_root {
            path.clone_from(root);
        }
    }
    let headers = req.headers();
    let key = settings
        .key_policy
        .key(path, query, |name| headers.get(name).map(|v| v.as_bytes()));

    let now = Instant::now();
    let cached = generation.store.get(&key).await;
    if let Some(entry) = &cached {
        if entry.is_fresh(now) {
            return finish(edge, &generation, headers, head, entry, Served::Hit, None).await;
        }
        if !entry.is_negative() && entry.staleness(now) < entry.stale_while_revalidate {
            fetch::refresh_in_background(edge, &generation, &key, entry.clone());
            return finish(
                edge,
                &generation,
                headers,
                head,
                entry,
                Served::StaleWhileRevalidate,
                None,
            )
            .await;
        }
    }

    let fetch_started = Instant::now();
    let (result, collapsed) = fetch::fetch_collapsed(edge, &generation, &key, cached.clone()).await;
    let origin_time = Some(fetch_started.elapsed());
    match result {
        Ok(fetched) => match &*fetched {
            Fetched::Entry { entry, kind } => {
                let served = match kind {
                    FetchKind::Refreshed => Served::Refreshed { collapsed },
                    FetchKind::Stored => Served::Miss {
                        stored: true,
                        collapsed,
                        stale: cached.is_some(),
                    },
                    FetchKind::NotStored => Served::Miss {
                        stored: false,
                        collapsed,
                        stale: cached.is_some(),
                    },
                };
                finish(edge, &generation, headers, head, entry, served, origin_time).await
            }
            Fetched::Stream(slot) => {
                let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let pass = match taken {
                    Some(p) => *p,
                    None => {
                        // Another waiter took the stream; fetch our own copy.
                        match fetch::fetch_direct(&generation, crate::cache::key::key_path(&key))
                            .await
                        {
                            Ok(r) if r.status == OriginStatus::Ok && r.body.is_some() => {
                                PassThrough {
                                    meta: r.meta,
                                    prefix: Bytes::new(),
                                    rest: match r.body {
                                        Some(b) => b,
                                        None => {
                                            return origin_failed(
                                                OriginError::Body("no body".into()),
                                                origin_time,
                                            )
                                        }
                                    },
                                }
                            }
                            Ok(r) => {
                                return origin_failed(
                                    OriginError::Status {
                                        status: match r.status {
                                            OriginStatus::NotFound => 404,
                                            OriginStatus::Forbidden => 403,
                                            _ => 502,
                                        },
                                        message: "object changed during fetch".into(),
                                    },
                                    origin_time,
                                )
                            }
                            Err(e) => return origin_failed(e, origin_time),
                        }
                    }
                };
                (
                    stream_response(headers, head, pass),
                    Outcome {
                        served: Served::TooLarge,
                        origin_time,
                    },
                )
            }
        },
        Err(err) => {
            if let Some(stale) =
                cached.filter(|s| !s.is_negative() && s.staleness(now) <= s.stale_if_error)
            {
                tracing::warn!(key = crate::cache::key::key_path(&key), error = %err, "serving stale copy: origin failed");
                let served = Served::StaleIfError(err.fwd_status());
                return finish(
                    edge,
                    &generation,
                    headers,
                    head,
                    &stale,
                    served,
                    origin_time,
                )
                .await;
            }
            let status = err.viewer_status();
            if let Some(page) = error_page(edge, &generation, status.as_u16()).await {
                let (resp, _) = entry_response(
                    headers,
                    head,
                    &page.1,
                    page.0,
                    Served::OriginError(err.fwd_status()),
                );
                return (
                    resp,
                    Outcome {
                        served: Served::OriginError(err.fwd_status()),
                        origin_time,
                    },
                );
            }
            origin_failed(err, origin_time)
        }
    }
}

fn rejected() -> Outcome {
    Outcome {
        served: Served::Rejected,
        origin_time: None,
    }
}

fn origin_failed(err: OriginError, origin_time: Option<Duration>) -> (Response<EdgeBody>, Outcome) {
    let status = err.viewer_status();
    let body = if status == StatusCode::GATEWAY_TIMEOUT {
        "504 Gateway Timeout: origin did not answer in time\n"
    } else {
        "502 Bad Gateway: origin unavailable\n"
    };
    let served = Served::OriginError(err.fwd_status());
    (
        plain(status, body, false, served),
        Outcome {
            served,
            origin_time,
        },
    )
}

/// Answers from an entry, applying a custom error page when one is configured for its status.
async fn finish(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    headers: &HeaderMap,
    head: bool,
    entry: &Arc<Entry>,
    served: Served,
    origin_time: Option<Duration>,
) -> (Response<EdgeBody>, Outcome) {
    if entry.is_negative() {
        if let Some((status, page)) = error_page(edge, generation, entry.status.as_u16()).await {
            let (resp, _) = entry_response(headers, head, &page, status, served);
            return (
                resp,
                Outcome {
                    served,
                    origin_time,
                },
            );
        }
    }
    let (resp, _) = entry_response(headers, head, entry, entry.status, served);
    (
        resp,
        Outcome {
            served,
            origin_time,
        },
    )
}

/// The custom error page for `code`, fetched through the cache like any object.
async fn error_page(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    code: u16,
) -> Option<(StatusCode, Arc<Entry>)> {
    let custom = generation.settings.error_response(code)?;
    let page_path = custom.response_page_path.as_ref()?;
    let status = StatusCode::from_u16(custom.response_code.unwrap_or(code)).ok()?;
    let path = normalize_path(page_path).ok()?;
    let now = Instant::now();
    if let Some(e) = generation.store.get(&path).await {
        if !e.is_negative() && (e.is_fresh(now) || e.staleness(now) <= e.stale_if_error) {
            return Some((status, e));
        }
    }
    match fetch::fetch_collapsed(edge, generation, &path, None)
        .await
        .0
    {
        Ok(f) => match &*f {
            Fetched::Entry { entry, .. } if !entry.is_negative() => Some((status, entry.clone())),
            _ => None,
        },
        Err(_) => None,
    }
}

/// `Cache-Status` plus RFC 9211 `ttl=` (remaining freshness in seconds, negative when stale)
/// for answers that come from a stored entry.
fn with_ttl(served: Served, entry: &Entry, now: Instant) -> HeaderValue {
    let stored = matches!(
        served,
        Served::Hit
            | Served::StaleWhileRevalidate
            | Served::StaleIfError(_)
            | Served::Refreshed { .. }
            | Served::Miss { stored: true, .. }
    );
    let base = served.cache_status();
    if !stored {
        return base;
    }
    let age = entry.age(now).as_secs() as i64;
    let ttl = entry.ttl.as_secs() as i64 - age;
    let mut s = String::with_capacity(base.len() + 16);
    s.push_str(base.to_str().unwrap_or("kubefront"));
    s.push_str("; ttl=");
    s.push_str(&ttl.to_string());
    HeaderValue::from_str(&s).unwrap_or(base)
}

/// Builds the answer from a cached entry: 304 for matching viewer validators, 206/416 for
/// ranges, otherwise the whole body.
fn entry_response(
    req: &HeaderMap,
    head: bool,
    entry: &Entry,
    status: StatusCode,
    served: Served,
) -> (Response<EdgeBody>, u64) {
    let now = Instant::now();
    let mut headers = entry.headers.clone();
    headers.reserve(6);
    headers.insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    headers.insert(
        X_CACHE.clone(),
        HeaderValue::from_static(served.x_cache(status)),
    );
    headers.insert(CACHE_STATUS.clone(), with_ttl(served, entry, now));
    let len = entry.body.len() as u64;

    if status == StatusCode::OK && entry.status == StatusCode::OK {
        let inm = req.get(header::IF_NONE_MATCH).map(|v| v.as_bytes());
        let ims = req.get(header::IF_MODIFIED_SINCE).map(|v| v.as_bytes());
        if (inm.is_some() || ims.is_some())
            && conditional::not_modified(
                inm,
                ims,
                entry.etag.as_ref().map(|v| v.as_bytes()),
                entry.last_modified,
            )
        {
            for h in [
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::CONTENT_LANGUAGE,
                header::CONTENT_DISPOSITION,
                header::ACCEPT_RANGES,
            ] {
                headers.remove(h);
            }
            return (
                build(StatusCode::NOT_MODIFIED, headers, EdgeBody::empty()),
                0,
            );
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
                        let n = end - start + 1;
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                        if let Ok(v) =
                            HeaderValue::from_str(&ranges::content_range(start, end, len))
                        {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        let body = if head {
                            EdgeBody::empty()
                        } else {
                            EdgeBody::full(entry.body.slice(start as usize..=end as usize))
                        };
                        return (build(StatusCode::PARTIAL_CONTENT, headers, body), n);
                    }
                    RangeOutcome::Unsatisfiable => {
                        if let Ok(v) = HeaderValue::from_str(&ranges::unsatisfied_range(len)) {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                        return (
                            build(
                                StatusCode::RANGE_NOT_SATISFIABLE,
                                headers,
                                EdgeBody::empty(),
                            ),
                            0,
                        );
                    }
                }
            }
        }
    }
    headers.insert(header::CONTENT_LENGTH, entry.content_length.clone());
    let body = if head {
        EdgeBody::empty()
    } else {
        EdgeBody::full(entry.body.clone())
    };
    (build(status, headers, body), if head { 0 } else { len })
}

/// A pass-through answer for an object too large to cache.
fn stream_response(req: &HeaderMap, head: bool, pass: PassThrough) -> Response<EdgeBody> {
    let meta = &pass.meta;
    let mut headers = HeaderMap::with_capacity(12);
    for (name, v) in [
        (header::CONTENT_TYPE, &meta.content_type),
        (header::ETAG, &meta.etag),
        (header::LAST_MODIFIED, &meta.last_modified),
        (header::CACHE_CONTROL, &meta.cache_control),
        (header::EXPIRES, &meta.expires),
        (header::CONTENT_ENCODING, &meta.content_encoding),
        (header::CONTENT_LANGUAGE, &meta.content_language),
        (header::CONTENT_DISPOSITION, &meta.content_disposition),
    ] {
        if let Some(v) = v {
            headers.insert(name, v.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from_static("0"));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static("Miss"));
    headers.insert(CACHE_STATUS.clone(), Served::TooLarge.cache_status());
    let len = meta.content_length;
    let mut rest = pass.rest;
    let mut prefix = Some(pass.prefix);
    let mut status = StatusCode::OK;
    let mut body_len = len;
    if let Some(total) = len {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let range_applies = req.get(header::IF_RANGE).is_none();
        if let (Some(range), true) = (req.get(header::RANGE), range_applies) {
            match ranges::evaluate(Some(range.as_bytes()), total) {
                RangeOutcome::Full => {}
                RangeOutcome::Partial { start, end } => {
                    let mut whole: crate::origin::OriginBody = match prefix.take() {
                        Some(p) if !p.is_empty() => Box::pin(futures::StreamExt::chain(
                            futures::stream::iter([Ok::<Bytes, OriginError>(p)]),
                            rest,
                        )),
                        _ => rest,
                    };
                    whole = slice_stream(whole, start, end - start + 1);
                    rest = whole;
                    status = StatusCode::PARTIAL_CONTENT;
                    body_len = Some(end - start + 1);
                    if let Ok(v) = HeaderValue::from_str(&ranges::content_range(start, end, total))
                    {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                }
                RangeOutcome::Unsatisfiable => {
                    if let Ok(v) = HeaderValue::from_str(&ranges::unsatisfied_range(total)) {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                    return build(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        headers,
                        EdgeBody::empty(),
                    );
                }
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

fn plain(status: StatusCode, text: &'static str, head: bool, served: Served) -> Response<EdgeBody> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static("Error"));
    headers.insert(CACHE_STATUS.clone(), served.cache_status());
    let body = if head {
        EdgeBody::empty()
    } else {
        EdgeBody::from(text)
    };
    build(status, headers, body)
}

fn build(status: StatusCode, headers: HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}
