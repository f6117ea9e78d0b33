//! kubefront operator: reconciles `Distribution`s into edge deployments in every region.

pub mod crd;
pub mod edge_config;
pub mod lease;
pub mod metrics;
pub mod origin;
pub mod ownership;
pub mod placement;
pub mod prune;
pub mod reconcile;
pub mod regions;
pub mod render;
pub mod rollout;
pub mod status;
pub mod sync;
pub mod target;
pub mod telemetry;
pub mod tenancy;

#[doc(hidden)]
pub mod fixtures;

#[cfg(test)]
mod scenarios;
