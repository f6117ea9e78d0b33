//! A scripted HTTP/1.1 origin for the edge's HTTP-origin tests, written on raw sockets (not the
//! edge's code, not a client library's server): each path answers with the status, headers and
//! body a test sets, honours `Range` and `If-None-Match` the way a web server does when asked
//! to, and records every request it receives (method, target, headers) so tests can check what
//! the edge forwarded. `stop` closes the listener: the next connections are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{HarnessError, Result};

/// What one path answers.
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    /// Sent as given (names as written); `Content-Length` is added unless present.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Answer `Range: bytes=a-b` with 206 (a 200 origin otherwise, as many are).
    pub ranges: bool,
    /// Answer a matching `If-None-Match` with 304 (the route's `ETag` header).
    pub conditional: bool,
    /// Wait this long before answering (to make concurrent viewers collapse).
    pub delay: std::time::Duration,
    /// Interim (1xx) answers sent before the final one, e.g. 103 Early Hints.
    pub interim: Vec<u16>,
}

impl Route {
    /// 200 with `body` and the given headers, ranges and conditionals honoured.
    pub fn ok(body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> Route {
        Route {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.into(),
            ranges: true,
            conditional: true,
            delay: std::time::Duration::ZERO,
            interim: Vec::new(),
        }
    }

    /// The same route answering after `delay`.
    pub fn delayed(mut self, delay: std::time::Duration) -> Route {
        self.delay = delay;
        self
    }

    /// An answer with `status` and a short body, no ranges or conditionals.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Route {
        Route {
            status,
            ranges: false,
            conditional: false,
            ..Route::ok(format!("status {status}\n"), headers)
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query as sent on the request line.
    pub target: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body (read by `Content-Length`).
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    received: Vec<Received>,
}

/// A running scripted origin on a loopback port.
pub struct HttpOrigin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
    /// `true` once stopped: every open connection closes.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl HttpOrigin {
    pub async fn start() -> Result<HttpOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::io("binding the scripted HTTP origin"))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("scripted origin address"))?;
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let (stopped, watch) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone(), watch.clone()));
            }
        });
        Ok(HttpOrigin {
            addr,
            state,
            accept,
            stopped,
        })
    }

    /// `http://127.0.0.1:PORT` plus `base`.
    pub fn url(&self, base: &str) -> String {
        format!("http://{}{base}", self.addr)
    }

    /// Sets what `path` (without query) answers, to every method without a route of its own.
    pub fn route(&self, path: &str, route: Route) {
        self.lock().routes.insert(path.to_owned(), route);
    }

    /// Sets what `method` on `path` answers.
    pub fn route_method(&self, method: &str, path: &str, route: Route) {
        self.lock().routes.insert(format!("{method} {path}"), route);
    }

    /// Requests with `method` received for `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|r| r.method == method)
            .count()
    }

    /// Every request received so far for `path` (without query).
    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }

    /// GETs (not HEADs) received for `path`.
    pub fn gets(&self, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|r| r.method == "GET")
            .count()
    }

    /// Closes the listener and every open connection: the origin is down (connections
    /// refused), not merely slow.
    pub fn stop(&self) {
        self.accept.abort();
        self.stopped.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for HttpOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves requests on one connection until it closes.
async fn serve(
    sock: TcpStream,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let (read, mut write) = sock.into_split();
    let mut read = BufReader::new(read);
    loop {
        let head = tokio::select! {
            h = read_head(&mut read) => h,
            _ = stopped.wait_for(|s| *s) => None,
        };
        let Some(req) = head else {
            return;
        };
        let mut req = req;
        if let Some(len) = req
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            if (&mut read)
                .take(len)
                .read_to_end(&mut req.body)
                .await
                .is_err()
            {
                return;
            }
        }
        let route = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.received.push(req.clone());
            let own = format!("{} {}", req.method, req.path());
            st.routes
                .get(&own)
                .or_else(|| st.routes.get(req.path()))
                .cloned()
        };
        if let Some(r) = &route {
            tokio::time::sleep(r.delay).await;
        }
        let answer = answer(&req, route);
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}

async fn read_head(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Received> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if read.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Some(Received {
        method,
        target,
        headers,
        body: Vec::new(),
    })
}

/// The bytes of the answer to `req`.
fn answer(req: &Received, route: Option<Route>) -> Vec<u8> {
    let route = route.unwrap_or_else(|| Route::status(404, &[("Content-Type", "text/plain")]));
    let etag = route.header("etag");
    let mut status = route.status;
    let mut body = route.body.clone();
    let mut extra: Vec<(String, String)> = Vec::new();
    if route.conditional && etag.is_some() && req.header("if-none-match") == etag {
        status = 304;
        body.clear();
    } else if let Some((start, end)) = route
        .ranges
        .then(|| req.header("range").and_then(|r| parse_range(r, body.len())))
        .flatten()
    {
        match (start, end) {
            (Some(s), e) => {
                extra.push((
                    "Content-Range".into(),
                    format!("bytes {s}-{e}/{}", body.len()),
                ));
                body = body[s..=e].to_vec();
                status = 206;
            }
            (None, _) => {
                extra.push(("Content-Range".into(), format!("bytes */{}", body.len())));
                body.clear();
                status = 416;
            }
        }
    }
    let mut out = Vec::new();
    for code in &route.interim {
        out.extend_from_slice(
            format!("HTTP/1.1 {code} Interim\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (n, v) in route.headers.iter().chain(&extra) {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    let no_body = status == 304 || status == 204 || req.method == "HEAD";
    if route.header("content-length").is_none() && status != 304 && status != 204 {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !no_body {
        out.extend_from_slice(&body);
    }
    out
}

/// `bytes=a-b` / `bytes=a-` within `len`: `Some((Some(start), end))`, or `Some((None, 0))`
/// when unsatisfiable; `None` for anything else (ignored, as a server may).
fn parse_range(v: &str, len: usize) -> Option<(Option<usize>, usize)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.parse().ok()?;
    if start >= len {
        return Some((None, 0));
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        b.parse::<usize>().ok()?.min(len - 1)
    };
    (end >= start).then_some((Some(start), end))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
