//! One stored answer: status, the allowlisted origin headers (`headers::replayed`), freshness,
//! and a body that is whole in memory, still being filled, or stored as slices. Immutable once
//! built: a revalidation (304) builds a new entry that shares the old body, so readers never see
//! a half-updated entry and no body is copied.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::fill::Fill;
use super::slice::Slicing;
use crate::policy::conditional::Validators;

/// Bytes charged per entry on top of key and body, for the map slot, headers and bookkeeping.
const ENTRY_OVERHEAD: usize = 320;

/// Where an entry's bytes are.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole body, in memory (every stored entry that is not sliced).
    Bytes(Bytes),
    /// Being written as the origin streams it; readers follow the fill. Never stored: the
    /// fetch stores a `Bytes` entry once the fill is complete.
    Filling(Arc<Fill>),
    /// Stored as slices of `size` bytes under `key::slice_key`; the entry itself holds only
    /// the metadata all slices must match (ETag, length).
    Sliced { size: u64 },
}

#[derive(Debug)]
pub struct Entry {
    /// 200 for objects and slices; 403/404 (or a custom error code) for negative entries.
    pub status: StatusCode,
    pub body: Body,
    /// Body length (for sliced entries: the whole object).
    pub len: u64,
    /// Replayed on every answer: the allowlisted origin headers plus `Accept-Ranges`.
    pub headers: HeaderMap,
    /// Pre-rendered full-body Content-Length.
    pub content_length: HeaderValue,
    pub etag: Option<HeaderValue>,
    pub last_modified_value: Option<HeaderValue>,
    pub last_modified: Option<SystemTime>,
    pub stored_at: Instant,
    /// Age the answer already had when stored (parent caches).
    pub initial_age: Duration,
    /// Freshness lifetime.
    pub ttl: Duration,
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
    /// Never served stale: a stale entry that cannot be validated gets 504 (`stale_if_error`
    /// is then only how long it is kept for revalidation).
    pub must_revalidate: bool,
}

/// Staleness windows applied to a new entry.
pub use crate::policy::freshness::StaleRules as StaleWindows;

impl Entry {
    /// A 200 entry from the origin's response headers (filtered through the allowlist here)
    /// and a body of `len` bytes.
    pub fn new(
        origin_headers: &HeaderMap,
        body: Body,
        len: u64,
        ttl: Duration,
        windows: StaleWindows,
        now: Instant,
    ) -> Entry {
        let headers = super::headers::replayed(origin_headers);
        let etag = headers.get(header::ETAG).cloned();
        let last_modified_value = headers.get(header::LAST_MODIFIED).cloned();
        Entry {
            status: StatusCode::OK,
            body,
            len,
            content_length: HeaderValue::from(len),
            last_modified: parse_date(last_modified_value.as_ref()),
            headers,
            etag,
            last_modified_value,
            stored_at: now,
            initial_age: Duration::ZERO,
            ttl,
            stale_if_error: windows.stale_if_error,
            stale_while_revalidate: windows.stale_while_revalidate,
            must_revalidate: windows.must_revalidate,
        }
    }

    /// A 200 entry with its whole body in memory.
    pub fn whole(
        origin_headers: &HeaderMap,
        body: Bytes,
        ttl: Duration,
        windows: StaleWindows,
        now: Instant,
    ) -> Entry {
        let len = body.len() as u64;
        Entry::new(origin_headers, Body::Bytes(body), len, ttl, windows, now)
    }

    /// The same entry with `initial_age` (RFC 9111 §4.2.3 corrected initial age).
    pub fn with_initial_age(mut self, initial_age: Duration) -> Entry {
        self.initial_age = initial_age;
        self
    }

    /// The same metadata over another body (a finished fill becomes a stored `Bytes` entry).
    pub fn with_body(&self, body: Body) -> Entry {
        Entry {
            status: self.status,
            body,
            len: self.len,
            headers: self.headers.clone(),
            content_length: self.content_length.clone(),
            etag: self.etag.clone(),
            last_modified_value: self.last_modified_value.clone(),
            last_modified: self.last_modified,
            stored_at: self.stored_at,
            initial_age: self.initial_age,
            ttl: self.ttl,
            stale_if_error: self.stale_if_error,
            stale_while_revalidate: self.stale_while_revalidate,
            must_revalidate: self.must_revalidate,
        }
    }

