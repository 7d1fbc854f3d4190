//! `omnicloud demo`: the end-to-end walk through every capability on one embedded SQLite file,
//! printed as a timeline. Each capability adds its chapter as it lands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::audit::{AuditLog, AuditQuery, AuditRecord};
use omnicloud_core::billing::Currency;
use omnicloud_core::clock::{SharedClock, SystemClock};
use omnicloud_core::error::StoreError;
use omnicloud_core::events::EventBus;
use omnicloud_core::ids::TenantId;
use omnicloud_core::state::{
    Resource, ResourceState, SnapshotManager, SqliteStateStore, StateManager,
};
use omnicloud_core::store::Store;
use omnicloud_core::tenancy::{Tenant, TenantRegistry};

mod billing;
mod failover;
mod webhooks;

/// The database file the demo uses when none is given.
pub const DEFAULT_DB: &str = "omnicloud-demo.db";

/// Why the demo (or another command) stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The core refused something.
    #[error(transparent)]
    Core(#[from] omnicloud_core::Error),
    /// Writing the timeline failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The raw SQLite session used to simulate tampering failed.
    #[error("tamper simulation failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The command refused to run (for example it would overwrite a file it does not own).
    #[error("{0}")]
    Refused(String),
}

impl From<StoreError> for DemoError {
    fn from(e: StoreError) -> Self {
        Self::Core(e.into())
    }
}

/// Writes timeline lines: `[time] chapter  what happened`.
struct Timeline<'a, W: Write> {
    out: &'a mut W,
    clock: SharedClock,
}

impl<W: Write> Timeline<'_, W> {
    fn line(&mut self, chapter: &str, text: impl std::fmt::Display) -> std::io::Result<()> {
        let at: DateTime<Utc> = self.clock.now();
        writeln!(
            self.out,
            "[{}] {chapter:<8} {text}",
            at.format("%H:%M:%S%.3f")
        )
    }
}

