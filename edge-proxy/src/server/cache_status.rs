//! The `Cache-Status` response header (RFC 9211) built from its parts instead of spelled-out
//! strings: `kubefront; hit` or `kubefront; fwd=<reason>; fwd-status=N; stored; collapsed;
//! ttl=N; detail=<token>`.

use std::fmt::Write;

use http::{HeaderMap, HeaderValue};

use super::respond::CACHE_STATUS;

/// Sets this edge's `Cache-Status` entry on `headers`, after the entries of the caches nearer
/// the origin (a shield's, replayed from the stored answer) as RFC 9211 §2 orders them.
pub fn chain(headers: &mut HeaderMap, ours: HeaderValue) {
    let value = match headers.get(&CACHE_STATUS) {
        None => ours,
        Some(upstream) => {
            let mut v = Vec::with_capacity(upstream.len() + 2 + ours.len());
            v.extend_from_slice(upstream.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ours.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or(ours)
        }
    };
    headers.insert(CACHE_STATUS.clone(), value);
}

/// RFC 9211 §2.2 `fwd` reasons the edge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Not in cache.
    Miss,
    /// In cache but stale: forwarded to validate or refetch.
    Stale,
    /// The request asked to bypass (or the object is never cached).
    Bypass,
    /// The request method is never served from cache (RFC 9211 `fwd=method`).
    Method,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::Miss => "miss",
            Fwd::Stale => "stale",
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
        }
    }
}

/// One `Cache-Status` entry for this cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub hit: bool,
    pub fwd: Option<Fwd>,
    pub fwd_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub const HIT: CacheStatus = CacheStatus {
        hit: true,
        fwd: None,
        fwd_status: None,
        stored: false,
        collapsed: false,
        ttl: None,
        detail: None,
    };

    pub fn forwarded(fwd: Fwd) -> CacheStatus {
        CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::default()
        }
    }

    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    pub fn collapsed(mut self, collapsed: bool) -> Self {
        self.collapsed = collapsed;
        self
    }

    pub fn ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Renders the header value.
    pub fn render(&self) -> HeaderValue {
        let mut s = String::with_capacity(64);
        s.push_str("kubefront");
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(f.as_str());
        }
        if let Some(code) = self.fwd_status {
            let _ = write!(s, "; fwd-status={code}");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(s, "; ttl={ttl}");
        }
        if let Some(d) = self.detail {
            s.push_str("; detail=");
            s.push_str(d);
        }
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("kubefront"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_puts_this_edge_after_the_parent() {
        let mut h = HeaderMap::new();
        chain(&mut h, CacheStatus::HIT.render());
        assert_eq!(h["cache-status"], "kubefront; hit");
        let mut h = HeaderMap::new();
        h.insert(
            "cache-status",
            HeaderValue::from_static("kubefront; fwd=uri-miss; stored"),
        );
        chain(&mut h, CacheStatus::HIT.render());
        assert_eq!(
            h["cache-status"],
            "kubefront; fwd=uri-miss; stored, kubefront; hit"
        );
        assert_eq!(h.get_all("cache-status").iter().count(), 1);
    }

    #[test]
    fn renders_rfc_9211_parameters_in_order() {
        assert_eq!(CacheStatus::HIT.render(), "kubefront; hit");
        assert_eq!(CacheStatus::HIT.ttl(-3).render(), "kubefront; hit; ttl=-3");
        assert_eq!(
            CacheStatus::forwarded(Fwd::Miss)
                .collapsed(true)
                .stored(true)
                .ttl(60)
                .render(),
            "kubefront; fwd=miss; collapsed; stored; ttl=60"
        );
        assert_eq!(
            CacheStatus::forwarded(Fwd::Stale)
                .fwd_status(403)
                .detail("stale-if-error")
                .render(),
            "kubefront; fwd=stale; fwd-status=403; detail=stale-if-error"
        );
        assert_eq!(
            CacheStatus::HIT.detail("stale-while-revalidate").render(),
            "kubefront; hit; detail=stale-while-revalidate"
        );
    }
}
