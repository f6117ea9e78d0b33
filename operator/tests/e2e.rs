//! End-to-end: the real operator binary against a real API server.
//!
//! Needs `KUBEFRONT_E2E_KUBECONFIG` (a kubeconfig with inline credentials, e.g. the one
//! `tests/cluster/up --control-plane-only` writes). Skipped with a message when unset, failed
//! when unset under `KUBEFRONT_REQUIRE_CLUSTER=1`. The "remote" region is the same API server
//! reached through a kubeconfig Secret, in another namespace.
//!
//! Without a node (control-plane-only) pods never start, so regions stay `Available=False`
//! (`WaitingForReplicas`); the test asserts applied objects and status. With
//! `KUBEFRONT_E2E_PODS=1` (a full cluster with the edge image imported) it also waits for Ready.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use kubefront_edge::config::EdgeConfig;
use kubefront_operator::crd::Distribution;
use kubefront_operator::fixtures;
use serde_json::json;

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubeconfig_path() -> Option<PathBuf> {
    match std::env::var_os("KUBEFRONT_E2E_KUBECONFIG") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let msg = "KUBEFRONT_E2E_KUBECONFIG is not set; start a cluster with `tests/cluster/up --control-plane-only` and point it at the kubeconfig";
            // CI must never go green by skipping the real-cluster tests.
            let on = |name: &str| {
                std::env::var(name)
                    .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
            };
            if on("KUBEFRONT_REQUIRE_CLUSTER") || on("CI") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn operator_binary() -> PathBuf {
    std::env::var_os("KUBEFRONT_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubefront-operator")))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cond(d: &Distribution, region: Option<&str>, t: &str) -> Option<(String, String)> {
    let st = d.status.as_ref()?;
    let conds = match region {
        None => &st.conditions,
        Some(r) => &st.regions.iter().find(|x| x.name == r)?.conditions,
    };
    conds
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn metric(port: u16, name: &str) -> f64 {
    let body = reqwest_lite(port, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Minimal HTTP GET over a TcpStream (the operator serves plain HTTP/1.1).
async fn reqwest_lite(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// A client for the test cluster and the kubeconfig text (for remote-region Secrets).
async fn connect(path: &PathBuf) -> (Client, String) {
    // As in the binary: the workspace links two rustls backends, so name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc_text = std::fs::read_to_string(path).expect("read kubeconfig");
    let kc = Kubeconfig::from_yaml(&kc_text).expect("parse kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    (Client::try_from(config).expect("client"), kc_text)
}

/// Installs the committed CRD (the API server compiles its CEL rules here) and waits until
/// it is served.
async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(include_str!("../../crds/distribution.yaml")).expect("crd yaml");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "distributions.kubefront.io",
        &PatchParams::apply("kubefront-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD accepted by the API server");
    wait_for("CRD established", Duration::from_secs(60), || {
        let crds = crds.clone();
        async move {
            let c = crds.get("distributions.kubefront.io").await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// A fresh namespace name for one test.
fn unique_namespace(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("kf-{test}-{:x}", std::process::id() ^ nanos)
}

/// The real operator binary, watching `ns` only (its Lease in `ns` too); returns it with its
/// metrics port once it answers /readyz.
async fn start_operator(path: &PathBuf, ns: &str) -> (Operator, u16) {
    start_operator_with(path, ns, &[]).await
}

/// [`start_operator`] with further flags (e.g. `--allow-target-namespace`).
async fn start_operator_with(path: &PathBuf, ns: &str, extra: &[&str]) -> (Operator, u16) {
    start_operator_in(path, ns, ns, extra).await
}

/// [`start_operator_with`] holding its Lease in `lease_ns`.
async fn start_operator_in(
    path: &PathBuf,
    ns: &str,
    lease_ns: &str,
    extra: &[&str],
) -> (Operator, u16) {
    start_operator_as(path, ns, lease_ns, extra, None).await
}

/// [`start_operator_in`] with the leader-election identity `identity` (`POD_NAME`).
async fn start_operator_as(
    path: &PathBuf,
    ns: &str,
    lease_ns: &str,
    extra: &[&str],
    identity: Option<&str>,
) -> (Operator, u16) {
    let port = free_port();
    let mut command = Command::new(operator_binary());
    if let Some(id) = identity {
        command.env("POD_NAME", id);
    }
    let child = command
        .args([
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--watch-namespace",
            ns,
        ])
        .args([
            "--edge-image",
            "kubefront/edge:dev",
            "--leader-election",
            "--lease-namespace",
            lease_ns,
        ])
        .args(extra)
        .env("KUBECONFIG", path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start operator");
    let operator = Operator(child);
    wait_for("operator /readyz", Duration::from_secs(60), || async move {
        reqwest_lite(port, "/readyz")
            .await
            .contains("200 OK")
            .then_some(())
    })
    .await;
    (operator, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_end_to_end() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, kc_text) = connect(&path).await;
    let pods = std::env::var("KUBEFRONT_E2E_PODS").is_ok_and(|v| v == "1");
    let long = Duration::from_secs(60);

    // 1. Install the committed CRD (the API server compiles its CEL rules here).
    install_crd(&client).await;

    // 2. Namespaces, credentials and the remote kubeconfig Secret.
    let ns = unique_namespace("e2e");
    let remote_ns = format!("{ns}-remote");
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in [&ns, &remote_ns] {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "assets-s3"},
                "stringData": {"accessKeyId": "AKIDE2E", "secretAccessKey": "e2e-secret"}
            }))
            .expect("secret"),
        )
        .await
        .expect("credentials secret");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "remote-kubeconfig"},
                "stringData": {"value": kc_text}
            }))
            .expect("secret"),
        )
        .await
        .expect("kubeconfig secret");

    // 3. The real operator binary.
    let (_operator, port) = start_operator(&path, &ns).await;

    // 4. A Distribution with a local and a "remote" region.
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let dist: Distribution = serde_json::from_value(json!({
        "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
        "metadata": {"name": "site"},
        "spec": {
            "origin": {"s3": {"bucket": "assets", "endpoint": "http://minio.storage:9000", "forcePathStyle": true,
                              "credentialsSecretRef": {"name": "assets-s3"}}},
            "cache": {"defaultTTL": "24h", "maxTTL": "365d"},
            "behaviors": [{"pathPattern": "/static/*", "defaultTTL": "365d"}],
            "regions": [
                {"name": "home", "replicas": 1},
                {"name": "far", "replicas": 1, "namespace": remote_ns,
                 "cluster": {"kubeconfigSecretRef": {"name": "remote-kubeconfig"}}}
            ]
        }
    }))
    .expect("dist");
    dists
        .create(&PostParams::default(), &dist)
        .await
        .expect("create Distribution");

    let applied = |dists: Api<Distribution>| async move {
        let d = dists.get("site").await.ok()?;
        let st = d.status.as_ref()?;
        let ok = st.observed_generation == d.metadata.generation
            && ["home", "far"]
                .iter()
                .all(|r| cond(&d, Some(r), "Applied").is_some_and(|c| c.0 == "True"));
        ok.then_some(d)
    };
    let d = wait_for("both regions Applied", long, || applied(dists.clone())).await;
    assert!(d.finalizers().iter().any(|f| f == "kubefront.io/cleanup"));
    if pods {
        wait_for("Ready=True", Duration::from_secs(180), || {
            let dists = dists.clone();
            async move {
                let d = dists.get("site").await.ok()?;
                (cond(&d, None, "Ready")?.0 == "True").then_some(())
            }
        })
        .await;
    } else {
        let (status, reason) = cond(&d, Some("home"), "Available").expect("Available");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "WaitingForReplicas")
        );
        assert_eq!(cond(&d, None, "Ready").expect("Ready").0, "False");
        assert_eq!(cond(&d, None, "Degraded").expect("Degraded").0, "False");
    }

    // 5. Every object, in both regions.
    let st = d.status.clone().expect("status");
    for (region, namespace, local) in [
        ("home", ns.as_str(), true),
        ("far", remote_ns.as_str(), false),
    ] {
        let name = format!("site-{region}");
        let rs = st
            .regions
            .iter()
            .find(|r| r.name == region)
            .expect("region status");
        assert_eq!(rs.namespace, namespace);
        assert_eq!(
            rs.endpoint.as_deref(),
            Some(format!("http://{name}.{namespace}.svc:80").as_str())
        );
        let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("configmap");
        let edge = EdgeConfig::from_yaml(&cm.data.as_ref().expect("data")["edge.yaml"])
            .expect("edge config");
        edge.validate().expect("valid edge config");
        assert_eq!(
            edge.origin.s3.as_ref().map(|s| s.bucket.as_str()),
            Some("assets")
        );
        let dep = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("deployment");
        let tmpl = dep.spec.template.clone();
        let hash = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubefront.io/config-hash").cloned());
        assert_eq!(hash, rs.config_hash, "ConfigMap hash = status configHash");
        let tmpl_annotations = tmpl
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert!(
            !tmpl_annotations.contains_key("kubefront.io/config-hash"),
            "config changes must not restart pods: {tmpl_annotations:?}"
        );
        let c = &tmpl.spec.as_ref().expect("pod").containers[0];
        assert_eq!(c.image.as_deref(), Some("kubefront/edge:dev"));
        assert_eq!(
            c.security_context.as_ref().and_then(|s| s.run_as_user),
            Some(65532)
        );
        let labels = dep.labels();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("kubefront-operator")
        );
        assert_eq!(
            labels.get("kubefront.io/distribution").map(String::as_str),
            Some("site")
        );
        assert_eq!(
            labels.get("kubefront.io/region").map(String::as_str),
            Some(region)
        );
        assert_eq!(
            !dep.owner_references().is_empty(),
            local,
            "owner refs only on local objects"
        );
        let managers: Vec<_> = dep
            .managed_fields()
            .iter()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(
            managers.iter().any(|m| m == "kubefront-operator"),
            "{managers:?}"
        );
        Api::<Service>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("service");
        Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("pdb");
        let mirrored = Api::<Secret>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("mirrored secret");
        assert_eq!(mirrored.data.as_ref().map(|d| d.len()), Some(2));
    }

    // 6. A no-op reconcile (metadata-only change triggers one) writes nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_before = metric(port, "kubefront_operator_writes_total").await;
    let reconciles_before = metric(port, "kubefront_operator_reconciles_total").await;
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/poke": "1"}}})),
        )
        .await
        .expect("poke");
    wait_for("a reconcile after the poke", long, || async move {
        (metric(port, "kubefront_operator_reconciles_total").await > reconciles_before)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric(port, "kubefront_operator_writes_total").await,
        writes_before,
        "no-op reconcile wrote"
    );

    // 7. Drift: a deleted local Deployment and an edited remote Service are repaired.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let old_uid = deps.get("site-home").await.expect("dep").uid();
    deps.delete("site-home", &DeleteParams::default())
        .await
        .expect("delete deployment");
    wait_for("local Deployment restored", long, || {
        let deps = deps.clone();
        let old_uid = old_uid.clone();
        async move {
            deps.get("site-home")
                .await
                .ok()
                .filter(|d| d.uid() != old_uid)
                .map(|_| ())
        }
    })
    .await;
    let rsvcs: Api<Service> = Api::namespaced(client.clone(), &remote_ns);
    rsvcs
        .patch(
            "site-far",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/name": "tampered"}}})),
        )
        .await
        .expect("edit remote service");
    wait_for("remote Service repaired", long, || {
        let rsvcs = rsvcs.clone();
        async move {
            let s = rsvcs.get("site-far").await.ok()?;
            (s.labels().get("app.kubernetes.io/name").map(String::as_str) == Some("kubefront-edge"))
                .then_some(())
        }
    })
    .await;

    // 8. TTL change: new ConfigMap content and hash, the same pod template, in both regions.
    let mut old_templates = Vec::new();
    for (region, namespace) in [("home", ns.as_str()), ("far", remote_ns.as_str())] {
        let dep = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get(&format!("site-{region}"))
            .await
            .expect("dep");
        old_templates.push((dep.spec.template, dep.metadata.generation));
    }
    let old_hash = st
        .regions
        .iter()
        .find(|r| r.name == "far")
        .and_then(|r| r.config_hash.clone());
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cache": {"defaultTTL": "12h"}}})),
        )
        .await
        .expect("change TTL");
    let d = wait_for("new config applied", long, || applied(dists.clone())).await;
    for (region, namespace) in [("home", ns.as_str()), ("far", remote_ns.as_str())] {
        let name = format!("site-{region}");
        let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("cm");
        let edge = EdgeConfig::from_yaml(&cm.data.expect("data")["edge.yaml"]).expect("edge");
        assert_eq!(edge.cache.default_ttl.to_string(), "12h");
        let rs = d
            .status
            .as_ref()
            .and_then(|s| s.regions.iter().find(|r| r.name == region))
            .expect("rs");
        assert_ne!(rs.config_hash, old_hash, "hash changed in {region}");
        let dep = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .expect("dep");
        let hash = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubefront.io/config-hash").cloned());
        assert_eq!(hash, rs.config_hash);
        let i = usize::from(region == "far");
        assert_eq!(
            (dep.spec.template, dep.metadata.generation),
            old_templates[i].clone(),
            "a TTL change must not roll {region}'s pods"
        );
    }

    // 9. Invalid specs are rejected by the API server, naming the field.
    let invalid = [
        (
            json!({"cache": {"minTTL": "2d", "defaultTTL": "1d"}}),
            "minTTL",
        ),
        (json!({"cache": {"defaultTTL": "400d"}}), "defaultTTL"),
        (
            json!({"customErrorResponses": [{"errorCode": 418}]}),
            "errorCode",
        ),
        (
            json!({"behaviors": [{"pathPattern": "/a b"}]}),
            "pathPattern",
        ),
        (
            json!({"regions": [{"name": "a"}, {"name": "a"}]}),
            "region names must be unique",
        ),
        (json!({"regions": [{"name": "Not_DNS"}]}), "regions[0].name"),
        (
            json!({"origin": {"s3": {"region": "x"}}}),
            "spec.origin.s3.bucket",
        ),
        (json!({"cache": {"maxTTL": "1 year"}}), "spec.cache.maxTTL"),
        (
            json!({"regions": [{"name": "a", "autoscaling": {"minReplicas": 4, "maxReplicas": 2}}]}),
            "autoscaling.maxReplicas must not be less than autoscaling.minReplicas",
        ),
        (
            json!({"regions": [{"name": "a", "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}]}),
            "autoscaling.minReplicas",
        ),
        (
            json!({"regions": [{"name": "a", "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targetCPUUtilizationPercentage": 101}}]}),
            "targetCPUUtilizationPercentage",
        ),
    ];
    // Raw JSON, not the typed struct: serde defaults must not fill what the case leaves out.
    let raw = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<Distribution>(&()),
    );
    for (i, (patch, field)) in invalid.into_iter().enumerate() {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec_value(&patch)
        }))
        .expect("dynamic");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} must be rejected"));
        let msg = err.to_string();
        assert!(msg.contains(field), "case {i}: expected {field:?} in {msg}");
    }

    // 10. Drop the remote region: its objects are pruned.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regions": [{"name": "home", "replicas": 1}]}})),
        )
        .await
        .expect("drop region");
    let rdeps: Api<Deployment> = Api::namespaced(client.clone(), &remote_ns);
    wait_for("remote region pruned", long, || {
        let (rdeps, client, remote_ns) = (rdeps.clone(), client.clone(), remote_ns.clone());
        async move {
            let gone = rdeps.get_opt("site-far").await.ok()?.is_none()
                && Api::<ConfigMap>::namespaced(client.clone(), &remote_ns)
                    .get_opt("site-far")
                    .await
                    .ok()?
                    .is_none()
                && Api::<Secret>::namespaced(client.clone(), &remote_ns)
                    .get_opt("site-far")
                    .await
                    .ok()?
                    .is_none();
            gone.then_some(())
        }
    })
    .await;
    wait_for("status lists one region", long, || {
        let dists = dists.clone();
        async move { (dists.get("site").await.ok()?.status?.regions.len() == 1).then_some(()) }
    })
    .await;

    // 11. Delete: every region is cleaned up before the Distribution goes.
    dists
        .delete("site", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("Distribution gone", long, || {
        let dists = dists.clone();
        async move { dists.get_opt("site").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get_opt("site-home")
        .await
        .expect("get")
        .is_none());
    assert!(Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt("site-home")
        .await
        .expect("get")
        .is_none());
    assert!(deps.get_opt("site-home").await.expect("get").is_none());
    assert!(metric(port, "kubefront_operator_reconciles_total").await > 0.0);

    for n in [&ns, &remote_ns] {
        let _ = nss.delete(n, &DeleteParams::default()).await;
    }
}

/// Waits until the operator has made no reconcile for two seconds, so a later change can only
/// be picked up by a watch (not by a reconcile that was already queued).
async fn quiesce(port: u16) {
    let start = Instant::now();
    let mut last = metric(port, "kubefront_operator_reconciles_total").await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = metric(port, "kubefront_operator_reconciles_total").await;
        if now == last {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the operator kept reconciling for a minute"
        );
        last = now;
    }
}

/// The region's edge config and the config hash on its ConfigMap.
async fn region_config(client: &Client, ns: &str, name: &str) -> Option<(EdgeConfig, String)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    let edge = EdgeConfig::from_yaml(cm.data.as_ref()?.get("edge.yaml")?).ok()?;
    let hash = cm
        .metadata
        .annotations?
        .get("kubefront.io/config-hash")?
        .clone();
    Some((edge, hash))
}

