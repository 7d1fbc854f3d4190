//! `BillingService`, `Invoice`, `InvoiceLine`, `BillingAccount`, `Discount`, `PoolAllocation`,
//! `PoolShare`, `MigrationReport`, `MigrationProgress` and `migrate_billing_currency`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::billing::{self as core, DiscountTerms, MigrationOptions, Period};
use omnicloud_core::clock::SharedClock;
use omnicloud_core::ids::TenantId;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rust_decimal::Decimal;

use crate::clock::clock_arg;
use crate::convert::{decimal_from_py, opt_utc_from_py, repr_opt, type_name, utc_from_py};
use crate::errors::BindingError;
use crate::gateway::detached;
use crate::money::{Currency, ExchangeRate, ExchangeRates, Money, currency_arg, strategy_arg};
use crate::store::Store;
use crate::tenancy::tenant_id_arg;

/// Usage tuples `(tenant_id, meter, quantity, region, start, end[, resource_id])`, validated.
pub(crate) fn usage_records_from_py(
    records: &Bound<'_, PyAny>,
) -> PyResult<Vec<core::UsageRecord>> {
    let mut batch = Vec::new();
    for item in records.try_iter()? {
        let item = item?;
        let t = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "usage records must be tuples, got {}",
                type_name(&item)
            ))
        })?;
        if !(6..=7).contains(&t.len()) {
            return Err(BindingError::value(format!(
                "a usage tuple has 6 or 7 items, got {}",
                t.len()
            ))
            .into());
        }
        let resource = if t.len() == 7 {
            t.get_item(6)?.extract::<Option<String>>()?
        } else {
            None
        };
        batch.push(
            core::UsageRecord::new(
                tenant_id_arg(&t.get_item(0)?.extract::<String>()?)?,
                t.get_item(1)?.extract::<String>()?,
                decimal_from_py(&t.get_item(2)?, "quantity")?,
                t.get_item(3)?.extract::<String>()?,
                utc_from_py(&t.get_item(4)?, "start")?,
                utc_from_py(&t.get_item(5)?, "end")?,
                resource,
            )
            .map_err(BindingError::from)?,
        );
    }
    Ok(batch)
}

/// A usage record as the tuple `usage_records_from_py` reads.
pub(crate) type UsageTuple = (
    String,
    String,
    Decimal,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
);

/// `record` as a [`UsageTuple`].
pub(crate) fn usage_tuple(record: core::UsageRecord) -> UsageTuple {
    (
        record.tenant_id.to_string(),
        record.meter,
        record.quantity,
        record.region,
        record.start,
        record.end,
        record.resource_id,
    )
}

fn money(inner: core::Money) -> Money {
    Money { inner }
}

fn currency(inner: core::Currency) -> Currency {
    Currency { inner }
}

fn money_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<core::Money> {
    obj.cast::<Money>().map(|m| m.get().inner).map_err(|_| {
        BindingError::type_error(format!("{what} must be a Money, got {}", type_name(obj))).into()
    })
}

fn period_arg(start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>) -> PyResult<Period> {
    let start = utc_from_py(start, "period_start")?;
    let end = utc_from_py(end, "period_end")?;
    Period::new(start, end).map_err(|e| BindingError::from(e).into())
}

/// A tenant's billing account.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct BillingAccount {
    inner: core::BillingAccount,
}

#[pymethods]
impl BillingAccount {
    /// The tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The currency a period starting now is invoiced in.
    #[getter]
    fn currency(&self) -> Currency {
        currency(self.inner.currency)
    }
    /// A currency change waiting for the next period, if any.
    #[getter]
    fn pending_currency(&self) -> Option<Currency> {
        self.inner.pending.map(|(c, _)| currency(c))
    }
    /// When the pending change takes effect.
    #[getter]
    fn pending_from(&self) -> Option<DateTime<Utc>> {
        self.inner.pending.map(|(_, at)| at)
    }
    /// Whether the account came from the legacy USD-only system.
    #[getter]
    fn legacy(&self) -> bool {
        self.inner.legacy
    }
    fn __repr__(&self) -> String {
        let pending = self
            .inner
            .pending
            .map(|(c, at)| format!(", pending={c} from {}", at.to_rfc3339()))
            .unwrap_or_default();
        format!(
            "BillingAccount({:?}, currency={}{pending})",
            self.inner.tenant_id.as_str(),
            self.inner.currency
        )
    }
}

