//! `StateManager`: the stable facade other services consume.
//!
//! It composes the four components (lifecycle rules, drift detection, the dependency graph and
//! snapshots) over an injected [`StateStore`], [`Clock`](crate::clock::Clock) and [`EventBus`],
//! and keeps the dependency graph in step with the store. It publishes `resource.registered`,
//! `resource.state_changed`, `resource.removed` and `state.restored` after each write commits.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde_json::Value;

use super::deps::DependencyResolver;
use super::drift::{DriftDetector, DriftReport, DriftStrategy};
use super::machine::{ResourceState, StateMachine, Transition};
use super::resource::Resource;
use super::snapshot::{SnapshotInfo, SnapshotManager};
use super::store::{ResourceFilter, StateStore};
use crate::clock::SharedClock;
use crate::error::{Result, SnapshotError, StateError};
use crate::events::{Event, EventBus};
use crate::ids::TenantId;

/// How many times a transition is retried when a concurrent writer moved the resource first.
const TRANSITION_RETRIES: usize = 8;

/// The state capability's facade.
#[derive(Debug)]
pub struct StateManager {
    store: Arc<dyn StateStore>,
    graph: RwLock<DependencyResolver>,
    drift: DriftDetector,
    snapshots: Option<SnapshotManager>,
    clock: SharedClock,
    bus: EventBus,
    /// Serialises registrations, removals and restores so the graph and the store agree.
    structure: Mutex<()>,
}

impl StateManager {
    /// A manager over `store`, loading the dependency graph from the resources already stored.
    pub fn new(
        store: Arc<dyn StateStore>,
        clock: SharedClock,
        bus: EventBus,
        snapshots: Option<SnapshotManager>,
    ) -> Result<Self> {
        let graph = Self::graph_of(&store.list(&ResourceFilter::default())?)?;
        Ok(Self {
            store,
            graph: RwLock::new(graph),
            drift: DriftDetector::default(),
            snapshots,
            clock,
            bus,
            structure: Mutex::new(()),
        })
    }

    /// Uses `strategy` when `detect_drift` is called without one.
    pub fn with_drift_strategy(mut self, strategy: Arc<dyn DriftStrategy>) -> Self {
        self.drift = DriftDetector::new(strategy);
        self
    }

    fn graph_of(resources: &[Arc<Resource>]) -> Result<DependencyResolver> {
        let mut graph = DependencyResolver::new();
        for r in resources {
            graph.add(&r.id, &r.depends_on)?;
        }
        if let Some(cycle) = graph.find_cycles().into_iter().next() {
            return Err(StateError::DependencyCycle { cycle }.into());
        }
        Ok(graph)
    }

