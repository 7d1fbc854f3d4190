//! The placement rules both schedulers share: filters (with the reason a node fails) and the
//! score of a feasible node. They read the cluster through [`ClusterView`], which the indexed
//! scheduler answers from its indexes and the naive one by scanning; the rules themselves exist
//! once.

use std::collections::BTreeMap;

use super::model::{
    GroupStrategy, Node, Resources, SPREAD_PER_ZONE, Strategy, Topology, WorkloadRequest,
    selector_matches,
};
use crate::error::SchedulingError;

/// What the rules need to know about placed workloads and placement groups.
pub(crate) trait ClusterView {
    /// Placed workloads matching `selector` on nodes whose `topology` domain is `domain`.
    fn matching_in_domain(
        &self,
        selector: &super::model::Selector,
        topology: &Topology,
        domain: &str,
    ) -> usize;

    /// Placed workloads matching `selector` anywhere.
    fn matching_anywhere(&self, selector: &super::model::Selector) -> usize;

    /// Whether a placed workload's required anti-affinity forbids `request` on `node`.
    fn blocked_by_existing(&self, request: &WorkloadRequest, node: &Node) -> bool;

    /// The strategy of a placement group that has members.
    fn group_strategy(&self, group: &str) -> Option<GroupStrategy>;

    /// The zone key (`region/zone`) of a cluster group's members.
    fn group_cluster_zone(&self, group: &str) -> Option<String>;

    /// Members of `group` on `node_id`.
    fn group_members_on_node(&self, group: &str, node_id: &str) -> usize;

    /// Members of `group` in the zone `zone_key` (`region/zone`).
    fn group_members_in_zone(&self, group: &str, zone_key: &str) -> usize;

    /// The partition of `group` that `node_id` hosts, if any.
    fn group_partition_of_node(&self, group: &str, node_id: &str) -> Option<u32>;
}

/// Why a node was excluded; the text is what [`SchedulingError::Unschedulable`] counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    Region,
    Zone,
    NodeSelector,
    Cpu,
    Memory,
    Gpus,
    PlacementGroup,
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Region => "node(s) not in the requested region",
            Reason::Zone => "node(s) not in the requested zone",
            Reason::NodeSelector => "node(s) didn't match the node selector",
            Reason::Cpu => "Insufficient cpu",
            Reason::Memory => "Insufficient memory",
            Reason::Gpus => "Insufficient gpus",
            Reason::PlacementGroup => "node(s) violate the placement group",
            Reason::Affinity => "node(s) didn't match workload affinity rules",
            Reason::AntiAffinity => "node(s) didn't match workload anti-affinity rules",
            Reason::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing workloads' anti-affinity rules"
            }
        }
    }
}

/// Refuses a request whose placement group is known under another strategy.
pub(crate) fn check_group_strategy(
    request: &WorkloadRequest,
    view: &dyn ClusterView,
) -> Result<(), SchedulingError> {
    if let Some(g) = &request.placement_group
        && let Some(existing) = view.group_strategy(&g.name)
        && existing != g.strategy
    {
        return Err(SchedulingError::InvalidRequest {
            reason: format!(
                "placement group {:?} is {:?}, the request says {:?}",
                g.name, existing, g.strategy
            ),
        });
    }
    Ok(())
}

/// The first rule `node` (with `free` capacity left) breaks for `request`, or `None`.
pub(crate) fn first_failure(
    request: &WorkloadRequest,
    node: &Node,
    free: &Resources,
    view: &dyn ClusterView,
) -> Option<Reason> {
    if request.region.as_ref().is_some_and(|r| *r != node.region) {
        return Some(Reason::Region);
    }
    if request.zone.as_ref().is_some_and(|z| *z != node.zone) {
        return Some(Reason::Zone);
    }
    if !selector_matches(&request.node_selector, &node.labels) {
        return Some(Reason::NodeSelector);
    }
    if let Some(r) = capacity_failure(&request.resources, free) {
        return Some(r);
    }
    if !group_allows(request, node, view) {
        return Some(Reason::PlacementGroup);
    }
    if !affinity_allows(request, node, view) {
        return Some(Reason::Affinity);
    }
    if !anti_affinity_allows(request, node, view) {
        return Some(Reason::AntiAffinity);
    }
    if view.blocked_by_existing(request, node) {
        return Some(Reason::ExistingAntiAffinity);
    }
    None
}

/// Which resource does not fit, if any.
pub(crate) fn capacity_failure(request: &Resources, free: &Resources) -> Option<Reason> {
    if request.cpu_millis > free.cpu_millis {
        Some(Reason::Cpu)
    } else if request.memory_mib > free.memory_mib {
        Some(Reason::Memory)
    } else if request.gpus > free.gpus {
        Some(Reason::Gpus)
    } else {
        None
    }
}

