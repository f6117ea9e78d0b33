//! The viewer listeners: plain HTTP/1.1 (optionally h2c) and HTTPS (HTTP/1.1 or HTTP/2 by
//! ALPN), one `maxConnections` budget across them, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::tls::ViewerTls;
use super::{body, viewer, Edge};
use crate::config::security::ViewerLimits;
use crate::security::{ViewerAddr, ViewerTlsConnection};

/// HTTP/2 streams one viewer connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 connections are pinged when idle this long, and closed when a ping goes unanswered.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A bound viewer socket and how its connections speak.
pub enum ViewerListener {
    Plain {
        listener: TcpListener,
        h2c: bool,
    },
    Tls {
        listener: TcpListener,
        tls: Arc<ViewerTls>,
    },
}

/// Open viewer connections, for the `maxConnections` cap.
#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    closed: tokio::sync::Notify,
}

/// Held by a connection's task; counts it until the connection ends.
struct ConnectionPermit(Arc<OpenConnections>);

impl OpenConnections {
    fn enter(self: &Arc<Self>) -> ConnectionPermit {
        self.count.fetch_add(1, Ordering::AcqRel);
        ConnectionPermit(self.clone())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

/// What every accept loop shares.
struct Shared {
    edge: Arc<Edge>,
    open: Arc<OpenConnections>,
    active: Arc<body::ActiveRequests>,
    graceful: GracefulShutdown,
}

/// Serves viewers on every listener until `shutdown` resolves, then drains for up to `grace`.
pub async fn serve_viewers(
    edge: Arc<Edge>,
    listeners: Vec<ViewerListener>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let shared = Shared {
        edge,
        open: Arc::new(OpenConnections::default()),
        active: Arc::new(body::ActiveRequests::default()),
        graceful: GracefulShutdown::new(),
    };
    {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let loops = futures::future::join_all(
            listeners
                .into_iter()
                .map(|l| accept_loop(&shared, l, stop_rx.clone())),
        );
        tokio::pin!(loops);
        tokio::select! {
            _ = shutdown => {}
            _ = &mut loops => {}
        }
        let _ = stop_tx.send(true);
        // Each loop drops its listener on the way out: no new connections from here on.
        loops.await;
    }
    let Shared {
        active, graceful, ..
    } = shared;
    tracing::info!(
        connections = graceful.count(),
        requests = active.count(),
        "draining viewer connections"
    );
    // Let in-flight responses (bodies included) finish first; only then ask connections to
    // close, which also closes idle keep-alive connections.
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, active.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            requests = active.count(),
            "shutdown grace elapsed with requests in flight"
        );
    }
    let rest = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_millis(500));
    if tokio::time::timeout(rest, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with connections still open");
    }
}

async fn accept_loop(
    shared: &Shared,
    listener: ViewerListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (tcp, kind) = match listener {
        ViewerListener::Plain { listener, h2c } => (listener, Kind::Plain { h2c }),
        ViewerListener::Tls { listener, tls } => (listener, Kind::Tls(tls)),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        // Read per connection, so a reload can change them without a restart.
        let limits = shared.edge.current.load().settings.security.limits;
        // At most maxConnections open viewer connections; the rest wait in the accept queue.
        let closed = shared.open.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if shared.open.count.load(Ordering::Acquire) >= limits.max_connections as usize {
            tokio::select! {
                _ = closed => {}
                // A reload may raise the cap while every connection stays open.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            continue;
        }
        tokio::select! {
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = Accepted {
                    permit: shared.open.enter(),
                    edge: shared.edge.clone(),
                    active: shared.active.clone(),
                    watcher: shared.graceful.watcher(),
                    peer,
                    limits,
                };
                tokio::spawn(conn.serve(stream, kind.clone()));
            }
            _ = stop.changed() => break,
        }
    }
}

#[derive(Clone)]
enum Kind {
    Plain { h2c: bool },
    Tls(Arc<ViewerTls>),
}

/// The protocol a connection speaks once it is set up.
enum Protocol {
    Http1,
    Http2,
    /// HTTP/1.1, or HTTP/2 when the viewer opens with its preface (h2c prior knowledge).
    Either,
}

/// One accepted viewer connection and what it needs to be served.
struct Accepted {
    permit: ConnectionPermit,
    edge: Arc<Edge>,
    active: Arc<body::ActiveRequests>,
    watcher: Watcher,
    peer: std::net::SocketAddr,
    limits: ViewerLimits,
}

impl Accepted {
    async fn serve(self, stream: TcpStream, kind: Kind) {
        let _ = stream.set_nodelay(true);
        match kind {
            Kind::Plain { h2c } => {
                let protocol = if h2c {
                    Protocol::Either
                } else {
                    Protocol::Http1
                };
                self.serve_io(TokioIo::new(stream), protocol, false).await;
            }
            Kind::Tls(tls) => {
                // The handshake is bounded like a request head: a silent peer holds nothing.
                let handshake = tokio::time::timeout(
                    self.limits.header_read_timeout.as_duration(),
                    tls.acceptor.accept(stream),
                )
                .await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                        return;
                    }
                };
                let protocol = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                };
                self.serve_io(TokioIo::new(stream), protocol, true).await;
            }
        }
    }

    async fn serve_io<I>(self, io: TokioIo<I>, protocol: Protocol, tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted {
            permit,
            edge,
            active,
            watcher,
            peer,
            limits,
        } = self;
        let _permit = permit;
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ViewerAddr(peer));
                if tls {
                    req.extensions_mut().insert(ViewerTlsConnection);
                }
                let edge = edge.clone();
                let guard = active.enter();
                async move {
                    let resp = viewer::handle(edge, req).await;
                    Ok::<_, Infallible>(resp.map(|inner| body::TrackedBody {
                        inner,
                        _guard: guard,
                    }))
                }
            });
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = match protocol {
            Protocol::Http1 => watcher
                .watch(http1_builder(&limits).serve_connection(io, svc))
                .await
                .map_err(Into::into),
            Protocol::Http2 => watcher
                .watch(http2_builder(&limits).serve_connection(io, svc))
                .await
                .map_err(Into::into),
            Protocol::Either => {
                let mut auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                auto.http1()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout.as_duration())
                    .max_buf_size(64 * 1024)
                    .max_headers(100);
                auto.http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
                    .max_header_list_size(max_header_list(&limits))
                    .keep_alive_interval(Some(H2_PING_INTERVAL))
                    .keep_alive_timeout(H2_PING_TIMEOUT);
                watcher.watch(auto.serve_connection(io, svc)).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "viewer connection ended with error");
        }
    }
}

fn http1_builder(limits: &ViewerLimits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.as_duration())
        .max_buf_size(64 * 1024)
        .max_headers(100);
    http
}

fn http2_builder(limits: &ViewerLimits) -> http2::Builder<TokioExecutor> {
    let mut http = http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(max_header_list(limits))
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    http
}

/// Room for the header limit `admit` enforces per stream with a 431, so the viewer gets an
/// answer rather than a protocol error.
fn max_header_list(limits: &ViewerLimits) -> u32 {
    limits.max_header_bytes.saturating_mul(2).max(16 * 1024)
}
