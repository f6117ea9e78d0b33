//! Pure HTTP caching rules (RFC 9110/9111 as CloudFront applies them). No I/O here, so every
//! rule is unit-tested exhaustively and benchmarked in isolation.

pub mod conditional;
pub mod freshness;
pub mod protocol;
pub mod ranges;
