//! Tenants: the unit of isolation, policy and billing.
//!
//! [`TenantRegistry`] keeps tenants in the store and announces changes on the [`EventBus`]. It
//! validates ids, names and currencies; it never decides billing periods or prices (billing does).

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::billing::Currency;
use crate::clock::SharedClock;
use crate::error::{Result, StoreError, TenancyError};
use crate::events::{Event, EventBus};
use crate::ids::{TenantId, validate_display_text};
use crate::store::{Store, format_timestamp};

/// The tenants table (migration 1).
pub(crate) const SCHEMA: &str = "
CREATE TABLE tenants (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    billing_currency TEXT NOT NULL,
    created_at       TEXT NOT NULL
);";

/// Longest accepted tenant name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A tenant: id, display name and the ISO 4217 currency it is billed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// Display name (1–200 characters, not blank).
    pub name: String,
    /// The currency invoices are issued in.
    pub billing_currency: Currency,
}

impl Tenant {
    /// A validated tenant.
    pub fn new(id: TenantId, name: impl Into<String>, billing_currency: Currency) -> Result<Self> {
        let name = name.into();
        validate_display_text("tenant name", &name, MAX_NAME_CHARS)?;
        billing_currency.billable_minor_units()?;
        Ok(Self {
            id,
            name,
            billing_currency,
        })
    }
}

/// The tenants known to one store.
#[derive(Debug, Clone)]
pub struct TenantRegistry {
    store: Store,
    clock: SharedClock,
    bus: EventBus,
}

impl TenantRegistry {
    /// A registry over `store`, stamping changes with `clock` and announcing them on `bus`.
    pub fn new(store: Store, clock: SharedClock, bus: EventBus) -> Self {
        Self { store, clock, bus }
    }

    /// Adds a tenant; an existing id is a [`TenancyError::DuplicateTenant`].
    pub fn create(&self, tenant: Tenant) -> Result<Tenant> {
        let at = self.clock.now();
        self.store.write(|tx| -> Result<()> {
            let inserted = tx
                .execute(
                    "INSERT INTO tenants (id, name, billing_currency, created_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                    rusqlite::params![
                        tenant.id.as_str(),
                        tenant.name,
                        tenant.billing_currency.code(),
                        format_timestamp(at)
                    ],
                )
                .map_err(|e| self.store.sqlite_error(e))?;
            if inserted == 0 {
                return Err(TenancyError::DuplicateTenant {
                    tenant_id: tenant.id.to_string(),
                }
                .into());
            }
            Ok(())
        })?;
        self.bus.publish(
            at,
            Event::TenantCreated {
                tenant: tenant.clone(),
            },
        );
        Ok(tenant)
    }

    /// The tenant with this id, or [`TenancyError::UnknownTenant`].
    pub fn get(&self, id: &TenantId) -> Result<Tenant> {
        self.find(id)?.ok_or_else(|| {
            TenancyError::UnknownTenant {
                tenant_id: id.to_string(),
            }
            .into()
        })
    }

    /// The tenant with this id, if any.
    pub fn find(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let row = self.store.read(|conn| {
            conn.query_row(
                "SELECT id, name, billing_currency FROM tenants WHERE id = ?1",
                [id.as_str()],
                row_to_parts,
            )
            .optional()
        })?;
        row.map(|parts| self.decode(parts)).transpose()
    }

    /// Every tenant, ordered by id.
    pub fn list(&self) -> Result<Vec<Tenant>> {
        let rows = self.store.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT id, name, billing_currency FROM tenants ORDER BY id")?;
            let rows = stmt
                .query_map([], row_to_parts)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter().map(|parts| self.decode(parts)).collect()
    }

    /// When the tenant was created.
    pub fn created_at(&self, id: &TenantId) -> Result<DateTime<Utc>> {
        let text: Option<String> = self.store.read(|conn| {
            conn.query_row(
                "SELECT created_at FROM tenants WHERE id = ?1",
                [id.as_str()],
                |row| row.get(0),
            )
            .optional()
        })?;
        let text = text.ok_or_else(|| TenancyError::UnknownTenant {
            tenant_id: id.to_string(),
        })?;
        Ok(self.store.decode_time("tenants", "created_at", &text)?)
    }

    fn decode(&self, (id, name, currency): (String, String, String)) -> Result<Tenant> {
        let corrupt = |column, reason: String| StoreError::Decode {
            path: self.store.label().to_path_buf(),
            table: "tenants",
            column,
            reason,
        };
        let id = TenantId::new(id).map_err(|e| corrupt("id", e.to_string()))?;
        let currency =
            Currency::new(&currency).map_err(|e| corrupt("billing_currency", e.to_string()))?;
        Ok(Tenant {
            id,
            name,
            billing_currency: currency,
        })
    }
}

