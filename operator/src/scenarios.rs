//! Reconciler scenarios against mock API servers (tower-test): each scenario states the
//! requests the operator must make to the local and the remote cluster, and what they answer.
//! Requests within one cluster may interleave between regions, so expectations are matched as
//! a multiset; every expected request must happen and nothing else may.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::config::Kubeconfig;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};

use crate::crd::{Distribution, DistributionStatus};
use crate::fixtures;
use crate::metrics::Metrics;
use crate::placement;
use crate::reconcile::{self, Context};
use crate::regions::{ClientFactory, Regions};
use crate::render::{self, RegionObjects, RenderContext};
use crate::tenancy::TargetNamespacePolicy;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How the mock API server answers one expected request.
#[derive(Clone, Debug)]
pub enum Reply {
    NotFound,
    Json(Value),
    /// Answer with the request body (what a server-side apply returns, near enough).
    Echo,
    /// Transport failure: the API server cannot be reached.
    Unreachable,
}

#[derive(Clone, Debug)]
pub struct Expect {
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

pub fn expect(method: Method, path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method,
        path: path.into(),
        reply,
    }
}

/// A request the operator made.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// Serves `expected` on `handle` until the client is dropped; returns what was seen and
/// which requests were unexpected.
async fn serve(mut handle: Handle, expected: Vec<Expect>) -> (Vec<Seen>, Vec<String>, Vec<Expect>) {
    let mut remaining = expected;
    let mut seen = Vec::new();
    let mut unexpected = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let (parts, body) = req.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let s = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: body.clone(),
        };
        let pos = remaining
            .iter()
            .position(|e| e.method == s.method && e.path == s.path);
        let reply = match pos {
            Some(i) => remaining.remove(i).reply,
            None => {
                unexpected.push(format!("{} {}", s.method, s.path));
                Reply::Json(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError", "message": "unexpected request"}),
                )
            }
        };
        seen.push(s);
        match reply {
            Reply::Unreachable => send.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )),
            Reply::NotFound => send.send_response(json_response(
                StatusCode::NOT_FOUND,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
            )),
            Reply::Json(v) => {
                let code = v
                    .get("code")
                    .and_then(Value::as_u64)
                    .filter(|_| v.get("kind") == Some(&json!("Status")))
                    .and_then(|c| StatusCode::from_u16(c as u16).ok())
                    .unwrap_or(StatusCode::OK);
                send.send_response(json_response(code, &v))
            }
            Reply::Echo => send.send_response(json_response(StatusCode::OK, &body)),
        }
    }
    (seen, unexpected, remaining)
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Hands out the mock remote client for every kubeconfig.
struct MockRemote(Mutex<Option<Client>>);

impl ClientFactory for MockRemote {
    fn build(&self, _kc: Kubeconfig) -> BoxFuture<'static, Result<Client, String>> {
        let c = self.0.lock().ok().and_then(|mut c| c.take());
        Box::pin(async move { c.ok_or_else(|| "remote client already used".to_string()) })
    }
}

/// The outcome of one scenario run.
pub struct Run {
    pub action: Result<Action, reconcile::Error>,
    pub local: Vec<Seen>,
    pub remote: Vec<Seen>,
    /// Metrics of the run (writes by kind).
    pub metrics: Arc<Metrics>,
}

impl Run {
    /// Writes counted by the operator's own metric (must agree with the requests seen).
    pub fn counted_writes(&self) -> String {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("kubefront_operator_writes_total"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Requests that change something (dry-run applies only ask what an apply would do).
    pub fn writes(&self) -> Vec<String> {
        self.local
            .iter()
            .chain(&self.remote)
            .filter(|s| s.method != Method::GET && !s.query.contains("dryRun"))
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// The status the operator wrote, if any.
    pub fn status_written(&self) -> Option<DistributionStatus> {
        self.local
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.ends_with("/status"))
            .and_then(|s| serde_json::from_value(s.body["status"].clone()).ok())
    }
}

/// Runs one reconcile of `dist` with the given expectations for both clusters.
pub async fn run(dist: Distribution, local: Vec<Expect>, remote: Vec<Expect>) -> Run {
    run_with(
        dist,
        local,
        remote,
        TargetNamespacePolicy::own_namespace_only(),
    )
    .await
}

/// [`run`] with an operator that deploys `edge_image`.
pub async fn run_image(
    dist: Distribution,
    local: Vec<Expect>,
    remote: Vec<Expect>,
    edge_image: &str,
) -> Run {
    run_full(
        dist,
        local,
        remote,
        TargetNamespacePolicy::own_namespace_only(),
        edge_image,
    )
    .await
}

/// [`run`] under the admin's target namespace policy.
pub async fn run_with(
    dist: Distribution,
    local: Vec<Expect>,
    remote: Vec<Expect>,
    tenancy: TargetNamespacePolicy,
) -> Run {
    run_full(dist, local, remote, tenancy, "kubefront/edge:test").await
}

async fn run_full(
    dist: Distribution,
    local: Vec<Expect>,
    remote: Vec<Expect>,
    tenancy: TargetNamespacePolicy,
    edge_image: &str,
) -> Run {
    let (lsvc, lhandle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rsvc, rhandle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let local_client = Client::new(lsvc, "default");
    let remote_client = Client::new(rsvc, "default");
    let lserver = tokio::spawn(serve(lhandle, local));
    let rserver = tokio::spawn(serve(rhandle, remote));
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(
        Context::new(
            Regions::new(
                local_client,
                Arc::new(MockRemote(Mutex::new(Some(remote_client)))),
            ),
            edge_image,
            metrics.clone(),
            None,
            None,
        )
        .with_tenancy(tenancy),
    );
    let action = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile::reconcile(Arc::new(dist), ctx),
    )
    .await
    .expect("reconcile finished in time");
    let (local, lunexpected, lmissing) = tokio::time::timeout(Duration::from_secs(5), lserver)
        .await
        .expect("local server done")
        .expect("join");
    let (remote, runexpected, rmissing) = tokio::time::timeout(Duration::from_secs(5), rserver)
        .await
        .expect("remote server done")
        .expect("join");
    assert!(
        lunexpected.is_empty(),
        "unexpected local requests: {lunexpected:?}"
    );
    assert!(
        runexpected.is_empty(),
        "unexpected remote requests: {runexpected:?}"
    );
    assert!(
        lmissing.is_empty(),
        "expected local requests not made: {lmissing:?}"
    );
    assert!(
        rmissing.is_empty(),
        "expected remote requests not made: {rmissing:?}"
    );
    for s in local.iter().chain(&remote) {
        if s.method == Method::PATCH
            && !s.path.ends_with("/status")
            && !s.content_type.contains("json-patch")
        {
            assert!(
                s.content_type.starts_with("application/apply-patch"),
                "{} {}: {}",
                s.method,
                s.path,
                s.content_type
            );
            assert!(
                s.query.contains("fieldManager=kubefront-operator")
                    && s.query.contains("force=true"),
                "{}",
                s.query
            );
        }
    }
    Run {
        action,
        local,
        remote,
        metrics,
    }
}

// ---- API paths and canned objects for the fixture Distribution `web/site` ----

pub const CREDS: &str = "/api/v1/namespaces/web/secrets/assets-s3";
pub const KUBECONFIG: &str = "/api/v1/namespaces/web/secrets/eu-west-kubeconfig";
pub const DIST: &str = "/apis/kubefront.io/v1alpha1/namespaces/web/distributions/site";

/// Paths of the five objects of a region, in the operator's apply order.
pub fn object_paths(ns: &str, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Secret", format!("/api/v1/namespaces/{ns}/secrets/{name}")),
        (
            "ConfigMap",
            format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
        ),
        (
            "Service",
            format!("/api/v1/namespaces/{ns}/services/{name}"),
        ),
        (
            "PodDisruptionBudget",
            format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}"),
        ),
        (
            "Deployment",
            format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        ),
    ]
}

