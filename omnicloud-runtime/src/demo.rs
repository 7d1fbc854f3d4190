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
use omnicloud_core::store::Store;
use omnicloud_core::tenancy::{Tenant, TenantRegistry};

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
    let tenants = TenantRegistry::new(store, clock.clone(), bus);
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
    let actions: Vec<&str> = acme.iter().map(|e| e.action.as_str()).collect();
    t.line("audit", format!("acme's trail: {}", actions.join(", ")))?;
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
        if original.is_intact() && copy_report.first_violation.is_some() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        },
    )
}

fn tenant_id(id: &str) -> Result<TenantId, DemoError> {
    TenantId::new(id).map_err(|e| DemoError::Core(e.into()))
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
            "acme's trail: tenant.created, policy.reviewed",
            "chain intact: 4 entries",
            "copy: tampering detected at audit entry seq 2",
            "original still intact: yes",
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
            assert!(text.contains("chain intact: 4 entries"), "{text}");
        }
    }
}