    /// The store in use.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Registers a new resource in its current state (normally `pending`). Refused if the id is
    /// taken or its dependencies would close a cycle; dependencies may be registered later.
    pub fn register(&self, resource: Resource) -> Result<Arc<Resource>> {
        resource.validate()?;
        let _guard = self
            .structure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cycle) = self
            .read_graph()
            .would_cycle(&resource.id, &resource.depends_on)
        {
            return Err(StateError::DependencyCycle { cycle }.into());
        }
        let mut resource = resource;
        resource.updated_at = Some(self.clock.now());
        let stored = self.store.put(&resource, None, None).map_err(|e| match e {
            crate::Error::State(StateError::Conflict { resource_id, .. }) => {
                StateError::DuplicateResource { resource_id }.into()
            }
            other => other,
        })?;
        self.write_graph().add(&stored.id, &stored.depends_on)?;
        self.publish(Event::ResourceRegistered {
            resource: Arc::clone(&stored),
        });
        Ok(stored)
    }

    /// The resource with this id.
    pub fn get(&self, id: &str) -> Result<Arc<Resource>> {
        self.store.get(id)?.ok_or_else(|| unknown(id))
    }

    /// Resources of a tenant and/or in a state, sorted by id.
    pub fn list(
        &self,
        tenant_id: Option<&TenantId>,
        state: Option<ResourceState>,
    ) -> Result<Vec<Arc<Resource>>> {
        self.store.list(&ResourceFilter {
            tenant_id: tenant_id.cloned(),
            state,
        })
    }

    /// Moves a resource to `to`, recording the transition in its history; refused with
    /// [`StateError::InvalidTransition`] if the lifecycle does not allow it from the current
    /// state. A concurrent writer that moved the resource first is detected by its serial and
    /// the rule is checked again against the new state.
    pub fn transition(&self, id: &str, to: ResourceState, reason: &str) -> Result<Transition> {
        for _ in 0..TRANSITION_RETRIES {
            let current = self.get(id)?;
            let transition =
                StateMachine::transition(id, current.state, to, self.clock.now(), reason)?;
            let mut next = (*current).clone();
            next.state = to;
            next.updated_at = Some(transition.at);
            match self
                .store
                .put(&next, Some(current.serial), Some(&transition))
            {
                Ok(stored) => {
                    self.publish(Event::ResourceStateChanged {
                        resource: stored,
                        transition: transition.clone(),
                    });
                    return Ok(transition);
                }
                Err(crate::Error::State(StateError::Conflict { .. })) => continue,
                Err(other) => return Err(other),
            }
        }
        let found = self.get(id)?.serial;
        Err(StateError::Conflict {
            resource_id: id.to_owned(),
            expected: None,
            found: Some(found),
        }
        .into())
    }

    /// Records that `resources` now run in `region` (a failover moved them), in one write;
    /// those already there are left alone. The versions given are written over if still
    /// current; a concurrent writer is detected by serial and the move is retried on fresh
    /// reads. Returns the resources moved.
    pub fn relocate(
        &self,
        resources: &[Arc<Resource>],
        region: &str,
    ) -> Result<Vec<Arc<Resource>>> {
        crate::ids::validate_id(crate::ids::IdKind::Region, region)?;
        let mut current: Vec<Arc<Resource>> = resources.to_vec();
        for _ in 0..TRANSITION_RETRIES {
            let now = self.clock.now();
            let writes: Vec<(Resource, u64)> = current
                .iter()
                .filter(|r| r.region != region)
                .map(|r| {
                    let mut next = (**r).clone();
                    next.region = region.to_owned();
                    next.updated_at = Some(now);
                    (next, r.serial)
                })
                .collect();
            if writes.is_empty() {
                return Ok(Vec::new());
            }
            match self.store.put_many(&writes) {
                Err(crate::Error::State(StateError::Conflict { .. })) => {
                    current = resources
                        .iter()
                        .map(|r| self.get(&r.id))
                        .collect::<Result<_>>()?;
                }
                other => return other,
            }
        }
        Err(StateError::Conflict {
            resource_id: resources.first().map(|r| r.id.clone()).unwrap_or_default(),
            expected: None,
            found: None,
        }
        .into())
    }

    /// The resource's applied transitions, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<Transition>> {
        self.get(id)?;
        self.store.history(id)
    }

    /// Records the resource's actual configuration (as observed by a provider), for drift
    /// detection. It must be a JSON object.
    pub fn report_actual(&self, id: &str, actual: &Value) -> Result<Arc<Resource>> {
        if !actual.is_object() {
            return Err(StateError::InvalidResource {
                resource_id: id.to_owned(),
                reason: "actual configuration must be a JSON object".into(),
            }
            .into());
        }
        loop {
            let current = self.get(id)?;
            let mut next = (*current).clone();
            next.actual = Some(actual.clone());
            next.updated_at = Some(self.clock.now());
            match self.store.put(&next, Some(current.serial), None) {
                Err(crate::Error::State(StateError::Conflict { .. })) => continue,
                other => return other,
            }
        }
    }

    /// Drift reports for every resource with a reported actual configuration that differs from
    /// its spec, sorted by resource id, using `strategy` or the manager's default (semantic
    /// equality).
    pub fn detect_drift(&self, strategy: Option<&dyn DriftStrategy>) -> Result<Vec<DriftReport>> {
        let default = self.drift.strategy();
        let strategy: &dyn DriftStrategy = strategy.unwrap_or(default.as_ref());
        let mut reports = Vec::new();
        for r in self.store.list(&ResourceFilter::default())? {
            let Some(actual) = &r.actual else { continue };
            let changes = strategy.compare(&r.spec, actual)?;
            if !changes.is_empty() {
                reports.push(DriftReport {
                    resource_id: Some(r.id.clone()),
                    changes,
                });
            }
        }
        Ok(reports)
    }

    /// Resource ids in dependency order (dependencies first, ties by id), all or one tenant's.
    pub fn dependency_order(&self, tenant_id: Option<&TenantId>) -> Result<Vec<String>> {
        let order = self.read_graph().topological_order()?;
        self.only_tenant(order, tenant_id)
    }

    /// The waves of resources that can be worked on in parallel, all or one tenant's.
    pub fn levels(&self, tenant_id: Option<&TenantId>) -> Result<Vec<Vec<String>>> {
        let levels = self.read_graph().levels()?;
        let mut out = Vec::with_capacity(levels.len());
        for level in levels {
            let kept = self.only_tenant(level, tenant_id)?;
            if !kept.is_empty() {
                out.push(kept);
            }
        }
        Ok(out)
    }

    /// Resource ids in teardown order (dependents first), all or one tenant's.
    pub fn teardown_order(&self, tenant_id: Option<&TenantId>) -> Result<Vec<String>> {
        let mut order = self.dependency_order(tenant_id)?;
        order.reverse();
        Ok(order)
    }

    fn only_tenant(&self, ids: Vec<String>, tenant_id: Option<&TenantId>) -> Result<Vec<String>> {
        let Some(tenant) = tenant_id else {
            return Ok(ids);
        };
        let mine: std::collections::HashSet<String> = self
            .list(Some(tenant), None)?
            .into_iter()
            .map(|r| r.id.clone())
            .collect();
        Ok(ids.into_iter().filter(|id| mine.contains(id)).collect())
    }

    /// Everything that transitively depends on `id`, sorted.
    pub fn impact_of(&self, id: &str) -> Result<Vec<String>> {
        Ok(self.read_graph().impact(id)?)
    }

    /// The direct dependencies and dependents of `id`.
    pub fn dependencies(&self, id: &str) -> Result<(Vec<String>, Vec<String>)> {
        let graph = self.read_graph();
        Ok((graph.dependencies(id)?, graph.dependents(id)?))
    }

    /// Removes a resource; refused while others depend on it. Its history is kept.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _guard = self
            .structure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.get(id)?;
        {
            let graph = self.read_graph();
            let dependents = graph.dependents(id)?;
            if !dependents.is_empty() {
                return Err(StateError::HasDependents {
                    resource_id: id.to_owned(),
                    dependents,
                }
                .into());
            }
        }
        self.store.delete(id, current.serial)?;
        self.write_graph().remove(id)?;
        self.publish(Event::ResourceRemoved { resource: current });
        Ok(())
    }

    fn snapshots(&self) -> Result<&SnapshotManager> {
        self.snapshots.as_ref().ok_or_else(|| {
            SnapshotError::Directory {
                path: std::path::PathBuf::new(),
                reason: "this StateManager has no snapshot directory".into(),
            }
            .into()
        })
    }

    /// Writes a snapshot of the whole state as of one instant; writers are not held up while
    /// it is compressed and written.
    pub fn snapshot(&self) -> Result<SnapshotInfo> {
        let snapshots = self.snapshots()?;
        let export = self.store.export()?;
        Ok(snapshots.create(&export, self.clock.now())?)
    }

    /// The snapshot manager, if a directory was configured.
    pub fn snapshot_manager(&self) -> Option<&SnapshotManager> {
        self.snapshots.as_ref()
    }

    /// Replaces the whole state with a snapshot's (verified first). A snapshot from another
    /// lineage is refused unless `force`.
    pub fn restore(&self, snapshot_id: &str, force: bool) -> Result<Vec<Arc<Resource>>> {
        let snapshots = self.snapshots()?;
        let (info, export) = snapshots.restore(snapshot_id)?;
        let graph = Self::graph_of(&export.resources)?;
        let _guard = self
            .structure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.store.import(&export, force)?;
        *self.write_graph() = graph;
        self.publish(Event::StateRestored {
            snapshot_id: info.id,
            resource_count: info.resource_count,
        });
        Ok(export.resources)
    }

    fn publish(&self, event: Event) {
        self.bus.publish(self.clock.now(), event);
    }

    fn read_graph(&self) -> std::sync::RwLockReadGuard<'_, DependencyResolver> {
        self.graph.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_graph(&self) -> std::sync::RwLockWriteGuard<'_, DependencyResolver> {
        self.graph.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unknown(id: &str) -> crate::Error {
    StateError::UnknownResource {
        resource_id: id.to_owned(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::events::EventKind;
    use crate::state::drift::ExactMatch;
    use crate::state::store::{CachingStateStore, InMemoryStateStore, SqliteStateStore};
    use crate::store::Store;
    use serde_json::json;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(1_770_000_000, 0).expect("t"),
        ))
    }

    fn res(id: &str, tenant: &str, deps: &[&str]) -> Resource {
        Resource::new(
            id,
            TenantId::new(tenant).expect("t"),
            "database",
            "eu-west-1",
            json!({"size": 1}),
        )
        .and_then(|r| r.with_dependencies(deps.iter().copied()))
        .expect("resource")
    }

    fn manager(
        store: Arc<dyn StateStore>,
        dir: Option<&std::path::Path>,
    ) -> (StateManager, EventBus) {
        let bus = EventBus::new();
        let snaps = dir.map(|d| SnapshotManager::open(d).expect("snapshots"));
        (
            StateManager::new(store, clock(), bus.clone(), snaps).expect("manager"),
            bus,
        )
    }

    #[test]
    fn lifecycle_history_and_events() {
        let (m, bus) = manager(Arc::new(InMemoryStateStore::new()), None);
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        bus.subscribe(None, move |e| {
            s.lock().expect("lock").push(e.event.name().to_owned());
            Ok(())
        });
        m.register(res("db", "acme", &[])).expect("register");
        assert!(matches!(
            m.register(res("db", "acme", &[])),
            Err(crate::Error::State(StateError::DuplicateResource { .. }))
        ));
        m.transition("db", ResourceState::Provisioning, "create")
            .expect("t1");
        m.transition("db", ResourceState::Active, "healthy")
            .expect("t2");
        let err = m
            .transition("db", ResourceState::Pending, "back")
            .expect_err("invalid");
        assert!(matches!(
            err,
            crate::Error::State(StateError::InvalidTransition {
                from: ResourceState::Active,
                to: ResourceState::Pending,
                ..
            })
        ));
        let history = m.history("db").expect("history");
        assert_eq!(
            history.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
            vec![
                (ResourceState::Pending, ResourceState::Provisioning),
                (ResourceState::Provisioning, ResourceState::Active)
            ]
        );
        assert_eq!(m.get("db").expect("get").state, ResourceState::Active);
        assert_eq!(
            *seen.lock().expect("lock"),
            [
                "resource.registered",
                "resource.state_changed",
                "resource.state_changed"
            ]
        );
        assert!(matches!(
            m.get("nope"),
            Err(crate::Error::State(StateError::UnknownResource { .. }))
        ));
        assert!(m.history("nope").is_err());
    }

    #[test]
    fn dependency_queries_per_tenant_and_cycle_refusal() {
        let (m, _) = manager(Arc::new(InMemoryStateStore::new()), None);
        m.register(res("lb", "acme", &["app"]))
            .expect("lb first: dependencies may come later");
        assert!(matches!(
            m.dependency_order(None),
            Err(crate::Error::State(StateError::UnknownDependency { .. }))
        ));
        m.register(res("app", "acme", &["db"])).expect("app");
        m.register(res("db", "acme", &[])).expect("db");
        m.register(res("other", "globex", &[])).expect("other");
        // Among ready resources the smallest id goes first: app becomes ready before "other".
        assert_eq!(
            m.dependency_order(None).expect("order"),
            ["db", "app", "lb", "other"]
        );
        let acme = TenantId::new("acme").expect("t");
        assert_eq!(
            m.dependency_order(Some(&acme)).expect("order"),
            ["db", "app", "lb"]
        );
        assert_eq!(
            m.teardown_order(Some(&acme)).expect("order"),
            ["lb", "app", "db"]
        );
        assert_eq!(
            m.levels(Some(&acme)).expect("levels"),
            vec![vec!["db"], vec!["app"], vec!["lb"]]
        );
        assert_eq!(m.impact_of("db").expect("impact"), ["app", "lb"]);
        assert_eq!(
            m.dependencies("app").expect("deps"),
            (vec!["db".to_string()], vec!["lb".to_string()])
        );
        m.register(res("cache", "acme", &["lb"])).expect("a leaf");
        m.remove("cache").expect("remove cache");
        assert!(m.get("cache").is_err());
        assert!(matches!(
            m.remove("db"),
            Err(crate::Error::State(StateError::HasDependents { .. }))
        ));
        assert!(matches!(
            m.remove("ghost"),
            Err(crate::Error::State(StateError::UnknownResource { .. }))
        ));
    }

    #[test]
    fn registering_into_a_cycle_is_refused_and_nothing_is_stored() {
        let (m, _) = manager(Arc::new(InMemoryStateStore::new()), None);
        m.register(res("b", "acme", &["a"])).expect("b");
        m.register(res("c", "acme", &["b"])).expect("c");
        let err = m.register(res("a", "acme", &["c"])).expect_err("cycle");
        assert!(
            matches!(err, crate::Error::State(StateError::DependencyCycle { ref cycle }) if cycle == &["a", "c", "b"])
        );
        assert!(m.get("a").is_err());
    }

    #[test]
    fn drift_uses_the_default_or_given_strategy() {
        let (m, _) = manager(Arc::new(InMemoryStateStore::new()), None);
        m.register(res("db", "acme", &[])).expect("register");
        m.register(res("quiet", "acme", &[])).expect("register");
        assert!(
            m.detect_drift(None).expect("drift").is_empty(),
            "nothing reported yet"
        );
        m.report_actual("db", &json!({"size": 1.0}))
            .expect("report");
        assert!(
            m.detect_drift(None).expect("drift").is_empty(),
            "semantic by default"
        );
        let exact = m.detect_drift(Some(&ExactMatch)).expect("drift");
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0].resource_id.as_deref(), Some("db"));
        assert_eq!(exact[0].changes[0].path, "/size");
        assert!(m.report_actual("db", &json!([1])).is_err());
        assert!(m.report_actual("ghost", &json!({})).is_err());
    }

    #[test]
    fn snapshot_and_restore_through_sqlite_and_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite: Arc<dyn StateStore> = Arc::new(CachingStateStore::new(Arc::new(
            SqliteStateStore::new(Store::memory().expect("s")).expect("state"),
        )));
        let (m, bus) = manager(sqlite, Some(dir.path()));
        let restored = Arc::new(StdMutex::new(0u64));
        let r = Arc::clone(&restored);
        bus.subscribe(Some(&[EventKind::StateRestored]), move |e| {
            *r.lock().expect("lock") += e.event.data()["resource_count"].as_u64().unwrap_or(0);
            Ok(())
        });
        m.register(res("db", "acme", &[])).expect("db");
        m.register(res("app", "acme", &["db"])).expect("app");
        let info = m.snapshot().expect("snapshot");
        assert_eq!(info.resource_count, 2);
        m.transition("db", ResourceState::Provisioning, "go")
            .expect("t");
        m.register(res("extra", "acme", &[])).expect("extra");
        let back = m.restore(&info.id, false).expect("restore");
        assert_eq!(back.len(), 2);
        assert_eq!(m.get("db").expect("db").state, ResourceState::Pending);
        assert!(m.get("extra").is_err());
        assert_eq!(m.dependency_order(None).expect("order"), ["db", "app"]);
        assert_eq!(*restored.lock().expect("lock"), 2);
        let (plain, _) = manager(Arc::new(InMemoryStateStore::new()), None);
        assert!(matches!(
            plain.snapshot(),
            Err(crate::Error::Snapshot(SnapshotError::Directory { .. }))
        ));
        // Another manager's snapshot has another lineage.
        let (other, _) = manager(Arc::new(InMemoryStateStore::new()), Some(dir.path()));
        assert!(matches!(
            other.restore(&info.id, false),
            Err(crate::Error::State(StateError::LineageMismatch { .. }))
        ));
        assert_eq!(other.restore(&info.id, true).expect("forced").len(), 2);
    }

    #[test]
    fn snapshots_are_point_in_time_under_concurrent_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (m, _) = manager(Arc::new(InMemoryStateStore::new()), Some(dir.path()));
        let m = Arc::new(m);
        for i in 0..20 {
            m.register(res(&format!("r{i:02}"), "acme", &[]))
                .expect("register");
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let m = Arc::clone(&m);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let id = format!("r{:02}", (n * 2 + w) % 20);
                        m.report_actual(&id, &json!({"n": n})).expect("write");
                        n += 1;
                    }
                })
            })
            .collect();
        let mut infos = Vec::new();
        for _ in 0..20 {
            infos.push(m.snapshot().expect("snapshot"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer");
        }
        let snaps = m.snapshot_manager().expect("snapshots");
        for info in infos {
            let (_, export) = snaps.restore(&info.id).expect("restore");
            // Every write bumps exactly one resource serial and the state serial, so a snapshot
            // of one instant has the resource serials summing to the state serial.
            let sum: u64 = export.resources.iter().map(|r| r.serial).sum();
            assert_eq!(sum, export.serial, "torn snapshot {}", info.id);
        }
    }
}
