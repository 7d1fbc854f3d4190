//! Drift strategies, `DriftDetector`, `DriftReport` and `DriftChange`.

use std::collections::BTreeMap;
use std::sync::Arc;

use omnicloud_core::error::StateError;
use omnicloud_core::state::{self as core, ChangeKind, DriftStrategy};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde_json::Value;

use crate::convert::{json_from_py, json_to_py, py_enum, repr_opt, type_name};
use crate::errors::{BindingError, BindingResult};
use crate::gateway::detached;

/// Values must be identical (`1` differs from `1.0`, `null` from a missing key).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ExactMatch;

#[pymethods]
impl ExactMatch {
    #[new]
    fn new() -> Self {
        Self
    }
    fn __repr__(&self) -> &'static str {
        "ExactMatch()"
    }
}

/// Values must mean the same: key order, `1 == 1.0`, `null` == missing, order-insensitive lists
/// at `unordered` paths, `ignore` paths skipped. Paths are JSON pointers; `*` matches a segment.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct SemanticEquality {
    inner: Arc<core::SemanticEquality>,
    ignore: Vec<String>,
    unordered: Vec<String>,
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[pymethods]
impl SemanticEquality {
    #[new]
    #[pyo3(signature = (ignore = Vec::new(), unordered = Vec::new()))]
    fn new(ignore: Vec<String>, unordered: Vec<String>) -> PyResult<Self> {
        let inner = core::SemanticEquality::new(&strs(&ignore), &strs(&unordered))
            .map_err(BindingError::from)?;
        Ok(Self {
            inner: Arc::new(inner),
            ignore,
            unordered,
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "SemanticEquality(ignore={:?}, unordered={:?})",
            self.ignore, self.unordered
        )
    }
}

/// Semantic equality plus numeric tolerances per path, absolute or relative (to the desired
/// value).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ThresholdBased {
    inner: Arc<core::ThresholdBased>,
    tolerances: BTreeMap<String, f64>,
    relative: bool,
}

#[pymethods]
impl ThresholdBased {
    #[new]
    #[pyo3(signature = (tolerances, relative = true, ignore = Vec::new(), unordered = Vec::new()))]
    fn new(
        tolerances: BTreeMap<String, f64>,
        relative: bool,
        ignore: Vec<String>,
        unordered: Vec<String>,
    ) -> PyResult<Self> {
        let pairs: Vec<(&str, f64)> = tolerances.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let inner = core::ThresholdBased::new(&pairs, relative)
            .and_then(|t| t.with_paths(&strs(&ignore), &strs(&unordered)))
            .map_err(BindingError::from)?;
        Ok(Self {
            inner: Arc::new(inner),
            tolerances,
            relative,
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "ThresholdBased(tolerances={:?}, relative={})",
            self.tolerances,
            if self.relative { "True" } else { "False" }
        )
    }
}

/// A drift strategy written in Python: `callable(desired, actual)` returning an iterable of
/// changes, each a `DriftChange`, a `(path, kind, desired, actual)` tuple or a dict with those
/// keys.
#[derive(Debug)]
struct PythonStrategy {
    callable: Py<PyAny>,
    name: String,
}

impl DriftStrategy for PythonStrategy {
    fn name(&self) -> &str {
        &self.name
    }

