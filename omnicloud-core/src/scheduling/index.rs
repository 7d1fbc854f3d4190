//! The indexed cluster state: every index is maintained incrementally on node add / update /
//! remove and workload place / release, never rebuilt per decision.
//!
//! - capacity: nodes ordered by free (cpu, memory, gpus, id), overall, per region and per zone
//!   name, so candidates that cannot fit are never visited and the best fit comes first;
//! - label-selector counts per topology domain, for every (selector, topology) a rule has used:
//!   built once on first use, then updated on each placement, so an affinity check is one hash
//!   lookup per candidate;
//! - required anti-affinity of placed workloads, by (selector, topology) and domain, so symmetry
//!   checks do not scan workloads;
//! - placement-group membership: members per node, per zone, partition per node.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use super::cluster::{
    ClusterState, NodeUsage, Placed, SchedulerStats, check_capacity_covers, labels_bytes,
    node_bytes,
};
use super::model::{
    GroupStrategy, Node, Placement, Resources, Selector, Strategy, Topology, WorkloadRequest,
    selector_matches,
};
use super::rules::{self, ClusterView, Reason, zone_key};
use crate::error::SchedulingError;

/// How many feasible nodes are scored when the request has no preferred rules, and when it
/// has some (kube-scheduler likewise scores a sample once enough feasible nodes are found).
const WINDOW_PLAIN: usize = 8;
const WINDOW_PREFERRED: usize = 64;

/// A node's position in a capacity index: free cpu, free memory, free gpus, id.
type CapKey = (u64, u64, u32, String);

#[derive(Debug)]
struct NodeEntry {
    node: Node,
    used: Resources,
    workloads: BTreeSet<String>,
}

impl NodeEntry {
    fn free(&self) -> Resources {
        self.node.capacity.minus(&self.used)
    }
    fn key(&self) -> CapKey {
        let f = self.free();
        (f.cpu_millis, f.memory_mib, f.gpus, self.node.id.clone())
    }
}

#[derive(Debug, Default)]
struct DomainCounts {
    total: usize,
    by_domain: HashMap<String, usize>,
}

#[derive(Debug)]
struct GroupIndex {
    strategy: GroupStrategy,
    members: usize,
    per_node: HashMap<String, usize>,
    per_zone: HashMap<String, usize>,
    node_partition: HashMap<String, u32>,
    partition_members: BTreeMap<u32, usize>,
    cluster_zone: Option<String>,
}

/// Nodes, workloads and their indexes.
#[derive(Debug, Default)]
pub(crate) struct IndexedCluster {
    nodes: HashMap<String, NodeEntry>,
    by_capacity: BTreeSet<CapKey>,
    by_region: HashMap<String, BTreeSet<CapKey>>,
    by_zone: HashMap<String, BTreeSet<CapKey>>,
    placed: HashMap<String, Placed>,
    /// Counts of placed workloads matching a selector, per domain of a topology. Filled lazily
    /// (first use of a selector) from `&self`, hence the cell; the scheduler's lock makes it safe.
    selector_counts: RefCell<HashMap<(Selector, Topology), DomainCounts>>,
    existing_anti: HashMap<(Selector, Topology), HashMap<String, usize>>,
    /// For each selector a required node-level anti-affinity term has used: the capacity-ordered
    /// nodes hosting no matching workload, the only nodes such a request can take ("one per
    /// node" is the common case, and walking past every occupied node would be linear).
    unblocked: RefCell<HashMap<Selector, BTreeSet<CapKey>>>,
    groups: HashMap<String, GroupIndex>,
    /// Nodes per zone key (`region/zone`).
    zone_nodes: HashMap<String, usize>,
}

