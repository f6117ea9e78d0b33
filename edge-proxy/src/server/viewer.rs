//! The viewer request path, as phases with one job each: `admit` (limits, method, path,
//! signature, cache key), `lookup` (what the store says: fresh, servable while revalidating,
//! or a miss with or without a stale copy), then the miss path (pass-through, error caching,
//! collapsed fetch) and `failed` (stale-if-error, must-revalidate 504, custom error pages).
//! Responses are built in `respond`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};

use super::access_log::Line;
use super::body::EdgeBody;
use super::error_page::error_page;
use super::fetch::{self, Collapsed, FetchKind, Fetched, Target};
use super::passthrough::{self, Forwarded};
use super::respond::{self, entry_response, plain, Served, X_CACHE};
use super::sliced::SliceFailure;
use super::{Edge, Generation};
use crate::cache::key::{key_path, normalize_path};
use crate::cache::slice;
use crate::cache::Entry;
use crate::origin::OriginError;
use crate::policy::protocol::ProtocolAnswer;

/// Longest request target accepted (CloudFront allows 8 KiB URLs).
pub const MAX_URI_LEN: usize = 8192;

/// What the access log and metrics need about one answer.
struct Outcome {
    served: Served,
    origin_time: Option<Duration>,
}

/// Handles one viewer request; never fails (errors become responses).
pub async fn handle<B>(edge: Arc<Edge>, req: Request<B>) -> Response<EdgeBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let started = Instant::now();
    let (req, body) = req.into_parts();
    let (mut resp, outcome) = answer(&edge, &req, body).await;
    // Response headers policy (CORS, security headers) on every answer, after the cache.
    edge.current
        .load()
        .settings
        .security
        .headers
        .apply(&req.headers, resp.headers_mut());
    let status = resp.status();
    let bytes = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
    edge.metrics
        .requests
        .inc(outcome.served.label(), status.as_u16());
    edge.metrics.response_bytes.inc_by(bytes);
    if let Some(log) = &edge.access_log {
        log.record(&Line {
            method: req.method.as_str(),
            path: req.uri.path(),
            status: status.as_u16(),
            cache: resp
                .headers()
                .get(&X_CACHE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            bytes,
            duration: started.elapsed(),
            origin: outcome.origin_time,
        });
    }
    resp
}

async fn answer<B>(edge: &Arc<Edge>, req: &Parts, body: B) -> (Response<EdgeBody>, Outcome)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let generation = edge.current.load_full();
    let (head, key) = match admit(&generation, req) {
        Ok(Admitted::Cache { head, key }) => (head, key),
        Ok(Admitted::Forward { path }) => {
            let started = Instant::now();
            let peer = viewer_ip(req);
            let resp = super::methods::forward(edge, &generation, req, body, path, peer).await;
            let outcome = Outcome {
                served: Served::Forwarded,
                origin_time: Some(started.elapsed()),
            };
            return (resp, outcome);
        }
        Err(resp) => {
            return (
                resp,
                Outcome {
                    served: Served::Rejected,
                    origin_time: None,
                },
            )
        }
    };
    let request = Viewer {
        edge,
        generation: &generation,
        headers: &req.headers,
        head,
        key: &key,
        restarted: AtomicBool::new(false),
    };
    request.serve().await
}

/// How an admitted request is answered.
enum Admitted {
    /// GET/HEAD: from the cache, under `key`.
    Cache { head: bool, key: String },
    /// Another allowed method: forwarded to the origin for the normalized `path`.
    Forward { path: String },
}

/// The viewer's address (from the connection).
fn viewer_ip(req: &Parts) -> std::net::IpAddr {
    req.extensions
        .get::<crate::security::ViewerAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.0.ip())
}

