//! A private S3 bucket as origin: SigV4 via aws-sdk-s3, credentials from the default AWS chain,
//! custom endpoint / path-style for S3-compatible servers, a key prefix, timeouts and bounded
//! retries. The SDK surfaces 304/403/404 as errors; they are mapped back to statuses here.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::HeaderValue;

use super::{
    ObjectMeta, OriginBody, OriginClient, OriginError, OriginRequest, OriginResponse, OriginStatus,
};
use crate::config::OriginConfig;

/// Fetches objects from one bucket under one key prefix.
pub struct S3Origin {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// Whole fetch per attempt, including the body.
    total_timeout: Duration,
}

impl S3Origin {
    /// Builds a client; credentials are resolved lazily by the SDK's default chain.
    pub async fn new(cfg: &OriginConfig) -> S3Origin {
        let t = &cfg.timeouts;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(t.connect.as_duration())
            .read_timeout(t.first_byte.as_duration())
            .operation_attempt_timeout(t.connect.as_duration() + t.first_byte.as_duration())
            .build();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.s3.region.clone()))
            .timeout_config(timeouts)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts)
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(1)),
            )
            .load()
            .await;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.s3.force_path_style);
        if let Some(ep) = &cfg.s3.endpoint {
            builder = builder.endpoint_url(ep);
        }
        S3Origin {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: cfg.s3.bucket.clone(),
            prefix: cfg.s3.prefix.clone(),
            total_timeout: t.total.as_duration(),
        }
    }

    /// The object key for a normalized viewer path; the prefix cannot be escaped because
    /// viewer paths are normalized (`crate::security::path`).
    pub fn object_key(&self, path: &str) -> String {
        crate::security::path::object_key(&self.prefix, path)
    }

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
        let deadline = tokio::time::Instant::now() + self.total_timeout;
        if req.head {
            let mut op = self.client.head_object().bucket(&self.bucket).key(key);
            // Only one validator: S3 answers 304 when If-None-Match fails but
            // If-Modified-Since holds (1 s granularity), which would hide a changed object.
            if let Some(etag) = req.validators.etag.as_ref().and_then(|v| v.to_str().ok()) {
                op = op.if_none_match(etag);
            } else if let Some(lm) = req.validators.last_modified.as_ref().and_then(http_date) {
                op = op.if_modified_since(lm);
            }
            return match tokio::time::timeout_at(deadline, op.send()).await {
                Err(_) => Err(OriginError::Timeout("HEAD exceeded total timeout".into())),
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
                        age: None,
                    },
                    body: None,
                }),
                Ok(Err(e)) => map_error(e),
            };
        }
        let mut op = self.client.get_object().bucket(&self.bucket).key(key);
        // Only one validator (see HEAD above): If-None-Match when there is an ETag.
        if let Some(etag) = req.validators.etag.as_ref().and_then(|v| v.to_str().ok()) {
            op = op.if_none_match(etag);
        } else if let Some(lm) = req.validators.last_modified.as_ref().and_then(http_date) {
            op = op.if_modified_since(lm);
        }
        match tokio::time::timeout_at(deadline, op.send()).await {
            Err(_) => Err(OriginError::Timeout("GET exceeded total timeout".into())),
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
                    age: None,
                };
                Ok(OriginResponse {
                    status: OriginStatus::Ok,
                    meta,
                    body: Some(body_stream(out.body, deadline)),
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
            match tokio::time::timeout(self.total_timeout, op).await {
                Err(_) => Err(OriginError::Timeout("HeadBucket".into())),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => map_error(e).map(|_| ()),
            }
        }
        .boxed()
    }
}

/// Turns the SDK body into a stream that fails once the per-attempt deadline passes.
fn body_stream(body: ByteStream, deadline: tokio::time::Instant) -> OriginBody {
    let stream = futures::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => Some((
                Err(OriginError::Timeout("body exceeded total timeout".into())),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok::<Bytes, OriginError>(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(OriginError::Body(e.to_string())), None)),
        }
    });
    Box::pin(stream)
}

/// Maps SDK failures: 304/403/404 become statuses, the rest errors with a viewer status.
fn map_error<E>(
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Result<OriginResponse, OriginError>
where
    E: std::error::Error + Send + Sync + 'static,
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
            let meta = ObjectMeta {
                etag: header("etag"),
                last_modified: header("last-modified"),
                cache_control: header("cache-control"),
                expires: header("expires"),
                content_type: header("content-type"),
                ..ObjectMeta::default()
            };
            let status = match status {
                304 => OriginStatus::NotModified,
                404 => OriginStatus::NotFound,
                403 => OriginStatus::Forbidden,
                _ => {
                    return Err(OriginError::Status {
                        status,
                        message: aws_sdk_s3::error::DisplayErrorContext(se.err()).to_string(),
                    })
                }
            };
            Ok(OriginResponse {
                status,
                meta,
                body: None,
            })
        }
        SdkError::TimeoutError(_) => Err(OriginError::Timeout("no answer in time".into())),
        SdkError::DispatchFailure(df) => {
            let msg = format!("{:?}", df.as_connector_error());
            if df.is_timeout() {
                Err(OriginError::Timeout(msg))
            } else {
                Err(OriginError::Connect(msg))
            }
        }
        SdkError::ResponseError(re) => Err(OriginError::Status {
            status: re.raw().status().as_u16(),
            message: "unparsable response".into(),
        }),
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
