//! Micro-benchmarks of the per-request pure work on the hit path: cache key, freshness,
//! range and conditional evaluation.

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use kubefront_edge::cache::key::{normalize_path, KeyPolicy};
use kubefront_edge::config::{CacheKeyConfig, QueryMode, QueryStrings};
use kubefront_edge::policy::conditional::not_modified;
use kubefront_edge::policy::freshness::{decide, CacheControl, OriginFreshness, TtlPolicy};
use kubefront_edge::policy::ranges::evaluate;

fn cache_key(c: &mut Criterion) {
    let plain = KeyPolicy::new(&CacheKeyConfig::default());
    let all = KeyPolicy::new(&CacheKeyConfig {
        query_strings: QueryStrings::Mode(QueryMode::All),
        headers: vec!["Accept-Language".into()],
    });
    c.bench_function("key/plain_path", |b| {
        b.iter(|| {
            let p = normalize_path(std::hint::black_box("/static/img/logo-1024.png")).ok();
            p.map(|p| plain.key(p, None, |_| None))
        })
    });
    c.bench_function("key/escaped_query_header", |b| {
        b.iter(|| {
            let p = normalize_path(std::hint::black_box("/static/a%20b/logo.png")).ok();
            p.map(|p| {
                all.key(p, Some("v=3&lang=de&utm=x"), |n| {
                    (n == "accept-language").then_some(&b"de-DE"[..])
                })
            })
        })
    });
}

fn policies(c: &mut Criterion) {
    let policy = TtlPolicy {
        min: Duration::ZERO,
        default: Duration::from_secs(86_400),
        max: Duration::from_secs(365 * 86_400),
    };
    let now = SystemTime::now();
    c.bench_function("freshness/parse_and_decide", |b| {
        b.iter(|| {
            let cc =
                CacheControl::parse(std::hint::black_box("public, max-age=3600, s-maxage=600"));
            decide(
                &policy,
                &OriginFreshness {
                    cache_control: Some(cc),
                    ..Default::default()
                },
                now,
            )
        })
    });
    c.bench_function("ranges/single", |b| {
        b.iter(|| evaluate(Some(std::hint::black_box(b"bytes=100-1023")), 1 << 20))
    });
    c.bench_function("conditional/if_none_match", |b| {
        b.iter(|| {
            not_modified(
                Some(std::hint::black_box(b"\"x\", \"abc\"")),
                None,
                Some(b"\"abc\""),
                None,
            )
        })
    });
}

criterion_group!(benches, cache_key, policies);
criterion_main!(benches);
