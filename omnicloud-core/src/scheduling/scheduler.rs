//! `Scheduler`: the thread-safe facade over a cluster state (indexed or naive).

use std::sync::{Mutex, PoisonError};

use super::cluster::{ClusterState, NodeUsage, SchedulerStats};
use super::index::IndexedCluster;
use super::model::{Node, Placement, Strategy, WorkloadRequest};
use super::naive::NaiveCluster;
use super::rules;
use crate::error::SchedulingError;

/// Places workloads on nodes. Safe to share between threads: each decision and its commit
/// happen under one lock, so two concurrent requests can never over-commit a node.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<Box<dyn ClusterState>>,
    strategy: Strategy,
}

impl Scheduler {
    /// The indexed scheduler.
    pub fn new(strategy: Strategy) -> Self {
        Self::with_state(Box::new(IndexedCluster::default()), strategy)
    }

    /// The naive reference scheduler (full scans): the benchmark baseline and test oracle.
    pub fn naive(strategy: Strategy) -> Self {
        Self::with_state(Box::new(NaiveCluster::default()), strategy)
    }

    fn with_state(state: Box<dyn ClusterState>, strategy: Strategy) -> Self {
        Self {
            state: Mutex::new(state),
            strategy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn ClusterState>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ranking strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Adds a node.
    pub fn add_node(&self, node: Node) -> Result<(), SchedulingError> {
        self.lock().add_node(node)
    }

    /// Replaces a node's description (labels, zone, capacity); its workloads stay. Refused if
    /// the new capacity is below their use.
    pub fn update_node(&self, node: Node) -> Result<(), SchedulingError> {
        self.lock().update_node(node)
    }

    /// Removes a node; returns the workloads that were on it (they are no longer placed).
    pub fn remove_node(&self, node_id: &str) -> Result<Vec<String>, SchedulingError> {
        self.lock().remove_node(node_id)
    }

    /// Places a workload on the best feasible node.
    pub fn schedule(&self, request: WorkloadRequest) -> Result<Placement, SchedulingError> {
        request.validate()?;
        let mut state = self.lock();
        if state.placed(&request.id).is_some() {
            return Err(SchedulingError::DuplicateWorkload {
                workload_id: request.id,
            });
        }
        let node_id = state.choose(&request, self.strategy)?;
        Ok(state.place(request, &node_id))
    }

    /// Places several workloads in order; each result is independent of the others' failure.
    pub fn schedule_many(
        &self,
        requests: Vec<WorkloadRequest>,
    ) -> Vec<Result<Placement, SchedulingError>> {
        requests.into_iter().map(|r| self.schedule(r)).collect()
    }

    /// Places a workload on a named node, after the same feasibility checks.
    pub fn bind(
        &self,
        request: WorkloadRequest,
        node_id: &str,
    ) -> Result<Placement, SchedulingError> {
        request.validate()?;
        let mut state = self.lock();
        if state.placed(&request.id).is_some() {
            return Err(SchedulingError::DuplicateWorkload {
                workload_id: request.id,
            });
        }
        rules::check_group_strategy(&request, state.as_ref())?;
        let (node, free) = state
            .node(node_id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node_id.to_owned(),
            })?;
        if let Some(reason) = rules::first_failure(&request, node, &free, state.as_ref()) {
            let reasons = std::collections::BTreeMap::from([(reason, 1)]);
            return Err(super::unschedulable(&request, &reasons, 1));
        }
        Ok(state.place(request, node_id))
    }

    /// Removes a placed workload, freeing its resources.
    pub fn release(&self, workload_id: &str) -> Result<Placement, SchedulingError> {
        self.lock().release(workload_id)
    }

    /// A node's capacity, use and workloads.
    pub fn node_usage(&self, node_id: &str) -> Result<NodeUsage, SchedulingError> {
        self.lock()
            .usage(node_id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node_id.to_owned(),
            })
    }

    /// Where a workload is placed, if it is.
    pub fn placement(&self, workload_id: &str) -> Option<String> {
        self.lock().placed(workload_id).map(|p| p.node_id.clone())
    }

    /// Table sizes and index memory.
    pub fn stats(&self) -> SchedulerStats {
        self.lock().stats()
    }
}
