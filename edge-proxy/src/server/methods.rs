//! Methods beyond GET and HEAD (`allowedMethods: get-head-options | all`): the viewer's
//! request goes to the HTTP origin as it is — method, whole query, end-to-end headers, the body
//! streamed under a bound — and the answer comes back whatever its status, never stored. A
//! successful unsafe method invalidates what the cache holds for its path and for the
//! `Location` / `Content-Location` it names on the same host (RFC 9111 §4.4).

use std::net::IpAddr;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request::Parts, Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::EdgeBody;
use super::respond::{Served, CACHE_STATUS, X_CACHE};
use super::{Edge, Generation};
use crate::cache::key::PathMatcher;
use crate::origin::{ForwardRequest, OriginBody, OriginError};

/// The largest request body forwarded; a declared larger one gets 413 before the origin is
/// asked, an undeclared one is cut (and the origin sees a failed upload).
pub const MAX_REQUEST_BODY: u64 = 64 << 20;

/// Request fields that belong to one hop (RFC 9110 §7.6.1) or that the edge sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Forwards the request; the answer (or a 4xx/5xx of the edge's own) is for this viewer only.
pub async fn forward<B>(
    edge: &Edge,
    generation: &Generation,
    parts: &Parts,
    body: B,
    path: String,
    peer: IpAddr,
) -> Response<EdgeBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "413 Payload Too Large\n");
    }
    let req = ForwardRequest {
        method: parts.method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: forwarded_headers(&parts.headers, peer),
        body: bounded(body, MAX_REQUEST_BODY),
    };
    let unsafe_method = !matches!(parts.method, Method::OPTIONS | Method::TRACE);
    match generation.origin.forward(req).await {
        Ok(resp) => {
            edge.mark_ready();
            super::fill::count_origin(edge, "forwarded");
            if unsafe_method && (resp.status.is_success() || resp.status.is_redirection()) {
                invalidate_targets(edge, &path, &parts.headers, &resp.headers).await;
            }
            let len = resp
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut r = Response::new(EdgeBody::Stream {
                prefix: None,
                rest: resp.body,
                len,
            });
            *r.status_mut() = resp.status;
            let h = r.headers_mut();
            *h = resp.headers;
            h.remove(header::CONTENT_LENGTH);
            mark(h, resp.status);
            r
        }
        Err(e) => {
            super::fill::origin_failed(edge, &path, &e);
            let status = e.viewer_status();
            let mut r = plain(status, status.canonical_reason().unwrap_or("origin failed"));
            let cs = Served::Forwarded.cache_status().fwd_status(e.fwd_status());
            r.headers_mut().insert(CACHE_STATUS.clone(), cs.render());
            r
        }
    }
}

/// The viewer's end-to-end headers plus `X-Forwarded-For` with its address.
fn forwarded_headers(viewer: &HeaderMap, peer: IpAddr) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(viewer.len() + 1);
    for (name, v) in viewer {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            out.append(name.clone(), v.clone());
        }
    }
    let xff = match viewer.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    out
}

/// The request body as a stream that fails once more than `max` bytes arrived.
fn bounded<B>(body: B, max: u64) -> OriginBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let mut seen = 0u64;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| OriginError::Body(format!("viewer body: {e}")))?;
        seen += chunk.len() as u64;
        if seen > max {
            return Err(OriginError::Body(format!("viewer body over {max} bytes")));
        }
        Ok(chunk)
    });
    Box::pin(stream)
}

/// Drops the stored answers for `path` and for the same-host `Location` / `Content-Location`
/// of the origin's answer.
async fn invalidate_targets(edge: &Edge, path: &str, req: &HeaderMap, resp: &HeaderMap) {
    let host = req.get(header::HOST).and_then(|v| v.to_str().ok());
    let mut matchers = vec![PathMatcher::Exact(path.to_owned())];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(target) = resp.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(p) = same_host_path(target, host) {
            if let Ok(m) = PathMatcher::parse(&p) {
                if !p.ends_with('*') {
                    matchers.push(m);
                }
            }
        }
    }
    super::admin::invalidate_now(edge, matchers).await;
}

/// The path of `target` when it is relative or on `host`.
fn same_host_path(target: &str, host: Option<&str>) -> Option<String> {
    let without_query = |s: &str| s.split(['?', '#']).next().unwrap_or(s).to_owned();
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(without_query(target));
    }
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (Some(authority) == host && !path.is_empty()).then(|| without_query(path))
}

fn mark(h: &mut HeaderMap, status: StatusCode) {
    h.insert(
        X_CACHE.clone(),
        HeaderValue::from_static(Served::Forwarded.x_cache(status)),
    );
    h.insert(
        CACHE_STATUS.clone(),
        Served::Forwarded.cache_status().render(),
    );
}

fn plain(status: StatusCode, text: &'static str) -> Response<EdgeBody> {
    let mut r = Response::new(EdgeBody::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    mark(r.headers_mut(), status);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_stay_and_the_viewer_is_named() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close"));
        h.insert("host", HeaderValue::from_static("cdn.example.com"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let out = forwarded_headers(&h, IpAddr::from([127, 0, 0, 1]));
        assert!(out.get("connection").is_none() && out.get("host").is_none());
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    }

    #[test]
    fn only_same_host_locations_are_invalidated() {
        let host = Some("cdn.example.com");
        assert_eq!(
            same_host_path("/item/7?x=1", host).as_deref(),
            Some("/item/7")
        );
        assert_eq!(
            same_host_path("https://cdn.example.com/a", host).as_deref(),
            Some("/a")
        );
        assert_eq!(same_host_path("https://evil.example/a", host), None);
        assert_eq!(same_host_path("//evil.example/a", host), None);
        assert_eq!(same_host_path("relative", host), None);
    }
}