/// Runs the demo on `db`. When `owned` (the default path), an existing file is replaced;
/// otherwise the file must not exist yet. Returns the process exit code.
pub fn run(
    db: &Path,
    owned: bool,
    out: &mut impl Write,
) -> Result<std::process::ExitCode, DemoError> {
    prepare_file(db, owned)?;
    let clock: SharedClock = Arc::new(SystemClock);
    writeln!(
        out,
        "OmniCloud demo on the embedded SQLite file {}",
        db.display()
    )?;
    writeln!(out)?;
    let mut t = Timeline {
        out,
        clock: clock.clone(),
    };

    // Kernel: store, event bus, audit trail following the bus.
    let store = Store::open(db)?;
    let migrations: Vec<String> = store
        .applied_migrations()?
        .into_iter()
        .map(|(v, name, _)| format!("v{v} {name}"))
        .collect();
    t.line(
        "store",
        format!(
            "opened {} (WAL), schema {}",
            db.display(),
            migrations.join(", ")
        ),
    )?;
    let bus = EventBus::new();
    let audit = AuditLog::new(store.clone(), clock.clone());
    audit.follow(&bus);
    t.line(
        "events",
        "event bus up; the audit trail records every event",
    )?;

    // Tenancy.
    let tenants = TenantRegistry::new(store.clone(), clock.clone(), bus.clone());
    for (id, name, currency) in [
        ("acme", "Acme Corp", "USD"),
        ("globex", "Globex GmbH", "EUR"),
        ("initech", "Initech KK", "JPY"),
    ] {
        let currency = Currency::new(currency).map_err(omnicloud_core::Error::from)?;
        let tenant = tenants.create(Tenant::new(tenant_id(id)?, name, currency)?)?;
        t.line(
            "tenants",
            format!(
                "created {} ({}), billed in {} ({} minor units)",
                tenant.id,
                tenant.name,
                tenant.billing_currency,
                tenant.billing_currency.minor_units().unwrap_or(0)
            ),
        )?;
    }
    let duplicate = Tenant::new(tenant_id("acme")?, "Acme Again", Currency::usd())?;
    if let Err(err) = tenants.create(duplicate) {
        t.line("tenants", format!("refused as expected: {err}"))?;
    }

    // State: a three-tier service rolled out in dependency order, drift, a snapshot.
    let acme = tenant_id("acme")?;
    let state = Arc::new(StateManager::new(
        Arc::new(SqliteStateStore::new(store.clone())?),
        clock.clone(),
        bus,
        Some(SnapshotManager::open(snapshot_dir(db)).map_err(omnicloud_core::Error::from)?),
    )?);
    for (id, kind, spec, deps) in [
        (
            "lb",
            "load_balancer",
            serde_json::json!({"listeners": [443]}),
            vec!["app"],
        ),
        (
            "app",
            "app_server",
            serde_json::json!({"replicas": 3}),
            vec!["db"],
        ),
        (
            "db",
            "database",
            serde_json::json!({"engine": "postgres", "size_gb": 100}),
            vec![],
        ),
    ] {
        let resource =
            Resource::new(id, acme.clone(), kind, "eu-west-1", spec)?.with_dependencies(deps)?;
        state.register(resource)?;
    }
    t.line(
        "state",
        "registered lb -> app -> db for acme (in reverse dependency order)",
    )?;
    let order = state.dependency_order(Some(&acme))?;
    t.line("state", format!("rollout order: {}", order.join(", ")))?;
    for id in &order {
        state.transition(id, ResourceState::Provisioning, "rollout")?;
        state.transition(id, ResourceState::Active, "health checks pass")?;
        t.line("state", format!("{id}: pending -> provisioning -> active"))?;
    }
    if let Err(err) = state.transition("db", ResourceState::Pending, "undo") {
        t.line("state", format!("refused as expected: {err}"))?;
    }
    state.register(
        Resource::new(
            "web",
            acme.clone(),
            "app_server",
            "eu-west-1",
            serde_json::json!({}),
        )?
        .with_dependencies(["edge"])?,
    )?;
    let edge = Resource::new("edge", acme, "cdn", "global", serde_json::json!({}))?
        .with_dependencies(["web"])?;
    if let Err(err) = state.register(edge) {
        t.line("state", format!("refused as expected: {err}"))?;
    }
    state.report_actual("app", &serde_json::json!({"replicas": 2}))?;
    for report in state.detect_drift(None)? {
        for change in &report.changes {
            t.line(
                "drift",
                format!(
                    "{}{} {}: desired {} actual {}",
                    report.resource_id.as_deref().unwrap_or("?"),
                    change.path,
                    change.kind.as_str(),
                    change
                        .desired
                        .as_ref()
                        .map_or("-".into(), ToString::to_string),
                    change
                        .actual
                        .as_ref()
                        .map_or("-".into(), ToString::to_string)
                ),
            )?;
        }
    }
    t.line(
        "state",
        format!("impact of db: {}", state.impact_of("db")?.join(", ")),
    )?;
    let snap = state.snapshot()?;
    let snapshots = state
        .snapshot_manager()
        .ok_or_else(|| DemoError::Refused("no snapshots".into()))?;
    snapshots
        .verify(&snap.id)
        .map_err(omnicloud_core::Error::from)?;
    t.line(
        "snapshot",
        format!(
            "{} holds {} resources in {} bytes (zstd), checksum verified",
            snap.id, snap.resource_count, snap.payload_bytes
        ),
    )?;

    // Failover: a simulated regional outage.
    let failover_ok = failover::run(&mut t, &store, state.clone(), clock.now())?;

    // Deployments and webhooks: events delivered to a local receiver, one endpoint failing.
    let webhooks_ok = webhooks::run(&mut t, &store, clock.now())?;

    // Billing.
    let billing_ok = billing::run(&mut t, &store)?;

    // Audit trail.
    audit.append(
        AuditRecord::new("alice@acme.example", "policy.reviewed")
            .tenant(tenant_id("acme")?)
            .resource("failover-policy")
            .details(serde_json::json!({"outcome": "approved"})),
    )?;
    t.line(
        "audit",
        "alice@acme.example recorded policy.reviewed for acme",
    )?;
    let acme = audit.query(&AuditQuery {
        tenant_id: Some(tenant_id("acme")?),
        ..AuditQuery::default()
    })?;
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for e in &acme {
        match counts.iter_mut().find(|(action, _)| *action == e.action) {
            Some((_, n)) => *n += 1,
            None => counts.push((&e.action, 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a}")).collect();
    t.line("audit", format!("acme's trail: {}", summary.join(", ")))?;
    let report = audit.verify()?;
    let head = audit.head()?;
    t.line(
        "verify",
        format!(
            "chain intact: {} entries, head seq {} hash {}…",
            report.entries_checked,
            head.seq,
            &head.hash[..16]
        ),
    )?;

    // Tampering with a copy, behind the library's back.
    let copy = tampered_copy_path(db);
    remove_database(&copy)?;
    {
        let raw = rusqlite::Connection::open(db)?;
        raw.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
        let raw = rusqlite::Connection::open(&copy)?;
        raw.execute_batch(
            "DROP TRIGGER audit_events_no_update;
             UPDATE audit_events SET actor = 'mallory' WHERE seq = 2;",
        )?;
    }
    t.line(
        "tamper",
        format!("copied to {} and edited seq 2 with raw SQL", copy.display()),
    )?;
    let copy_report = AuditLog::new(Store::open(&copy)?, clock.clone()).verify()?;
    match &copy_report.first_violation {
        Some(v) => t.line("verify", format!("copy: tampering detected at {v}"))?,
        None => t.line("verify", "copy: NOT detected (this is a bug)")?,
    }
    remove_database(&copy)?;
    let original = audit.verify()?;
    t.line(
        "verify",
        format!(
            "original still intact: {}",
            if original.is_intact() { "yes" } else { "NO" }
        ),
    )?;
    writeln!(t.out)?;
    writeln!(
        t.out,
        "Done. Inspect it with: omnicloud audit verify --db {}",
        db.display()
    )?;
    Ok(
        if failover_ok
            && webhooks_ok
            && billing_ok
            && original.is_intact()
            && copy_report.first_violation.is_some()
        {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        },
    )
}

fn tenant_id(id: &str) -> Result<TenantId, DemoError> {
    TenantId::new(id).map_err(|e| DemoError::Core(e.into()))
}

/// Where the demo keeps its snapshots: beside the database file.
fn snapshot_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".snapshots");
    db.with_file_name(name)
}

fn tampered_copy_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".tampered-copy");
    db.with_file_name(name)
}

