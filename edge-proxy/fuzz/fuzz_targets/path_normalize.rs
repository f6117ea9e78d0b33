//! Path normalization must never panic, and its output must never climb out of the origin
//! prefix: no `.`/`..`/empty segments, no backslash, no NUL, stable under re-normalization.
#![no_main]

use kubefront_edge::security::path::{
    canonical_segments, is_canonical, normalize_path, object_key, percent_decode_once,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let canonical = is_canonical(raw);
    let Ok(n) = normalize_path(raw) else {
        assert!(!canonical, "canonical but not normalizable: {raw:?}");
        return;
    };
    assert!(n.starts_with('/'));
    assert!(!n.contains("//"), "{raw:?} -> {n:?}");
    assert!(!n.contains('\\') && !n.contains('\0'));
    assert!(
        n.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {n:?}"
    );
    assert_eq!(canonical_segments(n.clone()).as_deref(), Ok(n.as_str()));
    let key = object_key("tenant/site/", &n);
    assert!(key.starts_with("tenant/site/"));
    assert!(key.split('/').all(|s| s != "." && s != ".."));
    if canonical {
        assert_eq!(percent_decode_once(raw).ok().as_deref(), Some(n.as_str()));
    }
});
