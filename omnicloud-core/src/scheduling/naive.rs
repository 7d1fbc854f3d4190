//! The straightforward scheduler: every decision scans every node, rebuilds placement-group
//! membership from the placed workloads, and checks anti-affinity against every placed workload
//! (O(nodes × workloads)). It is the baseline for benchmarks and the oracle for differential
//! tests, not something to run at scale.

use std::collections::{BTreeMap, HashMap};

use super::cluster::{
    ClusterState, NodeUsage, Placed, SchedulerStats, check_capacity_covers, node_bytes,
    partition_counts,
};
use super::model::{
    GroupStrategy, Node, Placement, Resources, Selector, Strategy, Topology, WorkloadRequest,
    selector_matches,
};
use super::rules::{self, ClusterView, Reason, zone_key};
use crate::error::SchedulingError;

/// Nodes and placed workloads in plain collections.
#[derive(Debug, Default)]
pub(crate) struct NaiveCluster {
    nodes: Vec<Node>,
    used: HashMap<String, Resources>,
    placed: HashMap<String, Placed>,
}

impl NaiveCluster {
    fn find(&self, node_id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == node_id)
    }

    fn free(&self, node: &Node) -> Resources {
        node.capacity
            .minus(self.used.get(&node.id).unwrap_or(&Resources::default()))
    }

    fn members<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Placed> + 'a {
        self.placed.values().filter(move |p| {
            p.request
                .placement_group
                .as_ref()
                .is_some_and(|g| g.name == group)
        })
    }
}

impl ClusterView for NaiveCluster {
    fn matching_in_domain(&self, selector: &Selector, topology: &Topology, domain: &str) -> usize {
        self.placed
            .values()
            .filter(|p| selector_matches(selector, &p.request.labels))
            .filter(|p| {
                self.find(&p.node_id)
                    .and_then(|n| topology.domain_of(n))
                    .is_some_and(|d| d == domain)
            })
            .count()
    }

    fn matching_anywhere(&self, selector: &Selector) -> usize {
        self.placed
            .values()
            .filter(|p| selector_matches(selector, &p.request.labels))
            .count()
    }

    fn blocked_by_existing(&self, request: &WorkloadRequest, node: &Node) -> bool {
        self.placed.values().any(|p| {
            let Some(host) = self.find(&p.node_id) else {
                return false;
            };
            p.request
                .anti_affinity
                .iter()
                .filter(|t| t.required)
                .any(|term| {
                    selector_matches(&term.selector, &request.labels)
                        && match (term.topology.domain_of(node), term.topology.domain_of(host)) {
                            (Some(a), Some(b)) => a == b,
                            _ => false,
                        }
                })
        })
    }

    fn group_strategy(&self, group: &str) -> Option<GroupStrategy> {
        self.members(group)
            .next()
            .and_then(|p| p.request.placement_group.as_ref().map(|g| g.strategy))
    }

    fn group_cluster_zone(&self, group: &str) -> Option<String> {
        self.members(group)
            .next()
            .and_then(|p| self.find(&p.node_id))
            .map(zone_key)
    }

    fn group_members_on_node(&self, group: &str, node_id: &str) -> usize {
        self.members(group).filter(|p| p.node_id == node_id).count()
    }

    fn group_members_in_zone(&self, group: &str, zone: &str) -> usize {
        self.members(group)
            .filter(|p| self.find(&p.node_id).is_some_and(|n| zone_key(n) == zone))
            .count()
    }

    fn group_partition_of_node(&self, group: &str, node_id: &str) -> Option<u32> {
        self.members(group)
            .find(|p| p.node_id == node_id)
            .and_then(|p| p.partition)
    }
}

impl ClusterState for NaiveCluster {
    fn add_node(&mut self, node: Node) -> Result<(), SchedulingError> {
        if self.find(&node.id).is_some() {
            return Err(SchedulingError::DuplicateNode { node_id: node.id });
        }
        self.nodes.push(node);
        Ok(())
    }