/// The key of a node's zone: `region/zone`.
pub(crate) fn zone_key(node: &Node) -> String {
    format!("{}/{}", node.region, node.zone)
}

fn group_allows(request: &WorkloadRequest, node: &Node, view: &dyn ClusterView) -> bool {
    let Some(g) = &request.placement_group else {
        return true;
    };
    // A group without members lets its first member go anywhere.
    match g.strategy {
        GroupStrategy::Cluster => view
            .group_cluster_zone(&g.name)
            .is_none_or(|z| z == zone_key(node)),
        GroupStrategy::Spread => {
            view.group_members_on_node(&g.name, &node.id) == 0
                && view.group_members_in_zone(&g.name, &zone_key(node)) < SPREAD_PER_ZONE
        }
        GroupStrategy::Partition(_) => {
            match (g.partition, view.group_partition_of_node(&g.name, &node.id)) {
                (Some(wanted), Some(hosted)) => wanted == hosted,
                _ => true,
            }
        }
    }
}

/// kube-scheduler's InterPodAffinity filter for the incoming workload's required affinity: every
/// term needs a matching workload in the node's domain; a node without the topology never
/// matches; the first workload of a self-affine group may go wherever the topology exists.
fn affinity_allows(request: &WorkloadRequest, node: &Node, view: &dyn ClusterView) -> bool {
    request.affinity.iter().filter(|t| t.required).all(|term| {
        let Some(domain) = term.topology.domain_of(node) else {
            return false;
        };
        view.matching_in_domain(&term.selector, &term.topology, &domain) > 0
            || (view.matching_anywhere(&term.selector) == 0
                && selector_matches(&term.selector, &request.labels))
    })
}

/// The incoming workload's required anti-affinity: no matching workload in the node's domain
/// (a node without the topology is in no domain, so nothing there can match).
fn anti_affinity_allows(request: &WorkloadRequest, node: &Node, view: &dyn ClusterView) -> bool {
    request
        .anti_affinity
        .iter()
        .filter(|t| t.required)
        .all(|term| {
            term.topology.domain_of(node).is_none_or(|domain| {
                view.matching_in_domain(&term.selector, &term.topology, &domain) == 0
            })
        })
}

/// The score of a feasible node: the strategy's allocation score (0 to 100 after placing the
/// request) plus preferred affinity weights satisfied, minus preferred anti-affinity weights.
pub(crate) fn score(
    strategy: Strategy,
    request: &WorkloadRequest,
    node: &Node,
    free: &Resources,
    view: &dyn ClusterView,
) -> i64 {
    let used_after = node.capacity.minus(free).plus(&request.resources);
    let fraction = |used: u64, cap: u64| {
        if cap == 0 {
            0.0
        } else {
            used as f64 / cap as f64
        }
    };
    let mut dims = vec![
        fraction(used_after.cpu_millis, node.capacity.cpu_millis),
        fraction(used_after.memory_mib, node.capacity.memory_mib),
    ];
    if node.capacity.gpus > 0 {
        dims.push(fraction(
            u64::from(used_after.gpus),
            u64::from(node.capacity.gpus),
        ));
    }
    let allocated = (dims.iter().sum::<f64>() / dims.len() as f64 * 100.0).round() as i64;
    let base = match strategy {
        Strategy::Binpack => allocated,
        Strategy::Spread => 100 - allocated,
    };
    let mut preferred = 0i64;
    for (terms, sign) in [(&request.affinity, 1i64), (&request.anti_affinity, -1i64)] {
        for term in terms.iter().filter(|t| !t.required) {
            if let Some(domain) = term.topology.domain_of(node)
                && view.matching_in_domain(&term.selector, &term.topology, &domain) > 0
            {
                preferred += sign * i64::from(term.weight);
            }
        }
    }
    base + preferred
}

/// The partition a partition-group member goes to on `node`: the one asked for, the one the
/// node already hosts, or the least populated (lowest number on ties).
pub(crate) fn partition_for(
    request: &WorkloadRequest,
    node_partition: Option<u32>,
    members: &BTreeMap<u32, usize>,
) -> Option<u32> {
    let g = request.placement_group.as_ref()?;
    let GroupStrategy::Partition(count) = g.strategy else {
        return None;
    };
    g.partition
        .or(node_partition)
        .or_else(|| (0..count).min_by_key(|p| (members.get(p).copied().unwrap_or(0), *p)))
}
