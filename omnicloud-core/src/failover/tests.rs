//! Plans against a real SQLite store and the in-memory providers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::audit::{AuditLog, AuditQuery};
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::error::{Error, FailoverError};
use crate::events::EventBus;
use crate::ids::TenantId;
use crate::state::{Resource, SqliteStateStore, StateManager};
use crate::store::Store;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("t")
        .with_timezone(&Utc)
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("id")
}

struct World {
    store: Store,
    clock: SharedClock,
    state: Arc<StateManager>,
    policy: FailoverPolicy,
    dns: Arc<InMemoryDns>,
    audit: AuditLog,
}

fn world() -> World {
    let store = Store::memory().expect("store");
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let state = Arc::new(
        StateManager::new(
            Arc::new(SqliteStateStore::new(store.clone()).expect("state store")),
            clock.clone(),
            EventBus::new(),
            None,
        )
        .expect("state"),
    );
    // Registered in reverse dependency order: the plan must still put the database first.
    for (id, kind, region, deps) in [
        ("lb", "load_balancer", "eu-west-1", vec!["app"]),
        ("app", "app_server", "eu-west-1", vec!["db"]),
        ("db", "database", "eu-west-1", vec![]),
        ("cache", "cache", "us-east-1", vec![]),
    ] {
        let r = Resource::new(id, tenant(), kind, region, json!({}))
            .expect("resource")
            .with_dependencies(deps)
            .expect("deps");
        state.register(r).expect("register");
    }
    let record = DnsRecord::new(
        "example.com",
        "api.example.com",
        RecordType::A,
        "192.0.2.10",
        "198.51.100.10",
        30,
    )
    .expect("record");
    let policy = FailoverPolicy::new(
        tenant(),
        "eu-west-1",
        "eu-central-1",
        3,
        60,
        2,
        300,
        true,
        vec![record],
    )
    .expect("policy");
    let audit = AuditLog::new(store.clone(), clock.clone());
    World {
        store,
        clock,
        state,
        policy,
        dns: Arc::new(InMemoryDns::new()),
        audit,
    }
}

fn executor(w: &World, resources: Arc<dyn ResourceController>) -> PlanExecutor {
    PlanExecutor::new(
        w.store.clone(),
        w.clock.clone(),
        w.state.clone(),
        resources,
        w.dns.clone(),
        Some(w.audit.clone()),
    )
}

#[test]
fn a_failover_promotes_in_dependency_order_then_switches_dns() {
    let w = world();
    let resources = Arc::new(InMemoryResources::new());
    let ex = executor(&w, resources.clone());
    let plan = ex
        .plan(
            &w.policy,
            TransitionKind::Failover,
            json!({"operator": "alice"}),
        )
        .expect("plan");
    let targets: Vec<&str> = plan.steps.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["db", "app", "lb", "api.example.com."]);
    let report = ex.execute(&plan.id, &w.policy).expect("execute");
    assert_eq!(report.status, PlanStatus::Completed);
    assert_eq!(resources.calls(), ["db", "app", "lb"]);
    assert!(
        resources
            .promoted()
            .values()
            .all(|region| region == "eu-central-1")
    );
    assert_eq!(
        w.dns.lookup("api.example.com.", "A"),
        Some(("198.51.100.10".into(), 30))
    );
    assert_eq!(report.dns_delay_s(), Some(0.0));
    assert_eq!(ex.load(&plan.id).expect("load"), report);
    // The state records where the moved resources run now; the cache elsewhere is untouched.
    for id in ["db", "app", "lb"] {
        let r = w.state.get(id).expect("resource");
        assert_eq!(r.region, "eu-central-1", "{id}");
        assert_eq!(r.serial, 2, "{id}: one write for the move");
    }
    assert_eq!(w.state.get("cache").expect("cache").region, "us-east-1");
    let steps: Vec<Option<&str>> = report
        .steps
        .iter()
        .map(|s| s.source_region.as_deref())
        .collect();
    assert_eq!(
        steps,
        [
            Some("eu-west-1"),
            Some("eu-west-1"),
            Some("eu-west-1"),
            None
        ]
    );
    let actions: Vec<String> = w
        .audit
        .query(&AuditQuery::default())
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "failover.initiated",
            "failover.step",
            "failover.step",
            "failover.step",
            "failover.step",
            "failover.completed"
        ]
    );
    // Executing a completed plan again changes nothing.
    ex.execute(&plan.id, &w.policy).expect("again");
    assert_eq!(resources.calls().len(), 3);
}

