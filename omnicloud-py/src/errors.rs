//! The one place where errors become Python exceptions.
//!
//! The exception classes live in Python (`omnicloud/exceptions.py`) so they can inherit from both
//! `OmniCloudError` and the matching builtin (`ValueError`, `LookupError`, `TypeError`). This
//! module imports them lazily, once, and maps every core error variant to one of them with its
//! typed fields as attributes.

use std::path::Path;

use omnicloud_core::error::{
    ApiKeyError, AuditError, BillingError, DeployError, Error as CoreError, FailoverError,
    MoneyError, SchedulingError, SnapshotError, StateError, StoreError, TenancyError,
    ValidationError, WebhookError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

/// Every error the binding raises, before it becomes a Python exception.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// An error from the core.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A value of the right Python type but an unacceptable value (naive datetimes, bad JSON).
    #[error("{message}")]
    Value {
        /// What is wrong, naming the value.
        message: String,
    },
    /// A value of the wrong Python type where the library checks types itself (floats as money).
    #[error("{message}")]
    Type {
        /// What was expected and what was given.
        message: String,
    },
    /// A bug: a panic caught at the boundary, or an invariant broken.
    #[error("internal error in omnicloud (please report): {message}")]
    Internal {
        /// The panic message.
        message: String,
    },
}

impl BindingError {
    /// A value error.
    pub fn value(message: impl Into<String>) -> Self {
        Self::Value {
            message: message.into(),
        }
    }

    /// A type error.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::Type {
            message: message.into(),
        }
    }
}

macro_rules! core_from {
    ($($t:ty),*) => {$(
        impl From<$t> for BindingError {
            fn from(e: $t) -> Self {
                Self::Core(CoreError::from(e))
            }
        }
    )*};
}
core_from!(
    ValidationError,
    StoreError,
    AuditError,
    TenancyError,
    MoneyError,
    BillingError,
    FailoverError,
    StateError,
    SnapshotError,
    SchedulingError
);

/// The binding's result type.
pub(crate) type BindingResult<T> = Result<T, BindingError>;

impl From<BindingError> for PyErr {
    fn from(err: BindingError) -> PyErr {
        Python::attach(|py| to_pyerr(py, &err))
    }
}

