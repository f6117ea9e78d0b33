//! Region targets: where a region's edge objects live (cluster, namespace, object name), and
//! which earlier targets a reconcile must prune.

use std::collections::BTreeSet;

use crate::crd::{Distribution, DistributionStatus, RegionSpec, RegionTarget};
use crate::render;

impl RegionTarget {
    /// Where `region` of `dist` puts its objects.
    pub fn of(dist: &Distribution, region: &RegionSpec) -> Self {
        Self {
            kubeconfig_secret_ref: region
                .cluster
                .as_ref()
                .map(|c| c.kubeconfig_secret_ref.clone()),
            namespace: dist.region_namespace(region).to_string(),
            name: render::object_name(dist, &region.name),
        }
    }

    pub fn is_local(&self) -> bool {
        self.kubeconfig_secret_ref.is_none()
    }

    /// `local` or `kubeconfig:<secret>/<key>` (display only).
    pub fn cluster_label(&self) -> String {
        match &self.kubeconfig_secret_ref {
            None => "local".into(),
            Some(r) => format!("kubeconfig:{}/{}", r.name, r.key),
        }
    }

    /// The same cluster and namespace (objects found there are compared by region).
    pub fn same_place(&self, other: &RegionTarget) -> bool {
        self.kubeconfig_secret_ref == other.kubeconfig_secret_ref
            && self.namespace == other.namespace
    }
}

impl std::fmt::Display for RegionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.cluster_label(),
            self.namespace,
            self.name
        )
    }
}

/// A region's objects somewhere they should no longer be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleTarget {
    /// The region the objects carry in their label.
    pub region: String,
    pub target: RegionTarget,
}

/// Every target the stored status knows (current and stale) that the spec no longer has: a
/// region removed, renamed, or moved to another namespace or cluster.
pub fn stale_targets(dist: &Distribution, status: Option<&DistributionStatus>) -> Vec<StaleTarget> {
    let wanted: BTreeSet<(String, RegionTarget)> = dist
        .spec
        .regions
        .iter()
        .map(|r| (r.name.clone(), RegionTarget::of(dist, r)))
        .collect();
    let mut out = BTreeSet::new();
    for r in status.map(|s| s.regions.as_slice()).unwrap_or_default() {
        for t in r.target.iter().chain(&r.stale_targets) {
            if !wanted.contains(&(r.name.clone(), t.clone())) {
                out.insert(StaleTarget {
                    region: r.name.clone(),
                    target: t.clone(),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Whether the stored status records where the regions are. Without it (a Distribution
/// restored from a backup without status, or written by an older operator), the reconcile
/// looks for leftovers by label in the places the spec names.
pub fn status_knows_targets(status: Option<&DistributionStatus>) -> bool {
    status.is_some_and(|s| !s.regions.is_empty() && s.regions.iter().all(|r| r.target.is_some()))
}

/// The distinct (cluster, namespace) places of the spec's regions, one target per place.
pub fn places(dist: &Distribution) -> Vec<RegionTarget> {
    let mut out: Vec<RegionTarget> = Vec::new();
    for r in &dist.spec.regions {
        let t = RegionTarget::of(dist, r);
        if !out.iter().any(|o| o.same_place(&t)) {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RegionStatus;
    use crate::fixtures;

    fn status_of(d: &Distribution) -> DistributionStatus {
        DistributionStatus {
            regions: d
                .spec
                .regions
                .iter()
                .map(|r| RegionStatus {
                    name: r.name.clone(),
                    target: Some(RegionTarget::of(d, r)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_spec_has_nothing_stale() {
        let d = fixtures::example();
        assert!(stale_targets(&d, Some(&status_of(&d))).is_empty());
        assert!(status_knows_targets(Some(&status_of(&d))));
        assert!(!status_knows_targets(None));
    }

    #[test]
    fn moved_renamed_and_removed_regions_leave_their_old_target_stale() {
        let old = fixtures::example();
        let st = status_of(&old);
        let mut moved = old.clone();
        moved.spec.regions[0].namespace = Some("elsewhere".into());
        assert_eq!(
            stale_targets(&moved, Some(&st)),
            [StaleTarget {
                region: "local".into(),
                target: RegionTarget {
                    kubeconfig_secret_ref: None,
                    namespace: "web".into(),
                    name: "site-local".into()
                }
            }]
        );
        let mut recluster = old.clone();
        recluster.spec.regions[1].cluster = None;
        let stale = stale_targets(&recluster, Some(&st));
        assert_eq!(stale.len(), 1);
        assert_eq!(
            stale[0].target.cluster_label(),
            "kubeconfig:eu-west-kubeconfig/value"
        );
        let mut renamed = old.clone();
        renamed.spec.regions[0].name = "home".into();
        assert_eq!(
            stale_targets(&renamed, Some(&st))[0].target.name,
            "site-local"
        );
        let mut removed = old.clone();
        removed.spec.regions.truncate(1);
        assert_eq!(stale_targets(&removed, Some(&st))[0].region, "eu-west");
        // A stale target recorded earlier stays stale until it is pruned.
        let mut st2 = status_of(&moved);
        st2.regions[0].stale_targets = vec![st.regions[0].target.clone().expect("t")];
        assert_eq!(stale_targets(&moved, Some(&st2)).len(), 1);
    }

    #[test]
    fn places_are_distinct_cluster_namespace_pairs() {
        let mut d = fixtures::example();
        let mut again = d.spec.regions[0].clone();
        again.name = "second".into();
        d.spec.regions.push(again);
        let p = places(&d);
        assert_eq!(p.len(), 2);
        assert!(p[0].is_local() && !p[1].is_local());
    }
}