/// One line of an invoice.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct InvoiceLine {
    inner: core::InvoiceLine,
}

#[pymethods]
impl InvoiceLine {
    /// `usage`, `pool_share` or `correction`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind {
            core::LineKind::Usage => "usage",
            core::LineKind::PoolShare => "pool_share",
            core::LineKind::Correction => "correction",
        }
    }
    /// The meter (usage), the pool (pool share) or `correction`.
    #[getter]
    fn meter(&self) -> &str {
        &self.inner.meter
    }
    /// The region the usage ran in.
    #[getter]
    fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }
    /// The prorated quantity (1 for pool shares and corrections).
    #[getter]
    fn quantity(&self) -> Decimal {
        self.inner.quantity
    }
    /// Price per unit in the invoice currency, full precision.
    #[getter]
    fn unit_price(&self) -> Money {
        money(self.inner.unit_price)
    }
    /// The line's amount, rounded to minor units.
    #[getter]
    fn amount(&self) -> Money {
        money(self.inner.amount)
    }
    /// The rate used when the price or share was in another currency.
    #[getter]
    fn conversion(&self) -> Option<ExchangeRate> {
        self.inner.conversion.clone().map(ExchangeRate::wrap)
    }
    fn __repr__(&self) -> String {
        format!(
            "InvoiceLine({}, {}, region={}, quantity={}, amount={})",
            self.kind(),
            self.inner.meter,
            repr_opt(self.inner.region.as_deref()),
            self.inner.quantity,
            self.inner.amount
        )
    }
}

/// An issued invoice or credit note. Immutable: setting an attribute raises
/// `InvoiceImmutableError`.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Invoice {
    inner: Arc<core::Invoice>,
}

#[pymethods]
impl Invoice {
    /// Its id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Whose it is.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// `invoice` or `credit_note`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }
    /// For a credit note: the invoice it corrects.
    #[getter]
    fn corrects(&self) -> Option<&str> {
        self.inner.corrects.as_deref()
    }
    /// First instant of the billed period.
    #[getter]
    fn period_start(&self) -> Option<DateTime<Utc>> {
        self.inner.period.map(|p| p.start)
    }
    /// First instant after the billed period.
    #[getter]
    fn period_end(&self) -> Option<DateTime<Utc>> {
        self.inner.period.map(|p| p.end)
    }
    /// The currency of every amount on it.
    #[getter]
    fn currency(&self) -> Currency {
        currency(self.inner.currency)
    }
    /// The lines.
    #[getter]
    fn lines(&self) -> Vec<InvoiceLine> {
        self.inner
            .lines
            .iter()
            .map(|l| InvoiceLine { inner: l.clone() })
            .collect()
    }
    /// Sum of the lines.
    #[getter]
    fn subtotal(&self) -> Money {
        money(self.inner.subtotal)
    }
    /// The discounts applied, as (discount id, amount) pairs.
    #[getter]
    fn discounts(&self) -> Vec<(String, Money)> {
        self.inner
            .discounts
            .iter()
            .map(|d| (d.discount_id.clone(), money(d.amount)))
            .collect()
    }
    /// Credits taken from the wallet in this currency.
    #[getter]
    fn credits_applied(&self) -> Money {
        money(self.inner.credits_applied)
    }
    /// What is due (credit notes: the amount credited).
    #[getter]
    fn total(&self) -> Money {
        money(self.inner.total)
    }
    /// One unit of the currency in USD when issued.
    #[getter]
    fn exchange_rate_to_usd(&self) -> Decimal {
        self.inner.exchange_rate_to_usd
    }
    /// When that rate was published.
    #[getter]
    fn rate_as_of(&self) -> DateTime<Utc> {
        self.inner.rate_as_of
    }
    /// Who published that rate (or how it was derived).
    #[getter]
    fn rate_source(&self) -> &str {
        &self.inner.rate_source
    }
    /// The total in USD at that rate, rounded to cents.
    #[getter]
    fn total_usd(&self) -> Money {
        money(self.inner.total_usd)
    }
    /// When it was issued.
    #[getter]
    fn issued_at(&self) -> DateTime<Utc> {
        self.inner.issued_at
    }
    /// Whether it came from the legacy USD-only system.
    #[getter]
    fn legacy(&self) -> bool {
        self.inner.legacy
    }
    /// A credit note's reason.
    #[getter]
    fn memo(&self) -> Option<&str> {
        self.inner.memo.as_deref()
    }
    fn __setattr__(&self, name: &str, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(
            BindingError::from(omnicloud_core::error::BillingError::InvoiceImmutable {
                invoice_id: self.inner.id.clone(),
                reason: format!("attribute {name:?} cannot be set"),
            })
            .into(),
        )
    }
    fn __delattr__(&self, name: &str) -> PyResult<()> {
        Err(
            BindingError::from(omnicloud_core::error::BillingError::InvoiceImmutable {
                invoice_id: self.inner.id.clone(),
                reason: format!("attribute {name:?} cannot be deleted"),
            })
            .into(),
        )
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Invoice>()
            .is_ok_and(|o| *o.get().inner == *self.inner)
    }
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyString::new(py, &self.inner.id).hash()
    }
    fn __repr__(&self) -> String {
        format!(
            "Invoice({:?}, tenant={:?}, kind={}, total={}{})",
            self.inner.id,
            self.inner.tenant_id.as_str(),
            self.inner.kind.as_str(),
            self.inner.total,
            if self.inner.legacy { ", legacy" } else { "" }
        )
    }
}