    fn compare(
        &self,
        desired: &Value,
        actual: &Value,
    ) -> Result<Vec<core::DriftChange>, StateError> {
        Python::attach(|py| {
            let failed = |e: PyErr| StateError::DriftStrategy {
                message: format!("{}: {e}", self.name),
            };
            let result = self
                .callable
                .call1(
                    py,
                    (
                        json_to_py(py, desired).map_err(failed)?,
                        json_to_py(py, actual).map_err(failed)?,
                    ),
                )
                .map_err(failed)?;
            let mut changes = Vec::new();
            for item in result.bind(py).try_iter().map_err(failed)? {
                changes.push(change_from_py(&item.map_err(failed)?).map_err(failed)?);
            }
            Ok(changes)
        })
    }
}

fn kind_arg(name: &str) -> BindingResult<ChangeKind> {
    match name {
        "added" => Ok(ChangeKind::Added),
        "removed" => Ok(ChangeKind::Removed),
        "changed" => Ok(ChangeKind::Changed),
        other => Err(BindingError::value(format!(
            "change kind must be added, removed or changed, got {other:?}"
        ))),
    }
}

fn optional_json(obj: Option<Bound<'_, PyAny>>) -> PyResult<Option<Value>> {
    obj.filter(|o| !o.is_none())
        .map(|o| json_from_py(&o, "drift value"))
        .transpose()
}

fn change_from_py(item: &Bound<'_, PyAny>) -> PyResult<core::DriftChange> {
    if let Ok(c) = item.cast::<DriftChange>() {
        return Ok(c.get().inner.clone());
    }
    let (path, kind, desired, actual) = if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() != 4 {
            return Err(BindingError::type_error(format!(
                "a change tuple has 4 items (path, kind, desired, actual), got {}",
                t.len()
            ))
            .into());
        }
        (
            t.get_item(0)?,
            t.get_item(1)?,
            Some(t.get_item(2)?),
            Some(t.get_item(3)?),
        )
    } else if let Ok(d) = item.cast::<PyDict>() {
        let get = |k: &str| d.get_item(k);
        let required = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            get(k)?.ok_or_else(|| {
                BindingError::type_error(format!("a change dict needs {k:?}")).into()
            })
        };
        (
            required("path")?,
            required("kind")?,
            get("desired")?,
            get("actual")?,
        )
    } else {
        return Err(BindingError::type_error(format!(
            "a drift strategy must yield DriftChange, tuple or dict items, got {}",
            type_name(item)
        ))
        .into());
    };
    let path: String = path
        .cast::<PyString>()
        .map_err(|_| BindingError::type_error("a change path must be a str"))?
        .to_str()?
        .to_owned();
    let kind = kind_arg(
        kind.cast::<PyString>()
            .map_err(|_| BindingError::type_error("a change kind must be a str"))?
            .to_str()?,
    )?;
    Ok(core::DriftChange {
        path,
        kind,
        desired: optional_json(desired)?,
        actual: optional_json(actual)?,
    })
}

/// A strategy argument: a built-in strategy object or a Python callable.
pub(crate) fn strategy_arg(obj: &Bound<'_, PyAny>) -> PyResult<Arc<dyn DriftStrategy>> {
    if obj.cast::<ExactMatch>().is_ok() {
        return Ok(Arc::new(core::ExactMatch));
    }
    if let Ok(s) = obj.cast::<SemanticEquality>() {
        return Ok(s.get().inner.clone());
    }
    if let Ok(t) = obj.cast::<ThresholdBased>() {
        return Ok(t.get().inner.clone());
    }
    if obj.is_callable() {
        let name = obj
            .getattr("__name__")
            .and_then(|n| n.extract::<String>())
            .unwrap_or_else(|_| type_name(obj));
        return Ok(Arc::new(PythonStrategy {
            callable: obj.clone().unbind(),
            name,
        }));
    }
    Err(BindingError::type_error(format!(
        "strategy must be ExactMatch, SemanticEquality, ThresholdBased or a callable, got {}",
        type_name(obj)
    ))
    .into())
}

/// One differing path.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct DriftChange {
    inner: core::DriftChange,
}

