//! # omnicloud-runtime
//!
//! The I/O shell around `omnicloud-core`: the async runtime, network transports (HTTP webhook
//! delivery, RFC 2136 DNS, health probes, the REST API, as the capabilities arrive) and the
//! `omnicloud` command. The core decides what to do; this crate does it. It holds no domain
//! rules of its own.

pub mod cli;
pub mod delivery;
pub mod demo;
pub mod dns;
pub mod migrate;
pub mod probe;
