//! The edge under real failure conditions (issue 12): a revoked edge key never replaces cached
//! objects, RFC 9111 must-revalidate / s-maxage / only-if-cached, origin stale directives,
//! invalidation racing in-flight fetches, slow viewers of pass-through objects, forwarded
//! ranges, HEAD misses, reload keeping the cache.
//!
//! No test depends on a short TTL window: stale entries come from `max-age=0` (stale at once,
//! and only ever more stale), slow fetches from the relay's response delay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubefront_edge::config::{ByteSize, Dur};
use kubefront_tests::scenario::StartOptions;
use kubefront_tests::{pseudo_random_bytes, sha256_hex, ObjectMeta, Scenario};

const TOKEN: &str = "resilience-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_edge_key_serves_stale_objects_and_never_caches_the_403() {
    let Some(server) = kubefront_tests::scenario::s3_server_or_skip("revoked-key") else {
        return;
    };
    let Some(creds) = server.create_user("revoked").expect("mc admin user add") else {
        let reason = "needs MinIO with mc for user management";
        assert!(
            !kubefront_tests::e2e_required(),
            "revoked-key: {reason}; CI / KUBEFRONT_REQUIRE_E2E forbid skipping"
        );
        eprintln!("SKIPPED revoked-key: {reason}");
        return;
    };
    let opts = StartOptions {
        credentials: Some(creds.clone()),
        ..Default::default()
    };
    let Some(s) = Scenario::start_with(
        "revoked-key",
        |c| {
            c.cache.stale_if_error = Dur::secs(3600);
        },
        opts,
    )
    .await
    else {
        return;
    };
    for (path, body) in [("/a.txt", "object a"), ("/b.txt", "object b")] {
        // Stale as soon as it is stored: every later request must ask the origin.
        s.bucket
            .put(path, body, ObjectMeta::cache_control("max-age=0"))
            .await
            .unwrap();
        let r = s.get(path).await;
        assert_eq!((r.status, r.x_cache()), (200, "Miss"), "{}", r.text());
    }
    s.bucket
        .put("/cold.txt", "never fetched", ObjectMeta::default())
        .await
        .unwrap();

    server
        .remove_user(&creds.access_key)
        .expect("mc admin user remove");

    let started = Instant::now();
    for round in 0..5 {
        for (path, body) in [("/a.txt", "object a"), ("/b.txt", "object b")] {
            let r = s.get(path).await;
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, body),
                "round {round} {path}: {}",
                r.cache_status()
            );
            assert!(
                r.cache_status().contains("detail=stale-if-error"),
                "{}",
                r.cache_status()
            );
            assert!(
                r.cache_status().contains("fwd-status=403"),
                "the origin's 403 is forwarded as status, not served: {}",
                r.cache_status()
            );
        }
    }
    eprintln!("revoked-key: 10 stale answers in {:?}", started.elapsed());
    // A cold object is a 502 (the origin failed), not a 403 (a fact about the object)...
    let cold = s.get("/cold.txt").await;
    assert_eq!(cold.status, 502, "{} {}", cold.cache_status(), cold.text());
    assert_eq!(s.origin_gets("/cold.txt"), 1);
    // ...and the failure is remembered briefly: the origin is not asked again.
    let again = s.get("/cold.txt").await;
    assert_eq!(again.status, 502);
    assert!(
        again.cache_status().contains("cached-error"),
        "{}",
        again.cache_status()
    );
    assert_eq!(
        s.origin_gets("/cold.txt"),
        1,
        "error caching shields the origin"
    );

    let ready = s
        .http
        .get(s.edge.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200, "stale copies still serve");
    let text = ready.text().await.unwrap();
    assert!(
        text.contains("origin degraded") && text.contains("InvalidAccessKeyId"),
        "{text}"
    );
    let m = s.edge.metrics().await.unwrap();
    let by_code = m.sum(
        "kubefront_edge_origin_error_codes_total",
        &[("code", "InvalidAccessKeyId")],
    );
    assert!(by_code >= 11.0, "{}", m.text);
    assert_eq!(m.sum("kubefront_edge_origin_degraded", &[]), 1.0);
    // One warning per interval, not one per failed request.
    let warnings = s
        .edge
        .logs()
        .lines()
        .filter(|l| l.contains("origin fetch failed"))
        .count();
    eprintln!("revoked-key: {by_code} failures by code, {warnings} warnings logged: {text}");
    assert!(warnings <= 3, "{warnings} warnings for {by_code} failures");
}

