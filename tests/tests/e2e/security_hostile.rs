//! Hostile viewers against the real kubefront-edge binary: path traversal in every encoding,
//! oversized URLs and headers, range amplification, slow clients, connection floods, cache
//! poisoning through unkeyed headers, random junk on the socket. The edge must answer with the
//! right status, keep running, keep its cache intact and never leak internals.

use crate::security_support;

use std::time::{Duration, Instant};

use kubefront_edge::config::security::{
    CorsConfig, HstsConfig, ResponseHeadersPolicyConfig, SecurityConfig, ViewerLimits,
};
use kubefront_edge::config::Dur;
use kubefront_tests::{pseudo_random_bytes, ObjectMeta, Scenario};
use security_support::{raw_exchange, raw_get, RawReply};

const SECRET: &str = "outside the origin prefix\n";
const PAGE: &str = "inside the origin prefix\n";

fn hostile_config(cfg: &mut kubefront_edge::config::EdgeConfig) {
    // Serve only `<bucket prefix>site/`; a secret sits next to it.
    cfg.origin.s3_mut().prefix.push_str("site/");
    cfg.security = SecurityConfig {
        limits: ViewerLimits {
            max_url_bytes: 8192,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Dur::secs(1),
            max_connections: 16,
        },
        ..Default::default()
    };
}

