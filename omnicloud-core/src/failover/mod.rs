//! Failover (spec Task 1): per-tenant policies, health evaluation and the decision to fail
//! over or back.
//!
//! This folder owns the rules: what a valid policy is, when a region counts as down (enough
//! zones failing enough consecutive checks inside the window), when it counts as recovered
//! (healthy for the whole failback delay), and what a tenant's health calls for. It performs
//! no I/O: active probes ([`HealthProbe`]), DNS updates and resource promotion go through traits the runtime
//! implements. [`PlanExecutor`] builds plans from the dependency graph, persists them before
//! they run and executes them step by step, resumable after a crash.

mod attribution;
mod controller;
mod health;
mod plan;
mod policy;
mod probe;
mod providers;
mod schema;

pub use attribution::{RegionSpan, attribute_usage, region_spans};
pub use controller::{FailoverController, FailoverStatus, MAX_REASON_CHARS};
pub use health::{Decision, HealthCheckResult, HealthHistory, Serving, ZoneEvidence, decide};
pub use plan::{
    DEFAULT_PARALLELISM, FailoverReport, PlanExecutor, PlanStatus, PlanStep, StepAction,
    TransitionKind,
};
pub use policy::{DnsRecord, FailoverPolicy, MAX_FAILURE_THRESHOLD, MAX_TTL_S, RecordType};
pub use probe::{
    HealthCheck, HealthProbe, MAX_PROBE_TIMEOUT, MIN_PROBE_TIMEOUT, ProbeOutcome, ProbeTarget,
};
pub use providers::{DnsProvider, InMemoryDns, InMemoryResources, ResourceController};

pub(crate) use schema::{SCHEMA, STEP_SOURCE_REGION};

#[cfg(test)]
mod tests;