#[test]
fn failing_steps_are_retried_then_the_plan_stops_in_a_reported_state() {
    let w = world();
    let resources = Arc::new(InMemoryResources::new());
    resources.fail_next("app", 2);
    let ex = executor(&w, resources.clone());
    let plan = ex
        .plan(&w.policy, TransitionKind::Failover, json!({}))
        .expect("plan");
    let report = ex.execute(&plan.id, &w.policy).expect("execute");
    assert_eq!(report.status, PlanStatus::Completed);
    assert_eq!(report.steps[1].attempts, 3);
    resources.fail_next("db", 10);
    let plan = ex
        .plan(&w.policy, TransitionKind::Failback, json!({}))
        .expect("plan");
    let report = ex.execute(&plan.id, &w.policy).expect("execute");
    assert_eq!(report.status, PlanStatus::Stopped);
    assert_eq!(report.steps[0].attempts, 3);
    assert!(
        report.steps[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("injected"))
    );
    assert!(report.steps[1..].iter().all(|s| s.done_at.is_none()));
    assert_eq!(
        w.dns.lookup("api.example.com.", "A").map(|v| v.0),
        Some("198.51.100.10".into()),
        "the stopped failback never reached DNS"
    );
}

/// A controller that dies (panics) on one resource, as a crashed process would stop there.
struct Crashing {
    inner: Arc<InMemoryResources>,
    on: &'static str,
}

impl ResourceController for Crashing {
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String> {
        assert!(resource.id != self.on, "controller died");
        self.inner.promote(resource, region)
    }
}

#[test]
fn an_interrupted_plan_resumes_without_repeating_or_skipping_a_step() {
    let w = world();
    let resources = Arc::new(InMemoryResources::new());
    let crashing = executor(
        &w,
        Arc::new(Crashing {
            inner: resources.clone(),
            on: "app",
        }),
    );
    let plan = crashing
        .plan(&w.policy, TransitionKind::Failover, json!({}))
        .expect("plan");
    let died = catch_unwind(AssertUnwindSafe(|| crashing.execute(&plan.id, &w.policy)));
    assert!(died.is_err());
    let restarted = executor(&w, resources.clone());
    let open = restarted
        .open_plan(&tenant())
        .expect("open")
        .expect("one open plan");
    assert_eq!(open.id, plan.id);
    assert!(open.steps[0].done_at.is_some() && open.steps[1].done_at.is_none());
    let report = restarted.execute(&open.id, &w.policy).expect("resume");
    assert_eq!(report.status, PlanStatus::Completed);
    assert_eq!(resources.calls(), ["db", "app", "lb"], "each promoted once");
    assert!(restarted.open_plan(&tenant()).expect("open").is_none());
}

fn controller(w: &World, resources: Arc<dyn ResourceController>) -> FailoverController {
    FailoverController::new(w.store.clone(), w.clock.clone(), executor(w, resources))
        .expect("controller")
}

fn health(
    tenant: &str,
    region: &str,
    zone: &str,
    healthy: bool,
    at: DateTime<Utc>,
) -> HealthCheckResult {
    HealthCheckResult::new(
        TenantId::new(tenant).expect("id"),
        region,
        zone,
        healthy,
        at,
        None,
    )
    .expect("result")
}