#[tokio::test]
async fn must_revalidate_and_s_maxage_give_504_while_plain_stale_gives_200() {
    let Some(s) = Scenario::start("must-revalidate", |c| {
        c.cache.stale_if_error = Dur::secs(3600);
        c.origin.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    let objects = [
        ("/must.txt", "max-age=0, must-revalidate"),
        ("/proxy.txt", "max-age=0, proxy-revalidate"),
        ("/smax.txt", "max-age=600, s-maxage=0"),
        ("/plain.txt", "max-age=0"),
        // The origin's own stale-if-error=0 beats the configured hour.
        ("/no-sie.txt", "max-age=0, stale-if-error=0"),
    ];
    for (path, cc) in objects {
        s.bucket
            .put(
                path,
                format!("body of {path}"),
                ObjectMeta::cache_control(cc),
            )
            .await
            .unwrap();
        assert_eq!(s.get(path).await.status, 200, "{path}");
    }
    // only-if-cached on a miss: 504, and the origin is not asked.
    let oic = s
        .get_with("/absent.txt", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(oic.status, 504, "{}", oic.cache_status());
    assert_eq!(s.origin_gets("/absent.txt"), 0);

    s.relay.stop();
    for path in ["/must.txt", "/proxy.txt", "/smax.txt"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 504, "{path}: {} {}", r.cache_status(), r.text());
        assert!(
            r.cache_status().contains("must-revalidate"),
            "{}",
            r.cache_status()
        );
    }
    let plain = s.get("/plain.txt").await;
    assert_eq!(
        (plain.status, plain.text().as_str()),
        (200, "body of /plain.txt")
    );
    assert!(plain.cache_status().contains("stale-if-error"));
    let no_sie = s.get("/no-sie.txt").await;
    assert_eq!(no_sie.status, 502, "{}", no_sie.cache_status());
}

#[tokio::test]
async fn the_origins_stale_while_revalidate_is_honoured_without_config() {
    let Some(s) = Scenario::start("origin-swr", |c| {
        c.cache.stale_while_revalidate = Dur::ZERO;
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/swr.txt",
            "served stale while refreshing",
            ObjectMeta::cache_control("max-age=0, stale-while-revalidate=3600"),
        )
        .await
        .unwrap();
    assert_eq!(s.get("/swr.txt").await.x_cache(), "Miss");
    let r = s.get("/swr.txt").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.x_cache(), "Hit", "{}", r.cache_status());
    assert!(
        r.cache_status().contains("stale-while-revalidate"),
        "{}",
        r.cache_status()
    );
    // The refresh ran in the background: a second origin request (conditional).
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.origin_gets("/swr.txt") < 2 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_racing_an_in_flight_fetch_never_leaves_the_old_body() {
    let opts = StartOptions {
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let Some(s) = Scenario::start_with("inval-race", |_| {}, opts).await else {
        return;
    };
    let s = Arc::new(s);
    let rounds = 24;
    let mut old_served_by_racer = 0;
    for i in 0..rounds {
        let old = format!("version {i}");
        let new = format!("version {}", i + 1);
        s.bucket
            .put(
                "/race.txt",
                old.clone(),
                ObjectMeta::cache_control("max-age=3600"),
            )
            .await
            .unwrap();
        // Every origin answer is held 300 ms: the racer's fetch is in flight meanwhile.
        s.relay.set_response_delay(Duration::from_millis(300));
        let racer = {
            let s = s.clone();
            tokio::spawn(async move { s.get("/race.txt").await })
        };
        // Land the invalidation at different points of the fetch (before the origin read
        // the object, while the answer is held, around the insert).
        tokio::time::sleep(Duration::from_millis(40 + (i as u64 % 8) * 45)).await;
        s.bucket
            .put(
                "/race.txt",
                new.clone(),
                ObjectMeta::cache_control("max-age=3600"),
            )
            .await
            .unwrap();
        let inv = s.invalidate(&["/race.txt"], Some(TOKEN)).await;
        assert_eq!(inv.status, 200, "{}", inv.text());
        // Right after the invalidation returns: never the old body, not even by joining the
        // fetch that was in flight.
        let after = s.get("/race.txt").await;
        assert_eq!(after.text(), new, "round {i}: {}", after.cache_status());
        let raced = racer.await.unwrap();
        if raced.text() == old {
            old_served_by_racer += 1;
        }
        s.relay.set_response_delay(Duration::ZERO);
        // And once everything settled, the cache holds the new body.
        let settled = s.get("/race.txt").await;
        assert_eq!(settled.text(), new, "round {i}: {}", settled.cache_status());
        // Clean slate for the next round.
        assert_eq!(s.invalidate(&["/race.txt"], Some(TOKEN)).await.status, 200);
    }
    eprintln!(
        "inval-race: {rounds} rounds, the in-flight request got the old body in {old_served_by_racer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_of_a_pass_through_object_is_not_cut_off_by_the_total_timeout() {
    let Some(s) = Scenario::start("slow-viewer", |c| {
        c.cache.max_object_size = ByteSize(1024 * 1024);
        c.cache.memory = ByteSize(8 * 1024 * 1024);
        // Far shorter than the transfer below: only an idle timeout lets it finish.
        c.origin.timeouts.total = Dur::secs(2);
    })
    .await
    else {
        return;
    };
    let size = 24 * 1024 * 1024;
    let body = pseudo_random_bytes(size, 77);
    let want = sha256_hex(&body);
    s.bucket
        .put("/slow.bin", body, ObjectMeta::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut resp = s.http.get(s.edge.url("/slow.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut received = 0usize;
    // About 4 MB/s: 24 MiB takes ~6 s, three times the total timeout.
    let rate = 4_000_000.0;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                sha2::Digest::update(&mut hasher, &chunk);
                received += chunk.len();
                let due = Duration::from_secs_f64(received as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            Ok(None) => break,
            Err(e) => panic!(
                "cut off after {received} of {size} bytes in {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    let took = started.elapsed();
    eprintln!(
        "slow-viewer: {received} bytes in {took:?}, origin sent {} bytes",
        s.relay.bytes_from_origin()
    );
    assert_eq!(received, size);
    assert_eq!(hex::encode(sha2::Digest::finalize(hasher)), want);
    assert!(
        took > Duration::from_secs(4),
        "the viewer really was slow: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_a_large_object_are_forwarded_and_head_misses_use_s3_head() {
    let Some(s) = Scenario::start("forwarded-range", |c| {
        c.cache.max_object_size = ByteSize(1024 * 1024);
        c.cache.memory = ByteSize(8 * 1024 * 1024);
    })
    .await
    else {
        return;
    };
    let size = 32 * 1024 * 1024;
    let body = pseudo_random_bytes(size, 5);
    s.bucket
        .put("/big.bin", body.clone(), ObjectMeta::default())
        .await
        .unwrap();
    // HEAD on a miss: an S3 HEAD, no GET, length from the origin.
    let head = s.request("HEAD", "/big.bin", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(s.relay.count("HEAD", &s.origin_path("/big.bin")), 1);
    assert_eq!(s.origin_gets("/big.bin"), 0, "HEAD on a miss must not GET");
    let etag = head.header("etag").expect("etag").to_string();

    // The first request learns the object is too large; from then on ranges are forwarded.
    let first = s.get_with("/big.bin", &[("range", "bytes=0-1023")]).await;
    assert_eq!(first.status, 206);
    assert_eq!(&first.body[..], &body[..1024]);

    let offset = 20 * 1024 * 1024;
    let range = format!("bytes={offset}-{}", offset + 1023);
    for round in 0..2 {
        let before = s.relay.bytes_from_origin();
        let r = s.get_with("/big.bin", &[("range", range.as_str())]).await;
        let sent = s.relay.bytes_from_origin() - before;
        eprintln!("forwarded-range: round {round}: 1 KiB range at 20 MiB cost {sent} origin bytes");
        assert_eq!(r.status, 206, "{}", r.cache_status());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {offset}-{}/{size}", offset + 1023).as_str())
        );
        assert_eq!(&r.body[..], &body[offset..offset + 1024]);
        assert!(
            sent < 64 * 1024,
            "round {round}: origin sent {sent} bytes for 1 KiB"
        );
    }
    let last = s.relay.requests_for(&s.origin_path("/big.bin"));
    let last = last.last().expect("origin requests");
    assert_eq!(last.header("range"), Some(range.as_str()), "{last:?}");

    // If-Range with the current ETag: the range; with a stale one: the whole object.
    let ok = s
        .get_with(
            "/big.bin",
            &[("range", range.as_str()), ("if-range", etag.as_str())],
        )
        .await;
    assert_eq!(ok.status, 206);
    let stale = s
        .get_with(
            "/big.bin",
            &[("range", range.as_str()), ("if-range", "\"not-it\"")],
        )
        .await;
    assert_eq!(stale.status, 200, "{}", stale.cache_status());
    assert_eq!(stale.body.len(), size);
    assert_eq!(sha256_hex(&stale.body), sha256_hex(&body));
    // Validators are forwarded too.
    let nm = s
        .get_with("/big.bin", &[("if-none-match", etag.as_str())])
        .await;
    assert_eq!(nm.status, 304, "{}", nm.cache_status());
}

#[tokio::test]
async fn reload_with_new_timeouts_or_cache_size_keeps_the_cache() {
    let Some(s) = Scenario::start("reload-keep", |c| {
        c.cache.default_ttl = Dur::secs(3600);
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/k.txt", "kept", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(s.get("/k.txt").await.x_cache(), "Miss");
    let reloads = |m: &kubefront_tests::Metrics| {
        m.sum(
            "kubefront_edge_config_reloads_total",
            &[("result", "applied")],
        )
    };
    let before = reloads(&s.edge.metrics().await.unwrap());
    let mut cfg = s.config.clone();
    cfg.origin.timeouts.total = Dur::secs(30);
    cfg.origin.timeouts.first_byte = Dur::secs(4);
    cfg.origin.max_attempts = 3;
    cfg.cache.memory = ByteSize(256 * 1024 * 1024);
    s.edge.rewrite_config(&cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while reloads(&s.edge.metrics().await.unwrap()) < before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "not reloaded:\n{}",
            s.edge.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = s.get("/k.txt").await;
    assert_eq!(r.x_cache(), "Hit", "{}", r.cache_status());
    assert_eq!(s.origin_gets("/k.txt"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_origin_body_is_never_cached_and_every_waiter_fails_fast() {
    let Some(s) = Scenario::start("truncated", |c| {
        c.cache.error_caching_min_ttl = Dur::ZERO;
        c.origin.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    let size = 2 * 1024 * 1024;
    let body = pseudo_random_bytes(size, 3);
    let want = sha256_hex(&body);
    s.bucket
        .put("/cut.bin", body, ObjectMeta::cache_control("max-age=3600"))
        .await
        .unwrap();
    s.relay.cut_responses_after(512 * 1024);
    let s = Arc::new(s);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let resp = s.http.get(s.edge.url("/cut.bin")).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.map(|b| b.len()))
        }));
    }
    for t in tasks {
        // Fills stream: the viewer has its headers before the cut, so the cut reaches it
        // as a cut body (never a short body passed off as whole), or as a 502 before them.
        let (status, body) = t.await.unwrap();
        assert!(
            status == 502 || (status == 200 && body.is_err()),
            "status {status}, body {body:?}"
        );
    }
    let took = started.elapsed();
    eprintln!("truncated: 10 viewers failed in {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "waiters fail fast: {took:?}"
    );
    s.relay.cut_responses_after(0);
    let r = s.get("/cut.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.x_cache(),
        "Miss",
        "nothing was cached from the short body"
    );
    assert_eq!(sha256_hex(&r.body), want);
    assert_eq!(s.get("/cut.bin").await.x_cache(), "Hit");
}

#[tokio::test]
async fn a_failing_credential_provider_is_an_origin_failure_not_a_fact() {
    let opts = StartOptions {
        credentials: Some(kubefront_tests::Credentials {
            access_key: String::new(),
            secret_key: String::new(),
        }),
        skip_ready: true,
        ..Default::default()
    };
    let Some(s) = Scenario::start_with("no-credentials", |c| c.origin.max_attempts = 1, opts).await
    else {
        return;
    };
    let r = s.get("/any.txt").await;
    assert_eq!(r.status, 502, "{} {}", r.cache_status(), r.text());
    let m = s.edge.metrics().await.unwrap();
    eprintln!(
        "no-credentials: {}",
        m.text
            .lines()
            .filter(|l| l.contains("origin_error_codes"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(
        m.sum(
            "kubefront_edge_origin_error_codes_total",
            &[("code", "CredentialsProviderError")]
        ) >= 1.0,
        "{}",
        m.text
    );
    let ready = s
        .http
        .get(s.edge.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503, "never reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_origin_gets_retries_only_within_the_budget_and_stale_objects_serve() {
    let Some(s) = Scenario::start("throttled", |c| {
        c.origin.max_attempts = 3;
        c.cache.stale_if_error = Dur::secs(3600);
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/cached.txt",
            "still here",
            ObjectMeta::cache_control("max-age=0"),
        )
        .await
        .unwrap();
    assert_eq!(s.get("/cached.txt").await.status, 200);
    s.relay.throttle().await.unwrap();
    let stale = s.get("/cached.txt").await;
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "still here"),
        "{}",
        stale.cache_status()
    );
    assert!(
        stale.cache_status().contains("fwd-status=503"),
        "{}",
        stale.cache_status()
    );
    // 60 cold keys, each failing with SlowDown; 3 attempts each would be 180 origin requests.
    let before = s.relay.requests().len();
    let cold = 60;
    for i in 0..cold {
        let r = s.get(&format!("/cold-{i}.txt")).await;
        assert_eq!(r.status, 502, "{}", r.cache_status());
    }
    let sent = s.relay.requests().len() - before;
    eprintln!("throttled: {cold} cold requests made {sent} origin requests (max_attempts 3)");
    // 10 banked retries + 10 % of the requests, never 3x.
    assert!(
        sent <= cold + 10 + cold / 10 + 2,
        "{sent} origin requests for {cold}"
    );
    let m = s.edge.metrics().await.unwrap();
    assert!(
        m.sum(
            "kubefront_edge_origin_error_codes_total",
            &[("code", "SlowDown")]
        ) >= cold as f64,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn the_configured_stale_while_revalidate_answers_without_waiting_for_the_origin() {
    // No stale-if-error: an edge that waited for the stalled origin could only answer 504.
    let Some(s) = Scenario::start("config-swr", |c| {
        c.cache.stale_while_revalidate = Dur::secs(3600);
        c.cache.stale_if_error = Dur::ZERO;
        c.origin.timeouts.first_byte = Dur::secs(30);
        c.origin.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/cswr.txt",
            "stale, served while the origin is asked",
            ObjectMeta::cache_control("max-age=0"),
        )
        .await
        .unwrap();
    assert_eq!(s.get("/cswr.txt").await.x_cache(), "Miss");
    // The origin still answers, but only after the first-byte timeout.
    s.relay.set_response_delay(Duration::from_secs(60));

    let asked = Instant::now();
    let r = s.get("/cswr.txt").await;
    assert_eq!(r.status, 200, "{} {}", r.cache_status(), r.text());
    assert_eq!(r.text(), "stale, served while the origin is asked");
    assert_eq!(r.x_cache(), "Hit", "{}", r.cache_status());
    assert!(
        r.cache_status().contains("stale-while-revalidate"),
        "{}",
        r.cache_status()
    );
    // Far below the 30 s first-byte timeout a waiting edge would have spent.
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
    // The background refresh reached the (stalled) origin.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.origin_gets("/cswr.txt") < 2 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.relay.set_response_delay(Duration::ZERO);
}
