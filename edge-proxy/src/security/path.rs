//! Viewer path normalization: the one place a request path becomes a cache key path and an
//! object key.
//!
//! A path is percent-decoded once and refused (400) when it holds a control character, a
//! backslash or a `.`/`..` segment, in any encoding; runs of `/` are merged. The result can
//! never climb above the root, so `origin prefix + key` can never escape the configured prefix,
//! and every spelling of one path yields one string, so a signed path pattern cannot be routed
//! around (`//private/x` is `/private/x`: S3 servers such as MinIO merge slashes too).

/// Why a request path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("bad percent-encoding")]
    BadEscape,
    #[error("path is not UTF-8")]
    NotUtf8,
    #[error("control character in path")]
    ControlChar,
    #[error("path contains a '.' or '..' segment")]
    DotSegment,
    #[error("path contains a backslash")]
    Backslash,
}

/// Percent-decodes `raw` exactly once (`%252e` stays the literal `%2e`), rejecting malformed
/// escapes, non-UTF-8 results and control characters (NUL included).
pub fn percent_decode_once(raw: &str) -> Result<String, PathError> {
    if !raw.contains('%') {
        if raw.chars().any(char::is_control) {
            return Err(PathError::ControlChar);
        }
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_val(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_val(l));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    Ok(s)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks an already-decoded absolute path and merges runs of `/`. Idempotent on its output.
pub fn canonical_segments(decoded: String) -> Result<String, PathError> {
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    if decoded.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PathError::DotSegment);
    }
    if !decoded.contains("//") {
        return Ok(decoded);
    }
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The normalized form of a raw (still percent-encoded) request path.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    canonical_segments(percent_decode_once(raw)?)
}

/// Whether decoding `raw` already gives its normalized form, i.e. the viewer sent no doubled
/// slashes (encoded or not) and nothing normalization refuses. Signed requests must be
/// canonical so a signature for one path can never be stretched to another.
pub fn is_canonical(raw: &str) -> bool {
    match percent_decode_once(raw) {
        Ok(decoded) => {
            raw.starts_with('/') && canonical_segments(decoded.clone()).is_ok_and(|n| n == decoded)
        }
        Err(_) => false,
    }
}

/// The origin object key for a normalized path under `prefix` (which config validation keeps
/// free of `.`/`..` segments).
pub fn object_key(prefix: &str, normalized: &str) -> String {
    let rel = normalized.trim_start_matches('/');
    let mut key = String::with_capacity(prefix.len() + rel.len());
    key.push_str(prefix);
    key.push_str(rel);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let cases = [
            ("/", "/"),
            ("/a/b.txt", "/a/b.txt"),
            ("/a//b", "/a/b"),
            ("//a", "/a"),
            ("///private/x", "/private/x"),
            ("/%2Fprivate/x", "/private/x"),
            ("/a%2fb", "/a/b"),
            ("/dir/", "/dir/"),
            ("/dir//", "/dir/"),
            ("//", "/"),
            ("/%252e%252e/x", "/%2e%2e/x"),
            ("/caf%C3%A9", "/café"),
            ("/%E2%82%AC", "/€"),
            ("/a%20b", "/a b"),
            ("/...", "/..."),
            ("/a/..b", "/a/..b"),
            ("/a.b/..c/c..", "/a.b/..c/c.."),
            ("/..;/x", "/..;/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("a/b", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%00b", PathError::ControlChar),
            ("/a%0d%0aSet-Cookie:x", PathError::ControlChar),
            ("/a%01", PathError::ControlChar),
            ("/a%7f", PathError::ControlChar),
            ("/a%ff", PathError::NotUtf8),
            ("/a%c3", PathError::NotUtf8),
            ("/../etc/passwd", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/../b", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/a/.", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/%2e%2e/%2E%2E/secret", PathError::DotSegment),
            ("/a%2f..%2fb", PathError::DotSegment),
            ("//../x", PathError::DotSegment),
            ("/a\\b", PathError::Backslash),
            ("/a\\..\\..\\b", PathError::Backslash),
            ("/a%5c..%5cb", PathError::Backslash),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn canonical() {
        for ok in [
            "/",
            "/a/b",
            "/dir/",
            "/a%20b",
            "/caf%C3%A9",
            "/a/..b",
            "/a%2fb",
        ] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "/a//b",
            "//private/x",
            "/%2Fprivate/x",
            "/a/./b",
            "/a/../b",
            "/a%2f..%2fb",
            "/a\\b",
            "/a/..",
            "//",
            "x",
            "/%00",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }

    #[test]
    fn object_keys_stay_under_prefix() {
        assert_eq!(object_key("site/", "/a/b"), "site/a/b");
        assert_eq!(object_key("", "/a"), "a");
        assert_eq!(object_key("site/", "/"), "site/");
    }

    fn hostile_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just("\\".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E%2e".to_string()),
            Just("%2f".to_string()),
            Just("%5C".to_string()),
            Just("%25".to_string()),
            Just("%00".to_string()),
            Just("%".to_string()),
            Just("%c3%a9".to_string()),
            "[a-z]{1,3}",
            any::<char>().prop_map(|c| c.to_string()),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048)
        ))]

        #[test]
        fn normalized_paths_are_safe_and_stable(raw in hostile_path()) {
            if let Ok(n) = normalize_path(&raw) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"), "{n}");
                prop_assert!(!n.contains('\\'));
                prop_assert!(!n.contains('\0'));
                prop_assert!(n.split('/').all(|s| s != "." && s != ".."), "{n}");
                prop_assert_eq!(canonical_segments(n.clone()), Ok(n.clone()));
                let key = object_key("tenant/a/", &n);
                prop_assert!(key.starts_with("tenant/a/"));
                prop_assert!(key.split('/').all(|s| s != ".." && s != "."));
                // A canonical raw path normalizes to its own decoding.
                if is_canonical(&raw) {
                    prop_assert_eq!(percent_decode_once(&raw).ok(), Some(n));
                }
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in ".{0,64}") {
            let _ = normalize_path(&raw);
            let _ = is_canonical(&raw);
        }
    }
}