/// Removes a database file with its WAL and shared-memory companions, if present.
fn remove_database(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn prepare_file(db: &Path, owned: bool) -> Result<(), DemoError> {
    if !db.exists() {
        return Ok(());
    }
    if owned && db.is_file() {
        remove_database(db)?;
        let snapshots = snapshot_dir(db);
        if snapshots.is_dir() {
            std::fs::remove_dir_all(snapshots)?;
        }
        Ok(())
    } else {
        Err(DemoError::Refused(format!(
            "{} already exists; the demo only writes to a new file (or to its own default, {DEFAULT_DB})",
            db.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_demo(db: &Path, owned: bool) -> (Result<std::process::ExitCode, DemoError>, String) {
        let mut out = Vec::new();
        let result = run(db, owned, &mut out);
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn demo_prints_the_timeline_and_leaves_a_verified_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("demo.db");
        let (result, text) = run_demo(&db, false);
        assert_eq!(result.expect("demo"), std::process::ExitCode::SUCCESS);
        for expected in [
            "created acme (Acme Corp), billed in USD (2 minor units)",
            "created initech (Initech KK), billed in JPY (0 minor units)",
            "refused as expected: tenant \"acme\" already exists",
            "rollout order: db, app, lb",
            "refused as expected: invalid transition for resource \"db\": active -> pending",
            "refused as expected: dependency cycle: edge -> web -> edge",
            "app/replicas changed: desired 3 actual 2",
            "impact of db: app, lb",
            "holds 4 resources",
            "chain intact:",
            "copy: tampering detected at audit entry seq 2",
            "original still intact: yes",
            "globex January: compute.vcpu_hours 500 = 19.50 EUR",
            "initech's EUR voucher is untouched by its JPY invoice: 5.00 EUR",
            "acme switches to EUR: February is finished in USD, EUR from 2026-03-01",
            "shares sum to 1000.00 USD",
            "blip: eu-west-1a failed one check -> no action (hysteresis)",
            "+5 s promote db -> eu-central-1 (attempt 1)",
            "+20 s promote lb -> eu-central-1 (attempt 1)",
            "api.acme.example now answers 198.51.100.10, 20.000 s after initiation",
            "invoice line compute.instance_seconds eu-central-1: 5360 s = 0.54 USD",
            "invoice line compute.instance_seconds eu-west-1: 5460 s = 0.55 USD",
            "3 × 3600 s plus 20 s of overlap billed in both regions",
            "failback completed",
            "legacy invoice LEG-2025-12-0001 still 42.00 USD (legacy: true)",
            "checkout-api: queued -> in_progress -> failed -> rolled_back; each transition returned at once, 9 deliveries queued",
            "ci received 6 events, every signature verified: yes",
            "exhausted after 5 attempts at +0, +1, +3, +7, +15 s (503 each time)",
            "statuses: ci 6 delivered; pager 3 exhausted",
            "pager rollback_initiated (rolled_back): exhausted after 5 attempts",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let log = AuditLog::new(Store::open(&db).expect("open"), Arc::new(SystemClock));
        assert!(log.verify().expect("verify").is_intact());
        assert!(
            !tampered_copy_path(&db).exists(),
            "the tampered copy is cleaned up"
        );
    }

    #[test]
    fn an_explicit_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("precious.db");
        std::fs::write(&db, b"precious").expect("write");
        let (result, _) = run_demo(&db, false);
        assert!(matches!(result, Err(DemoError::Refused(_))));
        assert_eq!(std::fs::read(&db).expect("read"), b"precious");
    }

    #[test]
    fn the_owned_default_file_is_replaced_on_rerun() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(DEFAULT_DB);
        for _ in 0..2 {
            let (result, text) = run_demo(&db, true);
            assert_eq!(result.expect("demo"), std::process::ExitCode::SUCCESS);
            assert!(text.contains("chain intact:"), "{text}");
        }
    }
}
