//! Custom policy documents and CloudFront base64: no panic, and whatever parses is
//! self-consistent.
#![no_main]

use kubefront_edge::security::{b64, policy::Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::parse(data) {
        assert!(p.resource.as_deref().is_none_or(|r| !r.is_empty()));
        assert!(p.ip_ranges.len() <= 32);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(bytes) = b64::decode(s) {
            // Re-encoding decodes to the same bytes.
            assert_eq!(
                b64::decode(&b64::encode(&bytes)).as_deref(),
                Some(&bytes[..])
            );
            let _ = Policy::parse(&bytes);
        }
    }
});
