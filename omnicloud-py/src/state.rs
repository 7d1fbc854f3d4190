//! `Resource`, `StateMachine`, `Transition`, `DependencyResolver` and `StateManager`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use omnicloud_core::state::{self as core, ResourceState, StateMachine as CoreMachine};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString};

use crate::clock::clock_arg;
use crate::convert::{json_from_py, json_to_py, py_enum, repr_opt};
use crate::drift::{DriftReport, strategy_arg};
use crate::errors::{BindingError, BindingResult};
use crate::events::EventBus;
use crate::gateway::detached;
use crate::snapshot::SnapshotInfo;
use crate::store::Store;
use crate::tenancy::tenant_id_arg;

/// A lifecycle state argument: a `ResourceState` member or its value.
pub(crate) fn state_arg(name: &str) -> PyResult<ResourceState> {
    name.parse::<ResourceState>()
        .map_err(|e| BindingError::from(e).into())
}

fn state_out<'py>(py: Python<'py>, state: ResourceState) -> PyResult<Bound<'py, PyAny>> {
    py_enum(py, "ResourceState", state.as_str())
}

/// A managed infrastructure resource (immutable; the manager returns updated copies).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Resource {
    pub(crate) inner: Arc<core::Resource>,
}

impl Resource {
    pub(crate) fn wrap(inner: Arc<core::Resource>) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl Resource {
    #[new]
    #[pyo3(signature = (id, tenant_id, kind, region, spec, depends_on = Vec::new(), zone = None, labels = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        tenant_id: &str,
        kind: String,
        region: String,
        spec: &Bound<'_, PyDict>,
        depends_on: Vec<String>,
        zone: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let spec = json_from_py(spec.as_any(), "spec")?;
        let tenant = tenant_id_arg(tenant_id)?;
        let build = || -> Result<core::Resource, omnicloud_core::Error> {
            let mut r = core::Resource::new(id, tenant, kind, region, spec)?
                .with_dependencies(depends_on)?
                .with_labels(labels.unwrap_or_default());
            if let Some(zone) = zone {
                r = r.with_zone(zone)?;
            }
            Ok(r)
        };
        Ok(Self::wrap(Arc::new(build().map_err(BindingError::from)?)))
    }

    /// Unique id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Owning tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// What it is.
    #[getter]
    fn kind(&self) -> &str {
        &self.inner.kind
    }
    /// Region.
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    /// Availability zone, if pinned.
    #[getter]
    fn zone(&self) -> Option<&str> {
        self.inner.zone.as_deref()
    }
    /// Desired configuration (a new dict on every access).
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.spec)
    }
    /// Ids this resource depends on, sorted.
    #[getter]
    fn depends_on(&self) -> Vec<String> {
        self.inner.depends_on.clone()
    }
    /// Labels.
    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.inner.labels.clone()
    }
    /// Lifecycle state.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        state_out(py, self.inner.state)
    }
    /// Actual configuration as last reported, or None.
    #[getter]
    fn actual<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .actual
            .as_ref()
            .map(|a| json_to_py(py, a))
            .transpose()
    }
    /// Version in its store (0 until stored).
    #[getter]
    fn serial(&self) -> u64 {
        self.inner.serial
    }
    /// When it was last written, or None.
    #[getter]
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.inner.updated_at
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Resource>()
            .is_ok_and(|o| *o.get().inner == *self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.inner.id, self.inner.serial).hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "Resource(id={:?}, tenant_id={:?}, kind={:?}, region={:?}, zone={}, state={:?}, serial={})",
            self.inner.id,
            self.inner.tenant_id.as_str(),
            self.inner.kind,
            self.inner.region,
            repr_opt(self.inner.zone.as_deref()),
            self.inner.state.as_str(),
            self.inner.serial
        )
    }
}

/// One applied lifecycle transition.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Transition {
    inner: core::Transition,
}

#[pymethods]
impl Transition {
    /// The resource.
    #[getter]
    fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }
    /// The state it left.
    #[getter]
    #[allow(clippy::wrong_self_convention)] // a Python property named like the field, not a constructor
    fn from_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        state_out(py, self.inner.from)
    }
    /// The state it entered.
    #[getter]
    fn to_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        state_out(py, self.inner.to)
    }
    /// When.
    #[getter]
    fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }
    /// Why.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Transition>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Transition(resource_id={:?}, {} -> {}, at={}, reason={:?})",
            self.inner.resource_id,
            self.inner.from,
            self.inner.to,
            self.inner.at.to_rfc3339(),
            self.inner.reason
        )
    }
}

/// The lifecycle's transition table.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct StateMachine;