fn key_ids(edge: &EdgeConfig) -> Vec<String> {
    edge.security
        .trusted_key_groups
        .iter()
        .flat_map(|g| g.keys.iter().map(|k| k.id.clone()))
        .collect()
}

/// Condition (status, reason, message) of the Distribution or one of its regions.
fn cond_full(d: &Distribution, region: Option<&str>, t: &str) -> Option<(String, String, String)> {
    let st = d.status.as_ref()?;
    let conds = match region {
        None => &st.conditions,
        Some(r) => &st.regions.iter().find(|x| x.name == r)?.conditions,
    };
    conds
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Signed URLs in a Distribution: key groups from a Secret reach the region's edge config,
/// rotating the Secret rolls the config without a Distribution edit, bad or missing Secrets
/// are reported in status without touching what runs, and the API server rejects key-group
/// and response-header mistakes naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_distribution_end_to_end() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    let pods = std::env::var("KUBEFRONT_E2E_PODS").is_ok_and(|v| v == "1");
    let long = Duration::from_secs(60);
    // Faster than any periodic requeue (60s while rolling, 5 min otherwise): only the watch on
    // referenced Secrets can make these.
    let prompt = Duration::from_secs(30);
    install_crd(&client).await;
    let ns = unique_namespace("signed");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
    )
    .await
    .expect("create namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "signing-keys"},
                "stringData": {"K1EC": fixtures::EC_P256_PUBLIC_PEM}
            }))
            .expect("secret"),
        )
        .await
        .expect("key group secret");
    let (_operator, port) = start_operator(&path, &ns).await;

    // 1. Key group + signed behavior + response headers: applied, keys inline in the config.
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let dist: Distribution = serde_json::from_value(json!({
        "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
        "metadata": {"name": "signed"},
        "spec": {
            "origin": {"s3": {"bucket": "assets", "endpoint": "http://minio.storage:9000", "forcePathStyle": true}},
            "trustedKeyGroups": [{"name": "main", "secretRef": {"name": "signing-keys"}}],
            "behaviors": [
                {"pathPattern": "/static/*", "defaultTTL": "365d"},
                {"pathPattern": "/private/*", "trustedKeyGroups": ["main"]}
            ],
            "responseHeadersPolicy": {
                "cors": {"allowOrigins": ["https://app.example.com"], "allowCredentials": true, "maxAge": "10m"},
                "strictTransportSecurity": {"maxAge": "365d", "includeSubdomains": true},
                "contentTypeOptions": true, "frameOptions": "DENY", "referrerPolicy": "no-referrer"
            },
            "viewerLimits": {"maxUrlBytes": 4096, "headerReadTimeout": "5s"},
            "clientIp": {"header": "X-Forwarded-For"},
            "regions": [{"name": "home", "replicas": 1}]
        }
    }))
    .expect("dist");
    dists
        .create(&PostParams::default(), &dist)
        .await
        .expect("create signed Distribution");
    let applied = |name: &'static str| {
        let dists = dists.clone();
        async move {
            let d = dists.get(name).await.ok()?;
            let st = d.status.as_ref()?;
            let ok = st.observed_generation == d.metadata.generation
                && cond(&d, Some("home"), "Applied").is_some_and(|c| c.0 == "True")
                && cond(&d, None, "Degraded").is_some_and(|c| c.0 == "False");
            ok.then_some(d)
        }
    };
    let d = wait_for("signed Distribution applied", long, || applied("signed")).await;
    if pods {
        wait_for("Ready=True", Duration::from_secs(180), || {
            let dists = dists.clone();
            async move {
                let d = dists.get("signed").await.ok()?;
                (cond(&d, None, "Ready")?.0 == "True").then_some(())
            }
        })
        .await;
    }
    let generation = d.metadata.generation;
    let (edge, hash1) = region_config(&client, &ns, "signed-home")
        .await
        .expect("config map and deployment");
    edge.validate().expect("the edge validator accepts it");
    assert_eq!(key_ids(&edge), ["K1EC"]);
    assert_eq!(
        edge.security.trusted_key_groups[0].keys[0]
            .public_key_pem
            .as_deref()
            .map(str::trim),
        Some(fixtures::EC_P256_PUBLIC_PEM.trim())
    );
    assert_eq!(edge.security.signed_paths.len(), 1);
    assert_eq!(edge.security.signed_paths[0].path_pattern, "/private/*");
    assert_eq!(edge.security.signed_paths[0].key_groups, ["main"]);
    let rh = &edge.security.response_headers;
    assert_eq!(rh.frame_options.as_deref(), Some("DENY"));
    assert_eq!(rh.referrer_policy.as_deref(), Some("no-referrer"));
    assert!(rh.content_type_options);
    assert!(rh.cors.as_ref().is_some_and(|c| c.allow_credentials));
    assert_eq!(edge.security.limits.max_url_bytes, 4096);
    assert_eq!(
        edge.security.client_ip.header.as_deref(),
        Some("X-Forwarded-For")
    );
    let status_hash = |d: &Distribution| {
        d.status
            .as_ref()
            .and_then(|s| s.regions.iter().find(|r| r.name == "home"))
            .and_then(|r| r.config_hash.clone())
    };
    assert_eq!(status_hash(&d).as_deref(), Some(hash1.as_str()));

    // 2. Rotation: a second key in the Secret, no Distribution edit.
    quiesce(port).await;
    secrets
        .patch(
            "signing-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"K2ROTATED": fixtures::RSA_2048_PUBLIC_PEM}})),
        )
        .await
        .expect("add a key");
    let (edge, hash2) = wait_for("rotated key in the region's config", prompt, || {
        let client = client.clone();
        let ns = ns.clone();
        let hash1 = hash1.clone();
        async move {
            let (edge, hash) = region_config(&client, &ns, "signed-home").await?;
            // The ConfigMap is applied before the Deployment: wait for both.
            (key_ids(&edge).len() == 2 && hash != hash1).then_some((edge, hash))
        }
    })
    .await;
    assert_eq!(key_ids(&edge), ["K1EC", "K2ROTATED"]);
    assert_ne!(hash1, hash2, "pods roll on rotation");
    let d = wait_for("status shows the new hash", prompt, || {
        let dists = dists.clone();
        let hash2 = hash2.clone();
        async move {
            let d = dists.get("signed").await.ok()?;
            (status_hash(&d).as_deref() == Some(hash2.as_str())).then_some(d)
        }
    })
    .await;
    assert_eq!(d.metadata.generation, generation, "no Distribution edit");

    // 3. A key the edge would refuse: reported, naming the field and key; nothing changes.
    quiesce(port).await;
    secrets
        .patch(
            "signing-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"KBAD": "not a public key"}})),
        )
        .await
        .expect("add a bad key");
    let d = wait_for("SecretInvalid reported", prompt, || {
        let dists = dists.clone();
        async move {
            let d = dists.get("signed").await.ok()?;
            (cond(&d, None, "Degraded")? == ("True".into(), "SecretInvalid".into())).then_some(d)
        }
    })
    .await;
    let (_, _, message) = cond_full(&d, None, "Degraded").expect("Degraded");
    assert!(
        message.starts_with("spec.trustedKeyGroups[0].secretRef:") && message.contains("KBAD"),
        "{message}"
    );
    let (status, reason, message) = cond_full(&d, Some("home"), "Applied").expect("Applied");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretInvalid")
    );
    assert!(
        message.contains("spec.trustedKeyGroups[0].secretRef"),
        "{message}"
    );
    assert_eq!(
        status_hash(&d).as_deref(),
        Some(hash2.as_str()),
        "last hash kept"
    );
    let (edge, hash) = region_config(&client, &ns, "signed-home")
        .await
        .expect("config");
    assert_eq!(
        (key_ids(&edge), hash),
        (
            vec!["K1EC".to_string(), "K2ROTATED".to_string()],
            hash2.clone()
        )
    );
    secrets
        .patch(
            "signing-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"KBAD": null}})),
        )
        .await
        .expect("remove the bad key");
    wait_for("recovered after the bad key was removed", prompt, || {
        applied("signed")
    })
    .await;

    // 4. A Secret that does not exist yet: reported, nothing applied; creating it is enough.
    let mut missing = dist.clone();
    missing.metadata.name = Some("later".into());
    missing.spec.trusted_key_groups[0].secret_ref.name = "later-keys".into();
    dists
        .create(&PostParams::default(), &missing)
        .await
        .expect("create Distribution with a missing Secret");
    let d = wait_for("SecretNotFound reported", long, || {
        let dists = dists.clone();
        async move {
            let d = dists.get("later").await.ok()?;
            (cond(&d, Some("home"), "Applied")? == ("False".into(), "SecretNotFound".into()))
                .then_some(d)
        }
    })
    .await;
    let (_, reason, message) = cond_full(&d, None, "Degraded").expect("Degraded");
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message
            .starts_with("spec.trustedKeyGroups[0].secretRef: Secret \"later-keys\" was not found"),
        "{message}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt("later-home")
            .await
            .expect("get")
            .is_none(),
        "nothing applied for a missing Secret"
    );
    quiesce(port).await;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "later-keys"},
                "stringData": {"KLATER": fixtures::EC_P256_PUBLIC_PEM}
            }))
            .expect("secret"),
        )
        .await
        .expect("create the missing Secret");
    wait_for("applied once the Secret exists", prompt, || {
        applied("later")
    })
    .await;
    let (edge, _) = region_config(&client, &ns, "later-home")
        .await
        .expect("config");
    assert_eq!(key_ids(&edge), ["KLATER"]);

    // 5. The API server rejects key-group and response-header mistakes, naming the field.
    let group = json!([{"name": "main", "secretRef": {"name": "k"}}]);
    let invalid = [
        (
            json!({"trustedKeyGroups": group, "behaviors": [{"pathPattern": "/p/*", "trustedKeyGroups": ["other"]}]}),
            "spec.behaviors[].trustedKeyGroups",
        ),
        (
            json!({"behaviors": [{"pathPattern": "/p/*", "trustedKeyGroups": ["main"]}]}),
            "spec.behaviors[].trustedKeyGroups",
        ),
        (
            json!({"trustedKeyGroups": group, "cache": {"trustedKeyGroups": ["other"]}}),
            "spec.cache.trustedKeyGroups",
        ),
        (
            json!({"trustedKeyGroups": [{"name": "a", "secretRef": {"name": "k"}}, {"name": "a", "secretRef": {"name": "j"}}]}),
            "spec.trustedKeyGroups: names must be unique",
        ),
        (
            json!({"trustedKeyGroups": [{"name": "a b", "secretRef": {"name": "k"}}]}),
            "spec.trustedKeyGroups[0].name",
        ),
        (
            json!({"responseHeadersPolicy": {"cors": {"allowOrigins": ["*"], "allowCredentials": true}}}),
            "spec.responseHeadersPolicy.cors.allowCredentials",
        ),
        (
            json!({"responseHeadersPolicy": {"cors": {"allowOrigins": ["app.example.com"]}}}),
            "spec.responseHeadersPolicy.cors.allowOrigins[0]",
        ),
        (
            json!({"responseHeadersPolicy": {"frameOptions": "ALLOW-FROM"}}),
            "spec.responseHeadersPolicy.frameOptions",
        ),
        (
            json!({"responseHeadersPolicy": {"referrerPolicy": "sometimes"}}),
            "spec.responseHeadersPolicy.referrerPolicy",
        ),
        (
            json!({"viewerLimits": {"headerReadTimeout": "0s"}}),
            "spec.viewerLimits.headerReadTimeout",
        ),
        (
            json!({"viewerLimits": {"maxUrlBytes": 10}}),
            "spec.viewerLimits.maxUrlBytes",
        ),
    ];
    let raw = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<Distribution>(&()),
    );
    for (i, (patch, field)) in invalid.into_iter().enumerate() {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
            "metadata": {"name": format!("bad-signed-{i}")}, "spec": spec_value(&patch)
        }))
        .expect("dynamic");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} must be rejected"));
        let msg = err.to_string();
        assert!(msg.contains(field), "case {i}: expected {field:?} in {msg}");
    }

    // 6. Clean up.
    for name in ["signed", "later"] {
        dists
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_for("Distributions gone", long, || {
        let dists = dists.clone();
        async move {
            dists
                .list(&Default::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    let _ = nss.delete(&ns, &DeleteParams::default()).await;
}

/// Deep-merges `patch` into `base` (objects merged, everything else replaced).
fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The raw spec for an invalid case: the minimal valid spec with the patch merged in.
fn spec_value(patch: &serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"origin": {"s3": {"bucket": "assets"}}, "regions": [{"name": "a"}]});
    if patch.get("origin").is_some() {
        spec["origin"] = json!({"s3": {}});
    }
    merge(&mut spec, patch);
    spec
}

// ---- Tenancy: ownership, namespaces, names, region lifecycle, drift ----

async fn create_namespaces(client: &Client, names: &[&str]) {
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in names {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    }
}

async fn delete_namespaces(client: &Client, names: &[&str]) {
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in names {
        let _ = nss.delete(n, &DeleteParams::default()).await;
    }
}

/// A Distribution without credentials (so no Secret mirror) with the given regions.
fn small_distribution(name: &str, regions: serde_json::Value) -> Distribution {
    serde_json::from_value(json!({
        "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
        "metadata": {"name": name},
        "spec": {"origin": {"s3": {"bucket": "assets"}}, "regions": regions}
    }))
    .expect("dist")
}

/// Waits until region `region` of `name` has condition `t` with `status` (and `reason`, when
/// given) for the current generation; returns the condition's message.
async fn wait_region(
    dists: &Api<Distribution>,
    name: &str,
    region: &str,
    t: &str,
    status: &str,
    reason: Option<&str>,
) -> String {
    let what = format!("{name}: region {region} {t}={status} {reason:?}");
    wait_for(&what, Duration::from_secs(120), || {
        let dists = dists.clone();
        async move {
            let d = dists.get(name).await.ok()?;
            if d.status.as_ref()?.observed_generation != d.metadata.generation {
                return None;
            }
            let (s, r, m) = cond_full(&d, Some(region), t)?;
            (s == status && reason.is_none_or(|want| r == want)).then_some(m)
        }
    })
    .await
}

/// Every object of the edge kinds in `ns` that kubefront manages, as (kind/name,
/// resourceVersion).
async fn object_versions(client: &Client, ns: &str) -> Vec<(String, String)> {
    let lp =
        kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=kubefront-operator");
    let mut out = Vec::new();
    let rv = |kind: &str, m: &kube::api::ObjectMeta| {
        (
            format!("{kind}/{}", m.name.clone().unwrap_or_default()),
            m.resource_version.clone().unwrap_or_default(),
        )
    };
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(rv("ConfigMap", &o.metadata));
    }
    for o in Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(rv("Service", &o.metadata));
    }
    for o in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(rv("Deployment", &o.metadata));
    }
    for o in Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(rv("PodDisruptionBudget", &o.metadata));
    }
    for o in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(rv("Secret", &o.metadata));
    }
    out.sort();
    out
}

