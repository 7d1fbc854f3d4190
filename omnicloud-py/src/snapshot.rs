//! `SnapshotManager` and `SnapshotInfo`.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::clock::SharedClock;
use omnicloud_core::ids::generate_id;
use omnicloud_core::state::{self as core, StateExport};
use pyo3::prelude::*;

use crate::clock::clock_arg;
use crate::gateway::detached;
use crate::state::Resource;

/// What a snapshot holds, from its header.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct SnapshotInfo {
    inner: core::SnapshotInfo,
}

impl SnapshotInfo {
    pub(crate) fn wrap(inner: core::SnapshotInfo) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl SnapshotInfo {
    /// The snapshot's id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// When it was taken.
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// The lineage of the state it was taken from.
    #[getter]
    fn lineage(&self) -> &str {
        &self.inner.lineage
    }
    /// The state's serial at that instant.
    #[getter]
    fn serial(&self) -> u64 {
        self.inner.serial
    }
    /// How many resources it holds.
    #[getter]
    fn resource_count(&self) -> u64 {
        self.inner.resource_count
    }
    /// Compressed payload size in bytes.
    #[getter]
    fn payload_bytes(&self) -> u64 {
        self.inner.payload_bytes
    }
    /// SHA-256 of the compressed payload, hex.
    #[getter]
    fn checksum(&self) -> &str {
        &self.inner.payload_sha256
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<SnapshotInfo>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "SnapshotInfo(id={:?}, created_at={}, resources={}, bytes={})",
            self.inner.id,
            self.inner.created_at.to_rfc3339(),
            self.inner.resource_count,
            self.inner.payload_bytes
        )
    }
}

/// Writes, lists, verifies, restores and prunes snapshots in one directory.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct SnapshotManager {
    inner: core::SnapshotManager,
    clock: SharedClock,
}

#[pymethods]
impl SnapshotManager {
    /// Uses `directory` (created if missing); removes temporary files a crash left behind.
    #[new]
    #[pyo3(signature = (directory, clock = None))]
    fn new(py: Python<'_>, directory: PathBuf, clock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let clock = clock_arg(clock)?;
        let inner = detached(py, || core::SnapshotManager::open(&directory))?;
        Ok(Self { inner, clock })
    }

    /// The directory.
    #[getter]
    fn directory(&self) -> String {
        self.inner.directory().display().to_string()
    }

    /// Writes `resources` as a new snapshot (atomically). `lineage` defaults to a new id.
    #[pyo3(signature = (resources, lineage = None, serial = 0))]
    fn create(
        &self,
        py: Python<'_>,
        resources: Vec<PyRef<'_, Resource>>,
        lineage: Option<String>,
        serial: u64,
    ) -> PyResult<SnapshotInfo> {
        let export = StateExport {
            lineage: lineage.unwrap_or_else(generate_id),
            serial,
            resources: resources.iter().map(|r| Arc::clone(&r.inner)).collect(),
        };
        let at = self.clock.now();
        Ok(SnapshotInfo::wrap(detached(py, || {
            self.inner.create(&export, at)
        })?))
    }

    /// The resources of a snapshot, verified completely before anything is returned.
    fn restore(&self, py: Python<'_>, snapshot_id: &str) -> PyResult<Vec<Resource>> {
        let (_, export) = detached(py, || self.inner.restore(snapshot_id))?;
        Ok(export.resources.into_iter().map(Resource::wrap).collect())
    }

    /// Checks a snapshot completely; raises SnapshotCorruptError if it is damaged.
    fn verify(&self, py: Python<'_>, snapshot_id: &str) -> PyResult<SnapshotInfo> {
        Ok(SnapshotInfo::wrap(detached(py, || {
            self.inner.verify(snapshot_id)
        })?))
    }

    /// Snapshots with a readable header, oldest first.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<SnapshotInfo>> {
        let infos = detached(py, || self.inner.list())?;
        Ok(infos.into_iter().map(SnapshotInfo::wrap).collect())
    }

    /// The newest snapshot that verifies completely, or None.
    fn latest_good(&self, py: Python<'_>) -> PyResult<Option<SnapshotInfo>> {
        Ok(detached(py, || self.inner.latest_good())?.map(SnapshotInfo::wrap))
    }

    /// Keeps the newest `keep` snapshots; returns the ids deleted.
    fn retain(&self, py: Python<'_>, keep: usize) -> PyResult<Vec<String>> {
        detached(py, || self.inner.retain(keep))
    }

    /// Deletes one snapshot.
    fn delete(&self, py: Python<'_>, snapshot_id: &str) -> PyResult<()> {
        detached(py, || self.inner.delete(snapshot_id))
    }

    fn __repr__(&self) -> String {
        format!(
            "SnapshotManager({:?})",
            self.inner.directory().display().to_string()
        )
    }
}
