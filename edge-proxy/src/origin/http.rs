//! An HTTP(S) server as origin (a web server, an application, or another kubefront edge acting
//! as a shield): pooled keep-alive HTTP/1.1 connections (hyper-util's client over rustls), the
//! viewer's normalized path appended to the configured base URL, and only what the cache key
//! holds forwarded (its query parameters and headers), so nothing that does not pick the cache
//! entry can change the answer stored under it.
//!
//! Answers map onto the same statuses as S3's: 200/206/304/412/416 as themselves, 403/404/410 as
//! facts about the object (negative entries), 5xx and 429 as failures that never replace a
//! cached copy (`staleIfError` serves it), and any other status (redirects, 204, 400…) as an
//! answer passed through with its status and stored only where RFC 9111 allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::retry::RetryBudget;
use super::{
    ObjectMeta, OriginBody, OriginClient, OriginError, OriginRequest, OriginResponse, OriginStatus,
};
use crate::config::{self, OriginConfig};

/// `Via` on every origin request (RFC 9110 §7.6.3): a shield sees that a child edge asked.
const VIA: &str = "1.1 kubefront";

/// Idle pooled connections are closed after this (below common origin keep-alive timeouts, so
/// the edge is the side that closes and never reuses a connection the origin is closing).
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Why an HTTP origin could not be set up (at start-up or reload: the config is refused).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("origin.http.url: {0}")]
    Url(String),
    #[error("origin.http.tls.caFile {path}: {message}")]
    Ca { path: String, message: String },
    #[error("origin.customHeaders {name}: cannot read valueFile {path}: {source}")]
    HeaderFile {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("origin.customHeaders {name}: the value is not a valid header value")]
    HeaderValue { name: String },
    #[error("cannot set up TLS to the origin: {0}")]
    Tls(String),
}

/// Request bodies: empty for the cache's own GETs, the viewer's for forwarded methods.
type RequestBody = UnsyncBoxBody<Bytes, OriginError>;
type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Fetches from one HTTP(S) base URL.
pub struct HttpOrigin {
    client: HttpClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The URL's path without its trailing `/`; viewer paths start with `/`.
    base_path: String,
    host: HeaderValue,
    custom: Vec<(HeaderName, HeaderValue)>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_attempts: u32,
    budget: Arc<RetryBudget>,
}

impl HttpOrigin {
    pub fn new(http: &config::HttpOrigin, cfg: &OriginConfig) -> Result<HttpOrigin, SetupError> {
        let uri: Uri = http
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SetupError::Url(e.to_string()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(SetupError::Url(format!(
                "{:?} has no scheme or host",
                http.url
            )));
        };
        let host_text = http.host_header.as_deref().unwrap_or(authority.as_str());
        let host = HeaderValue::from_str(host_text)
            .map_err(|_| SetupError::Url(format!("host {host_text:?} is not a header value")))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeouts.connect.as_duration()));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&http.tls)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        Ok(HttpOrigin {
            client,
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            host,
            custom: custom_headers(&cfg.custom_headers)?,
            first_byte_timeout: cfg.timeouts.connect.as_duration()
                + cfg.timeouts.first_byte.as_duration(),
            idle_timeout: cfg.timeouts.idle(),
            max_attempts: cfg.max_attempts.max(1),
            budget: Arc::new(RetryBudget::default()),
        })
    }

    /// The URI for a normalized viewer path and the query the cache key holds.
    fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, OriginError> {
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + 1);
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| OriginError::Other(format!("origin URI: {e}")))
    }

    fn request(&self, req: &OriginRequest) -> Result<Request<RequestBody>, OriginError> {
        let method = if req.head { Method::HEAD } else { Method::GET };
        let mut r = Request::builder()
            .method(method)
            .uri(self.uri(&req.path, req.query.as_deref())?)
            .body(empty())
            .map_err(|e| OriginError::Other(format!("origin request: {e}")))?;
        let h = r.headers_mut();
        for (name, value) in &req.headers {
            h.append(name.clone(), value.clone());
        }
        for (name, value) in &self.custom {
            h.insert(name.clone(), value.clone());
        }
        h.insert(header::HOST, self.host.clone());
        h.insert(header::VIA, HeaderValue::from_static(VIA));
        // One validator, as for S3: an origin that answers 304 on a matching date alone
        // would hide a changed object behind a stale ETag.
        if let Some(etag) = &req.validators.etag {
            h.insert(header::IF_NONE_MATCH, etag.clone());
        } else if let Some(lm) = &req.validators.last_modified {
            h.insert(header::IF_MODIFIED_SINCE, lm.clone());
        }
        for (name, value) in [
            (header::RANGE, &req.range),
            (header::IF_MATCH, &req.if_match),
            (header::IF_UNMODIFIED_SINCE, &req.if_unmodified_since),
        ] {
            if let Some(v) = value {
                h.insert(name, v.clone());
            }
        }
        Ok(r)
    }

    async fn get(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        super::retry::with_retries(&self.budget, self.max_attempts, || self.attempt(&req)).await
    }

    async fn attempt(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        let request = self.request(req)?;
        let resp = match tokio::time::timeout(self.first_byte_timeout, self.client.request(request))
            .await
        {
            Err(_) => return Err(OriginError::Timeout("no answer in time".into())),
            Ok(Err(e)) => return Err(client_error(&e)),
            Ok(Ok(r)) => r,
        };
        let (parts, body) = resp.into_parts();
        let meta = meta(&parts.headers);
        let status = match classify(parts.status) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        let body =
            (!req.head && body_allowed(parts.status)).then(|| body_stream(body, self.idle_timeout));
        Ok(OriginResponse { status, meta, body })
    }
}

