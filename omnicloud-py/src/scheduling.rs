//! `Node`, `AffinityRule`, `PlacementGroup`, `WorkloadRequest`, `Placement`, `NodeUsage` and
//! `Scheduler` (the Python `NaiveScheduler` subclasses it with the naive implementation).

use std::collections::BTreeMap;

use omnicloud_core::scheduling::{self as core, GroupStrategy, Resources, Strategy, Topology};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{BindingError, BindingResult};
use crate::gateway::detached;

fn invalid(e: omnicloud_core::error::SchedulingError) -> PyErr {
    BindingError::from(e).into()
}

/// A machine workloads can be placed on.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct Node {
    inner: core::Node,
}

#[pymethods]
impl Node {
    #[new]
    #[pyo3(signature = (id, region, zone, cpu_millis, memory_mib, gpus = 0, labels = None))]
    fn new(
        id: String,
        region: String,
        zone: String,
        cpu_millis: u64,
        memory_mib: u64,
        gpus: u32,
        labels: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let capacity = Resources {
            cpu_millis,
            memory_mib,
            gpus,
        };
        let inner = core::Node::new(id, region, zone, capacity, labels.unwrap_or_default())
            .map_err(invalid)?;
        Ok(Self { inner })
    }
    /// Unique id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Region.
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    /// Zone.
    #[getter]
    fn zone(&self) -> &str {
        &self.inner.zone
    }
    /// CPU capacity in millicores.
    #[getter]
    fn cpu_millis(&self) -> u64 {
        self.inner.capacity.cpu_millis
    }
    /// Memory capacity in MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.inner.capacity.memory_mib
    }
    /// GPUs.
    #[getter]
    fn gpus(&self) -> u32 {
        self.inner.capacity.gpus
    }
    /// Labels.
    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.inner.labels.clone()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Node>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "Node(id={:?}, region={:?}, zone={:?}, cpu_millis={}, memory_mib={}, gpus={})",
            self.inner.id,
            self.inner.region,
            self.inner.zone,
            self.inner.capacity.cpu_millis,
            self.inner.capacity.memory_mib,
            self.inner.capacity.gpus
        )
    }
}

/// An affinity or anti-affinity term.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct AffinityRule {
    inner: core::AffinityRule,
}

#[pymethods]
impl AffinityRule {
    /// `topology`: "node", "zone", "region" or any node label key.
    #[new]
    #[pyo3(signature = (match_labels, topology, required = true, weight = 1))]
    fn new(
        match_labels: BTreeMap<String, String>,
        topology: &str,
        required: bool,
        weight: u32,
    ) -> PyResult<Self> {
        let topology = Topology::parse(topology).map_err(invalid)?;
        Ok(Self {
            inner: core::AffinityRule::new(match_labels, topology, required, weight)
                .map_err(invalid)?,
        })
    }
    /// The labels matched.
    #[getter]
    fn match_labels(&self) -> BTreeMap<String, String> {
        self.inner.selector.clone()
    }
    /// The topology.
    #[getter]
    fn topology(&self) -> &str {
        self.inner.topology.as_str()
    }
    /// Required (a filter) or preferred (a score).
    #[getter]
    fn required(&self) -> bool {
        self.inner.required
    }
    /// Weight of a preferred rule.
    #[getter]
    fn weight(&self) -> u32 {
        self.inner.weight
    }
    fn __repr__(&self) -> String {
        format!(
            "AffinityRule(match_labels={:?}, topology={:?}, required={}, weight={})",
            self.inner.selector,
            self.inner.topology.as_str(),
            if self.inner.required { "True" } else { "False" },
            self.inner.weight
        )
    }
}

/// A placement group: "cluster" (one zone), "spread" (distinct nodes, at most 7 per zone) or
/// "partition" (partitions never share a node).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct PlacementGroup {
    inner: core::PlacementGroup,
}

#[pymethods]
impl PlacementGroup {
    #[new]
    #[pyo3(signature = (name, strategy, partitions = None, partition = None))]
    fn new(
        name: String,
        strategy: &str,
        partitions: Option<u32>,
        partition: Option<u32>,
    ) -> PyResult<Self> {
        let strategy = match (strategy, partitions) {
            ("cluster", None) => GroupStrategy::Cluster,
            ("spread", None) => GroupStrategy::Spread,
            ("partition", Some(n)) => GroupStrategy::Partition(n),
            ("partition", None) => {
                return Err(BindingError::value("a partition group needs partitions=N").into());
            }
            ("cluster" | "spread", Some(_)) => {
                return Err(BindingError::value("only partition groups take partitions").into());
            }
            (other, _) => {
                return Err(BindingError::value(format!(
                    "placement group strategy must be cluster, spread or partition, got {other:?}"
                ))
                .into());
            }
        };
        Ok(Self {
            inner: core::PlacementGroup::new(name, strategy, partition).map_err(invalid)?,
        })
    }
    /// The group's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// "cluster", "spread" or "partition".
    #[getter]
    fn strategy(&self) -> &'static str {
        match self.inner.strategy {
            GroupStrategy::Cluster => "cluster",
            GroupStrategy::Spread => "spread",
            GroupStrategy::Partition(_) => "partition",
        }
    }
    /// Partition count (partition groups).
    #[getter]
    fn partitions(&self) -> Option<u32> {
        match self.inner.strategy {
            GroupStrategy::Partition(n) => Some(n),
            _ => None,
        }
    }
    /// The partition this member asks for, if any.
    #[getter]
    fn partition(&self) -> Option<u32> {
        self.inner.partition
    }
    fn __repr__(&self) -> String {
        format!(
            "PlacementGroup(name={:?}, strategy={:?})",
            self.inner.name,
            self.strategy()
        )
    }
}

