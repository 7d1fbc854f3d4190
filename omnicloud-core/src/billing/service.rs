//! The billing service: accounts, prices, usage, invoices, credits, discounts and cost pools.
//!
//! Every operation is tenant-scoped and runs in one store transaction, so a failure leaves
//! nothing half-written. Billing periods are calendar months (UTC) for currency changes; the
//! periods invoiced are the caller's. Issued invoices are never changed: usage or pool charges
//! that would fall into an invoiced period are refused, and corrections are credit notes.
//!
//! Usage is append-only, so the service keeps an in-memory index of it, refreshed by row id
//! inside each invoicing transaction: rows written by other processes are picked up, and a
//! billing run does not re-read a million rows it has already seen.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::invoice::{Discount, DiscountTerms, InvoiceKind, InvoiceLine, LineKind, settle};
use super::metering::micros;
use super::{
    Currency, ExchangeRate, ExchangeRates, Invoice, Money, Period, PoolAllocation, PoolShare,
    RoundingStrategy, UsageRecord,
};
use crate::clock::SharedClock;
use crate::error::{BillingError, Error, MoneyError, Result, StoreError, TenancyError};
use crate::ids::{IdKind, TenantId, generate_id, validate_display_text, validate_id};
use crate::store::{Store, format_timestamp};

/// The first instant the store can hold: currencies set on account creation apply from it.
const BEGINNING: &str = "0001-01-01T00:00:00.000000000Z";

/// Invoicing runs with at least this many bills rate them on several threads.
const PARALLEL_RATING_MIN: usize = 256;

/// The most threads an invoicing run rates on.
pub const MAX_RATING_THREADS: usize = 8;

/// Longest accepted credit or credit-note reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// A tenant's billing account: its currency now and any change waiting for the next period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingAccount {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The currency invoices for a period starting now are issued in.
    pub currency: Currency,
    /// A change of currency not yet in effect, and when it takes effect.
    pub pending: Option<(Currency, DateTime<Utc>)>,
    /// Whether the account was imported from the legacy USD-only system.
    pub legacy: bool,
}

/// An invoice of the legacy USD-only system, as it was exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyInvoice {
    /// The legacy system's invoice id.
    pub id: String,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// The amount in USD, exactly as the legacy system wrote it.
    pub amount_usd: String,
    /// The period it billed.
    pub period: Period,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// One usage row as the index keeps it.
#[derive(Debug, Clone, Copy)]
struct UsageEntry {
    meter: u32,
    region: u32,
    quantity: Decimal,
    start_us: i64,
    end_us: i64,
}

/// The in-memory index of the append-only usage table.
#[derive(Debug, Default)]
struct UsageIndex {
    last_id: i64,
    by_tenant: HashMap<String, Vec<UsageEntry>>,
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
}

impl UsageIndex {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.name_ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.to_owned());
        self.name_ids.insert(name.to_owned(), id);
        id
    }

    fn push(&mut self, tenant: &str, meter: &str, region: &str, entry: (Decimal, i64, i64)) {
        let (meter, region) = (self.intern(meter), self.intern(region));
        let row = UsageEntry {
            meter,
            region,
            quantity: entry.0,
            start_us: entry.1,
            end_us: entry.2,
        };
        match self.by_tenant.get_mut(tenant) {
            Some(rows) => rows.push(row),
            None => {
                self.by_tenant.insert(tenant.to_owned(), vec![row]);
            }
        }
    }

    /// Reads the rows committed since the last refresh.
    fn refresh(&mut self, conn: &Connection, store: &Store) -> Result<()> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, tenant_id, meter, region, quantity, start_us, end_us
                 FROM billing_usage WHERE id > ?1 ORDER BY id",
            )
            .map_err(|e| store.sqlite_error(e))?;
        let mut rows = stmt
            .query([self.last_id])
            .map_err(|e| store.sqlite_error(e))?;
        while let Some(row) = rows.next().map_err(|e| store.sqlite_error(e))? {
            let read = |e| store.sqlite_error(e);
            let id: i64 = row.get(0).map_err(read)?;
            let tenant = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(read)?;
            let meter = row.get_ref(2).and_then(|v| Ok(v.as_str()?)).map_err(read)?;
            let region = row.get_ref(3).and_then(|v| Ok(v.as_str()?)).map_err(read)?;
            let quantity = row.get_ref(4).and_then(|v| Ok(v.as_str()?)).map_err(read)?;
            let quantity = Decimal::from_str(quantity).map_err(|e| StoreError::Decode {
                path: store.label().to_path_buf(),
                table: "billing_usage",
                column: "quantity",
                reason: e.to_string(),
            })?;
            let (start_us, end_us) = (row.get(5).map_err(read)?, row.get(6).map_err(read)?);
            self.push(tenant, meter, region, (quantity, start_us, end_us));
            self.last_id = id;
        }
        Ok(())
    }
}

/// The latest unit prices by meter, then region ("" for the meter's default), then currency.
type PriceList = HashMap<String, HashMap<String, BTreeMap<Currency, Decimal>>>;

/// Everything an invoicing transaction reads once and shares across tenants.
struct RatingContext<'a> {
    period: Period,
    now: DateTime<Utc>,
    prices: &'a PriceList,
    rates: &'a ExchangeRates,
    rounding: RoundingStrategy,
    usd_rates: HashMap<Currency, ExchangeRate>,
    /// Unit prices already resolved in this run, by interned (meter, region) and currency.
    unit_prices: HashMap<(u32, u32, Currency), (Money, Option<ExchangeRate>)>,
}

impl RatingContext<'_> {
    /// The instant prices and pool shares in another currency are converted at: the last
    /// moment of the period.
    fn conversion_at(&self) -> DateTime<Utc> {
        self.period.end - TimeDelta::microseconds(1)
    }

    /// The unit price of `meter` in `region`, in `currency`: a regional price before the
    /// meter's default; a price in the currency itself, else one in USD, EUR or any other
    /// currency converted at the end of the period.
    fn unit_price(
        &self,
        meter: &str,
        region: &str,
        currency: Currency,
    ) -> Result<(Money, Option<ExchangeRate>)> {
        let list = self
            .prices
            .get(meter)
            .and_then(|regions| regions.get(region).or_else(|| regions.get("")))
            .ok_or_else(|| BillingError::PriceNotFound {
                meter: meter.to_owned(),
                region: Some(region.to_owned()),
            })?;
        if let Some(price) = list.get(&currency) {
            return Ok((Money::new(*price, currency), None));
        }
        let (from, price) = ["USD", "EUR"]
            .iter()
            .filter_map(|code| Currency::new(code).ok())
            .find_map(|c| list.get(&c).map(|p| (c, *p)))
            .or_else(|| list.iter().next().map(|(c, p)| (*c, *p)))
            .ok_or_else(|| BillingError::PriceNotFound {
                meter: meter.to_owned(),
                region: Some(region.to_owned()),
            })?;
        let (converted, rate) =
            self.rates
                .convert(&Money::new(price, from), currency, self.conversion_at())?;
        Ok((converted, Some(rate)))
    }

    /// [`RatingContext::unit_price`] of interned names, resolved once per run.
    fn unit_price_of(
        &mut self,
        index: &UsageIndex,
        (meter, region): (u32, u32),
        currency: Currency,
    ) -> Result<(Money, Option<ExchangeRate>)> {
        if let Some(hit) = self.unit_prices.get(&(meter, region, currency)) {
            return Ok(hit.clone());
        }
        let found = self.unit_price(
            &index.names[meter as usize],
            &index.names[region as usize],
            currency,
        )?;
        self.unit_prices
            .insert((meter, region, currency), found.clone());
        Ok(found)
    }

    /// The rate from `currency` to USD at issue time (cached per run).
    fn usd_rate(&mut self, currency: Currency) -> Result<ExchangeRate> {
        if let Some(rate) = self.usd_rates.get(&currency) {
            return Ok(rate.clone());
        }
        let rate = self.rates.rate(currency, Currency::usd(), self.now)?;
        self.usd_rates.insert(currency, rate.clone());
        Ok(rate)
    }
}