impl OriginClient for HttpOrigin {
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
        self.get(req).boxed()
    }

    /// The viewer's method, headers and streamed body; one attempt (a method that is not
    /// idempotent is never retried), the answer whatever its status.
    fn forward(
        &self,
        req: super::ForwardRequest,
    ) -> BoxFuture<'_, Result<super::ForwardResponse, OriginError>> {
        async move {
            let uri = self.uri(&req.path, req.query.as_deref())?;
            let body = StreamBody::new(futures::StreamExt::map(req.body, |r| {
                r.map(hyper::body::Frame::data)
            }))
            .boxed_unsync();
            let mut r = Request::builder()
                .method(req.method)
                .uri(uri)
                .body(body)
                .map_err(|e| OriginError::Other(format!("origin request: {e}")))?;
            let h = r.headers_mut();
            *h = req.headers;
            for (name, value) in &self.custom {
                h.insert(name.clone(), value.clone());
            }
            h.insert(header::HOST, self.host.clone());
            h.append(header::VIA, HeaderValue::from_static(VIA));
            let resp =
                match tokio::time::timeout(self.first_byte_timeout, self.client.request(r)).await {
                    Err(_) => return Err(OriginError::Timeout("no answer in time".into())),
                    Ok(Err(e)) => return Err(client_error(&e)),
                    Ok(Ok(r)) => r,
                };
            let (parts, body) = resp.into_parts();
            Ok(super::ForwardResponse {
                status: parts.status,
                headers: end_to_end(&parts.headers),
                body: body_stream(body, self.idle_timeout),
            })
        }
        .boxed()
    }

    /// Reachable when any HTTP answer comes back for the base URL (a 404 there is fine).
    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
        async move {
            let mut req = OriginRequest::get("/");
            req.head = true;
            let request = self.request(&req)?;
            match tokio::time::timeout(self.first_byte_timeout, self.client.request(request)).await
            {
                Err(_) => Err(OriginError::Timeout("probe: no answer in time".into())),
                Ok(Err(e)) => Err(client_error(&e)),
                Ok(Ok(r)) if r.status().is_server_error() => Err(OriginError::status(
                    r.status().as_u16(),
                    "probe: server error",
                )),
                Ok(Ok(_)) => Ok(()),
            }
        }
        .boxed()
    }
}

