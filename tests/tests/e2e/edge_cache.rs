//! Cache behaviour of the real edge in front of a real S3 server: Miss→Hit, freshness from
//! origin headers, revalidation, viewer conditionals, ranges, HEAD, methods, default root
//! object, negative caching, key prefix.

use std::time::{Duration, Instant, SystemTime};

use kubefront_edge::config::{ByteSize, Dur};
use kubefront_tests::{pseudo_random_bytes, sha256_hex, ObjectMeta, Scenario};

#[tokio::test]
async fn miss_then_hit_passes_origin_headers_through() {
    let Some(s) = Scenario::start("miss-then-hit", |_| {}).await else {
        return;
    };
    let meta = ObjectMeta {
        content_type: Some("text/plain; charset=utf-8".into()),
        cache_control: Some("public, max-age=300".into()),
        expires: None,
    };
    s.bucket
        .put("/hello.txt", "hello world", meta)
        .await
        .unwrap();

    let first = s.get("/hello.txt").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "hello world");
    assert_eq!(first.x_cache(), "Miss");
    assert!(
        first.cache_status().contains("fwd=miss"),
        "{}",
        first.cache_status()
    );
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(first.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(first.header("accept-ranges"), Some("bytes"));
    assert_eq!(first.header("content-length"), Some("11"));
    let etag = first.header("etag").expect("ETag from origin").to_string();
    assert!(first.header("last-modified").is_some());

    let second = s.get("/hello.txt").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "hello world");
    assert_eq!(second.x_cache(), "Hit");
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    let age: u64 = second
        .header("age")
        .expect("Age on a hit")
        .parse()
        .expect("numeric Age");
    assert!(age < 60, "age {age}");

    assert_eq!(s.origin_gets("/hello.txt"), 1, "{:#?}", s.relay.requests());
    let m = s.edge.metrics().await.unwrap();
    assert!(
        m.sum("kubefront_edge_requests_total", &[("cache", "hit")]) >= 1.0,
        "{}",
        m.text
    );
    assert!(
        m.sum("kubefront_edge_requests_total", &[("cache", "miss")]) >= 1.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn freshness_comes_from_s_maxage_max_age_expires_or_default_clamped() {
    let Some(s) = Scenario::start("freshness", |c| {
        c.cache.default_ttl = Dur::secs(1000);
        c.cache.max_ttl = Dur::secs(3000);
        c.cache.min_ttl = Dur::ZERO;
    })
    .await
    else {
        return;
    };
    let expires = SystemTime::now() + Duration::from_secs(500);
    let cases: [(&str, ObjectMeta, i64); 5] = [
        ("/max-age", ObjectMeta::cache_control("max-age=100"), 100),
        (
            "/s-maxage",
            ObjectMeta::cache_control("max-age=10, s-maxage=200"),
            200,
        ),
        (
            "/expires",
            ObjectMeta {
                expires: Some(expires),
                ..Default::default()
            },
            500,
        ),
        ("/silent", ObjectMeta::default(), 1000),
        (
            "/clamped",
            ObjectMeta::cache_control("max-age=999999"),
            3000,
        ),
    ];
    for (path, meta, _) in &cases {
        s.bucket
            .put(path, format!("body of {path}"), meta.clone())
            .await
            .unwrap();
    }
    for (path, _, want) in &cases {
        assert_eq!(s.get(path).await.x_cache(), "Miss", "{path}");
        let hit = s.get(path).await;
        assert_eq!(hit.x_cache(), "Hit", "{path}: {}", hit.cache_status());
        let ttl = hit
            .cache_status_ttl()
            .unwrap_or_else(|| panic!("{path}: no ttl in Cache-Status {:?}", hit.cache_status()));
        assert!(
            (want - 20..=*want).contains(&ttl),
            "{path}: remaining ttl {ttl}, expected about {want} ({})",
            hit.cache_status()
        );
    }
}

#[tokio::test]
async fn an_expired_entry_is_not_served_as_a_hit() {
    let Some(s) = Scenario::start("expiry", |_| {}).await else {
        return;
    };
    s.bucket
        .put(
            "/short",
            "short-lived",
            // Long enough that the Hit right after the Miss is inside it even on a loaded
            // 2-core machine; the sleep below only has to outlast it.
            ObjectMeta::cache_control("max-age=4"),
        )
        .await
        .unwrap();
    assert_eq!(s.get("/short").await.x_cache(), "Miss");
    assert_eq!(s.get("/short").await.x_cache(), "Hit");
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let after = s.get("/short").await;
    assert_eq!(after.status, 200);
    assert_ne!(after.x_cache(), "Hit", "{}", after.cache_status());
    assert_eq!(s.relay.count("GET", &s.origin_path("/short")), 2);
}

#[tokio::test]
async fn no_store_responses_are_not_cached() {
    let Some(s) = Scenario::start("no-store", |_| {}).await else {
        return;
    };
    s.bucket
        .put(
            "/private",
            "secret-ish",
            ObjectMeta::cache_control("no-store"),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let r = s.get("/private").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.x_cache(), "Miss", "{}", r.cache_status());
    }
    assert_eq!(s.origin_gets("/private"), 2);
}

