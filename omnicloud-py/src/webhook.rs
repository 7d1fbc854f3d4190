//! `Template`: webhook payload templates (Jinja2-style, strict, fuel-limited).

use omnicloud_core::webhook as core;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{json_from_py, json_to_py};
use crate::gateway::detached;

/// A compiled payload template. Undefined variables are errors (strict), rendering has a fuel
/// limit against runaway loops, and a bad template is refused here with its line and reason.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Template {
    inner: core::Template,
}

#[pymethods]
impl Template {
    #[new]
    fn new(py: Python<'_>, source: &str) -> PyResult<Self> {
        let source = source.to_owned();
        let inner = detached(py, move || {
            core::Template::new(&source).map_err(omnicloud_core::Error::from)
        })?;
        Ok(Self { inner })
    }
    /// Renders with `context` (a dict of JSON values) to text.
    fn render(&self, py: Python<'_>, context: &Bound<'_, PyDict>) -> PyResult<String> {
        let context = json_from_py(context.as_any(), "context")?;
        let t = self.inner.clone();
        detached(py, move || {
            t.render(&context).map_err(omnicloud_core::Error::from)
        })
    }
    /// Renders with `context`, then parses the output as JSON (a `TemplateError` if it is not).
    fn render_json<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let context = json_from_py(context.as_any(), "context")?;
        let t = self.inner.clone();
        let value = detached(py, move || {
            t.render_json(&context).map_err(omnicloud_core::Error::from)
        })?;
        json_to_py(py, &value)
    }
    /// The template's source.
    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
    }
    fn __repr__(&self) -> String {
        let source = self.inner.source();
        let shown: String = source.chars().take(40).collect();
        let more = if shown.len() < source.len() {
            "…"
        } else {
            ""
        };
        format!("Template({shown:?}{more})")
    }
}