/// What an origin status means to the cache.
fn classify(status: StatusCode) -> Result<OriginStatus, OriginError> {
    Ok(match status.as_u16() {
        200 => OriginStatus::Ok,
        206 => OriginStatus::PartialContent,
        304 => OriginStatus::NotModified,
        412 => OriginStatus::PreconditionFailed,
        416 => OriginStatus::RangeNotSatisfiable,
        404 | 410 => OriginStatus::NotFound,
        403 => OriginStatus::Forbidden,
        code if status.is_server_error() || code == 429 || code < 200 => {
            return Err(OriginError::status(
                code,
                status.canonical_reason().unwrap_or("unexpected status"),
            ))
        }
        code => OriginStatus::Other(code),
    })
}

fn body_allowed(status: StatusCode) -> bool {
    !matches!(status.as_u16(), 204 | 304)
}

fn client_error(e: &hyper_util::client::legacy::Error) -> OriginError {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        if msg.contains("timed out") || msg.contains("deadline") {
            OriginError::Timeout(msg)
        } else {
            OriginError::Connect(msg)
        }
    } else {
        // A pooled connection closed by the origin, or a malformed answer.
        OriginError::Connect(msg)
    }
}

/// The response headers the cache reads; the allowlist (`cache::headers`) decides what is
/// replayed.
fn meta(h: &HeaderMap) -> ObjectMeta {
    let get = |name: HeaderName| h.get(name).cloned();
    ObjectMeta {
        content_length: h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok()),
        content_type: get(header::CONTENT_TYPE),
        etag: get(header::ETAG),
        last_modified: get(header::LAST_MODIFIED),
        cache_control: get(header::CACHE_CONTROL),
        expires: get(header::EXPIRES),
        content_encoding: get(header::CONTENT_ENCODING),
        content_language: get(header::CONTENT_LANGUAGE),
        content_disposition: get(header::CONTENT_DISPOSITION),
        age: h
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse().ok()),
        content_range: get(header::CONTENT_RANGE),
        date: get(header::DATE),
        other: end_to_end(h),
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and the framing the edge sets itself. (`Set-Cookie`
/// stays: it marks the answer personal, and the replay allowlist never lets it out.)
const NOT_END_TO_END: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

fn end_to_end(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, v) in h {
        if !NOT_END_TO_END.contains(&name.as_str()) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// The body as a stream that fails when the origin sends nothing for `idle` (the timer runs
/// only while polled, so a slow viewer's backpressure never trips it). Trailers are dropped.
fn body_stream(body: hyper::body::Incoming, idle: Duration) -> OriginBody {
    let stream = futures::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    return Some((
                        Err(OriginError::Timeout(format!(
                            "origin sent nothing for {} ms mid-body",
                            idle.as_millis()
                        ))),
                        None,
                    ))
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some((Err(OriginError::Body(e.to_string())), None)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok::<Bytes, OriginError>(data), Some(body)));
                    }
                }
            }
        }
    });
    Box::pin(stream)
}

fn custom_headers(
    list: &[config::OriginCustomHeader],
) -> Result<Vec<(HeaderName, HeaderValue)>, SetupError> {
    list.iter()
        .map(|h| {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| SetupError::HeaderValue {
                    name: h.name.clone(),
                })?;
            let text = match (&h.value, &h.value_file) {
                (Some(v), _) => v.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|source| SetupError::HeaderFile {
                        name: h.name.clone(),
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                (None, None) => String::new(),
            };
            let mut value = HeaderValue::from_str(&text).map_err(|_| SetupError::HeaderValue {
                name: h.name.clone(),
            })?;
            // Never printed by `Debug` (a shared secret).
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

fn tls_config(tls: &config::OriginTls) -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    let config = if !tls.verify {
        tracing::warn!("origin.http.tls.verify is off: the origin's certificate is not checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(tls.ca_file.as_deref())?)
            .with_no_client_auth()
    };
    Ok(config)
}

/// The CAs in `ca_file`, or the system's.
fn roots(ca_file: Option<&str>) -> Result<rustls::RootCertStore, SetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca = |message: String| SetupError::Ca {
                path: path.to_owned(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca("no certificate in the file".into()));
            }
            for c in certs {
                store.add(c).map_err(|e| ca(e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "cannot read some system CA certificates");
            }
            let (added, _) = store.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found: https:// origins need origin.http.tls.caFile"
                );
            }
        }
    }
    Ok(store)
}

