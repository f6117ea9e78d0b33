//! The real edge in front of HTTP origins: a scripted origin on raw sockets
//! (`kubefront_tests::http_origin`) checks what the edge sends (base path, the cache key's query
//! and nothing else, `Host`, `Via`, a secret custom header read from a file) and what it does
//! with the answers (cached, ranges from the cache, negative entries, failures that never
//! replace a cached copy), and a second origin behind `failover` takes over on a listed status
//! and when the primary refuses connections.

use kubefront_edge::config::{
    CacheKeyConfig, Dur, EdgeConfig, Failover, OriginConfig, OriginCustomHeader, QueryStrings,
};
use kubefront_tests::scenario::http_client;
use kubefront_tests::{Credentials, Edge, EdgeOptions, HttpOrigin, Route};

/// An edge whose origin is `origin` (short timeouts, one attempt: each origin request in these
/// tests is counted).
async fn edge_for(origin: OriginConfig, configure: impl FnOnce(&mut EdgeConfig)) -> Edge {
    let mut cfg = EdgeConfig::for_bucket("unused");
    cfg.origin = origin;
    cfg.origin.timeouts.connect = Dur::secs(2);
    cfg.origin.timeouts.first_byte = Dur::secs(5);
    cfg.origin.max_attempts = 1;
    if let Some(f) = &mut cfg.origin.failover {
        f.secondary.max_attempts = 1;
    }
    cfg.server.shutdown_grace = Dur::secs(2);
    configure(&mut cfg);
    Edge::start(EdgeOptions {
        config: cfg,
        credentials: Credentials {
            access_key: "none".into(),
            secret_key: "none".into(),
        },
        admin_token: None,
        extra_args: Vec::new(),
        wait_ready: true,
    })
    .await
    .expect("edge starts against an HTTP origin")
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn get(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = http_client().get(edge.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.expect("edge answers");
    Got {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.expect("body"),
    }
}

#[tokio::test]
async fn an_http_origin_gets_the_base_path_key_query_host_via_and_secret_and_is_cached() {
    let origin = HttpOrigin::start().await.expect("origin");
    origin.route(
        "/base/a.txt",
        Route::ok(
            "hello from http",
            &[
                ("Cache-Control", "max-age=300"),
                ("ETag", "\"v1\""),
                ("Content-Type", "text/plain"),
                ("X-Internal", "leak"),
            ],
        ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("origin-secret");
    std::fs::write(&secret_file, "s3cr3t-value\n").expect("secret file");
    let mut oc = OriginConfig::http(origin.url("/base/"));
    if let Some(h) = &mut oc.http {
        h.host_header = Some("assets.example.com".into());
    }
    oc.custom_headers = vec![OriginCustomHeader {
        name: "X-Origin-Secret".into(),
        value: None,
        value_file: Some(secret_file.display().to_string()),
    }];
    let edge = edge_for(oc, |c| {
        c.cache.key = CacheKeyConfig {
            query_strings: QueryStrings::Allow(vec!["v".into()]),
            headers: Vec::new(),
        };
    })
    .await;

    let miss = get(&edge, "/a.txt?utm=x&v=1", &[("Cookie", "viewer=1")]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.body, "hello from http");
    assert_eq!(miss.header("x-cache"), "Miss");
    assert_eq!(miss.header("etag"), "\"v1\"");
    assert_eq!(miss.header("content-type"), "text/plain");
    assert_eq!(
        miss.header("set-cookie"),
        "",
        "Set-Cookie is never stored or replayed"
    );
    assert_eq!(
        miss.header("x-internal"),
        "",
        "only the allowlist is replayed"
    );
    let hit = get(&edge, "/a.txt?v=1&utm=y", &[]).await;
    assert_eq!(hit.header("x-cache"), "Hit");
    assert_eq!(hit.body, "hello from http");
    let range = get(&edge, "/a.txt?v=1", &[("Range", "bytes=6-9")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, "from");
    assert_eq!(range.header("x-cache"), "Hit");

    let seen = origin.requests("/base/a.txt");
    assert_eq!(
        seen.len(),
        1,
        "one origin request for miss, hit and range: {seen:?}"
    );
    let r = &seen[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.target, "/base/a.txt?v=1",
        "only the key's query is forwarded"
    );
    assert_eq!(r.header("host"), Some("assets.example.com"));
    assert!(
        r.header("via").is_some_and(|v| v.contains("kubefront")),
        "{r:?}"
    );
    assert_eq!(r.header("x-origin-secret"), Some("s3cr3t-value"));
    assert_eq!(r.header("cookie"), None, "viewer cookies are not forwarded");
    assert!(
        r.header("range").is_some(),
        "a miss asks for its first slice"
    );
    assert!(
        !edge.logs().contains("s3cr3t-value"),
        "the secret never appears in the edge's log"
    );

    let other = get(&edge, "/a.txt?v=2", &[]).await;
    assert_eq!(
        other.header("x-cache"),
        "Miss",
        "another key value is another entry"
    );
    assert_eq!(origin.requests("/base/a.txt")[1].target, "/base/a.txt?v=2");

    // A 404 is a fact about the object: cached as a negative entry.
    assert_eq!(get(&edge, "/missing.txt", &[]).await.status, 404);
    assert_eq!(get(&edge, "/missing.txt", &[]).await.status, 404);
    assert_eq!(
        origin.gets("/base/missing.txt"),
        1,
        "the second 404 is served from the cache"
    );
}

#[tokio::test]
async fn a_failing_http_origin_never_replaces_the_cached_copy() {
    let origin = HttpOrigin::start().await.expect("origin");
    origin.route(
        "/s.txt",
        Route::ok("stale but useful", &[("Cache-Control", "max-age=0")]),
    );
    let edge = edge_for(OriginConfig::http(origin.url("")), |c| {
        c.cache.stale_if_error = Dur::secs(3600);
        c.cache.error_caching_min_ttl = Dur::ZERO;
    })
    .await;
    assert_eq!(get(&edge, "/s.txt", &[]).await.header("x-cache"), "Miss");

    for status in [500, 503, 502] {
        origin.route(
            "/s.txt",
            Route::status(status, &[("Cache-Control", "no-store")]),
        );
        let r = get(&edge, "/s.txt", &[]).await;
        assert_eq!(r.status, 200, "origin {status}: {}", r.body);
        assert_eq!(r.body, "stale but useful");
        assert!(
            r.header("cache-status").contains("stale-if-error"),
            "{}",
            r.header("cache-status")
        );
    }
    origin.stop();
    let r = get(&edge, "/s.txt", &[]).await;
    assert_eq!(r.body, "stale but useful", "origin refusing connections");
    let cold = get(&edge, "/never.txt", &[]).await;
    assert_eq!(cold.status, 502, "{}", cold.body);
}

#[tokio::test]
async fn failover_sends_listed_statuses_and_refused_connections_to_the_secondary() {
    let primary = HttpOrigin::start().await.expect("primary");
    let secondary = HttpOrigin::start().await.expect("secondary");
    primary.route(
        "/p.txt",
        Route::ok("from primary", &[("Cache-Control", "max-age=300")]),
    );
    primary.route("/down.txt", Route::status(503, &[]));
    primary.route("/teapot.txt", Route::status(500, &[]));
    for p in ["/down.txt", "/teapot.txt", "/later.txt"] {
        secondary.route(
            p,
            Route::ok("from secondary", &[("Cache-Control", "max-age=300")]),
        );
    }
    let mut oc = OriginConfig::http(primary.url(""));
    oc.failover = Some(Box::new(Failover {
        secondary: OriginConfig::http(secondary.url("")),
        status_codes: vec![503],
        connect_failures: true,
    }));
    let edge = edge_for(oc, |c| c.cache.error_caching_min_ttl = Dur::ZERO).await;

    let p = get(&edge, "/p.txt", &[]).await;
    assert_eq!(p.body, "from primary");
    assert_eq!(
        secondary.requests("/p.txt").len(),
        0,
        "a healthy primary answers alone"
    );

    let d = get(&edge, "/down.txt", &[]).await;
    assert_eq!((d.status, d.body.as_str()), (200, "from secondary"));
    assert_eq!(primary.gets("/down.txt"), 1);
    assert_eq!(secondary.gets("/down.txt"), 1);
    assert_eq!(get(&edge, "/down.txt", &[]).await.header("x-cache"), "Hit");

    let t = get(&edge, "/teapot.txt", &[]).await;
    assert_eq!(t.status, 502, "500 is not listed: no failover");
    assert_eq!(secondary.requests("/teapot.txt").len(), 0);

    primary.stop();
    let l = get(&edge, "/later.txt", &[]).await;
    assert_eq!((l.status, l.body.as_str()), (200, "from secondary"));
    let hit = get(&edge, "/p.txt", &[]).await;
    assert_eq!(
        hit.header("x-cache"),
        "Hit",
        "cached objects need no origin"
    );

    let m = edge.metrics().await.expect("metrics");
    for reason in ["status", "connect"] {
        let n = m.sum(
            "kubefront_edge_origin_failovers_total",
            &[("reason", reason), ("result", "ok")],
        );
        assert!(n >= 1.0, "{reason}: {}", m.text);
    }
    // The edge stays ready while the secondary answers.
    let ready = http_client()
        .get(edge.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test]
async fn other_statuses_pass_through_and_are_stored_only_where_rfc_9111_allows() {
    let origin = HttpOrigin::start().await.expect("origin");
    let moved = || Route::status(301, &[("Location", "https://example.com/new")]);
    origin.route("/moved", moved());
    origin.route("/found", Route::status(302, &[("Location", "/elsewhere")]));
    origin.route(
        "/found-fresh",
        Route::status(302, &[("Location", "/x"), ("Cache-Control", "max-age=60")]),
    );
    origin.route("/empty", Route::status(204, &[]));
    origin.route("/method", Route::status(405, &[("Allow", "GET, HEAD")]));
    origin.route("/bad", Route::status(400, &[]));
    let edge = edge_for(OriginConfig::http(origin.url("")), |_| {}).await;

    for _ in 0..2 {
        let r = get(&edge, "/moved", &[]).await;
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), "https://example.com/new");
        let r = get(&edge, "/found", &[]).await;
        assert_eq!((r.status, r.header("location")), (302, "/elsewhere"));
        assert_eq!(get(&edge, "/found-fresh", &[]).await.status, 302);
        let r = get(&edge, "/empty", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        let r = get(&edge, "/method", &[]).await;
        assert_eq!((r.status, r.header("allow")), (405, "GET, HEAD"));
        assert_eq!(get(&edge, "/bad", &[]).await.status, 400);
    }
    // Heuristically cacheable (RFC 9110 §15.1): stored under the default TTL.
    assert_eq!(origin.gets("/moved"), 1);
    assert_eq!(origin.gets("/empty"), 1);
    assert_eq!(origin.gets("/method"), 1);
    // Others only with explicit freshness.
    assert_eq!(
        origin.gets("/found"),
        2,
        "a 302 without freshness is not stored"
    );
    assert_eq!(origin.gets("/found-fresh"), 1, "a 302 with max-age is");
    assert_eq!(origin.gets("/bad"), 2);

    // Interim answers are dropped and the final one is what counts; odd codes pass through.
    origin.route(
        "/hinted",
        Route {
            interim: vec![103, 100],
            ..Route::ok("after hints", &[("Cache-Control", "max-age=600")])
        },
    );
    let h = get(&edge, "/hinted", &[]).await;
    assert_eq!((h.status, h.body.as_str()), (200, "after hints"));
    assert_eq!(get(&edge, "/hinted", &[]).await.header("x-cache"), "Hit");
    for code in [299u16, 399, 499] {
        let path = format!("/odd-{code}");
        origin.route(&path, Route::status(code, &[]));
        let r = get(&edge, &path, &[]).await;
        assert_eq!(r.status, code, "{path}");
        assert_eq!(r.body, format!("status {code}\n"), "{path}");
    }
    origin.route("/odd-599", Route::status(599, &[]));
    let r = get(&edge, "/odd-599", &[]).await;
    assert_eq!(r.status, 502, "a 5xx is an origin failure");
    assert!(
        r.header("cache-status").contains("fwd-status=599"),
        "{}",
        r.header("cache-status")
    );
}

#[tokio::test]
async fn personal_answers_are_never_stored_nor_handed_to_collapsed_viewers() {
    let origin = HttpOrigin::start().await.expect("origin");
    let slow = std::time::Duration::from_secs(2);
    origin.route(
        "/me",
        Route::ok("alice's page", &[("Set-Cookie", "session=alice")]).delayed(slow),
    );
    origin.route(
        "/private",
        Route::ok("private page", &[("Cache-Control", "private, max-age=600")]),
    );
    origin.route(
        "/shared",
        Route::ok("everyone's page", &[("Cache-Control", "max-age=600")]).delayed(slow),
    );
    let edge = edge_for(OriginConfig::http(origin.url("")), |_| {}).await;

    // Two viewers at once: a shared answer is fetched once, a personal one once per viewer.
    for (path, want) in [("/shared", 1), ("/me", 2)] {
        let (a, b) = tokio::join!(get(&edge, path, &[]), get(&edge, path, &[]));
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        assert_eq!(
            a.header("set-cookie"),
            "",
            "{path}: Set-Cookie is never replayed"
        );
        assert_eq!(origin.gets(path), want, "{path}");
    }
    assert_eq!(get(&edge, "/me", &[]).await.header("x-cache"), "Miss");
    assert_eq!(origin.gets("/me"), 3, "a Set-Cookie answer is never stored");
    for _ in 0..2 {
        assert_eq!(get(&edge, "/private", &[]).await.body, "private page");
    }
    assert_eq!(
        origin.gets("/private"),
        2,
        "Cache-Control: private is never stored"
    );
}

/// `ttl=N` of the `Cache-Status` a hit carries.
fn ttl_of(g: &Got) -> i64 {
    g.header("cache-status")
        .split(';')
        .find_map(|p| p.trim().strip_prefix("ttl="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {:?}", g.header("cache-status")))
}

#[tokio::test]
async fn freshness_follows_rfc_9111_and_the_targeted_cdn_cache_control_fields() {
    let origin = HttpOrigin::start().await.expect("origin");
    let now = std::time::SystemTime::now();
    let http_date = |t: std::time::SystemTime| httpdate::fmt_http_date(t);
    let date = http_date(now);
    let lm_100s = http_date(now - std::time::Duration::from_secs(100));
    // (path, response headers, origin GETs for two viewer GETs)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, usize);
    let cases: Vec<Case> = vec![
        // Vary: * never matches a later request.
        (
            "/vary-star",
            vec![
                ("Vary", "*".into()),
                ("Cache-Control", "max-age=600".into()),
            ],
            2,
        ),
        // Qualified no-cache / private restrict fields, not the answer.
        (
            "/nc-field",
            vec![(
                "Cache-Control",
                "no-cache=\"Set-Cookie\", max-age=600".into(),
            )],
            1,
        ),
        ("/nc", vec![("Cache-Control", "no-cache".into())], 2),
        // The targeted field wins over Cache-Control (RFC 9213), ours over the generic one.
        (
            "/cdn",
            vec![
                ("Cache-Control", "private, no-store".into()),
                ("CDN-Cache-Control", "max-age=600".into()),
            ],
            1,
        ),
        (
            "/ours",
            vec![
                ("CDN-Cache-Control", "max-age=600".into()),
                ("Kubefront-CDN-Cache-Control", "no-store".into()),
            ],
            2,
        ),
        // An invalid Expires means already expired: stored stale, revalidated next time.
        (
            "/bad-expires",
            vec![("Expires", "not a date".into()), ("ETag", "\"e\"".into())],
            2,
        ),
    ];
    for (path, headers, _) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        origin.route(path, Route::ok(format!("body of {path}"), &h));
    }
    origin.route(
        "/heuristic",
        Route::ok("lm only", &[("Last-Modified", &lm_100s), ("Date", &date)]),
    );
    origin.route(
        "/aged",
        Route::ok(
            "from a parent",
            &[("Cache-Control", "max-age=300"), ("Age", "100")],
        ),
    );
    origin.route(
        "/private-field",
        Route::ok(
            "fields",
            &[
                ("Cache-Control", "private=\"Content-Language\", max-age=600"),
                ("Content-Language", "de"),
            ],
        ),
    );
    let edge = edge_for(OriginConfig::http(origin.url("")), |c| {
        c.cache.default_ttl = Dur::secs(86_400);
    })
    .await;

    for (path, _, want) in &cases {
        for _ in 0..2 {
            let g = get(&edge, path, &[]).await;
            assert_eq!(g.status, 200, "{path}");
            assert_eq!(g.header("kubefront-cdn-cache-control"), "", "{path}");
        }
        assert_eq!(
            origin.gets(path),
            *want,
            "{path}: origin GETs for two viewer GETs"
        );
    }
    let revalidated = origin.requests("/bad-expires");
    assert_eq!(revalidated[1].header("if-none-match"), Some("\"e\""));

    // Heuristic: a tenth of 100 s since Last-Modified, not the 24 h default TTL.
    get(&edge, "/heuristic", &[]).await;
    let hit = get(&edge, "/heuristic", &[]).await;
    assert_eq!(hit.header("x-cache"), "Hit");
    let ttl = ttl_of(&hit);
    assert!((0..=10).contains(&ttl), "heuristic ttl {ttl}");

    // The parent's Age counts against max-age and accumulates.
    get(&edge, "/aged", &[]).await;
    let hit = get(&edge, "/aged", &[]).await;
    let ttl = ttl_of(&hit);
    assert!(
        (150..=200).contains(&ttl),
        "ttl {ttl} after Age: 100 of max-age=300"
    );
    let age: i64 = hit.header("age").parse().expect("Age on a hit");
    assert!(age >= 100, "age {age}");

    let p = get(&edge, "/private-field", &[]).await;
    assert_eq!(
        p.header("content-language"),
        "",
        "the named field is not shared"
    );
    get(&edge, "/private-field", &[]).await;
    assert_eq!(
        origin.gets("/private-field"),
        1,
        "the rest of the answer is"
    );
}

#[tokio::test]
async fn allowed_methods_forward_bodies_are_never_cached_and_invalidate_what_they_change() {
    use kubefront_edge::config::AllowedMethods;
    let origin = HttpOrigin::start().await.expect("origin");
    let fresh = [("Cache-Control", "max-age=600")];
    origin.route("/doc", Route::ok("v1", &fresh));
    origin.route_method("PUT", "/doc", Route::status(204, &[]));
    origin.route_method(
        "OPTIONS",
        "/doc",
        Route::status(204, &[("Allow", "GET, PUT")]),
    );
    origin.route("/item/7", Route::ok("item 7", &fresh));
    origin.route_method(
        "POST",
        "/api",
        Route {
            status: 201,
            ..Route::ok(
                "created",
                &[("Location", "/item/7"), ("Set-Cookie", "sid=abc; HttpOnly")],
            )
        },
    );
    let edge = edge_for(OriginConfig::http(origin.url("")), |c| {
        c.allowed_methods = AllowedMethods::All;
    })
    .await;
    let client = http_client();

    assert_eq!(get(&edge, "/doc", &[]).await.header("x-cache"), "Miss");
    assert_eq!(get(&edge, "/doc", &[]).await.header("x-cache"), "Hit");
    let put = client
        .put(edge.url("/doc?rev=2"))
        .header("content-type", "text/plain")
        .body("new text")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 204);
    let seen = origin.requests("/doc");
    let p = seen
        .iter()
        .find(|r| r.method == "PUT")
        .expect("PUT reached the origin");
    assert_eq!(p.body, b"new text");
    assert_eq!(
        p.target, "/doc?rev=2",
        "the whole query goes with an uncached method"
    );
    assert_eq!(p.header("content-type"), Some("text/plain"));
    assert_eq!(p.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(p.header("via").is_some_and(|v| v.contains("kubefront")));
    assert_eq!(
        get(&edge, "/doc", &[]).await.header("x-cache"),
        "Miss",
        "PUT invalidated /doc"
    );
    assert_eq!(origin.gets("/doc"), 2);

    get(&edge, "/item/7", &[]).await;
    assert_eq!(get(&edge, "/item/7", &[]).await.header("x-cache"), "Hit");
    for n in 1..=2 {
        let post = client
            .post(edge.url("/api"))
            .body("{\"name\":\"x\"}")
            .send()
            .await
            .expect("POST");
        assert_eq!(post.status().as_u16(), 201);
        assert_eq!(post.headers()["location"], "/item/7");
        assert_eq!(
            post.headers()["set-cookie"],
            "sid=abc; HttpOnly",
            "an uncached answer keeps its cookie"
        );
        assert_eq!(post.text().await.expect("body"), "created");
        assert_eq!(
            origin.count("POST", "/api"),
            n,
            "a POST is never answered from cache"
        );
    }
    assert_eq!(
        get(&edge, "/item/7", &[]).await.header("x-cache"),
        "Miss",
        "the POST's Location was invalidated"
    );

    let options = client
        .request(reqwest::Method::OPTIONS, edge.url("/doc"))
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(options.status().as_u16(), 204);
    assert_eq!(options.headers()["allow"], "GET, PUT");
    assert_eq!(origin.count("OPTIONS", "/doc"), 1);

    // A declared body over the bound is refused before the origin is asked (raw bytes: a
    // client library would want to send the body).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(edge.viewer)
        .await
        .expect("connect");
    sock.write_all(
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(origin.count("POST", "/api"), 2);

    // The default (GET, HEAD) refuses other methods.
    let plain = edge_for(OriginConfig::http(origin.url("")), |_| {}).await;
    let refused = client
        .post(plain.url("/api"))
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status().as_u16(), 405);
    assert_eq!(refused.headers()["allow"], "GET, HEAD");
    assert_eq!(origin.count("POST", "/api"), 2);
}

#[tokio::test]
async fn a_shield_serves_many_child_edges_with_one_origin_fetch_and_trusts_only_their_token() {
    use kubefront_edge::config::security::{KeyGroup, SignedPath, TrustedChildren, TrustedKey};
    let origin = HttpOrigin::start().await.expect("origin");
    for p in ["/a.txt", "/b.txt"] {
        origin.route(
            p,
            Route::ok(format!("object {p}"), &[("Cache-Control", "max-age=600")]),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("shield-token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").expect("token");
    let token_file = token_file.display().to_string();
    let public_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../edge-proxy/src/security/testdata/rsa_a.pub.pem"
    );
    // The shield requires signed URLs from viewers; its children are trusted by the token.
    let shield = edge_for(OriginConfig::http(origin.url("")), |c| {
        c.security.trusted_key_groups = vec![KeyGroup {
            name: "main".into(),
            keys: vec![TrustedKey {
                id: "KA".into(),
                public_key_pem: None,
                public_key_file: Some(public_key.into()),
            }],
        }];
        c.security.signed_paths = vec![SignedPath {
            path_pattern: "*".into(),
            key_groups: vec!["main".into()],
            public: false,
        }];
        c.security.trusted_children = Some(TrustedChildren {
            header: "X-Kubefront-Shield".into(),
            value_file: token_file.clone(),
        });
    })
    .await;
    let child_origin = || {
        let mut o = OriginConfig::http(format!("http://{}", shield.viewer));
        o.custom_headers = vec![OriginCustomHeader {
            name: "X-Kubefront-Shield".into(),
            value: None,
            value_file: Some(token_file.clone()),
        }];
        o.failover = Some(Box::new(Failover {
            secondary: OriginConfig::http(origin.url("")),
            status_codes: vec![500, 502, 503, 504],
            connect_failures: true,
        }));
        o
    };
    let child_a = edge_for(child_origin(), |_| {}).await;
    let child_b = edge_for(child_origin(), |_| {}).await;

    assert_eq!(
        get(&shield, "/a.txt", &[]).await.status,
        403,
        "a viewer needs a signature"
    );
    let forged = [("X-Kubefront-Shield", "0123456789abcdef0123456789abcdeX")];
    assert_eq!(
        get(&shield, "/a.txt", &forged).await.status,
        403,
        "a wrong token is a viewer"
    );

    let mut verdicts = Vec::new();
    for child in [&child_a, &child_b, &child_a] {
        let r = get(child, "/a.txt", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "object /a.txt"));
        verdicts.push(r.header("cache-status").to_owned());
    }
    // RFC 9211: the shield's entry first, then the child's own.
    let hops = |v: &str| v.split(", ").map(str::to_owned).collect::<Vec<_>>();
    let first = hops(&verdicts[0]);
    assert_eq!(first.len(), 2, "both hops in {first:?}");
    assert!(first.iter().all(|h| h.contains("fwd=")), "{first:?}");
    let second = hops(&verdicts[1]);
    assert_eq!(second.len(), 2, "both hops in {second:?}");
    assert!(
        second[0].starts_with("kubefront; hit"),
        "the shield hit: {second:?}"
    );
    assert!(
        second[1].contains("fwd="),
        "the other child missed: {second:?}"
    );
    assert_eq!(
        origin.gets("/a.txt"),
        1,
        "two regions, one origin fetch (through the shield)"
    );
    assert_eq!(get(&child_a, "/a.txt", &[]).await.header("x-cache"), "Hit");

    // The shield down: children fail over to the origin itself.
    drop(shield);
    let r = get(&child_b, "/b.txt", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "object /b.txt"));
    assert_eq!(origin.gets("/b.txt"), 1);
    assert!(
        origin.requests("/b.txt")[0]
            .header("x-kubefront-shield")
            .is_none(),
        "the shield's token never goes to the real origin"
    );
}