/// A pool charge waiting to be billed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PoolCharge {
    pool: String,
    at: DateTime<Utc>,
    share: PoolShare,
}

/// What an invoicing run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Compute one tenant's invoice without storing anything.
    Preview,
    /// Issue one tenant's invoice; an existing one for the period is an error.
    IssueOne,
    /// Issue invoices to every account listed (or all), skipping those already invoiced.
    IssueAll,
}

/// Per-tenant inputs of one invoice.
struct TenantBill<'a> {
    tenant: &'a str,
    currency: Currency,
    usage: &'a [UsageEntry],
    charges: &'a [PoolCharge],
    discounts: &'a [Discount],
    wallet: Decimal,
}

/// Billing over one store: see the module documentation.
#[derive(Debug)]
pub struct BillingService {
    store: Store,
    clock: SharedClock,
    rates: Arc<ExchangeRates>,
    rounding: RoundingStrategy,
    usage: Mutex<UsageIndex>,
}

impl BillingService {
    /// A service over `store`, stamping with `clock`, converting with `rates`, rounding half
    /// away from zero.
    pub fn new(store: Store, clock: SharedClock, rates: Arc<ExchangeRates>) -> Self {
        Self {
            store,
            clock,
            rates,
            rounding: RoundingStrategy::default(),
            usage: Mutex::new(UsageIndex::default()),
        }
    }

    /// The same service rounding with `rounding` instead.
    pub fn with_rounding(mut self, rounding: RoundingStrategy) -> Self {
        self.rounding = rounding;
        self
    }

    /// The rounding strategy of line amounts and discounts.
    pub fn rounding(&self) -> RoundingStrategy {
        self.rounding
    }

    /// The exchange-rate history the service converts with.
    pub fn rates(&self) -> &Arc<ExchangeRates> {
        &self.rates
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |e| Error::Store(self.store.sqlite_error(e))
    }

    fn decode_error(&self, table: &'static str, column: &'static str, reason: String) -> Error {
        StoreError::Decode {
            path: self.store.label().to_path_buf(),
            table,
            column,
            reason,
        }
        .into()
    }

    // ----- accounts and currencies -----

    /// Opens an account billed in `currency`, or changes an account's currency.
    ///
    /// A change takes effect at `effective_from`, by default the start of the next calendar
    /// month, so a period in progress is finished in the old currency; a later change replaces
    /// a pending one. The tenant registry's `billing_currency`, if the tenant is registered,
    /// follows the configured value.
    pub fn upsert_tenant(
        &self,
        tenant_id: &TenantId,
        currency: Currency,
        effective_from: Option<DateTime<Utc>>,
    ) -> Result<BillingAccount> {
        currency.billable_minor_units()?;
        let now = self.clock.now();
        if let Some(at) = effective_from
            && at < now
        {
            return Err(BillingError::Invalid {
                what: "currency change",
                reason: format!("effective_from {at} is in the past (now is {now})"),
            }
            .into());
        }
        self.store.write(|tx| -> Result<()> {
            let exists = account_exists(tx, tenant_id.as_str()).map_err(self.sql())?;
            if !exists {
                tx.execute(
                    "INSERT INTO billing_accounts (tenant_id, legacy, created_at) VALUES (?1, 0, ?2)",
                    params![tenant_id.as_str(), format_timestamp(now)],
                )
                .map_err(self.sql())?;
                insert_change(tx, tenant_id.as_str(), BEGINNING, currency, now)
                    .map_err(self.sql())?;
            } else {
                let latest = self.latest_currency(tx, tenant_id.as_str())?;
                if latest != Some(currency) || effective_from.is_some() {
                    tx.execute(
                        "DELETE FROM billing_currency_changes
                         WHERE tenant_id = ?1 AND effective_from > ?2",
                        params![tenant_id.as_str(), format_timestamp(now)],
                    )
                    .map_err(self.sql())?;
                    let in_effect = self.currency_in(tx, tenant_id.as_str(), now)?;
                    if latest.is_none() && in_effect == currency {
                        // A legacy account confirming USD: record it, so the currency
                        // migration keeps it.
                        insert_change(tx, tenant_id.as_str(), BEGINNING, currency, now)
                            .map_err(self.sql())?;
                    } else if in_effect != currency {
                        let at = effective_from.unwrap_or_else(|| next_period_start(now));
                        insert_change(tx, tenant_id.as_str(), &format_timestamp(at), currency, now)
                            .map_err(self.sql())?;
                    }
                }
            }
            crate::tenancy::set_billing_currency(tx, tenant_id, currency).map_err(self.sql())?;
            Ok(())
        })?;
        self.account(tenant_id)
    }

    /// The tenant's account, or [`TenancyError::UnknownTenant`].
    pub fn account(&self, tenant_id: &TenantId) -> Result<BillingAccount> {
        let now = self.clock.now();
        let id = tenant_id.as_str();
        let legacy: Option<bool> = self
            .store
            .read(|c| {
                c.query_row(
                    "SELECT legacy FROM billing_accounts WHERE tenant_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(Error::from)?;
        let legacy = legacy.ok_or_else(|| unknown_tenant(id))?;
        let (currency, pending) = self.store.read(|c| {
            let current = current_currency(c, id, &format_timestamp(now))?;
            let pending: Option<(String, String)> = c
                .query_row(
                    "SELECT currency, effective_from FROM billing_currency_changes
                     WHERE tenant_id = ?1 AND effective_from > ?2
                     ORDER BY effective_from DESC LIMIT 1",
                    params![id, format_timestamp(now)],
                    |r| r.try_into(),
                )
                .optional()?;
            Ok((current, pending))
        })?;
        let currency = self.decode_currency(currency.as_deref())?;
        let pending = pending
            .map(|(code, at)| -> Result<_> {
                Ok((
                    self.decode_currency(Some(&code))?,
                    self.store
                        .decode_time("billing_currency_changes", "effective_from", &at)?,
                ))
            })
            .transpose()?;
        Ok(BillingAccount {
            tenant_id: tenant_id.clone(),
            currency,
            pending,
            legacy,
        })
    }

    fn require_account(&self, tenant_id: &TenantId) -> Result<()> {
        if self.store.read(|c| account_exists(c, tenant_id.as_str()))? {
            Ok(())
        } else {
            Err(unknown_tenant(tenant_id.as_str()))
        }
    }

    /// The currency a period starting at `at` is invoiced in.
    pub fn currency_at(&self, tenant_id: &TenantId, at: DateTime<Utc>) -> Result<Currency> {
        let id = tenant_id.as_str();
        let (exists, code) = self.store.read(|c| {
            Ok((
                account_exists(c, id)?,
                current_currency(c, id, &format_timestamp(at))?,
            ))
        })?;
        if !exists {
            return Err(unknown_tenant(id));
        }
        self.decode_currency(code.as_deref())
    }

    fn currency_in(&self, conn: &Connection, tenant: &str, at: DateTime<Utc>) -> Result<Currency> {
        let code = current_currency(conn, tenant, &format_timestamp(at)).map_err(self.sql())?;
        self.decode_currency(code.as_deref())
    }

    fn latest_currency(&self, conn: &Connection, tenant: &str) -> Result<Option<Currency>> {
        let code: Option<String> = conn
            .query_row(
                "SELECT currency FROM billing_currency_changes WHERE tenant_id = ?1
                 ORDER BY effective_from DESC LIMIT 1",
                [tenant],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        code.map(|c| self.decode_currency(Some(&c))).transpose()
    }

    /// Legacy accounts without a currency yet are billed in USD, as the legacy system did.
    fn decode_currency(&self, code: Option<&str>) -> Result<Currency> {
        match code {
            None => Ok(Currency::usd()),
            Some(code) => Currency::new(code).map_err(|e| {
                self.decode_error("billing_currency_changes", "currency", e.to_string())
            }),
        }
    }

    // ----- prices and usage -----

    /// Sets the unit price of `meter` in the price's currency, for one region or (`None`) as
    /// the meter's default. The latest price applies to invoices generated from now on.
    pub fn set_price(&self, meter: &str, price: Money, region: Option<&str>) -> Result<()> {
        validate_id(IdKind::Meter, meter)?;
        if let Some(region) = region {
            validate_id(IdKind::Region, region)?;
        }
        price.currency().billable_minor_units()?;
        if price.amount().is_sign_negative() && !price.amount().is_zero() {
            return Err(BillingError::Invalid {
                what: "price",
                reason: format!("{price} is negative"),
            }
            .into());
        }
        let now = format_timestamp(self.clock.now());
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                "INSERT OR REPLACE INTO billing_prices (meter, region, currency, unit_price, set_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    meter,
                    region.unwrap_or(""),
                    price.currency().code(),
                    price.amount().to_string(),
                    now
                ],
            )
            .map_err(self.sql())?;
            Ok(())
        })
    }