#[pymethods]
impl StateMachine {
    #[new]
    fn new() -> Self {
        Self
    }

    /// Whether `from_state -> to_state` is allowed.
    fn can_transition(&self, from_state: &str, to_state: &str) -> PyResult<bool> {
        Ok(CoreMachine::can_transition(
            state_arg(from_state)?,
            state_arg(to_state)?,
        ))
    }

    /// The states reachable in one step from `state`.
    fn allowed_from<'py>(&self, py: Python<'py>, state: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
        CoreMachine::allowed_from(state_arg(state)?)
            .iter()
            .map(|s| state_out(py, *s))
            .collect()
    }

    /// Raises InvalidTransitionError naming the resource and both states if not allowed.
    fn check(&self, resource_id: &str, from_state: &str, to_state: &str) -> PyResult<()> {
        CoreMachine::check(resource_id, state_arg(from_state)?, state_arg(to_state)?)
            .map_err(|e| BindingError::from(e).into())
    }

    /// Whether no transition leaves `state`.
    fn is_terminal(&self, state: &str) -> PyResult<bool> {
        Ok(state_arg(state)?.is_terminal())
    }

    fn __repr__(&self) -> &'static str {
        "StateMachine()"
    }
}

/// The dependency graph: order, waves, cycles and impact.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct DependencyResolver {
    inner: RwLock<core::DependencyResolver>,
    /// Python strings of resource ids by graph slot, made once and shared by every answer
    /// (their hashes are cached too); cleared when a removal may reuse slots.
    names: Mutex<Vec<Option<Py<PyString>>>>,
}

impl DependencyResolver {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, core::DependencyResolver> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, core::DependencyResolver> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn names(&self) -> std::sync::MutexGuard<'_, Vec<Option<Py<PyString>>>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl DependencyResolver {
    #[new]
    fn new() -> Self {
        Self {
            inner: RwLock::new(core::DependencyResolver::new()),
            names: Mutex::new(Vec::new()),
        }
    }

    /// Adds a resource and its dependencies (which may be added later).
    #[pyo3(signature = (id, depends_on = Vec::new()))]
    fn add(&self, id: &str, depends_on: Vec<String>) -> PyResult<()> {
        self.write()
            .add(id, &depends_on)
            .map_err(|e| BindingError::from(e).into())
    }

    /// Adds many `(id, depends_on)` pairs in one call; stops at the first refusal (the pairs
    /// before it stay added).
    fn add_many(&self, py: Python<'_>, items: Vec<(String, Vec<String>)>) -> PyResult<()> {
        detached(py, || -> BindingResult<()> {
            let mut graph = self.write();
            for (id, deps) in &items {
                graph.add(id, deps)?;
            }
            Ok(())
        })
    }

    /// Replaces the dependencies of an added resource.
    fn set_dependencies(&self, id: &str, depends_on: Vec<String>) -> PyResult<()> {
        self.write()
            .set_dependencies(id, &depends_on)
            .map_err(BindingError::from)?;
        // Rewiring can drop placeholder nodes, freeing slots.
        self.names().clear();
        Ok(())
    }

    /// Removes a resource; refused while others depend on it.
    fn remove(&self, id: &str) -> PyResult<()> {
        self.write().remove(id).map_err(BindingError::from)?;
        self.names().clear();
        Ok(())
    }