#[tokio::test]
async fn stale_entry_is_revalidated_with_304_and_body_not_refetched() {
    let Some(s) = Scenario::start("revalidate", |_| {}).await else {
        return;
    };
    let body = pseudo_random_bytes(256 * 1024, 7);
    s.bucket
        .put(
            "/big.bin",
            body.clone(),
            // The refreshed entry must still be fresh for the Hit checked at the end, on a
            // loaded machine; the sleep only has to outlast the window.
            ObjectMeta::cache_control("max-age=4"),
        )
        .await
        .unwrap();
    let first = s.get("/big.bin").await;
    assert_eq!(first.x_cache(), "Miss");
    assert_eq!(sha256_hex(&first.body), sha256_hex(&body));
    let bytes_after_fill = s.relay.bytes_from_origin();
    let not_modified_before = s.edge.metrics().await.unwrap().sum(
        "kubefront_edge_origin_requests_total",
        &[("outcome", "not_modified")],
    );

    tokio::time::sleep(Duration::from_millis(4200)).await;
    let refreshed = s.get("/big.bin").await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        refreshed.x_cache(),
        "RefreshHit",
        "{}",
        refreshed.cache_status()
    );
    assert_eq!(sha256_hex(&refreshed.body), sha256_hex(&body));

    let gets = s.relay.requests_for(&s.origin_path("/big.bin"));
    assert_eq!(gets.len(), 2, "{gets:#?}");
    let conditional = &gets[1];
    assert!(
        conditional.header("if-none-match").is_some()
            || conditional.header("if-modified-since").is_some(),
        "revalidation must be conditional: {conditional:#?}"
    );
    let refetched = s.relay.bytes_from_origin() - bytes_after_fill;
    assert!(
        refetched < 16 * 1024,
        "revalidation moved {refetched} bytes from origin; the 256 KiB body must not be refetched"
    );
    let m = s.edge.metrics().await.unwrap();
    assert_eq!(
        m.sum(
            "kubefront_edge_origin_requests_total",
            &[("outcome", "not_modified")]
        ) - not_modified_before,
        1.0,
        "{}",
        m.text
    );
    // The 304 refreshed the entry: fresh again for another max-age.
    assert_eq!(s.get("/big.bin").await.x_cache(), "Hit");
}

#[tokio::test]
async fn changed_object_after_expiry_is_fetched_again() {
    let Some(s) = Scenario::start("changed", |_| {}).await else {
        return;
    };
    // A window the "still fresh" check cannot miss on a loaded machine; the sleep outlasts it.
    let cc = ObjectMeta::cache_control("max-age=4");
    s.bucket
        .put("/v.txt", "version one", cc.clone())
        .await
        .unwrap();
    assert_eq!(s.get("/v.txt").await.text(), "version one");
    s.bucket.put("/v.txt", "version two!", cc).await.unwrap();
    assert_eq!(s.get("/v.txt").await.text(), "version one", "still fresh");
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let r = s.get("/v.txt").await;
    assert_eq!(r.text(), "version two!");
    assert_ne!(r.x_cache(), "RefreshHit");
    assert_eq!(s.get("/v.txt").await.text(), "version two!");
}

