//! The demo's billing chapter: tenants billed in USD, EUR, JPY and KWD, a month of metered
//! usage, discounts and credits, the invoices with their rate to USD, a currency change that
//! waits for the next period, a shared-cost pool, and the legacy currency migration.

use std::io::Write;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::billing::{
    BillingService, Currency, DiscountTerms, ExchangeRates, LegacyInvoice, MigrationOptions, Money,
    Period, UsageRecord, migrate_billing_currency,
};
use omnicloud_core::clock::{ManualClock, SharedClock};
use omnicloud_core::store::Store;
use rust_decimal::Decimal;

use super::{DemoError, Timeline, tenant_id};

fn at(text: &str) -> Result<DateTime<Utc>, DemoError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DemoError::Refused(format!("bad demo instant {text}: {e}")))
}

/// A demo amount in `code`.
pub(super) fn money(amount: &str, code: &str) -> Result<Money, DemoError> {
    let amount = Decimal::from_str(amount)
        .map_err(|e| DemoError::Refused(format!("bad demo amount {amount}: {e}")))?;
    Ok(Money::new(amount, currency(code)?))
}

fn currency(code: &str) -> Result<Currency, DemoError> {
    Currency::new(code).map_err(|e| DemoError::Core(e.into()))
}

/// Runs the chapter on `store`; returns whether every check it makes held.
pub(super) fn run<W: Write>(t: &mut Timeline<'_, W>, store: &Store) -> Result<bool, DemoError> {
    let manual = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")?));
    let clock: SharedClock = manual.clone();
    let rates = Arc::new(ExchangeRates::persistent(store.clone())?);
    let published = at("2025-12-31T16:00:00Z")?;
    for (base, quote, rate, source) in [
        ("EUR", "USD", "1.0850", "ECB"),
        ("USD", "JPY", "156.20", "ECB"),
        ("KWD", "USD", "3.2560", "CBK"),
    ] {
        let rate = Decimal::from_str(rate)
            .map_err(|e| DemoError::Refused(format!("bad demo rate: {e}")))?;
        rates.set_rate(currency(base)?, currency(quote)?, rate, published, source)?;
    }
    t.line(
        "billing",
        "rates as of 2025-12-31: EUR/USD 1.0850 (ECB), USD/JPY 156.20 (ECB), KWD/USD 3.2560 (CBK)",
    )?;
    let billing = BillingService::new(store.clone(), clock.clone(), rates);
    for (id, code) in [
        ("acme", "USD"),
        ("globex", "EUR"),
        ("initech", "JPY"),
        ("souq", "KWD"),
    ] {
        billing.upsert_tenant(&tenant_id(id)?, currency(code)?, None)?;
    }
    billing.set_price("compute.vcpu_hours", money("0.0425", "USD")?, None)?;
    billing.set_price("compute.vcpu_hours", money("0.0390", "EUR")?, None)?;
    billing.set_price("storage.gb_months", money("0.023", "USD")?, None)?;
    t.line(
        "billing",
        "accounts acme USD, globex EUR, initech JPY, souq KWD; vCPU-hour 0.0425 USD / 0.0390 EUR, GB-month 0.023 USD",
    )?;
    let (jan, feb) = (at("2026-01-01T00:00:00Z")?, at("2026-02-01T00:00:00Z")?);
    let usage = [
        ("acme", "compute.vcpu_hours", "720", "us-east-1", jan, feb),
        (
            "globex",
            "compute.vcpu_hours",
            "1000",
            "eu-west-1",
            at("2026-01-31T12:00:00Z")?,
            at("2026-02-01T12:00:00Z")?,
        ),
        (
            "initech",
            "compute.vcpu_hours",
            "500",
            "ap-northeast-1",
            jan,
            feb,
        ),
        (
            "souq",
            "compute.vcpu_hours",
            "300",
            "me-central-1",
            jan,
            feb,
        ),
        (
            "souq",
            "storage.gb_months",
            "1500",
            "me-central-1",
            jan,
            feb,
        ),
    ];
    let records = usage
        .iter()
        .map(|(tenant, meter, q, region, start, end)| {
            let q = Decimal::from_str(q)
                .map_err(|e| DemoError::Refused(format!("bad demo quantity: {e}")))?;
            Ok(UsageRecord::new(
                tenant_id(tenant)?,
                *meter,
                q,
                *region,
                *start,
                *end,
                None,
            )?)
        })
        .collect::<Result<Vec<_>, DemoError>>()?;
    billing.record_usage_many(&records)?;
    t.line(
        "billing",
        "usage recorded; globex's 1000 vCPU-hours run from Jan 31 12:00 to Feb 1 12:00 (half falls in January)",
    )?;
    billing.add_discount(
        &tenant_id("globex")?,
        DiscountTerms::Percent(Decimal::TEN),
        Some(1),
    )?;
    billing.add_discount(
        &tenant_id("souq")?,
        DiscountTerms::Amount(money("1.000", "KWD")?),
        Some(1),
    )?;
    billing.add_credit(
        &tenant_id("initech")?,
        money("1000", "JPY")?,
        "welcome credit",
    )?;
    billing.add_credit(&tenant_id("initech")?, money("5.00", "EUR")?, "EUR voucher")?;
    t.line(
        "billing",
        "globex 10% off; souq 1.000 KWD off; initech 1000 JPY credit and a 5.00 EUR voucher",
    )?;

    manual
        .set(at("2026-02-01T00:10:00Z")?)
        .map_err(omnicloud_core::Error::from)?;
    let invoices = billing.generate_invoices(Period::new(jan, feb)?, None)?;
    for inv in &invoices {
        let lines: Vec<String> = inv
            .lines
            .iter()
            .map(|l| format!("{} {} = {}", l.meter, l.quantity.normalize(), l.amount))
            .collect();
        t.line(
            "invoice",
            format!(
                "{} January: {}; total {} (1 {} = {} USD, {} as of {}) = {}",
                inv.tenant_id,
                lines.join("; "),
                inv.total,
                inv.currency,
                inv.exchange_rate_to_usd.normalize(),
                inv.rate_source,
                inv.rate_as_of.format("%Y-%m-%d"),
                inv.total_usd
            ),
        )?;
    }
    let initech_eur = billing.credit_balance(&tenant_id("initech")?, currency("EUR")?)?;
    t.line(
        "billing",
        format!("initech's EUR voucher is untouched by its JPY invoice: {initech_eur}"),
    )?;
    if let Err(err) = billing.generate_invoice(&tenant_id("acme")?, Period::new(jan, feb)?) {
        t.line("billing", format!("refused as expected: {err}"))?;
    }

    manual
        .set(at("2026-02-14T09:00:00Z")?)
        .map_err(omnicloud_core::Error::from)?;
    let acme = billing.upsert_tenant(&tenant_id("acme")?, currency("EUR")?, None)?;
    if let Some((next, from)) = acme.pending {
        t.line(
            "billing",
            format!(
                "acme switches to {next}: February is finished in {}, {next} from {}",
                acme.currency,
                from.format("%Y-%m-%d")
            ),
        )?;
    }

    let pool = billing.allocate_pool(
        "shared-egress",
        money("1000.00", "USD")?,
        &[
            (tenant_id("acme")?, Decimal::from(50)),
            (tenant_id("globex")?, Decimal::from(30)),
            (tenant_id("initech")?, Decimal::from(20)),
        ],
        at("2026-02-10T00:00:00Z")?,
    )?;
    let shares: Vec<String> = pool
        .shares
        .iter()
        .map(|s| format!("{} {} -> {}", s.tenant_id, s.share, s.charge))
        .collect();
    let recovered = pool
        .recovered_total()
        .map_err(omnicloud_core::Error::from)?;
    t.line(
        "pool",
        format!(
            "{} split 50/30/20: {}; shares sum to {}",
            pool.total,
            shares.join(", "),
            recovered
        ),
    )?;

    let legacy: Vec<_> = ["legacy-1", "legacy-2", "legacy-3"]
        .iter()
        .map(|id| tenant_id(id))
        .collect::<Result<_, _>>()?;
    billing.import_legacy_accounts(&legacy)?;
    billing.import_legacy_invoices(&[LegacyInvoice {
        id: "LEG-2025-12-0001".into(),
        tenant_id: tenant_id("legacy-1")?,
        amount_usd: "42.00".into(),
        period: Period::new(at("2025-12-01T00:00:00Z")?, jan)?,
        issued_at: jan,
    }])?;
    let mut batches = 0u64;
    let report = migrate_billing_currency(
        store,
        &clock,
        MigrationOptions {
            batch_size: 2,
            ..MigrationOptions::default()
        },
        &mut |_| Ok(None),
        &mut |_| {
            batches += 1;
            ControlFlow::Continue(())
        },
    )?;
    let legacy_invoice = billing.invoice("LEG-2025-12-0001")?;
    t.line(
        "migrate",
        format!(
            "{} legacy accounts migrated in {batches} checkpointed batches; legacy invoice {} still {} (legacy: {})",
            report.processed, legacy_invoice.id, legacy_invoice.total, legacy_invoice.legacy
        ),
    )?;
    Ok(recovered == pool.total && invoices.len() == 4 && legacy_invoice.legacy)
}
