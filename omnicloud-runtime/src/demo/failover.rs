//! The demo's failover chapter: a simulated regional outage of acme's primary region, detected
//! from zone health checks, failed over in dependency order with the DNS switch, then failed
//! back once the region has been healthy for the failback delay. The hour of usage around the
//! outage is attributed to the regions the resources ran in: the invoice shows the split, with
//! the overlap (a standby promoted, the old primary not yet drained) billed in both.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::audit::{AuditLog, AuditQuery};
use omnicloud_core::billing::{BillingService, ExchangeRates, Period, UsageRecord};
use omnicloud_core::clock::{Clock, ManualClock, SharedClock};
use omnicloud_core::failover::{
    DnsRecord, FailoverController, FailoverPolicy, FailoverReport, HealthCheckResult, InMemoryDns,
    InMemoryResources, PlanExecutor, RecordType, ResourceController,
};
use omnicloud_core::state::{Resource, StateManager};
use omnicloud_core::store::Store;
use rust_decimal::Decimal;

use super::billing::money;
use super::{DemoError, Timeline, tenant_id};

/// Seconds of simulated time a standby takes to be promoted.
const PROMOTION_S: f64 = 5.0;

/// Promotes in memory, taking [`PROMOTION_S`] of the demo's simulated time per promotion (so
/// the timeline shows the overlap a real promotion has).
struct SimulatedPromotion {
    inner: Arc<InMemoryResources>,
    clock: Arc<ManualClock>,
}

impl ResourceController for SimulatedPromotion {
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String> {
        self.clock.advance(PROMOTION_S).map_err(|e| e.to_string())?;
        self.inner.promote(resource, region)
    }
}

fn core<E: Into<omnicloud_core::Error>>(e: E) -> DemoError {
    DemoError::Core(e.into())
}

/// Runs the chapter over the demo's state (acme's lb -> app -> db in eu-west-1); returns
/// whether every check it makes held.
pub(super) fn run<W: Write>(
    t: &mut Timeline<'_, W>,
    store: &Store,
    state: Arc<StateManager>,
    start: DateTime<Utc>,
) -> Result<bool, DemoError> {
    let manual = Arc::new(ManualClock::new(start));
    let clock: SharedClock = manual.clone();
    let dns = Arc::new(InMemoryDns::new());
    let resources = Arc::new(InMemoryResources::new());
    let audit = AuditLog::new(store.clone(), clock.clone());
    let promotion = Arc::new(SimulatedPromotion {
        inner: resources.clone(),
        clock: manual.clone(),
    });
    let executor = PlanExecutor::new(
        store.clone(),
        clock.clone(),
        state,
        promotion,
        dns.clone(),
        Some(audit.clone()),
    )
    // One promotion at a time: the simulated clock, advanced by each, keeps the timeline
    // deterministic.
    .with_parallelism(1);
    let rates = Arc::new(ExchangeRates::persistent(store.clone())?);
    let billing = Arc::new(BillingService::new(store.clone(), clock.clone(), rates));
    let controller = FailoverController::new(store.clone(), clock.clone(), executor)?
        .with_billing(billing.clone());
    let record = DnsRecord::new(
        "acme.example",
        "api.acme.example",
        RecordType::A,
        "192.0.2.10",
        "198.51.100.10",
        30,
    )
    .map_err(core)?;
    let acme = tenant_id("acme")?;
    let policy = FailoverPolicy::new(
        acme.clone(),
        "eu-west-1",
        "eu-central-1",
        3,
        60,
        2,
        120,
        true,
        vec![record],
    )
    .map_err(core)?;
    controller.set_policy(policy)?;
    t.line(
        "failover",
        "acme: eu-west-1 -> eu-central-1 after 3 failed checks in 2 of 3 zones within 60 s; failback after 120 s healthy; api.acme.example A (ttl 30)",
    )?;
    let round = |healthy: [bool; 3]| -> Result<Vec<FailoverReport>, DemoError> {
        for (zone, ok) in ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
            .iter()
            .zip(healthy)
        {
            let r = HealthCheckResult::new(acme.clone(), "eu-west-1", zone, ok, manual.now(), None)
                .map_err(core)?;
            controller.record_health(&r)?;
        }
        let reports = controller.evaluate()?;
        manual.advance(10.0).map_err(core)?;
        Ok(reports)
    };
    // A blip first: one zone fails once; nothing happens.
    round([false, true, true])?;
    t.line(
        "health",
        "blip: eu-west-1a failed one check -> no action (hysteresis)",
    )?;
    let mut failover = Vec::new();
    for _ in 0..3 {
        failover.extend(round([false, false, true])?);
    }
    let Some(report) = failover.first() else {
        t.line("failover", "outage NOT detected (this is a bug)")?;
        return Ok(false);
    };
    t.line(
        "health",
        "outage: eu-west-1a and eu-west-1b failed 3 consecutive checks -> region down",
    )?;
    for step in &report.steps {
        t.line(
            "failover",
            format!(
                "+{:.0} s {} {} -> {} (attempt {})",
                step.done_at
                    .map_or(f64::NAN, |d| (d - report.initiated_at).as_seconds_f64()),
                step.action.as_str(),
                step.target,
                report.to_region,
                step.attempts
            ),
        )?;
    }
    let answer = dns
        .lookup("api.acme.example.", "A")
        .map(|(v, _)| v)
        .unwrap_or_default();
    t.line(
        "dns",
        format!(
            "api.acme.example now answers {answer}, {:.3} s after initiation",
            report.dns_delay_s().unwrap_or(f64::NAN)
        ),
    )?;
    let split_ok = bill_the_outage(t, &controller, &billing, report)?;
    let mut failback = Vec::new();
    for _ in 0..16 {
        failback.extend(round([true, true, true])?);
    }
    let back = failback.first();
    if let Some(back) = back {
        t.line(
            "failover",
            format!(
                "eu-west-1 healthy for 120 s -> failback completed ({} steps)",
                back.steps.len()
            ),
        )?;
    }
    let trail = audit.query(&AuditQuery {
        tenant_id: Some(acme.clone()),
        ..AuditQuery::default()
    })?;
    let failover_events = trail
        .iter()
        .filter(|e| e.action.starts_with("failover."))
        .count();
    t.line(
        "audit",
        format!("{failover_events} failover events in acme's trail (initiated, steps, completed)"),
    )?;
    let calls = resources.calls();
    let first = |id: &str| calls.iter().position(|c| c == id);
    let promoted_in_order = first("db") < first("app") && first("app") < first("lb");
    Ok(answer == "198.51.100.10" && back.is_some() && promoted_in_order && split_ok)
}

