//! `Deployment` and `DeploymentService`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::deploy::{self as core, DeploymentState};
use pyo3::prelude::*;

use crate::clock::clock_arg;
use crate::convert::{py_enum, repr_opt};
use crate::errors::BindingError;
use crate::events::EventBus;
use crate::gateway::detached;
use crate::store::Store;
use crate::tenancy::tenant_id_arg;
use crate::webhook::WebhookService;

fn state_out<'py>(py: Python<'py>, state: DeploymentState) -> PyResult<Bound<'py, PyAny>> {
    py_enum(py, "DeploymentState", state.as_str())
}

/// A `DeploymentState` member or its value.
fn state_arg(name: &str) -> PyResult<DeploymentState> {
    name.parse::<DeploymentState>()
        .map_err(|e| BindingError::from(e).into())
}

/// One deployment of a tenant's service (a snapshot: `DeploymentService.get` reads it again).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Deployment {
    inner: core::Deployment,
}

fn deployment(inner: core::Deployment) -> Deployment {
    Deployment { inner }
}

#[pymethods]
impl Deployment {
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    #[getter]
    fn service_name(&self) -> &str {
        &self.inner.service_name
    }
    /// A `DeploymentState`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        state_out(py, self.inner.state)
    }
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    #[getter]
    fn started_at(&self) -> Option<DateTime<Utc>> {
        self.inner.started_at
    }
    #[getter]
    fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.inner.finished_at
    }
    #[getter]
    fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
    /// Why it failed or was rolled back.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }
    /// Seconds from the start (or queueing) to the end, or to its last change while it runs.
    #[getter]
    fn duration_seconds(&self) -> f64 {
        self.inner.duration_seconds(self.inner.updated_at)
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Deployment>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.id.hash(&mut h);
        self.inner.updated_at.hash(&mut h);
        h.finish()
    }
    fn __repr__(&self) -> String {
        format!(
            "Deployment(id={:?}, tenant_id={:?}, service_name={:?}, state={:?}, reason={})",
            self.inner.id,
            self.inner.tenant_id.as_str(),
            self.inner.service_name,
            self.inner.state.as_str(),
            repr_opt(self.inner.reason.as_deref())
        )
    }
}

/// Deployments of tenants' services: queued, in progress, completed, failed, rolled back, with
/// every change announced on the event bus (`deployment.state_change`,
/// `deployment.health_check_failed`, `deployment.rollback_initiated`).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct DeploymentService {
    inner: Arc<core::DeploymentService>,
}

