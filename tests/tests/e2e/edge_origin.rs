//! The edge against origin trouble and load: stale-if-error with the origin down, 502/504,
//! request collapsing counted at the origin, a 64 MiB stream-through, config reload, SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubefront_edge::config::{ByteSize, Dur};
use kubefront_edge::server::reload::config_hash;
use kubefront_tests::{pseudo_random_bytes, sha256_hex, ObjectMeta, Scenario};

#[tokio::test]
async fn stale_content_is_served_when_the_origin_is_down() {
    let Some(s) = Scenario::start("stale-if-error", |c| {
        c.cache.stale_if_error = Dur::secs(3600);
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/s.txt",
            "stale but useful",
            ObjectMeta::cache_control("max-age=0"),
        )
        .await
        .unwrap();
    assert_eq!(s.get("/s.txt").await.x_cache(), "Miss");
    s.relay.stop();

    let r = s.get("/s.txt").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "stale but useful");
    assert_eq!(r.x_cache(), "Hit", "{}", r.cache_status());
    assert!(
        r.cache_status().contains("stale-if-error"),
        "{}",
        r.cache_status()
    );

    let cold = s.get("/never-fetched.txt").await;
    assert_eq!(cold.status, 502, "{}", cold.text());
    assert_eq!(cold.x_cache(), "Error");
    let m = s.edge.metrics().await.unwrap();
    assert!(
        m.sum("kubefront_edge_origin_errors_total", &[]) >= 1.0,
        "{}",
        m.text
    );

    // Back up: the stale entry is refreshed from the origin again.
    s.relay.resume().await.unwrap();
    let back = s.get("/s.txt").await;
    assert_eq!(back.status, 200);
    assert_ne!(back.cache_status(), r.cache_status());
}

