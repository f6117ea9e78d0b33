//! Where misses are fetched from. `OriginClient` is the seam: `s3` talks SigV4 to a private
//! bucket, `http` to any HTTP(S) server (or a shield edge), `failover` puts a secondary behind
//! either; [`build`] turns the config into one of them.

pub mod classify;
pub mod failover;
pub mod http;
pub mod retry;
pub mod s3;

use std::pin::Pin;
use std::sync::Arc;

use ::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;

/// A streamed origin body; errors mean the body was cut short.
pub type OriginBody = Pin<Box<dyn Stream<Item = Result<Bytes, OriginError>> + Send>>;

pub use crate::policy::conditional::Validators;

/// One origin fetch.
#[derive(Debug, Clone, Default)]
pub struct OriginRequest {
    /// Normalized viewer path (starts with `/`); the origin maps it to its own namespace.
    pub path: String,
    pub head: bool,
    /// If-None-Match / If-Modified-Since: the cache's own revalidation, or the viewer's
    /// validators forwarded on a pass-through.
    pub validators: Validators,
    /// The viewer's `Range`, forwarded on a pass-through (objects too large to cache).
    pub range: Option<HeaderValue>,
    /// `If-Match` (an `If-Range` with an ETag, forwarded with `range`).
    pub if_match: Option<HeaderValue>,
    /// `If-Unmodified-Since` (an `If-Range` with a date, forwarded with `range`).
    pub if_unmodified_since: Option<HeaderValue>,
    /// The query string the cache key holds (HTTP origins; S3 objects have none).
    pub query: Option<String>,
    /// The request headers the cache key holds (HTTP origins).
    pub headers: Vec<(::http::HeaderName, HeaderValue)>,
}

impl OriginRequest {
    /// A plain GET of `path`.
    pub fn get(path: &str) -> OriginRequest {
        OriginRequest {
            path: path.to_owned(),
            ..OriginRequest::default()
        }
    }
}

/// What the origin answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginStatus {
    Ok,
    /// 206 to a forwarded `Range` (`meta.content_range` says which bytes).
    PartialContent,
    NotModified,
    /// 412 to a forwarded `If-Match` / `If-Unmodified-Since`.
    PreconditionFailed,
    /// 416 to a forwarded `Range`.
    RangeNotSatisfiable,
    /// A fact about the object: it does not exist (`NoSuchKey`).
    NotFound,
    /// A fact about the object: access to it is denied (`AccessDenied`).
    Forbidden,
    /// Any other answer an HTTP origin meant (a redirect, 204, 400, 401, 405…; never a 5xx or
    /// 429, which are failures): passed to the viewer with its status, stored only when
    /// RFC 9111 allows (`server::fill`).
    Other(u16),
}

/// Response metadata the cache stores and replays.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    pub content_length: Option<u64>,
    pub content_type: Option<HeaderValue>,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
    pub cache_control: Option<HeaderValue>,
    pub expires: Option<HeaderValue>,
    pub content_encoding: Option<HeaderValue>,
    pub content_language: Option<HeaderValue>,
    pub content_disposition: Option<HeaderValue>,
    /// `Age` from a parent cache, in seconds.
    pub age: Option<u64>,
    /// `Content-Range` of a 206 answer.
    pub content_range: Option<HeaderValue>,
    /// The origin's `Date`, when it could be read.
    pub date: Option<HeaderValue>,
    /// Every other end-to-end header an HTTP origin sent (`Location`, `Allow`…); the cache's
    /// allowlist decides which are kept. Empty for S3.
    pub other: ::http::HeaderMap,
}

impl ObjectMeta {
    /// Forgets a field, wherever it is kept.
    pub fn remove(&mut self, name: &::http::HeaderName) {
        use ::http::header;
        self.other.remove(name);
        let field = match *name {
            header::CONTENT_TYPE => &mut self.content_type,
            header::ETAG => &mut self.etag,
            header::LAST_MODIFIED => &mut self.last_modified,
            header::CACHE_CONTROL => &mut self.cache_control,
            header::EXPIRES => &mut self.expires,
            header::CONTENT_ENCODING => &mut self.content_encoding,
            header::CONTENT_LANGUAGE => &mut self.content_language,
            header::CONTENT_DISPOSITION => &mut self.content_disposition,
            _ => return,
        };
        *field = None;
    }

    /// The representation headers as a map, for the cache's allowlist
    /// (`cache::headers::replayed`) to filter: the one conversion from S3's fields.
    pub fn headers(&self) -> ::http::HeaderMap {
        use ::http::header;
        let mut h = ::http::HeaderMap::with_capacity(10);
        for (name, v) in [
            (header::CONTENT_TYPE, &self.content_type),
            (header::ETAG, &self.etag),
            (header::LAST_MODIFIED, &self.last_modified),
            (header::CACHE_CONTROL, &self.cache_control),
            (header::EXPIRES, &self.expires),
            (header::CONTENT_ENCODING, &self.content_encoding),
            (header::CONTENT_LANGUAGE, &self.content_language),
            (header::CONTENT_DISPOSITION, &self.content_disposition),
        ] {
            if let Some(v) = v {
                h.insert(name, v.clone());
            }
        }
        for (name, v) in &self.other {
            if !h.contains_key(name) {
                h.append(name.clone(), v.clone());
            }
        }
        h
    }
}