/// A request to place one workload.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct WorkloadRequest {
    inner: core::WorkloadRequest,
}

#[pymethods]
impl WorkloadRequest {
    #[new]
    #[pyo3(signature = (id, tenant_id, cpu_millis, memory_mib, gpus = 0, region = None, zone = None, labels = None,
                        node_selector = None, affinity = Vec::new(), anti_affinity = Vec::new(), placement_group = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        tenant_id: String,
        cpu_millis: u64,
        memory_mib: u64,
        gpus: u32,
        region: Option<String>,
        zone: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        node_selector: Option<BTreeMap<String, String>>,
        affinity: Vec<PyRef<'_, AffinityRule>>,
        anti_affinity: Vec<PyRef<'_, AffinityRule>>,
        placement_group: Option<PyRef<'_, PlacementGroup>>,
    ) -> PyResult<Self> {
        let inner = core::WorkloadRequest {
            region,
            zone,
            labels: labels.unwrap_or_default(),
            node_selector: node_selector.unwrap_or_default(),
            affinity: affinity.iter().map(|r| r.inner.clone()).collect(),
            anti_affinity: anti_affinity.iter().map(|r| r.inner.clone()).collect(),
            placement_group: placement_group.map(|g| g.inner.clone()),
            ..core::WorkloadRequest::new(
                id,
                tenant_id,
                Resources {
                    cpu_millis,
                    memory_mib,
                    gpus,
                },
            )
        };
        inner.validate().map_err(invalid)?;
        Ok(Self { inner })
    }
    /// The workload's id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Owning tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }
    /// CPU requested, millicores.
    #[getter]
    fn cpu_millis(&self) -> u64 {
        self.inner.resources.cpu_millis
    }
    /// Memory requested, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.inner.resources.memory_mib
    }
    /// GPUs requested.
    #[getter]
    fn gpus(&self) -> u32 {
        self.inner.resources.gpus
    }
    /// The workload's labels.
    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.inner.labels.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "WorkloadRequest(id={:?}, tenant_id={:?}, cpu_millis={}, memory_mib={}, gpus={})",
            self.inner.id,
            self.inner.tenant_id,
            self.inner.resources.cpu_millis,
            self.inner.resources.memory_mib,
            self.inner.resources.gpus
        )
    }
}

/// Where a workload was placed.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Placement {
    inner: core::Placement,
}

#[pymethods]
impl Placement {
    /// The workload.
    #[getter]
    fn workload_id(&self) -> &str {
        &self.inner.workload_id
    }
    /// The node.
    #[getter]
    fn node_id(&self) -> &str {
        &self.inner.node_id
    }
    /// The node's region.
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    /// The node's zone.
    #[getter]
    fn zone(&self) -> &str {
        &self.inner.zone
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Placement>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "Placement(workload_id={:?}, node_id={:?}, region={:?}, zone={:?})",
            self.inner.workload_id, self.inner.node_id, self.inner.region, self.inner.zone
        )
    }
}

/// How much of a node is in use.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct NodeUsage {
    inner: core::NodeUsage,
}

#[pymethods]
impl NodeUsage {
    /// The node.
    #[getter]
    fn node_id(&self) -> &str {
        &self.inner.node_id
    }
    /// CPU in use, millicores.
    #[getter]
    fn cpu_millis(&self) -> u64 {
        self.inner.used.cpu_millis
    }
    /// Memory in use, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.inner.used.memory_mib
    }
    /// GPUs in use.
    #[getter]
    fn gpus(&self) -> u32 {
        self.inner.used.gpus
    }
    /// CPU capacity.
    #[getter]
    fn cpu_capacity(&self) -> u64 {
        self.inner.capacity.cpu_millis
    }
    /// Memory capacity.
    #[getter]
    fn memory_capacity(&self) -> u64 {
        self.inner.capacity.memory_mib
    }
    /// GPU capacity.
    #[getter]
    fn gpu_capacity(&self) -> u32 {
        self.inner.capacity.gpus
    }
    /// Workloads on the node, sorted.
    #[getter]
    fn workloads(&self) -> Vec<String> {
        self.inner.workloads.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "NodeUsage(node_id={:?}, cpu={}/{}, memory={}/{}, workloads={})",
            self.inner.node_id,
            self.inner.used.cpu_millis,
            self.inner.capacity.cpu_millis,
            self.inner.used.memory_mib,
            self.inner.capacity.memory_mib,
            self.inner.workloads.len()
        )
    }
}