fn invoice(inner: core::Invoice) -> Invoice {
    Invoice {
        inner: Arc::new(inner),
    }
}

/// A discount a tenant holds.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Discount {
    inner: core::Discount,
}

#[pymethods]
impl Discount {
    /// Its id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Whose it is.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The percentage off, for a percentage discount.
    #[getter]
    fn percent(&self) -> Option<Decimal> {
        match self.inner.terms {
            DiscountTerms::Percent(p) => Some(p),
            DiscountTerms::Amount(_) => None,
        }
    }
    /// The amount off, for a fixed discount.
    #[getter]
    fn amount(&self) -> Option<Money> {
        match self.inner.terms {
            DiscountTerms::Amount(m) => Some(money(m)),
            DiscountTerms::Percent(_) => None,
        }
    }
    /// Invoices it still applies to (None: every invoice).
    #[getter]
    fn remaining_invoices(&self) -> Option<u32> {
        self.inner.remaining_invoices
    }
    fn __repr__(&self) -> String {
        let terms = match self.inner.terms {
            DiscountTerms::Percent(p) => format!("{p}%"),
            DiscountTerms::Amount(m) => m.to_string(),
        };
        format!("Discount({:?}, {terms})", self.inner.id)
    }
}

/// One tenant's part of a pool allocation.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct PoolShare {
    inner: core::PoolShare,
}

#[pymethods]
impl PoolShare {
    /// Whose share it is.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The weight it was given.
    #[getter]
    fn weight(&self) -> Decimal {
        self.inner.weight
    }
    /// The share in the pool's currency.
    #[getter]
    fn share(&self) -> Money {
        money(self.inner.share)
    }
    /// The share in the tenant's billing currency.
    #[getter]
    fn charge(&self) -> Money {
        money(self.inner.charge)
    }
    /// The recorded conversion rate.
    #[getter]
    fn rate(&self) -> ExchangeRate {
        ExchangeRate::wrap(self.inner.rate.clone())
    }
    fn __repr__(&self) -> String {
        format!(
            "PoolShare({:?}, share={}, charge={})",
            self.inner.tenant_id.as_str(),
            self.inner.share,
            self.inner.charge
        )
    }
}

/// A recorded split of a shared cost.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct PoolAllocation {
    inner: core::PoolAllocation,
}

