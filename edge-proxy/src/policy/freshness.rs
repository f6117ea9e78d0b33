//! How long an origin answer may be served from cache (RFC 9111 §4.2 as CloudFront applies it):
//! `s-maxage` > `max-age` > `Expires`; the default TTL only when the origin says nothing; the
//! result clamped to [minTTL, maxTTL]; `no-store`/`private`/`no-cache` bypass the cache unless
//! minTTL forces caching.

use std::time::{Duration, SystemTime};

use crate::config::{Behavior, CacheConfig};

/// The TTL bounds that apply to one request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min: Duration,
    pub default: Duration,
    pub max: Duration,
}

/// The directives of a `Cache-Control` response header that matter to a shared cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// RFC 5861 `stale-while-revalidate=N`.
    pub stale_while_revalidate: Option<u64>,
    /// RFC 5861 `stale-if-error=N`.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses a `Cache-Control` value. Unknown directives are ignored; an unparsable delta
    /// becomes 0 (RFC 9111 §1.2.2: treat as stale rather than fresh forever).
    /// RFC 9111 §5.2.2.2/§5.2.2.8/§5.2.2.10: a shared cache must not serve the response stale
    /// without validating it (`must-revalidate`, `proxy-revalidate`, or `s-maxage`).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }

    pub fn parse(value: &str) -> CacheControl {
        let mut cc = CacheControl::default();
        for directive in value.split(',') {
            let directive = directive.trim();
            if directive.is_empty() {
                continue;
            }
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            let delta = || arg.map(parse_delta).unwrap_or(0);
            if name.eq_ignore_ascii_case("max-age") {
                cc.max_age.get_or_insert_with(delta);
            } else if name.eq_ignore_ascii_case("s-maxage") {
                cc.s_maxage.get_or_insert_with(delta);
            } else if name.eq_ignore_ascii_case("no-store") {
                cc.no_store = true;
            } else if name.eq_ignore_ascii_case("no-cache") {
                // `no-cache="field"` (qualified) only restricts the named fields, which the
                // cache drops (`qualified_fields`); the answer itself may be stored.
                cc.no_cache |= arg.is_none();
            } else if name.eq_ignore_ascii_case("private") {
                cc.private |= arg.is_none();
            } else if name.eq_ignore_ascii_case("must-revalidate") {
                cc.must_revalidate = true;
            } else if name.eq_ignore_ascii_case("proxy-revalidate") {
                cc.proxy_revalidate = true;
            } else if name.eq_ignore_ascii_case("stale-while-revalidate") {
                cc.stale_while_revalidate.get_or_insert_with(delta);
            } else if name.eq_ignore_ascii_case("stale-if-error") {
                cc.stale_if_error.get_or_insert_with(delta);
            }
        }
        cc
    }
}

/// The field names of qualified `no-cache="…"` and `private="…"` directives (RFC 9111
/// §5.2.2.4, §5.2.2.7): a shared cache stores the answer without them. Lower case.
pub fn qualified_fields(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = find_qualified(rest) {
        let after = &rest[i..];
        let Some(open) = after.find('"') else { break };
        let Some(len) = after[open + 1..].find('"') else {
            break;
        };
        let list = &after[open + 1..open + 1 + len];
        out.extend(
            list.split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty()),
        );
        rest = &after[open + 1 + len + 1..];
    }
    out
}

/// Where the next `no-cache="` or `private="` directive starts in `s`.
fn find_qualified(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    ["no-cache", "private"]
        .iter()
        .filter_map(|d| {
            lower.match_indices(d).find_map(|(i, _)| {
                let tail = lower[i + d.len()..].trim_start();
                tail.strip_prefix('=')
                    .is_some_and(|t| t.trim_start().starts_with('"'))
                    .then_some(i)
            })
        })
        .min()
}

/// RFC 9111 §4.2.2's heuristic: a tenth of the time since `Last-Modified`, for answers with no
/// explicit freshness (HTTP origins; bounded by the policy's default TTL by the caller).
pub fn heuristic_lifetime(origin: &OriginFreshness, now: SystemTime) -> Option<Duration> {
    if origin.is_explicit() {
        return None;
    }
    let lm = origin.last_modified?;
    let age = origin.date.unwrap_or(now).duration_since(lm).ok()?;
    Some(age / 10)
}