#[test]
fn a_regional_outage_fails_over_once_and_fails_back_after_the_delay() {
    let w = world();
    let manual = Arc::new(ManualClock::new(t0()));
    let w = World {
        clock: manual.clone(),
        ..w
    };
    let resources = Arc::new(InMemoryResources::new());
    let c = controller(&w, resources.clone());
    c.set_policy(w.policy.clone()).expect("policy");
    let step = |c: &FailoverController, healthy: bool| {
        for zone in ["a", "b", "c"] {
            c.record_health(&health("acme", "eu-west-1", zone, healthy, manual.now()))
                .expect("health");
        }
        let reports = c.evaluate().expect("evaluate");
        manual.advance(10.0).expect("tick");
        reports
    };
    // Two failed rounds: below the threshold of three.
    assert!(step(&c, false).is_empty());
    assert!(step(&c, false).is_empty());
    let reports = step(&c, false);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.kind, r.status),
        (TransitionKind::Failover, PlanStatus::Completed)
    );
    assert_eq!(r.trigger["health"].as_array().map(Vec::len), Some(3));
    assert!(r.dns_delay_s().is_some_and(|d| d < 60.0));
    assert_eq!(
        c.status(&tenant()).expect("status").serving_region,
        "eu-central-1"
    );
    // The outage goes on: no second failover.
    for _ in 0..10 {
        assert!(step(&c, false).is_empty());
    }
    // Healthy again: fail back only after 300 s of health.
    let mut failbacks = Vec::new();
    for _ in 0..35 {
        failbacks.extend(step(&c, true));
    }
    assert_eq!(failbacks.len(), 1);
    assert_eq!(failbacks[0].kind, TransitionKind::Failback);
    assert!(c.status(&tenant()).expect("status").on_primary);
    assert_eq!(resources.calls(), ["db", "app", "lb", "db", "app", "lb"]);
    assert_eq!(
        w.dns.lookup("api.example.com.", "A").map(|v| v.0),
        Some("192.0.2.10".into())
    );
}

#[test]
fn holds_manual_commands_and_unknown_tenants() {
    let w = world();
    let resources = Arc::new(InMemoryResources::new());
    let c = controller(&w, resources);
    assert!(matches!(
        c.status(&tenant()),
        Err(Error::Failover(FailoverError::NoPolicy { .. }))
    ));
    c.set_policy(w.policy.clone()).expect("policy");
    assert!(
        c.record_health(&health("acme", "ap-south-1", "a", false, t0()))
            .is_err()
    );
    c.hold(&tenant()).expect("hold");
    for zone in ["a", "b"] {
        for s in 0..3 {
            c.record_health(&health(
                "acme",
                "eu-west-1",
                zone,
                false,
                t0() + chrono::TimeDelta::seconds(s),
            ))
            .expect("health");
        }
    }
    assert!(c.evaluate().expect("held").is_empty());
    // Manual failover works while held and while health looks fine.
    let r = c.failover(&tenant(), "alice", "drill").expect("manual");
    assert_eq!(r.trigger["operator"], "alice");
    assert!(c.failover(&tenant(), "alice", "again").is_err());
    c.release_hold(&tenant()).expect("release");
    // A restarted controller knows where the tenant is served.
    let again = controller(&w, Arc::new(InMemoryResources::new()));
    let status = again.status(&tenant()).expect("status");
    assert!(!status.on_primary && !status.held);
    assert_eq!(again.reports(&tenant()).expect("reports").len(), 1);
    let back = again
        .failback(&tenant(), "alice", "drill over")
        .expect("failback");
    assert_eq!(back.to_region, "eu-west-1");
}

#[test]
fn tenants_fail_over_independently() {
    let w = world();
    let other = TenantId::new("globex").expect("id");
    w.state
        .register(
            Resource::new("g-db", other.clone(), "database", "us-east-1", json!({})).expect("r"),
        )
        .expect("register");
    let c = controller(&w, Arc::new(InMemoryResources::new()));
    c.set_policy(w.policy).expect("policy");
    c.set_policy(
        FailoverPolicy::new(
            other.clone(),
            "us-east-1",
            "us-west-2",
            1,
            60,
            1,
            300,
            true,
            vec![],
        )
        .expect("policy"),
    )
    .expect("policy");
    c.record_health(&health("globex", "us-east-1", "a", false, t0()))
        .expect("health");
    let reports = c.evaluate().expect("evaluate");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].tenant_id, other);
    assert_eq!(
        reports[0]
            .steps
            .iter()
            .map(|s| s.target.as_str())
            .collect::<Vec<_>>(),
        ["g-db"]
    );
    assert!(c.status(&tenant()).expect("acme").on_primary);
}

