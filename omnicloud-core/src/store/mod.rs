//! The embedded database: one SQLite file (WAL) that is the default home of all durable data.
//!
//! [`Store`] owns the connection, applies the versioned schema migrations of every capability
//! on open, and hands capabilities short read and write sections. It knows nothing of tenants,
//! audit entries or invoices: their tables are declared by their own modules and listed in
//! [`migrations`]. SQL stays portable (plain types, text timestamps) so a PostgreSQL backend can
//! follow; the only SQLite-specific parts are pragmas and the audit trail's guard triggers.

mod checkpoint;
pub mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::error::StoreError;
use checkpoint::Checkpointer;

pub use migrations::{MIGRATIONS, Migration};

/// A handle on the embedded database. Cloning shares the same connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held for its thread (file stores). Declared first so it stops first: the connection,
    /// closing last, then runs the final checkpoint and removes the log.
    _checkpointer: Option<Checkpointer>,
    conn: Mutex<Connection>,
    path: PathBuf,
    in_memory: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// The label used in errors for in-memory stores.
const MEMORY_PATH: &str = ":memory:";

impl Store {
    /// A private in-memory database with the full schema, gone when the last handle drops.
    pub fn memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(MEMORY_PATH);
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Self::initialise(conn, path, true)
    }

    /// Opens (creating if absent) the database file at `path`, in WAL mode, and migrates it to
    /// the newest schema.
    ///
    /// A directory, a missing parent directory, an unwritable location or file, a file that is
    /// not an SQLite database, another application's SQLite database and a file from a newer
    /// OmniCloud are each refused with a [`StoreError`] naming the path; nothing is created or
    /// changed in those cases. The path is a plain file name (never an SQLite URI).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = checked_path(path.as_ref())?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(sqlite_name(&path), flags)
            .map_err(|e| classify_open_error(&path, e))?;
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| classify_open_error(&path, e))?
        {
            return Err(StoreError::Open {
                path,
                reason: "the file is read-only".into(),
            });
        }
        check_ownership(&conn, &path)?;
        Self::initialise(conn, path, false)
    }

    /// Opens an existing database file for reading only: nothing is migrated, converted or
    /// written (for inspection, such as verifying an audit trail). The file must be at the
    /// newest schema this build knows.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = checked_path(path.as_ref())?;
        if !path.is_file() {
            return Err(StoreError::Open {
                path,
                reason: "the file does not exist".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(sqlite_name(&path), flags)
            .map_err(|e| classify_open_error(&path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| classify_open_error(&path, e))?;
        check_ownership(&conn, &path)?;
        let found =
            migrations::current_version(&conn).map_err(|e| classify_open_error(&path, e))?;
        let latest = migrations::latest_version();
        if found > latest {
            return Err(StoreError::SchemaTooNew {
                path,
                found,
                supported: latest,
            });
        }
        if found < latest {
            return Err(StoreError::Open {
                path,
                reason: format!(
                    "schema version {found} is older than {latest}; open it read-write once to migrate"
                ),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                _checkpointer: None,
                conn: Mutex::new(conn),
                path,
                in_memory: false,
            }),
        })
    }

    fn initialise(
        mut conn: Connection,
        path: PathBuf,
        in_memory: bool,
    ) -> Result<Self, StoreError> {
        configure(&conn, in_memory).map_err(|e| classify_open_error(&path, e))?;
        migrations::apply(&mut conn, &path)?;
        let checkpointer = if in_memory {
            None
        } else {
            Checkpointer::start(&mut conn, &sqlite_name(&path))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                _checkpointer: checkpointer,
                conn: Mutex::new(conn),
                path,
                in_memory,
            }),
        })
    }

    /// The database file's path, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        (!self.inner.in_memory).then_some(self.inner.path.as_path())
    }

    /// The path as shown in errors (`:memory:` for in-memory stores).
    pub fn label(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version the database is at (the newest applied migration).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(migrations::current_version)
    }

    /// The migrations recorded in the database, oldest first: (version, name, applied at).
    pub fn applied_migrations(&self) -> Result<Vec<(u32, String, DateTime<Utc>)>, StoreError> {
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
            )?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, u32>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(v, name, at)| {
                Ok((
                    v,
                    name,
                    self.decode_time("schema_migrations", "applied_at", &at)?,
                ))
            })
            .collect()
    }

    /// Runs SQLite's full integrity check; any finding is reported as [`StoreError::Corrupt`].
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let findings: Vec<String> = self.read(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        if findings.len() == 1 && findings[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.inner.path.clone(),
                reason: findings.join("; "),
            })
        }
    }

    /// Whether `other` is this very store (the same connection), so one transaction can
    /// write to both.
    pub(crate) fn same_database(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Runs `f` with the connection for reads (and single-statement writes).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|e| self.sqlite_error(e))
    }

    /// Runs `f` inside an immediate (write-locking) transaction, committing if it returns `Ok`.
    ///
    /// The write lock is taken up front so read-modify-write sequences (the audit chain's head,
    /// a migration checkpoint) are serialised across threads and processes.
    pub(crate) fn write<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sqlite_error(e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| self.sqlite_error(e))?;
        Ok(value)
    }

    /// Wraps an SQLite error with this store's path, classifying corruption.
    pub(crate) fn sqlite_error(&self, source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path: self.inner.path.clone(),
                reason: source.to_string(),
            },
            _ => StoreError::Sqlite {
                path: self.inner.path.clone(),
                source,
            },
        }
    }

    /// Decodes a timestamp column, naming the column if it is malformed.
    pub(crate) fn decode_time(
        &self,
        table: &'static str,
        column: &'static str,
        text: &str,
    ) -> Result<DateTime<Utc>, StoreError> {
        parse_timestamp(text).ok_or_else(|| StoreError::Decode {
            path: self.inner.path.clone(),
            table,
            column,
            reason: format!("{text:?} is not an RFC 3339 UTC timestamp"),
        })
    }
}

