//! Verification of CloudFront signed URLs and signed cookies against trusted key groups.
//!
//! Pure: the caller passes the request's pieces and the current time; no I/O, no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::b64;
use super::keys::{HashAlgorithm, PublicKey};
use super::path::{is_canonical, percent_decode_once};
use super::pattern::wildcard_match;
use super::policy::{canned_policy, ip_allowed, Policy};
use super::verified::VerifiedSignatures;

/// Query parameters CloudFront reserves for signing; never part of the cache key or sent to
/// the origin.
pub const SIGNING_PARAMS: &[&str] = &[
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// Why a request for a signed path is refused (403). The category is all a viewer learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No signed URL parameters and no signed cookies.
    Missing,
    /// Parameters present but unusable (bad base64, bad JSON, conflicting or duplicate fields,
    /// a non-canonical path).
    Malformed,
    /// `Key-Pair-Id` names no key trusted for this path.
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IpNotAllowed,
    /// A valid custom policy whose `Resource` does not cover this URL.
    ResourceMismatch,
}

impl DenyReason {
    pub const ALL: [DenyReason; 8] = [
        DenyReason::Missing,
        DenyReason::Malformed,
        DenyReason::UnknownKey,
        DenyReason::BadSignature,
        DenyReason::Expired,
        DenyReason::NotYetValid,
        DenyReason::IpNotAllowed,
        DenyReason::ResourceMismatch,
    ];

    /// Short category used in the 403 body and as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Missing => "missing",
            DenyReason::Malformed => "malformed",
            DenyReason::UnknownKey => "unknown-key",
            DenyReason::BadSignature => "bad-signature",
            DenyReason::Expired => "expired",
            DenyReason::NotYetValid => "not-yet-valid",
            DenyReason::IpNotAllowed => "ip-not-allowed",
            DenyReason::ResourceMismatch => "wrong-resource",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gate needs to know about one viewer request.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// `http` or `https`, as the viewer used it (CloudFront signs full URLs).
    pub scheme: &'a str,
    /// The `Host` the viewer addressed (with port when not the default).
    pub host: &'a str,
    /// Path exactly as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The normalized path, used to decide whether a signature is required.
    pub normalized_path: &'a str,
    pub raw_query: Option<&'a str>,
    /// Every `Cookie` header value.
    pub cookies: &'a [&'a str],
    pub client_ip: IpAddr,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// A successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// The path is public.
    Public,
    /// Signed by the key with this id.
    Signed { key_id: String, via_cookie: bool },
}

/// One compiled `signedPaths` rule: a pattern and every key its key groups trust.
#[derive(Debug, Clone)]
pub struct SignedPathRule {
    pub pattern: String,
    pub keys: HashMap<String, Arc<PublicKey>>,
    /// Matching paths need no signature (an entry without key groups).
    pub public: bool,
}

/// The ordered signed-path rules (first match wins).
#[derive(Debug, Clone, Default)]
pub struct SignatureGate {
    pub rules: Vec<SignedPathRule>,
    /// Public-key checks already passed under these rules' keys.
    pub verified: VerifiedSignatures,
}

/// The signing fields of one request, from the query string or cookies.
#[derive(Debug, Default)]
struct Credentials {
    expires: Option<String>,
    policy: Option<String>,
    signature: Option<String>,
    key_pair_id: Option<String>,
    hash_algorithm: Option<String>,
    duplicate: bool,
}

impl Credentials {
    fn set(&mut self, name: &str, value: String, cookie: bool) {
        let name = if cookie {
            match name.strip_prefix("CloudFront-") {
                Some(n) => n,
                None => return,
            }
        } else {
            name
        };
        let slot = match name {
            "Expires" => &mut self.expires,
            "Policy" => &mut self.policy,
            "Signature" => &mut self.signature,
            "Key-Pair-Id" => &mut self.key_pair_id,
            "Hash-Algorithm" => &mut self.hash_algorithm,
            _ => return,
        };
        if slot.is_some() {
            self.duplicate = true;
        } else {
            *slot = Some(value);
        }
    }

    fn any(&self) -> bool {
        self.expires.is_some()
            || self.policy.is_some()
            || self.signature.is_some()
            || self.key_pair_id.is_some()
            || self.hash_algorithm.is_some()
    }
}