/// The exception class named `name` in `omnicloud.exceptions`.
fn exception_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || py.import("omnicloud.exceptions").map(Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

fn to_pyerr(py: Python<'_>, err: &BindingError) -> PyErr {
    let (class, fields) = classify(err);
    build(py, class, &err.to_string(), &fields).unwrap_or_else(|e| e)
}

/// A field value carried to the exception as an attribute.
enum Field {
    Text(String),
    Number(Option<u64>),
    List(Vec<String>),
    Counts(std::collections::BTreeMap<String, usize>),
    None,
}

fn path_text(path: &Path) -> Field {
    Field::Text(path.display().to_string())
}

/// Picks the exception class and its attributes for an error. Adding a core variant means
/// adding a line here (the core's `#[non_exhaustive]` keeps a fallback to `OmniCloudError`).
fn classify(err: &BindingError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::Text;
    let core = match err {
        BindingError::Core(core) => core,
        BindingError::Value { .. } => return ("ValidationError", vec![]),
        BindingError::Type { .. } => return ("ArgumentTypeError", vec![]),
        BindingError::Internal { .. } => return ("InternalError", vec![]),
    };
    match core {
        CoreError::Validation(v) => match v {
            ValidationError::InvalidId { kind, value, .. } => (
                "ValidationError",
                vec![
                    ("field", Text(format!("{kind} id"))),
                    ("value", Text(value.clone())),
                ],
            ),
            ValidationError::InvalidName { field, value, .. } => (
                "ValidationError",
                vec![
                    ("field", Text((*field).to_owned())),
                    ("value", Text(value.clone())),
                ],
            ),
            ValidationError::TooLong { field, .. } => (
                "ValidationError",
                vec![("field", Text((*field).to_owned()))],
            ),
            ValidationError::InvalidClockStep { seconds, .. } => (
                "ValidationError",
                vec![
                    ("field", Text("seconds".into())),
                    ("value", Text(seconds.to_string())),
                ],
            ),
            _ => ("ValidationError", vec![]),
        },
        CoreError::Store(s) => {
            let path = match s {
                StoreError::Open { path, .. }
                | StoreError::Corrupt { path, .. }
                | StoreError::SchemaTooNew { path, .. }
                | StoreError::Migration { path, .. }
                | StoreError::Sqlite { path, .. }
                | StoreError::Decode { path, .. } => path_text(path),
                _ => Field::None,
            };
            let class = match s {
                StoreError::Corrupt { .. } => "StoreCorruptError",
                _ => "StoreError",
            };
            (class, vec![("path", path)])
        }
        CoreError::Audit(a) => match a {
            AuditError::InvalidAction { action, .. } => {
                ("AuditError", vec![("action", Text(action.clone()))])
            }
            _ => ("AuditError", vec![]),
        },
        CoreError::Tenancy(t) => match t {
            TenancyError::UnknownTenant { tenant_id } => (
                "UnknownTenantError",
                vec![("tenant_id", Text(tenant_id.clone()))],
            ),
            TenancyError::DuplicateTenant { tenant_id } => (
                "DuplicateTenantError",
                vec![("tenant_id", Text(tenant_id.clone()))],
            ),
            _ => ("OmniCloudError", vec![]),
        },
        CoreError::Billing(e) => classify_billing(e),
        CoreError::Failover(e) => classify_failover(e),
        CoreError::Deploy(e) => classify_deploy(e),
        CoreError::ApiKey(ApiKeyError::UnknownKey { key_id }) => {
            ("UnknownApiKeyError", vec![("key_id", Text(key_id.clone()))])
        }
        CoreError::Webhook(e) => classify_webhook(e),
        CoreError::State(e) => classify_state(e),
        CoreError::Scheduling(e) => classify_scheduling(e),
        CoreError::Snapshot(e) => classify_snapshot(e),
        CoreError::Money(m) => match m {
            MoneyError::UnknownCurrency { code } => {
                ("UnknownCurrencyError", vec![("code", Text(code.clone()))])
            }
            MoneyError::CurrencyMismatch { left, right } => (
                "CurrencyMismatchError",
                vec![("left", Text(left.clone())), ("right", Text(right.clone()))],
            ),
            MoneyError::NotBillable { code } => (
                "CurrencyNotBillableError",
                vec![("code", Text(code.clone()))],
            ),
            MoneyError::InvalidRate { .. } => {
                ("ValidationError", vec![("field", Text("rate".into()))])
            }
            MoneyError::ExchangeRateNotFound { base, quote, .. } => (
                "ExchangeRateNotFoundError",
                vec![("base", Text(base.clone())), ("quote", Text(quote.clone()))],
            ),
            MoneyError::InvalidAllocation { .. } => (
                "ValidationError",
                vec![("field", Text("allocation".into()))],
            ),
            MoneyError::Overflow { operation } => (
                "MoneyOverflowError",
                vec![("operation", Text((*operation).to_owned()))],
            ),
            _ => ("OmniCloudError", vec![]),
        },
        _ => ("OmniCloudError", vec![]),
    }
}

fn classify_billing(err: &BillingError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::{Number, Text};
    match err {
        BillingError::InvoiceImmutable { invoice_id, .. } => (
            "InvoiceImmutableError",
            vec![("invoice_id", Text(invoice_id.clone()))],
        ),
        BillingError::UnknownInvoice { invoice_id } => (
            "UnknownInvoiceError",
            vec![("invoice_id", Text(invoice_id.clone()))],
        ),
        BillingError::PriceNotFound { meter, region } => (
            "PriceNotFoundError",
            vec![
                ("meter", Text(meter.clone())),
                ("region", region.clone().map_or(Field::None, Text)),
            ],
        ),
        BillingError::Invalid { what, .. } => {
            ("ValidationError", vec![("field", Text((*what).to_owned()))])
        }
        BillingError::MigrationStopped { processed, .. } => (
            "MigrationStoppedError",
            vec![("processed", Number(Some(*processed)))],
        ),
        _ => ("BillingError", vec![]),
    }
}

fn classify_webhook(err: &WebhookError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::{Number, Text};
    let line = |l: &Option<usize>| ("line", Number(l.and_then(|l| u64::try_from(l).ok())));
    match err {
        WebhookError::InvalidTemplate { line: l, .. } | WebhookError::Render { line: l, .. } => {
            ("TemplateError", vec![line(l)])
        }
        WebhookError::InvalidSecret { .. } => (
            "ValidationError",
            vec![("field", Text("webhook secret".into()))],
        ),
        WebhookError::UnsafeUrl { url, address, .. } => (
            "UnsafeUrlError",
            vec![
                ("url", url.clone().map_or(Field::None, Text)),
                (
                    "address",
                    address.map_or(Field::None, |a| Text(a.to_string())),
                ),
            ],
        ),
        WebhookError::InvalidUrl { url, .. } => (
            "ValidationError",
            vec![("field", Text("url".into())), ("value", Text(url.clone()))],
        ),
        WebhookError::InvalidEndpoint { field, .. } => {
            ("ValidationError", vec![("field", Text((*field).into()))])
        }
        WebhookError::UnknownDelivery { delivery_id } => (
            "UnknownDeliveryError",
            vec![("delivery_id", Text(delivery_id.clone()))],
        ),
        WebhookError::UnknownEndpoint { endpoint_id } => (
            "UnknownEndpointError",
            vec![("endpoint_id", Text(endpoint_id.clone()))],
        ),
        _ => ("ValidationError", vec![]),
    }
}

fn classify_deploy(err: &DeployError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::Text;
    match err {
        DeployError::UnknownDeployment { deployment_id } => (
            "UnknownDeploymentError",
            vec![("deployment_id", Text(deployment_id.clone()))],
        ),
        DeployError::InvalidTransition {
            deployment_id,
            from,
            to,
        } => (
            "DeploymentTransitionError",
            vec![
                ("deployment_id", Text(deployment_id.clone())),
                ("from_state", Text(from.as_str().to_owned())),
                ("to_state", Text(to.as_str().to_owned())),
            ],
        ),
        DeployError::OutboxInAnotherStore { .. } => ("ValidationError", vec![]),
        _ => ("OmniCloudError", vec![]),
    }
}

fn classify_failover(err: &FailoverError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::Text;
    match err {
        FailoverError::InvalidPolicy { tenant_id, .. } => (
            "ValidationError",
            vec![
                ("field", Text("failover policy".into())),
                ("value", Text(tenant_id.clone())),
            ],
        ),
        FailoverError::InvalidRecord { name, .. } => (
            "ValidationError",
            vec![
                ("field", Text("DNS record".into())),
                ("value", Text(name.clone())),
            ],
        ),
        FailoverError::InvalidHealthResult { .. } => (
            "ValidationError",
            vec![("field", Text("health check result".into()))],
        ),
        FailoverError::InvalidHealthCheck { .. } => (
            "ValidationError",
            vec![("field", Text("health check".into()))],
        ),
        FailoverError::NoPolicy { tenant_id } => (
            "NoFailoverPolicyError",
            vec![("tenant_id", Text(tenant_id.clone()))],
        ),
        FailoverError::AlreadyThere { tenant_id, .. } => (
            "FailoverConflictError",
            vec![("tenant_id", Text(tenant_id.clone()))],
        ),
        FailoverError::PlanInProgress { tenant_id, plan_id } => (
            "FailoverConflictError",
            vec![
                ("tenant_id", Text(tenant_id.clone())),
                ("plan_id", Text(plan_id.clone())),
            ],
        ),
        _ => ("FailoverError", vec![]),
    }
}

fn classify_state(err: &StateError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::{List, Number, Text};
    let id = |id: &String| ("resource_id", Text(id.clone()));
    match err {
        StateError::InvalidTransition {
            resource_id,
            from,
            to,
        } => (
            "InvalidTransitionError",
            vec![
                id(resource_id),
                ("from_state", Text(from.as_str().to_owned())),
                ("to_state", Text(to.as_str().to_owned())),
            ],
        ),
        StateError::UnknownState { name } => (
            "ValidationError",
            vec![
                ("field", Text("state".into())),
                ("value", Text(name.clone())),
            ],
        ),
        StateError::UnknownResource { resource_id } => {
            ("UnknownResourceError", vec![id(resource_id)])
        }
        StateError::DuplicateResource { resource_id } => {
            ("DuplicateResourceError", vec![id(resource_id)])
        }
        StateError::DependencyCycle { cycle } => {
            ("DependencyCycleError", vec![("cycle", List(cycle.clone()))])
        }
        StateError::UnknownDependency {
            resource_id,
            dependency,
        } => (
            "UnknownDependencyError",
            vec![id(resource_id), ("dependency", Text(dependency.clone()))],
        ),
        StateError::HasDependents {
            resource_id,
            dependents,
        } => (
            "HasDependentsError",
            vec![id(resource_id), ("dependents", List(dependents.clone()))],
        ),
        StateError::Conflict {
            resource_id,
            expected,
            found,
        } => (
            "ConflictError",
            vec![
                id(resource_id),
                ("expected", Number(*expected)),
                ("found", Number(*found)),
            ],
        ),
        StateError::LineageMismatch { store, writer } => (
            "LineageMismatchError",
            vec![
                ("store_lineage", Text(store.clone())),
                ("writer_lineage", Text(writer.clone())),
            ],
        ),
        StateError::InvalidResource { resource_id, .. } => (
            "ValidationError",
            vec![
                ("field", Text("resource".into())),
                ("value", Text(resource_id.clone())),
            ],
        ),
        StateError::InvalidDriftRule { rule, .. } => (
            "ValidationError",
            vec![
                ("field", Text("drift rule".into())),
                ("value", Text(rule.clone())),
            ],
        ),
        StateError::DriftStrategy { .. } => ("DriftStrategyError", vec![]),
        _ => ("OmniCloudError", vec![]),
    }
}

fn classify_scheduling(err: &SchedulingError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::{Counts, Text};
    match err {
        SchedulingError::Unschedulable {
            workload_id,
            reasons,
            ..
        } => (
            "UnschedulableError",
            vec![
                ("workload_id", Text(workload_id.clone())),
                ("reasons", Counts(reasons.clone())),
            ],
        ),
        SchedulingError::UnknownNode { node_id } => {
            ("UnknownNodeError", vec![("node_id", Text(node_id.clone()))])
        }
        SchedulingError::DuplicateNode { node_id } => (
            "DuplicateNodeError",
            vec![("node_id", Text(node_id.clone()))],
        ),
        SchedulingError::InvalidNode { node_id, .. } => (
            "ValidationError",
            vec![
                ("field", Text("node".into())),
                ("value", Text(node_id.clone())),
            ],
        ),
        SchedulingError::UnknownWorkload { workload_id } => (
            "UnknownWorkloadError",
            vec![("workload_id", Text(workload_id.clone()))],
        ),
        SchedulingError::DuplicateWorkload { workload_id } => (
            "DuplicateWorkloadError",
            vec![("workload_id", Text(workload_id.clone()))],
        ),
        SchedulingError::InvalidRequest { .. } => {
            ("ValidationError", vec![("field", Text("request".into()))])
        }
        _ => ("OmniCloudError", vec![]),
    }
}

fn classify_snapshot(err: &SnapshotError) -> (&'static str, Vec<(&'static str, Field)>) {
    use Field::Text;
    match err {
        SnapshotError::Directory { path, .. } | SnapshotError::Io { path, .. } => {
            ("SnapshotError", vec![("path", path_text(path))])
        }
        SnapshotError::UnknownSnapshot { snapshot_id } => (
            "UnknownSnapshotError",
            vec![("snapshot_id", Text(snapshot_id.clone()))],
        ),
        SnapshotError::Corrupt { snapshot_id, .. } => (
            "SnapshotCorruptError",
            vec![("snapshot_id", Text(snapshot_id.clone()))],
        ),
        SnapshotError::InvalidId { snapshot_id } => (
            "ValidationError",
            vec![
                ("field", Text("snapshot id".into())),
                ("value", Text(snapshot_id.clone())),
            ],
        ),
        _ => ("SnapshotError", vec![]),
    }
}

fn build(
    py: Python<'_>,
    class: &str,
    message: &str,
    fields: &[(&'static str, Field)],
) -> Result<PyErr, PyErr> {
    let class = exception_class(py, class)?;
    let kwargs = PyDict::new(py);
    for (name, value) in fields {
        match value {
            Field::Text(t) => kwargs.set_item(name, t)?,
            Field::Number(n) => kwargs.set_item(name, n)?,
            Field::List(items) => kwargs.set_item(name, items)?,
            Field::Counts(counts) => kwargs.set_item(name, counts)?,
            Field::None => kwargs.set_item(name, py.None())?,
        }
    }
    let instance = class.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}