/// Delta-seconds; values beyond 2^31 are capped as RFC 9111 §1.2.2 allows.
fn parse_delta(s: &str) -> u64 {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    s.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31)
}

/// What to do with a cacheable (200/304) origin answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Store, fresh for `ttl` from the moment the origin produced it.
    Store { ttl: Duration },
    /// Pass to the viewer without storing.
    Bypass,
}

/// The freshness inputs taken from an origin response.
#[derive(Debug, Default, Clone, Copy)]
pub struct OriginFreshness {
    pub cache_control: Option<CacheControl>,
    /// `Expires`, already parsed; an unparsable `Expires` must be passed as `UNIX_EPOCH`
    /// (RFC 9111 §5.3: invalid dates mean "already expired").
    pub expires: Option<SystemTime>,
    /// The origin's `Date`; `now` is used when absent.
    pub date: Option<SystemTime>,
    /// `Last-Modified`, for heuristic freshness.
    pub last_modified: Option<SystemTime>,
}

impl OriginFreshness {
    /// Whether the origin gave a freshness lifetime (`s-maxage`, `max-age` or `Expires`).
    pub fn is_explicit(&self) -> bool {
        self.expires.is_some()
            || self
                .cache_control
                .as_ref()
                .is_some_and(|c| c.max_age.is_some() || c.s_maxage.is_some())
    }
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decides storage and TTL for one origin answer under `policy`.
pub fn decide(policy: &TtlPolicy, origin: &OriginFreshness, now: SystemTime) -> Decision {
    let cc = origin.cache_control.unwrap_or_default();
    if cc.no_store || cc.private || cc.no_cache {
        return if policy.min.is_zero() {
            Decision::Bypass
        } else {
            Decision::Store { ttl: policy.min }
        };
    }
    let from_origin = cc
        .s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            origin.expires.map(|exp| {
                exp.duration_since(origin.date.unwrap_or(now))
                    .unwrap_or(Duration::ZERO)
            })
        });
    let ttl = match from_origin {
        Some(t) => t.clamp(policy.min, policy.max.max(policy.min)),
        None => policy.default,
    };
    Decision::Store { ttl }
}

/// How long past expiry a stored response may be served, and whether it may be at all. Under
/// `must_revalidate`, `stale_if_error` is only how long the entry is kept for revalidation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleRules {
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
    /// Stale use is forbidden: an unvalidated stale entry gets 504 (RFC 9111 §5.2.2.2).
    pub must_revalidate: bool,
}

/// The stale windows for a response: the origin's `stale-if-error` / `stale-while-revalidate`
/// when it gives them (bounded by `bound`, the policy's max TTL, as CloudFront bounds them),
/// the configured windows otherwise; none at all under `must-revalidate`, `proxy-revalidate`
/// or `s-maxage`.
pub fn stale_rules(
    cc: Option<&CacheControl>,
    configured_if_error: Duration,
    configured_while_revalidate: Duration,
    bound: Duration,
) -> StaleRules {
    let cc = cc.copied().unwrap_or_default();
    if cc.forbids_stale() {
        // Kept as long as any stale copy would be (so it can still be revalidated with a 304,
        // and an origin failure answers 504), but never served stale.
        return StaleRules {
            stale_if_error: configured_if_error,
            stale_while_revalidate: Duration::ZERO,
            must_revalidate: true,
        };
    }
    let pick = |origin: Option<u64>, configured: Duration| {
        origin.map_or(configured, |n| Duration::from_secs(n).min(bound))
    };
    StaleRules {
        stale_if_error: pick(cc.stale_if_error, configured_if_error),
        stale_while_revalidate: pick(cc.stale_while_revalidate, configured_while_revalidate),
        must_revalidate: false,
    }
}

/// RFC 9111 §4.2.3 corrected initial age: the larger of the apparent age (`response_time -
/// date`) and the origin's `Age` plus the response delay.
pub fn corrected_initial_age(
    age_value: Option<u64>,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    // `Date` has one-second resolution: an apparent age of up to a second is its rounding,
    // not time the response spent elsewhere (else max-age=1 would be born stale).
    let apparent = date
        .and_then(|d| response_time.duration_since(d).ok())
        .filter(|a| *a > Duration::from_secs(1))
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected = age_value.map_or(Duration::ZERO, |a| {
        Duration::from_secs(a).saturating_add(delay)
    });
    apparent.max(corrected)
}

