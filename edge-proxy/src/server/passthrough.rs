//! Objects larger than `maxObjectSize` stream through uncached. Once the edge knows a key is
//! that large, each viewer request goes to the origin on its own with the viewer's `Range` and
//! validators forwarded (an `If-Range` becomes `If-Match` / `If-Unmodified-Since` with a
//! fallback to the whole object), so a small range of a huge object costs a small range at the
//! origin.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::body::EdgeBody;
use super::fetch::PassThrough;
use super::respond;
use super::{Edge, Generation};
use crate::origin::{OriginError, OriginRequest, OriginStatus, Validators};

/// The result of a forwarded pass-through.
pub enum Forwarded {
    Response(Response<EdgeBody>),
    /// A fact about the object (404/403), answered like a negative entry.
    Negative(StatusCode),
}

/// The origin request for a viewer request, validators and range forwarded.
pub fn origin_request(path: &str, req: &HeaderMap, head: bool) -> OriginRequest {
    let mut o = OriginRequest {
        head,
        validators: Validators {
            etag: req.get(header::IF_NONE_MATCH).cloned(),
            last_modified: req.get(header::IF_MODIFIED_SINCE).cloned(),
        },
        ..OriginRequest::get(path)
    };
    if head {
        return o;
    }
    o.range = req.get(header::RANGE).cloned();
    if o.range.is_some() {
        if let Some(ir) = req.get(header::IF_RANGE) {
            if if_range_is_etag(ir) {
                o.if_match = Some(ir.clone());
            } else {
                o.if_unmodified_since = Some(ir.clone());
            }
        }
    }
    o
}

fn if_range_is_etag(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    b.starts_with(b"\"") || b.starts_with(b"W/")
}

/// Streams the object under `key` from the origin for this viewer request.
pub async fn forward(
    edge: &Edge,
    generation: &Generation,
    key: &str,
    req: &HeaderMap,
    head: bool,
) -> Result<Forwarded, OriginError> {
    let path = crate::cache::key::key_path(key);
    let mut o = origin_request(path, req, head);
    super::fill::forward_key(&mut o, key);
    let mut resp = generation.origin.fetch(o.clone()).await;
    if let Ok(r) = &resp {
        if r.status == OriginStatus::PreconditionFailed && o.range.is_some() {
            // If-Range did not match: the whole object, as RFC 9110 §13.1.5 requires.
            o.range = None;
            o.if_match = None;
            o.if_unmodified_since = None;
            resp = generation.origin.fetch(o).await;
        }
    }
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            super::fill::origin_failed(edge, path, &e);
            return Err(e);
        }
    };
    edge.mark_ready();
    edge.health.success();
    super::fill::count_origin(edge, if head { "head" } else { "pass_through" });
    let max = generation.settings.max_object_size;
    match resp.status {
        OriginStatus::Ok | OriginStatus::PartialContent => {
            if resp.status == OriginStatus::Ok
                && !head
                && resp.meta.content_length.is_some_and(|n| n <= max)
            {
                // It shrank: let the next request cache it.
                generation.misses.large.invalidate(path);
            }
            if head {
                return Ok(Forwarded::Response(respond::head_response(req, &resp.meta)));
            }
            let Some(rest) = resp.body else {
                return Err(OriginError::Body("origin sent no body".into()));
            };
            let pass = PassThrough {
                meta: resp.meta,
                prefix: bytes::Bytes::new(),
                rest,
            };
            Ok(Forwarded::Response(respond::stream_response(
                req, false, pass, true,
            )))
        }
        OriginStatus::NotModified => Ok(Forwarded::Response(respond::origin_not_modified(
            &resp.meta,
        ))),
        OriginStatus::RangeNotSatisfiable => Ok(Forwarded::Response(
            respond::origin_unsatisfiable(&resp.meta),
        )),
        OriginStatus::NotFound => Ok(Forwarded::Negative(StatusCode::NOT_FOUND)),
        OriginStatus::Forbidden => Ok(Forwarded::Negative(StatusCode::FORBIDDEN)),
        OriginStatus::PreconditionFailed => Err(OriginError::status(
            502,
            "412 from the origin to an unconditional request",
        )),
        OriginStatus::Other(code) => {
            other_status(generation, req, head, code, resp.meta, resp.body).await
        }
    }
}

/// A redirect, 204, 400… passed through with its status and allowlisted headers (never
/// stored here: this path is for objects too large to cache and HEADs).
async fn other_status(
    generation: &Generation,
    req: &HeaderMap,
    head: bool,
    code: u16,
    meta: crate::origin::ObjectMeta,
    body: Option<crate::origin::OriginBody>,
) -> Result<Forwarded, OriginError> {
    let limit = generation.settings.fill_timeout;
    let (status, bytes) = super::fill::status_answer(code, body, limit).await?;
    let entry = crate::cache::Entry::status_answer(
        status,
        &meta.headers(),
        bytes,
        std::time::Duration::ZERO,
        std::time::Instant::now(),
    );
    let served = if head {
        respond::Served::HeadMiss
    } else {
        respond::Served::TooLarge
    };
    Ok(Forwarded::Response(respond::entry_response(
        req, head, &entry, status, served,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_range_and_validators() {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=100-199"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"abc\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        let o = origin_request("/big.bin", &h, false);
        assert_eq!(
            o.range.as_ref().map(|v| v.as_bytes()),
            Some(&b"bytes=100-199"[..])
        );
        assert_eq!(
            o.if_match.as_ref().map(|v| v.as_bytes()),
            Some(&b"\"abc\""[..])
        );
        assert!(o.if_unmodified_since.is_none());
        assert!(o.validators.etag.is_some());
        h.insert(
            header::IF_RANGE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let o = origin_request("/big.bin", &h, false);
        assert!(o.if_match.is_none());
        assert!(o.if_unmodified_since.is_some());
        // HEAD forwards no range.
        let o = origin_request("/big.bin", &h, true);
        assert!(o.head && o.range.is_none());
    }
}