/// Whether any of the five edge objects named `name` exists in `ns`.
/// Deletes Distribution `site` and waits until the region's edge object `object` in `edge_ns`
/// is gone (the operator's cleanup ran).
async fn delete_and_wait_clean(
    dists: &Api<Distribution>,
    client: &Client,
    edge_ns: &str,
    object: &str,
) {
    dists
        .delete("site", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("cleaned up", Duration::from_secs(120), || {
        let (client, edge_ns) = (client.clone(), edge_ns.to_string());
        async move { (!any_edge_object(&client, &edge_ns, object).await).then_some(()) }
    })
    .await;
}

async fn any_edge_object(client: &Client, ns: &str, name: &str) -> bool {
    let c = client.clone();
    Api::<ConfigMap>::namespaced(c.clone(), ns)
        .get_opt(name)
        .await
        .expect("get")
        .is_some()
        || Api::<Service>::namespaced(c.clone(), ns)
            .get_opt(name)
            .await
            .expect("get")
            .is_some()
        || Api::<Deployment>::namespaced(c.clone(), ns)
            .get_opt(name)
            .await
            .expect("get")
            .is_some()
        || Api::<PodDisruptionBudget>::namespaced(c.clone(), ns)
            .get_opt(name)
            .await
            .expect("get")
            .is_some()
        || Api::<Secret>::namespaced(c, ns)
            .get_opt(name)
            .await
            .expect("get")
            .is_some()
}

/// A pre-existing Service and ConfigMap with the names a region would render are never
/// modified, adopted or deleted: the region reports Conflict naming them, and they survive the
/// Distribution's deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_operator_did_not_create_are_never_touched() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("owner");
    create_namespaces(&client, &[&ns]).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "site-web", "labels": {"app": "site-web"}, "annotations": {"team": "victim"}},
            "spec": {"selector": {"app": "site-web"}, "ports": [{"port": 8080}]}
        }))
        .expect("svc"),
    )
    .await
    .expect("victim service");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "site-web", "labels": {"app": "site-web"}},
            "data": {"important": "yes"}
        }))
        .expect("cm"),
    )
    .await
    .expect("victim configmap");
    let before_svc = svcs.get("site-web").await.expect("svc");
    let before_cm = cms.get("site-web").await.expect("cm");

    let (_operator, _port) = start_operator(&path, &ns).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    dists
        .create(
            &PostParams::default(),
            &small_distribution("site", json!([{"name": "web", "replicas": 1}])),
        )
        .await
        .expect("create");
    let message = wait_region(&dists, "site", "web", "Degraded", "True", Some("Conflict")).await;
    for named in [
        format!("ConfigMap {ns}/site-web"),
        format!("Service {ns}/site-web"),
    ] {
        assert!(message.contains(&named), "{named} not in {message:?}");
    }
    let same = |before: &kube::api::ObjectMeta, after: &kube::api::ObjectMeta| {
        assert_eq!(before.resource_version, after.resource_version);
        assert_eq!(before.labels, after.labels);
        assert_eq!(before.annotations, after.annotations);
        assert!(after.owner_references.is_none());
    };
    let after_svc = svcs.get("site-web").await.expect("svc");
    same(&before_svc.metadata, &after_svc.metadata);
    assert_eq!(before_svc.spec, after_svc.spec, "selector untouched");
    let after_cm = cms.get("site-web").await.expect("cm");
    same(&before_cm.metadata, &after_cm.metadata);
    assert_eq!(before_cm.data, after_cm.data);
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt("site-web")
            .await
            .expect("get")
            .is_none(),
        "nothing written in the conflicting region"
    );

    dists
        .delete("site", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("Distribution gone", Duration::from_secs(120), || {
        let dists = dists.clone();
        async move { dists.get_opt("site").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let gone_svc = svcs
        .get("site-web")
        .await
        .expect("service survives deletion");
    assert_eq!(
        gone_svc.metadata.resource_version,
        before_svc.metadata.resource_version
    );
    let gone_cm = cms
        .get("site-web")
        .await
        .expect("configmap survives deletion");
    assert_eq!(gone_cm.data, before_cm.data);
    delete_namespaces(&client, &[&ns]).await;
}

/// A local region in another namespace is refused by default (status names the field, nothing
/// is written there) and applied once the admin allows the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_namespaces_need_the_admins_allowance() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("tenant");
    let edge_ns = format!("{ns}-edge");
    create_namespaces(&client, &[&ns, &edge_ns]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    {
        let (_operator, _) = start_operator(&path, &ns).await;
        dists
            .create(
                &PostParams::default(),
                &small_distribution(
                    "site",
                    json!([{"name": "home", "replicas": 1},
                           {"name": "far", "replicas": 1, "namespace": edge_ns}]),
                ),
            )
            .await
            .expect("create");
        let message = wait_region(
            &dists,
            "site",
            "far",
            "Degraded",
            "True",
            Some("NamespaceNotAllowed"),
        )
        .await;
        assert!(
            message.starts_with("spec.regions[1].namespace: "),
            "{message}"
        );
        wait_region(&dists, "site", "home", "Applied", "True", None).await;
        assert!(
            object_versions(&client, &edge_ns).await.is_empty(),
            "nothing written in the refused namespace"
        );
    }
    // The admin allows Distributions of `ns` to use `edge_ns` (operator restarted).
    let rule = format!("{ns}={edge_ns}");
    let (_operator, _) =
        start_operator_with(&path, &ns, &["--allow-target-namespace", &rule]).await;
    wait_region(&dists, "site", "far", "Applied", "True", None).await;
    assert!(any_edge_object(&client, &edge_ns, "site-far").await);
    delete_and_wait_clean(&dists, &client, &edge_ns, "site-far").await;
    delete_namespaces(&client, &[&ns, &edge_ns]).await;
}

/// `a/dup` and `b/dup` with the same region and target namespace (two operators, one per
/// tenant namespace): one is Ready, the other reports Conflict, and nothing in the target
/// namespace changes over 30 s once settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_names_in_two_namespaces_never_fight() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let base = unique_namespace("dup");
    let (a, b, shared) = (
        format!("{base}-a"),
        format!("{base}-b"),
        format!("{base}-s"),
    );
    create_namespaces(&client, &[&a, &b, &shared]).await;
    let (rule_a, rule_b) = (format!("{a}={shared}"), format!("{b}={shared}"));
    let (_op_a, port_a) =
        start_operator_with(&path, &a, &["--allow-target-namespace", &rule_a]).await;
    let (_op_b, port_b) =
        start_operator_with(&path, &b, &["--allow-target-namespace", &rule_b]).await;
    let regions = json!([{"name": "edge", "replicas": 1, "namespace": shared}]);
    let da: Api<Distribution> = Api::namespaced(client.clone(), &a);
    let db: Api<Distribution> = Api::namespaced(client.clone(), &b);
    da.create(
        &PostParams::default(),
        &small_distribution("dup", regions.clone()),
    )
    .await
    .expect("a/dup");
    wait_region(&da, "dup", "edge", "Applied", "True", None).await;
    db.create(&PostParams::default(), &small_distribution("dup", regions))
        .await
        .expect("b/dup");
    let message = wait_region(&db, "dup", "edge", "Degraded", "True", Some("Conflict")).await;
    assert!(
        message.contains(&format!("Distribution {a}/dup")),
        "{message}"
    );
    quiesce(port_a).await;
    quiesce(port_b).await;
    let before = object_versions(&client, &shared).await;
    assert!(!before.is_empty());
    let dist_versions = || async {
        (
            da.get("dup").await.expect("a").metadata.resource_version,
            db.get("dup").await.expect("b").metadata.resource_version,
        )
    };
    let dists_before = dist_versions().await;
    let writes_before = (
        metric(port_a, "kubefront_operator_writes_total").await,
        metric(port_b, "kubefront_operator_writes_total").await,
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        object_versions(&client, &shared).await,
        before,
        "an object in the shared namespace was rewritten"
    );
    assert_eq!(dist_versions().await, dists_before, "status flapped");
    assert_eq!(
        (
            metric(port_a, "kubefront_operator_writes_total").await,
            metric(port_b, "kubefront_operator_writes_total").await,
        ),
        writes_before
    );
    let deployment = Api::<Deployment>::namespaced(client.clone(), &shared)
        .get("dup-edge")
        .await
        .expect("deployment");
    assert_eq!(
        deployment
            .labels()
            .get("kubefront.io/distribution-namespace")
            .map(String::as_str),
        Some(a.as_str()),
        "the first Distribution keeps its objects"
    );
    // Deleting the loser leaves the winner's objects alone.
    db.delete("dup", &DeleteParams::default())
        .await
        .expect("delete b/dup");
    wait_for("b/dup gone", Duration::from_secs(120), || {
        let db = db.clone();
        async move { db.get_opt("dup").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(object_versions(&client, &shared).await, before);
    da.delete("dup", &DeleteParams::default())
        .await
        .expect("delete a/dup");
    wait_for("a/dup cleaned up", Duration::from_secs(120), || {
        let (client, shared) = (client.clone(), shared.clone());
        async move { (!any_edge_object(&client, &shared, "dup-edge").await).then_some(()) }
    })
    .await;
    delete_namespaces(&client, &[&a, &b, &shared]).await;
}

/// Moving a region to another namespace, then renaming it, removes the old objects; the new
/// ones are applied, and status records the exact target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_renamed_regions_leave_nothing_behind() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("move");
    let edge_ns = format!("{ns}-edge");
    create_namespaces(&client, &[&ns, &edge_ns]).await;
    let rule = format!("{ns}={edge_ns}");
    let (_operator, _) =
        start_operator_with(&path, &ns, &["--allow-target-namespace", &rule]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    dists
        .create(
            &PostParams::default(),
            &small_distribution("site", json!([{"name": "one", "replicas": 1}])),
        )
        .await
        .expect("create");
    wait_region(&dists, "site", "one", "Applied", "True", None).await;
    assert!(any_edge_object(&client, &ns, "site-one").await);

    let set_regions = |regions: serde_json::Value| {
        let dists = dists.clone();
        async move {
            dists
                .patch(
                    "site",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"regions": regions}})),
                )
                .await
                .expect("patch regions")
        }
    };
    set_regions(json!([{"name": "one", "replicas": 1, "namespace": edge_ns}])).await;
    wait_region(&dists, "site", "one", "Applied", "True", None).await;
    wait_for("old namespace emptied", Duration::from_secs(120), || {
        let (client, ns) = (client.clone(), ns.clone());
        async move { (!any_edge_object(&client, &ns, "site-one").await).then_some(()) }
    })
    .await;
    assert!(any_edge_object(&client, &edge_ns, "site-one").await);
    let d = dists.get("site").await.expect("get");
    let target = d
        .status
        .as_ref()
        .and_then(|s| s.regions.iter().find(|r| r.name == "one"))
        .and_then(|r| r.target.clone())
        .expect("structural target");
    assert_eq!(
        (target.namespace.as_str(), target.name.as_str()),
        (edge_ns.as_str(), "site-one")
    );
    assert!(target.kubeconfig_secret_ref.is_none());

    set_regions(json!([{"name": "two", "replicas": 1, "namespace": edge_ns}])).await;
    wait_region(&dists, "site", "two", "Applied", "True", None).await;
    wait_for(
        "renamed region's old objects gone",
        Duration::from_secs(120),
        || {
            let (client, edge_ns) = (client.clone(), edge_ns.clone());
            async move { (!any_edge_object(&client, &edge_ns, "site-one").await).then_some(()) }
        },
    )
    .await;
    assert!(any_edge_object(&client, &edge_ns, "site-two").await);
    wait_for(
        "status lists only the renamed region",
        Duration::from_secs(60),
        || {
            let dists = dists.clone();
            async move {
                let names: Vec<String> = dists
                    .get("site")
                    .await
                    .ok()?
                    .status?
                    .regions
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                (names == ["two"]).then_some(())
            }
        },
    )
    .await;
    delete_and_wait_clean(&dists, &client, &edge_ns, "site-two").await;
    delete_namespaces(&client, &[&ns, &edge_ns]).await;
}

/// The forget annotation unblocks prune and deletion of regions whose kubeconfig points at
/// an API server that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forget_annotation_unblocks_dead_regions() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("dead");
    create_namespaces(&client, &[&ns]).await;
    // A kubeconfig for a port nobody listens on.
    let dead_port = free_port();
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: gone, cluster: {{server: \"https://127.0.0.1:{dead_port}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: abc}}}}]\ncontexts: [{{name: gone, context: {{cluster: gone, user: u}}}}]\ncurrent-context: gone\n"
    );
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "gone-kubeconfig"}, "stringData": {"value": kc}}),
            )
            .expect("secret"),
        )
        .await
        .expect("kubeconfig secret");
    let (_operator, _) = start_operator(&path, &ns).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let dead = |name: &str| {
        json!({"name": name, "replicas": 1, "namespace": "edge",
        "cluster": {"kubeconfigSecretRef": {"name": "gone-kubeconfig"}}})
    };
    dists
        .create(
            &PostParams::default(),
            &small_distribution(
                "site",
                json!([{"name": "home", "replicas": 1}, dead("dead1"), dead("dead2")]),
            ),
        )
        .await
        .expect("create");
    wait_region(
        &dists,
        "site",
        "dead2",
        "Degraded",
        "True",
        Some("Unreachable"),
    )
    .await;

    // Prune: dead2 removed from the spec cannot be pruned and stays listed, naming the way out.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"regions": [{"name": "home", "replicas": 1}, dead("dead1")]}}),
            ),
        )
        .await
        .expect("drop dead2");
    let message = wait_region(
        &dists,
        "site",
        "dead2",
        "Degraded",
        "True",
        Some("PruneFailed"),
    )
    .await;
    assert!(
        message.contains("kubefront.io/forget-unreachable-regions=true"),
        "{message}"
    );
    let annotate = |value: serde_json::Value| {
        let dists = dists.clone();
        async move {
            dists
                .patch(
                    "site",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {"kubefront.io/forget-unreachable-regions": value}}})),
                )
                .await
                .expect("annotate")
        }
    };
    annotate(json!("true")).await;
    wait_for("dead2 forgotten", Duration::from_secs(120), || {
        let dists = dists.clone();
        async move {
            let st = dists.get("site").await.ok()?.status?;
            (!st.regions.iter().any(|r| r.name == "dead2")).then_some(())
        }
    })
    .await;
    annotate(serde_json::Value::Null).await;

    // Deletion: blocked by dead1 (CleanupFailed naming the annotation) until it is set.
    dists
        .delete("site", &DeleteParams::default())
        .await
        .expect("delete");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "CleanupFailed event naming the annotation",
        Duration::from_secs(120),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&Default::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("CleanupFailed")
                            && e.note.as_deref().is_some_and(|n| {
                                n.contains("kubefront.io/forget-unreachable-regions")
                            })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let d = dists.get("site").await.expect("still there while blocked");
    assert!(d.metadata.deletion_timestamp.is_some());
    annotate(json!("true")).await;
    wait_for("Distribution gone", Duration::from_secs(120), || {
        let dists = dists.clone();
        async move { dists.get_opt("site").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        !any_edge_object(&client, &ns, "site-home").await,
        "the live region was cleaned"
    );
    delete_namespaces(&client, &[&ns]).await;
}

/// Drift without blind spots: a field removed from the spec (a Service annotation) is removed
/// from the live object, and a quantity the API server normalizes (`cpu: 0.5` → `500m`)
/// causes no write over three resyncs (counted by the operator's writes metric).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_follows_the_spec_without_needless_writes() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("drift");
    create_namespaces(&client, &[&ns]).await;
    let (_operator, port) = start_operator_with(&path, &ns, &["--resync-seconds", "5"]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let region = |annotations: serde_json::Value| {
        json!([{"name": "home", "replicas": 1,
                "resources": {"requests": {"cpu": "0.5", "memory": "300Mi"}, "limits": {"memory": "400Mi"}},
                "service": {"annotations": annotations}}])
    };
    dists
        .create(
            &PostParams::default(),
            &small_distribution("site", region(json!({"keep": "1", "drop": "2"}))),
        )
        .await
        .expect("create");
    wait_region(&dists, "site", "home", "Applied", "True", None).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let annotations = |svcs: Api<Service>| async move {
        svcs.get("site-home")
            .await
            .expect("svc")
            .metadata
            .annotations
            .unwrap_or_default()
    };
    let a = annotations(svcs.clone()).await;
    assert_eq!(a.get("drop").map(String::as_str), Some("2"));
    let dep = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("site-home")
        .await
        .expect("dep");
    let cpu = dep.spec.template.spec.as_ref().and_then(|p| {
        p.containers[0]
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("cpu")
            .cloned()
    });
    assert_eq!(
        cpu.map(|q| q.0),
        Some("500m".to_string()),
        "normalized by the API server"
    );

    // Three resyncs without a change: no write at all.
    quiesce_writes(port).await;
    let writes = metric(port, "kubefront_operator_writes_total").await;
    let reconciles = metric(port, "kubefront_operator_reconciles_total").await;
    wait_for("three resyncs", Duration::from_secs(120), || async move {
        (metric(port, "kubefront_operator_reconciles_total").await >= reconciles + 3.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        metric(port, "kubefront_operator_writes_total").await,
        writes,
        "a normalized quantity caused writes on resync"
    );

    // A removed annotation is removed from the live object.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regions": region(json!({"keep": "1"}))}})),
        )
        .await
        .expect("drop annotation");
    wait_for(
        "annotation removed from the Service",
        Duration::from_secs(120),
        || {
            let svcs = svcs.clone();
            async move {
                let a = annotations(svcs).await;
                (!a.contains_key("drop") && a.get("keep").map(String::as_str) == Some("1"))
                    .then_some(())
            }
        },
    )
    .await;
    delete_namespaces(&client, &[&ns]).await;
}

/// Waits until the writes metric has not moved for 10 s (the first apply and the Deployment
/// controller's follow-ups have settled).
async fn quiesce_writes(port: u16) {
    let start = Instant::now();
    let mut last = metric(port, "kubefront_operator_writes_total").await;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = metric(port, "kubefront_operator_writes_total").await;
        if now == last {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the operator kept writing for two minutes"
        );
        last = now;
    }
}

/// Deleting a namespace that holds a Distribution and the kubeconfig Secret of its remote
/// region: the Secret goes at once, the operator still cleans the remote region (with the
/// client it built before) and the namespace does not stay Terminating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_with_its_kubeconfig_secret_finishes_and_cleans_up() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, kc_text) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("nsdel");
    let (remote_ns, lease_ns) = (format!("{ns}-remote"), format!("{ns}-lease"));
    create_namespaces(&client, &[&ns, &remote_ns, &lease_ns]).await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "remote-kubeconfig"}, "stringData": {"value": kc_text}}),
            )
            .expect("secret"),
        )
        .await
        .expect("kubeconfig secret");
    let (_operator, _) = start_operator_in(&path, &ns, &lease_ns, &[]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    dists
        .create(
            &PostParams::default(),
            &small_distribution(
                "site",
                json!([{"name": "home", "replicas": 1},
                       {"name": "far", "replicas": 1, "namespace": remote_ns,
                        "cluster": {"kubeconfigSecretRef": {"name": "remote-kubeconfig"}}}]),
            ),
        )
        .await
        .expect("create");
    wait_region(&dists, "site", "far", "Applied", "True", None).await;
    assert!(any_edge_object(&client, &remote_ns, "site-far").await);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for("namespace gone", Duration::from_secs(180), || {
        let (nss, ns) = (nss.clone(), ns.clone());
        async move { nss.get_opt(&ns).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        !any_edge_object(&client, &remote_ns, "site-far").await,
        "the remote region was cleaned up"
    );
    delete_namespaces(&client, &[&remote_ns, &lease_ns]).await;
}

/// (holder, resourceVersion) of the operator's Lease in `ns`.
async fn lease_holder(client: &Client, ns: &str) -> Option<(String, String)> {
    let l = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns)
        .get_opt("kubefront-operator")
        .await
        .ok()??;
    Some((
        l.spec?.holder_identity?,
        l.metadata.resource_version.unwrap_or_default(),
    ))
}

fn signal(op: &Operator, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &op.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig}");
}

