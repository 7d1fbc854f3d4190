//! The one gateway from Python into the core.
//!
//! Every call that does work in the core goes through [`detached`]: it releases the GIL so other
//! Python threads run meanwhile, and it catches panics so none ever reaches Python as a
//! `PanicException`; a panic becomes `omnicloud.InternalError` (an `OmniCloudError`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use omnicloud_core::events::panic_message;
use pyo3::prelude::*;

use crate::errors::BindingError;

/// Runs `work` with the GIL released and panics contained.
pub(crate) fn detached<T, E, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    E: Into<BindingError> + Send,
    F: FnOnce() -> Result<T, E> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.into().into()),
        Err(panic) => Err(BindingError::Internal {
            message: panic_message(panic.as_ref()).to_owned(),
        }
        .into()),
    }
}
