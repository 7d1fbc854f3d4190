//! Scheduling: placing workloads on nodes under resource, location, label, affinity and
//! placement-group constraints (spec Task 3).
//!
//! - `model.rs`: nodes, requests, affinity rules, placement groups;
//! - `rules.rs`: the filters and the score, written once, read through a cluster view;
//! - `index.rs`: the indexed cluster state (capacity, label-selector counts per domain, existing
//!   anti-affinity, placement groups), maintained incrementally;
//! - `naive.rs`: the full-scan reference state, for benchmarks and differential tests;
//! - `scheduler.rs`: the thread-safe [`Scheduler`] facade over either.
//!
//! Semantics follow kube-scheduler's InterPodAffinity: required terms are filters, preferred
//! terms add or subtract their weight, anti-affinity is symmetric, and a node lacking a
//! topology is in no domain. Placement groups behave as EC2's (cluster, spread, partition).
//! Nothing here talks to a cloud: placements are decisions for the runtime to carry out.

mod cluster;
mod index;
mod model;
mod naive;
mod rules;
mod scheduler;

use std::collections::BTreeMap;

pub use cluster::{NodeUsage, SchedulerStats};
pub use model::{
    AffinityRule, GroupStrategy, MAX_PARTITIONS, Node, Placement, PlacementGroup, Resources,
    SPREAD_PER_ZONE, Selector, Strategy, Topology, WorkloadRequest, selector_matches,
};
pub use scheduler::Scheduler;

use crate::error::SchedulingError;

/// The error for a request no node can take, with the nodes each reason excluded.
fn unschedulable(
    request: &WorkloadRequest,
    reasons: &BTreeMap<rules::Reason, usize>,
    nodes: usize,
) -> SchedulingError {
    SchedulingError::Unschedulable {
        workload_id: request.id.clone(),
        nodes,
        reasons: reasons
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), *n))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
