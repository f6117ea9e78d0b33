//! Response headers policy: CORS (including preflight answers) and security headers, applied to
//! every viewer response after the cache, so cached objects never depend on the viewer's
//! `Origin`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::config::security::ResponseHeadersPolicyConfig;

/// Why a response headers policy cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("responseHeaders: {0} is not a valid header value")]
pub struct HeaderPolicyError(pub String);

#[derive(Debug, Clone)]
struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<String>,
    /// Lower-cased allowed request headers; `*` allows any.
    headers: Vec<String>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeadersPolicy {
    cors: Option<Cors>,
    fixed: Vec<(HeaderName, HeaderValue)>,
}

/// The answer to a CORS preflight request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

fn value(s: &str) -> Result<HeaderValue, HeaderPolicyError> {
    HeaderValue::from_str(s).map_err(|_| HeaderPolicyError(s.to_string()))
}

impl ResponseHeadersPolicy {
    pub fn from_config(cfg: &ResponseHeadersPolicyConfig) -> Result<Self, HeaderPolicyError> {
        let mut fixed = Vec::new();
        if let Some(h) = &cfg.strict_transport_security {
            let mut v = format!("max-age={}", h.max_age.0.as_secs());
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if h.preload {
                v.push_str("; preload");
            }
            fixed.push((header::STRICT_TRANSPORT_SECURITY, value(&v)?));
        }
        if cfg.content_type_options {
            fixed.push((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ));
        }
        if let Some(f) = &cfg.frame_options {
            fixed.push((header::X_FRAME_OPTIONS, value(&f.to_ascii_uppercase())?));
        }
        if let Some(r) = &cfg.referrer_policy {
            fixed.push((header::REFERRER_POLICY, value(r)?));
        }
        let cors = match &cfg.cors {
            None => None,
            Some(c) => Some(Cors {
                any_origin: c.allow_origins.iter().any(|o| o == "*"),
                origins: c.allow_origins.clone(),
                methods: c
                    .allow_methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
                headers: c
                    .allow_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                allow_methods: value(&c.allow_methods.join(", "))?,
                allow_headers: (!c.allow_headers.is_empty())
                    .then(|| value(&c.allow_headers.join(", ")))
                    .transpose()?,
                expose_headers: (!c.expose_headers.is_empty())
                    .then(|| value(&c.expose_headers.join(", ")))
                    .transpose()?,
                max_age: c.max_age.map(|d| HeaderValue::from(d.0.as_secs())),
                credentials: c.allow_credentials,
            }),
        };
        Ok(Self { cors, fixed })
    }

    /// Whether any header would ever be added.
    pub fn is_empty(&self) -> bool {
        self.cors.is_none() && self.fixed.is_empty()
    }

