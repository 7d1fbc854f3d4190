//! Failover (spec Task 1): per-tenant policies, health evaluation and the decision to fail
//! over or back.
//!
//! This folder owns the rules: what a valid policy is, when a region counts as down (enough
//! zones failing enough consecutive checks inside the window), when it counts as recovered
//! (healthy for the whole failback delay), and what a tenant's health calls for. It performs
//! no I/O: probes, DNS updates and resource promotion go through traits the runtime
//! implements. The controller that plans and executes failovers joins it in a later step.

mod health;
mod policy;

pub use health::{Decision, HealthCheckResult, HealthHistory, Serving, ZoneEvidence, decide};
pub use policy::{DnsRecord, FailoverPolicy, MAX_FAILURE_THRESHOLD, MAX_TTL_S, RecordType};
