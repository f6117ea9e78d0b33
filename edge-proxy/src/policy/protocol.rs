//! The viewer protocol policy (CloudFront's `ViewerProtocolPolicy`): which answer a viewer that
//! came over plain HTTP gets, per path. Pure: the caller says how the viewer came.

use crate::config::{Behavior, ViewerProtocolPolicy};
use crate::policy::freshness::path_matches;

/// Per-path policies: the first behavior whose pattern matches decides (its own policy, or the
/// Distribution's when it names none), as CloudFront picks one cache behavior per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolPolicies {
    behaviors: Vec<(String, Option<ViewerProtocolPolicy>)>,
    default: ViewerProtocolPolicy,
    /// No path refuses plain HTTP: the per-request check is one load.
    all_allow: bool,
}

/// What to do with a request before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolAnswer {
    Serve,
    /// `301 Moved Permanently` to this URL.
    Redirect(String),
    /// `403 Forbidden`.
    Forbidden,
    /// `400`: the `Host` cannot be turned into a redirect target.
    BadHost,
}

impl ProtocolPolicies {
    pub fn new(default: ViewerProtocolPolicy, behaviors: &[Behavior]) -> ProtocolPolicies {
        let behaviors = behaviors
            .iter()
            .map(|b: &Behavior| {
                let pattern = if b.path_pattern.starts_with('/') || b.path_pattern.starts_with('*')
                {
                    b.path_pattern.clone()
                } else {
                    format!("/{}", b.path_pattern)
                };
                (pattern, b.viewer_protocol_policy)
            })
            .collect::<Vec<_>>();
        let all_allow = default == ViewerProtocolPolicy::AllowAll
            && behaviors
                .iter()
                .all(|(_, p)| p.is_none_or(|p| p == ViewerProtocolPolicy::AllowAll));
        ProtocolPolicies {
            behaviors,
            default,
            all_allow,
        }
    }

    /// Whether no path can refuse plain HTTP (so the hot path can skip the lookup).
    pub fn all_allow(&self) -> bool {
        self.all_allow
    }

    /// The policy for a normalized viewer path.
    pub fn for_path(&self, path: &str) -> ViewerProtocolPolicy {
        self.behaviors
            .iter()
            .find(|(p, _)| path_matches(p, path))
            .map_or(self.default, |(_, policy)| policy.unwrap_or(self.default))
    }

    /// The answer for a viewer on `https` (or not) asking for `path` (normalized, to pick the
    /// behavior) as `path_and_query` (as sent, for the redirect) on `host`. `https_port` is the
    /// public HTTPS port the redirect names (443 is left out).
    pub fn answer(
        &self,
        https: bool,
        host: Option<&str>,
        path: &str,
        path_and_query: &str,
        https_port: u16,
    ) -> ProtocolAnswer {
        if https || self.all_allow() {
            return ProtocolAnswer::Serve;
        }
        match self.for_path(path) {
            ViewerProtocolPolicy::AllowAll => ProtocolAnswer::Serve,
            ViewerProtocolPolicy::HttpsOnly => ProtocolAnswer::Forbidden,
            ViewerProtocolPolicy::RedirectToHttps => {
                let Some(authority) = host.and_then(|h| h.parse::<http::uri::Authority>().ok())
                else {
                    return ProtocolAnswer::BadHost;
                };
                // The viewer's host with the HTTPS port, never anything else it sent (no
                // userinfo: Authority parsing accepts it, a redirect must not echo it).
                if authority.as_str().contains('@') {
                    return ProtocolAnswer::BadHost;
                }
                let name = authority.host();
                let port = if https_port == 443 {
                    String::new()
                } else {
                    format!(":{https_port}")
                };
                ProtocolAnswer::Redirect(format!("https://{name}{port}{path_and_query}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(pattern: &str, p: Option<ViewerProtocolPolicy>) -> Behavior {
        Behavior {
            path_pattern: pattern.into(),
            min_ttl: None,
            default_ttl: None,
            max_ttl: None,
            viewer_protocol_policy: p,
        }
    }

    #[test]
    fn first_matching_behavior_decides_even_without_its_own_policy() {
        use ViewerProtocolPolicy::*;
        let p = ProtocolPolicies::new(
            RedirectToHttps,
            &[
                behavior("/api/*", Some(HttpsOnly)),
                behavior("/public/*", Some(AllowAll)),
                behavior("/public/x/*", Some(HttpsOnly)),
                behavior("/img/*", None),
            ],
        );
        assert_eq!(p.for_path("/api/v1"), HttpsOnly);
        assert_eq!(p.for_path("/public/x/y"), AllowAll, "first match wins");
        assert_eq!(p.for_path("/img/a.png"), RedirectToHttps);
        assert_eq!(p.for_path("/other"), RedirectToHttps);
        assert!(!p.all_allow());
        assert!(ProtocolPolicies::new(AllowAll, &[behavior("/a", None)]).all_allow());
    }

    #[test]
    fn answers() {
        use ViewerProtocolPolicy::*;
        let p = ProtocolPolicies::new(RedirectToHttps, &[behavior("/api/*", Some(HttpsOnly))]);
        let host = Some("cdn.example.com:8080");
        assert_eq!(
            p.answer(false, host, "/a b", "/a%20b?x=1&y", 443),
            ProtocolAnswer::Redirect("https://cdn.example.com/a%20b?x=1&y".into())
        );
        assert_eq!(
            p.answer(false, host, "/a", "/a", 8443),
            ProtocolAnswer::Redirect("https://cdn.example.com:8443/a".into())
        );
        assert_eq!(
            p.answer(false, Some("[::1]:80"), "/a", "/a", 443),
            ProtocolAnswer::Redirect("https://[::1]/a".into())
        );
        assert_eq!(
            p.answer(true, host, "/api/x", "/api/x", 443),
            ProtocolAnswer::Serve
        );
        assert_eq!(
            p.answer(false, host, "/api/x", "/api/x", 443),
            ProtocolAnswer::Forbidden
        );
        for bad in [
            None,
            Some(""),
            Some("evil.com/x"),
            Some("u@evil.com"),
            Some("a b"),
        ] {
            assert_eq!(
                p.answer(false, bad, "/a", "/a", 443),
                ProtocolAnswer::BadHost,
                "{bad:?}"
            );
        }
    }
}
