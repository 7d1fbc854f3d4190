//! `Tenant` and `TenantRegistry`.

use chrono::{DateTime, Utc};
use omnicloud_core::ids::TenantId;
use omnicloud_core::tenancy as core;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::clock::clock_arg;
use crate::errors::BindingError;
use crate::events::EventBus;
use crate::gateway::detached;
use crate::money::{Currency, currency_arg};
use crate::store::{Store, store_arg};

/// A tenant id argument, validated.
pub(crate) fn tenant_id_arg(id: &str) -> PyResult<TenantId> {
    TenantId::new(id).map_err(|e| BindingError::from(e).into())
}

/// A tenant: id, name and billing currency.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct Tenant {
    pub(crate) inner: core::Tenant,
}

#[pymethods]
impl Tenant {
    #[new]
    #[pyo3(signature = (id, name, billing_currency = None))]
    fn new(id: &str, name: String, billing_currency: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let currency = match billing_currency {
            Some(c) => currency_arg(c)?,
            None => omnicloud_core::billing::Currency::usd(),
        };
        let inner =
            core::Tenant::new(tenant_id_arg(id)?, name, currency).map_err(BindingError::from)?;
        Ok(Self { inner })
    }

    /// The tenant's id.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id.as_str()
    }

    /// The display name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The currency invoices are issued in.
    #[getter]
    fn billing_currency(&self) -> Currency {
        Currency {
            inner: self.inner.billing_currency,
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Tenant>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyString::new(py, self.inner.id.as_str()).hash()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tenant(id={:?}, name={:?}, billing_currency={:?})",
            self.inner.id.as_str(),
            self.inner.name,
            self.inner.billing_currency.code()
        )
    }
}

/// The tenants kept in one store.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct TenantRegistry {
    inner: core::TenantRegistry,
}

#[pymethods]
impl TenantRegistry {
    #[new]
    #[pyo3(signature = (store = None, clock = None, bus = None))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
        bus: Option<&Bound<'_, EventBus>>,
    ) -> PyResult<Self> {
        let bus = bus.map(|b| b.get().inner.clone()).unwrap_or_default();
        Ok(Self {
            inner: core::TenantRegistry::new(store_arg(py, store)?, clock_arg(clock)?, bus),
        })
    }

    /// Adds a tenant; raises DuplicateTenantError if the id is taken.
    fn create(&self, py: Python<'_>, tenant: &Bound<'_, Tenant>) -> PyResult<Tenant> {
        let tenant = tenant.get().inner.clone();
        let inner = detached(py, || self.inner.create(tenant))?;
        Ok(Tenant { inner })
    }

    /// The tenant with this id; raises UnknownTenantError.
    fn get(&self, py: Python<'_>, id: &str) -> PyResult<Tenant> {
        let id = tenant_id_arg(id)?;
        let inner = detached(py, || self.inner.get(&id))?;
        Ok(Tenant { inner })
    }

    /// The tenant with this id, or None.
    fn find(&self, py: Python<'_>, id: &str) -> PyResult<Option<Tenant>> {
        let id = tenant_id_arg(id)?;
        let found = detached(py, || self.inner.find(&id))?;
        Ok(found.map(|inner| Tenant { inner }))
    }

    /// Every tenant, ordered by id.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<Tenant>> {
        let all = detached(py, || self.inner.list())?;
        Ok(all.into_iter().map(|inner| Tenant { inner }).collect())
    }

    /// When the tenant was created.
    fn created_at(&self, py: Python<'_>, id: &str) -> PyResult<DateTime<Utc>> {
        let id = tenant_id_arg(id)?;
        detached(py, || self.inner.created_at(&id))
    }

    fn __repr__(&self) -> &'static str {
        "TenantRegistry()"
    }
}
