//! A TCP relay between the edge and the S3 server that counts what the origin really sees:
//! connections, bytes each way, and every HTTP/1.1 request (method, target, headers), parsed from
//! the plaintext request stream. It can also refuse connections or swallow them, to play an
//! origin that is down or hanging.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::error::HarnessError;
use crate::Result;

/// One HTTP request the origin received through the relay.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    pub method: String,
    /// Request target as sent, including any query string.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

impl OriginRequest {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the relay does with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Accept, read and discard, never answer: an origin that hangs.
    Hang,
    /// Answer every request with S3's `503 SlowDown`, without asking the origin: an origin
    /// that throttles. Requests are still recorded.
    Throttle,
}

#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    bytes_to_origin: AtomicU64,
    bytes_from_origin: AtomicU64,
    requests: Mutex<Vec<OriginRequest>>,
    /// Set when a request stream could not be parsed (counts would be unreliable).
    unparsable: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    /// Milliseconds to hold every chunk the origin sends before passing it on.
    delay_ms: AtomicU64,
    /// Cut each connection once it has passed this many origin bytes on (0: never).
    cut_after: AtomicU64,
    stats: Stats,
    connection_tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The relay. Dropping it stops it.
#[derive(Debug)]
pub struct CountingRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl CountingRelay {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<CountingRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::io("binding the relay"))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("reading the relay address"))?;
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Forward),
            delay_ms: AtomicU64::new(0),
            cut_after: AtomicU64::new(0),
            stats: Stats::default(),
            connection_tasks: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(CountingRelay {
            addr,
            shared,
            accept_task: Mutex::new(Some(task)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the origin endpoint to give the edge.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A slow origin: every chunk the origin sends is held this long before it is passed on
    /// (so a fetch stays in flight for at least that long). Zero turns it off.
    pub fn set_response_delay(&self, delay: std::time::Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// A truncating origin: every connection is cut after passing `bytes` origin bytes on
    /// (headers included). Zero turns it off.
    pub fn cut_responses_after(&self, bytes: u64) {
        self.shared.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<OriginRequest> {
        lock(&self.shared.stats.requests).clone()
    }

    /// Requests with `method` whose path (without query) ends with `path_suffix`, e.g. the
    /// object key: works for path-style targets `/bucket/key` and prefixed keys alike.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        lock(&self.shared.stats.requests)
            .iter()
            .filter(|r| r.method == method && r.path().ends_with(path_suffix))
            .count()
    }

    /// Requests for `path_suffix` (any method).
    pub fn requests_for(&self, path_suffix: &str) -> Vec<OriginRequest> {
        lock(&self.shared.stats.requests)
            .iter()
            .filter(|r| r.path().ends_with(path_suffix))
            .cloned()
            .collect()
    }

    pub fn connections(&self) -> u64 {
        self.shared.stats.connections.load(Ordering::SeqCst)
    }

    /// Bytes the origin sent back (headers + bodies).
    pub fn bytes_from_origin(&self) -> u64 {
        self.shared.stats.bytes_from_origin.load(Ordering::SeqCst)
    }

    pub fn bytes_to_origin(&self) -> u64 {
        self.shared.stats.bytes_to_origin.load(Ordering::SeqCst)
    }

    /// Whether any request stream defeated the parser (then request counts are not trustworthy).
    pub fn parse_failures(&self) -> u64 {
        self.shared.stats.unparsable.load(Ordering::SeqCst)
    }

    /// Origin down: close the listener (connections are refused) and cut open connections.
    pub fn stop(&self) {
        if let Some(t) = lock(&self.accept_task).take() {
            t.abort();
        }
        self.cut_connections();
    }

    /// Origin hanging: accept connections but never answer; open connections are cut so pooled
    /// ones cannot bypass it.
    pub async fn hang(&self) -> Result<()> {
        *lock(&self.shared.mode) = Mode::Hang;
        self.cut_connections();
        self.ensure_listening().await
    }

    /// Origin throttling: every request gets `503 SlowDown` (recorded, never forwarded).
    pub async fn throttle(&self) -> Result<()> {
        *lock(&self.shared.mode) = Mode::Throttle;
        self.cut_connections();
        self.ensure_listening().await
    }

    /// Back to forwarding (after `stop` or `hang`), on the same port.
    pub async fn resume(&self) -> Result<()> {
        *lock(&self.shared.mode) = Mode::Forward;
        self.cut_connections();
        self.ensure_listening().await
    }

    async fn ensure_listening(&self) -> Result<()> {
        if lock(&self.accept_task)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
        {
            return Ok(());
        }
        let socket = TcpSocket::new_v4().map_err(HarnessError::io("relay socket"))?;
        socket
            .set_reuseaddr(true)
            .map_err(HarnessError::io("relay SO_REUSEADDR"))?;
        socket.bind(self.addr).map_err(HarnessError::io(format!(
            "rebinding the relay on {}",
            self.addr
        )))?;
        let listener = socket
            .listen(1024)
            .map_err(HarnessError::io("relay listen"))?;
        let task = tokio::spawn(accept_loop(listener, self.shared.clone()));
        *lock(&self.accept_task) = Some(task);
        Ok(())
    }

    fn cut_connections(&self) {
        for t in lock(&self.shared.connection_tasks).drain(..) {
            t.abort();
        }
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.stats.connections.fetch_add(1, Ordering::SeqCst);
        let mode = *lock(&shared.mode);
        let task = match mode {
            Mode::Forward => tokio::spawn(relay_connection(client, shared.clone())),
            Mode::Hang => tokio::spawn(swallow(client)),
            Mode::Throttle => tokio::spawn(slow_down(client, shared.clone())),
        };
        let mut tasks = lock(&shared.connection_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

async fn swallow(mut client: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut buf).await {
        if n == 0 {
            // Keep the half-closed socket open so the peer sees no answer at all.
            std::future::pending::<()>().await;
        }
    }
}

/// Answers each request on the connection with S3's 503 SlowDown (keep-alive).
async fn slow_down(mut client: TcpStream, shared: Arc<Shared>) {
    const BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>kf</RequestId></Error>";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
Content-Length: {}\r\nRetry-After: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut parser = RequestParser::default();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut buf).await {
        if n == 0 {
            return;
        }
        for req in parser.feed(&buf[..n]) {
            lock(&shared.stats.requests).push(req);
            if client.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

async fn relay_connection(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up_shared = shared.clone();
    let up = async move {
        let mut parser = RequestParser::default();
        let mut reported_lost = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            up_shared
                .stats
                .bytes_to_origin
                .fetch_add(n as u64, Ordering::SeqCst);
            for req in parser.feed(chunk) {
                lock(&up_shared.stats.requests).push(req);
            }
            if parser.lost && !reported_lost {
                up_shared.stats.unparsable.fetch_add(1, Ordering::SeqCst);
                reported_lost = true;
            }
            if server_tx.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = 0u64;
        loop {
            let mut n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let cut = shared.cut_after.load(Ordering::SeqCst);
            let cutting = cut > 0 && passed + n as u64 >= cut;
            if cutting {
                n = (cut - passed.min(cut)) as usize;
            }
            passed += n as u64;
            shared
                .stats
                .bytes_from_origin
                .fetch_add(n as u64, Ordering::SeqCst);
            let delay = shared.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() || cutting {
                break;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Incremental HTTP/1.1 request-head parser; skips `Content-Length` bodies.
#[derive(Debug, Default)]
struct RequestParser {
    buf: Vec<u8>,
    body_remaining: u64,
    /// A chunked or otherwise unparsable request body was seen; stop parsing this stream.
    lost: bool,
}

impl RequestParser {
    fn feed(&mut self, data: &[u8]) -> Vec<OriginRequest> {
        let mut out = Vec::new();
        self.feed_into(data, &mut out);
        out
    }

    fn feed_into(&mut self, mut data: &[u8], out: &mut Vec<OriginRequest>) {
        if self.lost {
            return;
        }
        if self.body_remaining > 0 {
            let skip = (self.body_remaining as usize).min(data.len());
            self.body_remaining -= skip as u64;
            data = &data[skip..];
            if self.body_remaining > 0 {
                return;
            }
        }
        self.buf.extend_from_slice(data);
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > 1 << 20 {
                self.lost = true;
            }
            return;
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let rest = std::mem::take(&mut self.buf);
        match parse_head(&head) {
            Some((req, body_len)) => {
                out.push(req);
                self.body_remaining = body_len;
            }
            None => {
                self.lost = true;
                return;
            }
        }
        // Whatever followed the head: body bytes and/or the next request.
        if !rest.is_empty() {
            self.feed_into(&rest, out);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Option<(OriginRequest, u64)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut headers = Vec::new();
    let mut body_len = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name == "content-length" {
            body_len = value.parse().ok()?;
        }
        if name == "transfer-encoding" {
            return None;
        }
        headers.push((name, value));
    }
    Some((
        OriginRequest {
            method,
            target,
            headers,
        },
        body_len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_requests_split_anywhere() {
        let stream = b"GET /b/k1 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\n\r\n\
PUT /b/k2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
HEAD /b/k3?x=1 HTTP/1.1\r\n\r\n";
        for split in 1..stream.len() {
            let mut p = RequestParser::default();
            let mut reqs = p.feed(&stream[..split]);
            reqs.extend(p.feed(&stream[split..]));
            let got: Vec<(&str, &str)> =
                reqs.iter().map(|r| (r.method.as_str(), r.path())).collect();
            assert_eq!(
                got,
                vec![("GET", "/b/k1"), ("PUT", "/b/k2"), ("HEAD", "/b/k3")],
                "split at {split}"
            );
            assert_eq!(reqs[0].header("if-none-match"), Some("\"e\""));
            assert!(!p.lost);
        }
    }

    #[test]
    fn chunked_bodies_mark_the_stream_lost() {
        let mut p = RequestParser::default();
        p.feed(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(p.lost);
    }
}