/// Bodies the edge generates must not mention where or how it fetches.
fn assert_no_internals(what: &str, body: &str, s: &Scenario) {
    let lower = body.to_ascii_lowercase();
    for needle in [
        s.bucket.name.as_str(),
        &s.relay.addr().to_string(),
        "amazonaws",
        "aws",
        "s3",
        "panicked",
        "backtrace",
        "error {",
        "dispatch",
        "/root/",
        ".rs:",
    ] {
        assert!(
            !lower.contains(&needle.to_ascii_lowercase()),
            "{what}: body leaks {needle:?}: {body:?}"
        );
    }
    assert!(
        body.len() <= 200,
        "{what}: error body is short ({} bytes)",
        body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_oversize_ranges_methods_and_error_bodies() {
    let Some(s) = Scenario::start("security-hostile", hostile_config).await else {
        return;
    };
    // The secret is outside `site/`; `bucket.key` gives keys relative to the bucket's prefix.
    s.bucket
        .put(
            "/secret.txt",
            SECRET,
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .expect("put");
    s.bucket
        .put(
            "/site/index.txt",
            PAGE,
            ObjectMeta::content_type("text/plain"),
        )
        .await
        .expect("put");
    let object: Vec<u8> = pseudo_random_bytes(1000, 7);
    s.bucket
        .put("/site/blob.bin", object.clone(), ObjectMeta::default())
        .await
        .expect("put");
    let addr = s.edge.viewer;
    assert_eq!(s.get("/index.txt").await.text(), PAGE);

    // Path traversal, every encoding: never the secret, never an origin request outside site/.
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/..\\secret.txt",
        "/..%5csecret.txt",
        "/.%2e/secret.txt",
        "/a/../../secret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/index.txt/../../secret.txt",
        "/%252e%252e/secret.txt",
        "/..;/secret.txt",
        "/../../../../../../secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%2e%2e%5c%2e%2e%5csecret.txt",
    ] {
        let r = raw_get(addr, target, "").await;
        let status = r.status.unwrap_or(0);
        assert!(
            !r.body().contains(SECRET.trim()),
            "{target}: served the secret"
        );
        assert!(
            status == 400 || status == 404 || status == 403,
            "{target}: status {status}"
        );
        if status == 400 {
            assert_no_internals(target, &r.body(), &s);
        }
    }
    let outside = format!("/{}/{}", s.bucket.name, s.bucket.key("/secret.txt"));
    for req in s.relay.requests() {
        assert_ne!(
            req.path(),
            outside,
            "origin was asked for a key outside the prefix"
        );
    }

    // NUL, CR/LF and other control characters.
    for target in [
        "/a%00b",
        "/index.txt%00.png",
        "/a%0d%0aX-Injected:%201",
        "/a%0a",
        "/%7f",
    ] {
        let r = raw_get(addr, target, "").await;
        assert_eq!(r.status, Some(400), "{target}: {}", r.text());
        assert!(r.header("x-injected").is_none());
        assert_no_internals(target, &r.body(), &s);
    }
    let r = raw_exchange(
        addr,
        b"GET /a\0b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, Some(400), "raw NUL: {}", r.text());
    assert!(r.closed, "raw NUL: connection left open");

    // URL length: 8 KiB is the limit.
    let near = format!("/{}", "a".repeat(8000));
    assert_ne!(raw_get(addr, &near, "").await.status, Some(414));
    let long = format!("/{}", "a".repeat(8200));
    let r = raw_get(addr, &long, "").await;
    assert_eq!(
        r.status,
        Some(414),
        "{}",
        r.text().chars().take(200).collect::<String>()
    );
    assert_no_internals("414", &r.body(), &s);
    let long_query = format!("/index.txt?{}", "q=1&".repeat(3000));
    assert_eq!(raw_get(addr, &long_query, "").await.status, Some(414));

    // Header size: many headers, one huge header, a header section far over hyper's buffer.
    let many: String = (0..40)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(500)))
        .collect();
    let r = raw_get(addr, "/index.txt", &many).await;
    assert_eq!(r.status, Some(431), "{}", r.text());
    assert_no_internals("431", &r.body(), &s);
    let huge = format!("X-Huge: {}\r\n", "h".repeat(100_000));
    assert_eq!(raw_get(addr, "/index.txt", &huge).await.status, Some(431));
    let enormous = format!("X-Huge: {}\r\n", "h".repeat(2_000_000));
    let r = raw_get(addr, "/index.txt", &enormous).await;
    assert_eq!(r.status, Some(431), "enormous header: {}", r.text());
    assert!(r.closed, "enormous header: connection left open");
    let count: String = (0..200).map(|i| format!("X-N{i}: 1\r\n")).collect();
    let r = raw_get(addr, "/index.txt", &count).await;
    assert_eq!(r.status, Some(431), "200 headers: {}", r.text());

    // Ranges: never more bytes than the object, never a 5xx.
    let ranges = [
        (
            "bytes=0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0".to_string(),
            false,
        ),
        (
            format!(
                "bytes={}",
                (0..400)
                    .map(|i| format!("{i}-999"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            false,
        ),
        ("bytes=0-999,0-999".to_string(), false),
        ("bytes=500-,0-".to_string(), false),
        ("bytes=-0".to_string(), true),
        ("bytes=5000-".to_string(), true),
        ("bytes=9-1".to_string(), true),
        ("bytes=0-18446744073709551615".to_string(), false),
        ("bytes=18446744073709551616-".to_string(), true),
        ("bytes=--1".to_string(), true),
        ("items=0-5".to_string(), false),
    ];
    for (range, unsatisfiable) in &ranges {
        let r = s.get_with("/blob.bin", &[("range", range)]).await;
        let short: String = range.chars().take(40).collect();
        assert!(
            r.body.len() <= object.len(),
            "{short}: {} bytes",
            r.body.len()
        );
        match r.status {
            200 => assert_eq!(&r.body[..], &object[..], "{short}"),
            206 => {
                let cr = r.header("content-range").unwrap_or("");
                let (span, total) = cr
                    .trim_start_matches("bytes ")
                    .split_once('/')
                    .expect("content-range");
                assert_eq!(total, "1000");
                let (a, b) = span.split_once('-').expect("span");
                let (a, b): (usize, usize) = (a.parse().expect("a"), b.parse().expect("b"));
                assert_eq!(&r.body[..], &object[a..=b], "{short}");
            }
            416 => {
                assert!(*unsatisfiable, "{short}: 416 for a satisfiable range");
                assert_eq!(r.header("content-range"), Some("bytes */1000"));
            }
            other => panic!("{short}: status {other}"),
        }
        if *unsatisfiable {
            assert_ne!(r.status, 206, "{short}");
        }
    }
    assert_eq!(
        s.origin_gets("/site/blob.bin"),
        1,
        "ranges served from one cached copy"
    );

    // Only GET and HEAD; the admin API is not on the viewer port.
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"] {
        let r = s.request(method, "/index.txt", &[]).await;
        assert_eq!(r.status, 405, "{method}");
        assert_no_internals(method, &r.text(), &s);
    }
    let r = raw_exchange(
        addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, Some(405), "CONNECT: {}", r.text());
    let r = s.get("/metrics").await;
    assert!(
        !r.text().contains("kubefront_edge_"),
        "metrics on the viewer port"
    );
    let r = s
        .request("POST", "/invalidate", &[("authorization", "Bearer x")])
        .await;
    assert_eq!(r.status, 405);

    // Error bodies: 404 from the origin, 400, 405 seen above.
    let r = s.get("/does-not-exist.txt").await;
    assert_eq!(r.status, 404);
    assert_no_internals("404", &r.text(), &s);

    assert_alive(s.edge.pid());
}

/// The edge process still exists and is not a zombie.
fn assert_alive(pid: u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("edge still running");
    assert!(!stat.contains(") Z "), "edge exited");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_connection_floods_poisoning_and_junk() {
    let Some(s) = Scenario::start("security-junk", hostile_config).await else {
        return;
    };
    s.bucket
        .put(
            "/site/page.html",
            PAGE,
            ObjectMeta {
                content_type: Some("text/html".into()),
                cache_control: Some("max-age=3600".into()),
                ..Default::default()
            },
        )
        .await
        .expect("put");
    let addr = s.edge.viewer;
    let first = s.get("/page.html").await;
    assert_eq!((first.status, first.x_cache()), (200, "Miss"));

    // Cache poisoning: unkeyed headers, partial and conditional requests must not change what
    // a clean request gets afterwards.
    let hostile: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
        ],
        vec![
            ("x-original-url", "/secret.txt"),
            ("x-rewrite-url", "/secret.txt"),
        ],
        vec![
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "PURGE"),
        ],
        vec![
            ("accept-encoding", "gzip, br"),
            ("accept", "application/json"),
        ],
        vec![
            ("origin", "https://evil.example"),
            ("cookie", "session=evil"),
        ],
        vec![("range", "bytes=0-3")],
        vec![("if-none-match", "*")],
        vec![("if-modified-since", "Sat, 01 Jan 2099 00:00:00 GMT")],
        vec![("cache-control", "no-cache"), ("pragma", "no-cache")],
        vec![("host", "evil.example")],
        vec![("x-amz-server-side-encryption-customer-algorithm", "AES256")],
    ];
    for headers in &hostile {
        let r = s.get_with("/page.html?utm=<script>", headers).await;
        assert!(r.status < 500, "{headers:?}: {}", r.status);
        let clean = s.get("/page.html").await;
        assert_eq!(clean.status, 200, "after {headers:?}");
        assert_eq!(clean.text(), PAGE, "after {headers:?}");
        assert_eq!(
            clean.header("content-type"),
            Some("text/html"),
            "after {headers:?}"
        );
        assert_eq!(
            clean.header("content-length"),
            first.header("content-length")
        );
        assert_eq!(clean.header("etag"), first.header("etag"));
    }

    // Slow clients: an unfinished request head is dropped after headerReadTimeout (1 s).
    let started = Instant::now();
    let r = raw_exchange(
        addr,
        b"GET /page.html HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(8),
    )
    .await;
    assert!(r.closed, "slow header: connection still open after 8 s");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "slow header held {:?}",
        started.elapsed()
    );
    // One answer: the edge closes without writing anything (closed, not merely slow: the read
    // above ended on EOF well before its 8 s deadline).
    assert_eq!(r.status, None, "slow header got a response: {}", r.text());
    assert!(r.raw.is_empty(), "slow header: {}", r.text());
    // A connection that sends nothing at all is dropped too.
    let started = Instant::now();
    let r = raw_exchange(addr, b"", Duration::from_secs(8)).await;
    assert!(
        r.closed && started.elapsed() < Duration::from_secs(6),
        "idle connection kept {:?}",
        started.elapsed()
    );
    // A promised body that never comes does not hold a GET hostage.
    let r = raw_exchange(
        addr,
        b"GET /page.html HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
        Duration::from_secs(8),
    )
    .await;
    // One answer: a GET's body is not read, so the page is served at once (200, whole body) and
    // the connection is closed, since its unread body makes it unusable for another request.
    assert_eq!(r.status, Some(200), "slow body: {}", r.text());
    assert_eq!(r.body(), PAGE, "slow body: {}", r.text());
    assert!(r.closed, "slow body: connection left open: {}", r.text());

    // Connection flood: idle sockets beyond maxConnections (16) wait in the accept queue instead
    // of costing the edge file descriptors, and the edge recovers.
    let before = open_fds(s.edge.pid());
    let mut flood = Vec::new();
    for _ in 0..80 {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            flood.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = open_fds(s.edge.pid());
    assert!(
        during <= before + 16 + 4,
        "fds before {before}, during a flood of 80: {during}"
    );
    drop(flood);
    let recovered = tokio::time::timeout(Duration::from_secs(15), s.get("/page.html")).await;
    assert_eq!(recovered.expect("served after the flood").status, 200);

    // Junk on the socket: random bytes and crafted near-HTTP.
    let mut junk: Vec<Vec<u8>> = (0..300u64)
        .map(|i| pseudo_random_bytes(1 + (i as usize * 37) % 3000, 1000 + i))
        .collect();
    for crafted in [
        &b"GET / HTTP/9.9\r\n\r\n"[..],
        b"\r\n\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\n folded: continuation\r\n\r\n",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET http://evil.example/page.html HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage-frames",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03tls-client-hello",
        b"GET /page.html HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\nGET /page.html HTTP/1.1\r\n\r\n",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
    ] {
        junk.push(crafted.to_vec());
    }
    let mut five_hundreds = Vec::new();
    for chunk in junk.chunks(8) {
        let replies: Vec<RawReply> = futures_join(chunk.iter().map(|j| {
            let j = j.clone();
            async move { raw_exchange(addr, &j, Duration::from_secs(3)).await }
        }))
        .await;
        for (bytes, r) in chunk.iter().zip(replies) {
            if r.status.is_some_and(|c| c >= 500 && c != 505) {
                five_hundreds.push((
                    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned(),
                    r.status,
                ));
            }
            if r.status.is_some_and(|c| c >= 400) {
                assert_no_internals("junk reply", &r.body(), &s);
            }
        }
    }
    assert!(
        five_hundreds.is_empty(),
        "junk produced server errors: {five_hundreds:?}"
    );
    assert!(
        !s.relay
            .requests()
            .iter()
            .any(|r| r.path().ends_with("/secret.txt")),
        "smuggled request reached the origin"
    );

    // Still alive, and the cache still holds the untouched object.
    let after = s.get("/page.html").await;
    assert_eq!((after.status, after.x_cache()), (200, "Hit"));
    assert_eq!(after.text(), PAGE);
    assert_eq!(after.header("etag"), first.header("etag"));
    assert_eq!(
        s.origin_gets("/site/page.html"),
        1,
        "nothing refetched or replaced the object"
    );
    assert_alive(s.edge.pid());
}

/// Runs futures concurrently (tiny join_all without another dependency).
async fn futures_join<F: std::future::Future<Output = RawReply> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<RawReply> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("junk task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_policy_on_every_answer() {
    let Some(s) = Scenario::start("security-headers", |cfg| {
        cfg.security.response_headers = ResponseHeadersPolicyConfig {
            cors: Some(CorsConfig {
                allow_origins: vec![
                    "https://app.example.com".into(),
                    "https://admin.example.com".into(),
                ],
                allow_methods: vec!["GET".into(), "HEAD".into()],
                allow_headers: vec!["Range".into()],
                expose_headers: vec!["ETag".into(), "Content-Range".into()],
                max_age: Some(Dur::secs(600)),
                allow_credentials: false,
            }),
            strict_transport_security: Some(HstsConfig {
                max_age: Dur::secs(31_536_000),
                include_subdomains: true,
                preload: false,
            }),
            content_type_options: true,
            frame_options: Some("DENY".into()),
            referrer_policy: Some("strict-origin-when-cross-origin".into()),
        };
    })
    .await
    else {
        return;
    };
    s.bucket
        .put(
            "/font.woff2",
            "font-bytes",
            ObjectMeta::content_type("font/woff2"),
        )
        .await
        .expect("put");

    let check_security = |what: &str, r: &kubefront_tests::scenario::Reply| {
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{what}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            r.header("referrer-policy"),
            Some("strict-origin-when-cross-origin"),
            "{what}"
        );
    };
    let miss = s
        .get_with("/font.woff2", &[("origin", "https://app.example.com")])
        .await;
    assert_eq!((miss.status, miss.x_cache()), (200, "Miss"));
    check_security("miss", &miss);
    assert_eq!(
        miss.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        miss.header("access-control-expose-headers"),
        Some("ETag, Content-Range")
    );
    assert!(miss
        .headers
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap_or("").contains("Origin")));
    // The cached object carries no viewer's CORS answer: another origin gets its own.
    let hit = s
        .get_with("/font.woff2", &[("origin", "https://admin.example.com")])
        .await;
    assert_eq!((hit.status, hit.x_cache()), (200, "Hit"));
    check_security("hit", &hit);
    assert_eq!(
        hit.header("access-control-allow-origin"),
        Some("https://admin.example.com")
    );
    let foreign = s
        .get_with("/font.woff2", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(foreign.status, 200);
    assert!(foreign.header("access-control-allow-origin").is_none());
    let plain = s.get("/font.woff2").await;
    assert!(plain.header("access-control-allow-origin").is_none());
    check_security("plain", &plain);
    // Errors and refusals carry the security headers too.
    check_security("404", &s.get("/missing").await);
    check_security("405", &s.request("DELETE", "/font.woff2", &[]).await);
    // Preflight.
    let pre = s
        .request(
            "OPTIONS",
            "/font.woff2",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        pre.header("access-control-allow-methods"),
        Some("GET, HEAD")
    );
    assert_eq!(pre.header("access-control-allow-headers"), Some("Range"));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    let bad = s
        .request(
            "OPTIONS",
            "/font.woff2",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(bad.status, 403);
    assert!(bad.header("access-control-allow-origin").is_none());
    assert_eq!(s.origin_gets("/font.woff2"), 1);
}

/// Viewer limits are part of a config reload: the connection cap and the URL limit change
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_limits_follow_a_config_reload() {
    let limits = |max_connections, max_url_bytes| ViewerLimits {
        max_url_bytes,
        max_header_bytes: 16 * 1024,
        header_read_timeout: Dur::secs(30),
        max_connections,
    };
    let Some(s) = Scenario::start("security-limits-reload", |c| {
        c.security.limits = limits(2, 8192);
    })
    .await
    else {
        return;
    };
    s.bucket
        .put("/page.html", PAGE, ObjectMeta::default())
        .await
        .expect("put");
    let addr = s.edge.viewer;
    let get = |path: String| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let long = format!("/page.html?pad={}", "a".repeat(3000));
    let r = raw_exchange(addr, get(long.clone()).as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(r.status, Some(200), "3 KiB URL under an 8 KiB limit");

    // Two idle connections use the whole cap of 2: a third viewer waits in the accept queue.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = raw_exchange(
        addr,
        get("/page.html".into()).as_bytes(),
        Duration::from_millis(1500),
    )
    .await;
    // Waiting, not refused: the third viewer's connection is still open, just not served yet.
    assert_eq!(r.status, None, "served beyond maxConnections 2");
    assert!(
        !r.closed,
        "the viewer beyond maxConnections was closed instead of queued"
    );

    let reloads = || async {
        s.edge.metrics().await.expect("metrics").sum(
            "kubefront_edge_config_reloads_total",
            &[("result", "applied")],
        )
    };
    let before = reloads().await;
    let mut cfg = s.config.clone();
    cfg.security.limits = limits(8, 2048);
    s.edge.rewrite_config(&cfg).expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(15);
    while reloads().await < before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "config not reloaded:\n{}",
            s.edge.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The raised cap lets a viewer in while the idle connections stay open.
    let r = raw_exchange(
        addr,
        get("/page.html".into()).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, Some(200), "served after maxConnections rose to 8");
    // The lowered URL limit applies at once.
    let r = raw_exchange(addr, get(long).as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(r.status, Some(414), "3 KiB URL over a reloaded 2 KiB limit");
    drop(idle);
}
