//! Billing benchmarks: invoicing 1,000 tenants in 8 currencies from 100,000 usage records
//! (in-memory store, usage index warm), `record_usage_many` throughput, the currency migration
//! of 100,000 legacy accounts, and `Money::allocate` over 100 weights.
//!
//! Every timed run gets fresh state from an untimed setup (issued invoices never change, and a
//! migrated account is never migrated again), so sample counts are kept small.
//!
//! Run with `cargo bench -p omnicloud-benches --bench billing`.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use omnicloud_benches::Xorshift;
use omnicloud_core::billing::{
    BillingService, Currency, DiscountTerms, ExchangeRates, LegacyInvoice, MigrationOptions, Money,
    Period, UsageRecord, migrate_billing_currency,
};
use omnicloud_core::clock::{ManualClock, SharedClock};
use omnicloud_core::events::EventBus;
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::tenancy::{Tenant, TenantRegistry};
use rust_decimal::Decimal;

/// Billing currencies and their rates to USD (inverses terminate, as in `benches/peers.py`).
const CURRENCIES: [(&str, &str); 8] = [
    ("USD", "1"),
    ("EUR", "1.25"),
    ("GBP", "1.28"),
    ("JPY", "0.0064"),
    ("CHF", "1.024"),
    ("CAD", "0.8"),
    ("AUD", "0.64"),
    ("KWD", "3.2"),
];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];
/// Meter, region (`None`: the meter's default), currency, unit price.
const PRICES: [(&str, Option<&str>, &str, &str); 9] = [
    ("compute.vcpu_hours", None, "USD", "0.0416"),
    ("compute.vcpu_hours", Some("ap-south-1"), "USD", "0.0464"),
    ("memory.gb_hours", None, "USD", "0.0052"),
    ("storage.gb_months", None, "USD", "0.023"),
    ("network.egress_gb", None, "USD", "0.09"),
    ("network.egress_gb", Some("eu-west-1"), "EUR", "0.08"),
    ("requests.million", None, "USD", "0.40"),
    ("requests.million", None, "EUR", "0.35"),
    ("gpu.hours", None, "EUR", "2.10"),
];
const METERS: [&str; 6] = [
    "compute.vcpu_hours",
    "memory.gb_hours",
    "storage.gb_months",
    "network.egress_gb",
    "requests.million",
    "gpu.hours",
];
/// Record durations in seconds (2^a * 5^b: prorated shares are exact decimals).
const DURATIONS: [i64; 8] = [1_000, 2_000, 4_000, 5_000, 8_000, 10_000, 20_000, 40_000];
/// 2026-01-01T00:00:00Z and 2026-02-01T00:00:00Z: the period billed.
const PERIOD: (i64, i64) = (1_767_225_600, 1_769_904_000);
/// 2025-12-01: accounts, prices, discounts and credits are set up.
const SETUP_AT: i64 = 1_764_547_200;
/// 2026-02-01T06:00:00Z: invoices are issued and the migration runs.
const ISSUE_AT: i64 = 1_769_925_600;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("instant")
}

fn dec(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn currency(code: &str) -> Currency {
    Currency::new(code).expect("currency")
}

fn period() -> Period {
    Period::new(at(PERIOD.0), at(PERIOD.1)).expect("period")
}

/// Generated tenants (with their currencies) and usage records.
struct Fixture {
    tenants: Vec<(TenantId, Currency)>,
    records: Vec<UsageRecord>,
}

fn fixture(tenants: usize, records: usize) -> Fixture {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let tenants: Vec<(TenantId, Currency)> = (0..tenants)
        .map(|i| {
            let id = TenantId::new(format!("tenant-{i:06}")).expect("tenant");
            (id, currency(rng.pick(&CURRENCIES).0))
        })
        .collect();
    let (ps, pe) = PERIOD;
    let records = (0..records)
        .map(|_| {
            let tenant = rng.pick(&tenants).0.clone();
            let meter = *rng.pick(&METERS);
            let region = *rng.pick(&REGIONS);
            let quantity = Decimal::new(rng.below(100_000) as i64, 3);
            let duration = *rng.pick(&DURATIONS);
            let (start, end) = match rng.below(100) {
                _ if meter == "requests.million" => {
                    let t = ps - 86_400 + rng.below((pe - ps + 172_800) as u64) as i64;
                    (t, t)
                }
                0..=6 => {
                    let start = ps - 1 - rng.below(duration as u64 - 1) as i64;
                    (start, start + duration)
                }
                7..=13 => {
                    let end = pe + 1 + rng.below(duration as u64 - 1) as i64;
                    (end - duration, end)
                }
                _ => {
                    let start = ps + rng.below((pe - ps - duration) as u64) as i64;
                    (start, start + duration)
                }
            };
            UsageRecord::new(tenant, meter, quantity, region, at(start), at(end), None)
                .expect("record")
        })
        .collect();
    Fixture { tenants, records }
}

/// A service over an in-memory store with rates, prices, the fixture's accounts, and discounts
/// and credits for some of them; its clock is at setup time.
fn service(fx: &Fixture) -> (BillingService, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(SETUP_AT)));
    let rates = ExchangeRates::new();
    for (code, rate) in &CURRENCIES[1..] {
        rates
            .set_rate(
                currency(code),
                Currency::usd(),
                dec(rate),
                at(SETUP_AT - 86_400),
                "ECB",
            )
            .expect("rate");
    }
    let shared: SharedClock = clock.clone();
    let svc = BillingService::new(Store::memory().expect("store"), shared, Arc::new(rates));
    for (meter, region, code, price) in PRICES {
        svc.set_price(meter, Money::new(dec(price), currency(code)), region)
            .expect("price");
    }
    for (i, (tenant, code)) in fx.tenants.iter().enumerate() {
        svc.upsert_tenant(tenant, *code, None).expect("account");
        let units = if code.code() == "JPY" { 1_000 } else { 10 };
        if i % 5 == 0 {
            svc.add_discount(tenant, DiscountTerms::Percent(dec("12.5")), Some(1))
                .expect("discount");
        }
        if i % 10 == 3 {
            let amount = Money::new(Decimal::from(units), *code);
            svc.add_discount(tenant, DiscountTerms::Amount(amount), Some(1))
                .expect("discount");
        }
        if i % 7 == 1 {
            let amount = Money::new(Decimal::from(2 * units), *code);
            svc.add_credit(tenant, amount, "bench").expect("credit");
        }
    }
    (svc, clock)
}