    /// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// when CORS is configured: 204 with the allow headers, or 403 when the origin, method or
    /// a requested header is not allowed. `None` for anything that is not a preflight.
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Option<Preflight> {
        let cors = self.cors.as_ref()?;
        if method != Method::OPTIONS {
            return None;
        }
        let origin = request.get(header::ORIGIN)?;
        let wanted = request.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut headers = HeaderMap::new();
        self.apply_fixed(&mut headers);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        let method_ok = wanted
            .to_str()
            .is_ok_and(|m| cors.methods.iter().any(|a| a == m || a == "*"));
        let headers_ok = request
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| cors.headers.iter().any(|a| *a == h || a == "*"));
        let Some(allow_origin) = cors.allow_origin(origin) else {
            return Some(Preflight {
                status: StatusCode::FORBIDDEN,
                headers,
            });
        };
        if !method_ok || !headers_ok {
            return Some(Preflight {
                status: StatusCode::FORBIDDEN,
                headers,
            });
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            cors.allow_methods.clone(),
        );
        if let Some(h) = &cors.allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
        }
        if let Some(m) = &cors.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, m.clone());
        }
        if cors.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Some(Preflight {
            status: StatusCode::NO_CONTENT,
            headers,
        })
    }

    /// Adds the policy's headers to a viewer response (overriding the origin's own values).
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap) {
        self.apply_fixed(response);
        let Some(cors) = &self.cors else { return };
        // The policy is the only source of CORS answers (preflight-only headers are left to
        // `preflight`, whose answer passes through here too).
        for h in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            response.remove(h);
        }
        if !cors.any_origin || cors.credentials {
            append_vary_origin(response);
        }
        let Some(origin) = request.get(header::ORIGIN) else {
            return;
        };
        let Some(allow) = cors.allow_origin(origin) else {
            return;
        };
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if let Some(e) = &cors.expose_headers {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        if cors.credentials {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    fn apply_fixed(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.fixed {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for this request origin, if allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin && !self.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?;
        (self.any_origin || self.origins.iter().any(|a| a == o)).then(|| origin.clone())
    }
}

fn append_vary_origin(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::security::{CorsConfig, HstsConfig};
    use crate::config::Dur;

    fn policy(origins: &[&str], credentials: bool) -> ResponseHeadersPolicy {
        ResponseHeadersPolicy::from_config(&ResponseHeadersPolicyConfig {
            cors: Some(CorsConfig {
                allow_origins: origins.iter().map(|s| s.to_string()).collect(),
                allow_methods: vec!["GET".into(), "HEAD".into()],
                allow_headers: vec!["Range".into(), "X-Custom".into()],
                expose_headers: vec!["ETag".into()],
                max_age: Some(Dur::secs(600)),
                allow_credentials: credentials,
            }),
            strict_transport_security: Some(HstsConfig {
                max_age: Dur::secs(31_536_000),
                include_subdomains: true,
                preload: false,
            }),
            content_type_options: true,
            frame_options: Some("deny".into()),
            referrer_policy: Some("no-referrer".into()),
        })
        .expect("policy")
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn security_headers_on_every_response() {
        let p = policy(&["https://app.example.com"], false);
        let mut resp = req(&[("x-frame-options", "ALLOWALL")]);
        p.apply(&HeaderMap::new(), &mut resp);
        assert_eq!(
            resp["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(resp["x-content-type-options"], "nosniff");
        assert_eq!(resp["x-frame-options"], "DENY");
        assert_eq!(resp["referrer-policy"], "no-referrer");
        assert_eq!(resp["vary"], "Origin");
        assert!(resp.get("access-control-allow-origin").is_none());
    }

    #[test]
    fn cors_simple_requests() {
        let p = policy(&["https://app.example.com"], true);
        let mut resp = req(&[
            ("access-control-allow-origin", "*"),
            ("vary", "Accept-Encoding"),
        ]);
        p.apply(&req(&[("origin", "https://app.example.com")]), &mut resp);
        assert_eq!(
            resp["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(resp["access-control-expose-headers"], "ETag");
        assert_eq!(resp["access-control-allow-credentials"], "true");
        let vary: Vec<_> = resp.get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        // A foreign origin gets no CORS grant, and an origin-supplied one is removed.
        let mut resp = req(&[("access-control-allow-origin", "*")]);
        p.apply(&req(&[("origin", "https://evil.example")]), &mut resp);
        assert!(resp.get("access-control-allow-origin").is_none());

        let star = policy(&["*"], false);
        let mut resp = HeaderMap::new();
        star.apply(&req(&[("origin", "https://any.example")]), &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "*");
        assert!(resp.get("vary").is_none());
    }

    #[test]
    fn preflight() {
        let p = policy(&["https://app.example.com"], false);
        let ok = p
            .preflight(
                &Method::OPTIONS,
                &req(&[
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "range, x-custom"),
                ]),
            )
            .expect("preflight");
        assert_eq!(ok.status, StatusCode::NO_CONTENT);
        assert_eq!(
            ok.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(ok.headers["access-control-allow-methods"], "GET, HEAD");
        assert_eq!(
            ok.headers["access-control-allow-headers"],
            "Range, X-Custom"
        );
        assert_eq!(ok.headers["access-control-max-age"], "600");
        for bad in [
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            vec![
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "DELETE"),
            ],
            vec![
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
        ] {
            let denied = p.preflight(&Method::OPTIONS, &req(&bad)).expect("answered");
            assert_eq!(denied.status, StatusCode::FORBIDDEN);
            assert!(denied.headers.get("access-control-allow-origin").is_none());
        }
        // Not a preflight: plain OPTIONS, or GET.
        assert!(p
            .preflight(
                &Method::OPTIONS,
                &req(&[("origin", "https://app.example.com")])
            )
            .is_none());
        assert!(p
            .preflight(
                &Method::GET,
                &req(&[("origin", "x"), ("access-control-request-method", "GET")])
            )
            .is_none());
        // No CORS configured: never answers.
        let none = ResponseHeadersPolicy::default();
        assert!(none.is_empty());
        assert!(none
            .preflight(
                &Method::OPTIONS,
                &req(&[("origin", "x"), ("access-control-request-method", "GET")])
            )
            .is_none());
    }
}
