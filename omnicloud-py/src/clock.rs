//! `ManualClock` and `SystemClock`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::clock::{self as core, Clock, SharedClock};
use pyo3::prelude::*;

use crate::convert::{type_name, utc_from_py};
use crate::errors::BindingError;

/// A clock that moves only when told to.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ManualClock {
    pub(crate) inner: Arc<core::ManualClock>,
}

#[pymethods]
impl ManualClock {
    #[new]
    fn new(start: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(core::ManualClock::new(utc_from_py(start, "start")?)),
        })
    }

    /// The clock's current time (UTC, timezone-aware).
    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    /// Moves forward by `seconds` (not negative); returns the new time.
    fn advance(&self, seconds: f64) -> PyResult<DateTime<Utc>> {
        self.inner
            .advance(seconds)
            .map_err(|e| BindingError::from(e).into())
    }

    /// Sets the time (earlier or later).
    fn set(&self, instant: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .set(utc_from_py(instant, "instant")?)
            .map_err(|e| BindingError::from(e).into())
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", self.inner.now().to_rfc3339())
    }
}

/// The operating system's clock.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct SystemClock;

#[pymethods]
impl SystemClock {
    #[new]
    fn new() -> Self {
        Self
    }

    /// The current time (UTC, timezone-aware).
    fn now(&self) -> DateTime<Utc> {
        core::SystemClock.now()
    }

    fn __repr__(&self) -> &'static str {
        "SystemClock()"
    }
}

/// The clock a service was given: a `ManualClock`, a `SystemClock`, or `None` for the system's.
pub(crate) fn clock_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<SharedClock> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Arc::new(core::SystemClock));
    };
    if let Ok(manual) = obj.cast::<ManualClock>() {
        return Ok(manual.get().inner.clone());
    }
    if obj.cast::<SystemClock>().is_ok() {
        return Ok(Arc::new(core::SystemClock));
    }
    Err(BindingError::type_error(format!(
        "clock must be a ManualClock, a SystemClock or None, got {}",
        type_name(obj)
    ))
    .into())
}
