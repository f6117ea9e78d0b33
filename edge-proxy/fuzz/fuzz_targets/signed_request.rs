//! The whole signature gate on arbitrary query strings, cookies and paths: never panics, never
//! lets an unsigned request through, and only ever answers with a known category.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use kubefront_edge::security::signed::{strip_signing_params, SignedPathRule, SIGNING_PARAMS};
use kubefront_edge::security::{path, Allowed, PublicKey, SignatureGate, SignedRequest};
use libfuzzer_sys::fuzz_target;

fn gate() -> &'static SignatureGate {
    static GATE: std::sync::OnceLock<SignatureGate> = std::sync::OnceLock::new();
    GATE.get_or_init(|| {
        let mut keys = HashMap::new();
        for (id, pem) in [
            (
                "KA",
                include_str!("../../src/security/testdata/rsa_a.pub.pem"),
            ),
            (
                "KEC",
                include_str!("../../src/security/testdata/ec_a.pub.pem"),
            ),
        ] {
            keys.insert(
                id.to_string(),
                Arc::new(PublicKey::from_pem(pem).expect("test key")),
            );
        }
        SignatureGate::new(vec![SignedPathRule {
            pattern: "/p/*".into(),
            keys,
            public: false,
        }])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split the input into path, query and cookie.
    let mut parts = text.splitn(3, '\n');
    let path_part = format!("/p/{}", parts.next().unwrap_or(""));
    let query = parts.next();
    let cookie = parts.next().unwrap_or("");
    let Ok(normalized) = path::normalize_path(&path_part) else {
        return;
    };
    let cookies = [cookie];
    let req = SignedRequest {
        scheme: "https",
        host: "cdn.example.com",
        raw_path: &path_part,
        normalized_path: &normalized,
        raw_query: query,
        cookies: &cookies,
        client_ip: "192.0.2.1".parse().expect("ip"),
        now: 1_800_000_000,
    };
    match gate().check(&req) {
        // Random bytes never forge an RSA or ECDSA signature.
        Ok(Allowed::Signed { .. }) => panic!("forged: {text:?}"),
        Ok(Allowed::Public) => assert!(!normalized.starts_with("/p/")),
        Err(reason) => assert!(!reason.as_str().is_empty()),
    }
    if let Some(q) = query {
        if let Some(stripped) = strip_signing_params(q) {
            for pair in stripped.split('&') {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                assert!(!SIGNING_PARAMS.contains(&name));
            }
        }
    }
});
