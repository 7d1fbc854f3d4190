//! Conversions between Python values and core types, with the library's own checks.
//!
//! - datetimes must be timezone-aware (a naive datetime is a `ValidationError`, a `ValueError`);
//!   they come back as UTC-aware datetimes;
//! - money amounts accept `decimal.Decimal`, `int` and `str`, never `float` (an
//!   `ArgumentTypeError`, a `TypeError`) and never lose digits;
//! - JSON-like values (dicts, lists, str, int, finite float, bool, None, Decimal, datetime)
//!   convert to `serde_json::Value` and back.

use chrono::{DateTime, Utc};
use omnicloud_core::webhook::TemplateValue;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType, PyTzInfo,
    PyTzInfoAccess,
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::errors::{BindingError, BindingResult};

/// Deepest nesting accepted when converting to JSON.
const MAX_JSON_DEPTH: usize = 64;

/// A timezone-aware Python datetime as a UTC instant.
pub(crate) fn utc_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<Utc>> {
    let Ok(dt) = obj.cast::<PyDateTime>() else {
        return Err(BindingError::type_error(format!(
            "{what} must be a timezone-aware datetime.datetime, got {}",
            type_name(obj)
        ))
        .into());
    };
    let unusable = |e: PyErr| -> PyErr {
        BindingError::value(format!("{what} cannot be converted to UTC: {e}")).into()
    };
    let naive = match dt.get_tzinfo() {
        None => true,
        Some(_) => dt.call_method0("utcoffset").map_err(unusable)?.is_none(),
    };
    if naive {
        return Err(BindingError::value(format!(
            "{what} must be a timezone-aware datetime, got naive datetime {} \
             (attach a tzinfo, for example datetime.timezone.utc)",
            dt.str()?
        ))
        .into());
    }
    // Any tzinfo (fixed offsets, zoneinfo, dateutil) is resolved by Python itself.
    let utc = dt
        .call_method1("astimezone", (PyTzInfo::utc(obj.py())?,))
        .map_err(unusable)?;
    utc.extract::<DateTime<Utc>>().map_err(unusable)
}

/// An optional datetime argument.
pub(crate) fn opt_utc_from_py(
    obj: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<DateTime<Utc>>> {
    obj.filter(|o| !o.is_none())
        .map(|o| utc_from_py(o, what))
        .transpose()
}

/// A decimal from `decimal.Decimal`, `int` or `str`; floats and bools are refused.
pub(crate) fn decimal_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Decimal> {
    if obj.is_instance_of::<PyFloat>() {
        return Err(BindingError::type_error(format!(
            "{what} must be a decimal.Decimal, int or str, not float ({}): floats cannot \
             represent money exactly; write decimal.Decimal(\"{}\")",
            obj.repr()?,
            obj.repr()?
        ))
        .into());
    }
    let text = if obj.is_instance_of::<PyBool>() {
        None
    } else if obj.is_instance_of::<PyInt>()
        || obj.is_instance_of::<PyString>()
        || obj.is_instance(decimal_type(obj.py())?)?
    {
        Some(obj.str()?.to_string())
    } else {
        None
    };
    let Some(text) = text else {
        return Err(BindingError::type_error(format!(
            "{what} must be a decimal.Decimal, int or str, got {}",
            type_name(obj)
        ))
        .into());
    };
    parse_decimal(text.trim(), what).map_err(Into::into)
}

fn parse_decimal(text: &str, what: &str) -> BindingResult<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
        // from_scientific may round; accept it only if it reads back to the same value.
        .filter(|d| Decimal::from_str_exact(&d.to_string()).is_ok())
        .ok_or_else(|| {
            BindingError::value(format!(
                "{what} {text:?} is not a finite decimal that fits 28 significant digits"
            ))
        })
}

fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    DECIMAL.import(py, "decimal", "Decimal")
}

/// A Python value's type name, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

/// What a JSON-like Python value is converted into: serde_json for the core's JSON, or
/// a template's values (no intermediate JSON).
pub(crate) trait JsonTarget: Sized {
    /// `None`.
    fn null() -> Self;
    /// A bool.
    fn bool(b: bool) -> Self;
    /// An integer that fits in 64 signed bits.
    fn int(i: i64) -> Self;
    /// An integer above `i64::MAX` that fits in 64 unsigned bits.
    fn uint(u: u64) -> Self;
    /// A finite float.
    fn float(f: f64) -> Self;
    /// A string.
    fn string(s: &str) -> Self;
    /// A list.
    fn list(items: Vec<Self>) -> Self;
    /// A map, in the dict's order.
    fn map(entries: Vec<(String, Self)>) -> Self;
}

