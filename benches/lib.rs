//! Input generators shared by the criterion benchmarks in `benches/benches/`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use omnicloud_core::audit::{AuditLog, AuditRecord};
use omnicloud_core::clock::ManualClock;
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;

/// A fixed instant for deterministic inputs.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The `i`-th generated audit record: 50 tenants, small JSON details.
pub fn audit_record(i: usize) -> AuditRecord {
    let tenant = TenantId::new(format!("tenant-{}", i % 50)).ok();
    AuditRecord {
        tenant_id: tenant,
        actor: "bench".to_owned(),
        action: "load.entry".to_owned(),
        resource_id: Some(format!("res-{i}")),
        details: serde_json::json!({ "i": i, "region": "eu-west-1", "ok": i.is_multiple_of(3) }),
    }
}

/// An in-memory audit trail holding `n` generated entries.
pub fn filled_audit_log(n: usize) -> Result<AuditLog, omnicloud_core::Error> {
    let log = AuditLog::new(Store::memory()?, Arc::new(ManualClock::new(t0())));
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        log.append_all(chunk.iter().map(|&i| audit_record(i)).collect())?;
    }
    Ok(log)
}

/// A deterministic pseudo-random sequence (xorshift), so bench inputs are the same every run.
#[derive(Debug, Clone)]
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next value, below `n` (which must not be zero).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