    /// Records usage; see [`BillingService::record_usage_many`].
    pub fn record_usage(&self, record: &UsageRecord) -> Result<()> {
        self.record_usage_many(std::slice::from_ref(record))
            .map(|_| ())
    }

    /// Records usage in one transaction: all or nothing. Refused: an unknown tenant, and usage
    /// falling into a period that already has an issued invoice (late usage would change it).
    pub fn record_usage_many(&self, records: &[UsageRecord]) -> Result<usize> {
        let now = format_timestamp(self.clock.now());
        let (first, last) = self.store.write(|tx| -> Result<(i64, i64)> {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM billing_accounts WHERE tenant_id = ?1")
                .map_err(self.sql())?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO billing_usage
                     (tenant_id, meter, region, quantity, start_us, end_us, resource_id, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(self.sql())?;
            // Each tenant's invoiced periods, read once per call.
            let mut invoiced: HashMap<&str, Vec<(String, Period)>> = HashMap::new();
            let mut first = 0;
            for (i, r) in records.iter().enumerate() {
                let tenant = r.tenant_id.as_str();
                if !invoiced.contains_key(tenant) {
                    if !exists.exists([tenant]).map_err(self.sql())? {
                        return Err(unknown_tenant(tenant));
                    }
                    invoiced.insert(tenant, self.invoiced_periods(tx, tenant)?);
                }
                let (start_us, end_us) = (micros(r.start), micros(r.end));
                Self::refuse_invoiced(
                    invoiced.get(tenant).map_or(&[], Vec::as_slice),
                    r.start,
                    r.end,
                    "usage",
                )?;
                insert
                    .execute(params![
                        tenant,
                        r.meter,
                        r.region,
                        r.quantity.to_string(),
                        start_us,
                        end_us,
                        r.resource_id,
                        now
                    ])
                    .map_err(self.sql())?;
                if i == 0 {
                    first = tx.last_insert_rowid();
                }
            }
            Ok((first, tx.last_insert_rowid()))
        })?;
        // Committed: extend the index if nothing else was written in between.
        let mut index = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        if !records.is_empty()
            && index.last_id == first - 1
            && last - first + 1 == records.len() as i64
        {
            for r in records {
                index.push(
                    r.tenant_id.as_str(),
                    &r.meter,
                    &r.region,
                    (r.quantity, micros(r.start), micros(r.end)),
                );
            }
            index.last_id = last;
        }
        Ok(records.len())
    }

    /// The periods of the tenant's issued invoices, with their ids.
    fn invoiced_periods(&self, conn: &Connection, tenant: &str) -> Result<Vec<(String, Period)>> {
        let rows: Vec<(String, String, String)> = conn
            .prepare_cached(
                "SELECT id, period_start, period_end FROM billing_invoices
                 WHERE tenant_id = ?1 AND kind = 'invoice' AND legacy = 0",
            )
            .and_then(|mut s| s.query_map([tenant], |r| r.try_into())?.collect())
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|(id, start, end)| {
                let decode =
                    |col, text: &str| self.store.decode_time("billing_invoices", col, text);
                let period = Period {
                    start: decode("period_start", &start)?,
                    end: decode("period_end", &end)?,
                };
                Ok((id, period))
            })
            .collect()
    }

    /// Fails with [`BillingError::InvoiceImmutable`] if one of `invoiced` has a share of
    /// `[start, end)` (or contains the instant, when `start == end`).
    fn refuse_invoiced(
        invoiced: &[(String, Period)],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        what: &str,
    ) -> Result<()> {
        match invoiced
            .iter()
            .find(|(_, p)| p.touches(micros(start), micros(end)))
        {
            Some((id, p)) => Err(BillingError::InvoiceImmutable {
                invoice_id: id.clone(),
                reason: format!(
                    "{what} from {start} to {end} falls into its period {} to {}",
                    p.start, p.end
                ),
            }
            .into()),
            None => Ok(()),
        }
    }

    // ----- credits and discounts -----

    /// Adds `amount` (a positive whole number of minor units) to the tenant's credit wallet in
    /// its currency; returns the new balance. Credits pay only invoices in their currency.
    pub fn add_credit(&self, tenant_id: &TenantId, amount: Money, reason: &str) -> Result<Money> {
        validate_display_text("credit reason", reason, MAX_REASON_CHARS)?;
        let amount = whole_minor_units(amount, "credit")?;
        if amount.amount() <= Decimal::ZERO {
            return Err(BillingError::Invalid {
                what: "credit",
                reason: format!("{amount} is not positive"),
            }
            .into());
        }
        let at = format_timestamp(self.clock.now());
        self.store.write(|tx| {
            if !account_exists(tx, tenant_id.as_str()).map_err(self.sql())? {
                return Err(unknown_tenant(tenant_id.as_str()));
            }
            self.move_credit(tx, tenant_id.as_str(), amount, reason, None, &at)
        })
    }

