//! Custom error responses (CloudFront `customErrorResponses`): an object from the origin served
//! in place of an error answer, under its own response code. The page is fetched through the
//! cache like any object, but it is answered with the freshness of the error it stands for: a
//! 404 whose negative entry lives 10 s says so in `Age`, `Cache-Status` and `Cache-Control`,
//! whatever TTL the page object itself has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::StatusCode;

use super::fetch::{self, Collapsed, Fetched};
use super::{Edge, Generation};
use crate::cache::key::normalize_path;
use crate::cache::Entry;

/// The custom error page for `code` and the status to answer with, if one is configured and
/// can be had (a failing page falls back to the plain error). `answer` is the negative entry
/// the page replaces; `None` for an origin failure (remembered for the error-caching TTL).
pub async fn error_page(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    code: u16,
    answer: Option<&Entry>,
) -> Option<(StatusCode, Arc<Entry>)> {
    let settings = &generation.settings;
    let custom = settings.error_response(code)?;
    let page_path = custom.response_page_path.as_ref()?;
    let status = StatusCode::from_u16(custom.response_code.unwrap_or(code)).ok()?;
    let path = normalize_path(page_path).ok()?;
    let now = Instant::now();
    let error_ttl = settings.error_ttl_for(code);
    if let Some(e) = generation.storage().lookup(&path).await {
        if !e.is_negative() && (e.is_fresh(now) || e.usable_if_error(now)) {
            return Some((status, Arc::new(standing_for(&e, answer, error_ttl, now))));
        }
    }
    match fetch::fetch_collapsed(edge, generation, &path, None)
        .await
        .0
    {
        Collapsed::Done(Ok(f)) => match &*f {
            Fetched::Entry { entry, .. } if !entry.is_negative() => Some((
                status,
                Arc::new(standing_for(entry, answer, error_ttl, Instant::now())),
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The page's body and content headers with the freshness of the error it answers: the
/// negative entry's age and lifetime, or for an origin failure the error-caching TTL from
/// `now`. Downstream caches are told to keep it no longer than the error stands.
fn standing_for(page: &Entry, answer: Option<&Entry>, error_ttl: Duration, now: Instant) -> Entry {
    let mut e = page.with_body(page.body.clone());
    match answer {
        Some(a) => {
            e.stored_at = a.stored_at;
            e.initial_age = a.initial_age;
            e.ttl = a.ttl;
        }
        None => {
            e.stored_at = now;
            e.initial_age = Duration::ZERO;
            e.ttl = error_ttl;
        }
    }
    e.stale_if_error = Duration::ZERO;
    e.stale_while_revalidate = Duration::ZERO;
    let left = e.ttl.saturating_sub(e.age(now)).as_secs();
    e.headers.remove(header::EXPIRES);
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={left}")) {
        e.headers.insert(header::CACHE_CONTROL, v);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::StaleWindows;
    use bytes::Bytes;
    use http::HeaderMap;

    #[test]
    fn a_page_answers_with_the_errors_freshness_not_its_own() {
        let now = Instant::now();
        let mut origin = HeaderMap::new();
        origin.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=3600"),
        );
        origin.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let page = Entry::whole(
            &origin,
            Bytes::from_static(b"<h1>404</h1>"),
            Duration::from_secs(3600),
            StaleWindows::default(),
            now.checked_sub(Duration::from_secs(600)).unwrap_or(now),
        );
        let negative = Entry::whole(
            &HeaderMap::new(),
            Bytes::new(),
            Duration::from_secs(10),
            StaleWindows::default(),
            now.checked_sub(Duration::from_secs(3)).unwrap_or(now),
        );
        let e = standing_for(&page, Some(&negative), Duration::from_secs(10), now);
        assert_eq!(e.ttl, Duration::from_secs(10));
        assert_eq!(
            e.age(now).as_secs(),
            3,
            "the error's age, not the page's 600 s"
        );
        assert_eq!(
            e.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"max-age=7"[..])
        );
        assert_eq!(
            e.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"text/html"[..])
        );
        assert_eq!(e.bytes().map(|b| b.len()), Some(12));

        let failure = standing_for(&page, None, Duration::from_secs(5), now);
        assert_eq!(failure.age(now), Duration::ZERO);
        assert_eq!(failure.ttl, Duration::from_secs(5));
    }
}
