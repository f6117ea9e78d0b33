//! CloudFront's URL-safe base64: standard base64 with `+`→`-`, `=`→`_`, `/`→`~`.

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Largest encoded value accepted (a policy or signature); bounds work on hostile input.
pub const MAX_ENCODED_LEN: usize = 4096;

/// CloudFront's alphabet, for the common case of a value in it alone (padding stripped first).
const CLOUDFRONT: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~") {
        Ok(a) => a,
        Err(_) => panic!("CloudFront base64 alphabet"),
    },
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Decodes CloudFront base64. Also accepts plain standard base64 (some signers only swap part
/// of the alphabet) and tolerates missing padding.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > MAX_ENCODED_LEN {
        return None;
    }
    // Signatures sit on the hit path of every signed request: decode the pure CloudFront form
    // in one pass, and only mixed alphabets the slow way.
    if !s.bytes().any(|b| matches!(b, b'+' | b'/' | b'=')) {
        return CLOUDFRONT
            .decode(s.trim_end_matches('_'))
            .ok()
            .filter(|b| !b.is_empty());
    }
    decode_mixed(s)
}

fn decode_mixed(s: &str) -> Option<Vec<u8>> {
    let mut std: Vec<u8> = Vec::with_capacity(s.len() + 3);
    for b in s.bytes() {
        std.push(match b {
            b'-' => b'+',
            b'_' => b'=',
            b'~' => b'/',
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => b,
            _ => return None,
        });
    }
    let content = std.iter().take_while(|&&b| b != b'=').count();
    if std[content..].iter().any(|&b| b != b'=') {
        return None;
    }
    std.truncate(content);
    while std.len() & 3 != 0 {
        std.push(b'=');
    }
    // Padding alone ("__") decodes to nothing: not a value (found by the policy_parse fuzzer).
    STANDARD.decode(&std).ok().filter(|b| !b.is_empty())
}

/// Encodes bytes in CloudFront base64 (used by tests and the benchmark's signer).
pub fn encode(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_cloudfront_alphabet() {
        // 0xfb 0xff 0xbf encodes to "+/+/" in standard base64.
        assert_eq!(decode("-~-~").as_deref(), Some(&[0xfb, 0xff, 0xbf][..]));
        assert_eq!(decode("YQ__").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode("YQ").as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn rejects_junk() {
        for bad in [
            "",
            "Y",
            "YQ_a",
            "a b=",
            "%41",
            "YQ==YQ==",
            "YQ_Y",
            "__",
            "Y~_",
            &"A".repeat(MAX_ENCODED_LEN + 4),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let enc = encode(&bytes);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~".contains(&b)));
            if bytes.is_empty() {
                prop_assert_eq!(decode(&enc), None);
            } else {
                prop_assert_eq!(decode(&enc), Some(bytes));
            }
        }

        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = decode(&s);
        }

        /// The one-pass path answers exactly as the general one.
        #[test]
        fn fast_path_agrees(s in "[A-Za-z0-9_~-]{0,80}") {
            prop_assert_eq!(decode(&s), decode_mixed(&s));
        }
    }
}
