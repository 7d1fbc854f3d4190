//! The scheduling model: nodes, workload requests, affinity rules, placement groups.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SchedulingError;
use crate::ids::{IdKind, validate_id};

/// An amount of compute: cpu in millicores, memory in MiB, whole GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// GPUs.
    pub gpus: u32,
}

impl Resources {
    /// Whether `request` fits in `self`.
    pub fn fits(&self, request: &Resources) -> bool {
        request.cpu_millis <= self.cpu_millis
            && request.memory_mib <= self.memory_mib
            && request.gpus <= self.gpus
    }

    /// `self - other`, saturating at zero.
    pub fn minus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// `self + other`, saturating.
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }
}

/// A topology level for affinity rules: the node itself, its zone, its region, or any other
/// node label (as kube-scheduler's `topologyKey`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topology {
    /// Each node is its own domain.
    Node,
    /// Nodes in the same zone (of the same region).
    Zone,
    /// Nodes in the same region.
    Region,
    /// Nodes with the same value of this label; nodes without the label are in no domain.
    Label(String),
}

impl Topology {
    /// Parses `node`, `zone`, `region`, or any other text as a label key.
    pub fn parse(text: &str) -> Result<Self, SchedulingError> {
        Ok(match text {
            "node" => Topology::Node,
            "zone" => Topology::Zone,
            "region" => Topology::Region,
            "" => {
                return Err(SchedulingError::InvalidRequest {
                    reason: "topology must be node, zone, region or a label key".into(),
                });
            }
            other => Topology::Label(other.to_owned()),
        })
    }

    /// The topology's name.
    pub fn as_str(&self) -> &str {
        match self {
            Topology::Node => "node",
            Topology::Zone => "zone",
            Topology::Region => "region",
            Topology::Label(key) => key,
        }
    }

    /// The node's domain at this level, or `None` when the node lacks the label.
    pub fn domain_of(&self, node: &Node) -> Option<String> {
        match self {
            Topology::Node => Some(node.id.clone()),
            Topology::Zone => Some(format!("{}/{}", node.region, node.zone)),
            Topology::Region => Some(node.region.clone()),
            Topology::Label(key) => node.labels.get(key).cloned(),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels that must all be present with these values.
pub type Selector = BTreeMap<String, String>;

/// Whether `labels` carry every key/value of `selector` (an empty selector matches all).
pub fn selector_matches(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// An inter-workload affinity or anti-affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AffinityRule {
    /// Which workloads the rule is about.
    pub selector: Selector,
    /// The domain in which they are counted.
    pub topology: Topology,
    /// Required (a filter) or preferred (a score).
    pub required: bool,
    /// For preferred rules: how much a satisfied rule adds to (or, for anti-affinity, takes
    /// from) a node's score, 1 to 100.
    pub weight: u32,
}

impl AffinityRule {
    /// A validated rule.
    pub fn new(
        selector: Selector,
        topology: Topology,
        required: bool,
        weight: u32,
    ) -> Result<Self, SchedulingError> {
        if selector.is_empty() {
            return Err(SchedulingError::InvalidRequest {
                reason: "an affinity rule needs at least one label to match".into(),
            });
        }
        if !(1..=100).contains(&weight) {
            return Err(SchedulingError::InvalidRequest {
                reason: format!("affinity weight must be 1 to 100, got {weight}"),
            });
        }
        Ok(Self {
            selector,
            topology,
            required,
            weight,
        })
    }
}

/// How the members of a placement group are laid out (as EC2 placement groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupStrategy {
    /// All members in one zone, packed close together.
    Cluster,
    /// Every member on a different node, at most [`SPREAD_PER_ZONE`] per zone.
    Spread,
    /// Members split into this many partitions; partitions never share a node.
    Partition(u32),
}

/// EC2's limit on running members of one spread group per zone.
pub const SPREAD_PER_ZONE: usize = 7;

/// Most partitions a partition group may have (EC2's per-zone limit).
pub const MAX_PARTITIONS: u32 = 7;

/// A placement group a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlacementGroup {
    /// The group's name (unique per scheduler).
    pub name: String,
    /// Its strategy.
    pub strategy: GroupStrategy,
    /// For partition groups: the partition this member must go to (0-based), if chosen.
    pub partition: Option<u32>,
}

impl PlacementGroup {
    /// A validated group reference.
    pub fn new(
        name: impl Into<String>,
        strategy: GroupStrategy,
        partition: Option<u32>,
    ) -> Result<Self, SchedulingError> {
        let name = name.into();
        validate_id(IdKind::Resource, &name).map_err(|e| SchedulingError::InvalidRequest {
            reason: format!("placement group name: {e}"),
        })?;
        match (strategy, partition) {
            (GroupStrategy::Partition(n), _) if n == 0 || n > MAX_PARTITIONS => {
                Err(SchedulingError::InvalidRequest {
                    reason: format!(
                        "a partition group has 1 to {MAX_PARTITIONS} partitions, got {n}"
                    ),
                })
            }
            (GroupStrategy::Partition(n), Some(p)) if p >= n => {
                Err(SchedulingError::InvalidRequest {
                    reason: format!("partition {p} is out of range for a group of {n} partitions"),
                })
            }
            (GroupStrategy::Cluster | GroupStrategy::Spread, Some(_)) => {
                Err(SchedulingError::InvalidRequest {
                    reason: "only partition groups take a partition number".into(),
                })
            }
            _ => Ok(Self {
                name,
                strategy,
                partition,
            }),
        }
    }
}

/// A machine workloads can be placed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub zone: String,
    /// Labels (for node selectors and label topologies).
    pub labels: BTreeMap<String, String>,
    /// Total capacity.
    pub capacity: Resources,
}