    /// Adds `delta` to a wallet and writes the ledger entry; returns the new balance.
    fn move_credit(
        &self,
        tx: &Connection,
        tenant: &str,
        delta: Money,
        reason: &str,
        invoice_id: Option<&str>,
        at: &str,
    ) -> Result<Money> {
        let currency = delta.currency();
        let balance = self.wallet(tx, tenant, currency)?;
        let balance = Money::new(balance, currency).checked_add(&delta)?;
        tx.prepare_cached(
            "INSERT INTO billing_wallets (tenant_id, currency, balance) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id, currency) DO UPDATE SET balance = excluded.balance",
        )
        .and_then(|mut s| {
            s.execute(params![
                tenant,
                currency.code(),
                balance.amount().to_string()
            ])
        })
        .map_err(self.sql())?;
        tx.prepare_cached(
            "INSERT INTO billing_credit_ledger (tenant_id, currency, amount, reason, invoice_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                tenant,
                currency.code(),
                delta.amount().to_string(),
                reason,
                invoice_id,
                at
            ])
        })
        .map_err(self.sql())?;
        Ok(balance)
    }

    fn wallet(&self, conn: &Connection, tenant: &str, currency: Currency) -> Result<Decimal> {
        let text: Option<String> = conn
            .prepare_cached(
                "SELECT balance FROM billing_wallets WHERE tenant_id = ?1 AND currency = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, currency.code()], |r| r.get(0))
                    .optional()
            })
            .map_err(self.sql())?;
        text.map_or(Ok(Decimal::ZERO), |t| self.decode_balance(&t))
    }

    fn decode_balance(&self, text: &str) -> Result<Decimal> {
        Decimal::from_str(text)
            .map_err(|e| self.decode_error("billing_wallets", "balance", e.to_string()))
    }

    /// The tenant's credit balance in `currency` (zero if it never had any).
    pub fn credit_balance(&self, tenant_id: &TenantId, currency: Currency) -> Result<Money> {
        self.require_account(tenant_id)?;
        let balance = self
            .store
            .read(|c| Ok(self.wallet(c, tenant_id.as_str(), currency)))
            .map_err(Error::from)??;
        // Balances are whole minor units; the scale shows them (`0.00` USD, `0` JPY).
        Ok(Money::new(balance, currency).rounded_with(RoundingStrategy::TowardZero)?)
    }

    /// Every credit movement of the tenant in `currency`, oldest first: grants and credit notes
    /// positive, amounts applied to invoices negative. They sum to the balance.
    pub fn credit_ledger(&self, tenant_id: &TenantId, currency: Currency) -> Result<Vec<Money>> {
        self.require_account(tenant_id)?;
        let rows: Vec<String> = self.store.read(|c| {
            let mut stmt = c.prepare(
                "SELECT amount FROM billing_credit_ledger WHERE tenant_id = ?1 AND currency = ?2
                 ORDER BY id",
            )?;
            stmt.query_map(params![tenant_id.as_str(), currency.code()], |r| r.get(0))?
                .collect()
        })?;
        rows.iter()
            .map(|t| {
                Decimal::from_str(t)
                    .map(|a| Money::new(a, currency))
                    .map_err(|e| {
                        self.decode_error("billing_credit_ledger", "amount", e.to_string())
                    })
            })
            .collect()
    }

    /// Gives the tenant a discount for its next `invoices` invoices (`None`: every invoice).
    /// A percentage applies to invoices in any currency; a fixed amount only to invoices in its
    /// own currency (it waits for one).
    pub fn add_discount(
        &self,
        tenant_id: &TenantId,
        terms: DiscountTerms,
        invoices: Option<u32>,
    ) -> Result<Discount> {
        let invalid = |reason: String| -> Error {
            BillingError::Invalid {
                what: "discount",
                reason,
            }
            .into()
        };
        let terms = match terms {
            DiscountTerms::Percent(p) => {
                if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED {
                    return Err(invalid(format!("percentage {p} is not in (0, 100]")));
                }
                DiscountTerms::Percent(p)
            }
            DiscountTerms::Amount(m) => {
                let m = whole_minor_units(m, "discount")?;
                if m.amount() <= Decimal::ZERO {
                    return Err(invalid(format!("amount {m} is not positive")));
                }
                DiscountTerms::Amount(m)
            }
        };
        if invoices == Some(0) {
            return Err(invalid("it must apply to at least one invoice".into()));
        }
        let discount = Discount {
            id: generate_id(),
            tenant_id: tenant_id.clone(),
            terms,
            remaining_invoices: invoices,
        };
        let terms_json = serde_json::to_string(&discount.terms)
            .map_err(|e| invalid(format!("cannot encode terms: {e}")))?;
        let at = format_timestamp(self.clock.now());
        self.store.write(|tx| -> Result<()> {
            if !account_exists(tx, tenant_id.as_str()).map_err(self.sql())? {
                return Err(unknown_tenant(tenant_id.as_str()));
            }
            tx.execute(
                "INSERT INTO billing_discounts (id, tenant_id, terms, remaining, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![discount.id, tenant_id.as_str(), terms_json, invoices, at],
            )
            .map_err(self.sql())?;
            Ok(())
        })?;
        Ok(discount)
    }

    /// The tenant's discounts that still apply, oldest first.
    pub fn discounts(&self, tenant_id: &TenantId) -> Result<Vec<Discount>> {
        self.require_account(tenant_id)?;
        let mut by_tenant = self
            .store
            .read(|c| self.load_discounts(c, Some(tenant_id.as_str())))
            .map_err(Error::from)?;
        Ok(by_tenant.remove(tenant_id.as_str()).unwrap_or_default())
    }

    fn load_discounts(
        &self,
        conn: &Connection,
        tenant: Option<&str>,
    ) -> rusqlite::Result<HashMap<String, Vec<Discount>>> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant_id, terms, remaining FROM billing_discounts
             WHERE (remaining IS NULL OR remaining > 0) AND (?1 IS NULL OR tenant_id = ?1)
             ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([tenant], |r| {
            let terms: String = r.get(2)?;
            let tenant: String = r.get(1)?;
            let terms: DiscountTerms = serde_json::from_str(&terms).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
            })?;
            let tenant_id = TenantId::new(tenant).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
            })?;
            Ok(Discount {
                id: r.get(0)?,
                tenant_id,
                terms,
                remaining_invoices: r.get(3)?,
            })
        })?;
        let mut out: HashMap<String, Vec<Discount>> = HashMap::new();
        for d in rows {
            let d = d?;
            out.entry(d.tenant_id.to_string()).or_default().push(d);
        }
        Ok(out)
    }

    // ----- invoices -----

    /// Computes the tenant's invoice for `period` without issuing it: nothing is stored and
    /// no credit or discount is used up.
    pub fn preview_invoice(&self, tenant_id: &TenantId, period: Period) -> Result<Invoice> {
        self.invoice_run(period, Some(std::slice::from_ref(tenant_id)), Run::Preview)?
            .pop()
            .ok_or_else(|| unknown_tenant(tenant_id.as_str()))
    }

    /// Issues the tenant's invoice for `period` in the currency in effect at the period's
    /// start. [`BillingError::InvoiceImmutable`] if an issued invoice already covers part of
    /// the period.
    pub fn generate_invoice(&self, tenant_id: &TenantId, period: Period) -> Result<Invoice> {
        self.invoice_run(period, Some(std::slice::from_ref(tenant_id)), Run::IssueOne)?
            .pop()
            .ok_or_else(|| unknown_tenant(tenant_id.as_str()))
    }

    /// Issues invoices for `period` to every account (or those listed; duplicates count once)
    /// that has none covering it yet, in one transaction; accounts already invoiced are
    /// skipped, so a billing run can be repeated after an interruption.
    pub fn generate_invoices(
        &self,
        period: Period,
        tenants: Option<&[TenantId]>,
    ) -> Result<Vec<Invoice>> {
        let unique = tenants.map(|ids| {
            let mut seen = std::collections::HashSet::new();
            ids.iter()
                .filter(|t| seen.insert(t.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        });
        self.invoice_run(period, unique.as_deref(), Run::IssueAll)
    }

    fn invoice_run(
        &self,
        period: Period,
        only: Option<&[TenantId]>,
        mode: Run,
    ) -> Result<Vec<Invoice>> {
        let single = only.filter(|t| t.len() == 1).map(|t| t[0].as_str());
        let issue = mode != Run::Preview;
        let now = self.clock.now();
        self.rates.refresh()?;
        // Catch up with new usage before taking the write lock; inside it only the rows
        // committed in between are left to read.
        // Lock order, everywhere: the store's connection, then the usage index.
        self.store
            .read(|c| {
                let mut index = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(index.refresh(c, &self.store))
            })
            .map_err(Error::from)??;
        let run = |tx: &Connection| -> Result<Vec<Invoice>> {
            let mut index = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
            index.refresh(tx, &self.store)?;
            let accounts = self.accounts_for_run(tx, period, only)?;
            let invoiced = self.invoiced_in(tx, period)?;
            if let (Some(tenant), Run::IssueOne) = (single, mode)
                && let Some(id) = invoiced.get(tenant)
            {
                return Err(BillingError::InvoiceImmutable {
                    invoice_id: id.clone(),
                    reason: format!(
                        "it already covers part of {} to {}",
                        period.start, period.end
                    ),
                }
                .into());
            }
            let prices = self.load_prices(tx, now)?;
            let context = || RatingContext {
                period,
                now,
                prices: &prices,
                rates: &self.rates,
                rounding: self.rounding,
                usd_rates: HashMap::new(),
                unit_prices: HashMap::new(),
            };
            let discounts = self.load_discounts(tx, single).map_err(self.sql())?;
            let wallets = self.load_wallets(tx, single)?;
            let charges = self.pool_charges_in(tx, period, single)?;
            let bills: Vec<TenantBill<'_>> = accounts
                .iter()
                .filter(|(tenant, _)| !(issue && invoiced.contains_key(tenant.as_str())))
                .map(|(tenant, currency)| TenantBill {
                    tenant,
                    currency: *currency,
                    usage: index
                        .by_tenant
                        .get(tenant.as_str())
                        .map_or(&[], Vec::as_slice),
                    charges: charges.get(tenant.as_str()).map_or(&[], Vec::as_slice),
                    discounts: discounts.get(tenant.as_str()).map_or(&[], Vec::as_slice),
                    wallet: wallets
                        .get(&(tenant.clone(), *currency))
                        .copied()
                        .unwrap_or(Decimal::ZERO),
                })
                .collect();
            let rated = self.rate_all(context, &index, &bills, issue)?;
            let mut out = Vec::with_capacity(rated.len());
            for ((invoice, row), bill) in rated.into_iter().zip(&bills) {
                if let Some(row) = &row {
                    self.issue(tx, &invoice, row, bill.discounts)?;
                }
                out.push(invoice);
            }
            Ok(out)
        };
        let invoices = if issue {
            self.store.write(|tx| run(tx))?
        } else {
            self.store.read(|c| Ok(run(c))).map_err(Error::from)??
        };
        Ok(invoices)
    }

    /// Wallet balances by (tenant, currency): one tenant's, or everyone's.
    fn load_wallets(
        &self,
        conn: &Connection,
        tenant: Option<&str>,
    ) -> Result<HashMap<(String, Currency), Decimal>> {
        let rows: Vec<(String, String, String)> = conn
            .prepare_cached(
                "SELECT tenant_id, currency, balance FROM billing_wallets
                 WHERE ?1 IS NULL OR tenant_id = ?1",
            )
            .and_then(|mut s| s.query_map([tenant], |r| r.try_into())?.collect())
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|(t, code, balance)| {
                let currency = Currency::new(&code)
                    .map_err(|e| self.decode_error("billing_wallets", "currency", e.to_string()))?;
                Ok(((t, currency), self.decode_balance(&balance)?))
            })
            .collect()
    }

    /// The accounts to invoice with the currency in effect at the period's start, by id.
    fn accounts_for_run(
        &self,
        conn: &Connection,
        period: Period,
        only: Option<&[TenantId]>,
    ) -> Result<Vec<(String, Currency)>> {
        let at = format_timestamp(period.start);
        let rows: Vec<(String, Option<String>)> = match only {
            Some(ids) => {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if !account_exists(conn, id.as_str()).map_err(self.sql())? {
                        return Err(unknown_tenant(id.as_str()));
                    }
                    let code = current_currency(conn, id.as_str(), &at).map_err(self.sql())?;
                    out.push((id.to_string(), code));
                }
                out
            }
            None => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT a.tenant_id,
                                (SELECT currency FROM billing_currency_changes c
                                 WHERE c.tenant_id = a.tenant_id AND c.effective_from <= ?1
                                 ORDER BY c.effective_from DESC LIMIT 1)
                         FROM billing_accounts a ORDER BY a.tenant_id",
                    )
                    .map_err(self.sql())?;
                stmt.query_map([&at], |r| r.try_into())
                    .and_then(|rows| rows.collect())
                    .map_err(self.sql())?
            }
        };
        rows.into_iter()
            .map(|(t, code)| Ok((t, self.decode_currency(code.as_deref())?)))
            .collect()
    }

    /// Tenants with an issued invoice overlapping `period`, and one such invoice's id.
    fn invoiced_in(&self, conn: &Connection, period: Period) -> Result<HashMap<String, String>> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant_id, id FROM billing_invoices
                 WHERE kind = 'invoice' AND legacy = 0 AND period_start < ?2 AND period_end > ?1",
            )
            .map_err(self.sql())?;
        stmt.query_map(
            params![format_timestamp(period.start), format_timestamp(period.end)],
            |r| r.try_into(),
        )
        .and_then(|rows| rows.collect())
        .map_err(self.sql())
    }

    fn load_prices(&self, conn: &Connection, now: DateTime<Utc>) -> Result<PriceList> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT meter, region, currency, unit_price FROM billing_prices
                 WHERE set_at <= ?1 ORDER BY set_at",
            )
            .map_err(self.sql())?;
        let rows: Vec<(String, String, String, String)> = stmt
            .query_map([format_timestamp(now)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql())?;
        let mut prices = PriceList::new();
        for (meter, region, code, price) in rows {
            let currency = Currency::new(&code)
                .map_err(|e| self.decode_error("billing_prices", "currency", e.to_string()))?;
            let price = Decimal::from_str(&price)
                .map_err(|e| self.decode_error("billing_prices", "unit_price", e.to_string()))?;
            prices
                .entry(meter)
                .or_default()
                .entry(region)
                .or_default()
                .insert(currency, price);
        }
        Ok(prices)
    }

    fn pool_charges_in(
        &self,
        conn: &Connection,
        period: Period,
        tenant: Option<&str>,
    ) -> Result<HashMap<String, Vec<PoolCharge>>> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant_id, share FROM billing_pool_charges
                 WHERE at_us >= ?1 AND at_us < ?2 AND (?3 IS NULL OR tenant_id = ?3)
                 ORDER BY at_us, allocation_id, position",
            )
            .map_err(self.sql())?;
        let rows: Vec<(String, String)> = stmt
            .query_map(
                params![micros(period.start), micros(period.end), tenant],
                |r| r.try_into(),
            )
            .and_then(|rows| rows.collect())
            .map_err(self.sql())?;
        let mut out: HashMap<String, Vec<PoolCharge>> = HashMap::new();
        for (tenant, json) in rows {
            let charge: PoolCharge = serde_json::from_str(&json)
                .map_err(|e| self.decode_error("billing_pool_charges", "share", e.to_string()))?;
            out.entry(tenant).or_default().push(charge);
        }
        Ok(out)
    }

    /// Rates every bill, with its row when `encode`, on up to
    /// [`MAX_RATING_THREADS`] threads for large runs (rating is pure computation; the store is
    /// written afterwards, on the caller's thread). Results keep the bills' order.
    fn rate_all<'a>(
        &self,
        context: impl Fn() -> RatingContext<'a> + Sync,
        index: &UsageIndex,
        bills: &[TenantBill<'_>],
        encode: bool,
    ) -> Result<Vec<(Invoice, Option<InvoiceRow>)>> {
        let work = |part: &[TenantBill<'_>]| -> Result<Vec<(Invoice, Option<InvoiceRow>)>> {
            let mut ctx = context();
            part.iter()
                .map(|bill| {
                    let invoice = self.rate_tenant(&mut ctx, index, bill)?;
                    let row = if encode {
                        Some(InvoiceRow::of(&invoice)?)
                    } else {
                        None
                    };
                    Ok((invoice, row))
                })
                .collect()
        };
        let threads = if bills.len() < PARALLEL_RATING_MIN {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_RATING_THREADS)
        };
        if threads <= 1 {
            return work(bills);
        }
        let chunk = bills.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = bills
                .chunks(chunk)
                .map(|part| scope.spawn(move || work(part)))
                .collect();
            let mut out = Vec::with_capacity(bills.len());
            for handle in handles {
                match handle.join() {
                    Ok(part) => out.extend(part?),
                    // A bug in rating: re-raise it on the caller's thread.
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(out)
        })
    }

    /// Rates one tenant's period: usage lines by (meter, region), pool-share lines, then
    /// discounts and credits.
    fn rate_tenant(
        &self,
        ctx: &mut RatingContext<'_>,
        index: &UsageIndex,
        bill: &TenantBill<'_>,
    ) -> Result<Invoice> {
        let currency = bill.currency;
        // Summed by interned (meter, region) (a tenant has few: a short list beats hashing),
        // then ordered by name.
        let mut quantities: Vec<((u32, u32), Decimal)> = Vec::new();
        for u in bill.usage {
            if !ctx.period.touches(u.start_us, u.end_us) {
                continue;
            }
            let q = ctx.period.prorate(u.quantity, u.start_us, u.end_us)?;
            let key = (u.meter, u.region);
            match quantities.iter_mut().find(|(k, _)| *k == key) {
                Some((_, sum)) => {
                    *sum = sum.checked_add(q).ok_or(MoneyError::Overflow {
                        operation: "sum usage",
                    })?;
                }
                None => quantities.push((key, q)),
            }
        }
        let name = |i: u32| index.names[i as usize].as_str();
        quantities
            .sort_unstable_by(|a, b| (name(a.0.0), name(a.0.1)).cmp(&(name(b.0.0), name(b.0.1))));
        let mut lines = Vec::with_capacity(quantities.len() + bill.charges.len());
        for (key, quantity) in quantities {
            let (meter, region) = (name(key.0), name(key.1));
            let (unit_price, conversion) = ctx.unit_price_of(index, key, currency)?;
            let amount = unit_price
                .checked_mul(quantity)?
                .rounded_with(ctx.rounding)?;
            lines.push(InvoiceLine {
                kind: LineKind::Usage,
                meter: meter.to_owned(),
                region: Some(region.to_owned()),
                quantity,
                unit_price,
                amount,
                conversion,
            });
        }
        for charge in bill.charges {
            let (amount, conversion) = if charge.share.charge.currency() == currency {
                (charge.share.charge, Some(charge.share.rate.clone()))
            } else {
                let (m, rate) = ctx
                    .rates
                    .convert(&charge.share.share, currency, charge.at)?;
                (m.rounded_with(ctx.rounding)?, Some(rate))
            };
            lines.push(InvoiceLine {
                kind: LineKind::PoolShare,
                meter: charge.pool.clone(),
                region: None,
                quantity: Decimal::ONE,
                unit_price: amount,
                amount,
                conversion,
            });
        }
        let settlement = settle(currency, &lines, bill.discounts, bill.wallet, ctx.rounding)?;
        let usd = ctx.usd_rate(currency)?;
        let total_usd = settlement
            .total
            .checked_mul(usd.rate)
            .map(|m| Money::new(m.amount(), Currency::usd()))?
            .rounded_with(ctx.rounding)?;
        Ok(Invoice {
            id: generate_id(),
            tenant_id: TenantId::new(bill.tenant)?,
            kind: InvoiceKind::Invoice,
            corrects: None,
            period: Some(ctx.period),
            currency,
            lines,
            subtotal: settlement.subtotal,
            discounts: settlement.discounts,
            credits_applied: settlement.credits_applied,
            total: settlement.total,
            exchange_rate_to_usd: usd.rate,
            rate_as_of: usd.as_of,
            rate_source: usd.source,
            total_usd,
            issued_at: ctx.now,
            legacy: false,
            memo: None,
        })
    }

    /// Stores an invoice and uses up what it applied: discounts and credits.
    fn issue(
        &self,
        tx: &Connection,
        invoice: &Invoice,
        document: &InvoiceRow,
        discounts: &[Discount],
    ) -> Result<()> {
        document.insert(tx).map_err(self.sql())?;
        let at = format_timestamp(invoice.issued_at);
        for applied in &invoice.discounts {
            if discounts
                .iter()
                .any(|d| d.id == applied.discount_id && d.remaining_invoices.is_some())
            {
                tx.prepare_cached(
                    "UPDATE billing_discounts SET remaining = remaining - 1 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute([&applied.discount_id]))
                .map_err(self.sql())?;
            }
        }
        if !invoice.credits_applied.amount().is_zero() {
            let used = Money::new(-invoice.credits_applied.amount(), invoice.currency);
            self.move_credit(
                tx,
                invoice.tenant_id.as_str(),
                used,
                "applied to invoice",
                Some(&invoice.id),
                &at,
            )?;
        }
        Ok(())
    }

    /// The invoice or credit note with this id (legacy invoices included, migrated or not).
    pub fn invoice(&self, id: &str) -> Result<Invoice> {
        let unknown = || -> Error {
            BillingError::UnknownInvoice {
                invoice_id: id.to_owned(),
            }
            .into()
        };
        if id.is_empty() || id.len() > 128 {
            return Err(unknown());
        }
        let document: Option<String> = self.store.read(|c| {
            c.query_row(
                "SELECT document FROM billing_invoices WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
        })?;
        if let Some(doc) = document {
            return self.decode_invoice(&doc);
        }
        let legacy = self.store.read(|c| {
            c.query_row(
                "SELECT id, tenant_id, amount_usd, period_start, period_end, issued_at
                 FROM billing_legacy_invoices WHERE id = ?1",
                [id],
                legacy_row,
            )
            .optional()
        })?;
        legacy
            .map(|row| self.legacy_invoice(row))
            .transpose()?
            .ok_or_else(unknown)
    }

    /// The tenant's invoices and credit notes, legacy ones included, oldest first.
    pub fn invoices(&self, tenant_id: &TenantId) -> Result<Vec<Invoice>> {
        let id = tenant_id.as_str();
        let (exists, documents, legacy) = self.store.read(|c| {
            // One read transaction: a migration batch committing meanwhile is seen whole or
            // not at all, so a legacy invoice is always in one of the two lists.
            let c = c.unchecked_transaction()?;
            let exists = account_exists(&c, id)?;
            let mut stmt = c.prepare(
                "SELECT document FROM billing_invoices WHERE tenant_id = ?1 ORDER BY issued_at, id",
            )?;
            let docs: Vec<String> = stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            let mut stmt = c.prepare(
                "SELECT l.id, l.tenant_id, l.amount_usd, l.period_start, l.period_end, l.issued_at
                 FROM billing_legacy_invoices l
                 WHERE l.tenant_id = ?1 AND NOT EXISTS (SELECT 1 FROM billing_invoices i WHERE i.id = l.id)
                 ORDER BY l.issued_at, l.id",
            )?;
            let legacy: Vec<LegacyRow> = stmt.query_map([id], legacy_row)?.collect::<rusqlite::Result<_>>()?;
            Ok((exists, docs, legacy))
        })?;
        if !exists {
            return Err(unknown_tenant(id));
        }
        let mut out: Vec<Invoice> = legacy
            .into_iter()
            .map(|row| self.legacy_invoice(row))
            .collect::<Result<_>>()?;
        for doc in documents {
            out.push(self.decode_invoice(&doc)?);
        }
        out.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
        Ok(out)
    }

    fn decode_invoice(&self, document: &str) -> Result<Invoice> {
        super::invoice::decode(document)
            .map_err(|e| self.decode_error("billing_invoices", "document", e))
    }

    fn legacy_invoice(&self, row: LegacyRow) -> Result<Invoice> {
        legacy_to_invoice(&self.store, row)
    }

    /// Issues a credit note against an issued invoice: `amount` (in the invoice's currency, at
    /// most what is left after earlier credit notes) goes back to the tenant's credit wallet.
    pub fn issue_credit_note(
        &self,
        invoice_id: &str,
        amount: Money,
        reason: &str,
    ) -> Result<Invoice> {
        validate_display_text("credit note reason", reason, MAX_REASON_CHARS)?;
        let original = self.invoice(invoice_id)?;
        if original.kind != InvoiceKind::Invoice {
            return Err(BillingError::Invalid {
                what: "credit note",
                reason: format!("{invoice_id} is a credit note, not an invoice"),
            }
            .into());
        }
        let amount = whole_minor_units(amount, "credit note")?;
        original.total.checked_cmp(&amount)?;
        if amount.amount() <= Decimal::ZERO {
            return Err(BillingError::Invalid {
                what: "credit note",
                reason: format!("{amount} is not positive"),
            }
            .into());
        }
        let now = self.clock.now();
        self.rates.refresh()?;
        self.store.write(|tx| -> Result<Invoice> {
            let credited: Vec<String> = tx
                .prepare_cached(
                    "SELECT total FROM billing_invoices WHERE corrects = ?1 AND kind = 'credit_note'",
                )
                .and_then(|mut s| s.query_map([invoice_id], |r| r.get(0))?.collect())
                .map_err(self.sql())?;
            let mut left = original.total.amount();
            for t in credited {
                left -= Decimal::from_str(&t)
                    .map_err(|e| self.decode_error("billing_invoices", "total", e.to_string()))?;
            }
            if amount.amount() > left {
                return Err(BillingError::Invalid {
                    what: "credit note",
                    reason: format!(
                        "{amount} is more than the {left} {} left to credit on {invoice_id}",
                        original.currency
                    ),
                }
                .into());
            }
            let usd = self.rates.rate(amount.currency(), Currency::usd(), now)?;
            let total_usd = Money::new(amount.amount() * usd.rate, Currency::usd())
                .rounded_with(self.rounding)?;
            let note = Invoice {
                id: generate_id(),
                tenant_id: original.tenant_id.clone(),
                kind: InvoiceKind::CreditNote,
                corrects: Some(invoice_id.to_owned()),
                period: original.period,
                currency: amount.currency(),
                lines: vec![InvoiceLine {
                    kind: LineKind::Correction,
                    meter: "correction".into(),
                    region: None,
                    quantity: Decimal::ONE,
                    unit_price: amount,
                    amount,
                    conversion: None,
                }],
                subtotal: amount,
                discounts: Vec::new(),
                credits_applied: zero(amount.currency())?,
                total: amount,
                exchange_rate_to_usd: usd.rate,
                rate_as_of: usd.as_of,
                rate_source: usd.source,
                total_usd,
                issued_at: now,
                legacy: false,
                memo: Some(reason.to_owned()),
            };
            InvoiceRow::of(&note)?.insert(tx).map_err(self.sql())?;
            self.move_credit(
                tx,
                note.tenant_id.as_str(),
                amount,
                reason,
                Some(&note.id),
                &format_timestamp(now),
            )?;
            Ok(note)
        })
    }

    // ----- cost pools -----

    /// Splits a shared cost across tenants by weight (largest remainder, in the pool's
    /// currency), converts each share to the tenant's billing currency at `at` and records the
    /// charges, billed in each tenant's period containing `at`.
    pub fn allocate_pool(
        &self,
        pool: &str,
        total: Money,
        weights: &[(TenantId, Decimal)],
        at: DateTime<Utc>,
    ) -> Result<PoolAllocation> {
        validate_id(IdKind::Pool, pool)?;
        let total = whole_minor_units(total, "pool total")?;
        let mut seen = std::collections::HashSet::new();
        if let Some((dup, _)) = weights.iter().find(|(t, _)| !seen.insert(t.as_str())) {
            return Err(BillingError::Invalid {
                what: "pool allocation",
                reason: format!("tenant {dup} is listed twice"),
            }
            .into());
        }
        let parts: Vec<Decimal> = weights.iter().map(|(_, w)| *w).collect();
        let shares = total.allocate(&parts)?;
        self.rates.refresh()?;
        let id = generate_id();
        self.store.write(|tx| -> Result<PoolAllocation> {
            let mut out = Vec::with_capacity(weights.len());
            for ((tenant, weight), share) in weights.iter().zip(shares) {
                if !account_exists(tx, tenant.as_str()).map_err(self.sql())? {
                    return Err(unknown_tenant(tenant.as_str()));
                }
                let invoiced = self.invoiced_periods(tx, tenant.as_str())?;
                Self::refuse_invoiced(&invoiced, at, at, "a pool charge")?;
                let currency = self.currency_in(tx, tenant.as_str(), at)?;
                let (converted, rate) = self.rates.convert(&share, currency, at)?;
                out.push(PoolShare {
                    tenant_id: tenant.clone(),
                    weight: *weight,
                    share,
                    charge: converted.rounded_with(self.rounding)?,
                    rate,
                });
            }
            for (position, share) in out.iter().enumerate() {
                let charge = PoolCharge {
                    pool: pool.to_owned(),
                    at,
                    share: share.clone(),
                };
                let json = serde_json::to_string(&charge).map_err(|e| BillingError::Invalid {
                    what: "pool allocation",
                    reason: format!("cannot encode: {e}"),
                })?;
                tx.execute(
                    "INSERT INTO billing_pool_charges
                     (allocation_id, position, pool, tenant_id, at_us, total, share)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        position as i64,
                        pool,
                        share.tenant_id.as_str(),
                        micros(at),
                        total.to_string(),
                        json
                    ],
                )
                .map_err(self.sql())?;
            }
            Ok(PoolAllocation {
                id: id.clone(),
                pool: pool.to_owned(),
                total,
                at,
                shares: out,
            })
        })
    }

    // ----- legacy import -----

    /// Imports accounts of the legacy USD-only system (no currency yet; billed in USD until the
    /// currency migration reaches them). Existing accounts are left alone; returns how many
    /// were added.
    pub fn import_legacy_accounts(&self, tenants: &[TenantId]) -> Result<usize> {
        let now = format_timestamp(self.clock.now());
        self.store.write(|tx| -> Result<usize> {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO billing_accounts (tenant_id, legacy, created_at) VALUES (?1, 1, ?2)
                     ON CONFLICT (tenant_id) DO NOTHING",
                )
                .map_err(self.sql())?;
            let mut added = 0;
            for t in tenants {
                added += stmt.execute(params![t.as_str(), now]).map_err(self.sql())?;
            }
            Ok(added)
        })
    }

    /// Imports invoices of the legacy USD-only system, kept exactly as given (the amount's
    /// text included). Their accounts must exist; an id already imported is refused.
    pub fn import_legacy_invoices(&self, invoices: &[LegacyInvoice]) -> Result<usize> {
        for inv in invoices {
            validate_id(IdKind::Invoice, &inv.id)?;
            Decimal::from_str(&inv.amount_usd).map_err(|e| BillingError::Invalid {
                what: "legacy invoice",
                reason: format!("amount {:?} is not a decimal: {e}", inv.amount_usd),
            })?;
        }
        self.store.write(|tx| -> Result<usize> {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO billing_legacy_invoices
                     (id, tenant_id, amount_usd, period_start, period_end, issued_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(self.sql())?;
            for inv in invoices {
                if !account_exists(tx, inv.tenant_id.as_str()).map_err(self.sql())? {
                    return Err(unknown_tenant(inv.tenant_id.as_str()));
                }
                stmt.execute(params![
                    inv.id,
                    inv.tenant_id.as_str(),
                    inv.amount_usd,
                    format_timestamp(inv.period.start),
                    format_timestamp(inv.period.end),
                    format_timestamp(inv.issued_at)
                ])
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        Error::from(BillingError::Invalid {
                            what: "legacy invoice",
                            reason: format!("{} is already imported", inv.id),
                        })
                    }
                    _ => self.sql()(e),
                })?;
            }
            Ok(invoices.len())
        })
    }
}