/// Checks a request and derives its cache key; `Err` is the refusal to send (cold path: the
/// size of the `Err` does not matter).
#[allow(clippy::result_large_err)]
fn admit(generation: &Generation, req: &Parts) -> Result<Admitted, Response<EdgeBody>> {
    let settings = &generation.settings;
    let security = &settings.security;
    let head = req.method == Method::HEAD;
    if let Err(refusal) = security.check_limits(&req.uri, &req.headers) {
        return Err(plain(refusal.status, refusal.body, head, Served::Rejected));
    }
    if let Some(preflight) = security.headers.preflight(&req.method, &req.headers) {
        let mut r = plain(preflight.status, "", false, Served::Rejected);
        r.headers_mut().remove(header::CONTENT_LENGTH);
        r.headers_mut().remove(header::CONTENT_TYPE);
        r.headers_mut().extend(preflight.headers);
        return Err(r);
    }
    let cacheable = matches!(req.method, Method::GET | Method::HEAD);
    let allowed = settings.config.allowed_methods;
    if !cacheable && !allowed.allows(req.method.as_str()) {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed\n",
            false,
            Served::Rejected,
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(allowed.allow_header()),
        );
        return Err(r);
    }
    if req.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_LEN {
        return Err(plain(
            StatusCode::URI_TOO_LONG,
            "414 URI Too Long\n",
            head,
            Served::Rejected,
        ));
    }
    let mut path = normalize_path(req.uri.path()).map_err(|e| {
        tracing::debug!(path = req.uri.path(), error = %e, "bad request path");
        plain(
            StatusCode::BAD_REQUEST,
            "400 Bad Request\n",
            head,
            Served::Rejected,
        )
    })?;
    let tls = req
        .extensions
        .get::<crate::security::ViewerTlsConnection>()
        .is_some();
    if let Some(refused) = protocol_refusal(settings, req, tls, &path, head) {
        return Err(refused);
    }
    // Signed URLs / cookies: checked before the cache; signing parameters never reach the key.
    let peer = viewer_ip(req);
    // A shield's child edge already checked the viewer's signature (and sends no signing
    // parameters): it is trusted by its token, never by anything a viewer controls.
    let stripped = if security.from_child_edge(&req.headers) {
        None
    } else {
        security
            .authorize(&req.uri, &req.headers, &path, peer, tls)
            .map_err(|refusal| plain(refusal.status, refusal.body, head, Served::Rejected))?
            .stripped_uri
    };
    let query = stripped.as_ref().map_or(req.uri.query(), |u| u.query());
    if !cacheable {
        return Ok(Admitted::Forward { path });
    }
    if path == "/" {
        if let Some(root) = &settings.default_root {
            path.clone_from(root);
        }
    }
    let headers = &req.headers;
    let key = settings
        .key_policy
        .key(path, query, |name| headers.get(name).map(|v| v.as_bytes()));
    Ok(Admitted::Cache { head, key })
}

/// The viewer protocol policy's answer to a viewer on plain HTTP, if it is not "serve".
fn protocol_refusal(
    settings: &super::Settings,
    req: &Parts,
    tls: bool,
    path: &str,
    head: bool,
) -> Option<Response<EdgeBody>> {
    if tls || settings.protocol.all_allow() {
        return None;
    }
    let https = crate::security::forwarded_proto(&req.headers, &settings.security.client_ip)
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    let path_and_query = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    match settings
        .protocol
        .answer(https, host, path, path_and_query, settings.https_port)
    {
        ProtocolAnswer::Serve => None,
        ProtocolAnswer::Forbidden => Some(plain(
            StatusCode::FORBIDDEN,
            "403 Forbidden: this path is served over HTTPS only\n",
            head,
            Served::Rejected,
        )),
        ProtocolAnswer::BadHost => Some(plain(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: no valid Host to redirect to\n",
            head,
            Served::Rejected,
        )),
        ProtocolAnswer::Redirect(location) => {
            let mut r = plain(
                StatusCode::MOVED_PERMANENTLY,
                "301 Moved Permanently\n",
                head,
                Served::Rejected,
            );
            match HeaderValue::from_str(&location) {
                Ok(v) => {
                    r.headers_mut().insert(header::LOCATION, v);
                    Some(r)
                }
                Err(_) => Some(plain(
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request\n",
                    head,
                    Served::Rejected,
                )),
            }
        }
    }
}

/// What the store has for a key.
#[derive(Debug)]
enum Lookup {
    Fresh(Arc<Entry>),
    /// Stale, within stale-while-revalidate: serve it and refresh in the background.
    Revalidating(Arc<Entry>),
    /// Nothing usable without the origin; the stale (or negative) entry if any.
    Miss(Option<Arc<Entry>>),
}

fn lookup(cached: Option<Arc<Entry>>, now: Instant) -> Lookup {
    match cached {
        Some(e) if e.is_fresh(now) => Lookup::Fresh(e),
        Some(e) if e.usable_while_revalidating(now) => Lookup::Revalidating(e),
        other => Lookup::Miss(other),
    }
}

/// `Cache-Control: only-if-cached` on the request.
fn only_if_cached(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
}