pub struct OriginResponse {
    pub status: OriginStatus,
    pub meta: ObjectMeta,
    pub body: Option<OriginBody>,
}

impl std::fmt::Debug for OriginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginResponse")
            .field("status", &self.status)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// Why an origin fetch failed. Cloneable so collapsed waiters all get it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("origin timed out: {0}")]
    Timeout(String),
    #[error("cannot connect to origin: {0}")]
    Connect(String),
    /// An error answer that says nothing about the object (bad credentials, throttling, 5xx,
    /// missing bucket…): never cached over a positive entry.
    #[error("origin answered {status} {code}: {message}")]
    Status {
        status: u16,
        /// S3 error code from a fixed list (`classify::error_code`), for bounded metrics.
        code: &'static str,
        message: String,
    },
    #[error("origin body failed: {0}")]
    Body(String),
    /// The edge could not sign the request (credential provider failed).
    #[error("origin credentials unavailable: {0}")]
    Credentials(String),
    #[error("origin request failed: {0}")]
    Other(String),
}

impl OriginError {
    /// The status the viewer gets when no stale copy can stand in.
    pub fn viewer_status(&self) -> StatusCode {
        match self {
            OriginError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OriginError::Timeout(_) => "timeout",
            OriginError::Connect(_) => "connect",
            OriginError::Status { .. } => "status",
            OriginError::Body(_) => "body",
            OriginError::Credentials(_) => "credentials",
            OriginError::Other(_) => "other",
        }
    }

    /// The S3 error code (or a stand-in such as `Timeout`) for the metric by code; bounded.
    pub fn code(&self) -> &'static str {
        match self {
            OriginError::Timeout(_) => "Timeout",
            OriginError::Connect(_) => "ConnectError",
            OriginError::Status { code, .. } => code,
            OriginError::Body(_) => "BodyError",
            OriginError::Credentials(_) => "CredentialsProviderError",
            OriginError::Other(_) => "Other",
        }
    }

    /// Whether another attempt may succeed (and is worth spending retry budget on).
    pub fn retryable(&self) -> bool {
        match self {
            OriginError::Timeout(_) | OriginError::Connect(_) => true,
            OriginError::Status { status, code, .. } => {
                *status >= 500 || *status == 429 || classify::is_throttling(code)
            }
            OriginError::Body(_) | OriginError::Credentials(_) | OriginError::Other(_) => false,
        }
    }

    /// A plain status error (no S3 code).
    pub fn status(status: u16, message: impl Into<String>) -> OriginError {
        OriginError::Status {
            status,
            code: classify::http_code(status),
            message: message.into(),
        }
    }

    /// The status forwarded in `Cache-Status: fwd-status`.
    pub fn fwd_status(&self) -> u16 {
        match self {
            OriginError::Status { status, .. } => *status,
            other => other.viewer_status().as_u16(),
        }
    }
}

/// A viewer request forwarded as it is (a method other than GET/HEAD, with its body): never
/// cached, never retried.
pub struct ForwardRequest {
    pub method: ::http::Method,
    /// Normalized viewer path.
    pub path: String,
    /// The viewer's whole query string: nothing of the answer is stored.
    pub query: Option<String>,
    /// The viewer's end-to-end headers (hop-by-hop and `Host` already removed).
    pub headers: ::http::HeaderMap,
    pub body: OriginBody,
}

/// The origin's answer to a forwarded request, whatever its status.
pub struct ForwardResponse {
    pub status: StatusCode,
    /// End-to-end headers (hop-by-hop removed), `Set-Cookie` included: it is for this viewer.
    pub headers: ::http::HeaderMap,
    pub body: OriginBody,
}

/// An origin the edge can fetch misses from.
pub trait OriginClient: Send + Sync + 'static {
    /// GET (or HEAD) one object, conditionally when validators are given.
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>>;

    /// Forwards a viewer request with its method and body (`allowedMethods`); only HTTP
    /// origins can (the config refuses other methods for S3).
    fn forward(&self, req: ForwardRequest) -> BoxFuture<'_, Result<ForwardResponse, OriginError>> {
        drop(req);
        Box::pin(async {
            Err(OriginError::Other(
                "this origin takes only GET and HEAD".into(),
            ))
        })
    }

    /// A cheap reachability check for readiness.
    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>>;
}

/// Why the origin in a config could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Http(#[from] http::SetupError),
    #[error("origin: give s3 or http")]
    Missing,
}

/// The origin a config describes: S3 or HTTP, behind a failover when one is configured.
pub async fn build(cfg: &crate::config::OriginConfig) -> Result<Arc<dyn OriginClient>, BuildError> {
    let primary = build_one(cfg).await?;
    let Some(f) = &cfg.failover else {
        return Ok(primary);
    };
    Ok(Arc::new(failover::FailoverOrigin {
        primary,
        secondary: build_one(&f.secondary).await?,
        status_codes: f.status_codes.clone(),
        connect_failures: f.connect_failures,
    }))
}

async fn build_one(cfg: &crate::config::OriginConfig) -> Result<Arc<dyn OriginClient>, BuildError> {
    match (&cfg.s3, &cfg.http) {
        (Some(s3), _) => Ok(Arc::new(s3::S3Origin::new(s3, cfg).await)),
        (None, Some(h)) => Ok(Arc::new(http::HttpOrigin::new(h, cfg)?)),
        (None, None) => Err(BuildError::Missing),
    }
}
