//! Kernel benchmarks: audit trail appends and verification, event bus fan-out, money rounding.
//!
//! Run with `cargo bench -p omnicloud-benches --bench kernel`.

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use omnicloud_benches::{audit_record, filled_audit_log, t0};
use omnicloud_core::audit::AuditLog;
use omnicloud_core::billing::{Currency, Money};
use omnicloud_core::clock::ManualClock;
use omnicloud_core::events::{Event, EventBus};
use omnicloud_core::store::Store;
use rust_decimal::Decimal;

fn audit(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("append_all 1k (memory, one transaction)", |b| {
        b.iter_batched(
            || {
                let store = Store::memory().expect("store");
                AuditLog::new(store, Arc::new(ManualClock::new(t0())))
            },
            |log| {
                log.append_all((0..1000).map(audit_record).collect())
                    .expect("append")
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("append 1k (memory, one transaction each)", |b| {
        b.iter_batched(
            || {
                AuditLog::new(
                    Store::memory().expect("store"),
                    Arc::new(ManualClock::new(t0())),
                )
            },
            |log| {
                for i in 0..1000 {
                    log.append(audit_record(i)).expect("append");
                }
            },
            BatchSize::SmallInput,
        );
    });
    let log = filled_audit_log(100_000).expect("fill");
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(10);
    group.bench_function("verify 100k", |b| {
        b.iter(|| assert!(log.verify().expect("verify").is_intact()));
    });
    group.finish();
}

fn events(c: &mut Criterion) {
    let bus = EventBus::new();
    for _ in 0..3 {
        bus.subscribe(None, |env| {
            black_box(env.event.name());
            Ok(())
        });
    }
    let event =
        Event::custom("bench.tick", None, None, serde_json::json!({"n": 1})).expect("event");
    c.bench_function("events/publish to 3 subscribers", |b| {
        b.iter(|| bus.publish(t0(), black_box(event.clone())));
    });
}

fn money(c: &mut Criterion) {
    let usd = Currency::usd();
    let amounts: Vec<Money> = (0..10_000)
        .map(|i| {
            Money::new(
                Decimal::from_str(&format!("{i}.{:05}", i * 7 % 100_000)).unwrap_or_default(),
                usd,
            )
        })
        .collect();
    let mut group = c.benchmark_group("money");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("sum and round 10k", |b| {
        b.iter(|| {
            amounts
                .iter()
                .try_fold(Money::zero(usd), |acc, m| acc.checked_add(&m.rounded()?))
                .expect("sum")
        });
    });
    group.finish();
}

criterion_group!(kernel, audit, events, money);
criterion_main!(kernel);
