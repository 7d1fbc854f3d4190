//! `AuditLog`, `AuditEvent` and `AuditVerification`.

use chrono::{DateTime, Utc};
use omnicloud_core::audit::{self as core, AuditQuery, AuditRecord};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use crate::clock::clock_arg;
use crate::convert::{json_from_py, json_to_py, opt_utc_from_py, py_enum, repr_opt};
use crate::errors::BindingError;
use crate::events::EventBus;
use crate::gateway::detached;
use crate::store::{Store, store_arg};
use crate::tenancy::tenant_id_arg;

/// One entry of the audit trail.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct AuditEvent {
    inner: core::AuditEvent,
}

#[pymethods]
impl AuditEvent {
    /// Position in the chain, from 1.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }
    /// Unique, time-ordered id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// When it was recorded.
    #[getter]
    fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }
    /// The tenant concerned, if any.
    #[getter]
    fn tenant_id(&self) -> Option<&str> {
        self.inner.tenant_id.as_deref()
    }
    /// Who acted.
    #[getter]
    fn actor(&self) -> &str {
        &self.inner.actor
    }
    /// What was done (dotted name).
    #[getter]
    fn action(&self) -> &str {
        &self.inner.action
    }
    /// What it was done to, if anything.
    #[getter]
    fn resource_id(&self) -> Option<&str> {
        self.inner.resource_id.as_deref()
    }
    /// Structured details.
    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.details)
    }
    /// Hash of the previous entry.
    #[getter]
    fn prev_hash(&self) -> &str {
        &self.inner.prev_hash
    }
    /// This entry's hash (hex SHA-256).
    #[getter]
    fn hash(&self) -> &str {
        &self.inner.hash
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<AuditEvent>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        // The entry hash is already a digest of every field.
        u64::from_str_radix(self.inner.hash.get(..16).unwrap_or("0"), 16).unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        format!(
            "AuditEvent(seq={}, at={}, tenant_id={}, actor={:?}, action={:?}, resource_id={})",
            self.inner.seq,
            self.inner.at.to_rfc3339(),
            repr_opt(self.inner.tenant_id.as_deref()),
            self.inner.actor,
            self.inner.action,
            repr_opt(self.inner.resource_id.as_deref())
        )
    }
}

/// The outcome of `AuditLog.verify_report()`; truthy when the chain is intact.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct AuditVerification {
    inner: core::AuditVerification,
}

#[pymethods]
impl AuditVerification {
    /// Whether the chain is intact.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.is_intact()
    }
    /// How many entries were read.
    #[getter]
    fn entries_checked(&self) -> u64 {
        self.inner.entries_checked
    }
    /// Sequence number of the first bad entry, or None.
    #[getter]
    fn first_bad_seq(&self) -> Option<u64> {
        self.inner.first_violation.as_ref().map(|v| v.seq)
    }
    /// Id of the first bad entry when its row exists, or None.
    #[getter]
    fn first_bad_id(&self) -> Option<&str> {
        self.inner
            .first_violation
            .as_ref()
            .and_then(|v| v.entry_id.as_deref())
    }
    /// What is wrong, as an `omnicloud.AuditProblem`, or None.
    #[getter]
    fn problem<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .first_violation
            .as_ref()
            .map(|v| py_enum(py, "AuditProblem", problem_name(&v.problem)))
            .transpose()
    }
    /// A sentence describing the first bad entry, or None.
    #[getter]
    fn message(&self) -> Option<String> {
        self.inner.first_violation.as_ref().map(ToString::to_string)
    }

    fn __bool__(&self) -> bool {
        self.inner.is_intact()
    }

    fn __repr__(&self) -> String {
        match &self.inner.first_violation {
            None => format!(
                "AuditVerification(ok=True, entries_checked={})",
                self.inner.entries_checked
            ),
            Some(v) => format!(
                "AuditVerification(ok=False, entries_checked={}, first_bad={v})",
                self.inner.entries_checked
            ),
        }
    }
}

