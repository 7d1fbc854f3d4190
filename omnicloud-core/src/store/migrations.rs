//! Versioned schema migrations.
//!
//! Every capability declares its tables as SQL next to the code that uses them and appends a
//! [`Migration`] here; versions only ever grow and a released migration is never edited. Each
//! migration runs in its own immediate transaction that re-checks the version first, so two
//! processes opening the same new file apply it exactly once.

use std::path::Path;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::format_timestamp;
use crate::error::StoreError;

/// One step of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Strictly increasing version, starting at 1.
    pub version: u32,
    /// What the step adds, for humans.
    pub name: &'static str,
    /// The statements (a batch).
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenancy: tenants",
        sql: crate::tenancy::SCHEMA,
    },
    Migration {
        version: 2,
        name: "audit: hash-chained audit trail",
        sql: crate::audit::SCHEMA,
    },
    Migration {
        version: 3,
        name: "state: resources, transitions, lineage and serial",
        sql: crate::state::SCHEMA,
    },
    Migration {
        version: 4,
        name: "billing: append-only exchange-rate history",
        sql: crate::billing::FX_SCHEMA,
    },
    Migration {
        version: 5,
        name: "billing: accounts, currencies, prices, usage, invoices, credits, pools, migration checkpoint",
        sql: crate::billing::SCHEMA,
    },
    Migration {
        version: 6,
        name: "failover: persisted plans and their steps",
        sql: crate::failover::SCHEMA,
    },
    Migration {
        version: 7,
        name: "failover: the region each promoted resource ran in",
        sql: crate::failover::STEP_SOURCE_REGION,
    },
    Migration {
        version: 8,
        name: "deployments: deployments and their transitions",
        sql: crate::deploy::SCHEMA,
    },
    Migration {
        version: 9,
        name: "webhooks: tenants' endpoints and the durable delivery queue",
        sql: crate::webhook::SCHEMA,
    },
    Migration {
        version: 10,
        name: "api keys: tenants' REST API keys (hashed)",
        sql: crate::apikey::SCHEMA,
    },
    Migration {
        version: 11,
        name: "webhooks: deliveries found by their event (queueing is idempotent)",
        sql: crate::webhook::EVENT_INDEX,
    },
    Migration {
        version: 12,
        name: "webhooks: a message's default payload kept once, not per delivery",
        sql: crate::webhook::SHARED_PAYLOAD,
    },
];

/// The SQLite `application_id` OmniCloud databases carry ("OCC1").
pub const APPLICATION_ID: i64 = 0x4F43_4331;

/// The newest version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL
)";

/// The newest applied version (0 for a new database).
pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("SELECT max(version) FROM schema_migrations", [], |row| {
        row.get::<_, Option<u32>>(0)
    })
    .optional()
    .map(|v| v.flatten().unwrap_or(0))
}

/// Brings the database up to [`latest_version`].
pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    apply_to(conn, path, latest_version())
}

/// Brings the database up to `target` (an older build's schema, in upgrade tests).
pub(crate) fn apply_to(conn: &mut Connection, path: &Path, target: u32) -> Result<(), StoreError> {
    let sqlite = |source| super::classify_open_error(path, source);
    conn.execute_batch(BOOKKEEPING).map_err(sqlite)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sqlite)?;
    let found = current_version(conn).map_err(sqlite)?;
    if found > latest_version() {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: latest_version(),
        });
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let failed = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: migration.version,
            name: migration.name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        // Another process may have applied it between our read and our lock.
        if current_version(&tx).map_err(sqlite)? >= migration.version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                migration.version,
                migration.name,
                format_timestamp(Utc::now())
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("future.db");
        drop(crate::store::Store::open(&path).expect("create"));
        let conn = Connection::open(&path).expect("raw open");
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'from the future', '2099-01-01T00:00:00Z')",
            [latest_version() + 1],
        )
        .expect("insert");
        drop(conn);
        let err = crate::store::Store::open(&path).expect_err("too new");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == supported + 1),
            "{err}"
        );
    }

    #[test]
    fn a_failing_migration_names_itself_and_rolls_back() {
        let mut conn = Connection::open_in_memory().expect("conn");
        // Occupy the name the first migration creates, with an incompatible object.
        conn.execute_batch("CREATE VIEW tenants AS SELECT 1 AS x")
            .expect("view");
        let err = apply(&mut conn, Path::new(":memory:")).expect_err("collides");
        assert!(
            matches!(err, StoreError::Migration { version: 1, .. }),
            "{err}"
        );
        assert_eq!(current_version(&conn).expect("version"), 0);
    }
}