    /// Every resource, dependencies first, ties by id.
    fn topological_order<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut slots: Vec<usize> = Vec::new();
        let graph = self.read();
        let mut names = self.names();
        // The ordering itself runs without the GIL; the ids become (cached) Python strings after.
        let mut ids: Vec<&str> = Vec::new();
        detached(py, || {
            graph.for_each_in_order(|slot, id| {
                slots.push(slot);
                ids.push(id);
            })
        })?;
        let list = PyList::empty(py);
        for (slot, id) in slots.into_iter().zip(ids) {
            list.append(cached_name(&mut names, py, slot, id))?;
        }
        Ok(list)
    }

    /// The waves that can run in parallel.
    fn levels(&self, py: Python<'_>) -> PyResult<Vec<Vec<String>>> {
        detached(py, || self.read().levels())
    }

    /// Dependents before their dependencies.
    fn teardown_order(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        detached(py, || self.read().teardown_order())
    }

    /// One cycle per strongly connected component, members in cycle order.
    fn find_cycles(&self, py: Python<'_>) -> PyResult<Vec<Vec<String>>> {
        detached(py, || Ok::<_, BindingError>(self.read().find_cycles()))
    }

    /// The cycle adding `id` with `depends_on` would close, or None.
    fn would_cycle(&self, id: &str, depends_on: Vec<String>) -> Option<Vec<String>> {
        self.read().would_cycle(id, &depends_on)
    }

    /// Everything that transitively depends on `id`.
    fn impact<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Bound<'py, PySet>> {
        let set = PySet::empty(py)?;
        let mut failed = None;
        let mut names = self.names();
        self.read()
            .for_each_impacted(id, |slot, found| {
                if failed.is_none()
                    && let Err(e) = set.add(cached_name(&mut names, py, slot, found))
                {
                    failed = Some(e);
                }
            })
            .map_err(BindingError::from)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(set),
        }
    }

    /// Everything `id` transitively depends on.
    fn transitive_dependencies(&self, py: Python<'_>, id: &str) -> PyResult<HashSet<String>> {
        let ids = detached(py, || self.read().transitive_dependencies(id))?;
        Ok(ids.into_iter().collect())
    }

    /// Direct dependencies, sorted.
    fn dependencies(&self, id: &str) -> PyResult<Vec<String>> {
        self.read()
            .dependencies(id)
            .map_err(|e| BindingError::from(e).into())
    }

    /// Direct dependents, sorted.
    fn dependents(&self, id: &str) -> PyResult<Vec<String>> {
        self.read()
            .dependents(id)
            .map_err(|e| BindingError::from(e).into())
    }

    fn __contains__(&self, id: &str) -> bool {
        self.read().contains(id)
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn __repr__(&self) -> String {
        format!("DependencyResolver(resources={})", self.read().len())
    }
}

/// The Python string for a graph slot, made on first use.
fn cached_name<'py>(
    names: &mut Vec<Option<Py<PyString>>>,
    py: Python<'py>,
    slot: usize,
    id: &str,
) -> Bound<'py, PyString> {
    if names.len() <= slot {
        names.resize_with(slot + 1, || None);
    }
    names[slot]
        .get_or_insert_with(|| PyString::new(py, id).unbind())
        .bind(py)
        .clone()
}

/// The state capability's facade: lifecycle, drift, dependencies and snapshots over a store.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct StateManager {
    pub(crate) inner: Arc<core::StateManager>,
    /// The database the resources live in, if any (failover keeps its plans beside them).
    pub(crate) store: Option<omnicloud_core::store::Store>,
}

fn resources_out(items: Vec<Arc<core::Resource>>) -> Vec<Resource> {
    items.into_iter().map(Resource::wrap).collect()
}

