//! `EventBus` and `Event`.

use chrono::{DateTime, Utc};
use omnicloud_core::error::EventError;
use omnicloud_core::events::{self as core, EventKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use crate::clock::clock_arg;
use crate::convert::{json_from_py, json_to_py, repr_opt};
use crate::errors::BindingError;
use crate::gateway::detached;
use crate::tenancy::tenant_id_arg;

/// An event as delivered to a subscriber.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Event {
    pub(crate) inner: core::Envelope,
}

#[pymethods]
impl Event {
    /// Unique, time-ordered id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// The dotted event name (`tenant.created`, or a custom event's own).
    #[getter]
    fn kind(&self) -> &str {
        self.inner.event.name()
    }

    /// When it happened.
    #[getter]
    fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }

    /// The tenant concerned, if any.
    #[getter]
    fn tenant_id(&self) -> Option<&str> {
        self.inner.event.tenant_id().map(|t| t.as_str())
    }

    /// The resource or object concerned, if any.
    #[getter]
    fn subject(&self) -> Option<&str> {
        self.inner.event.subject()
    }

    /// The payload.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.event.data())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Event>()
            .is_ok_and(|o| o.get().inner.id == self.inner.id)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.id.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "Event(kind={:?}, tenant_id={}, at={})",
            self.inner.event.name(),
            repr_opt(self.tenant_id()),
            self.inner.at.to_rfc3339()
        )
    }
}

/// The in-process event bus that joins the capabilities.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct EventBus {
    pub(crate) inner: core::EventBus,
    clock: omnicloud_core::clock::SharedClock,
}

fn kinds_arg(kinds: Option<Vec<String>>) -> PyResult<Option<Vec<EventKind>>> {
    kinds
        .map(|names| {
            names
                .iter()
                .map(|n| {
                    n.parse::<EventKind>()
                        .map_err(|e| BindingError::from(e).into())
                })
                .collect::<PyResult<Vec<_>>>()
        })
        .transpose()
}

#[pymethods]
impl EventBus {
    #[new]
    #[pyo3(signature = (clock = None))]
    fn new(clock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Self {
            inner: core::EventBus::new(),
            clock: clock_arg(clock)?,
        })
    }

    /// Calls `callback(event)` for every event of the given kinds (all when None).
    ///
    /// An exception in the callback goes to `sys.unraisablehook` and counts as a failed
    /// delivery; it never reaches the publisher. Returns the subscription id.
    #[pyo3(signature = (callback, kinds = None))]
    fn subscribe(&self, callback: Bound<'_, PyAny>, kinds: Option<Vec<String>>) -> PyResult<u64> {
        if !callback.is_callable() {
            return Err(BindingError::type_error(format!(
                "callback must be callable, got {}",
                crate::convert::type_name(&callback)
            ))
            .into());
        }
        let callback = callback.unbind();
        let kinds = kinds_arg(kinds)?;
        let id = self.inner.subscribe(kinds.as_deref(), move |envelope| {
            Python::attach(|py| {
                let event = Event {
                    inner: envelope.clone(),
                };
                match callback.call1(py, (event,)) {
                    Ok(_) => Ok(()),
                    Err(err) => {
                        let message = err.to_string();
                        err.write_unraisable(py, Some(callback.bind(py)));
                        Err(EventError::SubscriberFailed { message }.into())
                    }
                }
            })
        });
        Ok(id.0)
    }

    /// Ends a subscription; returns whether it existed.
    fn unsubscribe(&self, subscription: i64) -> bool {
        u64::try_from(subscription).is_ok_and(|id| self.inner.unsubscribe(core::SubscriptionId(id)))
    }

    /// Publishes an application-defined event (`kind` is a dotted lower-case name such as
    /// `app.release_approved`) and returns it as delivered.
    #[pyo3(signature = (kind, tenant_id = None, subject = None, data = None))]
    fn publish(
        &self,
        py: Python<'_>,
        kind: String,
        tenant_id: Option<&str>,
        subject: Option<String>,
        data: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Event> {
        let tenant_id = tenant_id.map(tenant_id_arg).transpose()?;
        let data = match data {
            Some(d) => json_from_py(d.as_any(), "data")?,
            None => Value::Object(serde_json::Map::new()),
        };
        let event =
            core::Event::custom(kind, tenant_id, subject, data).map_err(BindingError::from)?;
        let at = self.clock.now();
        let report = detached(py, || Ok::<_, BindingError>(self.inner.publish(at, event)))?;
        Ok(Event {
            inner: report.envelope,
        })
    }

    /// How many subscriptions are active.
    #[getter]
    fn subscriber_count(&self) -> usize {
        self.inner.subscriber_count()
    }

    /// How many subscriber failures the bus has seen.
    #[getter]
    fn failure_count(&self) -> u64 {
        self.inner.failure_count()
    }

    fn __repr__(&self) -> String {
        format!("EventBus(subscribers={})", self.inner.subscriber_count())
    }
}