/// Parses an HTTP date, mapping garbage to `UNIX_EPOCH` ("already expired").
pub fn parse_expires(value: &str) -> SystemTime {
    httpdate::parse_http_date(value.trim()).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The age of a stored answer: what it had when stored plus the time resident here.
pub fn current_age(initial_age: Duration, resident: Duration) -> Duration {
    initial_age.saturating_add(resident)
}

/// Whether the answer is still fresh.
pub fn is_fresh(ttl: Duration, age: Duration) -> bool {
    age < ttl
}

/// Per-path TTL policies: behaviors in order, first match wins, the cache policy otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPolicies {
    behaviors: Vec<(String, TtlPolicy)>,
    default: TtlPolicy,
}

impl PathPolicies {
    pub fn new(cache: &CacheConfig, behaviors: &[Behavior]) -> PathPolicies {
        let default = TtlPolicy {
            min: cache.min_ttl.as_duration(),
            default: cache.default_ttl.as_duration(),
            max: cache.max_ttl.as_duration(),
        };
        let behaviors = behaviors
            .iter()
            .map(|b| {
                let pattern = if b.path_pattern.starts_with('/') || b.path_pattern.starts_with('*')
                {
                    b.path_pattern.clone()
                } else {
                    format!("/{}", b.path_pattern)
                };
                let policy = TtlPolicy {
                    min: b.min_ttl.map_or(default.min, |d| d.as_duration()),
                    default: b.default_ttl.map_or(default.default, |d| d.as_duration()),
                    max: b.max_ttl.map_or(default.max, |d| d.as_duration()),
                };
                (pattern, policy)
            })
            .collect();
        PathPolicies { behaviors, default }
    }

    /// The policy for a normalized viewer path (starting with `/`).
    pub fn for_path(&self, path: &str) -> &TtlPolicy {
        self.behaviors
            .iter()
            .find(|(p, _)| path_matches(p, path))
            .map_or(&self.default, |(_, policy)| policy)
    }
}

