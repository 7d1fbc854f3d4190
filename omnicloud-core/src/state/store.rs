//! State stores: where resources and their transition history live.
//!
//! [`StateStore`] is the one trait; [`InMemoryStateStore`], [`SqliteStateStore`] (in the
//! project's embedded database) and the read-through [`CachingStateStore`] decorator implement
//! it. As in Terraform state, a store has a lineage (a random id fixed when the state is first
//! created) and a serial that grows with every write; each resource also carries its own serial.
//! A writer states the serial it based its change on, so a stale writer gets
//! [`StateError::Conflict`] instead of silently overwriting, and restoring a snapshot of another
//! lineage is refused unless forced. Stores keep data; they never validate lifecycle rules.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::OptionalExtension;

use super::machine::{ResourceState, Transition};
use super::resource::Resource;
use crate::error::{Result, StateError, StoreError};
use crate::ids::{TenantId, generate_id};
use crate::store::{Store, format_timestamp};

/// The state tables (migration 3).
pub(crate) const SCHEMA: &str = "
CREATE TABLE state_meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    lineage   TEXT    NOT NULL,
    serial    INTEGER NOT NULL
);
CREATE TABLE state_resources (
    id        TEXT    PRIMARY KEY,
    tenant_id TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    serial    INTEGER NOT NULL,
    body      TEXT    NOT NULL
);
CREATE INDEX state_resources_tenant ON state_resources (tenant_id, id);
CREATE INDEX state_resources_state ON state_resources (state, id);
CREATE TABLE state_transitions (
    seq         INTEGER PRIMARY KEY,
    resource_id TEXT    NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    reason      TEXT    NOT NULL
);
CREATE INDEX state_transitions_resource ON state_transitions (resource_id, seq);
";

/// Which resources to list; all filters optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Only this tenant's resources.
    pub tenant_id: Option<TenantId>,
    /// Only resources in this state.
    pub state: Option<ResourceState>,
}

impl ResourceFilter {
    fn matches(&self, r: &Resource) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| *t == r.tenant_id)
            && self.state.is_none_or(|s| s == r.state)
    }
}

/// The whole state at one instant: what snapshots hold.
#[derive(Debug, Clone, PartialEq)]
pub struct StateExport {
    /// The state's lineage.
    pub lineage: String,
    /// The state's serial at that instant.
    pub serial: u64,
    /// Every resource, sorted by id.
    pub resources: Vec<Arc<Resource>>,
}

/// Where resources live.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The lineage of this state.
    fn lineage(&self) -> Result<String>;

    /// The state's serial: how many writes it has seen.
    fn serial(&self) -> Result<u64>;

    /// The resource with this id, if any.
    fn get(&self, id: &str) -> Result<Option<Arc<Resource>>>;

    /// Matching resources, sorted by id.
    fn list(&self, filter: &ResourceFilter) -> Result<Vec<Arc<Resource>>>;

    /// Writes `resource` if the stored serial is `expected` (`None`: it must not exist yet),
    /// recording `transition` in its history in the same write. Returns the stored resource
    /// with its new serial.
    fn put(
        &self,
        resource: &Resource,
        expected: Option<u64>,
        transition: Option<&Transition>,
    ) -> Result<Arc<Resource>>;

    /// Writes several existing resources at once, each only if its stored serial is the one
    /// given with it; all or nothing where the store can (the SQLite and in-memory stores do).
    /// Returns the stored resources with their new serials, in order.
    fn put_many(&self, writes: &[(Resource, u64)]) -> Result<Vec<Arc<Resource>>> {
        writes
            .iter()
            .map(|(r, expected)| self.put(r, Some(*expected), None))
            .collect()
    }

    /// Deletes the resource if its stored serial is `expected`; its history is kept.
    fn delete(&self, id: &str, expected: u64) -> Result<()>;

    /// The resource's applied transitions, oldest first.
    fn history(&self, id: &str) -> Result<Vec<Transition>>;

    /// Every resource at one instant (concurrent writers are neither blocked for long nor
    /// half-visible).
    fn export(&self) -> Result<StateExport>;

    /// Replaces every resource with `export`'s (a restore). Refused if the lineage differs,
    /// unless `force`. The state's serial moves past both its own and the export's.
    fn import(&self, export: &StateExport, force: bool) -> Result<()>;
}

