//! The whole in-process hit path: `viewer::handle` on a warm cache, body collected, for an
//! unsigned object and for signed URLs and cookies (the verified-signature memo warm, as it is
//! for every request after a viewer's first). No sockets: this isolates the edge's own work from
//! the HTTP stack that `tests/bench/edge-vs-nginx` and `tests/security/bench-signed` measure.
//! `cargo bench -p kubefront-edge --bench edge_hit`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::BoxFuture;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use kubefront_edge::cache::Store;
use kubefront_edge::config::security::{KeyGroup, SecurityConfig, SignedPath, TrustedKey};
use kubefront_edge::config::EdgeConfig;
use kubefront_edge::origin::{
    ObjectMeta, OriginClient, OriginError, OriginRequest, OriginResponse, OriginStatus,
};
use kubefront_edge::security::b64;
use kubefront_edge::security::policy::canned_policy;
use kubefront_edge::server::{viewer, Edge, Generation, Settings};
use rsa::pkcs8::DecodePrivateKey;
use rsa::Pkcs1v15Sign;
use sha1::{Digest, Sha1};

const RSA_PRIVATE: &str = include_str!("../src/security/testdata/rsa_a.pem");
const RSA_PUBLIC: &str = include_str!("../src/security/testdata/rsa_a.pub.pem");
const HOST: &str = "cdn.example.com";

/// Every object is the same 1 KiB, cacheable for a day.
struct StaticOrigin(Bytes);

impl OriginClient for StaticOrigin {
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
        let body = self.0.clone();
        Box::pin(async move {
            let meta = ObjectMeta {
                content_length: Some(body.len() as u64),
                content_type: Some(HeaderValue::from_static("application/octet-stream")),
                etag: Some(HeaderValue::from_static("\"v1\"")),
                cache_control: Some(HeaderValue::from_static("max-age=86400")),
                ..Default::default()
            };
            let chunk: Result<Bytes, OriginError> = Ok(body);
            Ok(OriginResponse {
                status: OriginStatus::Ok,
                meta,
                body: (!req.head).then(|| Box::pin(futures::stream::iter([chunk])) as _),
            })
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
        Box::pin(async { Ok(()) })
    }
}

fn edge() -> Arc<Edge> {
    let mut cfg = EdgeConfig::for_bucket("bench");
    cfg.security = SecurityConfig {
        trusted_key_groups: vec![KeyGroup {
            name: "main".into(),
            keys: vec![TrustedKey {
                id: "KA".into(),
                public_key_pem: Some(RSA_PUBLIC.into()),
                public_key_file: None,
            }],
        }],
        signed_paths: vec![SignedPath {
            path_pattern: "/private/*".into(),
            key_groups: vec!["main".into()],
            public: false,
        }],
        ..Default::default()
    };
    cfg.validate().expect("bench config");
    let store = Store::new(cfg.cache.memory.0);
    let generation = Generation::new(
        Settings::new(cfg),
        Arc::new(StaticOrigin(Bytes::from(vec![7u8; 1024]))),
        store,
    );
    Arc::new(Edge::new(generation, None, None))
}

fn signed_query(path: &str) -> String {
    let expires = 4_000_000_000u64;
    let policy = canned_policy(&format!("http://{HOST}{path}"), expires);
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIVATE).expect("test key");
    let sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha1>(),
            &Sha1::digest(policy.as_bytes()),
        )
        .expect("sign");
    format!(
        "Expires={expires}&Signature={}&Key-Pair-Id=KA",
        b64::encode(&sig)
    )
}

async fn get(edge: &Arc<Edge>, uri: &str, cookie: Option<&str>) -> usize {
    let mut req = Request::get(uri).header("host", HOST);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = viewer::handle(edge.clone(), req).await;
    assert_eq!(resp.status(), 200, "{uri}");
    resp.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}

fn hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let edge = edge();
    let q = signed_query("/private/a.bin");
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("unsigned-1KiB", "/public/a.bin".into(), None),
        (
            "signed-url-rsa-sha1-1KiB",
            format!("/private/a.bin?{q}"),
            None,
        ),
        (
            "signed-cookie-rsa-sha1-1KiB",
            "/private/a.bin".into(),
            Some(
                q.replace("Expires=", "CloudFront-Expires=")
                    .replace("&Signature=", "; CloudFront-Signature=")
                    .replace("&Key-Pair-Id=", "; CloudFront-Key-Pair-Id="),
            ),
        ),
    ];
    let mut g = c.benchmark_group("edge_hit");
    g.throughput(Throughput::Elements(1));
    for (name, uri, cookie) in &cases {
        // Warm: the first request fills the cache (and the signature memo).
        rt.block_on(get(&edge, uri, cookie.as_deref()));
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(get(&edge, uri, cookie.as_deref()).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = hits
}
criterion_main!(benches);