/// An invoice as the `billing_invoices` row stores it, every column already text, so a billing
/// run can prepare rows on its rating threads and only insert them under the write lock.
#[derive(Debug, Clone)]
pub(crate) struct InvoiceRow {
    id: String,
    tenant_id: String,
    kind: &'static str,
    corrects: Option<String>,
    pub(crate) period_start: Option<String>,
    pub(crate) period_end: Option<String>,
    currency: &'static str,
    pub(crate) total: String,
    exchange_rate_to_usd: String,
    rate_as_of: String,
    rate_source: String,
    pub(crate) total_usd: String,
    issued_at: String,
    legacy: bool,
    document: String,
}

impl InvoiceRow {
    /// The row of `invoice`, with its stored form (see [`super::invoice::encode`]).
    pub(crate) fn of(invoice: &Invoice) -> Result<Self> {
        let document = super::invoice::encode(invoice).map_err(|e| BillingError::Invalid {
            what: "invoice",
            reason: format!("cannot encode: {e}"),
        })?;
        Ok(Self {
            id: invoice.id.clone(),
            tenant_id: invoice.tenant_id.to_string(),
            kind: invoice.kind.as_str(),
            corrects: invoice.corrects.clone(),
            period_start: invoice.period.map(|p| format_timestamp(p.start)),
            period_end: invoice.period.map(|p| format_timestamp(p.end)),
            currency: invoice.currency.code(),
            total: invoice.total.amount().to_string(),
            exchange_rate_to_usd: invoice.exchange_rate_to_usd.to_string(),
            rate_as_of: format_timestamp(invoice.rate_as_of),
            rate_source: invoice.rate_source.clone(),
            total_usd: invoice.total_usd.amount().to_string(),
            issued_at: format_timestamp(invoice.issued_at),
            legacy: invoice.legacy,
            document,
        })
    }