/// The name handed to SQLite: relative paths get a `./` prefix so a file called `file:x.db` is
/// never read as an SQLite URI (the bundled SQLite understands URIs in plain names).
fn sqlite_name(path: &Path) -> PathBuf {
    if path.is_relative() {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    }
}

/// The path checks shared by both ways of opening a file.
fn checked_path(path: &Path) -> Result<PathBuf, StoreError> {
    let refuse = |reason: &str| StoreError::Open {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    if path.as_os_str().is_empty() {
        return Err(refuse("the path is empty"));
    }
    if path.is_dir() {
        return Err(refuse("the path is a directory"));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(refuse(if parent.exists() {
            "the parent is not a directory"
        } else {
            "the parent directory does not exist"
        }));
    }
    Ok(path.to_path_buf())
}

/// Refuses files that are not SQLite databases, and SQLite databases of other applications,
/// before anything is written to them.
fn check_ownership(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let read = |e| classify_open_error(path, e);
    // The first read of the header: a file that is not a database fails here.
    let application_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(read)?;
    let tables: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(read)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(read)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(read)?
    };
    let ours = application_id == migrations::APPLICATION_ID
        || (application_id == 0
            && (tables.is_empty() || tables.iter().any(|t| t == "schema_migrations")));
    if ours {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "it is another application's SQLite database (application_id {application_id}, tables {})",
            tables.join(", ")
        ),
    })
}