/// Paths of the objects a region has only with some settings (a ServiceAccount for
/// `pod.serviceAccount`, an autoscaler for `autoscaling`), in the order the operator looks
/// for them when they are not wanted (to delete its own).
pub fn optional_paths(ns: &str, name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "ServiceAccount",
            format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}"),
        ),
        (
            "HorizontalPodAutoscaler",
            format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}"),
        ),
    ]
}

/// A region without those settings: the operator finds none of its optional objects.
pub fn absent_at(ns: &str, name: &str) -> Vec<Expect> {
    optional_paths(ns, name)
        .into_iter()
        .map(|(_, p)| expect(Method::GET, p, Reply::NotFound))
        .collect()
}

/// [`absent_at`] for the region whose object paths are `paths`.
fn absent(paths: &[(&'static str, String)]) -> Vec<Expect> {
    let Some((_, first)) = paths.first() else {
        return Vec::new();
    };
    let parts: Vec<&str> = first.split('/').collect();
    match (parts.get(4), parts.last()) {
        (Some(ns), Some(name)) => absent_at(ns, name),
        _ => Vec::new(),
    }
}

pub fn local_paths() -> Vec<(&'static str, String)> {
    object_paths("web", "site-local")
}

pub fn remote_paths() -> Vec<(&'static str, String)> {
    object_paths("kubefront-edge", "site-eu-west")
}

/// The region's `n` running pods, each reporting `hash` as its loaded config: the pod list and
/// one `/config` through the pod proxy per pod.
pub fn pods_on(ns: &str, name: &str, n: i32, hash: &str) -> Vec<Expect> {
    let pods: Vec<Value> = (0..n)
        .map(|i| json!({"metadata": {"name": format!("{name}-{i}"), "namespace": ns}, "status": {"phase": "Running"}}))
        .collect();
    let mut e = vec![expect(
        Method::GET,
        format!("/api/v1/namespaces/{ns}/pods"),
        Reply::Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})),
    )];
    for i in 0..n {
        e.push(expect(
            Method::GET,
            format!("/api/v1/namespaces/{ns}/pods/{name}-{i}:9090/proxy/config"),
            Reply::Json(json!({"hash": hash, "loadedAtUnix": 1})),
        ));
    }
    e
}

/// The config hash region `idx` of `dist` renders.
pub fn config_hash_of(dist: &Distribution, idx: usize, keys: &render::KeySecrets) -> String {
    let cfg = render::edge_config(&dist.spec, keys).expect("valid spec");
    let creds = credentials();
    render::render_region(
        dist,
        &dist.spec.regions[idx],
        &cfg,
        &RenderContext {
            edge_image: "kubefront/edge:test",
            credentials: Some(&creds),
            origin_secrets: &render::NO_SECRETS,
            shield_token: None,
        },
    )
    .expect("renders")
    .config_hash
}

pub fn creds_secret() -> Value {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("assets-s3".into()),
            namespace: Some("web".into()),
            ..Default::default()
        },
        data: Some(credentials()),
        ..Default::default()
    };
    serde_json::to_value(s).unwrap_or_default()
}

