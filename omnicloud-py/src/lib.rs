//! Python bindings for OmniCloud Core: the extension module `omnicloud._omnicloud`.
//!
//! Thin by design: each class is a frozen wrapper over a core type; arguments are converted and
//! checked in [`convert`], work runs through the one [`gateway`] (GIL released, panics
//! contained), and errors become Python exceptions in one place, [`errors`].

// PyO3 extracts arguments into owned values (Vec, PathBuf, Bound); taking them by value is
// how a #[pymethods] signature says "extract this", not a needless copy.
#![allow(clippy::needless_pass_by_value)]

mod audit;
mod billing;
mod clock;
mod convert;
mod deploy;
mod drift;
mod errors;
mod events;
mod failover;
mod gateway;
mod money;
mod scheduling;
mod server;
mod snapshot;
mod state;
mod store;
mod tenancy;
mod webhook;

use pyo3::prelude::*;

/// Raises an internal error through the gateway, as a bug would (for tests of the panic
/// boundary: it must arrive as `omnicloud.InternalError`, never as `PanicException`).
#[pyfunction]
fn _raise_internal_error(py: Python<'_>) -> PyResult<()> {
    gateway::detached(py, || -> Result<(), errors::BindingError> {
        panic!("deliberate internal error (diagnostics hook)")
    })
}

#[pymodule]
mod _omnicloud {
    #[pymodule_export]
    use super::_raise_internal_error;
    #[pymodule_export]
    use super::audit::{AuditEvent, AuditLog, AuditVerification};
    #[pymodule_export]
    use super::billing::{
        BillingAccount, BillingService, Discount, Invoice, InvoiceLine, MigrationProgress,
        MigrationReport, PoolAllocation, PoolShare, migrate_billing_currency,
    };
    #[pymodule_export]
    use super::clock::{ManualClock, SystemClock};
    #[pymodule_export]
    use super::deploy::{Deployment, DeploymentService};
    #[pymodule_export]
    use super::drift::{
        DriftChange, DriftDetector, DriftReport, ExactMatch, SemanticEquality, ThresholdBased,
    };
    #[pymodule_export]
    use super::events::{Event, EventBus};
    #[pymodule_export]
    use super::failover::{
        DnsRecord, FailoverController, FailoverPolicy, FailoverReport, FailoverStatus, HealthCheck,
        HealthCheckResult, InMemoryDns, InMemoryResources, PlanStep, ProbeResult, Rfc2136Dns,
    };
    #[pymodule_export]
    use super::money::{Currency, ExchangeRate, ExchangeRates, Money};
    #[pymodule_export]
    use super::scheduling::{
        AffinityRule, Node, NodeUsage, Placement, PlacementGroup, Scheduler, WorkloadRequest,
    };
    #[pymodule_export]
    use super::server::Server;
    #[pymodule_export]
    use super::snapshot::{SnapshotInfo, SnapshotManager};
    #[pymodule_export]
    use super::state::{DependencyResolver, Resource, StateMachine, StateManager, Transition};
    #[pymodule_export]
    use super::store::Store;
    #[pymodule_export]
    use super::tenancy::{Tenant, TenantRegistry};
    #[pymodule_export]
    use super::webhook::{Delivery, Template, WebhookEndpoint, WebhookService};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