/// Everything in `ns` a woken stale leader could write, as what only the operator changes:
/// the edge objects' entries of its field manager (with timestamps), the Distribution's
/// resourceVersion (its status is the operator's alone), the Lease, and events it reported.
async fn operator_writes(client: &Client, ns: &str) -> Vec<String> {
    fn mine(kind: &str, m: &kube::api::ObjectMeta) -> String {
        let fields: Vec<String> = m
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.manager.as_deref() == Some("kubefront-operator"))
            .map(|f| format!("{:?}@{:?}", f.operation, f.time))
            .collect();
        format!(
            "{kind}/{} gen {:?} {fields:?}",
            m.name.as_deref().unwrap_or_default(),
            m.generation
        )
    }
    let lp =
        kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=kubefront-operator");
    let mut out = Vec::new();
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(mine("ConfigMap", &o.metadata));
    }
    for o in Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(mine("Service", &o.metadata));
    }
    for o in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(mine("Deployment", &o.metadata));
    }
    for o in Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.push(mine("PodDisruptionBudget", &o.metadata));
    }
    for d in Api::<Distribution>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list")
    {
        out.push(format!(
            "Distribution/{} rv {:?}",
            d.name_any(),
            d.resource_version()
        ));
    }
    for e in Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list")
    {
        if e.reporting_controller.as_deref() == Some("kubefront-operator") {
            out.push(format!(
                "Event/{} rv {:?}",
                e.name_any(),
                e.resource_version()
            ));
        }
    }
    out.push(format!("Lease {:?}", lease_holder(client, ns).await));
    out.sort();
    out
}