#[test]
fn dependencies_outside_the_moving_regions_do_not_hold_a_plan_back() {
    let w = world();
    // `web` needs `edge`, which is not registered (yet): the plan still orders the rest.
    w.state
        .register(
            Resource::new("web", tenant(), "app_server", "eu-west-1", json!({}))
                .expect("r")
                .with_dependencies(["edge", "app"])
                .expect("deps"),
        )
        .expect("register");
    let ex = executor(&w, Arc::new(InMemoryResources::new()));
    let plan = ex
        .plan(&w.policy, TransitionKind::Failover, json!({}))
        .expect("plan");
    let targets: Vec<&str> = plan.steps.iter().map(|s| s.target.as_str()).collect();
    let at = |id: &str| targets.iter().position(|t| *t == id);
    assert!(at("db") < at("app") && at("app") < at("web") && at("app") < at("lb"));
    assert!(
        at("cache").is_none(),
        "other regions are not part of the plan"
    );
}

/// Promotes in memory and takes `step_s` seconds of the manual clock per promotion, so a
/// plan's promotions and its completion fall at distinct instants.
struct TimedResources {
    inner: InMemoryResources,
    clock: Arc<ManualClock>,
    step_s: f64,
}

impl ResourceController for TimedResources {
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String> {
        self.clock.advance(self.step_s).map_err(|e| e.to_string())?;
        self.inner.promote(resource, region)
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("t")
        .with_timezone(&Utc)
}

#[test]
fn usage_is_attributed_to_the_regions_a_resource_ran_in_with_the_overlap_billed_twice() {
    use crate::billing::{BillingService, Currency, ExchangeRates, Money, Period, UsageRecord};
    use rust_decimal::Decimal;

    let mut w = world();
    let clock = Arc::new(ManualClock::new(t0()));
    w.clock = clock.clone();
    let resources = Arc::new(TimedResources {
        inner: InMemoryResources::new(),
        clock: clock.clone(),
        step_s: 60.0,
    });
    let billing = Arc::new(BillingService::new(
        w.store.clone(),
        w.clock.clone(),
        Arc::new(ExchangeRates::new()),
    ));
    billing
        .upsert_tenant(&tenant(), Currency::new("USD").expect("usd"), None)
        .expect("account");
    billing
        .set_price(
            "compute.hours",
            Money::new(Decimal::ONE, Currency::new("USD").expect("usd")),
            None,
        )
        .expect("price");
    let c = controller(&w, resources).with_billing(billing.clone());
    c.set_policy(w.policy).expect("policy");
    // Failover at 12:00: db promoted 12:01, app 12:02, lb 12:03 (cache is elsewhere), DNS and
    // completion at 12:03.
    let report = c.failover(&tenant(), "ops", "drill").expect("failover");
    assert_eq!(report.completed_at, Some(at("2026-03-01T12:03:00Z")));
    let spans = c.region_history("db").expect("spans");
    assert_eq!(
        spans,
        vec![
            RegionSpan {
                region: "eu-west-1".into(),
                from: None,
                until: Some(at("2026-03-01T12:03:00Z"))
            },
            RegionSpan {
                region: "eu-central-1".into(),
                from: Some(at("2026-03-01T12:01:00Z")),
                until: None
            },
        ]
    );
    // 12:00–13:00, 60 units: eu-west-1 gets 12:00–12:03 (3), eu-central-1 12:01–13:00 (59).
    let record = UsageRecord::new(
        tenant(),
        "compute.hours",
        Decimal::from(60),
        "eu-west-1",
        t0(),
        at("2026-03-01T13:00:00Z"),
        Some("db".into()),
    )
    .expect("record");
    let written = c
        .record_usage(std::slice::from_ref(&record))
        .expect("usage");
    let by_region: Vec<(&str, Decimal)> = written
        .iter()
        .map(|r| (r.region.as_str(), r.quantity))
        .collect();
    assert_eq!(
        by_region,
        vec![
            ("eu-west-1", Decimal::from(3)),
            ("eu-central-1", Decimal::from(59))
        ]
    );
    // Usage wholly before the failover stays in the home region, unsplit.
    let before = UsageRecord {
        start: at("2026-03-01T11:00:00Z"),
        end: t0(),
        ..record
    };
    let written = c.record_usage(&[before]).expect("usage");
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].region, "eu-west-1");
    // The invoice shows the split, per region.
    let invoice = billing
        .preview_invoice(
            &tenant(),
            Period::new(at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z")).expect("period"),
        )
        .expect("invoice");
    let mut lines: Vec<(Option<String>, Decimal)> = invoice
        .lines
        .iter()
        .map(|l| (l.region.clone(), l.quantity))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            (Some("eu-central-1".into()), Decimal::from(59)),
            (Some("eu-west-1".into()), Decimal::from(63)),
        ]
    );
    // A failback at 14:00 opens eu-west-1 again at db's promotion.
    clock.set(at("2026-03-01T14:00:00Z")).expect("set");
    c.failback(&tenant(), "ops", "primary back")
        .expect("failback");
    let regions: Vec<_> = c
        .region_history("db")
        .expect("spans")
        .into_iter()
        .map(|s| (s.region, s.from, s.until))
        .collect();
    assert_eq!(
        regions,
        vec![
            ("eu-west-1".into(), None, Some(at("2026-03-01T12:03:00Z"))),
            (
                "eu-central-1".into(),
                Some(at("2026-03-01T12:01:00Z")),
                Some(at("2026-03-01T14:03:00Z"))
            ),
            ("eu-west-1".into(), Some(at("2026-03-01T14:01:00Z")), None),
        ]
    );
}