#[pymethods]
impl DeploymentService {
    /// Deployments kept in `store` (the webhooks' store, or memory, without one), timed by
    /// `clock`, announced on `bus`; with `webhooks`, every event's deliveries are queued in
    /// the transaction of its change (queued, not sent: a transition never waits on a
    /// recipient). The webhooks must keep their rows in the same store.
    #[new]
    #[pyo3(signature = (store = None, clock = None, bus = None, webhooks = None))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
        bus: Option<&Bound<'_, EventBus>>,
        webhooks: Option<&Bound<'_, WebhookService>>,
    ) -> PyResult<Self> {
        let clock = clock_arg(clock)?;
        let hooks = webhooks.map(|h| h.get());
        let store = match (store, hooks) {
            (Some(s), _) => s.get().inner.clone(),
            (None, Some(hooks)) => hooks.store(),
            (None, None) => detached(py, omnicloud_core::store::Store::memory)?,
        };
        let bus = bus.map(|b| b.get().inner.clone());
        let mut service = core::DeploymentService::new(store, clock, bus);
        if let Some(hooks) = hooks {
            service = service
                .with_outbox(hooks.outbox())
                .map_err(BindingError::from)?;
        }
        Ok(Self {
            inner: Arc::new(service),
        })
    }

    /// Queues a deployment of `service_name` for the tenant.
    fn create(&self, py: Python<'_>, tenant_id: &str, service_name: &str) -> PyResult<Deployment> {
        let t = tenant_id_arg(tenant_id)?;
        let s = self.inner.clone();
        let name = service_name.to_owned();
        Ok(deployment(detached(py, move || s.create(&t, &name))?))
    }

    /// Starts the rollout (queued -> in_progress).
    fn start(&self, py: Python<'_>, deployment_id: &str) -> PyResult<Deployment> {
        let s = self.inner.clone();
        let id = deployment_id.to_owned();
        Ok(deployment(detached(py, move || s.start(&id))?))
    }

    /// Marks the rollout completed (in_progress -> completed).
    fn complete(&self, py: Python<'_>, deployment_id: &str) -> PyResult<Deployment> {
        let s = self.inner.clone();
        let id = deployment_id.to_owned();
        Ok(deployment(detached(py, move || s.complete(&id))?))
    }

    /// Marks the rollout failed (from queued or in_progress).
    fn fail(&self, py: Python<'_>, deployment_id: &str, reason: &str) -> PyResult<Deployment> {
        let s = self.inner.clone();
        let (id, reason) = (deployment_id.to_owned(), reason.to_owned());
        Ok(deployment(detached(py, move || s.fail(&id, &reason))?))
    }

    /// Rolls back (from in_progress, completed or failed); announces rollback_initiated first.
    fn rollback(&self, py: Python<'_>, deployment_id: &str, reason: &str) -> PyResult<Deployment> {
        let s = self.inner.clone();
        let (id, reason) = (deployment_id.to_owned(), reason.to_owned());
        Ok(deployment(detached(py, move || s.rollback(&id, &reason))?))
    }

    /// Announces a failed health check of the deployment (its state does not change).
    fn report_health_check_failed(
        &self,
        py: Python<'_>,
        deployment_id: &str,
        check: &str,
        detail: &str,
    ) -> PyResult<()> {
        let s = self.inner.clone();
        let (id, check, detail) = (
            deployment_id.to_owned(),
            check.to_owned(),
            detail.to_owned(),
        );
        detached(py, move || {
            s.report_health_check_failed(&id, &check, &detail)
        })
    }

    /// The deployment with this id.
    fn get(&self, py: Python<'_>, deployment_id: &str) -> PyResult<Deployment> {
        let s = self.inner.clone();
        let id = deployment_id.to_owned();
        Ok(deployment(detached(py, move || s.get(&id))?))
    }

    /// The tenant's deployments, newest first, optionally only those in `state`.
    #[pyo3(signature = (tenant_id, state = None, limit = 100))]
    fn list(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        state: Option<&str>,
        limit: usize,
    ) -> PyResult<Vec<Deployment>> {
        let t = tenant_id_arg(tenant_id)?;
        let state = state.map(state_arg).transpose()?;
        let s = self.inner.clone();
        Ok(detached(py, move || s.list(&t, state, limit))?
            .into_iter()
            .map(deployment)
            .collect())
    }

    /// The deployment's transitions, oldest first: `(from_state, to_state, at, reason)`;
    /// `from_state` is None for its creation.
    #[allow(clippy::type_complexity)]
    fn history<'py>(
        &self,
        py: Python<'py>,
        deployment_id: &str,
    ) -> PyResult<
        Vec<(
            Option<Bound<'py, PyAny>>,
            Bound<'py, PyAny>,
            DateTime<Utc>,
            Option<String>,
        )>,
    > {
        let s = self.inner.clone();
        let id = deployment_id.to_owned();
        detached(py, move || s.history(&id))?
            .into_iter()
            .map(|t| {
                Ok((
                    t.from.map(|f| state_out(py, f)).transpose()?,
                    state_out(py, t.to)?,
                    t.at,
                    t.reason,
                ))
            })
            .collect()
    }

    fn __repr__(&self) -> &'static str {
        "DeploymentService()"
    }
}