#[pymethods]
impl StateManager {
    /// `store`: an embedded database (resources live in it); without one, in memory.
    /// `cache`: put a read-through cache in front of the store. `bus`: where state events go.
    #[new]
    #[pyo3(signature = (store = None, clock = None, snapshot_dir = None, bus = None, cache = false))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
        snapshot_dir: Option<PathBuf>,
        bus: Option<&Bound<'_, EventBus>>,
        cache: bool,
    ) -> PyResult<Self> {
        let clock = clock_arg(clock)?;
        let bus = bus.map(|b| b.get().inner.clone()).unwrap_or_default();
        let store = store.map(|s| s.get().inner.clone());
        let db = store.clone();
        let inner = detached(
            py,
            move || -> Result<core::StateManager, omnicloud_core::Error> {
                let mut state: Arc<dyn core::StateStore> = match store {
                    Some(s) => Arc::new(core::SqliteStateStore::new(s)?),
                    None => Arc::new(core::InMemoryStateStore::new()),
                };
                if cache {
                    state = Arc::new(core::CachingStateStore::new(state));
                }
                let snapshots = snapshot_dir.map(core::SnapshotManager::open).transpose()?;
                core::StateManager::new(state, clock, bus, snapshots)
            },
        )?;
        Ok(Self {
            inner: Arc::new(inner),
            store: db,
        })
    }

    /// Registers a new resource; returns it as stored.
    fn register(&self, py: Python<'_>, resource: &Bound<'_, Resource>) -> PyResult<Resource> {
        let r = (*resource.get().inner).clone();
        Ok(Resource::wrap(detached(py, || self.inner.register(r))?))
    }

    /// The resource with this id.
    fn get(&self, py: Python<'_>, id: &str) -> PyResult<Resource> {
        Ok(Resource::wrap(detached(py, || self.inner.get(id))?))
    }

    /// Resources of a tenant and/or in a state, sorted by id.
    #[pyo3(signature = (tenant_id = None, state = None))]
    fn list(
        &self,
        py: Python<'_>,
        tenant_id: Option<&str>,
        state: Option<&str>,
    ) -> PyResult<Vec<Resource>> {
        let tenant = tenant_id.map(tenant_id_arg).transpose()?;
        let state = state.map(state_arg).transpose()?;
        Ok(resources_out(detached(py, || {
            self.inner.list(tenant.as_ref(), state)
        })?))
    }

    /// Moves a resource to `to`; raises InvalidTransitionError if the lifecycle forbids it.
    #[pyo3(signature = (id, to, reason = ""))]
    fn transition(&self, py: Python<'_>, id: &str, to: &str, reason: &str) -> PyResult<Transition> {
        let to = state_arg(to)?;
        let inner = detached(py, || self.inner.transition(id, to, reason))?;
        Ok(Transition { inner })
    }

    /// The resource's applied transitions, oldest first.
    fn history(&self, py: Python<'_>, id: &str) -> PyResult<Vec<Transition>> {
        let items = detached(py, || self.inner.history(id))?;
        Ok(items
            .into_iter()
            .map(|inner| Transition { inner })
            .collect())
    }

    /// Records the resource's actual configuration.
    fn report_actual(
        &self,
        py: Python<'_>,
        id: &str,
        actual: &Bound<'_, PyDict>,
    ) -> PyResult<Resource> {
        let actual = json_from_py(actual.as_any(), "actual")?;
        Ok(Resource::wrap(detached(py, || {
            self.inner.report_actual(id, &actual)
        })?))
    }

    /// Drift reports for resources whose reported actual configuration differs from their
    /// spec (semantic equality unless a strategy is given).
    #[pyo3(signature = (strategy = None))]
    fn detect_drift(
        &self,
        py: Python<'_>,
        strategy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<DriftReport>> {
        let strategy = strategy.map(strategy_arg).transpose()?;
        let reports = detached(py, || self.inner.detect_drift(strategy.as_deref()))?;
        Ok(reports.into_iter().map(DriftReport::wrap).collect())
    }

    /// Resource ids in dependency order, all or one tenant's.
    #[pyo3(signature = (tenant_id = None))]
    fn dependency_order(&self, py: Python<'_>, tenant_id: Option<&str>) -> PyResult<Vec<String>> {
        let tenant = tenant_id.map(tenant_id_arg).transpose()?;
        detached(py, || self.inner.dependency_order(tenant.as_ref()))
    }

    /// The waves that can be worked on in parallel, all or one tenant's.
    #[pyo3(signature = (tenant_id = None))]
    fn levels(&self, py: Python<'_>, tenant_id: Option<&str>) -> PyResult<Vec<Vec<String>>> {
        let tenant = tenant_id.map(tenant_id_arg).transpose()?;
        detached(py, || self.inner.levels(tenant.as_ref()))
    }

    /// Resource ids in teardown order, all or one tenant's.
    #[pyo3(signature = (tenant_id = None))]
    fn teardown_order(&self, py: Python<'_>, tenant_id: Option<&str>) -> PyResult<Vec<String>> {
        let tenant = tenant_id.map(tenant_id_arg).transpose()?;
        detached(py, || self.inner.teardown_order(tenant.as_ref()))
    }

    /// Everything that transitively depends on `id`.
    fn impact_of(&self, py: Python<'_>, id: &str) -> PyResult<HashSet<String>> {
        Ok(detached(py, || self.inner.impact_of(id))?
            .into_iter()
            .collect())
    }

    /// (direct dependencies, direct dependents) of `id`.
    fn dependencies(&self, py: Python<'_>, id: &str) -> PyResult<(Vec<String>, Vec<String>)> {
        detached(py, || self.inner.dependencies(id))
    }

    /// Removes a resource; refused while others depend on it.
    fn remove(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        detached(py, || self.inner.remove(id))
    }

    /// Writes a snapshot of the whole state as of one instant.
    fn snapshot(&self, py: Python<'_>) -> PyResult<SnapshotInfo> {
        Ok(SnapshotInfo::wrap(detached(py, || self.inner.snapshot())?))
    }

    /// Replaces the whole state with a snapshot's; another lineage needs `force=True`.
    #[pyo3(signature = (snapshot_id, force = false))]
    fn restore(&self, py: Python<'_>, snapshot_id: &str, force: bool) -> PyResult<Vec<Resource>> {
        Ok(resources_out(detached(py, || {
            self.inner.restore(snapshot_id, force)
        })?))
    }

    /// The state's lineage (fixed when the state was first created).
    #[getter]
    fn lineage(&self, py: Python<'_>) -> PyResult<String> {
        detached(py, || self.inner.store().lineage())
    }

    /// The state's serial (how many writes it has seen).
    #[getter]
    fn serial(&self, py: Python<'_>) -> PyResult<u64> {
        detached(py, || self.inner.store().serial())
    }

    fn __repr__(&self) -> String {
        "StateManager()".to_owned()
    }
}