#[tokio::test]
async fn without_stale_if_error_an_expired_entry_fails_with_502() {
    let Some(s) = Scenario::start("no-stale", |c| {
        c.cache.stale_if_error = Dur::ZERO;
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/e.txt", "expired", ObjectMeta::cache_control("max-age=0"))
        .await
        .unwrap();
    assert_eq!(s.get("/e.txt").await.status, 200);
    s.relay.stop();
    let r = s.get("/e.txt").await;
    assert_eq!(r.status, 502, "{} {}", r.cache_status(), r.text());
}

#[tokio::test]
async fn a_hanging_origin_gives_504_within_the_first_byte_timeout() {
    let Some(s) = Scenario::start("hang", |c| {
        c.origin.timeouts.first_byte = Dur::secs(1);
        c.origin.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    s.relay.hang().await.unwrap();
    // `hang` cuts the relay's open connections, so a keep-alive connection the edge pooled at
    // startup may be dead: a request that lands on it fails at once (502, a connection error,
    // correct with maxAttempts 1) instead of meeting the hanging origin. Drain those with
    // another key until the edge answers from a fresh (hanging) connection.
    let mut warmup = Vec::new();
    for _ in 0..4 {
        let w = s.get("/warmup.txt").await;
        warmup.push(w.status);
        if w.status == 504 {
            break;
        }
        assert_eq!(w.status, 502, "warm-up: {}", w.cache_status());
    }
    assert_eq!(warmup.last(), Some(&504), "warm-up answers {warmup:?}");
    let started = Instant::now();
    let r = s.get("/slow.txt").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{} {}", r.cache_status(), r.text());
    assert_eq!(r.x_cache(), "Error");
    assert!(took < Duration::from_secs(8), "504 took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_cold_requests_make_one_origin_get() {
    let Some(s) = Scenario::start("collapse", |_| {}).await else {
        return;
    };
    let body = pseudo_random_bytes(1024 * 1024, 42);
    let want = sha256_hex(&body);
    s.bucket
        .put("/hot.bin", body, ObjectMeta::cache_control("max-age=600"))
        .await
        .unwrap();
    let before = s.edge.metrics().await.unwrap();
    let s = Arc::new(s);
    // Open the connections first so the requests really arrive together.
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let client = kubefront_tests::scenario::http_client();
            let _ = client.get(s.edge.admin_url("/healthz")).send().await;
            let viewer_client = client.clone();
            barrier.wait().await;
            let started = Instant::now();
            let r = viewer_client
                .get(s.edge.url("/hot.bin"))
                .send()
                .await
                .expect("GET /hot.bin");
            let status = r.status().as_u16();
            let x_cache = r
                .headers()
                .get("x-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = r.bytes().await.expect("body");
            (status, x_cache, sha256_hex(&bytes), started.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut misses = 0;
    for t in tasks {
        let (status, x_cache, sha, took) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(sha, want, "every waiter gets the same, complete body");
        if x_cache == "Miss" {
            misses += 1;
        }
        latencies.push(took);
    }
    latencies.sort();
    eprintln!(
        "collapse: 200 cold requests, {misses} Miss, p50 {:?}, p99 {:?}, max {:?}",
        latencies[100], latencies[197], latencies[199]
    );
    assert_eq!(
        s.origin_gets("/hot.bin"),
        1,
        "origin GETs for the hot key: {:#?}",
        s.relay.requests_for(&s.origin_path("/hot.bin"))
    );
    assert_eq!(s.relay.parse_failures(), 0);
    let after = s.edge.metrics().await.unwrap();
    let origin_ok = |m: &kubefront_tests::Metrics| {
        m.sum("kubefront_edge_origin_requests_total", &[("outcome", "ok")])
    };
    assert_eq!(
        origin_ok(&after) - origin_ok(&before),
        1.0,
        "{}",
        after.text
    );
    let served = |m: &kubefront_tests::Metrics| m.sum("kubefront_edge_requests_total", &[]);
    assert_eq!(served(&after) - served(&before), 200.0, "{}", after.text);
    assert!(
        after.sum("kubefront_edge_collapsed_requests_total", &[]) >= 1.0,
        "some of 200 simultaneous misses must have waited:\n{}",
        after.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_object_streams_through_without_being_buffered() {
    let Some(s) = Scenario::start("large", |c| {
        c.cache.max_object_size = ByteSize(8 * 1024 * 1024);
        c.cache.memory = ByteSize(32 * 1024 * 1024);
    })
    .await
    else {
        return;
    };
    let size = 64 * 1024 * 1024;
    let body = pseudo_random_bytes(size, 64);
    let want = sha256_hex(&body);
    s.bucket
        .put(
            "/large.bin",
            body,
            ObjectMeta::content_type("application/octet-stream"),
        )
        .await
        .unwrap();

    for round in 0..2 {
        let baseline = s.edge.rss_bytes();
        let mut resp = s.http.get(s.edge.url("/large.bin")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get("x-cache").and_then(|v| v.to_str().ok()),
            Some("Miss"),
            "round {round}: too large to cache"
        );
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut received = 0usize;
        let mut peak = baseline;
        let mut paused = false;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            sha2::Digest::update(&mut hasher, &chunk);
            received += chunk.len();
            peak = peak.max(s.edge.rss_bytes());
            // A slow viewer: a proxy without backpressure would now read the rest into memory.
            if !paused && received > 4 * 1024 * 1024 {
                paused = true;
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    peak = peak.max(s.edge.rss_bytes());
                }
            }
        }
        assert_eq!(received, size, "round {round}");
        assert_eq!(
            hex::encode(sha2::Digest::finalize(hasher)),
            want,
            "round {round}"
        );
        let growth = peak.saturating_sub(baseline);
        eprintln!(
            "large: round {round} baseline RSS {} MiB, peak {} MiB",
            baseline >> 20,
            peak >> 20
        );
        assert!(
            growth < 32 * 1024 * 1024,
            "round {round}: RSS grew by {} MiB while streaming 64 MiB",
            growth >> 20
        );
    }
    // Never cached: every round asks the origin (the first also learns the size from a
    // one-slice probe).
    assert!(s.origin_gets("/large.bin") >= 2);
    let r = s.get_with("/large.bin", &[("range", "bytes=0-0")]).await;
    assert_eq!(r.x_cache(), "Miss", "{}", r.cache_status());
}

#[tokio::test]
async fn a_changed_config_file_is_reloaded_and_keeps_the_cache() {
    let Some(mut s) = Scenario::start("reload", |c| {
        c.cache.default_ttl = Dur::secs(3600);
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/r.txt", "from bucket one", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(s.get("/r.txt").await.x_cache(), "Miss");
    assert_eq!(s.get("/r.txt").await.x_cache(), "Hit");
    let reloads = |m: &kubefront_tests::Metrics| {
        m.sum(
            "kubefront_edge_config_reloads_total",
            &[("result", "applied")],
        )
    };
    let before = reloads(&s.edge.metrics().await.unwrap());

    // Same origin, different TTL: the entry survives.
    let mut cfg = s.config.clone();
    cfg.cache.default_ttl = Dur::secs(600);
    let started = loaded_config(&s).await;
    s.edge.rewrite_config(&cfg).unwrap();
    wait_for_reloads(&s, before + 1.0).await;
    // The edge reports the file it now runs by the hash of its bytes (the operator's hash).
    let file = std::fs::read_to_string(&s.edge.config_path).unwrap();
    let now = loaded_config(&s).await;
    assert_eq!(now["hash"], config_hash(&file), "{now}");
    assert_ne!(now["hash"], started["hash"], "{now} {started}");
    let m = s.edge.metrics().await.unwrap();
    assert_eq!(
        m.sum(
            "kubefront_edge_config_info",
            &[("hash", &config_hash(&file))]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.text.matches("kubefront_edge_config_info{").count(),
        1,
        "one info series: {}",
        m.text
    );
    let r = s.get("/r.txt").await;
    assert_eq!(
        r.x_cache(),
        "Hit",
        "reload with the same origin keeps the cache"
    );
    assert_eq!(s.origin_gets("/r.txt"), 1);
    // The new default TTL (600 s, was 3600 s) applies to new entries: read from the entry's
    // remaining freshness in Cache-Status, not from a short TTL racing the clock.
    s.bucket
        .put("/new.txt", "new", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(s.get("/new.txt").await.x_cache(), "Miss");
    let hit = s.get("/new.txt").await;
    assert_eq!(hit.x_cache(), "Hit");
    let ttl = hit.cache_status_ttl().expect("ttl in Cache-Status");
    assert!(
        (500..=600).contains(&ttl),
        "the reloaded 600 s default TTL must apply to the new entry: {}",
        hit.cache_status()
    );
    let old = s.get("/r.txt").await;
    assert!(
        old.cache_status_ttl().is_some_and(|t| t > 600),
        "the entry stored before the reload keeps its freshness: {}",
        old.cache_status()
    );

    // An invalid file is rejected (counted), and the old config keeps serving.
    let rejected = |m: &kubefront_tests::Metrics| {
        m.sum(
            "kubefront_edge_config_reloads_total",
            &[("result", "rejected")],
        )
    };
    let rejected_before = rejected(&s.edge.metrics().await.unwrap());
    std::fs::write(&s.edge.config_path, "origin: [not, a, config]\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rejected(&s.edge.metrics().await.unwrap()) < rejected_before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "the invalid config file was never counted as rejected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.edge
        .check_alive()
        .expect("edge survives an invalid config file");
    assert_eq!(s.get("/r.txt").await.x_cache(), "Hit");
    // The refusal is reported with the refused file's hash; the loaded hash stays.
    let refused = loaded_config(&s).await;
    assert_eq!(refused["hash"], config_hash(&file), "{refused}");
    assert_eq!(
        refused["rejected"]["hash"],
        config_hash("origin: [not, a, config]\n"),
        "{refused}"
    );
    assert!(
        refused["rejected"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{refused}"
    );

    // Another origin: the cache is flushed and content comes from the new bucket.
    let other = s.server.bucket("reload-other").await.unwrap();
    other
        .put("/r.txt", "from bucket two", ObjectMeta::default())
        .await
        .unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.origin.s3_mut().bucket = other.name.clone();
    cfg2.origin.s3_mut().prefix = other.prefix.clone();
    let applied = reloads(&s.edge.metrics().await.unwrap());
    s.edge.rewrite_config(&cfg2).unwrap();
    wait_for_reloads(&s, applied + 1.0).await;
    let r = s.get("/r.txt").await;
    assert_eq!(r.text(), "from bucket two");
    assert_eq!(r.x_cache(), "Miss");
}

/// The edge's admin `/config` answer.
async fn loaded_config(s: &Scenario) -> serde_json::Value {
    let r = reqwest::get(s.edge.admin_url("/config")).await.unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

async fn wait_for_reloads(s: &Scenario, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = s.edge.metrics().await.unwrap();
        if m.sum(
            "kubefront_edge_config_reloads_total",
            &[("result", "applied")],
        ) >= want
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "config not reloaded within 15 s:\n{}\n{}",
            m.text,
            s.edge.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_response_and_exits_zero() {
    let Some(mut s) = Scenario::start("sigterm", |c| {
        c.cache.max_object_size = ByteSize(1024 * 1024);
    })
    .await
    else {
        return;
    };
    let size = 16 * 1024 * 1024;
    let body = pseudo_random_bytes(size, 9);
    let want = sha256_hex(&body);
    s.bucket
        .put("/drain.bin", body, ObjectMeta::default())
        .await
        .unwrap();
    let mut resp = s.http.get(s.edge.url("/drain.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("first chunk");
    let pid = s.edge.pid();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, &first);
    let mut received = first.len();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        sha2::Digest::update(&mut hasher, &chunk);
        received += chunk.len();
    }
    assert_eq!(received, size, "the in-flight response completes");
    assert_eq!(hex::encode(sha2::Digest::finalize(hasher)), want);
    let status = s
        .edge
        .terminate(Duration::from_secs(10))
        .expect("edge exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    // New connections are refused after shutdown.
    assert!(s.http.get(s.edge.url("/drain.bin")).send().await.is_err());
}
