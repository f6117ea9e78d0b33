//! The edge's end-to-end suite as one test binary: the real `kubefront-edge` against a real S3
//! server (MinIO by default, see `kubefront_tests::origin`). One binary links the harness and its
//! dependencies once instead of once per file, and shares one S3 server across the suite.
//!
//! Run one part: `cargo test -p kubefront-tests --test e2e edge_cache::` (module = former file).

mod edge_admin;
mod edge_cache;
mod edge_http_origin;
mod edge_large;
mod edge_origin;
mod edge_resilience;
mod edge_viewer;
mod security_hostile;
mod security_signed;
mod security_support;