    /// Inserts the row (the table refuses to change it afterwards).
    pub(crate) fn insert(&self, tx: &Connection) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO billing_invoices (id, tenant_id, kind, corrects, period_start, period_end,
                 currency, total, exchange_rate_to_usd, rate_as_of, rate_source, total_usd,
                 issued_at, legacy, document)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            self.id,
            self.tenant_id,
            self.kind,
            self.corrects,
            self.period_start,
            self.period_end,
            self.currency,
            self.total,
            self.exchange_rate_to_usd,
            self.rate_as_of,
            self.rate_source,
            self.total_usd,
            self.issued_at,
            self.legacy,
            self.document
        ])?;
        Ok(())
    }
}

/// A legacy invoice row: id, tenant, amount text, period start, period end, issued at.
pub(crate) type LegacyRow = (String, String, String, String, String, String);

pub(crate) fn legacy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LegacyRow> {
    r.try_into()
}

/// A legacy invoice as an [`Invoice`]: USD, rate 1, no lines, the amount exactly as written.
pub(crate) fn legacy_to_invoice(store: &Store, row: LegacyRow) -> Result<Invoice> {
    let (id, tenant, amount, start, end, issued) = row;
    let decode = |column, reason: String| -> Error {
        StoreError::Decode {
            path: store.label().to_path_buf(),
            table: "billing_legacy_invoices",
            column,
            reason,
        }
        .into()
    };
    let amount = Decimal::from_str(&amount).map_err(|e| decode("amount_usd", e.to_string()))?;
    let issued_at = store.decode_time("billing_legacy_invoices", "issued_at", &issued)?;
    let period = Period {
        start: store.decode_time("billing_legacy_invoices", "period_start", &start)?,
        end: store.decode_time("billing_legacy_invoices", "period_end", &end)?,
    };
    let usd = Money::new(amount, Currency::usd());
    Ok(Invoice {
        id,
        tenant_id: TenantId::new(tenant).map_err(|e| decode("tenant_id", e.to_string()))?,
        kind: InvoiceKind::Invoice,
        corrects: None,
        period: Some(period),
        currency: Currency::usd(),
        lines: Vec::new(),
        subtotal: usd,
        discounts: Vec::new(),
        credits_applied: zero(Currency::usd())?,
        total: usd,
        exchange_rate_to_usd: Decimal::ONE,
        rate_as_of: issued_at,
        rate_source: "legacy USD".into(),
        total_usd: usd,
        issued_at,
        legacy: true,
        memo: None,
    })
}

