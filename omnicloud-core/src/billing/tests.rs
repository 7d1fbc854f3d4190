//! Tests of the billing service and the currency migration against a real SQLite store.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::clock::{ManualClock, SharedClock};
use crate::error::{BillingError, Error, TenancyError};
use crate::ids::TenantId;
use crate::store::Store;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

fn c(code: &str) -> Currency {
    Currency::new(code).expect("currency")
}

fn id(text: &str) -> TenantId {
    TenantId::new(text).expect("id")
}

fn m(amount: &str, code: &str) -> Money {
    Money::new(d(amount), c(code))
}

struct Fixture {
    store: Store,
    clock: Arc<ManualClock>,
    billing: BillingService,
}

fn fixture_on(store: Store) -> Fixture {
    let clock = Arc::new(ManualClock::new(t("2026-01-15T10:00:00Z")));
    let rates = Arc::new(ExchangeRates::persistent(store.clone()).expect("rates"));
    let as_of = t("2026-01-01T00:00:00Z");
    rates
        .set_rate(c("EUR"), c("USD"), d("1.10"), as_of, "ECB")
        .expect("rate");
    rates
        .set_rate(c("USD"), c("JPY"), d("150"), as_of, "ECB")
        .expect("rate");
    let shared: SharedClock = clock.clone();
    let billing = BillingService::new(store.clone(), shared, rates);
    billing
        .set_price("cpu", m("0.05", "USD"), None)
        .expect("price");
    Fixture {
        store,
        clock,
        billing,
    }
}

fn fixture() -> Fixture {
    fixture_on(Store::memory().expect("store"))
}

fn usage(tenant: &str, q: &str, start: &str, end: &str) -> UsageRecord {
    UsageRecord::new(id(tenant), "cpu", d(q), "eu-west-1", t(start), t(end), None).expect("usage")
}

fn month(start: &str, end: &str) -> Period {
    Period::new(t(start), t(end)).expect("period")
}