fn problem_name(problem: &core::AuditProblem) -> &'static str {
    match problem {
        core::AuditProblem::ContentEdited => "content_edited",
        core::AuditProblem::BrokenLink => "broken_link",
        core::AuditProblem::MissingEntries { .. } => "missing_entries",
        core::AuditProblem::TruncatedTail { .. } => "truncated_tail",
        core::AuditProblem::HeadMismatch => "head_mismatch",
        core::AuditProblem::AnchorMismatch => "anchor_mismatch",
        core::AuditProblem::Undecodable { .. } => "undecodable",
        _ => "other",
    }
}

/// The append-only, hash-chained audit trail.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct AuditLog {
    pub(crate) inner: core::AuditLog,
}

#[pymethods]
impl AuditLog {
    #[new]
    #[pyo3(signature = (store = None, clock = None))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: core::AuditLog::new(store_arg(py, store)?, clock_arg(clock)?),
        })
    }

    /// The store the trail lives in.
    #[getter]
    fn store(&self) -> Store {
        Store {
            inner: self.inner.store().clone(),
        }
    }

    /// Appends an entry stamped with the clock's time.
    #[pyo3(signature = (actor, action, tenant_id = None, resource_id = None, details = None))]
    fn append(
        &self,
        py: Python<'_>,
        actor: String,
        action: String,
        tenant_id: Option<&str>,
        resource_id: Option<String>,
        details: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<AuditEvent> {
        let record = AuditRecord {
            tenant_id: tenant_id.map(tenant_id_arg).transpose()?,
            actor,
            action,
            resource_id,
            details: match details {
                Some(d) => json_from_py(d.as_any(), "details")?,
                None => Value::Object(serde_json::Map::new()),
            },
        };
        let inner = detached(py, || self.inner.append(record))?;
        Ok(AuditEvent { inner })
    }

    /// Entries matching every given filter, oldest first. `action` may end in `.*` to match
    /// a prefix; `since` is inclusive and `until` exclusive.
    #[pyo3(signature = (tenant_id = None, action = None, since = None, until = None, limit = None))]
    fn query(
        &self,
        py: Python<'_>,
        tenant_id: Option<&str>,
        action: Option<String>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        limit: Option<i64>,
    ) -> PyResult<Vec<AuditEvent>> {
        let limit = limit
            .map(|l| {
                u64::try_from(l)
                    .map_err(|_| BindingError::value(format!("limit must be >= 0, got {l}")))
            })
            .transpose()?;
        let query = AuditQuery {
            tenant_id: tenant_id.map(tenant_id_arg).transpose()?,
            action,
            since: opt_utc_from_py(since, "since")?,
            until: opt_utc_from_py(until, "until")?,
            limit,
        };
        let events = detached(py, || self.inner.query(&query))?;
        Ok(events
            .into_iter()
            .map(|inner| AuditEvent { inner })
            .collect())
    }

    /// Whether the hash chain is intact (no entry edited, deleted, inserted or cut off).
    /// With `anchor` (a `head()` kept elsewhere), also whether the chain still holds it.
    #[pyo3(signature = (anchor = None))]
    fn verify(&self, py: Python<'_>, anchor: Option<(u64, String)>) -> PyResult<bool> {
        Ok(self.verify_report(py, anchor)?.inner.is_intact())
    }

    /// The full verification: entries checked and the first bad entry, if any.
    #[pyo3(signature = (anchor = None))]
    fn verify_report(
        &self,
        py: Python<'_>,
        anchor: Option<(u64, String)>,
    ) -> PyResult<AuditVerification> {
        let anchor = anchor.map(|(seq, hash)| core::AuditHead { seq, hash });
        let inner = detached(py, || self.inner.verify_anchored(anchor.as_ref()))?;
        Ok(AuditVerification { inner })
    }

    /// The chain's head: (last seq, last hash). Keep it elsewhere to anchor the chain.
    fn head(&self, py: Python<'_>) -> PyResult<(u64, String)> {
        let head = detached(py, || self.inner.head())?;
        Ok((head.seq, head.hash))
    }

    /// Records every event published on `bus`; returns the subscription id.
    fn follow(&self, bus: &Bound<'_, EventBus>) -> u64 {
        self.inner.follow(&bus.get().inner).0
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let n = detached(py, || self.inner.len())?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn __repr__(&self) -> String {
        format!(
            "AuditLog(store={:?})",
            self.inner.store().label().display().to_string()
        )
    }
}
