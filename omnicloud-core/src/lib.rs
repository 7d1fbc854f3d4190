//! # omnicloud-core
//!
//! The pure-Rust domain core of OmniCloud: the engine for the hard parts of multi-cloud
//! orchestration. It decides; it never performs remote I/O. No Python, no async runtime, no
//! network: the `omnicloud-runtime` crate performs I/O through small traits, and `omnicloud-py`
//! exposes everything to Python.
//!
//! The shared kernel every capability builds on:
//! - [`ids`] and [`tenancy`]: validated ids and tenants with their billing currency;
//! - [`clock`]: time as a dependency ([`clock::SystemClock`], [`clock::ManualClock`]);
//! - [`store`]: the embedded SQLite database with versioned migrations;
//! - [`audit`]: the append-only, hash-chained audit trail;
//! - [`events`]: the typed event bus joining the capabilities;
//! - [`apikey`]: per-tenant API keys (stored hashed) that authenticate REST callers;
//! - [`error`]: one error enum per domain, gathered in [`Error`];
//! - [`billing`]: currencies and exact money.
//!
//! Capabilities:
//! - [`state`]: resource lifecycle, drift detection, dependency graph, snapshots, state stores;
//! - [`scheduling`]: constraint-respecting placement with incremental indexes.
//!
//! ```
//! use std::sync::Arc;
//! use omnicloud_core::{audit::{AuditLog, AuditRecord}, clock::SystemClock, store::Store};
//!
//! let store = Store::memory()?;
//! let audit = AuditLog::new(store, Arc::new(SystemClock));
//! audit.append(AuditRecord::new("alice", "tenant.created"))?;
//! assert!(audit.verify()?.is_intact());
//! # Ok::<(), omnicloud_core::Error>(())
//! ```

pub mod apikey;
pub mod audit;
pub mod billing;
pub mod clock;
pub mod deploy;
pub mod error;
pub mod events;
pub mod failover;
pub mod ids;
pub mod scheduling;
pub mod state;
pub mod store;
pub mod tenancy;
pub mod webhook;

pub use error::{Error, Result};