#[pymethods]
impl PoolAllocation {
    /// Its id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// The pool's name.
    #[getter]
    fn pool(&self) -> &str {
        &self.inner.pool
    }
    /// The cost split.
    #[getter]
    fn total(&self) -> Money {
        money(self.inner.total)
    }
    /// When the cost was incurred.
    #[getter]
    fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }
    /// The shares, in the order the weights were given.
    #[getter]
    fn shares(&self) -> Vec<PoolShare> {
        self.inner
            .shares
            .iter()
            .map(|s| PoolShare { inner: s.clone() })
            .collect()
    }
    /// The sum of the shares in the pool's currency (always the total).
    fn recovered_total(&self) -> PyResult<Money> {
        Ok(money(
            self.inner.recovered_total().map_err(BindingError::from)?,
        ))
    }
    fn __repr__(&self) -> String {
        format!(
            "PoolAllocation({:?}, total={}, shares={})",
            self.inner.pool,
            self.inner.total,
            self.inner.shares.len()
        )
    }
}

/// Billing: accounts, prices, usage, invoices, credits, discounts and cost pools.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct BillingService {
    pub(crate) inner: Arc<core::BillingService>,
}

#[pymethods]
impl BillingService {
    /// Without a store, an in-memory one; without rates, the store's persisted history.
    #[new]
    #[pyo3(signature = (store = None, clock = None, rates = None, rounding = "half_away_from_zero"))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
        rates: Option<&Bound<'_, ExchangeRates>>,
        rounding: &str,
    ) -> PyResult<Self> {
        let clock: SharedClock = clock_arg(clock)?;
        let rounding = strategy_arg(rounding)?;
        let store = match store {
            Some(s) => s.get().inner.clone(),
            None => detached(py, omnicloud_core::store::Store::memory)?,
        };
        let rates = match rates {
            Some(r) => r.get().inner.clone(),
            None => {
                let s = store.clone();
                Arc::new(detached(py, move || core::ExchangeRates::persistent(s))?)
            }
        };
        Ok(Self {
            inner: Arc::new(core::BillingService::new(store, clock, rates).with_rounding(rounding)),
        })
    }

    /// Opens an account, or changes its currency from the next billing period (the start of
    /// the next calendar month, or `effective_from`).
    #[pyo3(signature = (tenant_id, billing_currency = None, effective_from = None))]
    fn upsert_tenant(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        billing_currency: Option<&Bound<'_, PyAny>>,
        effective_from: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<BillingAccount> {
        let id = tenant_id_arg(tenant_id)?;
        let c = billing_currency
            .map(currency_arg)
            .transpose()?
            .unwrap_or_else(core::Currency::usd);
        let at = opt_utc_from_py(effective_from, "effective_from")?;
        let svc = self.inner.clone();
        let inner = detached(py, move || svc.upsert_tenant(&id, c, at))?;
        Ok(BillingAccount { inner })
    }

    /// The tenant's account.
    fn account(&self, py: Python<'_>, tenant_id: &str) -> PyResult<BillingAccount> {
        let id = tenant_id_arg(tenant_id)?;
        let svc = self.inner.clone();
        let inner = detached(py, move || svc.account(&id))?;
        Ok(BillingAccount { inner })
    }

    /// The currency a period starting at `at` is invoiced in.
    fn currency_at(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<Currency> {
        let id = tenant_id_arg(tenant_id)?;
        let at = utc_from_py(at, "at")?;
        let svc = self.inner.clone();
        Ok(currency(detached(py, move || svc.currency_at(&id, at))?))
    }

    /// Sets a meter's unit price in the price's currency (for one region, or the default).
    #[pyo3(signature = (meter, price, region = None))]
    fn set_price(
        &self,
        py: Python<'_>,
        meter: &str,
        price: &Bound<'_, PyAny>,
        region: Option<&str>,
    ) -> PyResult<()> {
        let price = money_arg(price, "price")?;
        let svc = self.inner.clone();
        detached(py, move || svc.set_price(meter, price, region))
    }

    /// Records usage: `quantity` (Decimal, int or str) of `meter` in `region` over
    /// `[start, end)`.
    #[pyo3(signature = (tenant_id, meter, quantity, region, start, end, resource_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn record_usage(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        meter: &str,
        quantity: &Bound<'_, PyAny>,
        region: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        resource_id: Option<String>,
    ) -> PyResult<()> {
        let record = core::UsageRecord::new(
            tenant_id_arg(tenant_id)?,
            meter,
            decimal_from_py(quantity, "quantity")?,
            region,
            utc_from_py(start, "start")?,
            utc_from_py(end, "end")?,
            resource_id,
        )
        .map_err(BindingError::from)?;
        let svc = self.inner.clone();
        detached(py, move || svc.record_usage(&record))
    }

    /// Records many usage tuples `(tenant_id, meter, quantity, region, start, end[, resource_id])`
    /// in one transaction: all or nothing. Returns how many.
    fn record_usage_many(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<usize> {
        let batch = usage_records_from_py(records)?;
        let svc = self.inner.clone();
        detached(py, move || svc.record_usage_many(&batch))
    }

    /// Adds credit (a positive Money) to the tenant's wallet in its currency; returns the
    /// balance. Credits pay only invoices in their own currency.
    #[pyo3(signature = (tenant_id, amount, reason = "credit"))]
    fn add_credit(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        amount: &Bound<'_, PyAny>,
        reason: &str,
    ) -> PyResult<Money> {
        let id = tenant_id_arg(tenant_id)?;
        let amount = money_arg(amount, "amount")?;
        let svc = self.inner.clone();
        Ok(money(detached(py, move || {
            svc.add_credit(&id, amount, reason)
        })?))
    }

    /// The tenant's credit balance in `currency`.
    fn credit_balance(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        currency: &Bound<'_, PyAny>,
    ) -> PyResult<Money> {
        let id = tenant_id_arg(tenant_id)?;
        let c = currency_arg(currency)?;
        let svc = self.inner.clone();
        Ok(money(detached(py, move || svc.credit_balance(&id, c))?))
    }

    /// Every credit movement in `currency`, oldest first (they sum to the balance).
    fn credit_ledger(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        currency: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Money>> {
        let id = tenant_id_arg(tenant_id)?;
        let c = currency_arg(currency)?;
        let svc = self.inner.clone();
        let rows = detached(py, move || svc.credit_ledger(&id, c))?;
        Ok(rows.into_iter().map(money).collect())
    }

    /// Gives a discount: exactly one of `percent` (any currency) or `amount` (a Money; only
    /// invoices in its currency), for the next `invoices` invoices (None: every invoice).
    #[pyo3(
        signature = (tenant_id, percent = None, amount = None, invoices = Some(1)),
        text_signature = "(self, /, tenant_id, percent=None, amount=None, invoices=1)"
    )]
    fn add_discount(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        percent: Option<&Bound<'_, PyAny>>,
        amount: Option<&Bound<'_, PyAny>>,
        invoices: Option<i64>,
    ) -> PyResult<Discount> {
        let id = tenant_id_arg(tenant_id)?;
        let invoices = invoices
            .map(|n| {
                u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                    BindingError::value(format!(
                        "invoices must be a positive number of invoices or None, got {n}"
                    ))
                })
            })
            .transpose()?;
        let terms = match (
            percent.filter(|p| !p.is_none()),
            amount.filter(|a| !a.is_none()),
        ) {
            (Some(p), None) => DiscountTerms::Percent(decimal_from_py(p, "percent")?),
            (None, Some(a)) => DiscountTerms::Amount(money_arg(a, "amount")?),
            _ => {
                return Err(BindingError::value(
                    "give exactly one of percent= or amount= for a discount",
                )
                .into());
            }
        };
        let svc = self.inner.clone();
        let inner = detached(py, move || svc.add_discount(&id, terms, invoices))?;
        Ok(Discount { inner })
    }

    /// The tenant's discounts that still apply.
    fn discounts(&self, py: Python<'_>, tenant_id: &str) -> PyResult<Vec<Discount>> {
        let id = tenant_id_arg(tenant_id)?;
        let svc = self.inner.clone();
        let rows = detached(py, move || svc.discounts(&id))?;
        Ok(rows.into_iter().map(|inner| Discount { inner }).collect())
    }

    /// Issues the tenant's invoice for `[period_start, period_end)`.
    fn generate_invoice(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        period_start: &Bound<'_, PyAny>,
        period_end: &Bound<'_, PyAny>,
    ) -> PyResult<Invoice> {
        let id = tenant_id_arg(tenant_id)?;
        let period = period_arg(period_start, period_end)?;
        let svc = self.inner.clone();
        Ok(invoice(detached(py, move || {
            svc.generate_invoice(&id, period)
        })?))
    }

    /// Computes the invoice without issuing it (nothing stored, nothing used up).
    fn preview_invoice(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        period_start: &Bound<'_, PyAny>,
        period_end: &Bound<'_, PyAny>,
    ) -> PyResult<Invoice> {
        let id = tenant_id_arg(tenant_id)?;
        let period = period_arg(period_start, period_end)?;
        let svc = self.inner.clone();
        Ok(invoice(detached(py, move || {
            svc.preview_invoice(&id, period)
        })?))
    }

    /// Issues invoices for the period to every account (or those listed) not yet invoiced
    /// for it, in one transaction.
    #[pyo3(signature = (period_start, period_end, tenant_ids = None))]
    fn generate_invoices(
        &self,
        py: Python<'_>,
        period_start: &Bound<'_, PyAny>,
        period_end: &Bound<'_, PyAny>,
        tenant_ids: Option<Vec<String>>,
    ) -> PyResult<Vec<Invoice>> {
        let period = period_arg(period_start, period_end)?;
        let ids = tenant_ids
            .map(|v| {
                v.iter()
                    .map(|t| tenant_id_arg(t))
                    .collect::<PyResult<Vec<_>>>()
            })
            .transpose()?;
        let svc = self.inner.clone();
        let rows = detached(py, move || svc.generate_invoices(period, ids.as_deref()))?;
        Ok(rows.into_iter().map(invoice).collect())
    }

    /// The invoice or credit note with this id.
    fn invoice(&self, py: Python<'_>, invoice_id: &str) -> PyResult<Invoice> {
        let svc = self.inner.clone();
        Ok(invoice(detached(py, move || svc.invoice(invoice_id))?))
    }

    /// The tenant's invoices and credit notes, legacy ones included, oldest first.
    fn invoices(&self, py: Python<'_>, tenant_id: &str) -> PyResult<Vec<Invoice>> {
        let id = tenant_id_arg(tenant_id)?;
        let svc = self.inner.clone();
        let rows = detached(py, move || svc.invoices(&id))?;
        Ok(rows.into_iter().map(invoice).collect())
    }

    /// Issues a credit note for part or all of an invoice; the amount goes to the tenant's
    /// credit wallet.
    #[pyo3(signature = (invoice_id, amount, reason = "correction"))]
    fn issue_credit_note(
        &self,
        py: Python<'_>,
        invoice_id: &str,
        amount: &Bound<'_, PyAny>,
        reason: &str,
    ) -> PyResult<Invoice> {
        let amount = money_arg(amount, "amount")?;
        let svc = self.inner.clone();
        Ok(invoice(detached(py, move || {
            svc.issue_credit_note(invoice_id, amount, reason)
        })?))
    }

    /// Splits `total` across tenants by `weights` ({tenant_id: weight}, in order), converting
    /// each share to the tenant's billing currency at `at`.
    #[pyo3(signature = (total, weights, at, pool = "shared"))]
    fn allocate_pool(
        &self,
        py: Python<'_>,
        total: &Bound<'_, PyAny>,
        weights: &Bound<'_, PyDict>,
        at: &Bound<'_, PyAny>,
        pool: &str,
    ) -> PyResult<PoolAllocation> {
        let total = money_arg(total, "total")?;
        let at = utc_from_py(at, "at")?;
        let mut parts = Vec::with_capacity(weights.len());
        for (k, v) in weights.iter() {
            let tenant: String = k.extract()?;
            parts.push((tenant_id_arg(&tenant)?, decimal_from_py(&v, "weight")?));
        }
        let svc = self.inner.clone();
        let inner = detached(py, move || svc.allocate_pool(pool, total, &parts, at))?;
        Ok(PoolAllocation { inner })
    }

    /// Imports accounts of the legacy USD-only system; returns how many were new.
    fn import_legacy_accounts(&self, py: Python<'_>, tenant_ids: Vec<String>) -> PyResult<usize> {
        let ids = tenant_ids
            .iter()
            .map(|t| tenant_id_arg(t))
            .collect::<PyResult<Vec<_>>>()?;
        let svc = self.inner.clone();
        detached(py, move || svc.import_legacy_accounts(&ids))
    }

    /// Imports legacy USD invoices, given as tuples `(id, tenant_id, amount_usd, period_start,
    /// period_end, issued_at)`; the amount (str or Decimal) is kept exactly as written.
    fn import_legacy_invoices(
        &self,
        py: Python<'_>,
        invoices: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let mut rows = Vec::new();
        for item in invoices.try_iter()? {
            let item = item?;
            let t = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "legacy invoices must be tuples, got {}",
                    type_name(&item)
                ))
            })?;
            if t.len() != 6 {
                return Err(BindingError::value(format!(
                    "a legacy invoice tuple has 6 items, got {}",
                    t.len()
                ))
                .into());
            }
            let amount = t.get_item(2)?;
            let amount_usd = if amount.is_instance_of::<PyString>() {
                amount.extract::<String>()?
            } else {
                decimal_from_py(&amount, "amount_usd")?;
                amount.str()?.extract::<String>()?
            };
            rows.push(core::LegacyInvoice {
                id: t.get_item(0)?.extract()?,
                tenant_id: tenant_id_arg(&t.get_item(1)?.extract::<String>()?)?,
                amount_usd,
                period: period_arg(&t.get_item(3)?, &t.get_item(4)?)?,
                issued_at: utc_from_py(&t.get_item(5)?, "issued_at")?,
            });
        }
        let svc = self.inner.clone();
        detached(py, move || svc.import_legacy_invoices(&rows))
    }

    fn __repr__(&self) -> String {
        format!(
            "BillingService(store={})",
            self.inner.store().label().display()
        )
    }
}

