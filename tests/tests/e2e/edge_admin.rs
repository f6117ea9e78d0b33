//! The admin port of the real edge: health, readiness, metrics, authenticated invalidation.

use kubefront_tests::scenario::StartOptions;
use kubefront_tests::{ObjectMeta, Scenario};

const TOKEN: &str = "test-admin-token-0123456789";

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let Some(s) = Scenario::start("admin-health", |_| {}).await else {
        return;
    };
    s.bucket
        .put("/m.txt", "metrics", ObjectMeta::default())
        .await
        .unwrap();
    s.get("/m.txt").await;
    s.get("/m.txt").await;
    s.get("/absent").await;

    let health = s
        .http
        .get(s.edge.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = s
        .http
        .get(s.edge.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let m = s.edge.metrics().await.unwrap();
    for name in [
        "kubefront_edge_requests_total",
        "kubefront_edge_origin_requests_total",
        "kubefront_edge_cache_entries",
        "kubefront_edge_cache_weighted_bytes",
        "kubefront_edge_response_body_bytes_total",
    ] {
        assert!(m.has(name), "{name} missing from /metrics:\n{}", m.text);
    }
    assert!(
        m.text
            .contains("kubefront_edge_origin_request_duration_seconds"),
        "origin latency histogram missing:\n{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "kubefront_edge_requests_total",
            &[("cache", "hit"), ("code", "200")]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "kubefront_edge_requests_total",
            &[("cache", "miss"), ("code", "200")]
        ),
        1.0,
        "{}",
        m.text
    );
    assert!(
        m.sum("kubefront_edge_cache_entries", &[]) >= 1.0,
        "{}",
        m.text
    );
    assert!(
        m.sum("kubefront_edge_response_body_bytes_total", &[]) >= 14.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn invalidation_needs_the_token_and_drops_exact_and_prefix_paths() {
    let opts = StartOptions {
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let Some(s) = Scenario::start_with("invalidate", |_| {}, opts).await else {
        return;
    };
    let paths = ["/a.txt", "/img/1.png", "/img/2.png", "/imgx.txt"];
    for p in paths {
        s.bucket
            .put(
                p,
                format!("content {p}"),
                ObjectMeta::cache_control("max-age=3600"),
            )
            .await
            .unwrap();
        assert_eq!(s.get(p).await.x_cache(), "Miss", "{p}");
        assert_eq!(s.get(p).await.x_cache(), "Hit", "{p}");
    }

    let r = s.invalidate(&["/a.txt"], None).await;
    assert!(
        r.status == 401 || r.status == 403,
        "no token: {} {}",
        r.status,
        r.text()
    );
    let r = s.invalidate(&["/a.txt"], Some("wrong-token")).await;
    assert!(
        r.status == 401 || r.status == 403,
        "wrong token: {} {}",
        r.status,
        r.text()
    );
    for p in paths {
        assert_eq!(
            s.get(p).await.x_cache(),
            "Hit",
            "{p} survived a rejected invalidation"
        );
    }

    let r = s.invalidate(&["/a.txt"], Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/a.txt").await.x_cache(), "Miss");
    assert_eq!(s.get("/img/1.png").await.x_cache(), "Hit");

    let r = s.invalidate(&["/img/*"], Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/img/1.png").await.x_cache(), "Miss");
    assert_eq!(s.get("/img/2.png").await.x_cache(), "Miss");
    assert_eq!(
        s.get("/imgx.txt").await.x_cache(),
        "Hit",
        "/img/* must not match /imgx.txt"
    );
    assert_eq!(s.origin_gets("/img/1.png"), 2);

    let bad = s
        .http
        .post(s.edge.admin_url("/invalidate"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn invalidation_is_disabled_without_a_configured_token() {
    let Some(s) = Scenario::start("invalidate-off", |_| {}).await else {
        return;
    };
    s.bucket
        .put("/x.txt", "x", ObjectMeta::default())
        .await
        .unwrap();
    s.get("/x.txt").await;
    for token in [None, Some(""), Some("anything")] {
        let r = s.invalidate(&["/x.txt"], token).await;
        assert!(
            matches!(r.status, 401 | 403 | 404),
            "token {token:?}: {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(s.get("/x.txt").await.x_cache(), "Hit");
}

/// Each answer is one access log line with its fields, written by the edge's log writer thread
/// (the request never waits for it), in request order.
#[tokio::test]
async fn every_answer_is_one_access_log_line() {
    let Some(s) = Scenario::start("admin-access-log", |_| {}).await else {
        return;
    };
    s.bucket
        .put("/logged.txt", "logged body", ObjectMeta::default())
        .await
        .unwrap();
    assert_eq!(s.get("/logged.txt").await.status, 200);
    assert_eq!(s.get("/logged.txt").await.status, 200);
    assert_eq!(s.get("/logged-absent.txt").await.status, 404);

    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("kubefront_edge::access") && l.contains("path=\"/logged"))
            .map(str::to_owned)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = lines(&s.edge.logs());
    while got.len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        got = lines(&s.edge.logs());
    }
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].contains("method=GET path=\"/logged.txt\" status=200 cache=\"Miss\" bytes=11 ")
            && got[0].contains(" origin_ms="),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains("method=GET path=\"/logged.txt\" status=200 cache=\"Hit\" bytes=11 ")
            && !got[1].contains("origin_ms"),
        "{}",
        got[1]
    );
    assert!(
        got[2].contains("path=\"/logged-absent.txt\" status=404"),
        "{}",
        got[2]
    );
    assert!(
        got[0].starts_with("20") && got[0].contains('T'),
        "timestamp first: {}",
        got[0]
    );
    let m = s.edge.metrics().await.unwrap();
    assert_eq!(
        m.sum("kubefront_edge_access_log_dropped_total", &[]),
        0.0,
        "{}",
        m.text
    );
}
