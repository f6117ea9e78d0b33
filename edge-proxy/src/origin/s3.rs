//! A private S3 bucket as origin: SigV4 via aws-sdk-s3, credentials from the default AWS chain,
//! custom endpoint / path-style for S3-compatible servers, a key prefix, timeouts, and retries
//! under a retry budget (the SDK's own retries are off). The SDK surfaces 304/403/404/412/416
//! as errors; `classify` maps them back to statuses (facts about the object) or failures.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::HeaderValue;

use super::classify::{self, Verdict};
use super::retry::RetryBudget;
use super::{
    ObjectMeta, OriginBody, OriginClient, OriginError, OriginRequest, OriginResponse, OriginStatus,
};
use crate::config::OriginConfig;

/// Fetches objects from one bucket under one key prefix.
pub struct S3Origin {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// Until response headers, per attempt.
    attempt_timeout: Duration,
    /// Longest wait for the next body chunk once headers arrived.
    idle_timeout: Duration,
    max_attempts: u32,
    budget: Arc<RetryBudget>,
}

impl S3Origin {
    /// Builds a client; credentials are resolved lazily by the SDK's default chain.
    pub async fn new(s3: &crate::config::S3Origin, cfg: &OriginConfig) -> S3Origin {
        let t = &cfg.timeouts;
        let attempt_timeout = t.connect.as_duration() + t.first_byte.as_duration();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(t.connect.as_duration())
            .read_timeout(t.first_byte.as_duration())
            .operation_attempt_timeout(attempt_timeout)
            .build();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(s3.region.clone()))
            .timeout_config(timeouts)
            // Retries are ours, under a budget (`get`).
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(s3.force_path_style);
        if let Some(ep) = &s3.endpoint {
            builder = builder.endpoint_url(ep);
        }
        S3Origin {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.clone(),
            attempt_timeout,
            idle_timeout: t.idle(),
            max_attempts: cfg.max_attempts.max(1),
            budget: Arc::new(RetryBudget::default()),
        }
    }

    /// The object key for a normalized viewer path; the prefix cannot be escaped because
    /// viewer paths are normalized (`crate::security::path`).
    pub fn object_key(&self, path: &str) -> String {
        crate::security::path::object_key(&self.prefix, path)
    }

    /// One fetch: attempts until success, a non-retryable answer, `max_attempts`, or an empty
    /// retry budget.
    async fn get(&self, req: OriginRequest) -> Result<OriginResponse, OriginError> {
        let key = self.object_key(&req.path);
        if key.is_empty() {
            // S3 cannot address an empty key; answer like a missing object.
            return Ok(OriginResponse {
                status: OriginStatus::NotFound,
                meta: ObjectMeta::default(),
                body: None,
            });
        }
        super::retry::with_retries(&self.budget, self.max_attempts, || self.attempt(&req, &key))
            .await
    }

    async fn attempt(&self, req: &OriginRequest, key: &str) -> Result<OriginResponse, OriginError> {
        // The SDK enforces the same bound; this guards against anything it does not cover.
        let limit = self.attempt_timeout + Duration::from_millis(500);
        // Only one validator: S3 answers 304 when If-None-Match fails but If-Modified-Since
        // holds (1 s granularity), which would hide a changed object.
        let etag = req.validators.etag.as_ref().and_then(|v| v.to_str().ok());
        let ims = req.validators.last_modified.as_ref().and_then(http_date);
        if req.head {
            let mut op = self.client.head_object().bucket(&self.bucket).key(key);
            if let Some(etag) = etag {
                op = op.if_none_match(etag);
            } else if let Some(lm) = ims {
                op = op.if_modified_since(lm);
            }
            return match tokio::time::timeout(limit, op.send()).await {
                Err(_) => Err(OriginError::Timeout("HEAD took too long".into())),
                Ok(Ok(out)) => Ok(OriginResponse {
                    status: OriginStatus::Ok,
                    meta: ObjectMeta {
                        content_length: out.content_length().and_then(|n| u64::try_from(n).ok()),
                        content_type: value(out.content_type()),
                        etag: value(out.e_tag()),
                        last_modified: out.last_modified().and_then(format_date),
                        cache_control: value(out.cache_control()),
                        expires: value(out.expires_string()),
                        content_encoding: value(out.content_encoding()),
                        content_language: value(out.content_language()),
                        content_disposition: value(out.content_disposition()),
                        ..ObjectMeta::default()
                    },
                    body: None,
                }),
                Ok(Err(e)) => map_error(e),
            };
        }
        let mut op = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(etag) = etag {
            op = op.if_none_match(etag);
        } else if let Some(lm) = ims {
            op = op.if_modified_since(lm);
        }
        if let Some(range) = req.range.as_ref().and_then(|v| v.to_str().ok()) {
            op = op.range(range);
        }
        if let Some(m) = req.if_match.as_ref().and_then(|v| v.to_str().ok()) {
            op = op.if_match(m);
        }
        if let Some(d) = req.if_unmodified_since.as_ref().and_then(http_date) {
            op = op.if_unmodified_since(d);
        }
        match tokio::time::timeout(limit, op.send()).await {
            Err(_) => Err(OriginError::Timeout("GET took too long".into())),
            Ok(Ok(out)) => {
                let meta = ObjectMeta {
                    content_length: out.content_length().and_then(|n| u64::try_from(n).ok()),
                    content_type: value(out.content_type()),
                    etag: value(out.e_tag()),
                    last_modified: out.last_modified().and_then(format_date),
                    cache_control: value(out.cache_control()),
                    expires: value(out.expires_string()),
                    content_encoding: value(out.content_encoding()),
                    content_language: value(out.content_language()),
                    content_disposition: value(out.content_disposition()),
                    content_range: value(out.content_range()),
                    ..ObjectMeta::default()
                };
                let status = if meta.content_range.is_some() {
                    OriginStatus::PartialContent
                } else {
                    OriginStatus::Ok
                };
                Ok(OriginResponse {
                    status,
                    meta,
                    body: Some(body_stream(out.body, self.idle_timeout)),
                })
            }
            Ok(Err(e)) => map_error(e),
        }
    }
}

