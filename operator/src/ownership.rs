//! Ownership markers on edge objects and the check made on the live object before every write
//! and delete: the operator never modifies, adopts or deletes an object it did not create.
//!
//! Every object carries the labels of its Distribution and region plus the annotation
//! [`ANNOTATION_DISTRIBUTION_UID`] (the Distribution's UID); local objects in the
//! Distribution's own namespace also carry a controller owner reference.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::Distribution;
use crate::render::{
    FIELD_MANAGER, LABEL_DISTRIBUTION, LABEL_DISTRIBUTION_NAMESPACE, LABEL_MANAGED_BY, LABEL_REGION,
};

/// UID of the Distribution an object belongs to.
pub const ANNOTATION_DISTRIBUTION_UID: &str = "kubefront.io/distribution-uid";

/// Whose an existing object is, as seen from one Distribution's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// It carries this Distribution's UID (annotation or controller owner reference).
    Ours,
    /// It carries every label of this Distribution and region (same namespace/name and region)
    /// but another UID or none: an earlier incarnation of this same Distribution (deleted and
    /// re-created, restored from a backup, or written by an operator version without the UID
    /// annotation). Applying takes it over and stamps the current UID; it is never deleted
    /// before that.
    Predecessor,
    /// Anything else: someone else's object. Nothing is written to it.
    Foreign,
}

impl Ownership {
    pub fn may_apply(&self) -> bool {
        matches!(self, Ownership::Ours | Ownership::Predecessor)
    }
}

/// Ownership of the live object `meta` for `region` of `dist`.
pub fn of(meta: &ObjectMeta, dist: &Distribution, region: &str) -> Ownership {
    let Some(uid) = dist.metadata.uid.as_deref() else {
        return Ownership::Foreign;
    };
    let marked = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_DISTRIBUTION_UID))
        .is_some_and(|v| v == uid);
    let owner_ref = meta
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true));
    if marked || owner_ref {
        return Ownership::Ours;
    }
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    let lineage = label(LABEL_MANAGED_BY) == Some(FIELD_MANAGER)
        && label(LABEL_DISTRIBUTION) == dist.metadata.name.as_deref()
        && label(LABEL_DISTRIBUTION_NAMESPACE) == dist.metadata.namespace.as_deref()
        && label(LABEL_REGION) == Some(region);
    if lineage {
        Ownership::Predecessor
    } else {
        Ownership::Foreign
    }
}

/// Whether `meta` carries this Distribution's UID: the only objects prune and cleanup delete.
pub fn is_ours(meta: &ObjectMeta, dist: &Distribution) -> bool {
    // The region label does not matter for the UID test.
    matches!(of(meta, dist, ""), Ownership::Ours)
}

/// Who holds a foreign object, for the Conflict message.
pub fn holder(meta: &ObjectMeta) -> String {
    let labels = meta.labels.clone().unwrap_or_default();
    match (
        labels.get(LABEL_DISTRIBUTION_NAMESPACE),
        labels.get(LABEL_DISTRIBUTION),
    ) {
        (Some(ns), Some(name)) => format!("Distribution {ns}/{name}"),
        _ => "an object kubefront did not create".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let m = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            labels: m(labels),
            annotations: m(annotations),
            ..Default::default()
        }
    }

    const LINEAGE: [(&str, &str); 4] = [
        (LABEL_MANAGED_BY, FIELD_MANAGER),
        (LABEL_DISTRIBUTION, "site"),
        (LABEL_DISTRIBUTION_NAMESPACE, "web"),
        (LABEL_REGION, "local"),
    ];

    #[test]
    fn the_uid_marker_or_a_controller_reference_makes_an_object_ours() {
        let d = fixtures::example();
        let ours = meta(&[], &[(ANNOTATION_DISTRIBUTION_UID, "uid-site")]);
        assert_eq!(of(&ours, &d, "local"), Ownership::Ours);
        assert!(is_ours(&ours, &d));
        let mut owned = meta(&[], &[]);
        owned.owner_references = Some(vec![OwnerReference {
            uid: "uid-site".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert_eq!(of(&owned, &d, "local"), Ownership::Ours);
    }

    #[test]
    fn a_stranger_is_foreign_even_with_some_of_our_labels() {
        let d = fixtures::example();
        assert_eq!(of(&meta(&[], &[]), &d, "local"), Ownership::Foreign);
        // Same name and region, another namespace's Distribution (a/dup vs b/dup).
        let other_ns = meta(
            &[
                (LABEL_MANAGED_BY, FIELD_MANAGER),
                (LABEL_DISTRIBUTION, "site"),
                (LABEL_DISTRIBUTION_NAMESPACE, "other"),
                (LABEL_REGION, "local"),
            ],
            &[(ANNOTATION_DISTRIBUTION_UID, "uid-other")],
        );
        assert_eq!(of(&other_ns, &d, "local"), Ownership::Foreign);
        assert!(!is_ours(&other_ns, &d));
        assert_eq!(holder(&other_ns), "Distribution other/site");
        // A non-controller reference to our UID is not ownership.
        let mut referenced = meta(&[], &[]);
        referenced.owner_references = Some(vec![OwnerReference {
            uid: "uid-site".into(),
            controller: Some(false),
            ..Default::default()
        }]);
        assert_eq!(of(&referenced, &d, "local"), Ownership::Foreign);
    }

    #[test]
    fn an_earlier_incarnation_may_be_applied_over_but_is_never_ours_to_delete() {
        let d = fixtures::example();
        let old = meta(
            &LINEAGE,
            &[(ANNOTATION_DISTRIBUTION_UID, "uid-before-restore")],
        );
        assert_eq!(of(&old, &d, "local"), Ownership::Predecessor);
        assert!(of(&old, &d, "local").may_apply());
        assert!(!is_ours(&old, &d));
        assert_eq!(of(&old, &d, "other-region"), Ownership::Foreign);
    }
}