/// Whether the viewer asked for part of the object or conditionally (then a whole-object
/// stream cannot answer it as is).
fn wants_forwarding(headers: &HeaderMap) -> bool {
    headers.contains_key(header::RANGE)
        || headers.contains_key(header::IF_NONE_MATCH)
        || headers.contains_key(header::IF_MODIFIED_SINCE)
}

/// One admitted viewer request.
struct Viewer<'a> {
    edge: &'a Arc<Edge>,
    generation: &'a Arc<Generation>,
    headers: &'a HeaderMap,
    head: bool,
    key: &'a str,
    /// Set once the request started over because a sliced object changed under it.
    restarted: AtomicBool,
}

impl Viewer<'_> {
    async fn serve(&self) -> (Response<EdgeBody>, Outcome) {
        let now = Instant::now();
        match lookup(self.generation.storage().lookup(self.key).await, now) {
            Lookup::Fresh(e) => self.finish(&e, Served::Hit, None).await,
            Lookup::Revalidating(e) => {
                fetch::refresh_in_background(self.edge, self.generation, self.key, e.clone());
                self.finish(&e, Served::StaleWhileRevalidate, None).await
            }
            Lookup::Miss(_) if only_if_cached(self.headers) => (
                plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: not cached (only-if-cached)\n",
                    self.head,
                    Served::OnlyIfCached,
                ),
                Outcome {
                    served: Served::OnlyIfCached,
                    origin_time: None,
                },
            ),
            Lookup::Miss(stale) => self.miss(stale, now).await,
        }
    }

    async fn miss(&self, stale: Option<Arc<Entry>>, now: Instant) -> (Response<EdgeBody>, Outcome) {
        let path = key_path(self.key);
        let started = Instant::now();
        if stale.is_none() && (self.head || self.generation.misses.large.contains_key(path)) {
            // HEAD on a miss is an origin HEAD; a known-large object streams through with
            // the viewer's Range and validators forwarded.
            return self.forward(self.head, started).await;
        }
        if !stale.as_ref().is_some_and(|s| s.usable_if_error(now)) {
            if let Some(err) = fetch::cached_error(self.generation, self.key) {
                let served = Served::CachedError(err.fwd_status());
                return self.failed(err, stale, served, None).await;
            }
        }
        let target = self.first_target();
        let (collapsed, joined) = fetch::fetch_collapsed_as(
            self.edge,
            self.generation,
            self.key,
            stale.clone(),
            target.clone(),
        )
        .await;
        let result = match collapsed {
            Collapsed::Done(r) => r,
            Collapsed::GaveUp => {
                if let Some(s) = stale.as_ref().filter(|s| s.usable_if_error(Instant::now())) {
                    let t = Some(started.elapsed());
                    return self.finish(s, Served::StaleIfError(504), t).await;
                }
                fetch::fetch_alone(
                    self.edge,
                    self.generation,
                    self.key,
                    stale.clone(),
                    target.clone(),
                )
                .await
            }
        };
        let (result, joined) = match result {
            // A personal answer belongs to the request that started the fetch.
            Ok(f) if joined && is_private(&f) => (
                fetch::fetch_alone(self.edge, self.generation, self.key, stale.clone(), target)
                    .await,
                false,
            ),
            other => (other, joined),
        };
        let origin_time = Some(started.elapsed());
        match result {
            Ok(fetched) => {
                self.fetched(&fetched, joined, stale.is_some(), started)
                    .await
            }
            Err(err) => {
                let served = Served::OriginError(err.fwd_status());
                self.failed(err, stale, served, origin_time).await
            }
        }
    }

    /// What the origin is asked for first: the slice holding the first byte the viewer wants.
    fn first_target(&self) -> Target {
        let start = self
            .headers
            .get(header::RANGE)
            .map_or(0, |r| slice::requested_start(r.as_bytes()));
        Target::object(start / self.generation.settings.slice_size)
    }

    async fn fetched(
        &self,
        fetched: &Fetched,
        collapsed: bool,
        had_stale: bool,
        started: Instant,
    ) -> (Response<EdgeBody>, Outcome) {
        let origin_time = Some(started.elapsed());
        match fetched {
            Fetched::Entry { entry, kind, first } => {
                let served = match kind {
                    FetchKind::Refreshed => Served::Refreshed { collapsed },
                    FetchKind::RefreshedDropped => Served::RefreshedDropped,
                    FetchKind::Stored | FetchKind::NotStored | FetchKind::Private => Served::Miss {
                        stored: *kind == FetchKind::Stored,
                        collapsed,
                        stale: had_stale,
                    },
                };
                self.finish_with(entry, first.clone(), served, origin_time)
                    .await
            }
            Fetched::Large => self.forward(self.head, started).await,
            Fetched::Changed => {
                let err = OriginError::status(502, "object changed during the fetch");
                let served = Served::OriginError(502);
                self.failed(err, None, served, origin_time).await
            }
            Fetched::Stream(slot) => {
                let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                match taken {
                    Some(pass) if !wants_forwarding(self.headers) => (
                        respond::stream_response(self.headers, self.head, *pass, false),
                        Outcome {
                            served: Served::TooLarge,
                            origin_time,
                        },
                    ),
                    // Another waiter took the stream, or this viewer wants a range or sent
                    // validators: its own origin request, forwarded.
                    _ => self.forward(self.head, started).await,
                }
            }
        }
    }

    async fn forward(&self, head: bool, started: Instant) -> (Response<EdgeBody>, Outcome) {
        let served = if head {
            Served::HeadMiss
        } else {
            Served::TooLarge
        };
        match passthrough::forward(self.edge, self.generation, self.key, self.headers, head).await {
            Ok(Forwarded::Response(r)) => (
                r,
                Outcome {
                    served,
                    origin_time: Some(started.elapsed()),
                },
            ),
            Ok(Forwarded::Negative(status)) => {
                let text: &'static str = if status == StatusCode::NOT_FOUND {
                    "404 Not Found\n"
                } else {
                    "403 Forbidden\n"
                };
                let entry = Arc::new(Entry::negative(
                    status,
                    Bytes::from_static(text.as_bytes()),
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    Duration::ZERO,
                    Instant::now(),
                ));
                self.finish(&entry, served, Some(started.elapsed())).await
            }
            Err(err) => {
                let served = Served::OriginError(err.fwd_status());
                self.failed(err, None, served, Some(started.elapsed()))
                    .await
            }
        }
    }

    /// The origin failed (or a failure is remembered): a stale copy within stale-if-error,
    /// 504 for an entry that must be revalidated, else a custom error page or 502/504.
    async fn failed(
        &self,
        err: OriginError,
        stale: Option<Arc<Entry>>,
        served: Served,
        origin_time: Option<Duration>,
    ) -> (Response<EdgeBody>, Outcome) {
        let now = Instant::now();
        if let Some(s) = stale.as_ref().filter(|s| s.usable_if_error(now)) {
            return self
                .finish(s, Served::StaleIfError(err.fwd_status()), origin_time)
                .await;
        }
        let outcome = |served| Outcome {
            served,
            origin_time,
        };
        if stale
            .as_ref()
            .is_some_and(|s| !s.is_negative() && s.must_revalidate)
        {
            // RFC 9111 §5.2.2.2: a stale response that cannot be validated → 504.
            let served = Served::MustRevalidate(err.fwd_status());
            return (
                plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: stale and must be revalidated; origin unavailable\n",
                    self.head,
                    served,
                ),
                outcome(served),
            );
        }
        let status = err.viewer_status();
        if let Some((code, page)) =
            error_page(self.edge, self.generation, status.as_u16(), None).await
        {
            let resp = entry_response(self.headers, self.head, &page, code, served);
            return (resp, outcome(served));
        }
        (
            respond::origin_failed(&err, self.head, served),
            outcome(served),
        )
    }

    /// Answers from an entry, applying a custom error page when one is configured for its
    /// status.
    async fn finish(
        &self,
        entry: &Arc<Entry>,
        served: Served,
        origin_time: Option<Duration>,
    ) -> (Response<EdgeBody>, Outcome) {
        self.finish_with(entry, None, served, origin_time).await
    }

    /// [`Viewer::finish`] with the first slice of a sliced object when it came with the head.
    async fn finish_with(
        &self,
        entry: &Arc<Entry>,
        first: Option<(u64, Arc<Entry>)>,
        served: Served,
        origin_time: Option<Duration>,
    ) -> (Response<EdgeBody>, Outcome) {
        if entry.slicing().is_some() && !entry.is_negative() {
            return self.sliced(entry, first, served, origin_time).await;
        }
        let outcome = Outcome {
            served,
            origin_time,
        };
        if entry.is_negative() {
            if let Some((status, page)) = error_page(
                self.edge,
                self.generation,
                entry.status.as_u16(),
                Some(entry.as_ref()),
            )
            .await
            {
                let resp = entry_response(self.headers, self.head, &page, status, served);
                return (resp, outcome);
            }
        }
        let resp = entry_response(self.headers, self.head, entry, entry.status, served);
        (resp, outcome)
    }
}