/// `tls.verify: false`: accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_onto_facts_about_the_object_or_failures() {
        for (code, want) in [
            (200, Some(OriginStatus::Ok)),
            (206, Some(OriginStatus::PartialContent)),
            (304, Some(OriginStatus::NotModified)),
            (404, Some(OriginStatus::NotFound)),
            (410, Some(OriginStatus::NotFound)),
            (403, Some(OriginStatus::Forbidden)),
            (416, Some(OriginStatus::RangeNotSatisfiable)),
            (500, None),
            (503, None),
            (429, None),
            (302, Some(OriginStatus::Other(302))),
            (204, Some(OriginStatus::Other(204))),
            (405, Some(OriginStatus::Other(405))),
        ] {
            let got = classify(StatusCode::from_u16(code).expect("code"));
            assert_eq!(got.as_ref().ok(), want.as_ref(), "{code}");
            if let Err(e) = got {
                assert_eq!(e.fwd_status(), code);
            }
        }
        let e = classify(StatusCode::SERVICE_UNAVAILABLE).unwrap_err();
        assert!(e.retryable(), "503 is worth a retry within the budget");
    }

    fn origin(url: &str) -> HttpOrigin {
        let mut cfg = OriginConfig::http(url);
        cfg.custom_headers = vec![config::OriginCustomHeader {
            name: "X-Origin-Secret".into(),
            value: Some("s3cr3t".into()),
            value_file: None,
        }];
        let http = cfg.http.clone().expect("http");
        HttpOrigin::new(&http, &cfg).expect("origin")
    }

    #[tokio::test]
    async fn requests_carry_the_base_path_key_query_host_via_and_custom_headers() {
        let o = origin("https://origin.example.com:8443/base/");
        let mut req = OriginRequest::get("/img/a.png");
        req.query = Some("v=3".into());
        req.headers = vec![(
            HeaderName::from_static("accept-language"),
            HeaderValue::from_static("de"),
        )];
        req.validators.etag = Some(HeaderValue::from_static("\"1\""));
        req.validators.last_modified = Some(HeaderValue::from_static("x"));
        let r = o.request(&req).expect("request");
        assert_eq!(
            r.uri().to_string(),
            "https://origin.example.com:8443/base/img/a.png?v=3"
        );
        let h = r.headers();
        assert_eq!(h[header::HOST], "origin.example.com:8443");
        assert_eq!(h[header::VIA], VIA);
        assert_eq!(h["x-origin-secret"], "s3cr3t");
        assert_eq!(h[header::ACCEPT_LANGUAGE], "de");
        assert_eq!(h[header::IF_NONE_MATCH], "\"1\"");
        assert!(h.get(header::IF_MODIFIED_SINCE).is_none());
        assert!(
            !format!("{h:?}").contains("s3cr3t"),
            "secret values are never printed"
        );
        assert_eq!(r.method(), Method::GET);
    }

    #[test]
    fn a_missing_secret_file_or_bad_ca_refuses_the_config() {
        let mut cfg = OriginConfig::http("http://a");
        cfg.custom_headers = vec![config::OriginCustomHeader {
            name: "X-S".into(),
            value: None,
            value_file: Some("/nonexistent/secret".into()),
        }];
        let http = cfg.http.clone().expect("http");
        let err = HttpOrigin::new(&http, &cfg)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("valueFile /nonexistent/secret"), "{err}");
        assert!(!err.contains("s3cr3t"));
        let mut cfg = OriginConfig::http("https://a");
        let mut http = cfg.http.clone().expect("http");
        http.tls.ca_file = Some("/nonexistent/ca.pem".into());
        cfg.http = Some(http.clone());
        let err = HttpOrigin::new(&http, &cfg)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("caFile /nonexistent/ca.pem"), "{err}");
    }
}
