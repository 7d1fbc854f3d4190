//! `Currency` and `Money`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use omnicloud_core::billing::{self as core, RoundingStrategy};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rust_decimal::Decimal;

use crate::convert::{decimal_from_py, type_name};
use crate::errors::BindingError;

/// An ISO 4217 currency.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct Currency {
    pub(crate) inner: core::Currency,
}

#[pymethods]
impl Currency {
    #[new]
    fn new(code: &str) -> PyResult<Self> {
        Ok(Self {
            inner: core::Currency::new(code).map_err(BindingError::from)?,
        })
    }

    /// The alphabetic code (`"EUR"`).
    #[getter]
    fn code(&self) -> &'static str {
        self.inner.code()
    }

    /// Decimal places of the minor unit; None where ISO 4217 defines none (XAU, XDR).
    #[getter]
    fn minor_units(&self) -> Option<u32> {
        self.inner.minor_units()
    }

    /// The numeric code (978 for EUR).
    #[getter]
    fn numeric(&self) -> u16 {
        self.inner.numeric()
    }

    /// The English name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Whether ISO 4217 has withdrawn the code (it parses, but cannot be billed).
    #[getter]
    fn withdrawn(&self) -> bool {
        self.inner.is_withdrawn()
    }

    /// Whether money in this currency can be billed (it has a minor unit and is current).
    #[getter]
    fn billable(&self) -> bool {
        self.inner.billable_minor_units().is_ok()
    }

    /// Every currency of the ISO 4217 list of 2026-01-01, sorted by code.
    #[staticmethod]
    fn all() -> Vec<Currency> {
        core::Currency::all()
            .map(|inner| Currency { inner })
            .collect()
    }

    /// Equal to another Currency with the same code, or to the code itself.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(c) = other.cast::<Currency>() {
            c.get().inner == self.inner
        } else if let Ok(s) = other.cast::<PyString>() {
            s.to_str().is_ok_and(|s| s == self.inner.code())
        } else {
            false
        }
    }

    /// Hashes like its code, so `Currency("EUR")` and `"EUR"` are interchangeable as keys.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyString::new(py, self.inner.code()).hash()
    }

    fn __str__(&self) -> &'static str {
        self.inner.code()
    }

    fn __repr__(&self) -> String {
        format!("Currency({:?})", self.inner.code())
    }
}

/// A currency argument: a `Currency` or its code.
pub(crate) fn currency_arg(obj: &Bound<'_, PyAny>) -> PyResult<core::Currency> {
    if let Ok(c) = obj.cast::<Currency>() {
        return Ok(c.get().inner);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return core::Currency::new(s.to_str()?).map_err(|e| BindingError::from(e).into());
    }
    Err(BindingError::type_error(format!(
        "currency must be a Currency or an ISO 4217 code string, got {}",
        type_name(obj)
    ))
    .into())
}

/// An exact amount of one currency.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Money {
    pub(crate) inner: core::Money,
}

pub(crate) fn strategy_arg(name: &str) -> PyResult<RoundingStrategy> {
    Ok(match name {
        "half_away_from_zero" => RoundingStrategy::HalfAwayFromZero,
        "half_even" => RoundingStrategy::HalfEven,
        "half_toward_zero" => RoundingStrategy::HalfTowardZero,
        "toward_zero" => RoundingStrategy::TowardZero,
        "away_from_zero" => RoundingStrategy::AwayFromZero,
        "floor" => RoundingStrategy::Floor,
        "ceiling" => RoundingStrategy::Ceiling,
        other => {
            return Err(BindingError::value(format!(
                "unknown rounding strategy {other:?} (see omnicloud.RoundingStrategy)"
            ))
            .into());
        }
    })
}

impl Money {
    fn wrap(inner: core::Money) -> Self {
        Self { inner }
    }

    /// Applies `op` to two Money values; anything else is `NotImplemented`, so Python can try
    /// the other operand (and then raise its usual TypeError).
    fn binary(
        &self,
        other: &Bound<'_, PyAny>,
        op: impl FnOnce(
            &core::Money,
            &core::Money,
        ) -> Result<core::Money, omnicloud_core::error::MoneyError>,
    ) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Money>() else {
            return Ok(py.NotImplemented());
        };
        let result = op(&self.inner, &other.get().inner).map_err(BindingError::from)?;
        Ok(Py::new(py, Self::wrap(result))?.into_any())
    }
}

#[pymethods]
impl Money {
    #[new]
    fn new(amount: &Bound<'_, PyAny>, currency: &Bound<'_, PyAny>) -> PyResult<Self> {
        let amount = decimal_from_py(amount, "amount")?;
        Ok(Self::wrap(core::Money::new(
            amount,
            currency_arg(currency)?,
        )))
    }

    /// The exact amount.
    #[getter]
    fn amount(&self) -> Decimal {
        self.inner.amount()
    }

    /// The currency.
    #[getter]
    fn currency(&self) -> Currency {
        Currency {
            inner: self.inner.currency(),
        }
    }

    /// Rounded to the currency's minor units (default: half away from zero).
    #[pyo3(signature = (strategy = "half_away_from_zero"))]
    fn rounded(&self, strategy: &str) -> PyResult<Self> {
        let r = self
            .inner
            .rounded_with(strategy_arg(strategy)?)
            .map_err(BindingError::from)?;
        Ok(Self::wrap(r))
    }

    /// Splits the amount by `weights` (Decimal, int or str; never float) with the
    /// largest-remainder method in minor units: the parts always sum exactly to the amount.
    fn allocate(&self, weights: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<Self>> {
        let weights = weights
            .iter()
            .map(|w| decimal_from_py(w, "weight"))
            .collect::<PyResult<Vec<_>>>()?;
        let parts = self.inner.allocate(&weights).map_err(BindingError::from)?;
        Ok(parts.into_iter().map(Self::wrap).collect())
    }

    fn __add__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(other, core::Money::checked_add)
    }

