//! Where a Distribution may put edges in the operator's own cluster.
//!
//! A local region always may target the Distribution's own namespace. Any other namespace must
//! be allowed by the cluster admin with `--allow-target-namespace` (Helm value
//! `tenancy.allowedTargetNamespaces`), one rule per entry:
//!
//! - `TARGET`: Distributions of every namespace may place local regions in `TARGET`;
//! - `SOURCE=TARGET`: only Distributions of namespace `SOURCE` may;
//! - `*` as `SOURCE` or `TARGET` matches any namespace (`team-a=*` lets team-a target anything).
//!
//! Remote regions are not governed here: there the kubeconfig's own identity decides.

use std::fmt;

/// One admin rule: Distributions of `source` (None = any) may target `target` (None = any).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    source: Option<String>,
    target: Option<String>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let any = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".into());
        match &self.source {
            None => write!(f, "{}", any(&self.target)),
            Some(s) => write!(f, "{s}={}", any(&self.target)),
        }
    }
}

/// A rule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed target namespace {entry:?}: {reason} (expected TARGET or SOURCE=TARGET, each a namespace or *)")]
pub struct PolicyError {
    pub entry: String,
    pub reason: &'static str,
}

/// The admin's target-namespace allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetNamespacePolicy {
    rules: Vec<Rule>,
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn part(entry: &str, p: &str) -> Result<Option<String>, PolicyError> {
    let p = p.trim();
    if p == "*" {
        Ok(None)
    } else if is_dns1123_label(p) {
        Ok(Some(p.to_string()))
    } else {
        Err(PolicyError {
            entry: entry.to_string(),
            reason: "not a namespace name",
        })
    }
}

impl TargetNamespacePolicy {
    /// Only the Distribution's own namespace (the default).
    pub fn own_namespace_only() -> Self {
        Self::default()
    }

    /// Parses the admin's entries (empty entries are ignored).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PolicyError> {
        let mut rules = Vec::new();
        for e in entries {
            let entry = e.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let rule = match entry.split_once('=') {
                Some((source, target)) => Rule {
                    source: part(entry, source)?,
                    target: part(entry, target)?,
                },
                None => Rule {
                    source: None,
                    target: part(entry, entry)?,
                },
            };
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Whether a Distribution in `source` may place a local region in `target`.
    pub fn allows(&self, source: &str, target: &str) -> bool {
        source == target
            || self.rules.iter().any(|r| {
                r.source.as_deref().is_none_or(|s| s == source)
                    && r.target.as_deref().is_none_or(|t| t == target)
            })
    }

    /// The rules as the admin wrote them (for status messages).
    pub fn describe(&self) -> String {
        if self.rules.is_empty() {
            "none: local regions may only use the Distribution's own namespace".into()
        } else {
            self.rules
                .iter()
                .map(Rule::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_the_own_namespace_is_allowed() {
        let p = TargetNamespacePolicy::own_namespace_only();
        assert!(p.allows("web", "web"));
        assert!(!p.allows("web", "kube-system"));
        assert!(!p.allows("web", "edge"));
    }

    #[test]
    fn rules_allow_exactly_what_they_name() {
        let p =
            TargetNamespacePolicy::parse(&["edge", "team-a=shared", "ops=*", ""]).expect("parses");
        assert!(p.allows("anyone", "edge"), "TARGET: every source");
        assert!(p.allows("team-a", "shared"));
        assert!(
            !p.allows("team-b", "shared"),
            "SOURCE=TARGET: only that source"
        );
        assert!(p.allows("ops", "kube-system"), "SOURCE=*: anything");
        assert!(!p.allows("team-a", "kube-system"));
        assert_eq!(p.describe(), "edge, team-a=shared, ops=*");
        let all = TargetNamespacePolicy::parse(&["*"]).expect("parses");
        assert!(all.allows("x", "y"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in ["Edge", "a=b=c", "=x", "a=", "-a", "a b"] {
            let err = TargetNamespacePolicy::parse(&[bad]).expect_err(bad);
            assert_eq!(err.entry, bad.trim());
        }
    }
}