    fn update_node(&mut self, node: Node) -> Result<(), SchedulingError> {
        let used = self.used.get(&node.id).copied().unwrap_or_default();
        check_capacity_covers(&node, &used)?;
        let slot = self
            .nodes
            .iter_mut()
            .find(|n| n.id == node.id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node.id.clone(),
            })?;
        *slot = node;
        Ok(())
    }

    fn remove_node(&mut self, node_id: &str) -> Result<Vec<String>, SchedulingError> {
        let before = self.nodes.len();
        self.nodes.retain(|n| n.id != node_id);
        if self.nodes.len() == before {
            return Err(SchedulingError::UnknownNode {
                node_id: node_id.to_owned(),
            });
        }
        let mut evicted: Vec<String> = self
            .placed
            .iter()
            .filter(|(_, p)| p.node_id == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        evicted.sort();
        for id in &evicted {
            self.placed.remove(id);
        }
        self.used.remove(node_id);
        Ok(evicted)
    }

    fn node(&self, node_id: &str) -> Option<(&Node, Resources)> {
        self.find(node_id).map(|n| (n, self.free(n)))
    }

    fn choose(
        &self,
        request: &WorkloadRequest,
        strategy: Strategy,
    ) -> Result<String, SchedulingError> {
        rules::check_group_strategy(request, self)?;
        let mut best: Option<(i64, &str)> = None;
        let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
        for node in &self.nodes {
            let free = self.free(node);
            match rules::first_failure(request, node, &free, self) {
                Some(reason) => *reasons.entry(reason).or_insert(0) += 1,
                None => {
                    let score = rules::score(strategy, request, node, &free, self);
                    let better = best
                        .is_none_or(|(s, id)| score > s || (score == s && node.id.as_str() < id));
                    if better {
                        best = Some((score, &node.id));
                    }
                }
            }
        }
        best.map(|(_, id)| id.to_owned())
            .ok_or_else(|| super::unschedulable(request, &reasons, self.nodes.len()))
    }

    fn place(&mut self, request: WorkloadRequest, node_id: &str) -> Placement {
        let hosted = request
            .placement_group
            .as_ref()
            .and_then(|g| self.group_partition_of_node(&g.name, node_id));
        let counts = match &request.placement_group {
            Some(g) => partition_counts(self.members(&g.name)),
            None => BTreeMap::new(),
        };
        let partition = rules::partition_for(&request, hosted, &counts);
        let used = self.used.entry(node_id.to_owned()).or_default();
        *used = used.plus(&request.resources);
        let placement = Placement::on(&request.id, node_id, self.find(node_id));
        self.placed.insert(
            request.id.clone(),
            Placed {
                node_id: node_id.to_owned(),
                request,
                partition,
            },
        );
        placement
    }

    fn release(&mut self, workload_id: &str) -> Result<Placement, SchedulingError> {
        let placed =
            self.placed
                .remove(workload_id)
                .ok_or_else(|| SchedulingError::UnknownWorkload {
                    workload_id: workload_id.to_owned(),
                })?;
        if let Some(used) = self.used.get_mut(&placed.node_id) {
            *used = used.minus(&placed.request.resources);
        }
        Ok(Placement::on(
            workload_id,
            &placed.node_id,
            self.find(&placed.node_id),
        ))
    }

    fn placed(&self, workload_id: &str) -> Option<&Placed> {
        self.placed.get(workload_id)
    }

    fn usage(&self, node_id: &str) -> Option<NodeUsage> {
        let node = self.find(node_id)?;
        let mut workloads: Vec<String> = self
            .placed
            .iter()
            .filter(|(_, p)| p.node_id == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        workloads.sort();
        Some(NodeUsage {
            node_id: node_id.to_owned(),
            capacity: node.capacity,
            used: self.used.get(node_id).copied().unwrap_or_default(),
            workloads,
        })
    }

    fn stats(&self) -> SchedulerStats {
        let mut groups: Vec<&str> = self
            .placed
            .values()
            .filter_map(|p| p.request.placement_group.as_ref().map(|g| g.name.as_str()))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        SchedulerStats {
            nodes: self.nodes.len(),
            workloads: self.placed.len(),
            groups: groups.len(),
            indexed_selectors: 0,
            node_table_bytes: self.nodes.iter().map(node_bytes).sum::<usize>()
                + self.used.len() * (size_of::<Resources>() + 32),
            index_bytes: 0,
        }
    }
}