/// Leader election with client-go semantics on the real API server: a frozen leader
/// (`kill -STOP`) is replaced once its lease ran out, and when it wakes it writes nothing and
/// exits (its renew deadline passed on its monotonic clock, so it stops before acting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_writes_nothing_when_it_wakes() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("lease");
    create_namespaces(&client, &[&ns]).await;
    let (mut a, _) = start_operator_as(&path, &ns, &ns, &[], Some("op-a")).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    dists
        .create(
            &PostParams::default(),
            &small_distribution("site", json!([{"name": "home", "replicas": 1}])),
        )
        .await
        .expect("create");
    wait_region(&dists, "site", "home", "Applied", "True", None).await;
    assert_eq!(
        lease_holder(&client, &ns).await.map(|l| l.0).as_deref(),
        Some("op-a")
    );
    let (b, _) = start_operator_as(&path, &ns, &ns, &[], Some("op-b")).await;

    signal(&a, "-STOP");
    let stopped = Instant::now();
    wait_for("op-b takes the lease", Duration::from_secs(90), || {
        let client = client.clone();
        let ns = ns.clone();
        async move { (lease_holder(&client, &ns).await?.0 == "op-b").then_some(()) }
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("takeover {took:?} after the leader froze (lease 15 s, retry 2 s)");
    // op-a renewed at most one retry period (2 s) before it froze, and op-b may take over
    // only 15 s after it saw that renewal: never early.
    assert!(
        took >= Duration::from_secs(12),
        "lease taken after {took:?}, before it could have run out"
    );

    // op-b leads: it applies a change.
    let patch = |ttl: &str| Patch::Merge(json!({"spec": {"cache": {"defaultTTL": ttl}}}));
    dists
        .patch("site", &PatchParams::default(), &patch("12h"))
        .await
        .expect("patch");
    wait_for("op-b applies the change", Duration::from_secs(60), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let (edge, _) = region_config(&client, &ns, "site-home").await?;
            (edge.cache.default_ttl.to_string() == "12h").then_some(())
        }
    })
    .await;

    // Freeze op-b too, leave work for a leader, wake op-a: it must not do it.
    signal(&b, "-STOP");
    dists
        .patch("site", &PatchParams::default(), &patch("6h"))
        .await
        .expect("patch");
    let before = operator_writes(&client, &ns).await;
    signal(&a, "-CONT");
    let exited = wait_for("op-a exits", Duration::from_secs(60), || {
        let status = a.0.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(!exited.success(), "op-a exits with an error: {exited:?}");
    let after = operator_writes(&client, &ns).await;
    assert_eq!(before, after, "the woken stale leader wrote something");
    let (edge, _) = region_config(&client, &ns, "site-home").await.expect("cm");
    assert_eq!(edge.cache.default_ttl.to_string(), "12h");
    signal(&b, "-CONT");
    drop(b);
    // No operator is left to run the finalizer.
    let _ = dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    delete_namespaces(&client, &[&ns]).await;
}

/// Every way a region's cluster can fail is reported in status under its own reason, and each
/// is announced once by a Warning Event naming the region: a missing kubeconfig Secret, a
/// Secret without the key, a Secret that holds no kubeconfig, credentials the API server
/// rejects (401), an identity without RBAC (403), a target namespace that does not exist, and
/// a port nobody listens on. The healthy region is applied regardless, and rotating a broken
/// kubeconfig Secret to working credentials brings its region in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_region_failure_has_its_reason_and_an_event() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("reasons");
    create_namespaces(&client, &[&ns]).await;

    let admin = Kubeconfig::read_from(&path).expect("admin kubeconfig");
    let cluster = admin.clusters[0].cluster.as_ref().expect("cluster");
    let server = cluster.server.clone().expect("server");
    let ca = cluster
        .certificate_authority_data
        .clone()
        .expect("inline CA");
    let token_kubeconfig = |server: &str, token: &str| {
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", certificate-authority-data: {ca}}}}}]\nusers: [{{name: u, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        )
    };
    // An identity the API server knows but that has no RBAC at all.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "nobody"}})).expect("sa"),
    )
    .await
    .expect("service account");
    let token = sas
        .create_token_request(
            "nobody",
            &PostParams::default(),
            &serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
                .expect("token request"),
        )
        .await
        .expect("token for the service account")
        .status
        .expect("token status")
        .token
        .expect("token");
    let admin_yaml = std::fs::read_to_string(&path).expect("admin kubeconfig");
    let dead_port = free_port();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, value) in [
        ("nokey-kubeconfig", "irrelevant".to_string()),
        (
            "garbage-kubeconfig",
            "clusters: [this is not {a kubeconfig".to_string(),
        ),
        (
            "badtoken-kubeconfig",
            token_kubeconfig(&server, "not-a-valid-token"),
        ),
        ("noperm-kubeconfig", token_kubeconfig(&server, &token)),
        ("admin-kubeconfig", admin_yaml),
        (
            "dead-kubeconfig",
            token_kubeconfig(&format!("https://127.0.0.1:{dead_port}"), "x"),
        ),
    ] {
        let key = if name == "nokey-kubeconfig" {
            "other"
        } else {
            "value"
        };
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": name}, "stringData": {key: value}}),
                )
                .expect("secret"),
            )
            .await
            .expect("kubeconfig secret");
    }
    let (_operator, _) = start_operator(&path, &ns).await;
    let remote = |region: &str, secret: &str, namespace: &str| {
        json!({"name": region, "replicas": 1, "namespace": namespace,
               "cluster": {"kubeconfigSecretRef": {"name": secret}}})
    };
    let missing_ns = format!("{ns}-absent");
    let cases = [
        ("nosecret", "KubeconfigSecretNotFound"),
        ("nokey", "KubeconfigKeyMissing"),
        ("garbage", "KubeconfigInvalid"),
        ("badtoken", "Unauthorized"),
        ("noperm", "Forbidden"),
        ("nons", "NamespaceNotFound"),
        ("dead", "Unreachable"),
    ];
    let regions = json!([
        {"name": "home", "replicas": 1},
        remote("nosecret", "absent-kubeconfig", "edge"),
        remote("nokey", "nokey-kubeconfig", "edge"),
        remote("garbage", "garbage-kubeconfig", "edge"),
        // In a namespace that exists: once its credentials are fixed it must apply.
        remote("badtoken", "badtoken-kubeconfig", &ns),
        remote("noperm", "noperm-kubeconfig", "edge"),
        remote("nons", "admin-kubeconfig", &missing_ns),
        remote("dead", "dead-kubeconfig", "edge"),
    ]);
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    dists
        .create(&PostParams::default(), &small_distribution("site", regions))
        .await
        .expect("create");
    wait_region(&dists, "site", "home", "Applied", "True", None).await;
    for (region, reason) in cases {
        let message = wait_region(&dists, "site", region, "Degraded", "True", Some(reason)).await;
        assert!(!message.is_empty(), "{region}: {reason} without a message");
    }

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let seen = wait_for(
        "a Warning event per failing region",
        Duration::from_secs(60),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&Default::default()).await.ok()?;
                let warnings: Vec<(String, String, i32)> = list
                    .items
                    .iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .map(|e| {
                        let repeats = e.series.as_ref().map_or(1, |s| s.count);
                        (
                            e.reason.clone().unwrap_or_default(),
                            e.note.clone().unwrap_or_default(),
                            repeats,
                        )
                    })
                    .collect();
                cases
                    .iter()
                    .all(|(region, reason)| {
                        warnings.iter().any(|(r, n, _)| {
                            r == reason && n.starts_with(&format!("region {region}: "))
                        })
                    })
                    .then_some(warnings)
            }
        },
    )
    .await;
    // Announced once, not on every retry: one event per failing region and no repeats
    // counted in its series, although failing regions are retried with backoff meanwhile.
    for (region, reason) in cases {
        let times: i32 = seen
            .iter()
            .filter(|(r, n, _)| r == reason && n.starts_with(&format!("region {region}: ")))
            .map(|(_, _, repeats)| *repeats)
            .sum();
        assert_eq!(
            times, 1,
            "{region}: {reason} announced {times} times: {seen:#?}"
        );
    }

    // Rotating a kubeconfig Secret (new credentials under the same name) replaces the
    // region's client: the 401 region applies with the new identity.
    secrets
        .patch(
            "badtoken-kubeconfig",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"value": std::fs::read_to_string(&path).expect("admin kubeconfig")}})),
        )
        .await
        .expect("rotate the kubeconfig Secret");
    wait_region(&dists, "site", "badtoken", "Applied", "True", None).await;
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt("site-badtoken")
            .await
            .expect("get")
            .is_some(),
        "the rotated region's ConfigMap was applied"
    );

    // Leave nothing behind: the dead regions cannot be cleaned, so forget them.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "kubefront.io/forget-unreachable-regions": "true"}}})),
        )
        .await
        .expect("annotate");
    dists
        .delete("site", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("Distribution gone", Duration::from_secs(120), || {
        let dists = dists.clone();
        async move { dists.get_opt("site").await.ok()?.is_none().then_some(()) }
    })
    .await;
    delete_namespaces(&client, &[&ns]).await;
}

