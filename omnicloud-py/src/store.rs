//! `Store`: the embedded SQLite database.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use omnicloud_core::store as core;
use pyo3::prelude::*;

use crate::gateway::detached;

/// The embedded database (SQLite, WAL). Cloning handles share one connection.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Store {
    pub(crate) inner: core::Store,
}

#[pymethods]
impl Store {
    /// A private in-memory database with the full schema.
    #[staticmethod]
    fn memory(py: Python<'_>) -> PyResult<Self> {
        let inner = detached(py, core::Store::memory)?;
        Ok(Self { inner })
    }

    /// Opens (creating if absent) the database file at `path` and migrates it.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = detached(py, move || core::Store::open(&path))?;
        Ok(Self { inner })
    }

    /// The file's path, or None for an in-memory store.
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner.path().map(|p| p.display().to_string())
    }

    /// The schema version the database is at.
    #[getter]
    fn schema_version(&self, py: Python<'_>) -> PyResult<u32> {
        detached(py, || self.inner.schema_version())
    }

    /// The applied migrations: (version, name, applied_at), oldest first.
    fn applied_migrations(&self, py: Python<'_>) -> PyResult<Vec<(u32, String, DateTime<Utc>)>> {
        detached(py, || self.inner.applied_migrations())
    }

    /// Runs SQLite's integrity check; raises StoreCorruptError on any finding.
    fn integrity_check(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.integrity_check())
    }

    fn __repr__(&self) -> String {
        match self.inner.path() {
            Some(p) => format!("Store.open({:?})", p.display().to_string()),
            None => "Store.memory()".to_owned(),
        }
    }
}

/// The store a service was given, or a new in-memory one.
pub(crate) fn store_arg(py: Python<'_>, store: Option<&Bound<'_, Store>>) -> PyResult<core::Store> {
    match store {
        Some(s) => Ok(s.get().inner.clone()),
        None => detached(py, core::Store::memory),
    }
}