/// Records a registered tenant's configured billing currency (billing decides when it applies);
/// an unregistered tenant is left alone. Runs in the caller's transaction.
pub(crate) fn set_billing_currency(
    conn: &rusqlite::Connection,
    id: &TenantId,
    currency: Currency,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tenants SET billing_currency = ?2 WHERE id = ?1",
        rusqlite::params![id.as_str(), currency.code()],
    )
}

/// Registered tenants' billing currencies for ids in `[first, last]` (one range read, as the
/// currency migration walks tenants in id order).
pub(crate) fn billing_currencies_between(
    conn: &rusqlite::Connection,
    first: &str,
    last: &str,
) -> rusqlite::Result<std::collections::HashMap<String, Currency>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, billing_currency FROM tenants WHERE id BETWEEN ?1 AND ?2")?;
    let rows = stmt.query_map([first, last], |r| {
        r.try_into() as rusqlite::Result<(String, String)>
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, code) = row?;
        if let Ok(c) = Currency::new(&code) {
            out.insert(id, c);
        }
    }
    Ok(out)
}

fn row_to_parts(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::clock::ManualClock;
    use crate::error::{Error, ValidationError};
    use crate::events::EventKind;

    fn registry() -> (TenantRegistry, EventBus) {
        let clock = Arc::new(ManualClock::new(
            DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
                .expect("date")
                .with_timezone(&Utc),
        ));
        let bus = EventBus::new();
        let store = Store::memory().expect("store");
        (TenantRegistry::new(store, clock, bus.clone()), bus)
    }

    fn tenant(id: &str, currency: &str) -> Tenant {
        Tenant::new(
            TenantId::new(id).expect("id"),
            format!("{id} Inc."),
            Currency::new(currency).expect("currency"),
        )
        .expect("tenant")
    }

    #[test]
    fn create_get_list_and_created_at() {
        let (reg, _) = registry();
        reg.create(tenant("globex", "EUR")).expect("create");
        reg.create(tenant("acme", "JPY")).expect("create");
        let acme = TenantId::new("acme").expect("id");
        assert_eq!(reg.get(&acme).expect("get"), tenant("acme", "JPY"));
        let ids: Vec<_> = reg
            .list()
            .expect("list")
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(ids, ["acme", "globex"]);
        assert_eq!(
            reg.created_at(&acme).expect("created").to_rfc3339(),
            "2026-03-01T12:00:00+00:00"
        );
    }

    #[test]
    fn duplicates_and_unknowns_are_typed_errors() {
        let (reg, _) = registry();
        reg.create(tenant("acme", "USD")).expect("create");
        let err = reg.create(tenant("acme", "EUR")).expect_err("duplicate");
        assert!(matches!(
            err,
            Error::Tenancy(TenancyError::DuplicateTenant { ref tenant_id }) if tenant_id == "acme"
        ));
        // The first write survives the refused duplicate.
        let acme = TenantId::new("acme").expect("id");
        assert_eq!(reg.get(&acme).expect("get").billing_currency.code(), "USD");
        let ghost = TenantId::new("ghost").expect("id");
        assert!(matches!(
            reg.get(&ghost),
            Err(Error::Tenancy(TenancyError::UnknownTenant { .. }))
        ));
        assert!(reg.created_at(&ghost).is_err());
        assert_eq!(reg.find(&ghost).expect("find"), None);
    }

    #[test]
    fn names_are_validated() {
        let id = TenantId::new("t").expect("id");
        for bad in ["", "   ", "a\nb", &"n".repeat(MAX_NAME_CHARS + 1)] {
            assert!(matches!(
                Tenant::new(id.clone(), bad, Currency::usd()),
                Err(Error::Validation(
                    ValidationError::InvalidName { .. } | ValidationError::TooLong { .. }
                ))
            ));
        }
    }

    #[test]
    fn currencies_without_minor_units_cannot_be_billing_currencies() {
        let id = TenantId::new("t").expect("id");
        for code in ["XAU", "XXX", "XDR"] {
            let currency = Currency::new(code).expect(code);
            assert!(matches!(
                Tenant::new(id.clone(), "T", currency),
                Err(Error::Money(crate::error::MoneyError::NotBillable { .. }))
            ));
        }
    }

    #[test]
    fn creation_is_published_once() {
        let (reg, bus) = registry();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        bus.subscribe(None, move |env| {
            sink.lock().expect("lock").push(env.event.kind());
            Ok(())
        });
        reg.create(tenant("acme", "USD")).expect("create");
        let _ = reg.create(tenant("acme", "USD"));
        assert_eq!(*seen.lock().expect("lock"), [EventKind::TenantCreated]);
    }
}