// ---- HTTP origins, Secret-backed headers, failover, origin shield ----

/// The API server compiles and enforces the origin rules, and the real operator renders an HTTP
/// origin with a Secret-backed header and CA, failover, and an origin shield: the child region
/// fetches through the shield's Service and falls back to the real origin, and no secret value
/// is ever in a ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_origin_with_secret_headers_and_an_origin_shield() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("http");
    create_namespaces(&client, &[&ns]).await;

    let http = json!({"http": {"url": "https://origin.example.com"}});
    let rejected = [
        (
            json!({"origin": {"s3": {"bucket": "assets"}, "http": {"url": "https://o.example"}}}),
            "set exactly one of spec.origin.s3 and spec.origin.http",
        ),
        (
            json!({"origin": {"customHeaders": [{"name": "X-A", "value": "b"}]}}),
            "set exactly one of spec.origin.s3 and spec.origin.http",
        ),
        (
            json!({"origin": {"http": {"url": "https://o.example/?a=b"}}}),
            "url must start with http:// or https:// and contain no '?' or '#'",
        ),
        (
            json!({"origin": {"http": {"url": "origin.example.com"}}}),
            "url must start with http:// or https://",
        ),
        (
            json!({"origin": {"http": {"url": "https://o.example"}, "customHeaders": [
                {"name": "X-A", "value": "b", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}),
            "customHeaders: set exactly one of value and valueFrom",
        ),
        (
            json!({"originShield": {"region": "nope"}}),
            "spec.originShield.region must be the name of an entry of spec.regions",
        ),
    ];
    let raw = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<Distribution>(&()),
    );
    for (i, (patch, want)) in rejected.into_iter().enumerate() {
        let mut spec = json!({"origin": {}, "regions": [{"name": "a"}]});
        if patch.get("origin").is_none() {
            spec["origin"] = http.clone();
        }
        merge(&mut spec, &patch);
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec
        }))
        .expect("dynamic");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} must be rejected"));
        let msg = err.to_string();
        assert!(msg.contains(want), "case {i}: expected {want:?} in {msg}");
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, key, value) in [
        ("origin-auth", "token", "e2e-origin-secret-value"),
        (
            "origin-ca",
            "ca.crt",
            "-----BEGIN CERTIFICATE-----\nE2E\n-----END CERTIFICATE-----\n",
        ),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": name}, "stringData": {key: value}}),
                )
                .expect("secret"),
            )
            .await
            .expect("create secret");
    }
    let (_operator, _port) = start_operator(&path, &ns).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let dist: Distribution = serde_json::from_value(json!({
        "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
        "metadata": {"name": "cdn"},
        "spec": {
            "origin": {
                "http": {"url": "https://origin.example.com/site", "tls": {"caSecretRef": {"name": "origin-ca"}}},
                "customHeaders": [{"name": "X-Origin-Secret", "valueFrom": {"secretKeyRef": {"name": "origin-auth", "key": "token"}}}],
                "failover": {"secondary": {"s3": {"bucket": "assets"}}}
            },
            "originShield": {"region": "shield"},
            "regions": [{"name": "shield", "replicas": 1}, {"name": "child", "replicas": 1}]
        }
    }))
    .expect("dist");
    dists
        .create(&PostParams::default(), &dist)
        .await
        .expect("create");
    wait_region(&dists, "cdn", "child", "Applied", "True", None).await;
    wait_region(&dists, "cdn", "shield", "Applied", "True", None).await;

    let (child, _) = region_config(&client, &ns, "cdn-child")
        .await
        .expect("child config");
    let (shield, _) = region_config(&client, &ns, "cdn-shield")
        .await
        .expect("shield config");
    let shield_url = format!("http://cdn-shield.{ns}.svc:80");
    assert_eq!(
        child.origin.http.as_ref().map(|h| h.url.as_str()),
        Some(shield_url.as_str())
    );
    let f = child.origin.failover.as_ref().expect("child failover");
    assert_eq!(
        f.secondary.http.as_ref().map(|h| h.url.as_str()),
        Some("https://origin.example.com/site"),
        "the child falls back to the real origin"
    );
    assert_eq!(f.status_codes, [500, 502, 503, 504]);
    assert_eq!(
        shield.origin.http.as_ref().map(|h| h.url.as_str()),
        Some("https://origin.example.com/site")
    );
    assert_eq!(
        shield
            .origin
            .failover
            .as_ref()
            .and_then(|f| f.secondary.s3.as_ref())
            .map(|s| s.bucket.as_str()),
        Some("assets"),
        "the shield keeps the spec's failover"
    );

    let token_secret = secrets
        .get("cdn.origin-shield")
        .await
        .expect("shield token Secret");
    assert_eq!(
        token_secret
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].name.as_str()),
        Some("cdn")
    );
    let token = token_secret.data.as_ref().expect("data")["shield-token"].clone();
    for region in ["cdn-child", "cdn-shield"] {
        let mirror = secrets.get(region).await.expect("mirrored Secret");
        let data = mirror.data.expect("data");
        assert_eq!(data["origin-header-0"].0, b"e2e-origin-secret-value");
        assert_eq!(data["shield-token"], token);
        assert!(data.contains_key("origin-ca.crt"));
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get(region)
            .await
            .expect("cm");
        let text = &cm.data.expect("data")["edge.yaml"];
        assert!(!text.contains("e2e-origin-secret-value"), "{text}");
        assert!(!text.contains(std::str::from_utf8(&token.0).expect("hex")));
        let dep = Api::<Deployment>::namespaced(client.clone(), &ns)
            .get(region)
            .await
            .expect("deployment");
        let pod = dep.spec.template.spec.expect("pod");
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "origin-secrets")
            .expect("origin-secrets mount");
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/kubefront-origin", Some(true))
        );
    }

    dists
        .delete("cdn", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("Distribution gone", Duration::from_secs(120), || {
        let dists = dists.clone();
        async move { dists.get_opt("cdn").await.ok()?.is_none().then_some(()) }
    })
    .await;
    delete_namespaces(&client, &[&ns]).await;
}

