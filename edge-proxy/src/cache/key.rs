//! The cache key: the normalized viewer path plus whatever query parameters and request headers
//! the cache policy lets through (CloudFront's cache key policy).
//!
//! Layout: `path [\x01 query] [\x02 name:value ...] [\x03 slice]`. Paths containing control
//! characters are rejected during normalization, so the separators are unambiguous and
//! [`key_path`] recovers the path for invalidation.

use crate::config::{CacheKeyConfig, QueryMode, QueryStrings};
pub use crate::security::path::{normalize_path, PathError};

const QUERY_SEP: char = '\u{1}';
const HEADER_SEP: char = '\u{2}';
/// Separates an object's key from a slice number (`slice_key`).
const SLICE_SEP: char = '\u{3}';

/// A compiled cache key policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    query: QueryPolicy,
    /// Lower-cased header names, in configured order.
    headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryPolicy {
    None,
    All,
    Allow(Vec<String>),
}

impl KeyPolicy {
    pub fn new(cfg: &CacheKeyConfig) -> KeyPolicy {
        let query = match &cfg.query_strings {
            QueryStrings::Mode(QueryMode::None) => QueryPolicy::None,
            QueryStrings::Mode(QueryMode::All) => QueryPolicy::All,
            QueryStrings::Allow(names) => QueryPolicy::Allow(names.clone()),
        };
        KeyPolicy {
            query,
            headers: cfg.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Header names (lower case) that are part of the key.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The key for a normalized path; `header` looks up a request header by lower-case name.
    /// Query parameters are sorted so `?a=1&b=2` and `?b=2&a=1` share an entry.
    pub fn key<'h>(
        &self,
        path: String,
        query: Option<&str>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> String {
        let mut key = path;
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            let mut pairs: Vec<&str> = match &self.query {
                QueryPolicy::None => Vec::new(),
                QueryPolicy::All => q.split('&').filter(|p| !p.is_empty()).collect(),
                QueryPolicy::Allow(names) => q
                    .split('&')
                    .filter(|p| {
                        let name = p.split_once('=').map_or(*p, |(n, _)| n);
                        names.iter().any(|n| n == name)
                    })
                    .collect(),
            };
            if !pairs.is_empty() {
                pairs.sort_unstable();
                key.push(QUERY_SEP);
                for (i, p) in pairs.iter().enumerate() {
                    if i > 0 {
                        key.push('&');
                    }
                    key.push_str(p);
                }
            }
        }
        for name in &self.headers {
            if let Some(v) = header(name) {
                key.push(HEADER_SEP);
                key.push_str(name);
                key.push(':');
                key.push_str(&String::from_utf8_lossy(v));
            }
        }
        key
    }

    /// Whether anything besides the path is part of the key.
    pub fn varies(&self) -> bool {
        self.query != QueryPolicy::None || !self.headers.is_empty()
    }
}

/// The normalized path a key was built from.
pub fn key_path(key: &str) -> &str {
    match key.find([QUERY_SEP, HEADER_SEP, SLICE_SEP]) {
        Some(i) => &key[..i],
        None => key,
    }
}

/// The query string a key holds (filtered by the key policy and sorted): what an HTTP origin
/// is sent, so the origin never sees a value that does not also pick the cache entry.
pub fn key_query(key: &str) -> Option<&str> {
    let object = key.split(SLICE_SEP).next().unwrap_or(key);
    let (_, rest) = object.split_once(QUERY_SEP)?;
    Some(rest.split(HEADER_SEP).next().unwrap_or(rest))
}

/// The request headers a key holds, as `(lower-case name, value)`, forwarded to HTTP origins.
pub fn key_headers(key: &str) -> impl Iterator<Item = (&str, &str)> {
    let object = key.split(SLICE_SEP).next().unwrap_or(key);
    object
        .split(HEADER_SEP)
        .skip(1)
        .filter_map(|h| h.split_once(':'))
}

/// The key of slice `index` of the object stored under `key`; invalidating the object's path
/// drops its slices too.
pub fn slice_key(key: &str, index: u64) -> String {
    format!("{key}{SLICE_SEP}{index}")
}

/// An invalidation pattern: an exact path, or a prefix ending in `*` (CloudFront semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatcher {
    Exact(String),
    Prefix(String),
}

impl PathMatcher {
    /// Parses `/a.txt` or `/img/*`; the path is normalized like a viewer path.
    pub fn parse(pattern: &str) -> Result<PathMatcher, PathError> {
        match pattern.strip_suffix('*') {
            Some(prefix) => {
                let p = if prefix.is_empty() { "/" } else { prefix };
                Ok(PathMatcher::Prefix(normalize_path(p)?))
            }
            None => Ok(PathMatcher::Exact(normalize_path(pattern)?)),
        }
    }

