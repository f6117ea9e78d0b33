//! CloudFront policy statements: the canned policy a signer implicitly signed, and custom
//! policies (JSON) with `Resource` wildcards, `DateLessThan`, `DateGreaterThan` and `IpAddress`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

/// Largest policy document accepted (CloudFront's signed URLs are far smaller).
pub const MAX_POLICY_BYTES: usize = 2048;

/// The canned policy for `resource` expiring at `expires` (epoch seconds), byte for byte as
/// CloudFront and its SDKs build it: a signature over it is what `Expires` URLs carry.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    // serde_json escapes exactly like Python's json.dumps for the ASCII a URL consists of.
    let resource = Value::String(resource.to_string()).to_string();
    format!(
        r#"{{"Statement":[{{"Resource":{resource},"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// A parsed custom policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Wildcard URL pattern; `None` (absent) means any resource.
    pub resource: Option<String>,
    pub date_less_than: u64,
    pub date_greater_than: Option<u64>,
    pub ip_ranges: Vec<IpNet>,
}

/// Why a policy document is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed policy: {0}")]
pub struct PolicyError(pub &'static str);

impl Policy {
    /// Parses a custom policy document strictly: exactly one statement, known keys only.
    pub fn parse(doc: &[u8]) -> Result<Self, PolicyError> {
        if doc.len() > MAX_POLICY_BYTES {
            return Err(PolicyError("too large"));
        }
        let root: Value = serde_json::from_slice(doc).map_err(|_| PolicyError("not JSON"))?;
        let root = root.as_object().ok_or(PolicyError("not an object"))?;
        only_keys(root, &["Statement"])?;
        let statements = root
            .get("Statement")
            .and_then(Value::as_array)
            .ok_or(PolicyError("Statement must be an array"))?;
        let [statement] = statements.as_slice() else {
            return Err(PolicyError("exactly one Statement is supported"));
        };
        let statement = statement
            .as_object()
            .ok_or(PolicyError("Statement[0] not an object"))?;
        only_keys(statement, &["Resource", "Condition"])?;
        let resource = match statement.get("Resource") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(PolicyError("Resource must be a non-empty string")),
        };
        let condition = statement
            .get("Condition")
            .and_then(Value::as_object)
            .ok_or(PolicyError("Condition missing"))?;
        only_keys(condition, &["DateLessThan", "DateGreaterThan", "IpAddress"])?;
        let date_less_than =
            epoch(condition.get("DateLessThan")).ok_or(PolicyError("DateLessThan missing"))?;
        let date_greater_than = match condition.get("DateGreaterThan") {
            None => None,
            v => Some(epoch(v).ok_or(PolicyError("bad DateGreaterThan"))?),
        };
        let ip_ranges = match condition.get("IpAddress") {
            None => Vec::new(),
            Some(v) => ip_ranges(v)?,
        };
        Ok(Policy {
            resource,
            date_less_than,
            date_greater_than,
            ip_ranges,
        })
    }
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), PolicyError> {
    if obj.keys().all(|k| allowed.contains(&k.as_str())) {
        Ok(())
    } else {
        Err(PolicyError("unknown key"))
    }
}

/// `{"AWS:EpochTime": <non-negative integer>}`.
fn epoch(v: Option<&Value>) -> Option<u64> {
    let obj = v?.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get("AWS:EpochTime")?.as_u64()
}

/// `{"AWS:SourceIp": "192.0.2.0/24"}` (a list of CIDRs is accepted too); a bare address is
/// a single-host range.
fn ip_ranges(v: &Value) -> Result<Vec<IpNet>, PolicyError> {
    let obj = v
        .as_object()
        .ok_or(PolicyError("IpAddress not an object"))?;
    only_keys(obj, &["AWS:SourceIp"])?;
    let parse = |s: &Value| -> Result<IpNet, PolicyError> {
        let s = s.as_str().ok_or(PolicyError("SourceIp must be a string"))?;
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| PolicyError("SourceIp is not a CIDR"))
    };
    match obj.get("AWS:SourceIp") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= 32 => {
            list.iter().map(parse).collect()
        }
        Some(s @ Value::String(_)) => Ok(vec![parse(s)?]),
        _ => Err(PolicyError("SourceIp missing")),
    }
}

