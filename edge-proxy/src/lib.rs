//! kubefront edge cache.
//!
//! `config` is the operator<->proxy contract and is always built; everything else is the proxy
//! runtime, behind the default `runtime` feature.

pub mod config;

#[cfg(feature = "runtime")]
pub mod cache;
#[cfg(feature = "runtime")]
pub mod origin;
#[cfg(feature = "runtime")]
pub mod policy;
#[cfg(feature = "security")]
pub mod security;
#[cfg(feature = "runtime")]
pub mod server;