// ---- Autoscaling and placement ----

/// What the test's stand-in for the HorizontalPodAutoscaler controller writes through the
/// scale subresource (no metrics server runs, so the real controller never changes a count
/// within the bounds).
const STAND_IN_AUTOSCALER: &str = "e2e-autoscaler";

/// The region `home` of [`autoscaled_regions_are_not_fought_and_carry_their_pod_settings`],
/// with or without autoscaling.
fn placed_region(autoscaling: bool) -> serde_json::Value {
    let mut r = json!({"name": "home", "replicas": 2,
        "pod": {"priorityClassName": "edge-critical",
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/edge"}}}});
    if autoscaling {
        r["autoscaling"] =
            json!({"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60});
    }
    json!([r])
}

/// Scales `site-home` as an autoscaler does (the scale subresource, its own field manager).
async fn scale_like_an_autoscaler(deps: &Api<Deployment>, replicas: i32) {
    deps.patch_scale(
        "site-home",
        &PatchParams {
            field_manager: Some(STAND_IN_AUTOSCALER.into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn replicas_of(deps: &Api<Deployment>) -> Option<i32> {
    deps.get("site-home").await.ok()?.spec.replicas
}

/// Waits for `n` more reconciles of the operator (its resync is short here).
async fn reconciles(port: u16, n: f64) {
    let start = metric(port, "kubefront_operator_reconciles_total").await;
    wait_for(
        &format!("{n} reconciles"),
        Duration::from_secs(120),
        || async move {
            (metric(port, "kubefront_operator_reconciles_total").await >= start + n).then_some(())
        },
    )
    .await;
}

/// `regions[].autoscaling` renders an HPA with the spec's bounds; the operator leaves the
/// Deployment's count to the autoscaler over several reconciles while it changes it; removing
/// autoscaling deletes the HPA and applies the spec's count again. Pod settings (Distribution
/// defaults and region overrides) reach the Deployment, and the ServiceAccount the operator
/// creates carries the workload identity annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaled_regions_are_not_fought_and_carry_their_pod_settings() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("hpa");
    create_namespaces(&client, &[&ns]).await;
    let (_operator, port) = start_operator_with(&path, &ns, &["--resync-seconds", "2"]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let dist: Distribution = serde_json::from_value(json!({
        "apiVersion": "kubefront.io/v1alpha1", "kind": "Distribution",
        "metadata": {"name": "site"},
        "spec": {"origin": {"s3": {"bucket": "assets"}},
                 "pod": {"nodeSelector": {"kubefront.io/pool": "edge"},
                         "priorityClassName": "edge-default",
                         "podLabels": {"team": "cdn"},
                         "podAnnotations": {"prometheus.io/scrape": "true"},
                         "imagePullSecrets": [{"name": "registry-creds"}]},
                 "regions": placed_region(true)}
    }))
    .expect("dist");
    dists
        .create(&PostParams::default(), &dist)
        .await
        .expect("create");
    wait_region(&dists, "site", "home", "Applied", "True", None).await;

    // The HPA, with the spec's bounds and target, on the region's Deployment.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let hpa = hpas.get("site-home").await.expect("hpa");
    assert_eq!(hpa.spec.scale_target_ref.name, "site-home");
    assert_eq!(hpa.spec.scale_target_ref.kind, "Deployment");
    assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(2), 6));
    let target = hpa.spec.metrics.as_ref().and_then(|m| {
        let r = m.first()?.resource.as_ref()?;
        Some((r.name.clone(), r.target.average_utilization))
    });
    assert_eq!(target, Some(("cpu".to_string(), Some(60))));

    // Pod settings: the region's overrides, the Distribution's defaults, the operator's own.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep = deps.get("site-home").await.expect("dep");
    let tpl = &dep.spec.template;
    let pod = tpl.spec.as_ref().expect("pod spec");
    assert_eq!(pod.priority_class_name.as_deref(), Some("edge-critical"));
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|n| n.get("kubefront.io/pool"))
            .map(String::as_str),
        Some("edge")
    );
    assert_eq!(
        pod.tolerations
            .as_ref()
            .and_then(|t| t.first())
            .and_then(|t| t.key.as_deref()),
        Some("dedicated")
    );
    assert_eq!(
        pod.image_pull_secrets
            .as_ref()
            .and_then(|s| s.first())
            .map(|s| s.name.as_str()),
        Some("registry-creds")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("site-home"));
    let spread: Vec<&str> = pod
        .topology_spread_constraints
        .iter()
        .flatten()
        .map(|c| c.topology_key.as_str())
        .collect();
    assert_eq!(
        spread,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    let pre_stop = pod.containers[0]
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(
        pre_stop,
        Some(kubefront_operator::render::PRE_STOP_SLEEP_SECONDS)
    );
    let meta = tpl.metadata.as_ref().expect("template metadata");
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    assert_eq!(label("team").as_deref(), Some("cdn"));
    assert_eq!(label("kubefront.io/region").as_deref(), Some("home"));
    assert_eq!(
        meta.annotations
            .as_ref()
            .and_then(|a| a.get("prometheus.io/scrape"))
            .map(String::as_str),
        Some("true")
    );
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("site-home")
        .await
        .expect("service account");
    assert_eq!(
        sa.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
            .map(String::as_str),
        Some("arn:aws:iam::111122223333:role/edge")
    );

    // Created without a count, the Deployment starts at the autoscaler's minimum.
    wait_for("replicas at minReplicas", Duration::from_secs(60), || {
        let deps = deps.clone();
        async move { (replicas_of(&deps).await == Some(2)).then_some(()) }
    })
    .await;

    // The autoscaler changes the count; three reconciles later each value is still there,
    // and the Deployment was not written at all.
    let deployment_writes = || metric(port, "kubefront_operator_writes_total{kind=\"Deployment\"}");
    for replicas in [5, 3] {
        let before = deployment_writes().await;
        assert!(before > 0.0, "the Deployment's writes are counted");
        scale_like_an_autoscaler(&deps, replicas).await;
        reconciles(port, 3.0).await;
        assert_eq!(
            replicas_of(&deps).await,
            Some(replicas),
            "the operator reset the autoscaler's count"
        );
        assert_eq!(
            deployment_writes().await,
            before,
            "the Deployment was written"
        );
        let d = dists.get("site").await.expect("dist");
        let st = d.status.as_ref().and_then(|s| s.regions.first());
        assert_eq!(st.map(|r| r.replicas), Some(replicas), "status follows it");
    }

    // Autoscaling off: the HPA goes and the spec's count is applied again.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regions": placed_region(false)}})),
        )
        .await
        .expect("autoscaling off");
    wait_for(
        "HPA deleted and replicas restored",
        Duration::from_secs(120),
        || {
            let (hpas, deps) = (hpas.clone(), deps.clone());
            async move {
                let gone = hpas.get_opt("site-home").await.ok()?.is_none();
                (gone && replicas_of(&deps).await == Some(2)).then_some(())
            }
        },
    )
    .await;
    // And the spec's count holds: a stray scale is put back.
    scale_like_an_autoscaler(&deps, 4).await;
    wait_for(
        "replicas back at the spec's",
        Duration::from_secs(60),
        || {
            let deps = deps.clone();
            async move { (replicas_of(&deps).await == Some(2)).then_some(()) }
        },
    )
    .await;

    // Deleting the Distribution removes the ServiceAccount with the rest.
    delete_and_wait_clean(&dists, &client, &ns, "site-home").await;
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    wait_for("ServiceAccount removed", Duration::from_secs(60), || {
        let sas = sas.clone();
        async move { sas.get_opt("site-home").await.ok()?.is_none().then_some(()) }
    })
    .await;
    delete_namespaces(&client, &[&ns]).await;
}

/// An HPA the operator did not create, named like a region's, is neither adopted nor
/// deleted: the region reports Conflict and the object survives autoscaling being removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_the_operator_did_not_create_is_never_touched() {
    let Some(path) = kubeconfig_path() else {
        return;
    };
    let (client, _) = connect(&path).await;
    install_crd(&client).await;
    let ns = unique_namespace("hpa-foreign");
    create_namespaces(&client, &[&ns]).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let foreign: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "site-home", "labels": {"app": "mine"}},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"},
                 "minReplicas": 1, "maxReplicas": 3}
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign hpa");
    let (_operator, _port) = start_operator_with(&path, &ns, &["--resync-seconds", "2"]).await;
    let dists: Api<Distribution> = Api::namespaced(client.clone(), &ns);
    let auto = json!([{"name": "home", "replicas": 1,
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}]);
    dists
        .create(&PostParams::default(), &small_distribution("site", auto))
        .await
        .expect("create");
    let msg = wait_region(&dists, "site", "home", "Degraded", "True", Some("Conflict")).await;
    assert!(msg.contains("HorizontalPodAutoscaler"), "{msg}");
    let unchanged = hpas.get("site-home").await.expect("still there");
    assert_eq!(unchanged.spec.scale_target_ref.name, "other");
    assert_eq!(unchanged.spec.max_replicas, 3);
    // Without autoscaling the region applies, and the stranger's HPA stays.
    dists
        .patch(
            "site",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regions": [{"name": "home", "replicas": 1}]}})),
        )
        .await
        .expect("autoscaling off");
    wait_region(&dists, "site", "home", "Applied", "True", None).await;
    assert_eq!(
        hpas.get("site-home")
            .await
            .expect("still there")
            .spec
            .scale_target_ref
            .name,
        "other"
    );
    delete_and_wait_clean(&dists, &client, &ns, "site-home").await;
    assert!(hpas.get_opt("site-home").await.expect("get").is_some());
    delete_namespaces(&client, &[&ns]).await;
}