/// A service whose usage was recorded through it (index warm), clock at issue time.
fn billed_service(fx: &Fixture) -> BillingService {
    let (svc, clock) = service(fx);
    for chunk in fx.records.chunks(10_000) {
        svc.record_usage_many(chunk).expect("usage");
    }
    clock.set(at(ISSUE_AT)).expect("clock");
    svc
}

fn invoicing(c: &mut Criterion) {
    let fx = fixture(1_000, 100_000);
    let mut group = c.benchmark_group("billing/invoices 1k tenants 100k records");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("generate_invoices (memory store, index warm)", |b| {
        b.iter_batched(
            || billed_service(&fx),
            |svc| {
                let invoices = svc.generate_invoices(period(), None).expect("invoices");
                assert_eq!(invoices.len(), 1_000);
                invoices
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("billing/record_usage_many");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("10k records, 1k tenants (memory store)", |b| {
        b.iter_batched(
            || service(&fx).0,
            |svc| svc.record_usage_many(&fx.records[..10_000]).expect("usage"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// A store with `accounts` legacy accounts (imported in shuffled order, 5% registered with a
/// currency) and `invoices` legacy invoices.
fn legacy_store(accounts: usize, invoices: usize) -> Store {
    let store = Store::memory().expect("store");
    let clock: SharedClock = Arc::new(ManualClock::new(at(SETUP_AT)));
    let svc = BillingService::new(store.clone(), clock.clone(), Arc::new(ExchangeRates::new()));
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    let mut ids: Vec<TenantId> = (0..accounts)
        .map(|i| TenantId::new(format!("legacy-{i:07}")).expect("tenant"))
        .collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    svc.import_legacy_accounts(&ids).expect("accounts");
    let registry = TenantRegistry::new(store.clone(), clock, EventBus::new());
    for id in ids.iter().take(accounts / 20) {
        let code = currency(rng.pick(&CURRENCIES[1..]).0);
        registry
            .create(Tenant::new(id.clone(), "Legacy tenant", code).expect("tenant"))
            .expect("register");
    }
    let legacy: Vec<LegacyInvoice> = (0..invoices)
        .map(|i| LegacyInvoice {
            id: format!("legacy-inv-{i:07}"),
            tenant_id: rng.pick(&ids).clone(),
            amount_usd: format!("{}.{:02}", rng.below(100_000), rng.below(100)),
            period: Period::new(at(PERIOD.0 - 2_678_400), at(PERIOD.0)).expect("period"),
            issued_at: at(PERIOD.0),
        })
        .collect();
    svc.import_legacy_invoices(&legacy).expect("invoices");
    store
}

fn migration(c: &mut Criterion) {
    let mut group = c.benchmark_group("billing/currency migration");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(16));
    group.throughput(Throughput::Elements(100_000));
    group.bench_function(
        "100k legacy accounts, 10k invoices, batch 5000 (memory)",
        |b| {
            b.iter_batched(
                || legacy_store(100_000, 10_000),
                |store| {
                    let clock: SharedClock = Arc::new(ManualClock::new(at(ISSUE_AT)));
                    let options = MigrationOptions {
                        batch_size: 5_000,
                        ..MigrationOptions::default()
                    };
                    let report = migrate_billing_currency(
                        &store,
                        &clock,
                        options,
                        &mut |_| Ok(None),
                        &mut |_| ControlFlow::Continue(()),
                    )
                    .expect("migration");
                    assert_eq!(report.processed, 100_000);
                    report
                },
                BatchSize::PerIteration,
            );
        },
    );
    group.finish();
}

fn money(c: &mut Criterion) {
    let mut rng = Xorshift(0xD1B5_4A32_D192_ED03);
    let weights: Vec<Decimal> = (0..100)
        .map(|_| Decimal::from(1 + rng.below(1_000)))
        .collect();
    let total = Money::new(dec("1000000.00"), Currency::usd());
    let mut group = c.benchmark_group("billing/money");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("allocate 1,000,000.00 USD over 100 weights", |b| {
        b.iter(|| total.allocate(&weights).expect("allocate"));
    });
    group.finish();
}

criterion_group!(benches, invoicing, migration, money);
criterion_main!(benches);
