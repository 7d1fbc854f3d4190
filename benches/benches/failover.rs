//! Failover benchmarks: plan + execute a manual failover of 1,000 and 10,000 resources (a tiered
//! dependency graph: databases, app servers, load balancers) with the in-memory providers,
//! audited, on an in-memory store and on a file store; the plan alone at 10,000; and the health
//! evaluation (`HealthHistory::record`, `decide`).
//!
//! Every timed failover gets a fresh world from an untimed setup (a tenant fails over once):
//! resources registered in a fresh in-memory store, or a copy of a prepared database file.
//! Sample counts are kept small.
//!
//! Run with `cargo bench -p omnicloud-benches --bench failover`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use omnicloud_benches::{Xorshift, t0};
use omnicloud_core::audit::AuditLog;
use omnicloud_core::clock::{ManualClock, SharedClock};
use omnicloud_core::events::EventBus;
use omnicloud_core::failover::{
    Decision, DnsRecord, FailoverController, FailoverPolicy, HealthCheckResult, HealthHistory,
    InMemoryDns, InMemoryResources, PlanExecutor, PlanStatus, RecordType, Serving, TransitionKind,
    decide,
};
use omnicloud_core::ids::TenantId;
use omnicloud_core::state::{Resource, SqliteStateStore, StateManager};
use omnicloud_core::store::Store;
use serde_json::json;
use tempfile::TempDir;

const PRIMARY: &str = "eu-west-1";
const SECONDARY: &str = "eu-central-1";

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// `n` resources in three tiers: 10% databases, 60% app servers each needing two databases,
/// 30% load balancers each in front of three app servers (deterministic).
fn tiered_graph(n: usize) -> Vec<Resource> {
    let databases = (n / 10).max(1);
    let apps = (n * 6 / 10).max(1);
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    let mut pick = |tier: &str, size: usize, k: usize| -> Vec<String> {
        (0..k)
            .map(|_| format!("{tier}-{:06}", rng.below(size as u64)))
            .collect()
    };
    (0..n)
        .map(|i| {
            let (id, kind, deps) = if i < databases {
                (format!("db-{i:06}"), "database", Vec::new())
            } else if i < databases + apps {
                let id = format!("app-{:06}", i - databases);
                (id, "app_server", pick("db", databases, 2))
            } else {
                let id = format!("lb-{:06}", i - databases - apps);
                (id, "load_balancer", pick("app", apps, 3))
            };
            Resource::new(id, tenant(), kind, PRIMARY, json!({"tier": kind}))
                .and_then(|r| r.with_dependencies(deps))
                .expect("resource")
        })
        .collect()
}

fn policy() -> FailoverPolicy {
    let record = DnsRecord::new(
        "example.com",
        "api.example.com",
        RecordType::A,
        "192.0.2.10",
        "198.51.100.10",
        30,
    )
    .expect("record");
    FailoverPolicy::new(
        tenant(),
        PRIMARY,
        SECONDARY,
        3,
        60,
        2,
        300,
        true,
        vec![record],
    )
    .expect("policy")
}

/// One tenant's failover set-up over `store`: the state, an audit trail in the same store, the
/// in-memory providers, and a controller with the policy set. Holds the directory of a file
/// store so it outlives the run.
struct World {
    controller: FailoverController,
    executor: PlanExecutor,
    policy: FailoverPolicy,
    _dir: Option<TempDir>,
}

fn clock() -> SharedClock {
    Arc::new(ManualClock::new(t0()))
}

fn state_over(store: &Store, clock: &SharedClock) -> Arc<StateManager> {
    Arc::new(
        StateManager::new(
            Arc::new(SqliteStateStore::new(store.clone()).expect("state store")),
            clock.clone(),
            EventBus::new(),
            None,
        )
        .expect("state"),
    )
}

fn world(store: &Store, resources: &[Resource], dir: Option<TempDir>) -> World {
    let clock = clock();
    let state = state_over(store, &clock);
    for r in resources {
        state.register(r.clone()).expect("register");
    }
    let executor = || {
        PlanExecutor::new(
            store.clone(),
            clock.clone(),
            state.clone(),
            Arc::new(InMemoryResources::new()),
            Arc::new(InMemoryDns::new()),
            Some(AuditLog::new(store.clone(), clock.clone())),
        )
    };
    let controller =
        FailoverController::new(store.clone(), clock.clone(), executor()).expect("controller");
    let policy = policy();
    controller.set_policy(policy.clone()).expect("set policy");
    World {
        controller,
        executor: executor(),
        policy,
        _dir: dir,
    }
}