impl JsonTarget for Value {
    fn null() -> Self {
        Value::Null
    }
    fn bool(b: bool) -> Self {
        Value::Bool(b)
    }
    fn int(i: i64) -> Self {
        Value::from(i)
    }
    fn uint(u: u64) -> Self {
        Value::from(u)
    }
    fn float(f: f64) -> Self {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
    fn string(s: &str) -> Self {
        Value::String(s.to_owned())
    }
    fn list(items: Vec<Self>) -> Self {
        Value::Array(items)
    }
    fn map(entries: Vec<(String, Self)>) -> Self {
        // Building the ordered map from all entries at once beats inserting one by one.
        Value::Object(entries.into_iter().collect())
    }
}

impl JsonTarget for TemplateValue {
    fn null() -> Self {
        TemplateValue::from(())
    }
    fn bool(b: bool) -> Self {
        TemplateValue::from(b)
    }
    fn int(i: i64) -> Self {
        TemplateValue::from(i)
    }
    fn uint(u: u64) -> Self {
        TemplateValue::from(u)
    }
    fn float(f: f64) -> Self {
        TemplateValue::from(f)
    }
    fn string(s: &str) -> Self {
        TemplateValue::from(s)
    }
    fn list(items: Vec<Self>) -> Self {
        TemplateValue::from(items)
    }
    fn map(entries: Vec<(String, Self)>) -> Self {
        TemplateValue::from(
            entries
                .into_iter()
                .collect::<std::collections::BTreeMap<String, Self>>(),
        )
    }
}

/// A JSON-like Python value as JSON.
pub(crate) fn json_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    json_from_py_at(obj, what, 0)
}

/// A JSON-like Python value as a template value (what [`json_from_py`] accepts, converted
/// straight into template values).
pub(crate) fn template_value_from_py(
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<TemplateValue> {
    json_from_py_at(obj, what, 0)
}

fn json_from_py_at<T: JsonTarget>(obj: &Bound<'_, PyAny>, what: &str, depth: usize) -> PyResult<T> {
    if depth > MAX_JSON_DEPTH {
        return Err(BindingError::value(format!(
            "{what} is nested deeper than {MAX_JSON_DEPTH} levels"
        ))
        .into());
    }
    // The common JSON types first, most frequent first.
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(T::string(s.to_str()?));
    }
    if obj.is_none() {
        return Ok(T::null());
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(T::bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(T::int(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(T::uint(u));
        }
        return Err(BindingError::value(format!(
            "{what}: integer {} does not fit in 64 bits",
            obj.str()?
        ))
        .into());
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(BindingError::value(format!("{what}: {v} is not a finite number")).into());
        }
        return Ok(T::float(v));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(BindingError::type_error(format!(
                    "{what}: dict keys must be str, got {}",
                    type_name(&k)
                ))
                .into());
            };
            entries.push((
                key.to_str()?.to_owned(),
                json_from_py_at(&v, what, depth + 1)?,
            ));
        }
        return Ok(T::map(entries));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let items = list
            .iter()
            .map(|item| json_from_py_at(&item, what, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(T::list(items));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let items = tuple
            .iter()
            .map(|item| json_from_py_at(&item, what, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(T::list(items));
    }
    if obj.is_instance(decimal_type(obj.py())?)? {
        // Exact decimals travel as strings, as JSON numbers would round through binary floats.
        return Ok(T::string(&obj.str()?.to_string()));
    }
    if obj.is_instance_of::<PyDateTime>() {
        let at = utc_from_py(obj, what)?;
        return Ok(T::string(&omnicloud_core::store::format_timestamp(at)));
    }
    Err(BindingError::type_error(format!(
        "{what} must be JSON-like (dict, list, tuple, str, int, float, bool, None, Decimal, \
         datetime), got {}",
        type_name(obj)
    ))
    .into())
}

/// JSON as Python (dicts, lists, str, int, float, bool, None).
pub(crate) fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// The member of the Python enum `omnicloud.enums.<name>` whose value is `value`.
pub(crate) fn py_enum<'py>(
    py: Python<'py>,
    name: &str,
    value: &str,
) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import("omnicloud.enums").map(Bound::unbind))?;
    module.bind(py).getattr(name)?.call1((value,))
}

/// A Python-style repr of an optional string: `None` or the quoted text.
pub(crate) fn repr_opt(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_owned(), |s| format!("{s:?}"))
}