impl Viewer<'_> {
    /// Answers from a sliced object. The slice holding the first byte is had before the
    /// headers go out: if the object changed, the request starts over once (the head was
    /// dropped); later slices stream as the viewer reads, and a change then cuts the body.
    async fn sliced(
        &self,
        head: &Arc<Entry>,
        first: Option<(u64, Arc<Entry>)>,
        served: Served,
        origin_time: Option<Duration>,
    ) -> (Response<EdgeBody>, Outcome) {
        let plan = respond::plan(self.headers, head, StatusCode::OK);
        let mut body = None;
        if let (respond::Plan::Body { start, end, .. }, false) = (plan, self.head) {
            if start < end {
                let index = start / head.slicing().map_or(1, |s| s.size);
                let have = first.filter(|(i, e)| *i == index && e.etag == head.etag);
                let got = match have {
                    Some((_, e)) => Ok(e),
                    None => {
                        super::sliced::slice(self.edge, self.generation, self.key, head, index)
                            .await
                    }
                };
                match got {
                    Ok(e) => {
                        body = Some(super::sliced::body(
                            self.edge.clone(),
                            self.generation.clone(),
                            self.key.to_owned(),
                            head.clone(),
                            start,
                            end,
                            e,
                        ));
                    }
                    Err(SliceFailure::Changed) if !self.restarted.swap(true, Ordering::Relaxed) => {
                        return Box::pin(self.miss(None, Instant::now())).await;
                    }
                    Err(f) => {
                        let err = match f {
                            SliceFailure::Origin(e) => e,
                            SliceFailure::Changed => {
                                OriginError::status(502, "object keeps changing")
                            }
                        };
                        let served = Served::OriginError(err.fwd_status());
                        return Box::pin(self.failed(err, None, served, origin_time)).await;
                    }
                }
            }
        }
        let resp = respond::planned_response(
            self.head,
            head,
            StatusCode::OK,
            served,
            plan,
            |start, end| match body {
                Some(rest) => EdgeBody::Stream {
                    prefix: None,
                    rest,
                    len: Some(end - start),
                },
                None => EdgeBody::empty(),
            },
        );
        (
            resp,
            Outcome {
                served,
                origin_time,
            },
        )
    }
}