#[pymethods]
impl DriftChange {
    #[new]
    #[pyo3(signature = (path, kind, desired = None, actual = None))]
    fn new(
        path: String,
        kind: &str,
        desired: Option<Bound<'_, PyAny>>,
        actual: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: core::DriftChange {
                path,
                kind: kind_arg(kind)?,
                desired: optional_json(desired)?,
                actual: optional_json(actual)?,
            },
        })
    }
    /// JSON pointer to the value.
    #[getter]
    fn path(&self) -> &str {
        &self.inner.path
    }
    /// How it differs.
    #[getter]
    fn kind<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_enum(py, "ChangeKind", self.inner.kind.as_str())
    }
    /// The desired value (None when added).
    #[getter]
    fn desired<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .desired
            .as_ref()
            .map(|v| json_to_py(py, v))
            .transpose()
    }
    /// The actual value (None when removed).
    #[getter]
    fn actual<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .actual
            .as_ref()
            .map(|v| json_to_py(py, v))
            .transpose()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<DriftChange>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __repr__(&self) -> String {
        let show = |v: &Option<Value>| {
            v.as_ref()
                .map_or_else(|| "None".to_owned(), Value::to_string)
        };
        format!(
            "DriftChange(path={:?}, kind={:?}, desired={}, actual={})",
            self.inner.path,
            self.inner.kind.as_str(),
            show(&self.inner.desired),
            show(&self.inner.actual)
        )
    }
}

/// The result of comparing one resource.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct DriftReport {
    inner: core::DriftReport,
}

impl DriftReport {
    pub(crate) fn wrap(inner: core::DriftReport) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl DriftReport {
    /// The resource compared, when known.
    #[getter]
    fn resource_id(&self) -> Option<&str> {
        self.inner.resource_id.as_deref()
    }
    /// Whether anything differs.
    #[getter]
    fn has_drift(&self) -> bool {
        self.inner.has_drift()
    }
    /// Every differing path.
    #[getter]
    fn changes(&self) -> Vec<DriftChange> {
        self.inner
            .changes
            .iter()
            .map(|c| DriftChange { inner: c.clone() })
            .collect()
    }
    /// Just the differing paths.
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.inner.changes.iter().map(|c| c.path.clone()).collect()
    }
    fn __len__(&self) -> usize {
        self.inner.changes.len()
    }
    fn __repr__(&self) -> String {
        format!(
            "DriftReport(resource_id={}, changes={})",
            repr_opt(self.inner.resource_id.as_deref()),
            self.inner.changes.len()
        )
    }
}

/// Compares desired and actual configuration with one strategy.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct DriftDetector {
    inner: core::DriftDetector,
}

#[pymethods]
impl DriftDetector {
    /// `strategy`: ExactMatch(), SemanticEquality(...), ThresholdBased(...) or a callable
    /// `(desired, actual) -> iterable of changes`. Default: SemanticEquality().
    #[new]
    #[pyo3(signature = (strategy = None))]
    fn new(strategy: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let inner = match strategy {
            Some(s) => core::DriftDetector::new(strategy_arg(s)?),
            None => core::DriftDetector::default(),
        };
        Ok(Self { inner })
    }

    /// The strategy's name.
    #[getter]
    fn strategy_name(&self) -> String {
        self.inner.strategy().name().to_owned()
    }

    /// Compares one desired document with its actual counterpart (both dicts).
    fn detect(
        &self,
        py: Python<'_>,
        desired: &Bound<'_, PyDict>,
        actual: &Bound<'_, PyDict>,
    ) -> PyResult<DriftReport> {
        let desired = json_from_py(desired.as_any(), "desired")?;
        let actual = json_from_py(actual.as_any(), "actual")?;
        let report = detached(py, || self.inner.detect(&desired, &actual))?;
        Ok(DriftReport::wrap(report))
    }

    /// Compares many `(desired, actual)` pairs in one call; reports come back in order.
    fn detect_many(
        &self,
        py: Python<'_>,
        pairs: Vec<(Bound<'_, PyDict>, Bound<'_, PyDict>)>,
    ) -> PyResult<Vec<DriftReport>> {
        let values = pairs
            .iter()
            .map(|(d, a)| {
                Ok((
                    json_from_py(d.as_any(), "desired")?,
                    json_from_py(a.as_any(), "actual")?,
                ))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let reports = detached(py, || {
            values
                .iter()
                .map(|(d, a)| self.inner.detect(d, a))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(reports.into_iter().map(DriftReport::wrap).collect())
    }

    fn __repr__(&self) -> String {
        format!("DriftDetector(strategy={:?})", self.inner.strategy().name())
    }
}