impl IndexedCluster {
    fn count_zone(&mut self, node: &Node, delta: isize) {
        let key = zone_key(node);
        let n = self.zone_nodes.entry(key.clone()).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.zone_nodes.remove(&key);
        }
    }

    /// Whether a placed workload on `node_id` matches `selector`.
    fn hosts_match(&self, selector: &Selector, node_id: &str) -> bool {
        self.nodes.get(node_id).is_some_and(|e| {
            e.workloads.iter().any(|w| {
                self.placed
                    .get(w)
                    .is_some_and(|p| selector_matches(selector, &p.request.labels))
            })
        })
    }

    fn index_node(&mut self, key: CapKey, node: &Node) {
        let selectors: Vec<Selector> = self.unblocked.get_mut().keys().cloned().collect();
        let open: Vec<Selector> = selectors
            .into_iter()
            .filter(|sel| !self.hosts_match(sel, &node.id))
            .collect();
        for sel in open {
            if let Some(set) = self.unblocked.get_mut().get_mut(&sel) {
                set.insert(key.clone());
            }
        }
        self.by_region
            .entry(node.region.clone())
            .or_default()
            .insert(key.clone());
        self.by_zone
            .entry(node.zone.clone())
            .or_default()
            .insert(key.clone());
        self.by_capacity.insert(key);
    }

    fn unindex_node(&mut self, key: &CapKey, node: &Node) {
        for set in self.unblocked.get_mut().values_mut() {
            set.remove(key);
        }
        self.by_capacity.remove(key);
        for (map, name) in [
            (&mut self.by_region, &node.region),
            (&mut self.by_zone, &node.zone),
        ] {
            if let Some(set) = map.get_mut(name) {
                set.remove(key);
                if set.is_empty() {
                    map.remove(name);
                }
            }
        }
    }

    /// Applies a workload's contribution (+1 or -1) to every index but capacity.
    fn account(&mut self, placed: &Placed, delta: isize) {
        let Some(entry) = self.nodes.get(&placed.node_id) else {
            return;
        };
        let node = entry.node.clone();
        let request = &placed.request;
        let bump = |count: &mut usize| *count = count.saturating_add_signed(delta);
        for ((selector, topology), counts) in self.selector_counts.get_mut().iter_mut() {
            if selector_matches(selector, &request.labels) {
                bump(&mut counts.total);
                if let Some(domain) = topology.domain_of(&node) {
                    bump(counts.by_domain.entry(domain).or_insert(0));
                }
            }
        }
        let key = self.nodes.get(&node.id).map(NodeEntry::key);
        let touched: Vec<Selector> = self
            .unblocked
            .get_mut()
            .keys()
            .filter(|sel| selector_matches(sel, &request.labels))
            .cloned()
            .collect();
        for sel in touched {
            let open = delta < 0 && !self.hosts_match(&sel, &node.id);
            if let (Some(set), Some(key)) = (self.unblocked.get_mut().get_mut(&sel), &key) {
                if open {
                    set.insert(key.clone());
                } else {
                    set.remove(key);
                }
            }
        }
        for term in request.anti_affinity.iter().filter(|t| t.required) {
            if let Some(domain) = term.topology.domain_of(&node) {
                let domains = self
                    .existing_anti
                    .entry((term.selector.clone(), term.topology.clone()))
                    .or_default();
                bump(domains.entry(domain.clone()).or_insert(0));
                if domains.get(&domain) == Some(&0) {
                    domains.remove(&domain);
                }
                if domains.is_empty() {
                    self.existing_anti
                        .remove(&(term.selector.clone(), term.topology.clone()));
                }
            }
        }
        if let Some(g) = &request.placement_group {
            let group = self
                .groups
                .entry(g.name.clone())
                .or_insert_with(|| GroupIndex {
                    strategy: g.strategy,
                    members: 0,
                    per_node: HashMap::new(),
                    per_zone: HashMap::new(),
                    node_partition: HashMap::new(),
                    partition_members: BTreeMap::new(),
                    cluster_zone: None,
                });
            bump(&mut group.members);
            let on_node = group.per_node.entry(node.id.clone()).or_insert(0);
            bump(on_node);
            let node_empty = *on_node == 0;
            bump(group.per_zone.entry(zone_key(&node)).or_insert(0));
            if let Some(p) = placed.partition {
                bump(group.partition_members.entry(p).or_insert(0));
                group.node_partition.insert(node.id.clone(), p);
            }
            if node_empty {
                group.per_node.remove(&node.id);
                group.node_partition.remove(&node.id);
            }
            if delta > 0 && group.cluster_zone.is_none() && group.strategy == GroupStrategy::Cluster
            {
                group.cluster_zone = Some(zone_key(&node));
            }
            if group.members == 0 {
                self.groups.remove(&g.name);
            }
        }
    }

    fn with_counts<T>(
        &self,
        selector: &Selector,
        topology: &Topology,
        read: impl FnOnce(&DomainCounts) -> T,
    ) -> T {
        let mut cache = self.selector_counts.borrow_mut();
        let counts = cache
            .entry((selector.clone(), topology.clone()))
            .or_insert_with(|| {
                // First use of this selector at this topology: count once, then maintain.
                let mut counts = DomainCounts::default();
                for p in self
                    .placed
                    .values()
                    .filter(|p| selector_matches(selector, &p.request.labels))
                {
                    counts.total += 1;
                    if let Some(domain) = self
                        .nodes
                        .get(&p.node_id)
                        .and_then(|e| topology.domain_of(&e.node))
                    {
                        *counts.by_domain.entry(domain).or_insert(0) += 1;
                    }
                }
                counts
            });
        read(counts)
    }

    fn place_as(
        &mut self,
        request: WorkloadRequest,
        node_id: &str,
        partition: Option<u32>,
    ) -> Placement {
        let placed = Placed {
            node_id: node_id.to_owned(),
            request,
            partition,
        };
        let (resources, id) = (placed.request.resources, placed.request.id.clone());
        self.rekey(node_id, |entry| {
            entry.used = entry.used.plus(&resources);
            entry.workloads.insert(id);
        });
        self.account(&placed, 1);
        let placement = self.placement_of(&placed.request.id, &placed.node_id);
        self.placed.insert(placed.request.id.clone(), placed);
        placement
    }

    fn placement_of(&self, workload_id: &str, node_id: &str) -> Placement {
        Placement::on(
            workload_id,
            node_id,
            self.nodes.get(node_id).map(|e| &e.node),
        )
    }

    /// Changes a node's entry (its use) and moves its keys in every capacity index.
    fn rekey(&mut self, node_id: &str, change: impl FnOnce(&mut NodeEntry)) {
        let Some(entry) = self.nodes.get(node_id) else {
            return;
        };
        let (old_key, node) = (entry.key(), entry.node.clone());
        self.unindex_node(&old_key, &node);
        if let Some(entry) = self.nodes.get_mut(node_id) {
            change(entry);
        }
        if let Some(key) = self.nodes.get(node_id).map(NodeEntry::key) {
            self.index_node(key, &node);
        }
    }
}