/// Splits a raw query into `(name, value)` pairs without decoding.
fn query_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The query without CloudFront's signing parameters, other parameters in their original order
/// and encoding; `None` when nothing is left.
pub fn strip_signing_params(raw_query: &str) -> Option<String> {
    let kept: Vec<&str> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !SIGNING_PARAMS.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

fn from_query(raw: &str) -> Credentials {
    let mut c = Credentials::default();
    for (name, value) in query_pairs(raw) {
        if SIGNING_PARAMS.contains(&name) {
            // Values are base64/ids: decode once in case a client escaped them; junk stays
            // junk and fails later as malformed.
            let v = percent_decode_once(value).unwrap_or_else(|_| "\u{1}".into());
            c.set(name, v, false);
        }
    }
    c
}

fn from_cookies(headers: &[&str]) -> Credentials {
    let mut c = Credentials::default();
    for header in headers {
        for pair in header.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                c.set(name.trim(), value.to_string(), true);
            }
        }
    }
    c
}

impl SignatureGate {
    /// A gate with a fresh, default-sized verified-signature memo.
    pub fn new(rules: Vec<SignedPathRule>) -> Self {
        Self {
            rules,
            verified: VerifiedSignatures::default(),
        }
    }

    /// The rule that governs `normalized_path`, if any.
    pub fn rule_for(&self, normalized_path: &str) -> Option<&SignedPathRule> {
        self.rules
            .iter()
            .find(|r| wildcard_match(&r.pattern, normalized_path))
    }

    /// Decides whether the request may proceed.
    pub fn check(&self, req: &SignedRequest<'_>) -> Result<Allowed, DenyReason> {
        let rule = match self.rule_for(req.normalized_path) {
            Some(r) if !r.public => r,
            _ => return Ok(Allowed::Public),
        };
        let from_url = req.raw_query.map(from_query).filter(Credentials::any);
        let via_cookie = from_url.is_none();
        let creds = match from_url {
            Some(c) => c,
            None => from_cookies(req.cookies),
        };
        if !creds.any() {
            return Err(DenyReason::Missing);
        }
        // A signature must cover the path actually served: no dot segments, doubled or
        // encoded slashes that normalization would rewrite.
        if creds.duplicate || !is_canonical(req.raw_path) {
            return Err(DenyReason::Malformed);
        }
        let key_id = creds.key_pair_id.as_deref().ok_or(DenyReason::Malformed)?;
        let signature = creds.signature.as_deref().ok_or(DenyReason::Malformed)?;
        let key = rule.keys.get(key_id).ok_or(DenyReason::UnknownKey)?;
        let hash = match creds.hash_algorithm.as_deref() {
            None => HashAlgorithm::Sha1,
            Some(h) => HashAlgorithm::parse(h).ok_or(DenyReason::Malformed)?,
        };
        let signature = b64::decode(signature).ok_or(DenyReason::Malformed)?;
        let url = resource_url(req);
        match (creds.expires.as_deref(), creds.policy.as_deref()) {
            (Some(expires), None) => {
                let expires: u64 = parse_epoch(expires).ok_or(DenyReason::Malformed)?;
                let policy = canned_policy(&url, expires);
                if !self
                    .verified
                    .verify(key_id, key, hash, policy.as_bytes(), &signature)
                {
                    return Err(DenyReason::BadSignature);
                }
                if req.now >= expires {
                    return Err(DenyReason::Expired);
                }
            }
            (None, Some(policy)) => {
                let doc = b64::decode(policy).ok_or(DenyReason::Malformed)?;
                if !self.verified.verify(key_id, key, hash, &doc, &signature) {
                    return Err(DenyReason::BadSignature);
                }
                let policy = Policy::parse(&doc).map_err(|_| DenyReason::Malformed)?;
                if req.now >= policy.date_less_than {
                    return Err(DenyReason::Expired);
                }
                if policy
                    .date_greater_than
                    .is_some_and(|start| req.now < start)
                {
                    return Err(DenyReason::NotYetValid);
                }
                if !ip_allowed(&policy.ip_ranges, req.client_ip) {
                    return Err(DenyReason::IpNotAllowed);
                }
                if let Some(resource) = &policy.resource {
                    if !wildcard_match(resource, &url) {
                        return Err(DenyReason::ResourceMismatch);
                    }
                }
            }
            _ => return Err(DenyReason::Malformed),
        }
        Ok(Allowed::Signed {
            key_id: key_id.to_string(),
            via_cookie,
        })
    }
}