#[test]
fn usage_attribution_refuses_without_billing_and_for_another_tenants_resource() {
    use crate::billing::{BillingService, ExchangeRates, UsageRecord};
    use rust_decimal::Decimal;

    let w = world();
    let plain = controller(&w, Arc::new(InMemoryResources::new()));
    let record = UsageRecord::new(
        TenantId::new("globex").expect("id"),
        "compute.hours",
        Decimal::ONE,
        "eu-west-1",
        t0(),
        at("2026-03-01T13:00:00Z"),
        Some("db".into()),
    )
    .expect("record");
    assert!(matches!(
        plain.record_usage(std::slice::from_ref(&record)),
        Err(Error::Failover(FailoverError::BillingNotConfigured))
    ));
    let billing = Arc::new(BillingService::new(
        w.store.clone(),
        w.clock.clone(),
        Arc::new(ExchangeRates::new()),
    ));
    let c = controller(&w, Arc::new(InMemoryResources::new())).with_billing(billing);
    let err = c.record_usage(&[record]).expect_err("db is acme's");
    assert!(err.to_string().contains("belongs to acme"), "{err}");
}

#[test]
fn a_stopped_plan_leaves_both_regions_running() {
    let spans = region_spans(
        &[FailoverReport {
            id: "p".into(),
            tenant_id: tenant(),
            kind: TransitionKind::Failover,
            from_region: "eu-west-1".into(),
            to_region: "eu-central-1".into(),
            trigger: json!({}),
            steps: vec![PlanStep {
                position: 0,
                action: StepAction::Promote,
                target: "db".into(),
                source_region: Some("eu-west-1".into()),
                done_at: Some(t0()),
                attempts: 1,
                last_error: None,
            }],
            initiated_at: t0(),
            dns_updated_at: None,
            completed_at: None,
            status: PlanStatus::Stopped,
        }],
        "db",
        "eu-west-1",
    );
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.until.is_none()));
}

