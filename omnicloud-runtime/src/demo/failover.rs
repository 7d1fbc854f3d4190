//! The demo's failover chapter: a simulated regional outage of acme's primary region, detected
//! from zone health checks, failed over in dependency order with the DNS switch, then failed
//! back once the region has been healthy for the failback delay.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::audit::{AuditLog, AuditQuery};
use omnicloud_core::clock::{Clock, ManualClock, SharedClock};
use omnicloud_core::failover::{
    DnsRecord, FailoverController, FailoverPolicy, FailoverReport, HealthCheckResult, InMemoryDns,
    InMemoryResources, PlanExecutor, RecordType,
};
use omnicloud_core::state::StateManager;
use omnicloud_core::store::Store;

use super::{DemoError, Timeline, tenant_id};

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
    let executor = PlanExecutor::new(
        store.clone(),
        clock.clone(),
        state,
        resources.clone(),
        dns.clone(),
        Some(audit.clone()),
    );
    let controller = FailoverController::new(store.clone(), clock.clone(), executor)?;
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
                "{} {} -> {} (attempt {})",
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
    Ok(answer == "198.51.100.10" && back.is_some() && promoted_in_order)
}
