//! Where misses are fetched from. `OriginClient` is the seam: `s3` talks SigV4 to a private
//! bucket; a parent-cache (`http`) origin can implement the same trait later.

pub mod s3;

use std::pin::Pin;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;
use http::{HeaderValue, StatusCode};

/// A streamed origin body; errors mean the body was cut short.
pub type OriginBody = Pin<Box<dyn Stream<Item = Result<Bytes, OriginError>> + Send>>;

/// Validators for a conditional fetch of a stale entry.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

/// One origin fetch.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// Normalized viewer path (starts with `/`); the origin maps it to its own namespace.
    pub path: String,
    pub head: bool,
    pub validators: Validators,
}

/// What the origin answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginStatus {
    Ok,
    NotModified,
    NotFound,
    Forbidden,
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
    #[error("origin answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("origin body failed: {0}")]
    Body(String),
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
            OriginError::Other(_) => "other",
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

/// An origin the edge can fetch misses from.
pub trait OriginClient: Send + Sync + 'static {
    /// GET (or HEAD) one object, conditionally when validators are given.
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>>;

    /// A cheap reachability check for readiness.
    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>>;
}