pub fn credentials() -> std::collections::BTreeMap<String, ByteString> {
    [
        ("accessKeyId", "AKIDEXAMPLE"),
        ("secretAccessKey", "secret-example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

pub const SIGNING_KEYS: &str = "/api/v1/namespaces/web/secrets/signing-keys";
pub const PARTNER_KEYS: &str = "/api/v1/namespaces/web/secrets/partner-keys";

/// A key group Secret of `web` as the API server returns it.
pub fn key_secret(name: &str, data: &render::SecretData) -> Value {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("web".into()),
            ..Default::default()
        },
        data: Some(data.clone()),
        ..Default::default()
    };
    serde_json::to_value(s).unwrap_or_default()
}

pub fn kubeconfig_secret() -> Value {
    let kc = "apiVersion: v1\nkind: Config\nclusters: [{name: eu, cluster: {server: \"https://eu-west.example:6443\"}}]\nusers: [{name: op, user: {token: abc}}]\ncontexts: [{name: eu, context: {cluster: eu, user: op}}]\ncurrent-context: eu\n";
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("eu-west-kubeconfig".into()),
            namespace: Some("web".into()),
            resource_version: Some("7".into()),
            ..Default::default()
        },
        data: Some([("value".to_string(), ByteString(kc.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    serde_json::to_value(s).unwrap_or_default()
}

/// What the operator renders for region `idx` of `dist`, as stored objects (with a ready
/// Deployment status when `ready`).
pub fn stored_objects(dist: &Distribution, idx: usize, ready: bool) -> Vec<Value> {
    stored_objects_with(dist, idx, ready, &fixtures::key_secrets())
}

/// [`stored_objects`] rendered with the given key group Secrets.
pub fn stored_objects_with(
    dist: &Distribution,
    idx: usize,
    ready: bool,
    keys: &render::KeySecrets,
) -> Vec<Value> {
    let cfg = render::edge_config(&dist.spec, keys).expect("valid spec");
    let creds = credentials();
    let objs: RegionObjects = render::render_region(
        dist,
        &dist.spec.regions[idx],
        &cfg,
        &RenderContext {
            edge_image: "kubefront/edge:test",
            credentials: Some(&creds),
            origin_secrets: &render::NO_SECRETS,
            shield_token: None,
        },
    )
    .expect("renders");
    // As applied: with the applied-configuration hash the operator stamps on.
    let applied =
        |v: Result<(Value, String), serde_json::Error>| v.map(|(v, _)| v).unwrap_or_default();
    let mut out = vec![
        applied(crate::sync::stamp(&objs.secret)),
        applied(crate::sync::stamp(&objs.config_map)),
        applied(crate::sync::stamp(&objs.service)),
        applied(crate::sync::stamp(&objs.pdb)),
        applied(crate::sync::stamp(&objs.deployment)),
    ];
    for o in &mut out {
        o["metadata"]["uid"] = json!(format!("uid-{}", o["kind"].as_str().unwrap_or_default()));
        o["metadata"]["resourceVersion"] = json!("1");
        o["metadata"]["generation"] = json!(1);
    }
    let replicas = dist.spec.regions[idx].replicas;
    if ready {
        out[4]["status"] = json!({"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AVAILABLE, DEGRADED, READY};

    fn dist() -> Distribution {
        fixtures::example()
    }

    /// Expectations for a region whose objects do not exist yet: GET 404, then apply each.
    fn fresh(paths: Vec<(&'static str, String)>) -> Vec<Expect> {
        let mut e = absent(&paths);
        e.extend(paths.into_iter().flat_map(|(_, p)| {
            [
                expect(Method::GET, &p, Reply::NotFound),
                expect(Method::PATCH, &p, Reply::Echo),
            ]
        }));
        e
    }

    /// Expectations for a region whose objects are exactly as rendered: a GET and a dry-run
    /// apply (answering with the unchanged object) per object, no write.
    fn in_sync(paths: Vec<(&'static str, String)>, stored: Vec<Value>) -> Vec<Expect> {
        let mut e = absent(&paths);
        e.extend(paths.into_iter().zip(stored).flat_map(|((_, p), o)| {
            [
                expect(Method::GET, &p, Reply::Json(o.clone())),
                expect(Method::PATCH, &p, Reply::Json(o)),
            ]
        }));
        e
    }

    /// [`in_sync`] for the given objects only (no look for optional ones).
    fn in_sync_objects(paths: Vec<(&'static str, String)>, stored: Vec<Value>) -> Vec<Expect> {
        paths
            .into_iter()
            .zip(stored)
            .flat_map(|((_, p), o)| {
                [
                    expect(Method::GET, &p, Reply::Json(o.clone())),
                    expect(Method::PATCH, &p, Reply::Json(o)),
                ]
            })
            .collect()
    }

    /// A region in sync whose pods all run its config: [`in_sync`] plus the pods answering.
    fn running(d: &Distribution, idx: usize, keys: &render::KeySecrets) -> Vec<Expect> {
        let (paths, ns, name) = if idx == 0 {
            (local_paths(), "web", "site-local")
        } else {
            (remote_paths(), "kubefront-edge", "site-eu-west")
        };
        let mut e = in_sync(paths, stored_objects_with(d, idx, true, keys));
        e.extend(pods_on(
            ns,
            name,
            d.spec.regions[idx].replicas,
            &config_hash_of(d, idx, keys),
        ));
        e
    }

    fn empty_list(kind: &str) -> Reply {
        Reply::Json(json!({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": []}))
    }

    /// Without targets in status (a new or restored Distribution) the reconcile looks for
    /// leftovers by label where the spec puts regions: (local, remote) expectations.
    fn discovery() -> (Vec<Expect>, Vec<Expect>) {
        (
            vec![
                expect(Method::GET, KUBECONFIG, Reply::Json(kubeconfig_secret())),
                expect(
                    Method::GET,
                    "/api/v1/namespaces/web/configmaps",
                    empty_list("ConfigMapList"),
                ),
            ],
            vec![expect(
                Method::GET,
                "/api/v1/namespaces/kubefront-edge/configmaps",
                empty_list("ConfigMapList"),
            )],
        )
    }

    /// `local`/`remote` plus the discovery requests.
    fn with_discovery(
        mut local: Vec<Expect>,
        mut remote: Vec<Expect>,
    ) -> (Vec<Expect>, Vec<Expect>) {
        let (l, r) = discovery();
        local.extend(l);
        remote.extend(r);
        (local, remote)
    }

    /// Expectations for a region whose `changed` kinds differ from what is stored: those are
    /// applied, the others only dry-run.
    fn changed(
        paths: Vec<(&'static str, String)>,
        stored: Vec<Value>,
        changed: &[&str],
    ) -> Vec<Expect> {
        let mut e = absent(&paths);
        for ((kind, p), o) in paths.into_iter().zip(stored) {
            e.push(expect(Method::GET, &p, Reply::Json(o.clone())));
            if changed.contains(&kind) {
                e.push(expect(Method::PATCH, &p, Reply::Echo));
            } else {
                e.push(expect(Method::PATCH, &p, Reply::Json(o)));
            }
        }
        e
    }

    /// The reply to a status patch: the stored Distribution (content is not inspected).
    fn status_ok() -> Reply {
        Reply::Json(serde_json::to_value(fixtures::example()).unwrap_or_default())
    }

    fn reads() -> Vec<Expect> {
        vec![
            expect(Method::GET, CREDS, Reply::Json(creds_secret())),
            expect(Method::GET, KUBECONFIG, Reply::Json(kubeconfig_secret())),
        ]
    }

    fn cond(s: &DistributionStatus, region: Option<&str>, t: &str) -> (String, String, String) {
        let conds = match region {
            None => &s.conditions,
            Some(r) => {
                &s.regions
                    .iter()
                    .find(|x| x.name == r)
                    .expect("region status")
                    .conditions
            }
        };
        let c = conds.iter().find(|c| c.type_ == t).expect("condition");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[tokio::test]
    async fn first_apply_creates_every_object_in_both_regions() {
        let mut local = reads();
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, fresh(remote_paths()));
        let run = run(dist(), local, remote).await;
        run.action.as_ref().expect("reconcile ok");
        assert_eq!(run.writes().len(), 11, "{:?}", run.writes());
        let st = run.status_written().expect("status written");
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(cond(&st, Some("local"), "Applied").0, "True");
        assert_eq!(cond(&st, Some("eu-west"), "Applied").0, "True");
        assert_eq!(
            cond(&st, None, READY),
            (
                "False".into(),
                "RegionsNotReady".into(),
                cond(&st, None, READY).2
            )
        );
        assert_eq!(st.ready_regions.as_deref(), Some("0/2"));
        // Local objects are owned by the Distribution; remote ones cannot be.
        let dep = run
            .local
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.contains("deployments"))
            .expect("local deployment");
        assert_eq!(
            dep.body["metadata"]["ownerReferences"][0]["uid"],
            "uid-site"
        );
        let rdep = run
            .remote
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.contains("deployments"))
            .expect("remote deployment");
        assert!(rdep.body["metadata"].get("ownerReferences").is_none());
        assert_eq!(
            rdep.body["metadata"]["labels"]["kubefront.io/region"],
            "eu-west"
        );
        assert_eq!(rdep.body["spec"]["replicas"], 3);
    }

    const SHIELD_SECRET: &str = "/api/v1/namespaces/web/secrets/site.origin-shield";

    /// The example with `local` as origin shield, reachable from eu-west at its endpoint.
    fn shielded() -> Distribution {
        let mut d = dist();
        d.spec.origin_shield = Some(crate::crd::OriginShieldSpec {
            region: "local".into(),
        });
        d.spec.regions[0].endpoint = Some("https://local.cdn.example.com".into());
        d
    }

    fn applied_body<'a>(seen: &'a [Seen], path: &str) -> &'a Value {
        &seen
            .iter()
            .find(|s| s.method == Method::PATCH && s.path == path && !s.query.contains("dryRun"))
            .unwrap_or_else(|| panic!("no apply of {path}"))
            .body
    }

    #[tokio::test]
    async fn an_origin_shield_generates_its_token_once_and_mirrors_it_into_every_region() {
        let mut local = reads();
        local.push(expect(Method::GET, SHIELD_SECRET, Reply::NotFound));
        local.push(expect(Method::PATCH, SHIELD_SECRET, Reply::Echo));
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, fresh(remote_paths()));
        let run = run(shielded(), local, remote).await;
        run.action.as_ref().expect("reconcile ok");
        let shield = applied_body(&run.local, SHIELD_SECRET);
        assert_eq!(shield["metadata"]["ownerReferences"][0]["uid"], "uid-site");
        assert!(
            shield["metadata"]["labels"]
                .get("app.kubernetes.io/managed-by")
                .is_none(),
            "not a region object: pruning never sees it"
        );
        let token = shield["data"]["shield-token"].clone();
        let decoded: ByteString = serde_json::from_value(token.clone()).expect("base64");
        assert_eq!(decoded.0.len(), 64, "32 random bytes, hex");
        assert!(decoded.0.iter().all(u8::is_ascii_hexdigit));
        let (rsecret, rcm) = (&remote_paths()[0].1, &remote_paths()[1].1);
        assert_eq!(
            applied_body(&run.remote, rsecret)["data"]["shield-token"],
            token
        );
        assert_eq!(
            applied_body(&run.local, &local_paths()[0].1)["data"]["shield-token"],
            token
        );
        let cm = applied_body(&run.remote, rcm)["data"]["edge.yaml"]
            .as_str()
            .expect("config")
            .to_string();
        assert!(cm.contains("url: https://local.cdn.example.com"), "{cm}");
        assert!(
            cm.contains("valueFile: /etc/kubefront-origin/shield-token"),
            "{cm}"
        );
        let text = String::from_utf8(decoded.0).expect("hex");
        assert!(!cm.contains(&text), "the token never reaches a ConfigMap");
    }

    #[tokio::test]
    async fn an_existing_shield_token_is_kept() {
        let stored = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "site.origin-shield", "namespace": "web"},
            "data": {"shield-token": "a2VlcC1tZQ=="}});
        let mut local = reads();
        local.push(expect(Method::GET, SHIELD_SECRET, Reply::Json(stored)));
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, fresh(remote_paths()));
        let run = run(shielded(), local, remote).await;
        run.action.as_ref().expect("reconcile ok");
        assert_eq!(
            applied_body(&run.remote, &remote_paths()[0].1)["data"]["shield-token"],
            "a2VlcC1tZQ=="
        );
    }

    #[tokio::test]
    async fn a_remote_region_behind_a_shield_without_endpoint_changes_nothing_naming_the_field() {
        let mut d = shielded();
        d.spec.regions[0].endpoint = None;
        // An invalid spec reaches no region: not even the kubeconfig is read.
        let mut local = vec![expect(Method::GET, CREDS, Reply::Json(creds_secret()))];
        local.push(expect(
            Method::GET,
            SHIELD_SECRET,
            Reply::Json(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "site.origin-shield", "namespace": "web"},
                "data": {"shield-token": "a2VlcC1tZQ=="}})),
        ));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let run = run(d, local, vec![]).await;
        run.action.as_ref().expect("reconcile ok");
        let st = run.status_written().expect("status");
        let (status, reason, message) = cond(&st, None, DEGRADED);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
        assert!(message.starts_with("spec.regions[0].endpoint"), "{message}");
    }

    #[tokio::test]
    async fn no_op_reconcile_writes_nothing() {
        let d = dist();
        // First pass against an in-sync world learns the status the operator would write.
        let world = |d: &Distribution| {
            let mut local = reads();
            local.extend(in_sync(local_paths(), stored_objects(d, 0, true)));
            (local, in_sync(remote_paths(), stored_objects(d, 1, true)))
        };
        // The first pass also asks the pods which config they run; once status records every
        // pod on the current config, nothing could have changed and they are not asked again.
        let keys = fixtures::key_secrets();
        let mut local = reads();
        local.extend(running(&d, 0, &keys));
        let remote = running(&d, 1, &keys);
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, remote);
        let first = run(d.clone(), local, remote).await;
        let st = first.status_written().expect("first pass writes status");
        assert_eq!(cond(&st, None, READY).0, "True");
        assert_eq!(st.ready_regions.as_deref(), Some("2/2"));

        let mut d2 = d.clone();
        d2.status = Some(st);
        let (local, remote) = world(&d2);
        let second = run(d2, local, remote).await;
        second.action.as_ref().expect("reconcile ok");
        assert!(
            second.writes().is_empty(),
            "no-op reconcile wrote: {:?}",
            second.writes()
        );
        assert_eq!(second.counted_writes(), "", "writes metric must stay zero");
        assert!(
            !first.counted_writes().is_empty(),
            "first pass wrote status"
        );
    }

    #[tokio::test]
    async fn a_config_change_rewrites_only_the_configmap_and_waits_for_pods_to_reload() {
        let old = dist();
        let mut new = old.clone();
        new.spec.cache.default_ttl = "12h".into();
        new.metadata.generation = Some(2);
        let old_hash = config_hash_of(&old, 0, &fixtures::key_secrets());
        let new_hash = config_hash_of(&new, 0, &fixtures::key_secrets());
        assert_ne!(old_hash, new_hash);
        let mut local = reads();
        local.extend(changed(
            local_paths(),
            stored_objects(&old, 0, true),
            &["ConfigMap"],
        ));
        // The pods still run the old file (the kubelet has not refreshed the mount yet).
        local.extend(pods_on("web", "site-local", 2, &old_hash));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let mut remote = changed(
            remote_paths(),
            stored_objects(&old, 1, true),
            &["ConfigMap"],
        );
        remote.extend(pods_on("kubefront-edge", "site-eu-west", 3, &old_hash));
        let (local, remote) = with_discovery(local, remote);
        let run = run(new, local, remote).await;
        assert_eq!(
            run.writes().len(),
            3,
            "the ConfigMap per region and status; no Deployment: {:?}",
            run.writes()
        );
        let cm = run
            .local
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.contains("configmaps"))
            .expect("cm");
        assert!(cm.body["data"]["edge.yaml"]
            .as_str()
            .unwrap_or_default()
            .contains("defaultTTL: 12h"));
        assert_eq!(
            cm.body["metadata"]["annotations"]["kubefront.io/config-hash"],
            new_hash.as_str()
        );
        let st = run.status_written().expect("status");
        assert_eq!(st.observed_generation, Some(2));
        let r = st.regions.iter().find(|r| r.name == "eu-west").expect("r");
        assert_eq!((r.pods, r.updated_pods), (Some(3), Some(0)));
        assert_eq!(r.config_hash.as_deref(), Some(new_hash.as_str()));
        assert_eq!(
            cond(&st, Some("local"), AVAILABLE).1,
            crate::status::REASON_WAITING_FOR_CONFIG
        );
        assert_eq!(cond(&st, None, READY).0, "False");
        // Looked at again soon, not at the next resync.
        let action = run.action.expect("ok");
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn pods_on_the_new_config_make_the_region_available_again() {
        let d = dist();
        let hash = |i| config_hash_of(&d, i, &fixtures::key_secrets());
        let mut local = reads();
        local.extend(in_sync(local_paths(), stored_objects(&d, 0, true)));
        local.extend(pods_on("web", "site-local", 2, &hash(0)));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let mut remote = in_sync(remote_paths(), stored_objects(&d, 1, true));
        remote.extend(pods_on("kubefront-edge", "site-eu-west", 3, &hash(1)));
        let (local, remote) = with_discovery(local, remote);
        let run = run(d, local, remote).await;
        let st = run.status_written().expect("status");
        assert_eq!(cond(&st, None, READY).0, "True");
        let r = st.regions.iter().find(|r| r.name == "local").expect("r");
        assert_eq!((r.pods, r.updated_pods), (Some(2), Some(2)));
    }

    #[tokio::test]
    async fn an_image_change_rolls_the_deployment() {
        let d = dist();
        let mut local = reads();
        local.extend(changed(
            local_paths(),
            stored_objects(&d, 0, true),
            &["Deployment"],
        ));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        // The apply's answer (an echo here) carries no pod counts yet: nobody is asked.
        let remote = changed(remote_paths(), stored_objects(&d, 1, true), &["Deployment"]);
        let (local, remote) = with_discovery(local, remote);
        // The stored objects were rendered with another edge image than this operator runs.
        let run = run_image(d, local, remote, "kubefront/edge:next").await;
        let dep = run
            .remote
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.contains("deployments"))
            .expect("dep");
        assert_eq!(
            dep.body["spec"]["template"]["spec"]["containers"][0]["image"],
            "kubefront/edge:next"
        );
        assert!(!run.writes().iter().any(|w| w.contains("configmaps")));
    }

    #[tokio::test]
    async fn dropped_region_is_pruned() {
        let full = dist();
        // Status from a previous reconcile that knew both regions.
        let keys = fixtures::key_secrets();
        let mut local = reads();
        local.extend(in_sync(local_paths(), stored_objects(&full, 0, true)));
        let mut learn_local = reads();
        learn_local.extend(running(&full, 0, &keys));
        learn_local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (learn_local, learn_remote) = with_discovery(learn_local, running(&full, 1, &keys));
        let learned = run(full.clone(), learn_local, learn_remote)
            .await
            .status_written()
            .expect("status");

        let mut d = full.clone();
        d.spec.regions.truncate(1);
        d.metadata.generation = Some(2);
        d.status = Some(learned);
        let mut local = reads();
        local.extend(in_sync(local_paths(), stored_objects(&full, 0, true)));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let mut remote = Vec::new();
        remote.extend(absent(&remote_paths()));
        for ((_, p), o) in remote_paths()
            .into_iter()
            .zip(stored_objects(&full, 1, true))
        {
            remote.push(expect(Method::GET, &p, Reply::Json(o)));
            remote.push(expect(
                Method::DELETE,
                &p,
                Reply::Json(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                ),
            ));
        }
        let run = run(d, local, remote).await;
        run.action.as_ref().expect("ok");
        let st = run.status_written().expect("status");
        assert_eq!(st.regions.len(), 1);
        assert_eq!(st.ready_regions.as_deref(), Some("1/1"));
        assert_eq!(
            run.remote
                .iter()
                .filter(|s| s.method == Method::DELETE)
                .count(),
            5
        );
    }

    #[tokio::test]
    async fn unreachable_remote_degrades_only_that_region() {
        let d = dist();
        let mut local = reads();
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let remote = vec![expect(
            Method::GET,
            &remote_paths()[0].1,
            Reply::Unreachable,
        )];
        let (local, mut remote) = with_discovery(local, remote);
        remote[1].reply = Reply::Unreachable;
        let run = run(d, local, remote).await;
        run.action
            .as_ref()
            .expect("region failure is status, not a reconcile error");
        assert_eq!(
            run.local
                .iter()
                .filter(|s| s.method == Method::PATCH)
                .count(),
            6,
            "local region fully applied"
        );
        let st = run.status_written().expect("status");
        assert_eq!(cond(&st, Some("eu-west"), DEGRADED).0, "True");
        assert_eq!(cond(&st, Some("eu-west"), DEGRADED).1, "Unreachable");
        assert_eq!(cond(&st, Some("local"), DEGRADED).0, "False");
        assert_eq!(cond(&st, Some("local"), "Applied").0, "True");
        let (status, reason, message) = cond(&st, None, DEGRADED);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Unreachable"));
        assert!(message.contains("region eu-west"), "{message}");
        assert_eq!(cond(&st, Some("eu-west"), AVAILABLE).0, "Unknown");
    }

    #[tokio::test]
    async fn deletion_cleans_up_every_region_then_releases_the_finalizer() {
        let mut d = dist();
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
        let mut local = vec![expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        )];
        let mut remote = Vec::new();
        local.extend(absent(&local_paths()));
        for ((_, p), o) in local_paths().into_iter().zip(stored_objects(&d, 0, true)) {
            local.push(expect(Method::GET, &p, Reply::Json(o)));
            local.push(expect(Method::DELETE, &p, Reply::Json(ok.clone())));
        }
        remote.extend(absent(&remote_paths()));
        for ((_, p), o) in remote_paths().into_iter().zip(stored_objects(&d, 1, true)) {
            remote.push(expect(Method::GET, &p, Reply::Json(o)));
            remote.push(expect(Method::DELETE, &p, Reply::Json(ok.clone())));
        }
        let mut released = serde_json::to_value(&d).unwrap_or_default();
        released["metadata"]["finalizers"] = json!([]);
        local.push(expect(Method::PATCH, DIST, Reply::Json(released)));
        let (local, remote) = with_discovery(local, remote);
        let run = run(d, local, remote).await;
        run.action.as_ref().expect("ok");
        let fin = run
            .local
            .iter()
            .find(|s| s.method == Method::PATCH && s.path == DIST)
            .expect("finalizer patch");
        assert!(
            fin.content_type.contains("json-patch"),
            "{}",
            fin.content_type
        );
        assert!(fin.body.to_string().contains("remove"), "{}", fin.body);
    }

    #[tokio::test]
    async fn unreachable_remote_blocks_deletion_until_it_can_be_cleaned() {
        let mut d = dist();
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
        let mut local = vec![expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        )];
        local.extend(absent(&local_paths()));
        for ((_, p), o) in local_paths().into_iter().zip(stored_objects(&d, 0, true)) {
            local.push(expect(Method::GET, &p, Reply::Json(o)));
            local.push(expect(Method::DELETE, &p, Reply::Json(ok.clone())));
        }
        let remote = vec![expect(
            Method::GET,
            // Cleanup starts with the autoscaler.
            &optional_paths("kubefront-edge", "site-eu-west")[1].1,
            Reply::Unreachable,
        )];
        let (local, mut remote) = with_discovery(local, remote);
        remote[1].reply = Reply::Unreachable;
        let run = run(d, local, remote).await;
        assert!(
            matches!(run.action, Err(reconcile::Error::Cleanup { ref region, ref message }) if region == "eu-west" && message.contains(reconcile::ANNOTATION_FORGET_UNREACHABLE)),
            "{:?}",
            run.action.as_ref().err()
        );
        assert!(
            run.writes().iter().all(|w| w.contains("/namespaces/web/")),
            "{:?}",
            run.writes()
        );
    }

    #[tokio::test]
    async fn the_forget_annotation_lets_deletion_go_past_an_unreachable_region() {
        let mut d = dist();
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        d.metadata.annotations = Some(
            [(
                reconcile::ANNOTATION_FORGET_UNREACHABLE.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
        let mut local = vec![expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        )];
        local.extend(absent(&local_paths()));
        for ((_, p), o) in local_paths().into_iter().zip(stored_objects(&d, 0, true)) {
            local.push(expect(Method::GET, &p, Reply::Json(o)));
            local.push(expect(Method::DELETE, &p, Reply::Json(ok.clone())));
        }
        let mut released = serde_json::to_value(&d).unwrap_or_default();
        released["metadata"]["finalizers"] = json!([]);
        local.push(expect(Method::PATCH, DIST, Reply::Json(released)));
        let remote = vec![expect(
            Method::GET,
            // Cleanup starts with the autoscaler.
            &optional_paths("kubefront-edge", "site-eu-west")[1].1,
            Reply::Unreachable,
        )];
        let (local, mut remote) = with_discovery(local, remote);
        remote[1].reply = Reply::Unreachable;
        let run = run(d, local, remote).await;
        run.action.as_ref().expect("deletion goes on");
        assert!(
            run.local
                .iter()
                .any(|s| s.method == Method::PATCH && s.path == DIST),
            "finalizer released"
        );
    }

    /// The local region's objects as someone else's: no UID marker, none of our labels.
    fn strangers(paths: &[(&'static str, String)], kinds: &[&str]) -> Vec<Expect> {
        let d = dist();
        paths
            .iter()
            .zip(stored_objects(&d, 0, true))
            .map(|((kind, p), mut o)| {
                if kinds.contains(kind) {
                    o["metadata"]["annotations"] = json!({"owner": "someone"});
                    o["metadata"]["labels"] = json!({"app": "site-local"});
                    o["metadata"]["ownerReferences"] = json!([]);
                    expect(Method::GET, p, Reply::Json(o))
                } else {
                    expect(Method::GET, p, Reply::NotFound)
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn an_object_in_the_way_is_a_conflict_and_nothing_is_written_in_that_region() {
        let mut local = reads();
        local.extend(strangers(&local_paths(), &["ConfigMap", "Service"]));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, fresh(remote_paths()));
        let run = run(dist(), local, remote).await;
        run.action
            .as_ref()
            .expect("a conflict is status, not an error");
        assert!(
            run.local
                .iter()
                .all(|s| s.method == Method::GET || s.path.ends_with("/status")),
            "nothing written locally: {:?}",
            run.writes()
        );
        let st = run.status_written().expect("status");
        let (status, reason, message) = cond(&st, Some("local"), DEGRADED);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Conflict"));
        assert!(
            message.contains("ConfigMap web/site-local exists")
                && message.contains("Service web/site-local exists"),
            "{message}"
        );
        assert_eq!(
            cond(&st, Some("eu-west"), "Applied").0,
            "True",
            "other regions go on"
        );
    }

    #[tokio::test]
    async fn another_namespace_is_refused_by_default_and_allowed_by_the_admin() {
        let mut d = dist();
        d.spec.regions[0].namespace = Some("kube-system".into());
        // Refused: not even read (leftovers are looked for only where the region may go).
        let mut local = reads();
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        local.push(expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        ));
        let mut remote = fresh(remote_paths());
        remote.push(discovery().1.remove(0));
        let refused = run(d.clone(), local, remote).await;
        assert!(
            refused
                .local
                .iter()
                .all(|s| !s.path.contains("/namespaces/kube-system/")),
            "{:?}",
            refused.writes()
        );
        let st = refused.status_written().expect("status");
        let (status, reason, message) = cond(&st, Some("local"), DEGRADED);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "NamespaceNotAllowed")
        );
        assert!(
            message.starts_with("spec.regions[0].namespace: "),
            "{message}"
        );
        // Allowed by the admin: applied like any region.
        let mut local = reads();
        local.extend(fresh(object_paths("kube-system", "site-local")));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        local.push(expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        ));
        local.push(expect(
            Method::GET,
            "/api/v1/namespaces/kube-system/configmaps",
            empty_list("ConfigMapList"),
        ));
        let remote = {
            let mut r = fresh(remote_paths());
            r.push(discovery().1.remove(0));
            r
        };
        let policy =
            crate::tenancy::TargetNamespacePolicy::parse(&["web=kube-system"]).expect("policy");
        let allowed = run_with(d, local, remote, policy).await;
        let st = allowed.status_written().expect("status");
        assert_eq!(cond(&st, Some("local"), "Applied").0, "True");
    }

    /// The reads of the signed fixture: credentials, both key group Secrets, the kubeconfig.
    fn signed_reads(keys: &render::KeySecrets) -> Vec<Expect> {
        let mut r = reads();
        for (path, name) in [
            (SIGNING_KEYS, "signing-keys"),
            (PARTNER_KEYS, "partner-keys"),
        ] {
            let reply = match keys.get(name) {
                Some(data) => Reply::Json(key_secret(name, data)),
                None => Reply::NotFound,
            };
            r.push(expect(Method::GET, path, reply));
        }
        r
    }

    fn edge_yaml(seen: &[Seen]) -> kubefront_edge::config::EdgeConfig {
        let cm = seen
            .iter()
            .find(|s| s.method == Method::PATCH && s.path.contains("/configmaps/"))
            .expect("configmap applied");
        kubefront_edge::config::EdgeConfig::from_yaml(
            cm.body["data"]["edge.yaml"].as_str().unwrap_or_default(),
        )
        .expect("edge config")
    }

    #[tokio::test]
    async fn key_groups_from_secrets_reach_every_region_inline() {
        let keys = fixtures::key_secrets();
        let mut local = signed_reads(&keys);
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, fresh(remote_paths()));
        let run = run(fixtures::signed(), local, remote).await;
        run.action.as_ref().expect("reconcile ok");
        for seen in [&run.local, &run.remote] {
            let edge = edge_yaml(seen);
            let ids: Vec<&str> = edge.security.trusted_key_groups[0]
                .keys
                .iter()
                .map(|k| k.id.as_str())
                .collect();
            assert_eq!(ids, ["K1EC", "K2ROTATED"]);
            assert!(edge.security.trusted_key_groups[0].keys[0]
                .public_key_pem
                .as_deref()
                .is_some_and(|p| p.starts_with("-----BEGIN PUBLIC KEY-----")));
            assert_eq!(edge.security.signed_paths[0].path_pattern, "/private/*");
            assert_eq!(
                edge.security.response_headers.frame_options.as_deref(),
                Some("DENY")
            );
        }
        // Public keys travel inside the config: the only Secret mirrored is the credentials.
        let secrets: Vec<&str> = run
            .remote
            .iter()
            .filter(|s| s.method == Method::PATCH && s.path.contains("/secrets/"))
            .map(|s| s.path.as_str())
            .collect();
        assert_eq!(secrets, [remote_paths()[0].1.as_str()]);
        let st = run.status_written().expect("status");
        assert_eq!(cond(&st, Some("eu-west"), "Applied").0, "True");
    }

    #[tokio::test]
    async fn key_rotation_rewrites_the_config_in_both_regions_without_rolling_pods() {
        let d = fixtures::signed();
        let old_keys = fixtures::key_secrets();
        let mut new_keys = old_keys.clone();
        new_keys.get_mut("signing-keys").expect("secret").insert(
            "K3NEXT".into(),
            ByteString(fixtures::EC_P256_PUBLIC_PEM.as_bytes().to_vec()),
        );
        let rewritten = ["ConfigMap"];
        let stored = |idx| stored_objects_with(&d, idx, true, &old_keys);
        let old_hash = config_hash_of(&d, 0, &old_keys);
        let mut local = signed_reads(&new_keys);
        local.extend(changed(local_paths(), stored(0), &rewritten));
        local.extend(pods_on("web", "site-local", 2, &old_hash));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let mut remote = changed(remote_paths(), stored(1), &rewritten);
        remote.extend(pods_on("kubefront-edge", "site-eu-west", 3, &old_hash));
        let (local, remote) = with_discovery(local, remote);
        let run = run(d.clone(), local, remote).await;
        run.action.as_ref().expect("ok");
        for seen in [&run.local, &run.remote] {
            assert_eq!(edge_yaml(seen).security.trusted_key_groups[0].keys.len(), 3);
            assert!(
                !seen.iter().any(|s| s.method == Method::PATCH
                    && s.path.contains("/deployments/")
                    && !s.query.contains("dryRun")),
                "no pod restart for a key rotation"
            );
        }
    }

    #[tokio::test]
    async fn missing_key_secret_changes_nothing_and_every_region_names_the_field() {
        // A previous reconcile left both regions running.
        let mut d = fixtures::signed();
        let keys = fixtures::key_secrets();
        let mut learn = signed_reads(&keys);
        learn.extend(running(&d, 0, &keys));
        learn.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (learn, learn_remote) = with_discovery(learn, running(&d, 1, &keys));
        let running = run(d.clone(), learn, learn_remote)
            .await
            .status_written()
            .expect("status");
        d.status = Some(running.clone());

        let mut gone = keys.clone();
        gone.remove("partner-keys");
        let mut local = signed_reads(&gone);
        local.retain(|e| e.path != KUBECONFIG); // no region is touched
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let run = run(d, local, vec![]).await;
        run.action
            .as_ref()
            .expect("a spec problem is status, not an error");
        assert!(
            run.writes().iter().all(|w| w.ends_with("/status")),
            "{:?}",
            run.writes()
        );
        let st = run.status_written().expect("status");
        let (status, reason, message) = cond(&st, None, DEGRADED);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "SecretNotFound")
        );
        assert!(
            message.starts_with(
                "spec.trustedKeyGroups[1].secretRef: Secret \"partner-keys\" was not found"
            ),
            "{message}"
        );
        for region in ["local", "eu-west"] {
            let (status, reason, message) = cond(&st, Some(region), "Applied");
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "SecretNotFound")
            );
            assert!(
                message.contains("spec.trustedKeyGroups[1].secretRef"),
                "{message}"
            );
            assert_eq!(
                cond(&st, Some(region), AVAILABLE).0,
                "True",
                "still serving"
            );
            let was = running
                .regions
                .iter()
                .find(|r| r.name == region)
                .expect("r");
            let now = st.regions.iter().find(|r| r.name == region).expect("r");
            assert_eq!(now.config_hash, was.config_hash, "last applied config kept");
        }
    }

    #[tokio::test]
    async fn invalid_spec_applies_nothing_and_names_the_field() {
        let mut d = dist();
        d.spec.cache.max_object_size = "1Gi".into(); // larger than cache.memory 256Mi
        let local = vec![
            expect(Method::GET, CREDS, Reply::Json(creds_secret())),
            expect(Method::PATCH, format!("{DIST}/status"), status_ok()),
        ];
        let run = run(d, local, vec![]).await;
        run.action.as_ref().expect("ok");
        let st = run.status_written().expect("status");
        let (status, reason, message) = cond(&st, None, DEGRADED);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
        assert!(message.starts_with("spec.cache.maxObjectSize"), "{message}");
    }

    /// The status a reconcile of `d` in an in-sync world writes (targets included).
    async fn learned_status(d: &Distribution) -> DistributionStatus {
        let keys = fixtures::key_secrets();
        let mut local = reads();
        local.extend(running(d, 0, &keys));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let (local, remote) = with_discovery(local, running(d, 1, &keys));
        run(d.clone(), local, remote)
            .await
            .status_written()
            .expect("status")
    }

    fn deleted_ok() -> Reply {
        Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}))
    }

    #[tokio::test]
    async fn a_region_moved_to_another_namespace_leaves_nothing_behind() {
        let full = dist();
        let learned = learned_status(&full).await;
        let eu = learned
            .regions
            .iter()
            .find(|r| r.name == "eu-west")
            .and_then(|r| r.target.clone())
            .expect("target recorded");
        assert_eq!(
            (
                eu.namespace.as_str(),
                eu.name.as_str(),
                eu.cluster_label().as_str()
            ),
            (
                "kubefront-edge",
                "site-eu-west",
                "kubeconfig:eu-west-kubeconfig/value"
            )
        );
        let mut moved = full.clone();
        moved.spec.regions[1].namespace = Some("edge-2".into());
        moved.metadata.generation = Some(2);
        moved.status = Some(learned);
        let mut local = reads();
        local.extend(in_sync(local_paths(), stored_objects(&full, 0, true)));
        local.push(expect(
            Method::GET,
            KUBECONFIG,
            Reply::Json(kubeconfig_secret()),
        ));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        let mut remote = fresh(object_paths("edge-2", "site-eu-west"));
        remote.extend(absent(&remote_paths()));
        for ((_, p), o) in remote_paths()
            .into_iter()
            .zip(stored_objects(&full, 1, true))
        {
            remote.push(expect(Method::GET, &p, Reply::Json(o)));
            remote.push(expect(Method::DELETE, &p, deleted_ok()));
        }
        let run = run(moved, local, remote).await;
        run.action.as_ref().expect("ok");
        let st = run.status_written().expect("status");
        let eu = st.regions.iter().find(|r| r.name == "eu-west").expect("eu");
        assert_eq!(
            eu.target.as_ref().map(|t| t.namespace.as_str()),
            Some("edge-2")
        );
        assert!(eu.stale_targets.is_empty(), "{:?}", eu.stale_targets);
        assert_eq!(st.regions.len(), 2);
    }

    #[tokio::test]
    async fn leftovers_of_a_distribution_restored_without_status_are_found_by_label() {
        let mut d = dist();
        d.spec.regions.truncate(1);
        let cm = |name: &str, region: &str, uid: &str, dist_ns: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": name, "namespace": "web", "uid": format!("cm-{name}"),
                "labels": {"app.kubernetes.io/managed-by": "kubefront-operator",
                    "kubefront.io/distribution": "site", "kubefront.io/distribution-namespace": dist_ns,
                    "kubefront.io/region": region},
                "annotations": {"kubefront.io/distribution-uid": uid}}})
        };
        let ours = cm("site-old", "old", "uid-site", "web");
        let stranger = cm("site-other", "other", "uid-else", "web");
        let mut local = vec![expect(Method::GET, CREDS, Reply::Json(creds_secret()))];
        local.extend(fresh(local_paths()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        local.push(expect(
            Method::GET,
            "/api/v1/namespaces/web/configmaps",
            Reply::Json(
                json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {},
                "items": [ours.clone(), stranger]}),
            ),
        ));
        local.extend(absent_at("web", "site-old"));
        for (kind, p) in object_paths("web", "site-old") {
            if kind == "ConfigMap" {
                local.push(expect(Method::GET, &p, Reply::Json(ours.clone())));
                local.push(expect(Method::DELETE, &p, deleted_ok()));
            } else {
                local.push(expect(Method::GET, &p, Reply::NotFound));
            }
        }
        let run = run(d, local, vec![]).await;
        run.action.as_ref().expect("ok");
        let deleted: Vec<String> = run
            .local
            .iter()
            .filter(|s| s.method == Method::DELETE)
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(
            deleted,
            ["/api/v1/namespaces/web/configmaps/site-old"],
            "only ours"
        );
    }

    #[tokio::test]
    async fn deleting_the_whole_namespace_forgets_a_region_whose_kubeconfig_went_with_it() {
        let mut d = dist();
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        // The namespace controller already deleted the kubeconfig Secret.
        let mut local = vec![
            expect(Method::GET, KUBECONFIG, Reply::NotFound),
            expect(Method::GET, KUBECONFIG, Reply::NotFound),
            expect(
                Method::GET,
                "/api/v1/namespaces/web/configmaps",
                empty_list("ConfigMapList"),
            ),
            expect(
                Method::GET,
                "/api/v1/namespaces/web",
                Reply::Json(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "web", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                    "status": {"phase": "Terminating"}})),
            ),
        ];
        local.extend(absent(&local_paths()));
        for ((_, p), o) in local_paths().into_iter().zip(stored_objects(&d, 0, true)) {
            local.push(expect(Method::GET, &p, Reply::Json(o)));
            local.push(expect(Method::DELETE, &p, deleted_ok()));
        }
        let mut released = serde_json::to_value(&d).unwrap_or_default();
        released["metadata"]["finalizers"] = json!([]);
        local.push(expect(Method::PATCH, DIST, Reply::Json(released)));
        let run = run(d, local, vec![]).await;
        run.action.as_ref().expect("the namespace can go");
        assert!(run
            .local
            .iter()
            .any(|s| s.method == Method::PATCH && s.path == DIST));
    }

    // ---- Autoscaling: the HPA drives replicas, the operator does not fight it ----

    /// The local region of [`fixtures::placed`] alone (autoscaled, with a ServiceAccount).
    fn autoscaled() -> Distribution {
        let mut d = fixtures::placed();
        d.spec.regions.truncate(1);
        d
    }

    /// The stored ServiceAccount and HPA of region 0 of `d`, as applied.
    fn stored_optional(d: &Distribution) -> Vec<(&'static str, String, Value)> {
        let cfg = render::edge_config(&d.spec, &fixtures::key_secrets()).expect("valid");
        let creds = credentials();
        let objs = render::render_region(
            d,
            &d.spec.regions[0],
            &cfg,
            &RenderContext {
                edge_image: "kubefront/edge:test",
                credentials: Some(&creds),
                origin_secrets: &crate::render::NO_SECRETS,
                shield_token: None,
            },
        )
        .expect("renders");
        let stamp = |v: Result<(Value, String), serde_json::Error>| {
            let mut v = v.map(|(v, _)| v).unwrap_or_default();
            v["metadata"]["resourceVersion"] = json!("1");
            v
        };
        let paths = optional_paths("web", "site-local");
        let mut out = Vec::new();
        if let Some(sa) = &objs.service_account {
            out.push((
                paths[0].0,
                paths[0].1.clone(),
                stamp(crate::sync::stamp(sa)),
            ));
        }
        if let Some(hpa) = &objs.autoscaler {
            out.push((
                paths[1].0,
                paths[1].1.clone(),
                stamp(crate::sync::stamp(hpa)),
            ));
        }
        out
    }

    /// `dep` (a stored Deployment) as the autoscaler left it: `replicas` written by the
    /// controller manager through the scale subresource, all of them ready.
    fn scaled_by_hpa(mut dep: Value, replicas: i32) -> Value {
        dep["spec"]["replicas"] = json!(replicas);
        dep["metadata"]["managedFields"] = json!([
            {"manager": "kubefront-operator", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"}
        ]);
        dep["status"] = json!({"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas});
        dep
    }

    #[tokio::test]
    async fn the_operator_leaves_replicas_to_the_autoscaler_over_resyncs() {
        let d = autoscaled();
        let hash = config_hash_of(&d, 0, &fixtures::key_secrets());
        let mut status = None;
        // The autoscaler changes the count between three resyncs; each one only asks (dry
        // run) and never sends a count of its own.
        for (pass, replicas) in [5, 7, 3].into_iter().enumerate() {
            let mut stored = stored_objects(&d, 0, true);
            stored[4] = scaled_by_hpa(stored[4].clone(), replicas);
            let mut local = vec![expect(Method::GET, CREDS, Reply::Json(creds_secret()))];
            local.extend(in_sync_objects(local_paths(), stored));
            for (_, p, o) in stored_optional(&d) {
                local.push(expect(Method::GET, &p, Reply::Json(o.clone())));
                local.push(expect(Method::PATCH, &p, Reply::Json(o)));
            }
            local.extend(pods_on("web", "site-local", replicas, &hash));
            local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
            if pass == 0 {
                local.push(expect(
                    Method::GET,
                    "/api/v1/namespaces/web/configmaps",
                    empty_list("ConfigMapList"),
                ));
            }
            let mut dist = d.clone();
            dist.status = status.take();
            let run = run(dist, local, vec![]).await;
            run.action.as_ref().expect("ok");
            assert!(
                run.writes().iter().all(|w| w.ends_with("/status")),
                "pass {pass}: {:?}",
                run.writes()
            );
            for s in run
                .local
                .iter()
                .filter(|s| s.path.contains("/deployments/"))
            {
                assert!(
                    !s.query.contains(placement::REPLICAS_MANAGER),
                    "pass {pass}: the autoscaler owns the count: {}",
                    s.query
                );
                if s.method == Method::PATCH {
                    assert_eq!(s.body["spec"].get("replicas"), None, "pass {pass}");
                }
            }
            let st = run.status_written().expect("status");
            assert_eq!(
                st.regions[0].replicas, replicas,
                "status follows the autoscaler"
            );
            assert_eq!(cond(&st, Some("local"), AVAILABLE).0, "True", "pass {pass}");
            status = Some(st);
        }
    }

    #[tokio::test]
    async fn switching_autoscaling_on_keeps_the_current_count_until_the_autoscaler_takes_it() {
        let after = autoscaled();
        let mut before = after.clone();
        before.spec.regions[0].autoscaling = None;
        before.spec.regions[0].replicas = 4;
        let mut stored = stored_objects(&before, 0, true);
        stored[4]["metadata"]["managedFields"] = json!([
            {"manager": "kubefront-operator", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}}
        ]);
        let dep_path = local_paths()[4].1.clone();
        let mut applied = stored_objects(&after, 0, true)[4].clone();
        applied["spec"]["replicas"] = json!(4);
        applied["metadata"]["managedFields"] = json!([
            {"manager": placement::REPLICAS_MANAGER, "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]);
        let mut local = vec![expect(Method::GET, CREDS, Reply::Json(creds_secret()))];
        local.extend(in_sync_objects(
            local_paths()[..4].to_vec(),
            stored[..4].to_vec(),
        ));
        local.push(expect(
            Method::GET,
            &dep_path,
            Reply::Json(stored[4].clone()),
        ));
        // The hand-over, then the apply without a count.
        local.push(expect(
            Method::PATCH,
            &dep_path,
            Reply::Json(stored[4].clone()),
        ));
        local.push(expect(Method::PATCH, &dep_path, Reply::Json(applied)));
        let optional = stored_optional(&after);
        let (_, sa_path, sa) = &optional[0];
        local.push(expect(Method::GET, sa_path, Reply::Json(sa.clone())));
        local.push(expect(Method::PATCH, sa_path, Reply::Json(sa.clone())));
        let (_, hpa_path, _) = &optional[1];
        local.push(expect(Method::GET, hpa_path, Reply::NotFound));
        local.push(expect(Method::PATCH, hpa_path, Reply::Echo));
        local.extend(pods_on(
            "web",
            "site-local",
            4,
            &config_hash_of(&after, 0, &fixtures::key_secrets()),
        ));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        local.push(expect(
            Method::GET,
            "/api/v1/namespaces/web/configmaps",
            empty_list("ConfigMapList"),
        ));
        let run = run(after, local, vec![]).await;
        run.action.as_ref().expect("ok");
        let deps: Vec<&Seen> = run
            .local
            .iter()
            .filter(|s| s.method == Method::PATCH && s.path == dep_path)
            .collect();
        assert_eq!(deps.len(), 2, "{deps:?}");
        assert!(
            deps[0].query.contains(placement::REPLICAS_MANAGER),
            "{}",
            deps[0].query
        );
        assert_eq!(
            deps[0].body["spec"],
            json!({"replicas": 4}),
            "the live count, held"
        );
        assert!(
            deps[1].query.contains("fieldManager=kubefront-operator&")
                || deps[1].query.ends_with("fieldManager=kubefront-operator"),
            "{}",
            deps[1].query
        );
        assert_eq!(deps[1].body["spec"].get("replicas"), None);
        let hpa = run
            .local
            .iter()
            .find(|s| s.method == Method::PATCH && &s.path == hpa_path)
            .expect("hpa applied");
        assert_eq!(hpa.body["spec"]["minReplicas"], 2);
        assert_eq!(hpa.body["spec"]["maxReplicas"], 10);
        assert_eq!(hpa.body["spec"]["scaleTargetRef"]["name"], "site-local");
    }

    #[tokio::test]
    async fn switching_autoscaling_off_deletes_the_autoscaler_before_applying_the_count() {
        let on = autoscaled();
        let mut off = on.clone();
        off.spec.regions[0].autoscaling = None;
        let mut stored = stored_objects(&on, 0, true);
        stored[4] = scaled_by_hpa(stored[4].clone(), 6);
        let dep_path = local_paths()[4].1.clone();
        let mut local = vec![expect(Method::GET, CREDS, Reply::Json(creds_secret()))];
        local.extend(in_sync_objects(
            local_paths()[..4].to_vec(),
            stored[..4].to_vec(),
        ));
        local.push(expect(
            Method::GET,
            &dep_path,
            Reply::Json(stored[4].clone()),
        ));
        local.push(expect(Method::PATCH, &dep_path, Reply::Echo));
        let optional = stored_optional(&on);
        let (_, sa_path, sa) = &optional[0];
        local.push(expect(Method::GET, sa_path, Reply::Json(sa.clone())));
        local.push(expect(Method::PATCH, sa_path, Reply::Json(sa.clone())));
        let (_, hpa_path, hpa) = &optional[1];
        let mut hpa = hpa.clone();
        hpa["metadata"]["uid"] = json!("uid-hpa");
        local.push(expect(Method::GET, hpa_path, Reply::Json(hpa)));
        local.push(expect(Method::DELETE, hpa_path, deleted_ok()));
        local.push(expect(Method::PATCH, format!("{DIST}/status"), status_ok()));
        local.push(expect(
            Method::GET,
            "/api/v1/namespaces/web/configmaps",
            empty_list("ConfigMapList"),
        ));
        let run = run(off, local, vec![]).await;
        run.action.as_ref().expect("ok");
        let order: Vec<String> = run
            .writes()
            .into_iter()
            .filter(|w| !w.ends_with("/status"))
            .collect();
        assert_eq!(
            order,
            [format!("DELETE {hpa_path}"), format!("PATCH {dep_path}")],
            "the autoscaler goes first"
        );
        let dep = run
            .local
            .iter()
            .find(|s| s.method == Method::PATCH && s.path == dep_path)
            .expect("dep");
        assert_eq!(dep.body["spec"]["replicas"], 2, "the spec's count again");
    }
}
