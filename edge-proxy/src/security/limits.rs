//! Request-size limits checked before any other work: long URLs get 414, oversized header
//! sections 431 (hyper's own buffer limit is a coarser backstop).

use http::{HeaderMap, StatusCode, Uri};

use crate::config::security::ViewerLimits;

/// The status a request must be refused with, if it breaks a limit.
pub fn check_request_size(
    uri: &Uri,
    headers: &HeaderMap,
    limits: &ViewerLimits,
) -> Option<StatusCode> {
    let target_len = match uri.path_and_query() {
        // Absolute-form targets count in full.
        Some(pq) if uri.scheme().is_none() => pq.as_str().len(),
        _ => uri.to_string().len(),
    };
    if target_len > limits.max_url_bytes as usize {
        return Some(StatusCode::URI_TOO_LONG);
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes as usize {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn limits() {
        let l = ViewerLimits::default();
        let ok: Uri = format!("/{}", "a".repeat(8000)).parse().expect("uri");
        assert_eq!(check_request_size(&ok, &HeaderMap::new(), &l), None);
        let long: Uri = format!("/a?{}", "b".repeat(8200)).parse().expect("uri");
        assert_eq!(
            check_request_size(&long, &HeaderMap::new(), &l),
            Some(StatusCode::URI_TOO_LONG)
        );
        let mut h = HeaderMap::new();
        for i in 0..30 {
            h.insert(
                http::header::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
                HeaderValue::from_str(&"v".repeat(700)).expect("value"),
            );
        }
        assert_eq!(
            check_request_size(&ok, &h, &l),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
