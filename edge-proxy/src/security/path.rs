//! Viewer path normalization: the one place a request path becomes an object key.
//!
//! The result can never climb above the root, so `origin prefix + key` can never escape the
//! configured prefix, whatever the viewer sends (encoded dots, backslashes, doubled slashes).

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
}

/// Percent-decodes `raw` exactly once (`%252e` stays the literal `%2e`), rejecting malformed
/// escapes, non-UTF-8 results and control characters (NUL included).
pub fn percent_decode_once(raw: &str) -> Result<String, PathError> {
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

/// Resolves an already-decoded path: `\` counts as `/`, empty and `.` segments vanish, `..`
/// removes the previous segment and is ignored at the root. A trailing separator (or a
/// trailing `.`/`..`) is kept as a trailing `/`. The result starts with `/`, has no empty,
/// `.` or `..` segments, and resolving it again changes nothing.
pub fn resolve_segments(decoded: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_dir = false;
    for seg in decoded.split(['/', '\\']) {
        trailing_dir = true;
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => {
                stack.push(s);
                trailing_dir = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if trailing_dir || stack.is_empty() {
        out.push('/');
    }
    out
}

/// The normalized form of a raw (still percent-encoded) request path.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    Ok(resolve_segments(&percent_decode_once(raw)?))
}

/// Whether decoding `raw` already gives its normalized form, i.e. the viewer sent no dot
/// segments, doubled slashes or backslashes (encoded or not). Signed requests must be
/// canonical so a signature for one path can never be stretched to another.
pub fn is_canonical(raw: &str) -> bool {
    match percent_decode_once(raw) {
        Ok(decoded) => raw.starts_with('/') && resolve_segments(&decoded) == decoded,
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
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/dir/", "/dir/"),
            ("/%2e%2e/%2E%2E/secret", "/secret"),
            ("/a%2f..%2fb", "/b"),
            ("/a\\..\\..\\b", "/b"),
            ("/a%5c..%5cb", "/b"),
            ("/%252e%252e/x", "/%2e%2e/x"),
            ("/caf%C3%A9", "/café"),
            ("/a%20b", "/a b"),
            ("/..", "/"),
            ("/...", "/..."),
            ("/a/..b", "/a/..b"),
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
            ("/a%ff", PathError::NotUtf8),
            ("/a%c3", PathError::NotUtf8),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn canonical() {
        for ok in ["/", "/a/b", "/dir/", "/a%20b", "/caf%C3%A9", "/a/..b"] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "/a//b",
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
                prop_assert_eq!(resolve_segments(&n), n.clone());
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