impl IndexedCluster {
    /// The unblocked-node index for a node-level anti-affinity selector, built on first use.
    fn unblocked_for(
        &self,
        selector: &Selector,
    ) -> std::cell::Ref<'_, HashMap<Selector, BTreeSet<CapKey>>> {
        if !self.unblocked.borrow().contains_key(selector) {
            let set: BTreeSet<CapKey> = self
                .nodes
                .values()
                .filter(|e| !self.hosts_match(selector, &e.node.id))
                .map(NodeEntry::key)
                .collect();
            self.unblocked.borrow_mut().insert(selector.clone(), set);
        }
        self.unblocked.borrow()
    }

    /// Zone names where the request's spread group already has its maximum of members.
    fn full_spread_zones(&self, request: &WorkloadRequest) -> std::collections::HashSet<&str> {
        let Some(group) = request
            .placement_group
            .as_ref()
            .filter(|g| g.strategy == GroupStrategy::Spread)
            .and_then(|g| self.groups.get(&g.name))
        else {
            return std::collections::HashSet::new();
        };
        group
            .per_zone
            .iter()
            .filter(|(_, n)| **n >= super::model::SPREAD_PER_ZONE)
            .filter_map(|(key, _)| key.split_once('/').map(|(_, zone)| zone))
            .collect()
    }

    /// How many distinct zones (region/zone) have nodes.
    fn zone_count(&self) -> usize {
        self.zone_nodes.len()
    }
}