fn parse_epoch(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The URL the signer signed: scheme, host, raw path and the query minus signing parameters.
fn resource_url(req: &SignedRequest<'_>) -> String {
    let mut url = format!("{}://{}{}", req.scheme, req.host, req.raw_path);
    if let Some(q) = req.raw_query.and_then(strip_signing_params) {
        url.push('?');
        url.push_str(&q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::super::keys::test_keys::*;
    use super::*;
    use rsa::Pkcs1v15Sign;
    use sha1::{Digest, Sha1};
    use sha2::Sha256;

    const HOST: &str = "cdn.example.com";
    const NOW: u64 = 1_800_000_000;

    fn gate() -> SignatureGate {
        let mut private = HashMap::new();
        private.insert(
            "KA".to_string(),
            Arc::new(PublicKey::from_pem(RSA_A_PUB).expect("a")),
        );
        private.insert(
            "KEC".to_string(),
            Arc::new(PublicKey::from_pem(EC_A_PUB).expect("ec")),
        );
        let mut other = HashMap::new();
        other.insert(
            "KB".to_string(),
            Arc::new(PublicKey::from_pem(RSA_B_PUB).expect("b")),
        );
        SignatureGate::new(vec![
            SignedPathRule {
                pattern: "/private/*".into(),
                keys: private,
                public: false,
            },
            SignedPathRule {
                pattern: "/other/*".into(),
                keys: other,
                public: false,
            },
        ])
    }

    #[derive(Clone, Copy)]
    enum Signer {
        RsaA,
        RsaB,
        Ec,
    }

    fn sign(signer: Signer, hash: HashAlgorithm, msg: &[u8]) -> String {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let digest = match hash {
            HashAlgorithm::Sha1 => Sha1::digest(msg).to_vec(),
            HashAlgorithm::Sha256 => Sha256::digest(msg).to_vec(),
        };
        let scheme = || match hash {
            HashAlgorithm::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
            HashAlgorithm::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        };
        let sig = match signer {
            Signer::RsaA => rsa_a().sign(scheme(), &digest).expect("sign"),
            Signer::RsaB => rsa_b().sign(scheme(), &digest).expect("sign"),
            Signer::Ec => {
                let s: p256::ecdsa::Signature = ec_a().sign_prehash(&digest).expect("sign");
                s.to_der().as_bytes().to_vec()
            }
        };
        b64::encode(&sig)
    }

    fn canned_query(
        url: &str,
        expires: u64,
        key: &str,
        signer: Signer,
        hash: HashAlgorithm,
    ) -> String {
        let sig = sign(signer, hash, canned_policy(url, expires).as_bytes());
        let mut q = format!("Expires={expires}&Signature={sig}&Key-Pair-Id={key}");
        if hash == HashAlgorithm::Sha256 {
            q.push_str("&Hash-Algorithm=SHA256");
        }
        q
    }

    fn custom_query(policy: &str, key: &str, signer: Signer) -> String {
        let sig = sign(signer, HashAlgorithm::Sha1, policy.as_bytes());
        format!(
            "Policy={}&Signature={sig}&Key-Pair-Id={key}",
            b64::encode(policy.as_bytes())
        )
    }

    fn check(
        path: &str,
        query: Option<&str>,
        cookies: &[&str],
        ip: &str,
        now: u64,
    ) -> Result<Allowed, DenyReason> {
        let normalized = super::super::path::normalize_path(path).expect("path");
        gate().check(&SignedRequest {
            scheme: "https",
            host: HOST,
            raw_path: path,
            normalized_path: &normalized,
            raw_query: query,
            cookies,
            client_ip: ip.parse().expect("ip"),
            now,
        })
    }

    fn url_check(path: &str, query: &str) -> Result<Allowed, DenyReason> {
        check(path, Some(query), &[], "192.0.2.10", NOW)
    }

    fn signed(key: &str) -> Result<Allowed, DenyReason> {
        Ok(Allowed::Signed {
            key_id: key.into(),
            via_cookie: false,
        })
    }

    #[test]
    fn public_paths_need_nothing() {
        assert_eq!(url_check("/public/a.txt", "x=1"), Ok(Allowed::Public));
        assert_eq!(
            check("/private/a.txt", None, &[], "192.0.2.1", NOW),
            Err(DenyReason::Missing)
        );
        // Doubled slashes cannot route around the rule: the normalized path decides.
        assert_eq!(
            check("//private/a.txt", None, &[], "192.0.2.1", NOW),
            Err(DenyReason::Missing)
        );
    }

    #[test]
    fn canned_policy_all_algorithms() {
        let url = format!("https://{HOST}/private/a.txt?v=2");
        for (key, signer, hash) in [
            ("KA", Signer::RsaA, HashAlgorithm::Sha1),
            ("KA", Signer::RsaA, HashAlgorithm::Sha256),
            ("KEC", Signer::Ec, HashAlgorithm::Sha1),
            ("KEC", Signer::Ec, HashAlgorithm::Sha256),
        ] {
            let q = format!("v=2&{}", canned_query(&url, NOW + 60, key, signer, hash));
            assert_eq!(url_check("/private/a.txt", &q), signed(key));
            // Expired one second later.
            let q = format!("v=2&{}", canned_query(&url, NOW, key, signer, hash));
            assert_eq!(url_check("/private/a.txt", &q), Err(DenyReason::Expired));
        }
    }

    #[test]
    fn canned_policy_rejections() {
        let url = format!("https://{HOST}/private/a.txt");
        let good = canned_query(&url, NOW + 60, "KA", Signer::RsaA, HashAlgorithm::Sha1);
        assert_eq!(url_check("/private/a.txt", &good), signed("KA"));
        // Other object, other query, extended expiry: the signature no longer matches.
        assert_eq!(
            url_check("/private/b.txt", &good),
            Err(DenyReason::BadSignature)
        );
        assert_eq!(
            url_check("/private/a.txt", &format!("{good}&v=3")),
            Err(DenyReason::BadSignature)
        );
        let later = good.replace(
            &format!("Expires={}", NOW + 60),
            &format!("Expires={}", NOW + 6000),
        );
        assert_eq!(
            url_check("/private/a.txt", &later),
            Err(DenyReason::BadSignature)
        );
        // Wrong key for the id, unknown id, key trusted only elsewhere.
        let wrong = canned_query(&url, NOW + 60, "KA", Signer::RsaB, HashAlgorithm::Sha1);
        assert_eq!(
            url_check("/private/a.txt", &wrong),
            Err(DenyReason::BadSignature)
        );
        let unknown = canned_query(&url, NOW + 60, "KZ", Signer::RsaA, HashAlgorithm::Sha1);
        assert_eq!(
            url_check("/private/a.txt", &unknown),
            Err(DenyReason::UnknownKey)
        );
        let elsewhere = canned_query(&url, NOW + 60, "KB", Signer::RsaB, HashAlgorithm::Sha1);
        assert_eq!(
            url_check("/private/a.txt", &elsewhere),
            Err(DenyReason::UnknownKey)
        );
        // Hash confusion: signed SHA-1 but claims SHA-256.
        assert_eq!(
            url_check("/private/a.txt", &format!("{good}&Hash-Algorithm=SHA256")),
            Err(DenyReason::BadSignature)
        );
        for bad in [
            format!("{good}&Hash-Algorithm=MD5"),
            format!("{good}&Signature=abc"),
            format!("{good}&Policy=e30_"),
            good.replace("Expires=", "Expires=x"),
            good.replace("Signature=", "Signature=%%"),
            good.replace("&Key-Pair-Id=KA", ""),
            format!("Expires={}&Key-Pair-Id=KA", NOW + 60),
        ] {
            assert_eq!(
                url_check("/private/a.txt", &bad),
                Err(DenyReason::Malformed),
                "{bad}"
            );
        }
        // A valid signature on a path that normalization would rewrite.
        let doubled = format!("https://{HOST}/private//a.txt");
        let q = canned_query(&doubled, NOW + 60, "KA", Signer::RsaA, HashAlgorithm::Sha1);
        assert_eq!(url_check("/private//a.txt", &q), Err(DenyReason::Malformed));
        // Scheme and host are part of the signed URL.
        let http = canned_query(
            &format!("http://{HOST}/private/a.txt"),
            NOW + 60,
            "KA",
            Signer::RsaA,
            HashAlgorithm::Sha1,
        );
        assert_eq!(
            url_check("/private/a.txt", &http),
            Err(DenyReason::BadSignature)
        );
    }

    #[test]
    fn memoized_signatures_still_face_every_condition() {
        let g = gate();
        let at = |path: &str, q: &str, ip: &str, now: u64| {
            let normalized = super::super::path::normalize_path(path).expect("path");
            g.check(&SignedRequest {
                scheme: "https",
                host: HOST,
                raw_path: path,
                normalized_path: &normalized,
                raw_query: Some(q),
                cookies: &[],
                client_ip: ip.parse().expect("ip"),
                now,
            })
        };
        let doc = format!(
            r#"{{"Statement":[{{"Resource":"https://{HOST}/private/dir/*","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}},"DateGreaterThan":{{"AWS:EpochTime":{}}},"IpAddress":{{"AWS:SourceIp":"192.0.2.0/28"}}}}}}]}}"#,
            NOW + 60,
            NOW - 60
        );
        let q = custom_query(&doc, "KA", Signer::RsaA);
        for _ in 0..2 {
            assert_eq!(at("/private/dir/a", &q, "192.0.2.1", NOW), signed("KA"));
        }
        assert_eq!(g.verified.computed.get(), 1);
        assert_eq!(g.verified.reused.get(), 1);
        assert_eq!(
            at("/private/dir/a", &q, "192.0.2.1", NOW + 60),
            Err(DenyReason::Expired)
        );
        assert_eq!(
            at("/private/dir/a", &q, "192.0.2.1", NOW - 61),
            Err(DenyReason::NotYetValid)
        );
        assert_eq!(
            at("/private/dir/a", &q, "192.0.2.99", NOW),
            Err(DenyReason::IpNotAllowed)
        );
        assert_eq!(
            at("/private/other", &q, "192.0.2.1", NOW),
            Err(DenyReason::ResourceMismatch)
        );
        let canned = canned_query(
            &format!("https://{HOST}/private/a"),
            NOW + 1,
            "KA",
            Signer::RsaA,
            HashAlgorithm::Sha1,
        );
        assert_eq!(at("/private/a", &canned, "192.0.2.1", NOW), signed("KA"));
        assert_eq!(
            at("/private/a", &canned, "192.0.2.1", NOW + 1),
            Err(DenyReason::Expired)
        );
        assert_eq!(g.verified.reused.get(), 6);
    }

    #[test]
    fn custom_policy_conditions() {
        let p = |cond: &str, res: &str| {
            format!(r#"{{"Statement":[{{"Resource":"{res}","Condition":{{{cond}}}}}]}}"#)
        };
        let res = format!("https://{HOST}/private/*");
        let until = format!(r#""DateLessThan":{{"AWS:EpochTime":{}}}"#, NOW + 60);
        let ok = custom_query(&p(&until, &res), "KA", Signer::RsaA);
        assert_eq!(url_check("/private/dir/a.txt", &ok), signed("KA"));
        assert_eq!(
            url_check("/private/a.txt", &format!("x=1&{ok}")),
            signed("KA")
        );
        // Wildcard resource does not cover another prefix even though the signature is fine.
        let narrow = custom_query(
            &p(&until, &format!("https://{HOST}/private/dir/*")),
            "KA",
            Signer::RsaA,
        );
        assert_eq!(
            url_check("/private/other.txt", &narrow),
            Err(DenyReason::ResourceMismatch)
        );
        // Time window.
        let expired = custom_query(
            &p(
                &format!(r#""DateLessThan":{{"AWS:EpochTime":{NOW}}}"#),
                &res,
            ),
            "KA",
            Signer::RsaA,
        );
        assert_eq!(url_check("/private/a", &expired), Err(DenyReason::Expired));
        let future = custom_query(
            &p(
                &format!(
                    r#"{until},"DateGreaterThan":{{"AWS:EpochTime":{}}}"#,
                    NOW + 10
                ),
                &res,
            ),
            "KA",
            Signer::RsaA,
        );
        assert_eq!(
            url_check("/private/a", &future),
            Err(DenyReason::NotYetValid)
        );
        assert_eq!(
            check("/private/a", Some(&future), &[], "192.0.2.10", NOW + 10),
            signed("KA")
        );
        // IP ranges.
        let ip = custom_query(
            &p(
                &format!(r#"{until},"IpAddress":{{"AWS:SourceIp":"192.0.2.0/28"}}"#),
                &res,
            ),
            "KA",
            Signer::RsaA,
        );
        assert_eq!(url_check("/private/a", &ip), signed("KA"));
        assert_eq!(
            check("/private/a", Some(&ip), &[], "192.0.2.16", NOW),
            Err(DenyReason::IpNotAllowed)
        );
        // Tampered policy: signature covers the original bytes.
        let doc = p(&until, &res);
        let sig_for_doc = sign(Signer::RsaA, HashAlgorithm::Sha1, doc.as_bytes());
        let wider = p(&until, "*");
        let tampered = format!(
            "Policy={}&Signature={sig_for_doc}&Key-Pair-Id=KA",
            b64::encode(wider.as_bytes())
        );
        assert_eq!(
            url_check("/private/a", &tampered),
            Err(DenyReason::BadSignature)
        );
        // Signed junk is still malformed.
        let junk = custom_query("{\"Statement\":5}", "KA", Signer::RsaA);
        assert_eq!(url_check("/private/a", &junk), Err(DenyReason::Malformed));
        // ECDSA custom policy.
        let ec = custom_query(&doc, "KEC", Signer::Ec);
        assert_eq!(url_check("/private/a", &ec), signed("KEC"));
    }

    #[test]
    fn signed_cookies() {
        let res = format!("https://{HOST}/private/*");
        let doc = format!(
            r#"{{"Statement":[{{"Resource":"{res}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}}}}}]}}"#,
            NOW + 60
        );
        let sig = sign(Signer::RsaA, HashAlgorithm::Sha1, doc.as_bytes());
        let cookie = format!(
            "session=abc; CloudFront-Policy={}; CloudFront-Signature={sig}; CloudFront-Key-Pair-Id=KA",
            b64::encode(doc.as_bytes())
        );
        let via_cookie = Ok(Allowed::Signed {
            key_id: "KA".into(),
            via_cookie: true,
        });
        assert_eq!(
            check("/private/a.txt", None, &[&cookie], "192.0.2.1", NOW),
            via_cookie
        );
        // Cookies split across two headers work too.
        let (first, second) =
            cookie.split_at(cookie.find("; CloudFront-Signature").expect("split"));
        let second = second.trim_start_matches("; ");
        assert_eq!(
            check(
                "/private/a.txt",
                Some("v=1"),
                &[first, second],
                "192.0.2.1",
                NOW
            ),
            via_cookie
        );
        assert_eq!(
            check("/private/a.txt", None, &[&cookie], "192.0.2.1", NOW + 60),
            Err(DenyReason::Expired)
        );
        let tampered = cookie.replace("CloudFront-Key-Pair-Id=KA", "CloudFront-Key-Pair-Id=KB");
        assert_eq!(
            check("/private/a.txt", None, &[&tampered], "192.0.2.1", NOW),
            Err(DenyReason::UnknownKey)
        );
        // Canned cookie: the resource is the request URL.
        let url = format!("https://{HOST}/private/a.txt");
        let sig = sign(
            Signer::RsaA,
            HashAlgorithm::Sha256,
            canned_policy(&url, NOW + 5).as_bytes(),
        );
        let canned = format!("CloudFront-Expires={}; CloudFront-Signature={sig}; CloudFront-Key-Pair-Id=KA; CloudFront-Hash-Algorithm=SHA256", NOW + 5);
        assert_eq!(
            check("/private/a.txt", None, &[&canned], "192.0.2.1", NOW),
            via_cookie
        );
        assert_eq!(
            check("/private/b.txt", None, &[&canned], "192.0.2.1", NOW),
            Err(DenyReason::BadSignature)
        );
        // Duplicated cookie fields are refused rather than guessed at.
        let dup = format!("{canned}; CloudFront-Key-Pair-Id=KA");
        assert_eq!(
            check("/private/a.txt", None, &[&dup], "192.0.2.1", NOW),
            Err(DenyReason::Malformed)
        );
    }

    #[test]
    fn strips_only_signing_params() {
        assert_eq!(
            strip_signing_params("Expires=1&Signature=x&Key-Pair-Id=K"),
            None
        );
        assert_eq!(
            strip_signing_params(
                "a=1&Policy=p&b=%20&Hash-Algorithm=SHA256&Signature=s&Key-Pair-Id=K&c"
            ),
            Some("a=1&b=%20&c".into())
        );
        assert_eq!(
            strip_signing_params("signature=lower&ExpiresX=1"),
            Some("signature=lower&ExpiresX=1".into())
        );
        assert_eq!(strip_signing_params(""), None);
    }

    #[test]
    fn deny_reasons_are_short_and_distinct() {
        let names: std::collections::HashSet<_> =
            DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DenyReason::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.len() < 20 && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')));
    }
}