/// Whether `ip` is allowed by `ranges` (IPv4-mapped IPv6 viewers match IPv4 ranges).
pub fn ip_allowed(ranges: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    ranges.is_empty() || ranges.iter().any(|r| r.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canned_policy_matches_cloudfront_docs() {
        assert_eq!(
            canned_policy(
                "https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large&license=yes",
                1_357_034_400
            ),
            r#"{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large&license=yes","Condition":{"DateLessThan":{"AWS:EpochTime":1357034400}}}]}"#
        );
    }

    #[test]
    fn parses_full_custom_policy() {
        let doc = br#"{"Statement":[{"Resource":"http*://h/private/*","Condition":{"DateLessThan":{"AWS:EpochTime":2000},"DateGreaterThan":{"AWS:EpochTime":1000},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"}}}]}"#;
        let p = Policy::parse(doc).expect("parse");
        assert_eq!(p.resource.as_deref(), Some("http*://h/private/*"));
        assert_eq!(p.date_less_than, 2000);
        assert_eq!(p.date_greater_than, Some(1000));
        assert!(ip_allowed(&p.ip_ranges, "192.0.2.77".parse().expect("ip")));
        assert!(ip_allowed(
            &p.ip_ranges,
            "::ffff:192.0.2.1".parse().expect("ip")
        ));
        assert!(!ip_allowed(&p.ip_ranges, "192.0.3.1".parse().expect("ip")));
    }

    #[test]
    fn whitespace_and_minimal_forms() {
        let p = Policy::parse(
            b" {\n \"Statement\" : [ { \"Condition\" : { \"DateLessThan\" : { \"AWS:EpochTime\" : 5 } } } ] } ",
        )
        .expect("parse");
        assert_eq!(p.resource, None);
        assert_eq!(p.date_less_than, 5);
        assert!(p.ip_ranges.is_empty());
        let p = Policy::parse(br#"{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":5},"IpAddress":{"AWS:SourceIp":["10.0.0.1","2001:db8::/32"]}}}]}"#).expect("parse");
        assert_eq!(p.ip_ranges.len(), 2);
        assert!(ip_allowed(&p.ip_ranges, "2001:db8::5".parse().expect("ip")));
        assert!(!ip_allowed(&p.ip_ranges, "10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn malformed_policies() {
        let bad: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            br#"{"Statement":{}}"#,
            br#"{"Statement":[]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}},{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#,
            br#"{"Statement":[{"Resource":"*"}]}"#,
            br#"{"Statement":[{"Condition":{}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":"1"}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":-1}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1.5}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1,"x":2}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"Extra":{}}}]}"#,
            br#"{"Statement":[{"Resource":5,"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"nope"}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":[]}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}],"Version":"x"}"#,
        ];
        for doc in bad {
            assert!(
                Policy::parse(doc).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        assert!(Policy::parse(&vec![b' '; MAX_POLICY_BYTES + 1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024)
        ))]

        #[test]
        fn arbitrary_bytes_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Policy::parse(&doc);
        }

        #[test]
        fn generated_policies_round_trip(
            res in proptest::option::of("[a-z:/*?.]{1,30}"),
            lt in any::<u64>(),
            gt in proptest::option::of(any::<u64>()),
            ip in proptest::option::of((any::<[u8; 4]>(), 0u8..=32)),
        ) {
            let mut cond = serde_json::json!({"DateLessThan": {"AWS:EpochTime": lt}});
            if let Some(gt) = gt {
                cond["DateGreaterThan"] = serde_json::json!({"AWS:EpochTime": gt});
            }
            if let Some((o, len)) = ip {
                let cidr = format!("{}.{}.{}.{}/{len}", o[0], o[1], o[2], o[3]);
                cond["IpAddress"] = serde_json::json!({"AWS:SourceIp": cidr});
            }
            let mut st = serde_json::json!({"Condition": cond});
            if let Some(r) = &res {
                st["Resource"] = Value::String(r.clone());
            }
            let doc = serde_json::json!({"Statement": [st]}).to_string();
            let p = Policy::parse(doc.as_bytes()).expect("valid generated policy");
            prop_assert_eq!(p.resource, res);
            prop_assert_eq!(p.date_less_than, lt);
            prop_assert_eq!(p.date_greater_than, gt);
            prop_assert_eq!(p.ip_ranges.len(), usize::from(ip.is_some()));
        }
    }
}
