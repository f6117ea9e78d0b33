//! One stored answer. Immutable once built: a revalidation (304) builds a new entry that shares
//! the old body `Bytes`, so readers never see a half-updated entry and no body is copied.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::origin::{ObjectMeta, Validators};

/// Bytes charged per entry on top of key and body, for the map slot, headers and bookkeeping.
const ENTRY_OVERHEAD: usize = 320;

#[derive(Debug)]
pub struct Entry {
    /// 200 for objects; 403/404 (or a custom error code) for negative entries.
    pub status: StatusCode,
    pub body: Bytes,
    /// Pre-rendered headers replayed on every answer (Content-Type, ETag, Last-Modified,
    /// Cache-Control, Expires, Content-Encoding/Language/Disposition, Accept-Ranges).
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
    /// A 200 entry from origin metadata and a fully received body.
    pub fn from_origin(
        meta: &ObjectMeta,
        body: Bytes,
        ttl: Duration,
        windows: StaleWindows,
        now: Instant,
    ) -> Entry {
        let mut headers = HeaderMap::with_capacity(12);
        let pairs: [(HeaderName, &Option<HeaderValue>); 7] = [
            (header::CONTENT_TYPE, &meta.content_type),
            (header::ETAG, &meta.etag),
            (header::LAST_MODIFIED, &meta.last_modified),
            (header::CACHE_CONTROL, &meta.cache_control),
            (header::EXPIRES, &meta.expires),
            (header::CONTENT_ENCODING, &meta.content_encoding),
            (header::CONTENT_LANGUAGE, &meta.content_language),
        ];
        for (name, v) in pairs {
            if let Some(v) = v {
                headers.insert(name, v.clone());
            }
        }
        if let Some(v) = &meta.content_disposition {
            headers.insert(header::CONTENT_DISPOSITION, v.clone());
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let last_modified = meta
            .last_modified
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        Entry {
            status: StatusCode::OK,
            content_length: HeaderValue::from(body.len()),
            body,
            headers,
            etag: meta.etag.clone(),
            last_modified_value: meta.last_modified.clone(),
            last_modified,
            stored_at: now,
            initial_age: Duration::ZERO,
            ttl,
            stale_if_error: windows.stale_if_error,
            stale_while_revalidate: windows.stale_while_revalidate,
            must_revalidate: windows.must_revalidate,
        }
    }

    /// The same entry with `initial_age` (RFC 9111 §4.2.3 corrected initial age).
    pub fn with_initial_age(mut self, initial_age: Duration) -> Entry {
        self.initial_age = initial_age;
        self
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
            content_length: HeaderValue::from(body.len()),
            body,
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

    /// The entry after a 304: same body, metadata from the 304 merged over the stored one.
    pub fn refreshed(
        &self,
        meta: &ObjectMeta,
        ttl: Duration,
        windows: StaleWindows,
        now: Instant,
    ) -> Entry {
        let mut headers = self.headers.clone();
        for (name, v) in [
            (header::ETAG, &meta.etag),
            (header::LAST_MODIFIED, &meta.last_modified),
            (header::CACHE_CONTROL, &meta.cache_control),
            (header::EXPIRES, &meta.expires),
        ] {
            if let Some(v) = v {
                headers.insert(name, v.clone());
            }
        }
        let etag = meta.etag.clone().or_else(|| self.etag.clone());
        let last_modified_value = meta
            .last_modified
            .clone()
            .or_else(|| self.last_modified_value.clone());
        let last_modified = last_modified_value
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        Entry {
            status: self.status,
            body: self.body.clone(),
            headers,
            content_length: self.content_length.clone(),
            etag,
            last_modified_value,
            last_modified,
            stored_at: now,
            initial_age: Duration::ZERO,
            ttl,
            stale_if_error: windows.stale_if_error,
            stale_while_revalidate: windows.stale_while_revalidate,
            must_revalidate: windows.must_revalidate,
        }
    }

    /// Origin metadata as stored, used to decide freshness after a 304 that omits headers.
    pub fn stored_meta(&self) -> ObjectMeta {
        ObjectMeta {
            cache_control: self.headers.get(header::CACHE_CONTROL).cloned(),
            expires: self.headers.get(header::EXPIRES).cloned(),
            ..ObjectMeta::default()
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

    /// Cache weight in bytes.
    pub fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 16)
            .sum();
        let total = key.len() + self.body.len() + headers + ENTRY_OVERHEAD;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            content_length: Some(5),
            content_type: Some(HeaderValue::from_static("text/plain")),
            etag: Some(HeaderValue::from_static("\"v1\"")),
            last_modified: Some(HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            cache_control: Some(HeaderValue::from_static("max-age=60")),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn stores_headers_and_validators() {
        let now = Instant::now();
        let e = Entry::from_origin(
            &meta(),
            Bytes::from_static(b"hello"),
            Duration::from_secs(60),
            StaleWindows::default(),
            now,
        );
        assert_eq!(e.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(e.headers[header::ACCEPT_RANGES], "bytes");
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
    }

    #[test]
    fn refresh_keeps_body_and_updates_metadata() {
        let now = Instant::now();
        let e = Entry::from_origin(
            &meta(),
            Bytes::from_static(b"hello"),
            Duration::from_secs(60),
            StaleWindows::default(),
            now,
        );
        let later = now + Duration::from_secs(100);
        let m = ObjectMeta {
            etag: Some(HeaderValue::from_static("\"v1\"")),
            cache_control: Some(HeaderValue::from_static("max-age=120")),
            ..ObjectMeta::default()
        };
        let r = e.refreshed(&m, Duration::from_secs(120), StaleWindows::default(), later);
        assert_eq!(r.body.as_ptr(), e.body.as_ptr(), "body shared, not copied");
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
        let e = Entry::from_origin(
            &meta(),
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
