//! The one allowlist of origin response headers the edge stores and replays (on hits, misses,
//! pass-through and HEAD answers alike). Everything else an origin sends (its `Date`, `Server`,
//! `x-amz-*`, `Set-Cookie`, hop-by-hop headers…) is dropped, whatever the origin kind.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Representation metadata worth replaying, and the fields an answer other than 200 needs to
/// mean anything (a redirect's `Location`, a 405's `Allow`, a 401's `WWW-Authenticate`), and
/// a parent cache's `Cache-Status` (RFC 9211 §2: each cache keeps the entries of the caches
/// before it, so a shield's verdict reaches the viewer before this edge's own).
pub const REPLAYED: [HeaderName; 16] = [
    header::CONTENT_TYPE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::LOCATION,
    header::CONTENT_LOCATION,
    header::ALLOW,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
    header::LINK,
    header::VARY,
    HeaderName::from_static("cache-status"),
];

/// What a 304 may update on a stored entry (RFC 9111 §4.3.4, limited to the allowlist; the
/// body's own metadata such as `Content-Type` stays with the body).
pub const REFRESHED_BY_304: [HeaderName; 4] = [
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

/// The allowlisted subset of `origin`, plus `Accept-Ranges: bytes` (the edge serves ranges of
/// everything it stores or streams).
///
/// Sized for the headers present and copied: the map lives as long as the entry, a map reserved
/// for every allowlisted name holds slots most objects never use, and a header value parsed by
/// hyper may be a view into the whole read buffer of its response (an HTTP origin's).
pub fn replayed(origin: &HeaderMap) -> HeaderMap {
    let present = REPLAYED.iter().filter(|n| origin.contains_key(*n)).count();
    let mut out = HeaderMap::with_capacity(present + 1);
    for name in &REPLAYED {
        if let Some(v) = origin.get(name) {
            let owned = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
            out.insert(name.clone(), owned);
        }
    }
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out
}

/// `stored` with the fields a 304 carried merged over it.
pub fn refreshed(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    for name in &REFRESHED_BY_304 {
        if let Some(v) = not_modified.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowlist_is_kept_and_304s_update_validators_and_freshness() {
        let mut origin = HeaderMap::new();
        origin.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        origin.insert(header::ETAG, HeaderValue::from_static("\"1\""));
        origin.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        origin.insert("x-amz-request-id", HeaderValue::from_static("r"));
        let kept = replayed(&origin);
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[header::ACCEPT_RANGES], "bytes");
        assert!(kept.get(header::SET_COOKIE).is_none());
        let mut nm = HeaderMap::new();
        nm.insert(header::ETAG, HeaderValue::from_static("\"2\""));
        nm.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let r = refreshed(&kept, &nm);
        assert_eq!(r[header::ETAG], "\"2\"");
        assert_eq!(r[header::CONTENT_TYPE], "text/plain");
    }
}
