//! `kubefront-edge`: serves a private S3 bucket through the edge cache.

mod cli;

use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubefront_edge::cache::Store;
use kubefront_edge::config::EdgeConfig;
use kubefront_edge::origin::OriginClient;
use kubefront_edge::server::{self, admin, reload, Edge, Generation, Settings};
use tokio::net::TcpListener;

use cli::{Cli, Command, LogFormat, RunArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match EdgeConfig::load(file)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                kubefront_edge::security::Security::from_config(&c.security)
                    .map(|_| c)
                    .map_err(|e| format!("invalid config {}: {e}", file.display()))
            }) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = cli.run;
    init_logging(args.log_format);
    let file_text = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: cannot read config {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let cfg = match args.effective(file_text.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg, args, file_text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The access log's shape, or `None` when it is off: by `--access-log false`, or by a RUST_LOG
/// filter that silences `kubefront_edge::access` (as it did when the lines went through tracing).
fn access_log_format(args: &RunArgs) -> Option<server::access_log::Format> {
    let enabled = tracing::enabled!(target: "kubefront_edge::access", tracing::Level::INFO);
    (args.access_log && enabled).then_some(match args.log_format {
        LogFormat::Text => server::access_log::Format::Text,
        LogFormat::Json => server::access_log::Format::Json,
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cfg: EdgeConfig, args: RunArgs, file_text: Option<String>) -> anyhow::Result<()> {
    let viewer = TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", cfg.server.listen))?;
    let admin_listener = TcpListener::bind(&cfg.server.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.adminListen)",
                cfg.server.admin_listen
            )
        })?;
    let mut listeners = vec![server::listen::ViewerListener::Plain {
        listener: viewer,
        h2c: cfg.server.h2c,
    }];
    let mut https_addr = None;
    if let Some(tls_cfg) = &cfg.server.tls {
        let tls = Arc::new(
            server::tls::ViewerTls::new(tls_cfg)
                .with_context(|| "cannot set up HTTPS (server.tls)".to_string())?,
        );
        let listener = TcpListener::bind(&tls_cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {} (server.tls.listen)", tls_cfg.listen))?;
        https_addr = Some(listener.local_addr()?);
        tokio::spawn(server::tls::ViewerTls::watch_files(
            tls.certs.clone(),
            Duration::from_secs(2),
        ));
        listeners.push(server::listen::ViewerListener::Tls { listener, tls });
    }
    let grace = cfg.server.shutdown_grace.as_duration();
    let origin: Arc<dyn OriginClient> = kubefront_edge::origin::build(&cfg.origin)
        .await
        .context("cannot set up the origin")?;
    let store = Store::new(cfg.cache.memory.0);
    let origin_name = cfg.origin.describe();
    let edge = Arc::new(Edge::new(
        Generation::new(Settings::new(cfg), origin, store),
        args.admin_token.clone(),
        access_log_format(&args),
    ));
    let viewer_addr = match &listeners[0] {
        server::listen::ViewerListener::Plain { listener, .. }
        | server::listen::ViewerListener::Tls { listener, .. } => listener.local_addr()?,
    };
    match https_addr {
        Some(https) => tracing::info!(
            "listening viewer={viewer_addr} https={https} admin={} origin={origin_name}",
            admin_listener.local_addr()?
        ),
        None => tracing::info!(
            "listening viewer={viewer_addr} admin={} origin={origin_name}",
            admin_listener.local_addr()?
        ),
    }

    tokio::spawn(server::probe_until_ready(edge.clone()));
    if let (Some(path), Some(text)) = (args.config.clone(), file_text) {
        reload::record_loaded(&edge, &text);
        let overrides = args.clone();
        let effective: reload::Effective =
            Arc::new(move |t: &str| overrides.effective(Some(t)).map_err(|e| format!("{e:#}")));
        tokio::spawn(reload::watch(
            edge.clone(),
            path,
            text,
            effective,
            Duration::from_secs(1),
        ));
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let admin_task = tokio::spawn(
        axum::serve(admin_listener, admin::router(edge.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    server::listen::serve_viewers(edge, listeners, stopped(stop_rx), grace).await;
    match tokio::time::timeout(Duration::from_secs(2), admin_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("admin server did not stop in time"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