/// Places workloads on nodes; safe to call from many threads (the GIL is released while it
/// decides, and each placement is atomic).
#[pyclass(frozen, subclass, module = "omnicloud._omnicloud")]
pub struct Scheduler {
    inner: core::Scheduler,
}

#[pymethods]
impl Scheduler {
    /// `strategy`: "binpack" (most allocated first) or "spread" (least allocated first).
    /// `implementation` is "indexed" (the default) or "naive" (the reference; see
    /// NaiveScheduler).
    #[new]
    #[pyo3(signature = (nodes = Vec::new(), strategy = "binpack", implementation = "indexed"))]
    fn new(
        py: Python<'_>,
        nodes: Vec<PyRef<'_, Node>>,
        strategy: &str,
        implementation: &str,
    ) -> PyResult<Self> {
        let strategy = match strategy {
            "binpack" => Strategy::Binpack,
            "spread" => Strategy::Spread,
            other => {
                return Err(BindingError::value(format!(
                    "strategy must be binpack or spread, got {other:?}"
                ))
                .into());
            }
        };
        let inner = match implementation {
            "indexed" => core::Scheduler::new(strategy),
            "naive" => core::Scheduler::naive(strategy),
            other => {
                return Err(BindingError::value(format!(
                    "implementation must be indexed or naive, got {other:?}"
                ))
                .into());
            }
        };
        let nodes: Vec<core::Node> = nodes.iter().map(|n| n.inner.clone()).collect();
        detached(py, || -> BindingResult<()> {
            for n in nodes {
                inner.add_node(n)?;
            }
            Ok(())
        })?;
        Ok(Self { inner })
    }

    /// Adds a node.
    fn add_node(&self, py: Python<'_>, node: PyRef<'_, Node>) -> PyResult<()> {
        let n = node.inner.clone();
        detached(py, || self.inner.add_node(n))
    }

    /// Replaces a node's description; its workloads stay.
    fn update_node(&self, py: Python<'_>, node: PyRef<'_, Node>) -> PyResult<()> {
        let n = node.inner.clone();
        detached(py, || self.inner.update_node(n))
    }

    /// Removes a node; returns the ids of the workloads evicted from it.
    fn remove_node(&self, py: Python<'_>, node_id: &str) -> PyResult<Vec<String>> {
        detached(py, || self.inner.remove_node(node_id))
    }

    /// Places a workload on the best feasible node; raises UnschedulableError with the
    /// reasons otherwise.
    fn schedule(&self, py: Python<'_>, request: PyRef<'_, WorkloadRequest>) -> PyResult<Placement> {
        let r = request.inner.clone();
        Ok(Placement {
            inner: detached(py, || self.inner.schedule(r))?,
        })
    }

    /// Places several workloads in order; returns, per request, a Placement or the exception
    /// that request would have raised.
    fn schedule_many<'py>(
        &self,
        py: Python<'py>,
        requests: Vec<PyRef<'_, WorkloadRequest>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let rs: Vec<core::WorkloadRequest> = requests.iter().map(|r| r.inner.clone()).collect();
        let results = detached(py, || Ok::<_, BindingError>(self.inner.schedule_many(rs)))?;
        results
            .into_iter()
            .map(|r| match r {
                Ok(inner) => Ok(Bound::new(py, Placement { inner })?.into_any()),
                Err(e) => Ok(PyErr::from(BindingError::from(e))
                    .into_value(py)
                    .into_bound(py)
                    .into_any()),
            })
            .collect()
    }

    /// Places a workload on a named node after the same feasibility checks.
    fn bind(
        &self,
        py: Python<'_>,
        request: PyRef<'_, WorkloadRequest>,
        node_id: &str,
    ) -> PyResult<Placement> {
        let r = request.inner.clone();
        Ok(Placement {
            inner: detached(py, || self.inner.bind(r, node_id))?,
        })
    }

    /// Removes a placed workload.
    fn release(&self, py: Python<'_>, workload_id: &str) -> PyResult<Placement> {
        Ok(Placement {
            inner: detached(py, || self.inner.release(workload_id))?,
        })
    }

    /// A node's capacity, use and workloads.
    fn node_usage(&self, py: Python<'_>, node_id: &str) -> PyResult<NodeUsage> {
        Ok(NodeUsage {
            inner: detached(py, || self.inner.node_usage(node_id))?,
        })
    }

    /// The node a workload is placed on, or None.
    fn placement_of(&self, workload_id: &str) -> Option<String> {
        self.inner.placement(workload_id)
    }

    /// Table sizes and approximate index memory.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("nodes", s.nodes)?;
        d.set_item("workloads", s.workloads)?;
        d.set_item("groups", s.groups)?;
        d.set_item("indexed_selectors", s.indexed_selectors)?;
        d.set_item("node_table_bytes", s.node_table_bytes)?;
        d.set_item("index_bytes", s.index_bytes)?;
        Ok(d)
    }

    /// "binpack" or "spread".
    #[getter]
    fn strategy(&self) -> &'static str {
        match self.inner.strategy() {
            Strategy::Binpack => "binpack",
            Strategy::Spread => "spread",
        }
    }
}