    /// How a sliced entry is cut, `None` for whole bodies.
    pub fn slicing(&self) -> Option<Slicing> {
        match self.body {
            Body::Sliced { size } => Some(Slicing::new(size, self.len)),
            _ => None,
        }
    }

    /// The in-memory body, if complete.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.body {
            Body::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Whether a stale copy may stand in for a failed origin at `now`.
    pub fn usable_if_error(&self, now: Instant) -> bool {
        !self.is_negative() && !self.must_revalidate && self.staleness(now) <= self.stale_if_error
    }

    /// Whether a stale copy may be served while one background refresh runs.
    pub fn usable_while_revalidating(&self, now: Instant) -> bool {
        !self.is_negative()
            && !self.must_revalidate
            && self.staleness(now) < self.stale_while_revalidate
    }

    /// A negative entry (origin 403/404, or a custom error page under its response code).
    pub fn negative(
        status: StatusCode,
        body: Bytes,
        content_type: HeaderValue,
        ttl: Duration,
        now: Instant,
    ) -> Entry {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(header::CONTENT_TYPE, content_type);
        Entry {
            status,
            len: body.len() as u64,
            content_length: HeaderValue::from(body.len()),
            body: Body::Bytes(body),
            headers,
            etag: None,
            last_modified_value: None,
            last_modified: None,
            stored_at: now,
            initial_age: Duration::ZERO,
            ttl,
            stale_if_error: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            must_revalidate: false,
        }
    }

    /// An answer other than 200 from an HTTP origin (a redirect, 204, 405…), replayed with its
    /// status and allowlisted headers; like a negative entry, never served stale or ranged.
    pub fn status_answer(
        status: StatusCode,
        origin_headers: &HeaderMap,
        body: Bytes,
        ttl: Duration,
        now: Instant,
    ) -> Entry {
        let mut headers = super::headers::replayed(origin_headers);
        headers.remove(header::ACCEPT_RANGES);
        Entry {
            headers,
            ..Entry::negative(status, body, HeaderValue::from_static(""), ttl, now)
        }
    }

    /// The entry after a 304: same body, the 304's validators and freshness merged over the
    /// stored headers.
    pub fn refreshed(
        &self,
        not_modified: &HeaderMap,
        ttl: Duration,
        windows: StaleWindows,
        now: Instant,
    ) -> Entry {
        let headers = super::headers::refreshed(&self.headers, not_modified);
        let last_modified_value = headers.get(header::LAST_MODIFIED).cloned();
        Entry {
            status: self.status,
            body: self.body.clone(),
            len: self.len,
            content_length: self.content_length.clone(),
            etag: headers.get(header::ETAG).cloned(),
            last_modified: parse_date(last_modified_value.as_ref()),
            last_modified_value,
            headers,
            stored_at: now,
            initial_age: Duration::ZERO,
            ttl,
            stale_if_error: windows.stale_if_error,
            stale_while_revalidate: windows.stale_while_revalidate,
            must_revalidate: windows.must_revalidate,
        }
    }

    pub fn age(&self, now: Instant) -> Duration {
        crate::policy::freshness::current_age(
            self.initial_age,
            now.saturating_duration_since(self.stored_at),
        )
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        crate::policy::freshness::is_fresh(self.ttl, self.age(now))
    }

    /// How long past its freshness lifetime the entry is (zero while fresh).
    pub fn staleness(&self, now: Instant) -> Duration {
        self.age(now).saturating_sub(self.ttl)
    }

    /// How long the store keeps the entry: fresh time left plus the longest stale window.
    pub fn retain_for(&self) -> Duration {
        self.ttl
            .saturating_sub(self.initial_age)
            .saturating_add(self.stale_if_error.max(self.stale_while_revalidate))
    }

