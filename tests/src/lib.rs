//! Harness for end-to-end tests: real S3 servers (MinIO by default, Garage or any external
//! endpoint by environment), the real `kubefront-edge` binary, and a counting TCP relay between
//! them that sees every origin request and can play "origin down".
//!
//! Everything binds loopback ports chosen by the kernel (or probed free), uses its own temp
//! directory and its own bucket, so tests run in parallel. Child processes die with their guard.

pub mod edge;
pub mod error;
pub mod http_origin;
pub mod metrics;
pub mod origin;
pub mod process;
pub mod relay;
pub mod scenario;

pub use edge::{Edge, EdgeOptions};
pub use error::HarnessError;
pub use http_origin::{HttpOrigin, Route};
pub use metrics::Metrics;
pub use origin::{Bucket, Credentials, ObjectMeta, S3Server};
pub use relay::{CountingRelay, OriginRequest};
pub use scenario::Scenario;

/// Result type of the harness.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// Whether a missing S3 server must fail the run instead of skipping (CI must not go green by
/// skipping the tests that matter).
pub fn e2e_required() -> bool {
    let on = |name: &str| {
        std::env::var(name)
            .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
            .unwrap_or(false)
    };
    on("CI") || on("KUBEFRONT_REQUIRE_E2E")
}

/// Deterministic, incompressible-looking test content of `len` bytes (xorshift), so integrity
/// checks catch shifted or duplicated chunks.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
