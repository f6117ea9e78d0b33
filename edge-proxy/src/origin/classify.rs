//! Which S3 error answers are facts about the object and which are failures of the origin or of
//! the edge itself. Facts (`NoSuchKey`, `AccessDenied` on the object) may be cached as negative
//! entries; failures (bad or expired credentials, clock skew, a missing bucket, throttling, 5xx)
//! must never replace a cached object: the cache keeps it and serves it under `staleIfError`.

use super::OriginStatus;

/// S3 error codes the edge knows by name; anything else is reported as `Other` so the metric
/// label set stays bounded.
const KNOWN_CODES: &[&str] = &[
    "AccessDenied",
    "AccountProblem",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InternalError",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidObjectState",
    "InvalidRange",
    "InvalidRequest",
    "InvalidToken",
    "NoSuchBucket",
    "NoSuchKey",
    "NotImplemented",
    "PreconditionFailed",
    "RequestTimeTooSkewed",
    "RequestTimeout",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "SlowDown",
    "TokenRefreshRequired",
    "XMinioServerNotInitialized",
];

/// `code` as a `&'static str` from [`KNOWN_CODES`], `Other` when unknown.
pub fn error_code(code: &str) -> &'static str {
    KNOWN_CODES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(code))
        .copied()
        .unwrap_or("Other")
}

/// A stand-in code for an error answer without an S3 code (HEAD answers have no body).
pub fn http_code(status: u16) -> &'static str {
    match status {
        400 => "Http400",
        401 => "Http401",
        403 => "Http403",
        404 => "Http404",
        429 => "Http429",
        500 => "Http500",
        502 => "Http502",
        503 => "Http503",
        504 => "Http504",
        501..=599 => "Http5xx",
        _ => "HttpOther",
    }
}

/// Codes that mean "back off": worth a retry only within the retry budget.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "SlowDown" | "ServiceUnavailable" | "Http503" | "Http429"
    )
}

/// How an S3 error answer is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A fact about the object (or a conditional outcome).
    Object(OriginStatus),
    /// A failure of the origin or of the edge's access to it, with its bounded code.
    Failure(&'static str),
}

/// Classifies an S3 error answer by HTTP status and S3 error code (`None` when the answer had
/// no parsable body, as for HEAD).
pub fn classify(status: u16, code: Option<&str>) -> Verdict {
    let named = code.map(error_code);
    match status {
        304 => Verdict::Object(OriginStatus::NotModified),
        412 => Verdict::Object(OriginStatus::PreconditionFailed),
        416 => Verdict::Object(OriginStatus::RangeNotSatisfiable),
        404 => match named {
            Some("NoSuchBucket") => Verdict::Failure("NoSuchBucket"),
            // NoSuchKey, or a bodiless HEAD 404.
            Some("NoSuchKey") | None => Verdict::Object(OriginStatus::NotFound),
            Some(other) => Verdict::Failure(other),
        },
        403 => match named {
            Some("AccessDenied") => Verdict::Object(OriginStatus::Forbidden),
            // A bodiless HEAD 403 cannot be told apart; HEAD answers are never cached.
            None => Verdict::Object(OriginStatus::Forbidden),
            Some(other) => Verdict::Failure(other),
        },
        _ => Verdict::Failure(named.unwrap_or_else(|| http_code(status))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_about_the_object() {
        assert_eq!(
            classify(404, Some("NoSuchKey")),
            Verdict::Object(OriginStatus::NotFound)
        );
        assert_eq!(
            classify(403, Some("AccessDenied")),
            Verdict::Object(OriginStatus::Forbidden)
        );
        assert_eq!(classify(404, None), Verdict::Object(OriginStatus::NotFound));
        assert_eq!(
            classify(304, None),
            Verdict::Object(OriginStatus::NotModified)
        );
        assert_eq!(
            classify(416, Some("InvalidRange")),
            Verdict::Object(OriginStatus::RangeNotSatisfiable)
        );
    }

    #[test]
    fn failures_of_the_origin_or_the_edge() {
        for (status, code) in [
            (403, "InvalidAccessKeyId"),
            (403, "SignatureDoesNotMatch"),
            (400, "ExpiredToken"),
            (403, "ExpiredToken"),
            (403, "RequestTimeTooSkewed"),
            (404, "NoSuchBucket"),
            (503, "SlowDown"),
            (500, "InternalError"),
            (400, "AuthorizationHeaderMalformed"),
        ] {
            assert_eq!(
                classify(status, Some(code)),
                Verdict::Failure(error_code(code)),
                "{status} {code}"
            );
            assert_ne!(error_code(code), "Other", "{code} is known");
        }
        assert_eq!(classify(502, None), Verdict::Failure("Http502"));
        assert_eq!(
            classify(403, Some("SomethingNew")),
            Verdict::Failure("Other")
        );
        assert!(is_throttling("SlowDown"));
        assert!(!is_throttling("InvalidAccessKeyId"));
    }
}