/// CloudFront path-pattern match: `*` is any run of characters (including `/`), `?` exactly one.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) && p[pi] != b'*' {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    const H: u64 = 3600;

    fn policy(min: u64, default: u64, max: u64) -> TtlPolicy {
        TtlPolicy {
            min: Duration::from_secs(min),
            default: Duration::from_secs(default),
            max: Duration::from_secs(max),
        }
    }

    fn cc(s: &str) -> OriginFreshness {
        OriginFreshness {
            cache_control: Some(CacheControl::parse(s)),
            ..Default::default()
        }
    }

    fn store(secs: u64) -> Decision {
        Decision::Store {
            ttl: Duration::from_secs(secs),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn parses_cache_control_directives() {
        let c = CacheControl::parse(r#"public, max-age=60, S-MAXAGE="120", no-cache, private="x""#);
        assert_eq!(c.max_age, Some(60));
        assert_eq!(c.s_maxage, Some(120));
        // `private="x"` names a field (RFC 9111 §5.2.2.7); the answer itself is shareable.
        assert!(c.no_cache && !c.private && !c.no_store);
        assert!(CacheControl::parse("no-store").no_store);
        assert_eq!(CacheControl::parse("max-age=abc").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age=-5").max_age, Some(0));
        assert_eq!(
            CacheControl::parse("max-age=99999999999999999999999").max_age,
            Some(1 << 31)
        );
        assert_eq!(
            CacheControl::parse("max-age=5, max-age=10").max_age,
            Some(5)
        );
        assert_eq!(CacheControl::parse(" , ,,"), CacheControl::default());
        assert_eq!(CacheControl::parse(""), CacheControl::default());
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let p = policy(0, H, 365 * 24 * H);
        let mut o = cc("max-age=60, s-maxage=120");
        o.expires = Some(now() + Duration::from_secs(999));
        assert_eq!(decide(&p, &o, now()), store(120));
        let mut o = cc("max-age=60");
        o.expires = Some(now() + Duration::from_secs(999));
        assert_eq!(decide(&p, &o, now()), store(60));
        let o = OriginFreshness {
            expires: Some(now() + Duration::from_secs(999)),
            ..Default::default()
        };
        assert_eq!(decide(&p, &o, now()), store(999));
    }

    #[test]
    fn expires_is_relative_to_origin_date() {
        let p = policy(0, H, 365 * 24 * H);
        let o = OriginFreshness {
            cache_control: None,
            expires: Some(now() + Duration::from_secs(100)),
            date: Some(now() + Duration::from_secs(40)),
            last_modified: None,
        };
        assert_eq!(decide(&p, &o, now()), store(60));
        // Expires in the past (or garbage) is already expired, not "default".
        let o = OriginFreshness {
            expires: Some(parse_expires("0")),
            ..Default::default()
        };
        assert_eq!(decide(&p, &o, now()), store(0));
        assert_eq!(
            parse_expires("Sun, 06 Nov 1994 08:49:37 GMT"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
        );
    }

    #[test]
    fn default_ttl_only_when_origin_is_silent() {
        let p = policy(0, 86_400, 365 * 86_400);
        assert_eq!(
            decide(&p, &OriginFreshness::default(), now()),
            store(86_400)
        );
        assert_eq!(decide(&p, &cc("public"), now()), store(86_400));
        assert_eq!(decide(&p, &cc("max-age=0"), now()), store(0));
    }

    #[test]
    fn clamps_to_min_and_max() {
        let p = policy(30, 60, 600);
        assert_eq!(decide(&p, &cc("max-age=5"), now()), store(30));
        assert_eq!(decide(&p, &cc("max-age=100"), now()), store(100));
        assert_eq!(decide(&p, &cc("max-age=100000"), now()), store(600));
        assert_eq!(decide(&p, &cc("s-maxage=100000"), now()), store(600));
    }

    #[test]
    fn no_store_private_no_cache_bypass_unless_min_ttl() {
        for directive in ["no-store", "private", "no-cache", "max-age=60, private"] {
            assert_eq!(
                decide(&policy(0, 60, 600), &cc(directive), now()),
                Decision::Bypass,
                "{directive}"
            );
            assert_eq!(
                decide(&policy(10, 60, 600), &cc(directive), now()),
                store(10),
                "{directive}"
            );
        }
    }

    #[test]
    fn revalidation_directives_forbid_stale() {
        let h = Duration::from_secs(3600);
        for directive in [
            "max-age=1, must-revalidate",
            "proxy-revalidate",
            "s-maxage=5",
        ] {
            let c = CacheControl::parse(directive);
            assert!(c.forbids_stale(), "{directive}");
            let r = stale_rules(Some(&c), h, h, 10 * h);
            assert!(r.must_revalidate, "{directive}");
            assert_eq!(r.stale_if_error, h, "kept for revalidation");
            assert_eq!(r.stale_while_revalidate, Duration::ZERO);
        }
        let c = CacheControl::parse("max-age=1, stale-if-error=60, must-revalidate");
        assert!(stale_rules(Some(&c), h, h, h).must_revalidate, "MUST wins");
        assert!(!CacheControl::parse("max-age=1").forbids_stale());
    }

    #[test]
    fn origin_stale_windows_are_honoured_and_bounded() {
        let s = Duration::from_secs;
        let c = CacheControl::parse("max-age=1, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(c.stale_while_revalidate, Some(30));
        assert_eq!(c.stale_if_error, Some(600));
        let r = stale_rules(Some(&c), s(86_400), s(0), s(3600));
        assert_eq!(r.stale_while_revalidate, s(30), "origin beats the config");
        assert_eq!(r.stale_if_error, s(600));
        let r = stale_rules(Some(&c), s(86_400), s(0), s(100));
        assert_eq!(r.stale_if_error, s(100), "bounded by the max TTL");
        let r = stale_rules(None, s(7), s(8), s(100));
        assert_eq!((r.stale_if_error, r.stale_while_revalidate), (s(7), s(8)));
    }

    #[test]
    fn corrected_initial_age_per_rfc_9111() {
        let t0 = now();
        let s = Duration::from_secs;
        // No Age, no Date: nothing but the (sub-second) delay, which counts only with Age.
        assert_eq!(corrected_initial_age(None, None, t0, t0 + s(2)), s(0));
        // Age from a parent plus the response delay.
        assert_eq!(
            corrected_initial_age(Some(100), None, t0, t0 + s(2)),
            s(102)
        );
        // Apparent age from Date wins when larger.
        assert_eq!(
            corrected_initial_age(Some(1), Some(t0 - s(50)), t0, t0 + s(1)),
            s(51)
        );
        // Date's rounding is not age.
        assert_eq!(
            corrected_initial_age(None, Some(t0 - Duration::from_millis(900)), t0, t0),
            s(0)
        );
        // A Date in the future is not a negative age.
        assert_eq!(corrected_initial_age(None, Some(t0 + s(50)), t0, t0), s(0));
    }

    #[test]
    fn age_and_freshness() {
        let a = current_age(Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(a, Duration::from_secs(15));
        assert!(is_fresh(Duration::from_secs(16), a));
        assert!(!is_fresh(Duration::from_secs(15), a));
        assert!(!is_fresh(Duration::ZERO, Duration::ZERO));
        assert_eq!(
            current_age(Duration::MAX, Duration::from_secs(1)),
            Duration::MAX
        );
    }

    #[test]
    fn path_patterns() {
        let cases = [
            ("*", "/anything/at/all", true),
            ("/static/*", "/static/a.js", true),
            ("/static/*", "/static/", true),
            ("/static/*", "/static", false),
            ("/static/*", "/other/static/a.js", false),
            ("/*.jpg", "/a/b/c.jpg", true),
            ("/*.jpg", "/a/b/c.jpeg", false),
            ("/img/?.png", "/img/a.png", true),
            ("/img/?.png", "/img/ab.png", false),
            ("/a*b*c", "/aXXbYYc", true),
            ("/a*b*c", "/aXXbYY", false),
            ("/exact.html", "/exact.html", true),
            ("/exact.html", "/exact.htm", false),
            ("/**", "/x", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(path_matches(p, s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn behaviors_first_match_wins() {
        let cache = CacheConfig::default();
        let b = |pat: &str, d: u64| Behavior {
            path_pattern: pat.into(),
            min_ttl: None,
            default_ttl: Some(Dur::secs(d)),
            max_ttl: None,
            viewer_protocol_policy: None,
        };
        let pp = PathPolicies::new(
            &cache,
            &[b("/static/*", 100), b("static/img/*", 200), b("*.css", 300)],
        );
        assert_eq!(
            pp.for_path("/static/img/a.png").default,
            Duration::from_secs(100)
        );
        assert_eq!(pp.for_path("/x.css").default, Duration::from_secs(300));
        assert_eq!(
            pp.for_path("/x.js").default,
            cache.default_ttl.as_duration()
        );
        let pp = PathPolicies::new(&cache, &[b("static/img/*", 200)]);
        assert_eq!(
            pp.for_path("/static/img/a.png").default,
            Duration::from_secs(200)
        );
        assert_eq!(
            pp.for_path("/static/a.png").min,
            cache.min_ttl.as_duration()
        );
    }

    #[test]
    fn qualified_no_cache_and_private_only_name_fields() {
        let cc = CacheControl::parse(r#"no-cache="Set-Cookie, X-A", private="x-b", max-age=60"#);
        assert!(!cc.no_cache && !cc.private);
        assert_eq!(cc.max_age, Some(60));
        assert_eq!(
            qualified_fields(r#"no-cache="Set-Cookie, X-A", private="x-b", max-age=60"#),
            ["set-cookie", "x-a", "x-b"]
        );
        let plain = CacheControl::parse("no-cache, private");
        assert!(plain.no_cache && plain.private);
        assert!(qualified_fields("no-cache, private").is_empty());
    }

    #[test]
    fn the_heuristic_is_a_tenth_of_the_age_and_never_overrides_explicit_freshness() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut f = OriginFreshness {
            last_modified: Some(now - Duration::from_secs(1000)),
            ..OriginFreshness::default()
        };
        assert_eq!(heuristic_lifetime(&f, now), Some(Duration::from_secs(100)));
        f.expires = Some(now);
        assert_eq!(heuristic_lifetime(&f, now), None);
        f.expires = None;
        f.last_modified = Some(now + Duration::from_secs(5));
        assert_eq!(
            heuristic_lifetime(&f, now),
            None,
            "a future Last-Modified gives nothing"
        );
    }
}