    /// Cache weight in bytes (bytes held in memory: a sliced entry's slices weigh themselves).
    pub fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 16)
            .sum();
        let body = match &self.body {
            Body::Bytes(b) => b.len(),
            Body::Filling(f) => f.len() as usize,
            Body::Sliced { .. } => 0,
        };
        let total = key.len() + body + headers + ENTRY_OVERHEAD;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// Validators for revalidating this entry at the origin.
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.etag.clone(),
            last_modified: self.last_modified_value.clone(),
        }
    }

    pub fn is_negative(&self) -> bool {
        self.status != StatusCode::OK
    }
}

fn parse_date(v: Option<&HeaderValue>) -> Option<SystemTime> {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        h.insert("x-amz-meta-secret", HeaderValue::from_static("no"));
        h
    }

    #[test]
    fn stores_allowlisted_headers_and_validators() {
        let now = Instant::now();
        let e = Entry::whole(
            &origin_headers(),
            Bytes::from_static(b"hello"),
            Duration::from_secs(60),
            StaleWindows::default(),
            now,
        );
        assert_eq!(e.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(e.headers[header::ACCEPT_RANGES], "bytes");
        assert!(e.headers.get("x-amz-meta-secret").is_none());
        assert!(
            e.headers.get(header::CONTENT_LENGTH).is_none(),
            "rendered per answer"
        );
        assert_eq!(e.content_length, "5");
        assert!(e.last_modified.is_some());
        assert_eq!(
            e.validators().etag,
            Some(HeaderValue::from_static("\"v1\""))
        );
        assert!(e.is_fresh(now));
        assert!(!e.is_fresh(now + Duration::from_secs(60)));
        assert_eq!(
            e.staleness(now + Duration::from_secs(70)),
            Duration::from_secs(10)
        );
        assert!(!e.is_negative());
        assert!(e.slicing().is_none());
    }

    #[test]
    fn refresh_keeps_body_and_updates_metadata() {
        let now = Instant::now();
        let e = Entry::whole(
            &origin_headers(),
            Bytes::from_static(b"hello"),
            Duration::from_secs(60),
            StaleWindows::default(),
            now,
        );
        let later = now + Duration::from_secs(100);
        let mut nm = HeaderMap::new();
        nm.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        nm.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=120"),
        );
        let r = e.refreshed(
            &nm,
            Duration::from_secs(120),
            StaleWindows::default(),
            later,
        );
        assert_eq!(
            r.bytes().map(|b| b.as_ptr()),
            e.bytes().map(|b| b.as_ptr()),
            "body shared, not copied"
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "max-age=120");
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(r.last_modified_value, e.last_modified_value);
        assert!(r.is_fresh(later));
        assert_eq!(r.age(later), Duration::ZERO);
    }

    #[test]
    fn retention_and_weight() {
        let now = Instant::now();
        let w = StaleWindows {
            stale_if_error: Duration::from_secs(100),
            stale_while_revalidate: Duration::from_secs(10),
            ..StaleWindows::default()
        };
        let e = Entry::whole(
            &origin_headers(),
            Bytes::from(vec![0u8; 1000]),
            Duration::from_secs(60),
            w,
            now,
        );
        assert_eq!(e.retain_for(), Duration::from_secs(160));
        let weight = e.weight("/k") as usize;
        assert!(
            weight > 1000 + ENTRY_OVERHEAD && weight < 1000 + ENTRY_OVERHEAD + 300,
            "{weight}"
        );
        let sliced = e.with_body(Body::Sliced { size: 100 });
        assert!((sliced.weight("/k") as usize) < ENTRY_OVERHEAD + 300);
        assert_eq!(sliced.slicing().map(|s| s.count()), Some(10));
        let n = Entry::negative(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"nf"),
            HeaderValue::from_static("text/plain"),
            Duration::from_secs(10),
            now,
        );
        assert!(n.is_negative());
        assert_eq!(n.retain_for(), Duration::from_secs(10));
    }
}