/// A fresh in-memory world with `resources` registered.
fn memory_world(resources: &[Resource]) -> World {
    world(&Store::memory().expect("store"), resources, None)
}

/// A database file holding `resources` (registered once), to copy for each run.
struct Template {
    _dir: TempDir,
    path: PathBuf,
}

fn template(resources: &[Resource]) -> Template {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("template.db");
    {
        let store = Store::open(&path).expect("store");
        let state = state_over(&store, &clock());
        for r in resources {
            state.register(r.clone()).expect("register");
        }
    } // closed: the WAL is checkpointed into the file
    Template { _dir: dir, path }
}

/// A fresh file world: a copy of the template in its own directory.
fn file_world(template: &Path) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("failover.db");
    std::fs::copy(template, &path).expect("copy");
    world(&Store::open(&path).expect("store"), &[], Some(dir))
}

fn failover(w: &World) {
    let report = w
        .controller
        .failover(&tenant(), "bench", "benchmark")
        .expect("failover");
    assert_eq!(report.status, PlanStatus::Completed);
    black_box(report);
}

fn plan_and_execute(c: &mut Criterion) {
    for n in [1_000usize, 10_000] {
        let resources = tiered_graph(n);
        let file = template(&resources);
        let mut group = c.benchmark_group(format!(
            "failover/plan+execute {n} resources (audited, in-memory providers)"
        ));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if n > 1_000 { 20 } else { 2 }));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("memory store", |b| {
            b.iter_batched_ref(
                || memory_world(&resources),
                |w| failover(w),
                BatchSize::PerIteration,
            )
        });
        group.bench_function("file store", |b| {
            b.iter_batched_ref(
                || file_world(&file.path),
                |w| failover(w),
                BatchSize::PerIteration,
            )
        });
        if n == 10_000 {
            // The plan alone (read the state, order it, persist plan and steps): repeatable on
            // one world, since nothing is executed.
            let w = memory_world(&resources);
            group.bench_function("plan only, memory store", |b| {
                b.iter(|| {
                    w.executor
                        .plan(&w.policy, TransitionKind::Failover, json!({"bench": true}))
                        .expect("plan")
                })
            });
        }
        group.finish();
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

fn result(zone: &str, healthy: bool, seconds: i64) -> HealthCheckResult {
    HealthCheckResult::new(tenant(), PRIMARY, zone, healthy, at(seconds), None).expect("result")
}

/// Three zones of the primary with 64 results each, one every 10 s: all healthy, or the last
/// three of two zones failing.
fn history(failing: bool) -> HealthHistory {
    let mut h = HealthHistory::new();
    for zone in ["eu-west-1a", "eu-west-1b", "eu-west-1c"] {
        for i in 0..64 {
            let down = failing && zone != "eu-west-1c" && i >= 61;
            h.record(&result(zone, !down, i * 10));
        }
    }
    h
}

fn health(c: &mut Criterion) {
    let policy = policy();
    let now = at(640);
    let healthy = history(false);
    let failing = history(true);
    assert_eq!(
        decide(&policy, &healthy, Serving::Primary, false, None, now),
        Decision::Stay
    );
    assert!(matches!(
        decide(&policy, &failing, Serving::Primary, false, None, now),
        Decision::FailOver(_)
    ));
    let mut group = c.benchmark_group("failover/health 3 zones x 64 results");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide: primary healthy (stay)", |b| {
        b.iter(|| {
            decide(
                &policy,
                &healthy,
                Serving::Primary,
                false,
                None,
                black_box(now),
            )
        })
    });
    group.bench_function("decide: primary down (fail over, with evidence)", |b| {
        b.iter(|| {
            decide(
                &policy,
                &failing,
                Serving::Primary,
                false,
                None,
                black_box(now),
            )
        })
    });
    group.bench_function("decide: on secondary, primary healthy (fail back)", |b| {
        b.iter(|| {
            decide(
                &policy,
                &healthy,
                Serving::Secondary,
                false,
                None,
                black_box(now),
            )
        })
    });
    group.finish();

    let results: Vec<HealthCheckResult> = (0..1_000)
        .map(|i| {
            result(
                ["eu-west-1a", "eu-west-1b", "eu-west-1c"][i % 3],
                i % 7 != 0,
                700 + i as i64,
            )
        })
        .collect();
    let mut group = c.benchmark_group("failover/health record");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(results.len() as u64));
    group.bench_function("HealthHistory::record 1,000 results (full history)", |b| {
        b.iter_batched_ref(
            || failing.clone(),
            |h| {
                for r in &results {
                    h.record(r);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, plan_and_execute, health);
criterion_main!(benches);
