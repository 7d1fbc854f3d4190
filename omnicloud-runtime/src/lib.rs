//! # omnicloud-runtime
//!
//! The I/O shell around `omnicloud-core`: the async runtime, network transports (HTTP webhook
//! delivery, RFC 2136 DNS, health probes, the REST API, as the capabilities arrive) and the
//! `omnicloud` command. The core decides what to do; this crate does it. It holds no domain
//! rules of its own.

pub mod api;
pub mod cli;
pub mod delivery;
pub mod demo;
pub mod dispatcher;
pub mod dns;
pub mod migrate;
pub mod probe;
pub mod server;

/// An error with its causes, joined by `: ` (reqwest's and hickory's top-level messages alone
/// say little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