    /// `0 + money` is `money`, so `sum()` works over Money; other left operands are not
    /// supported.
    fn __radd__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let is_zero = other.is_exact_instance_of::<pyo3::types::PyInt>()
            && other.extract::<i64>().is_ok_and(|v| v == 0);
        if is_zero {
            return Ok(slf.clone().into_any().unbind());
        }
        Ok(py.NotImplemented())
    }

    fn __sub__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(other, core::Money::checked_sub)
    }

    fn __mul__(&self, factor: &Bound<'_, PyAny>) -> PyResult<Self> {
        let factor = decimal_from_py(factor, "factor")?;
        Ok(Self::wrap(
            self.inner.checked_mul(factor).map_err(BindingError::from)?,
        ))
    }

    fn __rmul__(&self, factor: &Bound<'_, PyAny>) -> PyResult<Self> {
        self.__mul__(factor)
    }

    fn __neg__(&self) -> Self {
        Self::wrap(core::Money::new(
            -self.inner.amount(),
            self.inner.currency(),
        ))
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Money>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get().inner;
        let result = match op {
            CompareOp::Eq => self.inner == other,
            CompareOp::Ne => self.inner != other,
            _ => op.matches(self.inner.checked_cmp(&other).map_err(BindingError::from)?),
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.inner.amount().normalize().hash(&mut h);
        self.inner.currency().hash(&mut h);
        h.finish()
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Money('{}', '{}')",
            self.inner.amount(),
            self.inner.currency().code()
        )
    }
}

/// A rate: one `base` is worth `rate` of `quote`.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ExchangeRate {
    inner: core::ExchangeRate,
}

impl ExchangeRate {
    pub(crate) fn wrap(inner: core::ExchangeRate) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl ExchangeRate {
    /// The currency converted from.
    #[getter]
    fn base(&self) -> Currency {
        Currency {
            inner: self.inner.base,
        }
    }
    /// The currency converted to.
    #[getter]
    fn quote(&self) -> Currency {
        Currency {
            inner: self.inner.quote,
        }
    }
    /// Units of `quote` per unit of `base` (full precision).
    #[getter]
    fn rate(&self) -> Decimal {
        self.inner.rate
    }
    /// When it was published.
    #[getter]
    fn as_of(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.as_of
    }
    /// Who published it, or how it was derived.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }
    fn __repr__(&self) -> String {
        format!(
            "ExchangeRate({}/{} = {} as of {}, source={:?})",
            self.inner.base,
            self.inner.quote,
            self.inner.rate,
            self.inner.as_of.to_rfc3339(),
            self.inner.source
        )
    }
}

/// The append-only exchange-rate history.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ExchangeRates {
    pub(crate) inner: std::sync::Arc<core::ExchangeRates>,
}

#[pymethods]
impl ExchangeRates {
    /// With a `store`, the history is loaded from it and every new rate is written there.
    #[new]
    #[pyo3(signature = (store = None))]
    fn new(py: Python<'_>, store: Option<&Bound<'_, crate::store::Store>>) -> PyResult<Self> {
        let inner = match store {
            Some(s) => {
                let store = s.get().inner.clone();
                crate::gateway::detached(py, move || core::ExchangeRates::persistent(store))?
            }
            None => core::ExchangeRates::new(),
        };
        Ok(Self {
            inner: std::sync::Arc::new(inner),
        })
    }

    /// Records a rate (Decimal, int or str; never float). History is append-only.
    #[pyo3(signature = (base, quote, rate, as_of, source = "ECB"))]
    fn set_rate(
        &self,
        base: &Bound<'_, PyAny>,
        quote: &Bound<'_, PyAny>,
        rate: &Bound<'_, PyAny>,
        as_of: &Bound<'_, PyAny>,
        source: &str,
    ) -> PyResult<()> {
        let rate = decimal_from_py(rate, "rate")?;
        let as_of = crate::convert::utc_from_py(as_of, "as_of")?;
        self.inner
            .set_rate(
                currency_arg(base)?,
                currency_arg(quote)?,
                rate,
                as_of,
                source,
            )
            .map_err(|e| BindingError::from(e).into())
    }

    /// Loads rates added to the store by other connections or processes since the last load
    /// (services call it before each run; a history without a store has nothing to load).
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        let rates = self.inner.clone();
        crate::gateway::detached(py, move || rates.refresh())
    }

    /// The rate from `base` to `quote` at `at` (recorded, inverted or triangulated).
    fn rate(
        &self,
        base: &Bound<'_, PyAny>,
        quote: &Bound<'_, PyAny>,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<Decimal> {
        Ok(self.quote(base, quote, at)?.inner.rate)
    }

    /// The rate with its publication time and source.
    fn quote(
        &self,
        base: &Bound<'_, PyAny>,
        quote: &Bound<'_, PyAny>,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<ExchangeRate> {
        let at = crate::convert::utc_from_py(at, "at")?;
        let inner = self
            .inner
            .rate(currency_arg(base)?, currency_arg(quote)?, at)
            .map_err(BindingError::from)?;
        Ok(ExchangeRate { inner })
    }

    /// `money` converted to `to` at `at`, unrounded.
    fn convert(
        &self,
        money: PyRef<'_, Money>,
        to: &Bound<'_, PyAny>,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<Money> {
        let at = crate::convert::utc_from_py(at, "at")?;
        let (converted, _) = self
            .inner
            .convert(&money.inner, currency_arg(to)?, at)
            .map_err(BindingError::from)?;
        Ok(Money::wrap(converted))
    }

    fn __repr__(&self) -> &'static str {
        "ExchangeRates()"
    }
}
