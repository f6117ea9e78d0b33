//! The admin listener: health, readiness, metrics and authenticated invalidation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Edge;
use crate::cache::key::PathMatcher;

/// Largest invalidation request body accepted.
const MAX_INVALIDATION_BODY: usize = 1 << 20;
/// Most paths per invalidation request (CloudFront allows 3000 per batch).
const MAX_INVALIDATION_PATHS: usize = 3000;

pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/invalidate", post(invalidate))
        .with_state(edge)
}

/// 503 until the origin answered once. Afterwards 200 even while the origin fails (cached
/// copies are still served under staleIfError, and every replica would fail alike), but the
/// body says the origin is degraded and why.
async fn readyz(State(edge): State<Arc<Edge>>) -> Response {
    if !edge.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "origin not reached yet\n").into_response();
    }
    match edge.health.degraded() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(f) => {
            let since =
                f.at.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
            let status = f.status.map_or_else(|| "-".to_string(), |s| s.to_string());
            (
                StatusCode::OK,
                format!(
                    "ready; origin degraded: code={} status={} consecutive_failures={} last_failure_unix={} path={} error={}\n",
                    f.code,
                    status,
                    edge.health.consecutive_failures(),
                    since,
                    f.path,
                    f.message.replace('\n', " "),
                ),
            )
                .into_response()
        }
    }
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    let store = &edge.current.load().store;
    store.run_pending_tasks().await;
    edge.metrics
        .cache_entries
        .set(i64::try_from(store.entry_count()).unwrap_or(i64::MAX));
    edge.metrics
        .origin_degraded
        .set(i64::from(edge.health.degraded().is_some()));
    edge.metrics
        .cache_weighted_bytes
        .set(i64::try_from(store.weighted_size()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.metrics.encode(),
    )
        .into_response()
}

/// Which config file is in effect (`hash`, the operator's `kubefront.io/config-hash`) and the
/// last one refused (`rejected`), as JSON. The operator reads it to count updated pods.
async fn config(State(edge): State<Arc<Edge>>) -> Response {
    match serde_json::to_string(&edge.loaded.get()) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}).to_string(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidationRequest {
    paths: Vec<String>,
}

/// Constant-time bearer token check.
fn authorized(edge: &Edge, headers: &HeaderMap) -> Option<bool> {
    let token = edge.admin_token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    Some(bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

async fn invalidate(State(edge): State<Arc<Edge>>, headers: HeaderMap, body: Bytes) -> Response {
    match authorized(&edge, &headers) {
        None => {
            return json(
                StatusCode::NOT_FOUND,
                r#"{"error":"invalidation disabled: no admin token configured"}"#.into(),
            )
        }
        Some(false) => {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"bad or missing bearer token"}"#.into(),
            )
        }
        Some(true) => {}
    }
    if body.len() > MAX_INVALIDATION_BODY {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"error":"body too large"}"#.into(),
        );
    }
    let req: InvalidationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("bad JSON: {e}")}).to_string(),
            )
        }
    };
    if req.paths.is_empty() || req.paths.len() > MAX_INVALIDATION_PATHS {
        return json(
            StatusCode::BAD_REQUEST,
            format!(r#"{{"error":"paths must list 1 to {MAX_INVALIDATION_PATHS} paths"}}"#),
        );
    }
    let mut matchers = Vec::with_capacity(req.paths.len());
    for p in &req.paths {
        match PathMatcher::parse(p) {
            Ok(m) => matchers.push(m),
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("bad path {p:?}: {e}")}).to_string(),
                )
            }
        }
    }
    let applied = matchers.len();
    invalidate_now(&edge, matchers).await;
    edge.metrics.invalidations.inc_by(applied as u64);
    tracing::info!(paths = ?req.paths, "invalidated");
    json(StatusCode::OK, format!(r#"{{"invalidated":{applied}}}"#))
}

/// Drops every stored answer `matchers` select (the admin API's, and unsafe methods' RFC 9111
/// §4.4 invalidations).
pub async fn invalidate_now(edge: &Edge, mut matchers: Vec<PathMatcher>) {
    // Fetches already in flight must not store what they got from before the invalidation
    // (they re-check the epoch after inserting; see `fetch::store_checked`), and new requests
    // never join them.
    edge.invalidation_epoch.fetch_add(1, Ordering::SeqCst);
    let generation = edge.current.load_full();
    // `/` is served from the default root object; invalidating one covers the other.
    if let Some(root) = &generation.settings.default_root {
        if matchers
            .iter()
            .any(|m| matches!(m, PathMatcher::Exact(p) if p == "/"))
        {
            matchers.push(PathMatcher::Exact(root.clone()));
        }
    }
    generation.store.invalidate_matching(&matchers).await;
}

fn json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
