//! Signature verification cost on the hit path: raw RSA-SHA1 / RSA-SHA256 / ECDSA-P256
//! verifications, a whole signed-URL check (parse + canned policy + verify), and path
//! normalization. `cargo bench -p kubefront-edge --bench signing`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubefront_edge::security::policy::canned_policy;
use kubefront_edge::security::signed::SignedPathRule;
use kubefront_edge::security::verified::VerifiedSignatures;
use kubefront_edge::security::{b64, path, HashAlgorithm, PublicKey, SignatureGate, SignedRequest};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use rsa::pkcs8::DecodePrivateKey;
use rsa::Pkcs1v15Sign;
use sha1::{Digest, Sha1};
use sha2::Sha256;

const RSA_PRIVATE: &str = include_str!("../src/security/testdata/rsa_a.pem");
const RSA_PUBLIC: &str = include_str!("../src/security/testdata/rsa_a.pub.pem");
const EC_PRIVATE: &str = include_str!("../src/security/testdata/ec_a.pem");
const EC_PUBLIC: &str = include_str!("../src/security/testdata/ec_a.pub.pem");
const URL: &str = "https://cdn.example.com/private/videos/intro.mp4";
const EXPIRES: u64 = 4_000_000_000;

fn digest(hash: HashAlgorithm, msg: &[u8]) -> Vec<u8> {
    match hash {
        HashAlgorithm::Sha1 => Sha1::digest(msg).to_vec(),
        HashAlgorithm::Sha256 => Sha256::digest(msg).to_vec(),
    }
}

fn rsa_sign(hash: HashAlgorithm, msg: &[u8]) -> Vec<u8> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIVATE).expect("test key");
    let scheme = match hash {
        HashAlgorithm::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
        HashAlgorithm::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
    };
    key.sign(scheme, &digest(hash, msg)).expect("sign")
}

fn ec_sign(hash: HashAlgorithm, msg: &[u8]) -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(EC_PRIVATE).expect("test key");
    let sig: p256::ecdsa::Signature = key.sign_prehash(&digest(hash, msg)).expect("sign");
    sig.to_der().as_bytes().to_vec()
}

fn verifications(c: &mut Criterion) {
    let policy = canned_policy(URL, EXPIRES);
    let msg = policy.as_bytes();
    let rsa = PublicKey::from_pem(RSA_PUBLIC).expect("rsa");
    let ec = PublicKey::from_pem(EC_PUBLIC).expect("ec");
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    for (name, key, hash, sig) in [
        (
            "rsa2048-sha1",
            &rsa,
            HashAlgorithm::Sha1,
            rsa_sign(HashAlgorithm::Sha1, msg),
        ),
        (
            "rsa2048-sha256",
            &rsa,
            HashAlgorithm::Sha256,
            rsa_sign(HashAlgorithm::Sha256, msg),
        ),
        (
            "ecdsa-p256-sha1",
            &ec,
            HashAlgorithm::Sha1,
            ec_sign(HashAlgorithm::Sha1, msg),
        ),
        (
            "ecdsa-p256-sha256",
            &ec,
            HashAlgorithm::Sha256,
            ec_sign(HashAlgorithm::Sha256, msg),
        ),
    ] {
        assert!(key.verify(hash, msg, &sig), "{name} verifies");
        g.bench_function(name, |b| {
            b.iter(|| assert!(key.verify(hash, black_box(msg), black_box(&sig))))
        });
    }
    g.finish();
}

fn whole_gate(c: &mut Criterion) {
    let mut keys = HashMap::new();
    keys.insert(
        "KA".to_string(),
        Arc::new(PublicKey::from_pem(RSA_PUBLIC).expect("rsa")),
    );
    keys.insert(
        "KEC".to_string(),
        Arc::new(PublicKey::from_pem(EC_PUBLIC).expect("ec")),
    );
    let rules = vec![SignedPathRule {
        pattern: "/private/*".into(),
        keys,
        public: false,
    }];
    let gate = SignatureGate::new(rules.clone());
    let unmemoized = SignatureGate {
        rules,
        verified: VerifiedSignatures::new(0, Default::default(), Default::default()),
    };
    let policy = canned_policy(URL, EXPIRES);
    let rsa_q = format!(
        "Expires={EXPIRES}&Signature={}&Key-Pair-Id=KA",
        b64::encode(&rsa_sign(HashAlgorithm::Sha1, policy.as_bytes()))
    );
    let ec_q = format!(
        "Expires={EXPIRES}&Signature={}&Key-Pair-Id=KEC&Hash-Algorithm=SHA256",
        b64::encode(&ec_sign(HashAlgorithm::Sha256, policy.as_bytes()))
    );
    let raw_path = "/private/videos/intro.mp4";
    let req = |q: &'static str, path: &'static str| SignedRequest {
        scheme: "https",
        host: "cdn.example.com",
        raw_path: path,
        normalized_path: path,
        raw_query: Some(q),
        cookies: &[],
        client_ip: "192.0.2.1".parse().expect("ip"),
        now: 1_800_000_000,
    };
    let rsa_q: &'static str = Box::leak(rsa_q.into_boxed_str());
    let ec_q: &'static str = Box::leak(ec_q.into_boxed_str());
    let mut g = c.benchmark_group("signed_url_check");
    g.throughput(Throughput::Elements(1));
    for (name, r) in [
        ("canned-rsa-sha1", req(rsa_q, raw_path)),
        ("canned-ecdsa-sha256", req(ec_q, raw_path)),
    ] {
        assert!(unmemoized.check(&r).is_ok(), "{name}");
        g.bench_function(format!("{name}/first-use"), |b| {
            b.iter(|| unmemoized.check(black_box(&r)))
        });
        assert!(gate.check(&r).is_ok(), "{name}");
        g.bench_function(format!("{name}/repeat"), |b| {
            b.iter(|| gate.check(black_box(&r)))
        });
    }
    let public = req("v=1", "/public/a.css");
    g.bench_function("public-path", |b| b.iter(|| gate.check(black_box(&public))));
    g.finish();
    c.bench_function("normalize_path", |b| {
        b.iter(|| path::normalize_path(black_box("/static//css/app%20main.css")))
    });
}

criterion_group!(benches, verifications, whole_gate);
criterion_main!(benches);