/// Progress of the currency migration, after each committed batch.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct MigrationProgress {
    inner: core::MigrationProgress,
}

#[pymethods]
impl MigrationProgress {
    /// Accounts processed in this pass so far (earlier runs included).
    #[getter]
    fn processed(&self) -> u64 {
        self.inner.processed
    }
    /// Accounts this pass processes in all.
    #[getter]
    fn total(&self) -> u64 {
        self.inner.total
    }
    /// Batches committed by this run.
    #[getter]
    fn batches(&self) -> u64 {
        self.inner.batches
    }
    /// The last account processed.
    #[getter]
    fn last_tenant_id(&self) -> Option<&str> {
        self.inner.last_tenant_id.as_deref()
    }
    fn __repr__(&self) -> String {
        format!(
            "MigrationProgress({}/{}, batches={})",
            self.inner.processed, self.inner.total, self.inner.batches
        )
    }
}

/// What a currency migration run did (or would do, in a dry run).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct MigrationReport {
    inner: core::MigrationReport,
}

#[pymethods]
impl MigrationReport {
    /// Accounts processed by this run.
    #[getter]
    fn processed(&self) -> u64 {
        self.inner.processed
    }
    /// Accounts processed in this pass by earlier, interrupted runs.
    #[getter]
    fn resumed_after(&self) -> u64 {
        self.inner.resumed_after
    }
    /// Accounts given a currency, by currency code.
    #[getter]
    fn currencies(&self) -> BTreeMap<String, u64> {
        self.inner.currencies.clone()
    }
    /// Legacy invoices copied into the invoice table.
    #[getter]
    fn invoices_backfilled(&self) -> u64 {
        self.inner.invoices_backfilled
    }
    /// Batches committed.
    #[getter]
    fn batches(&self) -> u64 {
        self.inner.batches
    }
    /// When the new currencies take effect.
    #[getter]
    fn effective_from(&self) -> DateTime<Utc> {
        self.inner.effective_from
    }
    /// Whether nothing was written.
    #[getter]
    fn dry_run(&self) -> bool {
        self.inner.dry_run
    }
    fn __repr__(&self) -> String {
        format!(
            "MigrationReport(processed={}, resumed_after={}, invoices_backfilled={}, dry_run={})",
            self.inner.processed,
            self.inner.resumed_after,
            self.inner.invoices_backfilled,
            self.inner.dry_run
        )
    }
}