fn configure(conn: &Connection, in_memory: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache per connection (SQLite's default is 2 MiB): billing runs and the
    // currency migration walk millions of rows; the cache only grows as far as it is used.
    conn.pragma_update(None, "cache_size", -65_536)?;
    if !in_memory {
        // Reading the journal mode is also the first read of the file's header, so a file that
        // is not a database fails here, before anything is written.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal mode stayed {mode}, WAL is required"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

fn classify_open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    let code = source.sqlite_error_code();
    match code {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: source.to_string(),
        },
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure,
        ) => StoreError::Open {
            path: path.to_path_buf(),
            reason: source.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Formats an instant the way the store keeps it: RFC 3339, UTC, nanoseconds, `Z`.
///
/// The fixed width makes text order equal time order, so range queries work on the text.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses a timestamp written by [`format_timestamp`] (any RFC 3339 text is accepted).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_is_migrated() {
        let store = Store::memory().expect("memory store");
        assert_eq!(
            store.schema_version().expect("version"),
            migrations::latest_version()
        );
        assert!(store.path().is_none());
        assert_eq!(store.label(), Path::new(":memory:"));
        let applied = store.applied_migrations().expect("applied");
        assert_eq!(applied.len(), MIGRATIONS.len());
        store.integrity_check().expect("healthy");
    }

    /// Writes about `mib` MiB in one transaction (well past the checkpoint threshold).
    fn write_blobs(store: &Store, mib: usize) {
        store
            .write(|tx| -> Result<(), StoreError> {
                tx.execute("CREATE TABLE IF NOT EXISTS scratch (b BLOB)", [])
                    .map_err(|e| store.sqlite_error(e))?;
                for _ in 0..mib * 16 {
                    tx.execute("INSERT INTO scratch VALUES (zeroblob(65536))", [])
                        .map_err(|e| store.sqlite_error(e))?;
                }
                Ok(())
            })
            .expect("write");
    }

    fn scratch_rows(store: &Store) -> i64 {
        store
            .read(|c| c.query_row("SELECT COUNT(*) FROM scratch", [], |r| r.get(0)))
            .expect("count")
    }

    #[test]
    fn large_commits_reach_the_database_file_without_another_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("omnicloud.db");
        let store = Store::open(&path).expect("open");
        let before = std::fs::metadata(&path).expect("file").len();
        write_blobs(&store, 8);
        // The commit leaves the pages in the log; the background checkpoint copies them into
        // the file while nothing else touches the store.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::metadata(&path).expect("file").len() < before + 8 * 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was never checkpointed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(scratch_rows(&store), 8 * 16);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_checkpoint_thread_and_removes_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("omnicloud.db");
        let wal = dir.path().join("omnicloud.db-wal");
        let store = Store::open(&path).expect("open");
        write_blobs(&store, 2);
        let clone = store.clone();
        drop(store);
        assert!(wal.exists(), "a handle is still open");
        drop(clone);
        // Only the last connection to close removes the log: the thread's own connection is
        // closed by then.
        assert!(!wal.exists(), "the checkpoint thread outlived its store");
        assert_eq!(scratch_rows(&Store::open(&path).expect("reopen")), 2 * 16);
    }

    #[test]
    fn file_store_uses_wal_and_reopens_without_reapplying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("omnicloud.db");
        let first = Store::open(&path).expect("open");
        let mode: String = first
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .expect("mode");
        assert_eq!(mode, "wal");
        let applied_at = first.applied_migrations().expect("applied");
        drop(first);
        let again = Store::open(&path).expect("reopen");
        assert_eq!(again.applied_migrations().expect("applied"), applied_at);
        assert_eq!(again.path(), Some(path.as_path()));
    }

    #[test]
    fn open_refuses_directories_missing_parents_and_files_as_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Store::open(dir.path()).expect_err("directory");
        assert!(
            matches!(&err, StoreError::Open { path, .. } if path == dir.path()),
            "{err}"
        );
        assert!(err.to_string().contains("is a directory"));

        let missing = dir.path().join("no/such/dir/x.db");
        let err = Store::open(&missing).expect_err("missing parent");
        assert!(
            err.to_string().contains("parent directory does not exist"),
            "{err}"
        );
        assert!(err.to_string().contains(&*missing.to_string_lossy()));

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        let err = Store::open(file.join("x.db")).expect_err("file as parent");
        assert!(
            err.to_string().contains("parent is not a directory"),
            "{err}"
        );

        assert!(Store::open("").is_err());
    }

    #[test]
    fn open_reports_a_corrupt_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("corrupt.db");
        let garbage =
            b"this is not an sqlite database, just text that is long enough to read".repeat(80);
        std::fs::write(&path, &garbage).expect("write");
        let err = Store::open(&path).expect_err("corrupt");
        assert!(
            matches!(&err, StoreError::Corrupt { path: p, .. } if p == &path),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            garbage,
            "file untouched"
        );
    }

    #[test]
    fn another_applications_database_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("foreign.db");
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY);")
            .expect("schema");
        drop(conn);
        let before = std::fs::read(&path).expect("read");
        let err = Store::open(&path).expect_err("foreign");
        assert!(
            matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("another application")),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "not converted or migrated"
        );
        assert!(Store::open_read_only(&path).is_err());
    }

    #[test]
    fn paths_are_files_never_uris() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absolute = dir.path().join("file:weird.db");
        let store = Store::open(&absolute).expect("open");
        assert_eq!(store.path(), Some(absolute.as_path()));
        assert!(absolute.is_file());
        assert_eq!(
            sqlite_name(Path::new("file:x.db")),
            Path::new("./file:x.db")
        );
    }

    #[test]
    fn read_only_opening_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ro.db");
        assert!(
            matches!(Store::open_read_only(&path), Err(StoreError::Open { .. })),
            "must exist"
        );
        assert!(!path.exists());
        drop(Store::open(&path).expect("create"));
        let ro = Store::open_read_only(&path).expect("read-only");
        assert_eq!(
            ro.schema_version().expect("version"),
            migrations::latest_version()
        );
        let write = ro.read(|c| c.execute("INSERT INTO tenants VALUES ('a', 'A', 'USD', 'x')", []));
        assert!(write.is_err(), "read-only");
        let old = dir.path().join("old.db");
        let conn = Connection::open(&old).expect("raw");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT);
             INSERT INTO schema_migrations VALUES (1, 'tenancy', '2026-01-01T00:00:00Z');",
        )
        .expect("old schema");
        drop(conn);
        let err = Store::open_read_only(&old).expect_err("too old");
        assert!(err.to_string().contains("older"), "{err}");
    }

    #[test]
    fn timestamps_sort_as_text_in_time_order() {
        let a = parse_timestamp("2026-01-01T00:00:00.5Z").expect("a");
        let b = parse_timestamp("2026-01-01T00:00:01Z").expect("b");
        assert!(format_timestamp(a) < format_timestamp(b));
        assert_eq!(parse_timestamp(&format_timestamp(a)), Some(a));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn write_rolls_back_on_error() {
        let store = Store::memory().expect("store");
        let result: Result<(), StoreError> = store.write(|tx| {
            tx.execute(
                "INSERT INTO tenants (id, name, billing_currency, created_at) VALUES ('t', 'T', 'USD', 'x')",
                [],
            )
            .map_err(|e| store.sqlite_error(e))?;
            Err(StoreError::Decode {
                path: PathBuf::from("x"),
                table: "t",
                column: "c",
                reason: "forced".into(),
            })
        });
        assert!(result.is_err());
        let n: i64 = store
            .read(|c| c.query_row("SELECT count(*) FROM tenants", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(n, 0);
    }
}