#[test]
fn a_failover_and_failback_in_one_instant_leave_the_resource_home() {
    let w = world();
    let c = controller(&w, Arc::new(InMemoryResources::new()));
    c.set_policy(w.policy.clone()).expect("policy");
    c.failover(&tenant(), "ops", "drill").expect("failover");
    c.failback(&tenant(), "ops", "drill over")
        .expect("failback");
    let spans = c.region_history("db").expect("spans");
    let last = spans.last().expect("a span");
    assert_eq!(
        (last.region.as_str(), last.until),
        ("eu-west-1", None),
        "{spans:?}"
    );
    assert_eq!(w.state.get("db").expect("db").region, "eu-west-1");
    let record = crate::billing::UsageRecord::new(
        tenant(),
        "compute.hours",
        rust_decimal::Decimal::ONE,
        "eu-west-1",
        t0(),
        t0() + chrono::TimeDelta::hours(1),
        Some("db".into()),
    )
    .expect("record");
    let parts = attribute_usage(&record, &spans).expect("split");
    let total: rust_decimal::Decimal = parts.iter().map(|p| p.quantity).sum();
    assert_eq!(total, rust_decimal::Decimal::ONE, "{parts:?}");
}

/// Promotes in memory, sleeping a little and recording how many promotions ran at once.
#[derive(Default)]
struct ConcurrentResources {
    inner: InMemoryResources,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl ResourceController for ConcurrentResources {
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let result = self.inner.promote(resource, region);
        self.running.fetch_sub(1, SeqCst);
        result
    }
}

#[test]
fn a_wave_runs_concurrently_within_the_parallelism_and_waves_follow_dependencies() {
    let w = world();
    // 12 more databases and an app server needing all of them.
    let dbs: Vec<String> = (0..12).map(|i| format!("db{i:02}")).collect();
    for id in &dbs {
        let r = Resource::new(id, tenant(), "database", "eu-west-1", json!({})).expect("r");
        w.state.register(r).expect("register");
    }
    let wide = Resource::new("wide", tenant(), "app_server", "eu-west-1", json!({}))
        .expect("r")
        .with_dependencies(dbs.clone())
        .expect("deps");
    w.state.register(wide).expect("register");
    let resources = Arc::new(ConcurrentResources::default());
    let ex = executor(&w, resources.clone()).with_parallelism(4);
    let plan = ex
        .plan(&w.policy, TransitionKind::Failover, json!({}))
        .expect("plan");
    let report = ex.execute(&plan.id, &w.policy).expect("execute");
    assert_eq!(report.status, PlanStatus::Completed);
    let most = resources.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} promotions at once");
    let calls = resources.inner.calls();
    let at = |id: &str| calls.iter().position(|c| c == id).expect("called");
    assert!(dbs.iter().all(|d| at(d) < at("wide")));
    assert!(at("db") < at("app") && at("app") < at("lb"));
    // Every completion was written, each with its audit entry.
    let steps = w
        .audit
        .query(&AuditQuery::default())
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "failover.step")
        .count();
    assert_eq!(steps, report.steps.len());
    assert_eq!(ex.load(&plan.id).expect("load"), report);
}

#[test]
fn a_step_failing_in_a_wave_lets_the_others_finish_then_stops_the_plan() {
    let w = world();
    for i in 0..6 {
        let r = Resource::new(
            format!("db{i}"),
            tenant(),
            "database",
            "eu-west-1",
            json!({}),
        )
        .expect("r");
        w.state.register(r).expect("register");
    }
    let resources = Arc::new(InMemoryResources::new());
    resources.fail_next("db3", 10);
    let ex = executor(&w, resources.clone()).with_parallelism(3);
    let plan = ex
        .plan(&w.policy, TransitionKind::Failover, json!({}))
        .expect("plan");
    let report = ex.execute(&plan.id, &w.policy).expect("execute");
    assert_eq!(report.status, PlanStatus::Stopped);
    let promoted = resources.promoted();
    // The first wave (every database) ran: all but db3 promoted; nothing after it.
    for id in ["db", "db0", "db1", "db2", "db4", "db5"] {
        assert!(promoted.contains_key(id), "{id}");
    }
    assert!(!promoted.contains_key("db3") && !promoted.contains_key("app"));
    let failed = report
        .steps
        .iter()
        .find(|s| s.target == "db3")
        .expect("db3");
    assert_eq!((failed.attempts, failed.done_at), (3, None));
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("db3")
    );
    assert_eq!(ex.load(&plan.id).expect("load"), report);
}
