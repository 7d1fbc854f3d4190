//! What both schedulers keep: nodes with their usage, placed workloads, placement groups, and
//! the operations on them. [`ClusterState`] is implemented twice: [`super::index::IndexedCluster`]
//! (incremental indexes) and [`super::naive::NaiveCluster`] (plain scans).

use std::collections::BTreeMap;

use super::model::{Node, Placement, Resources, Strategy, WorkloadRequest};
use super::rules::ClusterView;
use crate::error::SchedulingError;

/// How much of a node is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// The node.
    pub node_id: String,
    /// Its capacity.
    pub capacity: Resources,
    /// What placed workloads use.
    pub used: Resources,
    /// The workloads on it, sorted.
    pub workloads: Vec<String>,
}

/// Sizes of a scheduler's tables, for monitoring and the memory budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Nodes known.
    pub nodes: usize,
    /// Workloads placed.
    pub workloads: usize,
    /// Placement groups with members.
    pub groups: usize,
    /// Label selectors with maintained per-domain counts.
    pub indexed_selectors: usize,
    /// Approximate bytes held by the node table (nodes, labels, usage).
    pub node_table_bytes: usize,
    /// Approximate bytes held by the indexes (0 for the naive scheduler).
    pub index_bytes: usize,
}

/// A placed workload, as the cluster remembers it.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub(crate) node_id: String,
    pub(crate) request: WorkloadRequest,
    /// For partition-group members: the partition they went to.
    pub(crate) partition: Option<u32>,
}

/// Operations of a scheduler's state; the rules read it through [`ClusterView`].
pub(crate) trait ClusterState: ClusterView + Send + std::fmt::Debug {
    fn add_node(&mut self, node: Node) -> Result<(), SchedulingError>;
    /// Replaces a node's description; its workloads stay. Refused if the new capacity is below
    /// what they use.
    fn update_node(&mut self, node: Node) -> Result<(), SchedulingError>;
    /// Removes a node; its workloads are evicted and returned (sorted).
    fn remove_node(&mut self, node_id: &str) -> Result<Vec<String>, SchedulingError>;
    /// The node and its free capacity.
    fn node(&self, node_id: &str) -> Option<(&Node, Resources)>;
    /// The best feasible node for `request`, or the reasons none is.
    fn choose(
        &self,
        request: &WorkloadRequest,
        strategy: Strategy,
    ) -> Result<String, SchedulingError>;
    /// Records `request` on `node_id` (feasibility already checked).
    fn place(&mut self, request: WorkloadRequest, node_id: &str) -> Placement;
    /// Removes a placed workload.
    fn release(&mut self, workload_id: &str) -> Result<Placement, SchedulingError>;
    fn placed(&self, workload_id: &str) -> Option<&Placed>;
    fn usage(&self, node_id: &str) -> Option<NodeUsage>;
    fn stats(&self) -> SchedulerStats;
}

/// Partition members per partition of a group, from its placed members.
pub(crate) fn partition_counts<'a>(
    members: impl Iterator<Item = &'a Placed>,
) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for p in members {
        if let Some(k) = p.partition {
            *counts.entry(k).or_insert(0) += 1;
        }
    }
    counts
}

/// Checks that `node`'s capacity still covers `used` (for updates).
pub(crate) fn check_capacity_covers(node: &Node, used: &Resources) -> Result<(), SchedulingError> {
    if node.capacity.fits(used) {
        Ok(())
    } else {
        Err(SchedulingError::InvalidNode {
            node_id: node.id.clone(),
            reason: format!(
                "new capacity {:?} is below what its workloads use {:?}",
                node.capacity, used
            ),
        })
    }
}

/// Rough heap bytes of a string-keyed label map.
pub(crate) fn labels_bytes(labels: &BTreeMap<String, String>) -> usize {
    labels.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
}

/// Rough heap bytes of a node record.
pub(crate) fn node_bytes(node: &Node) -> usize {
    size_of::<Node>()
        + node.id.len()
        + node.region.len()
        + node.zone.len()
        + labels_bytes(&node.labels)
}