impl Node {
    /// A validated node.
    pub fn new(
        id: impl Into<String>,
        region: impl Into<String>,
        zone: impl Into<String>,
        capacity: Resources,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, SchedulingError> {
        let node = Self {
            id: id.into(),
            region: region.into(),
            zone: zone.into(),
            labels,
            capacity,
        };
        let invalid = |reason: String| SchedulingError::InvalidNode {
            node_id: node.id.clone(),
            reason,
        };
        validate_id(IdKind::Resource, &node.id).map_err(|e| invalid(e.to_string()))?;
        if node.region.trim().is_empty() || node.zone.trim().is_empty() {
            return Err(invalid("region and zone must not be empty".into()));
        }
        if node.capacity.cpu_millis == 0 || node.capacity.memory_mib == 0 {
            return Err(invalid("capacity needs some cpu and memory".into()));
        }
        Ok(node)
    }
}

/// A request to place one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRequest {
    /// The workload's id (unique among placed workloads).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// What it needs.
    pub resources: Resources,
    /// Only nodes in this region.
    pub region: Option<String>,
    /// Only nodes in this zone.
    pub zone: Option<String>,
    /// The workload's own labels (what other workloads' rules match).
    pub labels: BTreeMap<String, String>,
    /// Node labels the node must carry.
    pub node_selector: Selector,
    /// Affinity terms.
    pub affinity: Vec<AffinityRule>,
    /// Anti-affinity terms.
    pub anti_affinity: Vec<AffinityRule>,
    /// The placement group, if any.
    pub placement_group: Option<PlacementGroup>,
}

impl WorkloadRequest {
    /// A request with only resources; add constraints with struct update syntax.
    pub fn new(id: impl Into<String>, tenant_id: impl Into<String>, resources: Resources) -> Self {
        Self {
            id: id.into(),
            tenant_id: tenant_id.into(),
            resources,
            region: None,
            zone: None,
            labels: BTreeMap::new(),
            node_selector: Selector::new(),
            affinity: Vec::new(),
            anti_affinity: Vec::new(),
            placement_group: None,
        }
    }

    /// Checks ids and amounts.
    pub fn validate(&self) -> Result<(), SchedulingError> {
        let invalid = |reason: String| SchedulingError::InvalidRequest { reason };
        validate_id(IdKind::Resource, &self.id)
            .map_err(|e| invalid(format!("workload id: {e}")))?;
        validate_id(IdKind::Tenant, &self.tenant_id)
            .map_err(|e| invalid(format!("tenant id: {e}")))?;
        if self.resources.cpu_millis == 0
            && self.resources.memory_mib == 0
            && self.resources.gpus == 0
        {
            return Err(invalid(format!(
                "workload {:?} requests no resources",
                self.id
            )));
        }
        Ok(())
    }
}

/// Where a workload was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The workload.
    pub workload_id: String,
    /// The node.
    pub node_id: String,
    /// The node's region.
    pub region: String,
    /// The node's zone.
    pub zone: String,
}

impl Placement {
    /// The placement of `workload_id` on `node_id`, with the node's region and zone when the
    /// node is known.
    pub(crate) fn on(workload_id: &str, node_id: &str, node: Option<&Node>) -> Self {
        Self {
            workload_id: workload_id.to_owned(),
            node_id: node_id.to_owned(),
            region: node.map(|n| n.region.clone()).unwrap_or_default(),
            zone: node.map(|n| n.zone.clone()).unwrap_or_default(),
        }
    }
}

/// How to rank feasible nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Most allocated first: pack nodes full (fewer nodes in use).
    Binpack,
    /// Least allocated first: spread load.
    Spread,
}
