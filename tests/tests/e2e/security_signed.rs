//! Signed URLs and signed cookies made by an independent implementation (botocore's
//! CloudFrontSigner with `cryptography` for RSA, `openssl` for ECDSA) against the real
//! kubefront-edge binary and a real S3 server.

use crate::security_support;

use kubefront_edge::config::security::{SecurityConfig, SignedPath};
use kubefront_tests::{ObjectMeta, Scenario};
use security_support::{group, now, raw_get, sign, signer_python, KeyPair, Signed};
use serde_json::json;

const BODY_A: &str = "private object a\n";

/// Strips `http://host:port` so the scenario client can request the path + query.
fn target(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

fn reason(body: &str) -> &str {
    body.trim().rsplit(": ").next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_signatures_are_accepted_and_forgeries_refused() {
    let keydir = tempfile::tempdir().expect("tempdir");
    let rsa = KeyPair::generate(keydir.path(), "KRSA1", "rsa");
    let rsa_next = KeyPair::generate(keydir.path(), "KRSA2", "rsa");
    let ec = KeyPair::generate(keydir.path(), "KEC1", "ecdsa");
    let stranger = KeyPair::generate(keydir.path(), "KOTHER", "rsa");
    let python = signer_python();

    let Some(s) = Scenario::start("security-signed", |cfg| {
        cfg.security = SecurityConfig {
            trusted_key_groups: vec![
                // Two RSA keys valid at once: rotation.
                group("main", &[&rsa, &rsa_next, &ec]),
                group("other", &[&stranger]),
            ],
            signed_paths: vec![SignedPath {
                path_pattern: "/private/*".into(),
                key_groups: vec!["main".into()],
                public: false,
            }],
            ..Default::default()
        };
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/private/a.txt",
            BODY_A,
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .expect("put");
    s.bucket
        .put(
            "/private/dir/b.txt",
            "b\n",
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .expect("put");
    s.bucket
        .put(
            "/public/p.txt",
            "public\n",
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .expect("put");

    let url_a = s.edge.url("/private/a.txt");
    let url_b = s.edge.url("/private/dir/b.txt");
    let t = now();

    // Public paths need nothing; private ones refuse unsigned requests.
    assert_eq!(s.get("/public/p.txt").await.status, 200);
    let unsigned = s.get("/private/a.txt").await;
    assert_eq!(unsigned.status, 403);
    assert_eq!(reason(&unsigned.text()), "missing");
    // No spelling of the path routes around the signed pattern. Sent on a raw socket: an HTTP
    // client library normalizes `/../`, `%2e%2e`, `/./` and `\\` before anything leaves.
    for sneaky in [
        "//private/a.txt",
        "///private/a.txt",
        "/%2Fprivate/a.txt",
        "/%2fprivate%2fa.txt",
        "/public/../private/a.txt",
        "/public/%2e%2e/private/a.txt",
        "/./private/a.txt",
        "/\\private/a.txt",
        "/%5Cprivate/a.txt",
        "/public/..%2Fprivate/a.txt",
    ] {
        let r = raw_get(s.edge.viewer, sneaky, "").await;
        assert!(
            matches!(r.status, Some(403) | Some(400)),
            "{sneaky}: {:?} {}",
            r.status,
            r.text()
        );
        assert_ne!(r.body(), BODY_A, "{sneaky} served the private object");
        assert!(
            r.header("x-cache").is_none_or(|c| !c.contains("Hit")),
            "{sneaky} answered from the cache: {}",
            r.text()
        );
    }

    // Accepted: every algorithm, canned and custom, URL and cookies, and the rotated key.
    let mut accepted = 0;
    for (key, hash) in [
        (&rsa, "sha1"),
        (&rsa, "sha256"),
        (&rsa_next, "sha1"),
        (&ec, "sha1"),
        (&ec, "sha256"),
    ] {
        let variants = [
            json!({"url": url_a, "expires": t + 300}),
            json!({"url": url_a, "expires": t + 300, "resource": s.edge.url("/private/*"),
                   "start": t - 60, "ip": "127.0.0.1"}),
        ];
        for fields in variants {
            let signed = sign(&python, key, &key.id, hash, fields.clone());
            let r = s.get(target(&signed.url)).await;
            assert_eq!(r.status, 200, "{} {hash} {fields}: {}", key.id, r.text());
            assert_eq!(r.text(), BODY_A);
            let r = s
                .get_with("/private/a.txt", &[("cookie", &signed.cookie)])
                .await;
            assert_eq!(
                r.status,
                200,
                "cookie {} {hash} {fields}: {}",
                key.id,
                r.text()
            );
            assert_eq!(r.text(), BODY_A);
            accepted += 2;
        }
    }

    // Signature parameters are not part of the cache key, and never reach the origin.
    assert_eq!(
        s.origin_gets("/private/a.txt"),
        1,
        "all signed variants shared one cache entry"
    );
    for req in s.relay.requests() {
        for p in [
            "Signature",
            "Key-Pair-Id",
            "Expires=",
            "Policy=",
            "Hash-Algorithm",
        ] {
            assert!(!req.target.contains(p), "origin saw {p}: {}", req.target);
        }
    }
    // The cached object is still refused to unsigned viewers (the gate runs before the cache).
    assert_eq!(s.get("/private/a.txt").await.status, 403);

    let rejected = |signed: &Signed| signed.url.clone();
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let canned = sign(
        &python,
        &rsa,
        &rsa.id,
        "sha1",
        json!({"url": url_a, "expires": t + 300}),
    );
    // Tampered signature, tampered expiry, URL reused for another object.
    let sig_at = canned.url.find("Signature=").expect("signature") + "Signature=".len();
    let mut tampered = canned.url.clone().into_bytes();
    tampered[sig_at + 5] = if tampered[sig_at + 5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    cases.push((
        "tampered signature",
        String::from_utf8(tampered).expect("ascii"),
        "bad-signature",
    ));
    cases.push((
        "tampered expiry",
        canned.url.replace(
            &format!("Expires={}", t + 300),
            &format!("Expires={}", t + 99_999),
        ),
        "bad-signature",
    ));
    cases.push((
        "other object",
        canned.url.replace("/private/a.txt", "/private/dir/b.txt"),
        "bad-signature",
    ));
    // Expired and not yet valid.
    cases.push((
        "expired",
        rejected(&sign(
            &python,
            &rsa,
            &rsa.id,
            "sha1",
            json!({"url": url_a, "expires": t - 5}),
        )),
        "expired",
    ));
    cases.push((
        "expired custom",
        rejected(&sign(
            &python,
            &ec,
            &ec.id,
            "sha256",
            json!({"url": url_a, "expires": t - 5, "resource": s.edge.url("/private/*")}),
        )),
        "expired",
    ));
    cases.push((
        "not yet valid",
        rejected(&sign(
            &python,
            &rsa,
            &rsa.id,
            "sha256",
            json!({"url": url_a, "expires": t + 7200, "start": t + 3600}),
        )),
        "not-yet-valid",
    ));
    // Wrong key: a stranger's signature under a trusted id, and a key trusted only elsewhere.
    cases.push((
        "wrong key",
        rejected(&sign(
            &python,
            &stranger,
            &rsa.id,
            "sha1",
            json!({"url": url_a, "expires": t + 300}),
        )),
        "bad-signature",
    ));
    cases.push((
        "key of another group",
        rejected(&sign(
            &python,
            &stranger,
            &stranger.id,
            "sha1",
            json!({"url": url_a, "expires": t + 300}),
        )),
        "unknown-key",
    ));
    cases.push((
        "hash confusion",
        rejected(&sign(
            &python,
            &rsa,
            &rsa.id,
            "sha1",
            json!({"url": url_a, "expires": t + 300}),
        )) + "&Hash-Algorithm=SHA256",
        "bad-signature",
    ));
    // Wrong IP and wrong resource (valid signatures on a policy that does not cover this).
    cases.push((
        "wrong ip",
        rejected(&sign(
            &python,
            &rsa,
            &rsa.id,
            "sha1",
            json!({"url": url_a, "expires": t + 300, "ip": "203.0.113.0/24"}),
        )),
        "ip-not-allowed",
    ));
    cases.push((
        "wrong resource",
        rejected(&sign(
            &python,
            &ec,
            &ec.id,
            "sha1",
            json!({"url": url_a, "expires": t + 300, "resource": s.edge.url("/private/dir/*")}),
        )),
        "wrong-resource",
    ));
    // Junk.
    cases.push((
        "bad base64",
        format!(
            "{url_a}?Expires={}&Signature=%%%&Key-Pair-Id=KRSA1",
            t + 300
        ),
        "malformed",
    ));
    cases.push((
        "no key id",
        format!("{url_a}?Expires={}&Signature=abcd", t + 300),
        "malformed",
    ));

    for (what, url, want) in &cases {
        let r = s.get(target(url)).await;
        assert_eq!(r.status, 403, "{what}: {url} -> {}", r.text());
        assert_eq!(reason(&r.text()), *want, "{what}");
        assert!(r.body.len() < 64, "{what}: short body");
        assert!(!r.text().contains("BEGIN"), "{what}: no key material");
    }

    // The same forgeries as cookies.
    let expired = sign(
        &python,
        &rsa,
        &rsa.id,
        "sha1",
        json!({"url": url_a, "expires": t - 5}),
    );
    let r = s
        .get_with("/private/a.txt", &[("cookie", &expired.cookie)])
        .await;
    assert_eq!((r.status, reason(&r.text())), (403, "expired"));
    let wrong_ip = sign(
        &python,
        &ec,
        &ec.id,
        "sha256",
        json!({"url": url_b, "expires": t + 300, "ip": "198.51.100.7"}),
    );
    let r = s
        .get_with("/private/dir/b.txt", &[("cookie", &wrong_ip.cookie)])
        .await;
    assert_eq!((r.status, reason(&r.text())), (403, "ip-not-allowed"));
    let for_a = sign(
        &python,
        &rsa,
        &rsa.id,
        "sha256",
        json!({"url": url_a, "expires": t + 300}),
    );
    let r = s
        .get_with("/private/dir/b.txt", &[("cookie", &for_a.cookie)])
        .await;
    assert_eq!((r.status, reason(&r.text())), (403, "bad-signature"));
    // Refusals never fetched anything: b was never requested successfully.
    assert_eq!(s.origin_gets("/private/dir/b.txt"), 0);

    // A metric per category.
    let m = s.edge.metrics().await.expect("metrics");
    let count = |result: &str| {
        m.sum(
            "kubefront_edge_signed_requests_total",
            &[("result", result)],
        )
    };
    assert_eq!(count("allowed"), f64::from(accepted));
    for category in [
        "missing",
        "bad-signature",
        "expired",
        "not-yet-valid",
        "unknown-key",
        "ip-not-allowed",
        "wrong-resource",
        "malformed",
    ] {
        assert!(count(category) >= 1.0, "{category}: {}", m.text);
    }
}