    pub fn matches_key(&self, key: &str) -> bool {
        let path = key_path(key);
        match self {
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(q: QueryStrings, headers: &[&str]) -> KeyPolicy {
        KeyPolicy::new(&CacheKeyConfig {
            query_strings: q,
            headers: headers.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn no_headers(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn query_none_ignores_query() {
        let p = policy(QueryStrings::Mode(QueryMode::None), &[]);
        assert_eq!(p.key("/a".into(), Some("x=1"), no_headers), "/a");
        assert!(!p.varies());
    }

    #[test]
    fn query_all_sorts_pairs() {
        let p = policy(QueryStrings::Mode(QueryMode::All), &[]);
        let a = p.key("/a".into(), Some("b=2&a=1"), no_headers);
        let b = p.key("/a".into(), Some("a=1&b=2"), no_headers);
        assert_eq!(a, b);
        assert_eq!(a, "/a\u{1}a=1&b=2");
        assert_eq!(p.key("/a".into(), Some(""), no_headers), "/a");
        assert_eq!(p.key("/a".into(), Some("&&"), no_headers), "/a");
        assert_ne!(
            p.key("/a".into(), Some("a=1"), no_headers),
            p.key("/a".into(), Some("a=2"), no_headers)
        );
        assert!(p.varies());
    }

    #[test]
    fn the_forwarded_query_and_headers_are_read_back_from_the_key() {
        let p = policy(
            QueryStrings::Allow(vec!["v".into()]),
            &["Accept-Language", "X-Device"],
        );
        let lang = |n: &str| (n == "accept-language").then_some(&b"de"[..]);
        let key = p.key("/a".into(), Some("utm=1&v=3"), lang);
        assert_eq!(key_query(&key), Some("v=3"));
        assert_eq!(
            key_headers(&key).collect::<Vec<_>>(),
            [("accept-language", "de")]
        );
        let slice = slice_key(&key, 4);
        assert_eq!(key_query(&slice), Some("v=3"));
        assert_eq!(key_headers(&slice).count(), 1);
        assert_eq!(key_query("/a"), None);
        assert_eq!(key_headers("/a").count(), 0);
    }

    #[test]
    fn query_allowlist_keeps_only_named() {
        let p = policy(QueryStrings::Allow(vec!["v".into(), "lang".into()]), &[]);
        assert_eq!(
            p.key("/a".into(), Some("utm=x&v=3&lang=de&vv=1"), no_headers),
            "/a\u{1}lang=de&v=3"
        );
        assert_eq!(p.key("/a".into(), Some("v"), no_headers), "/a\u{1}v");
        assert_eq!(p.key("/a".into(), Some("utm=1"), no_headers), "/a");
    }

    #[test]
    fn headers_in_key() {
        let p = policy(
            QueryStrings::Mode(QueryMode::None),
            &["Accept-Language", "X-Tenant"],
        );
        let k = p.key("/a".into(), None, |n| match n {
            "accept-language" => Some(&b"de"[..]),
            _ => None,
        });
        assert_eq!(k, "/a\u{2}accept-language:de");
        let k2 = p.key("/a".into(), None, |n| match n {
            "accept-language" => Some(&b"de"[..]),
            "x-tenant" => Some(&b"t1"[..]),
            _ => None,
        });
        assert_eq!(k2, "/a\u{2}accept-language:de\u{2}x-tenant:t1");
        assert_eq!(key_path(&k2), "/a");
        assert_eq!(p.headers(), ["accept-language", "x-tenant"]);
    }

    #[test]
    fn key_path_recovers_path() {
        assert_eq!(key_path("/a/b"), "/a/b");
        assert_eq!(key_path("/a\u{1}q=1\u{2}h:v"), "/a");
        assert_eq!(key_path(&slice_key("/a\u{1}q=1", 7)), "/a");
        assert_ne!(slice_key("/a", 1), slice_key("/a", 11));
        assert_eq!(key_path("/a?b"), "/a?b");
    }

    #[test]
    fn invalidation_patterns() {
        let exact = PathMatcher::parse("/a.txt").expect("exact");
        assert!(exact.matches_key("/a.txt"));
        assert!(exact.matches_key("/a.txt\u{1}v=1"));
        assert!(!exact.matches_key("/a.txt2"));
        let prefix = PathMatcher::parse("/img/*").expect("prefix");
        assert!(prefix.matches_key("/img/a.png"));
        assert!(prefix.matches_key("/img/"));
        assert!(!prefix.matches_key("/img"));
        assert!(!prefix.matches_key("/other/img/a.png"));
        let all = PathMatcher::parse("*").expect("all");
        assert!(all.matches_key("/anything"));
        assert_eq!(
            PathMatcher::parse("/a%20b"),
            Ok(PathMatcher::Exact("/a b".into()))
        );
        assert!(PathMatcher::parse("nope").is_err());
        assert!(PathMatcher::parse("/../*").is_err());
    }
}
