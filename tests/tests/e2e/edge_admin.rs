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