/// Records the hour of instance time around the failover for each of acme's resources,
/// attributed by the controller, and prints the invoice's lines per region. Whether the
/// overlap was billed in both regions, exactly.
fn bill_the_outage<W: Write>(
    t: &mut Timeline<'_, W>,
    controller: &FailoverController,
    billing: &BillingService,
    report: &FailoverReport,
) -> Result<bool, DemoError> {
    let acme = tenant_id("acme")?;
    let meter = "compute.instance_seconds";
    billing.upsert_tenant(&acme, money("0", "USD")?.currency(), None)?;
    billing.set_price(meter, money("0.0001", "USD")?, None)?;
    let half_hour = chrono::TimeDelta::minutes(30);
    let (start, end) = (
        report.initiated_at - half_hour,
        report.initiated_at + half_hour,
    );
    let records = ["db", "app", "lb"]
        .into_iter()
        .map(|id| {
            UsageRecord::new(
                acme.clone(),
                meter,
                Decimal::from(3600),
                "eu-west-1",
                start,
                end,
                Some(id.to_owned()),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let written = controller.record_usage(&records)?;
    let overlap: f64 = ["db", "app", "lb"]
        .iter()
        .filter_map(|id| {
            let promoted = report
                .steps
                .iter()
                .find(|s| s.target == *id)
                .and_then(|s| s.done_at)?;
            Some((report.completed_at? - promoted).as_seconds_f64())
        })
        .sum();
    t.line(
        "billing",
        format!(
            "acme's hour of instance time around the outage, attributed: {} usage records from 3 (standbys promoted before the DNS switch ran {overlap:.0} s alongside the old primary)",
            written.len()
        ),
    )?;
    // The days the hour touches (it may straddle midnight).
    let (first, last) = (start.date_naive(), end.date_naive());
    let period = Period::new(
        first.and_time(chrono::NaiveTime::MIN).and_utc(),
        (last + chrono::Days::new(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc(),
    )?;
    let days = if first == last {
        first.to_string()
    } else {
        format!("{first} and {last}")
    };
    let invoice = billing.preview_invoice(&acme, period)?;
    let mut billed = Decimal::ZERO;
    for line in &invoice.lines {
        billed += line.quantity;
        t.line(
            "billing",
            format!(
                "invoice line {} {}: {} s = {}",
                line.meter,
                line.region.as_deref().unwrap_or("-"),
                line.quantity.normalize(),
                line.amount
            ),
        )?;
    }
    t.line(
        "billing",
        format!(
            "acme's invoice for {days} (preview): {} — 3 × 3600 s plus {overlap:.0} s of overlap billed in both regions",
            invoice.total
        ),
    )?;
    let expected = Decimal::from(3 * 3600) + Decimal::try_from(overlap).unwrap_or_default();
    Ok(invoice.lines.len() == 2 && billed == expected)
}