/// A fetched answer only its own requester may have.
fn is_private(f: &Fetched) -> bool {
    matches!(
        f,
        Fetched::Entry {
            kind: FetchKind::Private,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::StaleWindows;

    fn entry(ttl: u64, windows: StaleWindows, stored_ago: u64) -> Arc<Entry> {
        let now = Instant::now();
        let stored = now
            .checked_sub(Duration::from_secs(stored_ago))
            .unwrap_or(now);
        Arc::new(Entry::whole(
            &HeaderMap::new(),
            Bytes::from_static(b"x"),
            Duration::from_secs(ttl),
            windows,
            stored,
        ))
    }

    #[test]
    fn lookup_phases() {
        let now = Instant::now();
        assert!(matches!(lookup(None, now), Lookup::Miss(None)));
        assert!(matches!(
            lookup(Some(entry(60, StaleWindows::default(), 0)), now),
            Lookup::Fresh(_)
        ));
        let swr = StaleWindows {
            stale_while_revalidate: Duration::from_secs(100),
            ..StaleWindows::default()
        };
        assert!(matches!(
            lookup(Some(entry(10, swr, 20)), now),
            Lookup::Revalidating(_)
        ));
        let must = StaleWindows {
            stale_while_revalidate: Duration::from_secs(100),
            must_revalidate: true,
            ..StaleWindows::default()
        };
        assert!(matches!(
            lookup(Some(entry(10, must, 20)), now),
            Lookup::Miss(Some(_))
        ));
    }

    #[test]
    fn request_directives() {
        let mut h = HeaderMap::new();
        assert!(!only_if_cached(&h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, Only-If-Cached"),
        );
        assert!(only_if_cached(&h));
        assert!(!wants_forwarding(&h));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert!(wants_forwarding(&h));
    }
}
