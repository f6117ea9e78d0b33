//! `kubefront-operator run` (the controller) and `kubefront-operator crd` (prints the CRD).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{controller, watcher, Controller};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use kubefront_operator::crd::{crd_yaml, Distribution};
use kubefront_operator::lease::{LeaderElector, Leadership, Lost, Timing};
use kubefront_operator::metrics::Metrics;
use kubefront_operator::reconcile::{self, Context, RemoteWatches};
use kubefront_operator::regions::{KubeconfigClientFactory, Regions};
use kubefront_operator::render::MANAGED_SELECTOR;
use kubefront_operator::telemetry::{self, LogFormat};
use kubefront_operator::tenancy::TargetNamespacePolicy;

#[derive(Parser)]
#[command(
    name = "kubefront-operator",
    version,
    about = "kubefront control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the current kubeconfig / in-cluster config.
    Run(RunArgs),
    /// Print the Distribution CRD as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Edge proxy image the Deployments run.
    #[arg(long, env = "KUBEFRONT_EDGE_IMAGE", default_value = concat!("kubefront/edge:", env!("CARGO_PKG_VERSION")))]
    edge_image: String,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "KUBEFRONT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Only reconcile while holding the `kubefront-operator` Lease.
    #[arg(long, env = "KUBEFRONT_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Only watch Distributions in this namespace (default: all).
    #[arg(long, env = "KUBEFRONT_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    #[arg(long, env = "KUBEFRONT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Namespaces of this cluster that local regions may target besides their Distribution's
    /// own: `TARGET` (Distributions of any namespace) or `SOURCE=TARGET` (only those of
    /// SOURCE); `*` matches any namespace. Repeat the flag or separate with commas. Default:
    /// none (a local region may only use its Distribution's namespace).
    #[arg(
        long = "allow-target-namespace",
        env = "KUBEFRONT_ALLOWED_TARGET_NAMESPACES",
        value_delimiter = ','
    )]
    allowed_target_namespaces: Vec<String>,
    /// Seconds between resyncs of a Distribution whose regions are all fine (drift is also
    /// repaired at once through watches).
    #[arg(long, env = "KUBEFRONT_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
    /// Distributions reconciled at once; bounds the load on every region's API server.
    #[arg(long, env = "KUBEFRONT_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A workspace build can link several rustls backends (aws-lc-rs via the edge's SDK, ring via
    // kube); rustls then refuses to pick one, so name it. Err means one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn serve_http(
    addr: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}

fn pod_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("kubefront-operator-{}", std::process::id()))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let tenancy = TargetNamespacePolicy::parse(&args.allowed_target_namespaces)?;
    tracing::info!(allowed_target_namespaces = %tenancy.describe(), "tenancy");
    let client = Client::try_default()
        .await
        .context("building Kubernetes client")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let http = tokio::spawn(serve_http(
        args.metrics_addr,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        shutdown.clone(),
    ));

    let identity = pod_identity();
    let timing = Timing::default();
    timing.validate()?;
    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            &args.lease_namespace,
            identity.clone(),
            timing,
        )
    });
    // Up and answering; a standby replica is ready too (it only waits for the Lease).
    ready.store(true, Ordering::Relaxed);
    let mut leadership = None;
    if let Some(elector) = &elector {
        tracing::info!(identity = elector.identity(), namespace = %args.lease_namespace, "waiting for leadership");
        loop {
            let attempt = tokio::time::Instant::now();
            match tokio::time::timeout(timing.renew_deadline, elector.try_acquire()).await {
                // Counted from before the request: the Lease was written no earlier.
                Ok(Ok(true)) => {
                    leadership = Some(Leadership::acquired_at(attempt, timing.renew_deadline));
                    break;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "lease acquire failed"),
                Err(_) => tracing::warn!("lease acquire timed out"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(timing.retry) => {}
            }
        }
        tracing::info!("became leader");
    }
    let renewer = elector
        .zip(leadership.clone())
        .map(|(elector, leadership)| {
            let elector = Arc::new(elector);
            let stop = shutdown.clone();
            let handle = {
                let elector = elector.clone();
                tokio::spawn(async move {
                    let lost = elector
                        .keep_renewing(&leadership, stop.cancelled_owned())
                        .await;
                    if lost != Lost::Stopped {
                        // client-go's advice: exit at once. In-flight reconciles must not finish
                        // their writes while another replica may already lead.
                        tracing::error!(reason = ?lost, "lost leadership; exiting");
                        std::process::exit(1);
                    }
                })
            };
            (elector, handle)
        });

    let dists: Api<Distribution> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kubefront-operator".into(),
            instance: Some(identity),
        },
    );
    let (remote_watches, remote_triggers) = RemoteWatches::new();
    let ctx = Arc::new(
        Context::new(
            Regions::new(client.clone(), Arc::new(KubeconfigClientFactory)),
            args.edge_image.clone(),
            metrics.clone(),
            Some(recorder),
            Some(remote_watches),
        )
        .with_tenancy(tenancy)
        .with_resync(Duration::from_secs(args.resync_seconds))
        .with_leadership(leadership),
    );
    let owned = || watcher::Config::default().labels(MANAGED_SELECTOR);
    // Secrets a Distribution reads (credentials, key groups, kubeconfigs) carry no label of
    // ours: watch their metadata (never their data) in the Distributions' namespace(s) and map
    // each change to the Distributions naming it, from the controller's own store, so a key
    // rotation rolls out at once instead of at the next resync.
    let referenced: Api<PartialObjectMeta<Secret>> = scoped(&client, &args.watch_namespace);
    let controller = Controller::new(dists, watcher::Config::default().any_semantic());
    let store = controller.store();
    tracing::info!(edge_image = %args.edge_image, namespace = ?args.watch_namespace, "starting controller");
    controller
        .watches(referenced, watcher::Config::default(), move |s| {
            reconcile::referencing_secret(
                &store.state(),
                s.metadata.namespace.as_deref(),
                s.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .with_config(
            controller::Config::default()
                .concurrency(args.concurrency)
                .debounce(Duration::from_millis(500)),
        )
        .watches(
            scoped::<Deployment>(&client, &args.watch_namespace),
            owned(),
            |o| reconcile::owner_of(&o),
        )
        .watches(
            scoped::<Service>(&client, &args.watch_namespace),
            owned(),
            |o| reconcile::owner_of(&o),
        )
        .watches(
            scoped::<ConfigMap>(&client, &args.watch_namespace),
            owned(),
            |o| reconcile::owner_of(&o),
        )
        .watches(
            scoped::<PodDisruptionBudget>(&client, &args.watch_namespace),
            owned(),
            |o| reconcile::owner_of(&o),
        )
        .watches(
            scoped::<Secret>(&client, &args.watch_namespace),
            owned(),
            |o| reconcile::owner_of(&o),
        )
        .reconcile_on(remote_triggers)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(distribution = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    shutdown.cancel();
    if let Some((elector, handle)) = renewer {
        handle.abort();
        elector.release().await;
    }
    let _ = http.await;
    Ok(())
}

/// All namespaces, or only `--watch-namespace` (where a namespaced install's Role lets the
/// operator list and watch). Drift of objects in further namespaces is repaired at resync.
fn scoped<K>(client: &kube::Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