pub(crate) fn account_exists(conn: &Connection, tenant: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM billing_accounts WHERE tenant_id = ?1")?
        .exists([tenant])
}

/// The currency in effect at `at` (text), `None` for a legacy account never given one.
fn current_currency(conn: &Connection, tenant: &str, at: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT currency FROM billing_currency_changes
         WHERE tenant_id = ?1 AND effective_from <= ?2 ORDER BY effective_from DESC LIMIT 1",
    )?
    .query_row(params![tenant, at], |r| r.get(0))
    .optional()
}

pub(crate) fn insert_change(
    conn: &Connection,
    tenant: &str,
    effective_from: &str,
    currency: Currency,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO billing_currency_changes
         (tenant_id, effective_from, currency, recorded_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        tenant,
        effective_from,
        currency.code(),
        format_timestamp(now)
    ])
}

/// The start of the calendar month (UTC) after the one containing `now`.
pub fn next_period_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

pub(crate) fn unknown_tenant(id: &str) -> Error {
    TenancyError::UnknownTenant {
        tenant_id: id.to_owned(),
    }
    .into()
}

/// Zero with the currency's minor units as its scale (`0.00` USD, `0` JPY, `0.000` KWD).
fn zero(currency: Currency) -> Result<Money> {
    Ok(Money::zero(currency).rounded_with(RoundingStrategy::TowardZero)?)
}

/// `amount` if it is a whole number of its currency's minor units.
fn whole_minor_units(amount: Money, what: &'static str) -> Result<Money> {
    let rounded = amount.rounded_with(RoundingStrategy::TowardZero)?;
    if rounded.amount() != amount.amount() {
        return Err(BillingError::Invalid {
            what,
            reason: format!(
                "{amount} is not a whole number of {} minor units",
                amount.currency()
            ),
        }
        .into());
    }
    Ok(rounded)
}