impl OriginClient for S3Origin {
    fn fetch(&self, req: OriginRequest) -> BoxFuture<'_, Result<OriginResponse, OriginError>> {
        self.get(req).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), OriginError>> {
        async move {
            let op = self.client.head_bucket().bucket(&self.bucket).send();
            match tokio::time::timeout(self.attempt_timeout, op).await {
                Err(_) => Err(OriginError::Timeout("HeadBucket".into())),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => match map_error(e) {
                    Ok(r) if r.status == OriginStatus::NotFound => Err(OriginError::Status {
                        status: 404,
                        code: "NoSuchBucket",
                        message: "HeadBucket: no such bucket".into(),
                    }),
                    Ok(r) if r.status == OriginStatus::Forbidden => Err(OriginError::Status {
                        status: 403,
                        code: "Http403",
                        message: "HeadBucket: forbidden".into(),
                    }),
                    other => other.map(|_| ()),
                },
            }
        }
        .boxed()
    }
}

/// Turns the SDK body into a stream that fails when the origin sends nothing for `idle`. The
/// timer runs only while the stream is polled, so a slow viewer (backpressure) never trips it.
fn body_stream(body: ByteStream, idle: Duration) -> OriginBody {
    let stream = futures::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((
                Err(OriginError::Timeout(format!(
                    "origin sent nothing for {} ms mid-body",
                    idle.as_millis()
                ))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok::<Bytes, OriginError>(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(OriginError::Body(e.to_string())), None)),
        }
    });
    Box::pin(stream)
}

/// Maps SDK failures: facts about the object become statuses, the rest errors.
fn map_error<E>(
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Result<OriginResponse, OriginError>
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            let header = |name: &str| {
                raw.headers()
                    .get(name)
                    .and_then(|v| HeaderValue::from_str(v).ok())
            };
            let code = se.err().code();
            match classify::classify(status, code) {
                Verdict::Object(status) => Ok(OriginResponse {
                    status,
                    meta: ObjectMeta {
                        etag: header("etag"),
                        last_modified: header("last-modified"),
                        cache_control: header("cache-control"),
                        expires: header("expires"),
                        content_type: header("content-type"),
                        content_range: header("content-range"),
                        date: header("date"),
                        ..ObjectMeta::default()
                    },
                    body: None,
                }),
                Verdict::Failure(code) => Err(OriginError::Status {
                    status,
                    code,
                    message: se
                        .err()
                        .message()
                        .unwrap_or("no message")
                        .chars()
                        .take(200)
                        .collect(),
                }),
            }
        }
        SdkError::TimeoutError(_) => Err(OriginError::Timeout("no answer in time".into())),
        SdkError::DispatchFailure(df) => {
            let msg = format!("{:?}", df.as_connector_error());
            if df.is_timeout() {
                Err(OriginError::Timeout(msg))
            } else if df.is_io() {
                Err(OriginError::Connect(msg))
            } else {
                // Identity resolution fails before transmit and surfaces here.
                let lower = msg.to_ascii_lowercase();
                if lower.contains("credential") || lower.contains("identity") {
                    Err(OriginError::Credentials(msg))
                } else {
                    Err(OriginError::Connect(msg))
                }
            }
        }
        SdkError::ResponseError(re) => Err(OriginError::status(
            re.raw().status().as_u16(),
            "unparsable response",
        )),
        other => Err(OriginError::Other(
            aws_sdk_s3::error::DisplayErrorContext(&other).to_string(),
        )),
    }
}

fn value(v: Option<&str>) -> Option<HeaderValue> {
    v.and_then(|s| HeaderValue::from_str(s).ok())
}

fn format_date(d: &DateTime) -> Option<HeaderValue> {
    d.fmt(DateTimeFormat::HttpDate)
        .ok()
        .and_then(|s| HeaderValue::from_str(&s).ok())
}

fn http_date(v: &HeaderValue) -> Option<DateTime> {
    let t: SystemTime = httpdate::parse_http_date(v.to_str().ok()?).ok()?;
    Some(DateTime::from(t))
}
