//! kubefront edge cache.
//!
//! `config` is the operator<->proxy contract and is always built; everything else is the proxy
//! runtime, behind the default `runtime` feature.

pub mod config;