fn conflict(id: &str, expected: Option<u64>, found: Option<u64>) -> crate::Error {
    StateError::Conflict {
        resource_id: id.to_owned(),
        expected,
        found,
    }
    .into()
}

fn check_lineage(store: &str, export: &StateExport, force: bool) -> Result<()> {
    if !force && store != export.lineage {
        return Err(StateError::LineageMismatch {
            store: store.to_owned(),
            writer: export.lineage.clone(),
        }
        .into());
    }
    Ok(())
}

// --- in memory -------------------------------------------------------------------------------

#[derive(Debug)]
struct Memory {
    lineage: String,
    serial: u64,
    resources: BTreeMap<String, Arc<Resource>>,
    history: HashMap<String, Vec<Transition>>,
}

/// A state store in process memory.
#[derive(Debug)]
pub struct InMemoryStateStore {
    inner: RwLock<Memory>,
}

impl Default for InMemoryStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStateStore {
    /// An empty store with a new lineage.
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Memory {
                lineage: generate_id(),
                serial: 0,
                resources: BTreeMap::new(),
                history: HashMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Memory> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Memory> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for InMemoryStateStore {
    fn lineage(&self) -> Result<String> {
        Ok(self.read().lineage.clone())
    }

    fn serial(&self) -> Result<u64> {
        Ok(self.read().serial)
    }

    fn get(&self, id: &str) -> Result<Option<Arc<Resource>>> {
        Ok(self.read().resources.get(id).cloned())
    }

    fn list(&self, filter: &ResourceFilter) -> Result<Vec<Arc<Resource>>> {
        Ok(self
            .read()
            .resources
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect())
    }

    fn put(
        &self,
        resource: &Resource,
        expected: Option<u64>,
        transition: Option<&Transition>,
    ) -> Result<Arc<Resource>> {
        let mut m = self.write();
        let found = m.resources.get(&resource.id).map(|r| r.serial);
        if found != expected {
            return Err(conflict(&resource.id, expected, found));
        }
        let mut stored = resource.clone();
        stored.serial = found.unwrap_or(0) + 1;
        let stored = Arc::new(stored);
        m.serial += 1;
        m.resources.insert(resource.id.clone(), Arc::clone(&stored));
        if let Some(t) = transition {
            m.history
                .entry(resource.id.clone())
                .or_default()
                .push(t.clone());
        }
        Ok(stored)
    }

    fn put_many(&self, writes: &[(Resource, u64)]) -> Result<Vec<Arc<Resource>>> {
        let mut m = self.write();
        for (r, expected) in writes {
            let found = m.resources.get(&r.id).map(|r| r.serial);
            if found != Some(*expected) {
                return Err(conflict(&r.id, Some(*expected), found));
            }
        }
        let mut stored_all = Vec::with_capacity(writes.len());
        for (r, expected) in writes {
            let mut stored = r.clone();
            stored.serial = expected + 1;
            let stored = Arc::new(stored);
            m.resources.insert(r.id.clone(), Arc::clone(&stored));
            stored_all.push(stored);
        }
        m.serial += 1;
        Ok(stored_all)
    }

    fn delete(&self, id: &str, expected: u64) -> Result<()> {
        let mut m = self.write();
        let found = m.resources.get(id).map(|r| r.serial);
        if found != Some(expected) {
            return Err(conflict(id, Some(expected), found));
        }
        m.resources.remove(id);
        m.serial += 1;
        Ok(())
    }

    fn history(&self, id: &str) -> Result<Vec<Transition>> {
        Ok(self.read().history.get(id).cloned().unwrap_or_default())
    }

    fn export(&self) -> Result<StateExport> {
        let m = self.read();
        Ok(StateExport {
            lineage: m.lineage.clone(),
            serial: m.serial,
            resources: m.resources.values().cloned().collect(),
        })
    }

    fn import(&self, export: &StateExport, force: bool) -> Result<()> {
        let mut m = self.write();
        check_lineage(&m.lineage, export, force)?;
        m.resources = export
            .resources
            .iter()
            .map(|r| (r.id.clone(), Arc::clone(r)))
            .collect();
        m.serial = m.serial.max(export.serial) + 1;
        Ok(())
    }
}

// --- SQLite ----------------------------------------------------------------------------------

/// A state store in the project's embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    store: Store,
}

impl SqliteStateStore {
    /// The state kept in `store`; the lineage is created on first use.
    pub fn new(store: Store) -> Result<Self> {
        let lineage = generate_id();
        store.write(|tx| -> Result<()> {
            tx.execute(
                "INSERT INTO state_meta (singleton, lineage, serial) VALUES (1, ?1, 0)
                 ON CONFLICT (singleton) DO NOTHING",
                [&lineage],
            )
            .map_err(|e| store.sqlite_error(e))?;
            Ok(())
        })?;
        Ok(Self { store })
    }