#[test]
fn a_currency_change_waits_for_the_next_period() {
    let f = fixture();
    f.billing
        .upsert_tenant(&id("acme"), c("USD"), None)
        .expect("open");
    let account = f
        .billing
        .upsert_tenant(&id("acme"), c("EUR"), None)
        .expect("change");
    assert_eq!(account.currency, c("USD"));
    assert_eq!(account.pending, Some((c("EUR"), t("2026-02-01T00:00:00Z"))));
    let jan = month("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    let feb = month("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z");
    f.billing
        .record_usage(&usage(
            "acme",
            "100",
            "2026-01-31T00:00:00Z",
            "2026-02-02T00:00:00Z",
        ))
        .expect("usage");
    f.clock.set(t("2026-03-01T01:00:00Z")).expect("clock");
    let a = f.billing.generate_invoice(&id("acme"), jan).expect("jan");
    let b = f.billing.generate_invoice(&id("acme"), feb).expect("feb");
    assert_eq!((a.currency, b.currency), (c("USD"), c("EUR")));
    // 50 units each side; USD price 0.05 → 2.50 USD; in EUR 0.05 / 1.10 per unit.
    assert_eq!(a.total.amount(), d("2.50"));
    assert_eq!(b.lines[0].quantity, d("50"));
    assert_eq!(b.total.amount(), d("2.27"));
    assert!(b.lines[0].conversion.is_some());
    assert_eq!(b.exchange_rate_to_usd, d("1.10"));
    assert_eq!(b.total_usd.amount(), d("2.50"));
    // A change back to the current currency cancels a pending one.
    f.billing
        .upsert_tenant(&id("acme"), c("JPY"), None)
        .expect("change");
    let account = f
        .billing
        .upsert_tenant(&id("acme"), c("EUR"), None)
        .expect("cancel");
    assert_eq!(account.pending, None);
}

#[test]
fn issued_invoices_never_change() {
    let f = fixture();
    f.billing
        .upsert_tenant(&id("acme"), c("USD"), None)
        .expect("open");
    let jan = month("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    f.billing
        .record_usage(&usage(
            "acme",
            "10",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ))
        .expect("usage");
    let inv = f.billing.generate_invoice(&id("acme"), jan).expect("issue");
    let again = f.billing.generate_invoice(&id("acme"), jan);
    assert!(matches!(
        again,
        Err(Error::Billing(BillingError::InvoiceImmutable { ref invoice_id, .. })) if *invoice_id == inv.id
    ));
    let late = f.billing.record_usage(&usage(
        "acme",
        "1",
        "2026-01-31T23:00:00Z",
        "2026-02-01T01:00:00Z",
    ));
    assert!(matches!(
        late,
        Err(Error::Billing(BillingError::InvoiceImmutable { .. }))
    ));
    // Usage starting exactly at the period's end is fine, and so is usage ending at its start.
    f.billing
        .record_usage(&usage(
            "acme",
            "1",
            "2026-02-01T00:00:00Z",
            "2026-02-01T01:00:00Z",
        ))
        .expect("after");
    f.billing
        .record_usage(&usage(
            "acme",
            "1",
            "2025-12-31T23:00:00Z",
            "2026-01-01T00:00:00Z",
        ))
        .expect("before");
    let raw = f.store.read(|c| {
        c.execute(
            "UPDATE billing_invoices SET total = '0' WHERE id = ?1",
            [&inv.id],
        )
    });
    assert!(raw.is_err(), "the table refuses updates");
    assert_eq!(f.billing.invoice(&inv.id).expect("read"), inv);
}

#[test]
fn credit_notes_correct_an_invoice_into_the_wallet() {
    let f = fixture();
    f.billing
        .upsert_tenant(&id("acme"), c("USD"), None)
        .expect("open");
    f.billing
        .record_usage(&usage(
            "acme",
            "100",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ))
        .expect("usage");
    let inv = f
        .billing
        .generate_invoice(
            &id("acme"),
            month("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        )
        .expect("issue");
    assert_eq!(inv.total.amount(), d("5.00"));
    let note = f
        .billing
        .issue_credit_note(&inv.id, m("2.00", "USD"), "outage")
        .expect("note");
    assert_eq!(note.kind, InvoiceKind::CreditNote);
    assert_eq!(note.corrects.as_deref(), Some(inv.id.as_str()));
    assert!(
        f.billing
            .issue_credit_note(&inv.id, m("3.01", "USD"), "too much")
            .is_err()
    );
    assert!(matches!(
        f.billing
            .issue_credit_note(&inv.id, m("1", "EUR"), "wrong currency"),
        Err(Error::Money(
            crate::error::MoneyError::CurrencyMismatch { .. }
        ))
    ));
    assert_eq!(
        f.billing
            .credit_balance(&id("acme"), c("USD"))
            .expect("balance"),
        m("2.00", "USD")
    );
    assert_eq!(f.billing.invoices(&id("acme")).expect("list").len(), 2);
}

#[test]
fn pools_split_exactly_and_bill_each_tenant_in_its_currency() {
    let f = fixture();
    for (tenant, code) in [("a", "USD"), ("b", "EUR"), ("j", "JPY")] {
        f.billing
            .upsert_tenant(&id(tenant), c(code), None)
            .expect("open");
    }
    let pool = f
        .billing
        .allocate_pool(
            "egress",
            m("100.00", "USD"),
            &[(id("a"), d("1")), (id("b"), d("1")), (id("j"), d("1"))],
            t("2026-01-20T00:00:00Z"),
        )
        .expect("pool");
    let shares: Vec<Decimal> = pool.shares.iter().map(|s| s.share.amount()).collect();
    assert_eq!(shares, [d("33.34"), d("33.33"), d("33.33")]);
    assert_eq!(pool.recovered_total().expect("sum"), pool.total);
    assert_eq!(pool.shares[2].charge, m("5000", "JPY"));
    let invoices = f
        .billing
        .generate_invoices(month("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"), None)
        .expect("run");
    let j = invoices
        .iter()
        .find(|i| i.tenant_id.as_str() == "j")
        .expect("j");
    assert_eq!(j.lines[0].kind, LineKind::PoolShare);
    assert_eq!(j.total, m("5000", "JPY"));
    let unknown = f.billing.allocate_pool(
        "egress",
        m("1.00", "USD"),
        &[(id("a"), d("1")), (id("ghost"), d("1"))],
        t("2026-02-20T00:00:00Z"),
    );
    assert!(matches!(
        unknown,
        Err(Error::Tenancy(TenancyError::UnknownTenant { .. }))
    ));
}

#[test]
fn usage_written_by_another_connection_is_invoiced() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("billing.db");
    let f = fixture_on(Store::open(&path).expect("open"));
    f.billing
        .upsert_tenant(&id("acme"), c("USD"), None)
        .expect("open");
    f.billing
        .record_usage(&usage(
            "acme",
            "10",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ))
        .expect("usage");
    let jan = month("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    assert_eq!(
        f.billing
            .preview_invoice(&id("acme"), jan)
            .expect("p")
            .total,
        m("0.50", "USD")
    );
    let other = fixture_on(Store::open(&path).expect("second connection"));
    other
        .billing
        .record_usage(&usage(
            "acme",
            "30",
            "2026-01-04T00:00:00Z",
            "2026-01-05T00:00:00Z",
        ))
        .expect("usage");
    let inv = f.billing.generate_invoice(&id("acme"), jan).expect("issue");
    assert_eq!(inv.lines[0].quantity, d("40"));
    assert_eq!(inv.total, m("2.00", "USD"));
}

#[test]
fn the_migration_resumes_after_its_checkpoint_and_never_repeats_an_account() {
    let f = fixture();
    let ids: Vec<TenantId> = (0..10).map(|i| id(&format!("t{i:02}"))).collect();
    f.billing.import_legacy_accounts(&ids).expect("import");
    f.billing
        .import_legacy_invoices(&[LegacyInvoice {
            id: "L1".into(),
            tenant_id: id("t03"),
            amount_usd: "12.50".into(),
            period: month("2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            issued_at: t("2026-01-01T00:00:00Z"),
        }])
        .expect("legacy");
    let clock: SharedClock = f.clock.clone();
    let options = MigrationOptions {
        batch_size: 3,
        ..MigrationOptions::default()
    };
    let mut chosen = Vec::new();
    let dry = migrate_billing_currency(
        &f.store,
        &clock,
        MigrationOptions {
            dry_run: true,
            ..options
        },
        &mut |_| Ok(Some(c("EUR"))),
        &mut |_| ControlFlow::Continue(()),
    )
    .expect("dry run");
    assert_eq!((dry.processed, dry.invoices_backfilled), (10, 1));
    assert_eq!(
        f.billing.account(&id("t00")).expect("a").pending,
        None,
        "a dry run writes nothing"
    );
    let stopped = migrate_billing_currency(
        &f.store,
        &clock,
        options,
        &mut |t| {
            chosen.push(t.to_string());
            Ok(Some(c("EUR")))
        },
        &mut |p| {
            if p.batches == 2 {
                ControlFlow::Break("operator".into())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(
        stopped,
        Err(Error::Billing(BillingError::MigrationStopped {
            processed: 6,
            ..
        }))
    ));
    let report = migrate_billing_currency(
        &f.store,
        &clock,
        options,
        &mut |t| {
            chosen.push(t.to_string());
            Ok(None)
        },
        &mut |_| ControlFlow::Continue(()),
    )
    .expect("resume");
    assert_eq!((report.resumed_after, report.processed), (6, 4));
    assert_eq!(
        report.invoices_backfilled, 0,
        "t03 was in the first batches"
    );
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(chosen, expected, "every account exactly once, in order");
    let a = f.billing.account(&id("t00")).expect("a");
    assert_eq!(a.pending, Some((c("EUR"), t("2026-02-01T00:00:00Z"))));
    let z = f.billing.account(&id("t09")).expect("z");
    assert_eq!(z.pending, Some((c("USD"), t("2026-02-01T00:00:00Z"))));
    let legacy = f.billing.invoice("L1").expect("legacy");
    assert!(legacy.legacy);
    assert_eq!(legacy.total.amount().to_string(), "12.50");
    let again = migrate_billing_currency(&f.store, &clock, options, &mut |_| Ok(None), &mut |_| {
        ControlFlow::Continue(())
    })
    .expect("again");
    assert_eq!(again.processed, 0);
}