impl ClusterView for IndexedCluster {
    fn matching_in_domain(&self, selector: &Selector, topology: &Topology, domain: &str) -> usize {
        self.with_counts(selector, topology, |c| {
            c.by_domain.get(domain).copied().unwrap_or(0)
        })
    }

    fn matching_anywhere(&self, selector: &Selector) -> usize {
        self.with_counts(selector, &Topology::Region, |c| c.total)
    }

    fn blocked_by_existing(&self, request: &WorkloadRequest, node: &Node) -> bool {
        self.existing_anti
            .iter()
            .any(|((selector, topology), domains)| {
                selector_matches(selector, &request.labels)
                    && topology
                        .domain_of(node)
                        .is_some_and(|d| domains.contains_key(&d))
            })
    }

    fn group_strategy(&self, group: &str) -> Option<GroupStrategy> {
        self.groups.get(group).map(|g| g.strategy)
    }

    fn group_cluster_zone(&self, group: &str) -> Option<String> {
        self.groups.get(group).and_then(|g| g.cluster_zone.clone())
    }

    fn group_members_on_node(&self, group: &str, node_id: &str) -> usize {
        self.groups
            .get(group)
            .and_then(|g| g.per_node.get(node_id).copied())
            .unwrap_or(0)
    }

    fn group_members_in_zone(&self, group: &str, zone: &str) -> usize {
        self.groups
            .get(group)
            .and_then(|g| g.per_zone.get(zone).copied())
            .unwrap_or(0)
    }

    fn group_partition_of_node(&self, group: &str, node_id: &str) -> Option<u32> {
        self.groups
            .get(group)
            .and_then(|g| g.node_partition.get(node_id).copied())
    }
}

impl ClusterState for IndexedCluster {
    fn add_node(&mut self, node: Node) -> Result<(), SchedulingError> {
        if self.nodes.contains_key(&node.id) {
            return Err(SchedulingError::DuplicateNode { node_id: node.id });
        }
        let entry = NodeEntry {
            node: node.clone(),
            used: Resources::default(),
            workloads: BTreeSet::new(),
        };
        self.index_node(entry.key(), &node);
        self.count_zone(&node, 1);
        self.nodes.insert(node.id.clone(), entry);
        Ok(())
    }