    /// The stored serial of a resource inside a write, or `None` if absent.
    fn stored_serial(&self, tx: &rusqlite::Transaction<'_>, id: &str) -> Result<Option<u64>> {
        Ok(tx
            .prepare_cached("SELECT serial FROM state_resources WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
            .map_err(|e| self.store.sqlite_error(e))?)
    }

    /// Writes (inserts or replaces) one resource row.
    fn write_row(&self, tx: &rusqlite::Transaction<'_>, r: &Resource) -> Result<()> {
        let body = serde_json::to_string(r).map_err(|e| StateError::InvalidResource {
            resource_id: r.id.clone(),
            reason: e.to_string(),
        })?;
        tx.prepare_cached(
            "INSERT INTO state_resources (id, tenant_id, state, serial, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id,
                 state = excluded.state, serial = excluded.serial, body = excluded.body",
        )
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                r.id,
                r.tenant_id.as_str(),
                r.state.as_str(),
                r.serial,
                body
            ])
        })
        .map_err(|e| self.store.sqlite_error(e))?;
        Ok(())
    }

    /// The state's (lineage, serial).
    fn meta(&self) -> Result<(String, u64)> {
        Ok(self.store.read(|c| {
            c.query_row(
                "SELECT lineage, serial FROM state_meta WHERE singleton = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?)
    }

    fn decode(&self, body: &str) -> Result<Arc<Resource>> {
        serde_json::from_str::<Resource>(body)
            .map(Arc::new)
            .map_err(|e| {
                StoreError::Decode {
                    path: self.store.label().to_path_buf(),
                    table: "state_resources",
                    column: "body",
                    reason: e.to_string(),
                }
                .into()
            })
    }

    fn decode_rows(&self, rows: &[String]) -> Result<Vec<Arc<Resource>>> {
        rows.iter().map(|body| self.decode(body)).collect()
    }

    fn bump_serial(&self, tx: &rusqlite::Transaction<'_>, to_at_least: u64) -> Result<()> {
        tx.execute(
            "UPDATE state_meta SET serial = max(serial, ?1) + 1 WHERE singleton = 1",
            [to_at_least],
        )
        .map_err(|e| self.store.sqlite_error(e))?;
        Ok(())
    }
}

impl StateStore for SqliteStateStore {
    fn lineage(&self) -> Result<String> {
        Ok(self.meta()?.0)
    }

    fn serial(&self) -> Result<u64> {
        Ok(self.meta()?.1)
    }

    fn get(&self, id: &str) -> Result<Option<Arc<Resource>>> {
        let body: Option<String> = self.store.read(|c| {
            c.query_row(
                "SELECT body FROM state_resources WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
        })?;
        body.map(|b| self.decode(&b)).transpose()
    }

    fn list(&self, filter: &ResourceFilter) -> Result<Vec<Arc<Resource>>> {
        let tenant = filter.tenant_id.as_ref().map(TenantId::as_str);
        let state = filter.state.map(ResourceState::as_str);
        let rows = self.store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM state_resources
                 WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY id",
            )?;
            let rows = stmt
                .query_map(rusqlite::params![tenant, state], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        self.decode_rows(&rows)
    }

    fn put(
        &self,
        resource: &Resource,
        expected: Option<u64>,
        transition: Option<&Transition>,
    ) -> Result<Arc<Resource>> {
        let sqlite = |e| self.store.sqlite_error(e);
        self.store.write(|tx| -> Result<Arc<Resource>> {
            let found = self.stored_serial(tx, &resource.id)?;
            if found != expected {
                return Err(conflict(&resource.id, expected, found));
            }
            let mut stored = resource.clone();
            stored.serial = found.unwrap_or(0) + 1;
            self.write_row(tx, &stored)?;
            if let Some(t) = transition {
                tx.execute(
                    "INSERT INTO state_transitions (resource_id, from_state, to_state, at, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        t.resource_id,
                        t.from.as_str(),
                        t.to.as_str(),
                        format_timestamp(t.at),
                        t.reason
                    ],
                )
                .map_err(sqlite)?;
            }
            self.bump_serial(tx, 0)?;
            Ok(Arc::new(stored))
        })
    }

    fn put_many(&self, writes: &[(Resource, u64)]) -> Result<Vec<Arc<Resource>>> {
        self.store.write(|tx| -> Result<Vec<Arc<Resource>>> {
            let mut stored_all = Vec::with_capacity(writes.len());
            for (r, expected) in writes {
                let found = self.stored_serial(tx, &r.id)?;
                if found != Some(*expected) {
                    return Err(conflict(&r.id, Some(*expected), found));
                }
                let mut stored = r.clone();
                stored.serial = expected + 1;
                self.write_row(tx, &stored)?;
                stored_all.push(Arc::new(stored));
            }
            self.bump_serial(tx, 0)?;
            Ok(stored_all)
        })
    }

    fn delete(&self, id: &str, expected: u64) -> Result<()> {
        let sqlite = |e| self.store.sqlite_error(e);
        self.store.write(|tx| -> Result<()> {
            let found = self.stored_serial(tx, id)?;
            if found != Some(expected) {
                return Err(conflict(id, Some(expected), found));
            }
            tx.execute("DELETE FROM state_resources WHERE id = ?1", [id])
                .map_err(sqlite)?;
            self.bump_serial(tx, 0)
        })
    }

    fn history(&self, id: &str) -> Result<Vec<Transition>> {
        let rows: Vec<(String, String, String, String)> = self.store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT from_state, to_state, at, reason FROM state_transitions
                 WHERE resource_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(from, to, at, reason)| {
                Ok(Transition {
                    resource_id: id.to_owned(),
                    from: from.parse()?,
                    to: to.parse()?,
                    at: self.store.decode_time("state_transitions", "at", &at)?,
                    reason,
                })
            })
            .collect()
    }

    fn export(&self) -> Result<StateExport> {
        // One read transaction: the rows and the serial belong to the same instant.
        let (lineage, serial, rows) = self.store.read(|c| {
            let tx = c.unchecked_transaction()?;
            let (lineage, serial): (String, u64) = tx.query_row(
                "SELECT lineage, serial FROM state_meta WHERE singleton = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let rows = {
                let mut stmt = tx.prepare("SELECT body FROM state_resources ORDER BY id")?;
                stmt.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.finish()?;
            Ok((lineage, serial, rows))
        })?;
        Ok(StateExport {
            lineage,
            serial,
            resources: self.decode_rows(&rows)?,
        })
    }

    fn import(&self, export: &StateExport, force: bool) -> Result<()> {
        let sqlite = |e| self.store.sqlite_error(e);
        self.store.write(|tx| -> Result<()> {
            let lineage: String = tx
                .query_row(
                    "SELECT lineage FROM state_meta WHERE singleton = 1",
                    [],
                    |r| r.get(0),
                )
                .map_err(sqlite)?;
            check_lineage(&lineage, export, force)?;
            tx.execute("DELETE FROM state_resources", [])
                .map_err(sqlite)?;
            for r in &export.resources {
                self.write_row(tx, r)?;
            }
            self.bump_serial(tx, export.serial)
        })
    }
}

// --- caching decorator -----------------------------------------------------------------------

/// A read-through cache in front of another store.
///
/// Reads of single resources are served from memory after the first; writes go to the inner
/// store first (which checks serials) and then update the cache. If another process writes the
/// same database, cached reads may be stale until the next local write or [`invalidate`];
/// a write based on a stale read still fails with [`StateError::Conflict`] in the inner store,
/// and the conflicting entry is evicted so the next read is fresh.
///
/// [`invalidate`]: CachingStateStore::invalidate
#[derive(Debug)]
pub struct CachingStateStore {
    inner: Arc<dyn StateStore>,
    cache: RwLock<HashMap<String, Arc<Resource>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CachingStateStore {
    /// A cache in front of `inner`.
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self {
            inner,
            cache: RwLock::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (hits, misses) of single-resource reads so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Forgets everything cached.
    pub fn invalidate(&self) {
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn cached(&self, id: &str) -> Option<Arc<Resource>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn remember(&self, resource: &Arc<Resource>) {
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resource.id.clone(), Arc::clone(resource));
    }

    fn forget(&self, id: &str) {
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn evict_on_conflict<T>(&self, id: &str, result: Result<T>) -> Result<T> {
        if matches!(
            result,
            Err(crate::Error::State(StateError::Conflict { .. }))
        ) {
            self.forget(id);
        }
        result
    }
}

impl StateStore for CachingStateStore {
    fn lineage(&self) -> Result<String> {
        self.inner.lineage()
    }

    fn serial(&self) -> Result<u64> {
        self.inner.serial()
    }

    fn get(&self, id: &str) -> Result<Option<Arc<Resource>>> {
        if let Some(hit) = self.cached(id) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let found = self.inner.get(id)?;
        if let Some(r) = &found {
            self.remember(r);
        }
        Ok(found)
    }

    fn list(&self, filter: &ResourceFilter) -> Result<Vec<Arc<Resource>>> {
        self.inner.list(filter)
    }

    fn put(
        &self,
        resource: &Resource,
        expected: Option<u64>,
        transition: Option<&Transition>,
    ) -> Result<Arc<Resource>> {
        let stored =
            self.evict_on_conflict(&resource.id, self.inner.put(resource, expected, transition))?;
        self.remember(&stored);
        Ok(stored)
    }

    fn put_many(&self, writes: &[(Resource, u64)]) -> Result<Vec<Arc<Resource>>> {
        match self.inner.put_many(writes) {
            Ok(stored) => {
                stored.iter().for_each(|r| self.remember(r));
                Ok(stored)
            }
            Err(e) => {
                // Which entry was stale is not known: forget them all.
                writes.iter().for_each(|(r, _)| self.forget(&r.id));
                Err(e)
            }
        }
    }

    fn delete(&self, id: &str, expected: u64) -> Result<()> {
        let result = self.evict_on_conflict(id, self.inner.delete(id, expected));
        self.forget(id);
        result
    }

    fn history(&self, id: &str) -> Result<Vec<Transition>> {
        self.inner.history(id)
    }

    fn export(&self) -> Result<StateExport> {
        self.inner.export()
    }

    fn import(&self, export: &StateExport, force: bool) -> Result<()> {
        let result = self.inner.import(export, force);
        self.invalidate();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn resource(id: &str, tenant: &str) -> Resource {
        Resource::new(
            id,
            TenantId::new(tenant).expect("tenant"),
            "database",
            "eu-west-1",
            json!({"size": 1}),
        )
        .expect("resource")
    }

    fn stores() -> Vec<(&'static str, Arc<dyn StateStore>)> {
        let sqlite: Arc<dyn StateStore> =
            Arc::new(SqliteStateStore::new(Store::memory().expect("store")).expect("sqlite"));
        vec![
            ("memory", Arc::new(InMemoryStateStore::new())),
            ("sqlite", sqlite),
            (
                "cached-memory",
                Arc::new(CachingStateStore::new(Arc::new(InMemoryStateStore::new()))),
            ),
            (
                "cached-sqlite",
                Arc::new(CachingStateStore::new(Arc::new(
                    SqliteStateStore::new(Store::memory().expect("store")).expect("sqlite"),
                ))),
            ),
        ]
    }

    #[test]
    fn put_many_writes_all_or_nothing_in_every_store() {
        for (name, store) in stores() {
            let a = store.put(&resource("a", "acme"), None, None).expect("a");
            let b = store.put(&resource("b", "acme"), None, None).expect("b");
            let moved = |r: &Resource| {
                let mut r = r.clone();
                r.region = "eu-central-1".into();
                r
            };
            // One stale serial: nothing is written, not even the first resource.
            let err = store
                .put_many(&[(moved(&a), 1), (moved(&b), 7)])
                .expect_err("b is stale");
            assert!(
                matches!(err, crate::Error::State(StateError::Conflict { .. })),
                "{name}"
            );
            assert_eq!(
                store.get("a").expect("get").expect("a").region,
                "eu-west-1",
                "{name}: all or nothing"
            );
            let stored = store
                .put_many(&[(moved(&a), 1), (moved(&b), 1)])
                .expect("both current");
            assert_eq!(
                stored.iter().map(|r| r.serial).collect::<Vec<_>>(),
                [2, 2],
                "{name}"
            );
            for id in ["a", "b"] {
                let r = store.get(id).expect("get").expect("some");
                assert_eq!((r.region.as_str(), r.serial), ("eu-central-1", 2), "{name}");
            }
        }
    }

    #[test]
    fn every_store_keeps_the_same_contract() {
        for (name, store) in stores() {
            let t0 = DateTime::<Utc>::UNIX_EPOCH;
            assert_eq!(store.serial().expect("serial"), 0, "{name}");
            let a = store
                .put(&resource("a", "acme"), None, None)
                .expect("put a");
            assert_eq!(a.serial, 1, "{name}");
            store
                .put(&resource("b", "globex"), None, None)
                .expect("put b");
            assert_eq!(store.serial().expect("serial"), 2, "{name}");

            // Stale writers conflict; the stored value is untouched.
            let err = store
                .put(&resource("a", "acme"), None, None)
                .expect_err("exists");
            assert!(
                matches!(
                    err,
                    crate::Error::State(StateError::Conflict {
                        expected: None,
                        found: Some(1),
                        ..
                    })
                ),
                "{name}"
            );
            let mut next = (*a).clone();
            next.state = ResourceState::Provisioning;
            let t = Transition {
                resource_id: "a".into(),
                from: ResourceState::Pending,
                to: ResourceState::Provisioning,
                at: t0,
                reason: "go".into(),
            };
            let a2 = store.put(&next, Some(1), Some(&t)).expect("put a2");
            assert_eq!(a2.serial, 2);
            assert!(
                store.put(&next, Some(1), None).is_err(),
                "{name}: stale serial"
            );
            assert_eq!(
                store.get("a").expect("get").expect("some").state,
                ResourceState::Provisioning,
                "{name}"
            );
            assert_eq!(store.history("a").expect("history"), vec![t], "{name}");

            let acme = ResourceFilter {
                tenant_id: Some(TenantId::new("acme").expect("t")),
                state: None,
            };
            assert_eq!(store.list(&acme).expect("list").len(), 1, "{name}");
            let pending = ResourceFilter {
                tenant_id: None,
                state: Some(ResourceState::Pending),
            };
            assert_eq!(store.list(&pending).expect("list")[0].id, "b", "{name}");

            // Export, change, import back.
            let export = store.export().expect("export");
            assert_eq!(
                export
                    .resources
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>(),
                ["a", "b"]
            );
            store.delete("b", 1).expect("delete");
            assert!(store.delete("b", 1).is_err(), "{name}: already gone");
            assert!(store.get("b").expect("get").is_none(), "{name}");
            store.import(&export, false).expect("import");
            assert!(store.get("b").expect("get").is_some(), "{name}");
            assert!(store.serial().expect("serial") > export.serial, "{name}");

            let foreign = StateExport {
                lineage: "other".into(),
                serial: 0,
                resources: vec![],
            };
            assert!(
                matches!(
                    store.import(&foreign, false),
                    Err(crate::Error::State(StateError::LineageMismatch { .. }))
                ),
                "{name}"
            );
            store.import(&foreign, true).expect("forced");
            assert!(
                store
                    .list(&ResourceFilter::default())
                    .expect("list")
                    .is_empty(),
                "{name}"
            );
            assert_eq!(
                store.lineage().expect("lineage"),
                store.lineage().expect("lineage")
            );
        }
    }

    #[test]
    fn sqlite_state_survives_reopen_and_keeps_its_lineage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let lineage = {
            let s = SqliteStateStore::new(Store::open(&path).expect("open")).expect("state");
            s.put(&resource("a", "acme"), None, None).expect("put");
            s.lineage().expect("lineage")
        };
        let s = SqliteStateStore::new(Store::open(&path).expect("open")).expect("state");
        assert_eq!(s.lineage().expect("lineage"), lineage);
        assert_eq!(s.get("a").expect("get").expect("some").serial, 1);
    }

    #[test]
    fn cache_serves_hits_and_evicts_on_conflict() {
        let inner: Arc<dyn StateStore> = Arc::new(InMemoryStateStore::new());
        let cache = CachingStateStore::new(Arc::clone(&inner));
        cache.put(&resource("a", "acme"), None, None).expect("put");
        cache.get("a").expect("get");
        cache.get("a").expect("get");
        assert_eq!(cache.stats(), (2, 0));
        // Another writer changes the inner store behind the cache.
        let mut other = resource("a", "acme");
        other.state = ResourceState::Provisioning;
        inner.put(&other, Some(1), None).expect("other writer");
        let stale = cache.get("a").expect("get").expect("some");
        assert_eq!(stale.serial, 1, "served from cache");
        assert!(
            cache.put(&stale, Some(stale.serial), None).is_err(),
            "stale write conflicts"
        );
        assert_eq!(
            cache.get("a").expect("get").expect("some").serial,
            2,
            "evicted, then fresh"
        );
        assert!(cache.get("missing").expect("get").is_none());
        cache.invalidate();
        assert_eq!(cache.get("a").expect("get").expect("some").serial, 2);
    }

    #[test]
    fn sqlite_reports_undecodable_rows() {
        let store = Store::memory().expect("store");
        let s = SqliteStateStore::new(store.clone()).expect("state");
        store
            .read(|c| {
                c.execute(
                    "INSERT INTO state_resources VALUES ('x', 'acme', 'pending', 1, 'not json')",
                    [],
                )
            })
            .expect("insert");
        assert!(matches!(
            s.get("x"),
            Err(crate::Error::Store(StoreError::Decode { .. }))
        ));
        assert!(s.export().is_err());
    }
}
