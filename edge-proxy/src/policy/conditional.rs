//! Conditional requests (RFC 9110 §13): viewer `If-None-Match` / `If-Modified-Since` → 304, and
//! `If-Range` deciding whether a `Range` applies.

use std::time::SystemTime;

use http::HeaderValue;

/// Validators for a conditional request (a stale entry's revalidation, or a viewer's own
/// validators forwarded on a pass-through).
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

/// Whether a GET/HEAD for a representation with `etag`/`last_modified` should get 304.
/// `If-None-Match` takes precedence; `If-Modified-Since` is only consulted without it.
pub fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: Option<&[u8]>,
    last_modified: Option<SystemTime>,
) -> bool {
    if let Some(inm) = if_none_match {
        return etag_list_matches_weak(inm, etag);
    }
    match (if_modified_since.and_then(parse_date), last_modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Weak comparison of an `If-None-Match` list (or `*`) against our ETag.
pub fn etag_list_matches_weak(list: &[u8], etag: Option<&[u8]>) -> bool {
    let Ok(list) = std::str::from_utf8(list) else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    let Some(ours) = etag.and_then(|e| std::str::from_utf8(e).ok()) else {
        return false;
    };
    let ours = opaque(ours);
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .any(|t| opaque(t) == ours)
}

/// `If-Range`: the range applies only if the validator matches strongly (an entity tag) or
/// equals the Last-Modified date exactly.
pub fn if_range_allows(
    if_range: &[u8],
    etag: Option<&[u8]>,
    last_modified: Option<SystemTime>,
) -> bool {
    let Ok(v) = std::str::from_utf8(if_range) else {
        return false;
    };
    let v = v.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        if v.starts_with("W/") {
            return false;
        }
        return etag
            .and_then(|e| std::str::from_utf8(e).ok())
            .is_some_and(|e| !e.starts_with("W/") && e.trim() == v);
    }
    match (httpdate::parse_http_date(v).ok(), last_modified) {
        (Some(d), Some(lm)) => d == lm,
        _ => false,
    }
}

/// The opaque part of an entity tag, dropping the weak prefix.
fn opaque(tag: &str) -> &str {
    let t = tag.trim();
    t.strip_prefix("W/").unwrap_or(t)
}

fn parse_date(v: &[u8]) -> Option<SystemTime> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

    fn lm() -> SystemTime {
        httpdate::parse_http_date(LM).expect("date")
    }

    fn nm(
        inm: Option<&str>,
        ims: Option<&str>,
        etag: Option<&str>,
        last: Option<SystemTime>,
    ) -> bool {
        not_modified(
            inm.map(str::as_bytes),
            ims.map(str::as_bytes),
            etag.map(str::as_bytes),
            last,
        )
    }

    #[test]
    fn if_none_match() {
        let e = Some("\"abc\"");
        assert!(nm(Some("\"abc\""), None, e, None));
        assert!(nm(Some("W/\"abc\""), None, e, None));
        assert!(nm(Some("\"x\", \"abc\""), None, e, None));
        assert!(nm(Some("*"), None, e, None));
        assert!(nm(Some(" * "), None, None, None));
        assert!(!nm(Some("\"abcd\""), None, e, None));
        assert!(!nm(Some("\"abc\""), None, None, None));
        assert!(!nm(Some(""), None, e, None));
        assert!(nm(Some("\"abc\""), None, Some("W/\"abc\""), None));
        assert!(!not_modified(Some(&[0xff]), None, Some(b"\"a\""), None));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        // A non-matching INM means 200 even though IMS alone would say 304.
        assert!(!nm(Some("\"zzz\""), Some(LM), Some("\"abc\""), Some(lm())));
    }

    #[test]
    fn if_modified_since() {
        assert!(nm(None, Some(LM), None, Some(lm())));
        assert!(nm(
            None,
            Some("Thu, 22 Oct 2015 07:28:00 GMT"),
            None,
            Some(lm())
        ));
        assert!(!nm(
            None,
            Some("Tue, 20 Oct 2015 07:28:00 GMT"),
            None,
            Some(lm())
        ));
        assert!(!nm(None, Some("garbage"), None, Some(lm())));
        assert!(!nm(None, Some(LM), None, None));
        assert!(!nm(None, None, Some("\"a\""), Some(lm())));
    }

    #[test]
    fn if_range() {
        let e = Some(&b"\"abc\""[..]);
        assert!(if_range_allows(b"\"abc\"", e, None));
        assert!(!if_range_allows(b"\"abd\"", e, None));
        assert!(!if_range_allows(b"W/\"abc\"", e, None));
        assert!(!if_range_allows(b"\"abc\"", Some(b"W/\"abc\""), None));
        assert!(if_range_allows(LM.as_bytes(), None, Some(lm())));
        assert!(!if_range_allows(
            LM.as_bytes(),
            None,
            Some(lm() + Duration::from_secs(1))
        ));
        assert!(!if_range_allows(b"nonsense", e, Some(lm())));
    }
}