    fn update_node(&mut self, node: Node) -> Result<(), SchedulingError> {
        let entry = self
            .nodes
            .get(&node.id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node.id.clone(),
            })?;
        check_capacity_covers(&node, &entry.used)?;
        // Take the node's workloads out of every index, change the node, put them back: domains
        // (zone, region, labels) may have changed under them.
        let hosted: Vec<Placed> = entry
            .workloads
            .iter()
            .filter_map(|id| self.placed.get(id).cloned())
            .collect();
        for p in &hosted {
            self.release(&p.request.id)?;
        }
        let old = self
            .nodes
            .remove(&node.id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node.id.clone(),
            })?;
        self.unindex_node(&old.key(), &old.node);
        self.count_zone(&old.node, -1);
        self.add_node(node)?;
        for p in hosted {
            let node_id = p.node_id.clone();
            self.place_as(p.request, &node_id, p.partition);
        }
        Ok(())
    }

    fn remove_node(&mut self, node_id: &str) -> Result<Vec<String>, SchedulingError> {
        let entry = self
            .nodes
            .get(node_id)
            .ok_or_else(|| SchedulingError::UnknownNode {
                node_id: node_id.to_owned(),
            })?;
        let evicted: Vec<String> = entry.workloads.iter().cloned().collect();
        for id in &evicted {
            self.release(id)?;
        }
        if let Some(entry) = self.nodes.remove(node_id) {
            self.unindex_node(&entry.key(), &entry.node);
            self.count_zone(&entry.node, -1);
        }
        Ok(evicted)
    }

    fn node(&self, node_id: &str) -> Option<(&Node, Resources)> {
        self.nodes.get(node_id).map(|e| (&e.node, e.free()))
    }

    fn choose(
        &self,
        request: &WorkloadRequest,
        strategy: Strategy,
    ) -> Result<String, SchedulingError> {
        rules::check_group_strategy(request, self)?;
        // A spread group whose every zone already holds its maximum takes no one: say so
        // without visiting a node.
        if !self.nodes.is_empty() && self.full_spread_zones(request).len() >= self.zone_count() {
            let reasons = BTreeMap::from([(Reason::PlacementGroup, self.nodes.len())]);
            return Err(super::unschedulable(request, &reasons, self.nodes.len()));
        }
        // The smallest candidate set the constraints allow.
        let cluster_zone = request
            .placement_group
            .as_ref()
            .filter(|g| g.strategy == GroupStrategy::Cluster)
            .and_then(|g| self.group_cluster_zone(&g.name))
            .and_then(|key| key.split_once('/').map(|(_, zone)| zone.to_owned()));
        let empty = BTreeSet::new();
        let (set, outside_reason) = match (&request.zone, &cluster_zone, &request.region) {
            (Some(zone), _, _) => (self.by_zone.get(zone).unwrap_or(&empty), Reason::Zone),
            (None, Some(zone), _) => (
                self.by_zone.get(zone).unwrap_or(&empty),
                Reason::PlacementGroup,
            ),
            (None, None, Some(region)) => {
                (self.by_region.get(region).unwrap_or(&empty), Reason::Region)
            }
            (None, None, None) => (&self.by_capacity, Reason::Region),
        };
        // A spread group's full zones hold no candidate: when the request is not pinned to a
        // zone, walk the other zones' indexes instead of skipping node after node.
        let full_zones = self.full_spread_zones(request);
        let unconstrained =
            request.zone.is_none() && cluster_zone.is_none() && request.region.is_none();
        let node_anti = request
            .anti_affinity
            .iter()
            .find(|t| t.required && t.topology == Topology::Node)
            .filter(|_| unconstrained && full_zones.is_empty());
        let unblocked_guard = node_anti.map(|term| self.unblocked_for(&term.selector));
        let (set, outside_reason) = match (&unblocked_guard, node_anti) {
            (Some(guard), Some(term)) => (
                guard.get(&term.selector).unwrap_or(&empty),
                Reason::AntiAffinity,
            ),
            _ => (set, outside_reason),
        };
        let sets: Vec<&BTreeSet<CapKey>> = if full_zones.is_empty() || request.zone.is_some() {
            vec![set]
        } else {
            let mut open: Vec<(&String, &BTreeSet<CapKey>)> = self
                .by_zone
                .iter()
                .filter(|(zone, _)| !full_zones.contains(zone.as_str()))
                .collect();
            open.sort_by(|a, b| a.0.cmp(b.0));
            open.into_iter().map(|(_, s)| s).collect()
        };
        let preferred = request
            .affinity
            .iter()
            .chain(&request.anti_affinity)
            .any(|t| !t.required);
        let window = if preferred {
            WINDOW_PREFERRED
        } else {
            WINDOW_PLAIN
        };
        let need = &request.resources;
        let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut visited = 0usize;
        let mut best: Option<(i64, &str)> = None;
        let mut feasible = 0usize;
        'sets: for candidates in &sets {
            let start: CapKey = (need.cpu_millis, 0, 0, String::new());
            let range = candidates.range((Bound::Included(start), Bound::Unbounded));
            let ordered: Box<dyn Iterator<Item = &CapKey>> = match strategy {
                Strategy::Binpack => Box::new(range),
                Strategy::Spread => Box::new(range.rev()),
            };
            for key in ordered {
                visited += 1;
                let Some(entry) = self.nodes.get(&key.3) else {
                    continue;
                };
                let free = entry.free();
                match rules::first_failure(request, &entry.node, &free, self) {
                    Some(reason) => *reasons.entry(reason).or_insert(0) += 1,
                    None => {
                        feasible += 1;
                        let score = rules::score(strategy, request, &entry.node, &free, self);
                        let id = entry.node.id.as_str();
                        if best.is_none_or(|(s, b)| score > s || (score == s && id < b)) {
                            best = Some((score, id));
                        }
                        if feasible >= window {
                            break 'sets;
                        }
                    }
                }
            }
        }
        if let Some((_, id)) = best {
            return Ok(id.to_owned());
        }
        // Nothing fits: account for the nodes the indexes never visited.
        let walked: usize = sets.iter().map(|s| s.len()).sum();
        if walked < set.len() {
            *reasons.entry(Reason::PlacementGroup).or_insert(0) += set.len() - walked;
        }
        let below = walked.saturating_sub(visited);
        if below > 0 {
            *reasons.entry(Reason::Cpu).or_insert(0) += below;
        }
        let outside = self.nodes.len() - set.len();
        if outside > 0 {
            *reasons.entry(outside_reason).or_insert(0) += outside;
        }
        Err(super::unschedulable(request, &reasons, self.nodes.len()))
    }

    fn place(&mut self, request: WorkloadRequest, node_id: &str) -> Placement {
        let partition = match &request.placement_group {
            Some(g) => {
                let hosted = self.group_partition_of_node(&g.name, node_id);
                let counts = self
                    .groups
                    .get(&g.name)
                    .map(|g| g.partition_members.clone())
                    .unwrap_or_default();
                rules::partition_for(&request, hosted, &counts)
            }
            None => None,
        };
        self.place_as(request, node_id, partition)
    }

    fn release(&mut self, workload_id: &str) -> Result<Placement, SchedulingError> {
        let placed =
            self.placed
                .remove(workload_id)
                .ok_or_else(|| SchedulingError::UnknownWorkload {
                    workload_id: workload_id.to_owned(),
                })?;
        self.account(&placed, -1);
        let resources = placed.request.resources;
        self.rekey(&placed.node_id, |entry| {
            entry.used = entry.used.minus(&resources);
            entry.workloads.remove(workload_id);
        });
        Ok(self.placement_of(workload_id, &placed.node_id))
    }

    fn placed(&self, workload_id: &str) -> Option<&Placed> {
        self.placed.get(workload_id)
    }

    fn usage(&self, node_id: &str) -> Option<NodeUsage> {
        self.nodes.get(node_id).map(|e| NodeUsage {
            node_id: node_id.to_owned(),
            capacity: e.node.capacity,
            used: e.used,
            workloads: e.workloads.iter().cloned().collect(),
        })
    }

    fn stats(&self) -> SchedulerStats {
        let key_bytes = |set: &BTreeSet<CapKey>| {
            set.iter()
                .map(|k| size_of::<CapKey>() + k.3.len() + 16)
                .sum::<usize>()
        };
        let sets = key_bytes(&self.by_capacity)
            + self.by_region.values().map(key_bytes).sum::<usize>()
            + self.by_zone.values().map(key_bytes).sum::<usize>()
            + (self.by_region.len() + self.by_zone.len()) * 64;
        let unblocked_bytes: usize = self.unblocked.borrow().values().map(key_bytes).sum();
        let selectors = self.selector_counts.borrow();
        let selector_bytes: usize = selectors
            .iter()
            .map(|((s, _), c)| {
                labels_bytes(s) + 64 + c.by_domain.keys().map(|d| d.len() + 40).sum::<usize>()
            })
            .sum();
        let anti_bytes: usize = self
            .existing_anti
            .iter()
            .map(|((s, _), d)| labels_bytes(s) + 64 + d.keys().map(|k| k.len() + 40).sum::<usize>())
            .sum();
        let group_bytes: usize = self
            .groups
            .values()
            .map(|g| 128 + (g.per_node.len() + g.per_zone.len() + g.node_partition.len()) * 48)
            .sum();
        SchedulerStats {
            nodes: self.nodes.len(),
            workloads: self.placed.len(),
            groups: self.groups.len(),
            indexed_selectors: selectors.len(),
            node_table_bytes: self
                .nodes
                .values()
                .map(|e| {
                    node_bytes(&e.node)
                        + size_of::<Resources>()
                        + e.workloads.iter().map(|w| w.len() + 32).sum::<usize>()
                })
                .sum(),
            index_bytes: sets + unblocked_bytes + selector_bytes + anti_bytes + group_bytes,
        }
    }
}