/// Backfills billing currencies for legacy accounts in checkpointed batches; see the core's
/// `migrate_billing_currency`. `currency_for` is a mapping or a callable from tenant id to a
/// currency (or None for the registry's currency, then USD); `progress` is called with a
/// `MigrationProgress` after each batch and may return False to stop.
#[pyfunction]
#[pyo3(signature = (store, batch_size = 500, currency_for = None, progress = None, dry_run = false, clock = None, effective_from = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn migrate_billing_currency(
    py: Python<'_>,
    store: &Bound<'_, Store>,
    batch_size: i64,
    currency_for: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
    dry_run: bool,
    clock: Option<&Bound<'_, PyAny>>,
    effective_from: Option<&Bound<'_, PyAny>>,
) -> PyResult<MigrationReport> {
    let store = store.get().inner.clone();
    let clock = clock_arg(clock)?;
    let batch_size = usize::try_from(batch_size)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            BindingError::value(format!("batch_size must be at least 1, got {batch_size}"))
        })?;
    let options = MigrationOptions {
        batch_size,
        dry_run,
        effective_from: opt_utc_from_py(effective_from, "effective_from")?,
    };
    // An exception raised by a callback stops the run and is re-raised as it was.
    let mut raised: Option<PyErr> = None;
    let result = {
        let raised = &mut raised;
        let currency_for = currency_for.filter(|c| !c.is_none(py));
        let progress = progress.filter(|c| !c.is_none(py));
        detached(py, move || {
            let failed = std::cell::RefCell::new(None::<PyErr>);
            let mut choose = |id: &TenantId| -> omnicloud_core::Result<Option<core::Currency>> {
                let Some(f) = &currency_for else {
                    return Ok(None);
                };
                Python::attach(|py| {
                    let f = f.bind(py);
                    let got = if let Ok(map) = f.cast::<PyDict>() {
                        map.get_item(id.as_str())
                    } else if let Ok(mapping) = f.cast::<pyo3::types::PyMapping>() {
                        match mapping.get_item(id.as_str()) {
                            Ok(v) => Ok(Some(v)),
                            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(py) => {
                                Ok(None)
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        f.call1((id.as_str(),)).map(Some)
                    };
                    let parsed = got.and_then(|v| {
                        v.filter(|v| !v.is_none())
                            .map(|v| currency_arg(&v))
                            .transpose()
                    });
                    parsed.map_err(|e| {
                        *failed.borrow_mut() = Some(e);
                        stopped("currency_for raised an exception")
                    })
                })
            };
            let mut tell = |step: &core::MigrationProgress| -> ControlFlow<String> {
                let Some(f) = &progress else {
                    return ControlFlow::Continue(());
                };
                Python::attach(|py| {
                    let arg = MigrationProgress {
                        inner: step.clone(),
                    };
                    match f.bind(py).call1((arg,)) {
                        Ok(v)
                            if v.is_instance_of::<pyo3::types::PyBool>()
                                && !v.is_truthy().unwrap_or(true) =>
                        {
                            ControlFlow::Break("the progress callback returned False".into())
                        }
                        Ok(_) => ControlFlow::Continue(()),
                        Err(e) => {
                            *failed.borrow_mut() = Some(e);
                            ControlFlow::Break("the progress callback raised an exception".into())
                        }
                    }
                })
            };
            let out =
                core::migrate_billing_currency(&store, &clock, options, &mut choose, &mut tell);
            *raised = failed.into_inner();
            out
        })
    };
    if let Some(err) = raised {
        return Err(err);
    }
    Ok(MigrationReport { inner: result? })
}

fn stopped(reason: &str) -> omnicloud_core::Error {
    omnicloud_core::error::BillingError::MigrationStopped {
        processed: 0,
        reason: reason.to_owned(),
    }
    .into()
}