#[tokio::test]
async fn viewer_conditional_requests_get_304() {
    let Some(s) = Scenario::start("viewer-304", |_| {}).await else {
        return;
    };
    s.bucket
        .put("/c.css", "body{}", ObjectMeta::content_type("text/css"))
        .await
        .unwrap();
    let full = s.get("/c.css").await;
    let etag = full.header("etag").expect("etag").to_string();
    let lm = full
        .header("last-modified")
        .expect("last-modified")
        .to_string();

    let r = s.get_with("/c.css", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let r = s
        .get_with("/c.css", &[("if-none-match", "\"something-else\"")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "body{}");

    let r = s.get_with("/c.css", &[("if-modified-since", &lm)]).await;
    assert_eq!(r.status, 304);

    let r = s
        .get_with(
            "/c.css",
            &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        )
        .await;
    assert_eq!(r.status, 200);

    // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    let r = s
        .get_with(
            "/c.css",
            &[("if-none-match", "\"nope\""), ("if-modified-since", &lm)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        s.origin_gets("/c.css"),
        1,
        "conditionals answered from cache"
    );
}

#[tokio::test]
async fn single_ranges_get_206_and_unsatisfiable_ones_416() {
    let Some(s) = Scenario::start("ranges", |_| {}).await else {
        return;
    };
    let body = pseudo_random_bytes(1000, 3);
    s.bucket
        .put("/r.bin", body.clone(), ObjectMeta::default())
        .await
        .unwrap();

    // A cold range request still answers the range.
    let r = s.get_with("/r.bin", &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.header("content-range"), Some("bytes 100-199/1000"));
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(&r.body[..], &body[100..200]);

    for (range, start, end) in [
        ("bytes=-10", 990, 999),
        ("bytes=990-", 990, 999),
        ("bytes=0-0", 0, 0),
        ("bytes=900-5000", 900, 999),
    ] {
        let r = s.get_with("/r.bin", &[("range", range)]).await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/1000").as_str()),
            "{range}"
        );
        assert_eq!(&r.body[..], &body[start..=end], "{range}");
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=5-2"] {
        let r = s.get_with("/r.bin", &[("range", range)]).await;
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */1000"), "{range}");
    }
    let r = s.get_with("/r.bin", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status, 200, "multi-range answers the whole object");
    assert_eq!(r.body.len(), 1000);
}

#[tokio::test]
async fn head_answers_headers_without_body() {
    let Some(s) = Scenario::start("head", |_| {}).await else {
        return;
    };
    s.bucket
        .put(
            "/h.txt",
            vec![b'x'; 4321],
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .unwrap();
    let cold = s.request("HEAD", "/h.txt", &[]).await;
    assert_eq!(cold.status, 200);
    assert_eq!(cold.header("content-length"), Some("4321"));
    assert_eq!(cold.header("content-type"), Some("text/plain"));
    assert!(cold.body.is_empty());
    assert_eq!(s.get("/h.txt").await.body.len(), 4321);
    let warm = s.request("HEAD", "/h.txt", &[]).await;
    assert_eq!(warm.status, 200);
    assert_eq!(warm.x_cache(), "Hit");
    assert_eq!(warm.header("content-length"), Some("4321"));
    assert!(warm.body.is_empty());
}

#[tokio::test]
async fn other_methods_are_rejected_with_405() {
    let Some(s) = Scenario::start("methods", |_| {}).await else {
        return;
    };
    s.bucket
        .put("/m.txt", "m", ObjectMeta::default())
        .await
        .unwrap();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = s.request(method, "/m.txt", &[]).await;
        assert_eq!(r.status, 405, "{method}");
        let allow = r.header("allow").unwrap_or("");
        assert!(
            allow.contains("GET") && allow.contains("HEAD"),
            "{method}: Allow {allow:?}"
        );
    }
    assert!(
        s.relay
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "{:#?}",
        s.relay.requests()
    );
}

#[tokio::test]
async fn root_serves_the_default_root_object() {
    let Some(s) = Scenario::start("root", |c| {
        c.default_root_object = Some("index.html".into());
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/index.html",
            "<h1>home</h1>",
            ObjectMeta::content_type("text/html"),
        )
        .await
        .unwrap();
    let r = s.get("/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<h1>home</h1>");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(s.get("/").await.x_cache(), "Hit");
    assert_eq!(s.origin_gets("/index.html"), 1);
}

#[tokio::test]
async fn missing_objects_are_cached_for_the_negative_ttl() {
    let Some(s) = Scenario::start("negative", |c| {
        // Long enough that the "still negatively cached" check lands inside it on a loaded
        // 2-core machine; the wait below is measured from the first 404, not a fixed sleep.
        c.cache.negative_ttl = Dur::secs(5);
    })
    .await
    else {
        return;
    };
    let r = s.get("/later.txt").await;
    // The negative entry was stored before this answer arrived.
    let first_404 = Instant::now();
    assert_eq!(r.status, 404);
    assert_eq!(r.x_cache(), "Error");
    assert_eq!(s.get("/later.txt").await.status, 404);
    assert_eq!(s.origin_gets("/later.txt"), 1, "second 404 from cache");

    s.bucket
        .put("/later.txt", "now here", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(
        s.get("/later.txt").await.status,
        404,
        "still negatively cached"
    );
    tokio::time::sleep_until((first_404 + Duration::from_millis(5500)).into()).await;
    let r = s.get("/later.txt").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "now here");
}

#[tokio::test]
async fn viewer_paths_map_under_the_origin_prefix_and_cannot_escape_it() {
    let Some(s) = Scenario::start("prefix", |c| {
        c.origin.s3_mut().prefix.push_str("site/");
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/site/a.txt", "inside", ObjectMeta::default())
        .await
        .unwrap();
    s.bucket
        .put("/a.txt", "outside", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(s.get("/a.txt").await.text(), "inside");
    for path in [
        "/../a.txt",
        "/%2e%2e/a.txt",
        "/x/%2E%2E/%2e%2e/a.txt",
        "/..%2fa.txt",
        "/%2e%2e%2fa.txt",
    ] {
        let (status, body) = s.raw_get(path).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        assert!(!body.contains("outside"), "{path} escaped the prefix");
    }
}

#[tokio::test]
async fn objects_larger_than_cache_memory_share_still_serve() {
    let Some(s) = Scenario::start("small-cache", |c| {
        c.cache.memory = ByteSize(1024 * 1024);
        c.cache.max_object_size = ByteSize(512 * 1024);
    })
    .await
    else {
        return;
    };
    let body = pseudo_random_bytes(700 * 1024, 11);
    s.bucket
        .put("/over.bin", body.clone(), ObjectMeta::default())
        .await
        .unwrap();
    for _ in 0..2 {
        let r = s.get("/over.bin").await;
        assert_eq!(r.status, 200);
        assert_eq!(sha256_hex(&r.body), sha256_hex(&body));
        assert_eq!(r.x_cache(), "Miss", "over maxObjectSize: never cached");
    }
    assert_eq!(s.origin_gets("/over.bin"), 2);
}
