//! The audit trail: append-only, persisted in the store, hash-chained.
//!
//! Every entry carries the SHA-256 hash of the entry before it, and the store keeps the chain's
//! head (last sequence number and hash) in the same transaction as each append. [`AuditLog::verify`]
//! recomputes the chain and names the first entry that was edited, deleted, inserted or cut off
//! the end. Triggers refuse `UPDATE` and `DELETE` on the table, so only someone who bypasses
//! the library (and drops the triggers) can tamper, and then `verify` sees it. For protection
//! against someone who rewrites the whole chain, keep [`AuditLog::head`] somewhere else and
//! compare. This module records and checks; it never decides what is worth auditing.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use rusqlite::types::Value as SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::error::{AuditError, Result, StoreError};
use crate::events::{EventBus, SubscriptionId, dotted_name_problem};
use crate::ids::{IdKind, TenantId, generate_id, validate_display_text, validate_id};
use crate::store::{Store, format_timestamp};

/// The audit tables (migration 2). The triggers make the table append-only through SQL.
pub(crate) const SCHEMA: &str = "
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    at          TEXT    NOT NULL,
    tenant_id   TEXT,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    resource_id TEXT,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_action_at ON audit_events (action, at);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE TABLE audit_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
";

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest accepted actor, in characters.
const MAX_ACTOR_CHARS: usize = 256;

/// What to record: who did what to which resource of which tenant, with details.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The tenant concerned, if any (platform-wide actions have none).
    pub tenant_id: Option<TenantId>,
    /// Who acted: a user, a service, or `system`.
    pub actor: String,
    /// Dotted action name, for example `failover.started`.
    pub action: String,
    /// The resource or object acted on, if any.
    pub resource_id: Option<String>,
    /// Structured details (stored as canonical JSON: keys sorted).
    pub details: Value,
}

impl AuditRecord {
    /// A record with no tenant, resource or details.
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            tenant_id: None,
            actor: actor.into(),
            action: action.into(),
            resource_id: None,
            details: Value::Object(serde_json::Map::new()),
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant_id: TenantId) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }

    /// Sets the resource.
    pub fn resource(mut self, resource_id: impl Into<String>) -> Self {
        self.resource_id = Some(resource_id.into());
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    fn validate(&self) -> Result<()> {
        if let Some(reason) = dotted_name_problem(&self.action) {
            return Err(AuditError::InvalidAction {
                action: self.action.clone(),
                reason,
            }
            .into());
        }
        validate_display_text("audit actor", &self.actor, MAX_ACTOR_CHARS)?;
        if let Some(resource_id) = &self.resource_id {
            validate_id(IdKind::Resource, resource_id)?;
        }
        Ok(())
    }
}

/// One recorded entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// Unique, time-ordered id.
    pub id: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to, if anything.
    pub resource_id: Option<String>,
    /// Structured details.
    pub details: Value,
    /// Hash of the previous entry ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This entry's hash (hex SHA-256).
    pub hash: String,
}

/// Filters for [`AuditLog::query`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only this tenant's entries.
    pub tenant_id: Option<TenantId>,
    /// Only this action; a trailing `.*` matches a prefix (`failover.*`).
    pub action: Option<String>,
    /// Only entries at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only entries strictly before this instant.
    pub until: Option<DateTime<Utc>>,
    /// At most this many entries (oldest first).
    pub limit: Option<u64>,
}

/// The chain's head: the last entry's sequence number and hash. Kept elsewhere, it anchors
/// the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The last sequence number (0 when empty).
    pub seq: u64,
    /// The last hash ([`GENESIS_HASH`] when empty).
    pub hash: String,
}

/// What is wrong at the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditProblem {
    /// The entry's content no longer matches its hash: it was edited.
    ContentEdited,
    /// The entry's `prev_hash` is not the previous entry's hash: something before it was
    /// removed, replaced or re-ordered.
    BrokenLink,
    /// Sequence numbers jump: entries were deleted.
    MissingEntries {
        /// The sequence number that should have come next.
        expected_seq: u64,
    },
    /// The chain ends before the recorded head: entries at the end were deleted.
    TruncatedTail {
        /// The head's sequence number.
        head_seq: u64,
    },
    /// The head does not match the last entry (the head itself was edited).
    HeadMismatch,
    /// The chain no longer holds the anchor (a head recorded earlier): it was rewritten.
    AnchorMismatch,
    /// A column cannot be decoded (for example malformed JSON).
    Undecodable {
        /// What could not be decoded.
        reason: String,
    },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::ContentEdited => f.write_str("content does not match its hash (edited)"),
            AuditProblem::BrokenLink => {
                f.write_str("prev_hash does not match the previous entry (chain broken)")
            }
            AuditProblem::MissingEntries { expected_seq } => {
                write!(f, "entries missing: expected seq {expected_seq} next")
            }
            AuditProblem::TruncatedTail { head_seq } => {
                write!(f, "chain ends before the recorded head at seq {head_seq}")
            }
            AuditProblem::HeadMismatch => {
                f.write_str("recorded head does not match the last entry")
            }
            AuditProblem::AnchorMismatch => f.write_str(
                "the entry at the anchor's seq does not carry the anchor's hash (chain rewritten)",
            ),
            AuditProblem::Undecodable { reason } => write!(f, "undecodable: {reason}"),
        }
    }
}

/// The first bad entry found by [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditViolation {
    /// Sequence number of the first bad entry (or where the missing one should be).
    pub seq: u64,
    /// Its id, when the row exists.
    pub entry_id: Option<String>,
    /// What is wrong.
    pub problem: AuditProblem,
}

impl fmt::Display for AuditViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit entry seq {}", self.seq)?;
        if let Some(id) = &self.entry_id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// The outcome of a chain verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// How many entries were read.
    pub entries_checked: u64,
    /// The first bad entry, or `None` if the chain is intact.
    pub first_violation: Option<AuditViolation>,
}

impl AuditVerification {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.first_violation.is_none()
    }
}

/// The audit trail over one store.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Store,
    clock: SharedClock,
}

type Row = (
    u64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);

impl AuditLog {
    /// The audit trail kept in `store`, stamped by `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// The store the trail lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends one entry, stamped now.
    pub fn append(&self, record: AuditRecord) -> Result<AuditEvent> {
        let at = self.clock.now();
        let mut events = self.append_all_at(vec![(at, record)])?;
        Ok(events.remove(0))
    }

    /// Appends entries in order, in one transaction (all or none), each stamped now.
    pub fn append_all(&self, records: Vec<AuditRecord>) -> Result<Vec<AuditEvent>> {
        let at = self.clock.now();
        self.append_all_at(records.into_iter().map(|r| (at, r)).collect())
    }

    /// Appends an entry with an explicit timestamp (an event's own time).
    pub fn append_at(&self, at: DateTime<Utc>, record: AuditRecord) -> Result<AuditEvent> {
        let mut events = self.append_all_at(vec![(at, record)])?;
        Ok(events.remove(0))
    }

    pub(crate) fn append_all_at(
        &self,
        records: Vec<(DateTime<Utc>, AuditRecord)>,
    ) -> Result<Vec<AuditEvent>> {
        for (_, record) in &records {
            record.validate()?;
        }
        self.store.write(|tx| self.append_in(tx, records))
    }

    /// Appends entries inside a write transaction the caller holds on this log's store (so a
    /// capability's change and its audit entry commit together). Records must be validated.
    fn append_in(
        &self,
        tx: &rusqlite::Connection,
        records: Vec<(DateTime<Utc>, AuditRecord)>,
    ) -> Result<Vec<AuditEvent>> {
        let sqlite = |e| self.store.sqlite_error(e);
        {
            let head = read_head(tx).map_err(sqlite)?;
            let mut prev = head;
            let mut out = Vec::with_capacity(records.len());
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_events
                     (seq, id, at, tenant_id, actor, action, resource_id, details, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sqlite)?;
            for (at, record) in records {
                let details_text = canonical_json(&record.details);
                let mut event = AuditEvent {
                    seq: prev.seq + 1,
                    id: generate_id(),
                    at,
                    tenant_id: record.tenant_id.map(String::from),
                    actor: record.actor,
                    action: record.action,
                    resource_id: record.resource_id,
                    details: record.details,
                    prev_hash: prev.hash,
                    hash: String::new(),
                };
                let at_text = format_timestamp(event.at);
                event.hash = entry_hash(&event, &at_text, &details_text);
                insert
                    .execute(rusqlite::params![
                        event.seq,
                        event.id,
                        at_text,
                        event.tenant_id,
                        event.actor,
                        event.action,
                        event.resource_id,
                        details_text,
                        event.prev_hash,
                        event.hash,
                    ])
                    .map_err(sqlite)?;
                prev = AuditHead {
                    seq: event.seq,
                    hash: event.hash.clone(),
                };
                out.push(event);
            }
            tx.prepare_cached(
                "INSERT INTO audit_head (singleton, seq, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (singleton) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )
            .and_then(|mut stmt| stmt.execute(rusqlite::params![prev.seq, prev.hash]))
            .map_err(sqlite)?;
            Ok(out)
        }
    }

    /// Appends `records` (each with its timestamp) inside the caller's write transaction `tx`,
    /// if `tx` belongs to `store` and this log lives there too; `None` (nothing written)
    /// otherwise, so the caller appends separately.
    pub(crate) fn append_with(
        &self,
        store: &Store,
        tx: &rusqlite::Connection,
        records: Vec<(DateTime<Utc>, AuditRecord)>,
    ) -> Result<Option<Vec<AuditEvent>>> {
        if !self.store.same_database(store) {
            return Ok(None);
        }
        for (_, record) in &records {
            record.validate()?;
        }
        Ok(Some(self.append_in(tx, records)?))
    }

    /// Records every event published on `bus` as an audit entry (action = the event's name,
    /// actor `omnicloud`, details = the event's payload and id). Returns the subscription.
    pub fn follow(&self, bus: &EventBus) -> SubscriptionId {
        let log = self.clone();
        bus.subscribe(None, move |envelope| {
            let event = &envelope.event;
            let record = AuditRecord {
                tenant_id: event.tenant_id().cloned(),
                actor: "omnicloud".to_owned(),
                action: event.name().to_owned(),
                resource_id: event.subject().map(str::to_owned),
                details: serde_json::json!({ "event_id": envelope.id, "data": event.data() }),
            };
            log.append_at(envelope.at, record).map(drop)
        })
    }

    /// The chain's head.
    pub fn head(&self) -> Result<AuditHead> {
        Ok(self.store.read(read_head)?)
    }

    /// How many entries the trail holds.
    pub fn len(&self) -> Result<u64> {
        Ok(self
            .store
            .read(|c| c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0)))?)
    }

    /// Whether the trail is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Entries matching `query`, oldest first.
    pub fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since > until
        {
            return Err(AuditError::EmptyRange {
                since: format_timestamp(since),
                until: format_timestamp(until),
            }
            .into());
        }
        let mut sql = String::from(
            "SELECT seq, id, at, tenant_id, actor, action, resource_id, details, prev_hash, hash
             FROM audit_events WHERE 1 = 1",
        );
        let mut params: Vec<String> = Vec::new();
        if let Some(tenant) = &query.tenant_id {
            params.push(tenant.to_string());
            sql.push_str(&format!(" AND tenant_id = ?{}", params.len()));
        }
        if let Some(action) = &query.action {
            match action.strip_suffix(".*") {
                Some(prefix) => {
                    validate_action_filter(prefix, action)?;
                    params.push(format!("{prefix}."));
                    sql.push_str(&format!(
                        " AND substr(action, 1, length(?{n})) = ?{n}",
                        n = params.len()
                    ));
                }
                None => {
                    validate_action_filter(action, action)?;
                    params.push(action.clone());
                    sql.push_str(&format!(" AND action = ?{}", params.len()));
                }
            }
        }
        if let Some(since) = query.since {
            params.push(format_timestamp(since));
            sql.push_str(&format!(" AND at >= ?{}", params.len()));
        }
        if let Some(until) = query.until {
            params.push(format_timestamp(until));
            sql.push_str(&format!(" AND at < ?{}", params.len()));
        }
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = query.limit {
            params.push(limit.min(i64::MAX as u64).to_string());
            sql.push_str(&format!(" LIMIT CAST(?{} AS INTEGER)", params.len()));
        }
        let rows = self.store.read(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), read_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|row| {
                Self::decode(row).map_err(|(column, reason)| {
                    StoreError::Decode {
                        path: self.store.label().to_path_buf(),
                        table: "audit_events",
                        column,
                        reason,
                    }
                    .into()
                })
            })
            .collect()
    }

    /// Recomputes the whole chain and reports the first bad entry, if any.
    ///
    /// Reads in one snapshot (a read transaction), so concurrent appends do not cause false
    /// alarms. Tampering never makes this fail: values of the wrong type are reported as
    /// undecodable entries.
    pub fn verify(&self) -> Result<AuditVerification> {
        self.verify_anchored(None)
    }

    /// Like [`AuditLog::verify`], and also checks that the chain still holds `anchor`: a head
    /// recorded earlier and kept outside the database. This catches what the chain alone cannot:
    /// entries cut off the end together with a rewritten head, or a whole rewritten chain.
    pub fn verify_anchored(&self, anchor: Option<&AuditHead>) -> Result<AuditVerification> {
        let (rows, head) = self.store.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let rows = {
                let mut stmt = tx.prepare(
                    "SELECT seq, id, at, tenant_id, actor, action, resource_id, details, prev_hash, hash
                     FROM audit_events ORDER BY seq",
                )?;
                stmt.query_map([], |r| {
                    (0..10).map(|i| r.get::<_, SqlValue>(i)).collect::<rusqlite::Result<Vec<_>>>()
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let head = tx
                .query_row("SELECT seq, hash FROM audit_head WHERE singleton = 1", [], |r| {
                    Ok((r.get::<_, SqlValue>(0)?, r.get::<_, SqlValue>(1)?))
                })
                .optional()?;
            tx.finish()?;
            Ok((rows, head))
        })?;
        let mut prev = AuditHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        };
        let mut anchor_hash_seen: Option<String> = None;
        let mut checked = 0;
        let result = |checked, seq, entry_id, problem| AuditVerification {
            entries_checked: checked,
            first_violation: Some(AuditViolation {
                seq,
                entry_id,
                problem,
            }),
        };
        for row in rows {
            checked += 1;
            let expected_seq = prev.seq + 1;
            let (event, at_text, details_text) = match decode_loose(row) {
                Ok(decoded) => decoded,
                Err((seq, id, reason)) => {
                    return Ok(result(
                        checked,
                        seq.unwrap_or(expected_seq),
                        id,
                        AuditProblem::Undecodable { reason },
                    ));
                }
            };
            if event.seq != expected_seq {
                return Ok(result(
                    checked,
                    expected_seq,
                    None,
                    AuditProblem::MissingEntries { expected_seq },
                ));
            }
            let entry_id = Some(event.id.clone());
            if event.prev_hash != prev.hash {
                return Ok(result(
                    checked,
                    event.seq,
                    entry_id,
                    AuditProblem::BrokenLink,
                ));
            }
            if entry_hash(&event, &at_text, &details_text) != event.hash {
                return Ok(result(
                    checked,
                    event.seq,
                    entry_id,
                    AuditProblem::ContentEdited,
                ));
            }
            if anchor.is_some_and(|a| a.seq == event.seq) {
                anchor_hash_seen = Some(event.hash.clone());
            }
            prev = AuditHead {
                seq: event.seq,
                hash: event.hash,
            };
        }
        let head = match head {
            None => AuditHead {
                seq: 0,
                hash: GENESIS_HASH.to_owned(),
            },
            Some((SqlValue::Integer(seq), SqlValue::Text(hash))) if seq >= 0 => AuditHead {
                seq: seq.unsigned_abs(),
                hash,
            },
            Some(_) => return Ok(result(checked, prev.seq, None, AuditProblem::HeadMismatch)),
        };
        if head.seq > prev.seq {
            return Ok(result(
                checked,
                prev.seq + 1,
                None,
                AuditProblem::TruncatedTail { head_seq: head.seq },
            ));
        }
        if head != prev {
            return Ok(result(checked, prev.seq, None, AuditProblem::HeadMismatch));
        }
        if let Some(anchor) = anchor {
            if anchor.seq > prev.seq {
                return Ok(result(
                    checked,
                    prev.seq + 1,
                    None,
                    AuditProblem::TruncatedTail {
                        head_seq: anchor.seq,
                    },
                ));
            }
            let matches = anchor.seq == 0 && anchor.hash == GENESIS_HASH
                || anchor_hash_seen.as_deref() == Some(anchor.hash.as_str());
            if !matches {
                return Ok(result(
                    checked,
                    anchor.seq,
                    None,
                    AuditProblem::AnchorMismatch,
                ));
            }
        }
        Ok(AuditVerification {
            entries_checked: checked,
            first_violation: None,
        })
    }

    /// Decodes a row; on failure names the column and what is wrong with it.
    fn decode(row: Row) -> std::result::Result<AuditEvent, (&'static str, String)> {
        let (seq, id, at_text, tenant_id, actor, action, resource_id, details, prev_hash, hash) =
            row;
        let at = crate::store::parse_timestamp(&at_text)
            .ok_or_else(|| ("at", format!("{at_text:?} is not an RFC 3339 timestamp")))?;
        let details: Value = serde_json::from_str(&details)
            .map_err(|e| ("details", format!("invalid JSON: {e}")))?;
        Ok(AuditEvent {
            seq,
            id,
            at,
            tenant_id,
            actor,
            action,
            resource_id,
            details,
            prev_hash,
            hash,
        })
    }
}

fn validate_action_filter(name: &str, as_given: &str) -> Result<()> {
    match dotted_name_problem(name) {
        Some(_) => Err(AuditError::InvalidAction {
            action: as_given.to_owned(),
            reason: "must be a dotted action name, optionally ending in .*",
        }
        .into()),
        None => Ok(()),
    }
}

/// What went wrong decoding a row loosely: its seq and id if readable, and why.
type LooseFailure = (Option<u64>, Option<String>, String);

/// Decodes a row read as loose SQLite values (so tampered types are findings, not errors);
/// returns the event with its `at` and `details` texts exactly as stored.
fn decode_loose(
    values: Vec<SqlValue>,
) -> std::result::Result<(AuditEvent, String, String), LooseFailure> {
    const NAMES: [&str; 10] = [
        "seq",
        "id",
        "at",
        "tenant_id",
        "actor",
        "action",
        "resource_id",
        "details",
        "prev_hash",
        "hash",
    ];
    let seq = match values.first() {
        Some(SqlValue::Integer(n)) if *n >= 1 => Some(n.unsigned_abs()),
        _ => None,
    };
    let id = match values.get(1) {
        Some(SqlValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let fail = |reason: String| (seq, id.clone(), reason);
    let Some(seq_value) = seq else {
        return Err(fail("seq: not a positive integer".into()));
    };
    let mut texts: Vec<Option<String>> = Vec::with_capacity(9);
    for (i, value) in values.into_iter().enumerate().skip(1) {
        let optional = matches!(i, 3 | 6);
        match value {
            SqlValue::Text(t) => texts.push(Some(t)),
            SqlValue::Null if optional => texts.push(None),
            other => {
                return Err(fail(format!(
                    "{}: unexpected {:?} value",
                    NAMES[i],
                    other.data_type()
                )));
            }
        }
    }
    let mut take = |i: usize| texts.get_mut(i - 1).and_then(Option::take);
    let (id_text, at_text, tenant_id, actor, action, resource_id, details_text, prev_hash, hash) = (
        take(1).unwrap_or_default(),
        take(2).unwrap_or_default(),
        take(3),
        take(4).unwrap_or_default(),
        take(5).unwrap_or_default(),
        take(6),
        take(7).unwrap_or_default(),
        take(8).unwrap_or_default(),
        take(9).unwrap_or_default(),
    );
    let row: Row = (
        seq_value,
        id_text,
        at_text.clone(),
        tenant_id,
        actor,
        action,
        resource_id,
        details_text.clone(),
        prev_hash,
        hash,
    );
    let event =
        AuditLog::decode(row).map_err(|(column, reason)| fail(format!("{column}: {reason}")))?;
    Ok((event, at_text, details_text))
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

fn read_head(conn: &rusqlite::Connection) -> rusqlite::Result<AuditHead> {
    let head = conn
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE singleton = 1")?
        .query_row([], |r| {
            Ok(AuditHead {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        })
        .optional()?;
    Ok(head.unwrap_or_else(|| AuditHead {
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    }))
}

/// Canonical JSON: compact, object keys sorted (serde_json's map is ordered by key).
fn canonical_json(value: &Value) -> String {
    value.to_string()
}

/// The entry's hash: SHA-256 over a domain tag and every field, each length-prefixed so no two
/// different entries can encode to the same bytes.
fn entry_hash(event: &AuditEvent, at_text: &str, details_text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"omnicloud-audit-v1");
    let seq = event.seq.to_string();
    let fields: [Option<&str>; 9] = [
        Some(&seq),
        Some(&event.id),
        Some(at_text),
        event.tenant_id.as_deref(),
        Some(&event.actor),
        Some(&event.action),
        event.resource_id.as_deref(),
        Some(details_text),
        Some(&event.prev_hash),
    ];
    for field in fields {
        match field {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::error::{Error, ValidationError};
    use crate::events::Event;

    fn setup() -> (AuditLog, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
                .expect("date")
                .with_timezone(&Utc),
        ));
        let log = AuditLog::new(Store::memory().expect("store"), clock.clone());
        (log, clock)
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("id")
    }

    fn fill(log: &AuditLog, clock: &ManualClock) {
        for (i, (t, action)) in [
            ("acme", "tenant.created"),
            ("globex", "tenant.created"),
            ("acme", "failover.started"),
            ("acme", "failover.completed"),
            ("globex", "invoice.issued"),
        ]
        .into_iter()
        .enumerate()
        {
            log.append(
                AuditRecord::new("system", action)
                    .tenant(tenant(t))
                    .resource(format!("r{i}"))
                    .details(serde_json::json!({"i": i, "b": [1, 2], "a": null})),
            )
            .expect("append");
            clock.advance(10.0).expect("advance");
        }
    }

    fn tamper(log: &AuditLog, sql: &str) {
        log.store
            .read(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
                )?;
                c.execute_batch(sql)
            })
            .expect("tamper");
    }

    #[test]
    fn appends_form_a_chain_and_verify() {
        let (log, clock) = setup();
        assert_eq!(log.head().expect("head").hash, GENESIS_HASH);
        fill(&log, &clock);
        let all = log.query(&AuditQuery::default()).expect("query");
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].prev_hash, GENESIS_HASH);
        for pair in all.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
        let head = log.head().expect("head");
        assert_eq!((head.seq, head.hash.as_str()), (5, all[4].hash.as_str()));
        let v = log.verify().expect("verify");
        assert!(v.is_intact(), "{v:?}");
        assert_eq!(v.entries_checked, 5);
        assert_eq!(log.len().expect("len"), 5);
    }

    #[test]
    fn query_filters_by_tenant_action_prefix_and_time() {
        let (log, clock) = setup();
        fill(&log, &clock);
        let q = |q: AuditQuery| -> Vec<u64> {
            log.query(&q)
                .expect("query")
                .into_iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(
            q(AuditQuery {
                tenant_id: Some(tenant("acme")),
                ..Default::default()
            }),
            [1, 3, 4]
        );
        assert_eq!(
            q(AuditQuery {
                action: Some("failover.*".into()),
                ..Default::default()
            }),
            [3, 4]
        );
        assert_eq!(
            q(AuditQuery {
                action: Some("tenant.created".into()),
                tenant_id: Some(tenant("globex")),
                ..Default::default()
            }),
            [2]
        );
        let t0 = DateTime::parse_from_rfc3339("2026-06-01T00:00:10Z")
            .expect("t")
            .with_timezone(&Utc);
        assert_eq!(
            q(AuditQuery {
                since: Some(t0),
                until: Some(t0 + chrono::TimeDelta::seconds(20)),
                ..Default::default()
            }),
            [2, 3],
            "since inclusive, until exclusive"
        );
        assert_eq!(
            q(AuditQuery {
                limit: Some(2),
                ..Default::default()
            }),
            [1, 2]
        );
    }

    #[test]
    fn bad_queries_and_records_are_typed_errors() {
        let (log, clock) = setup();
        let later = clock.now() + chrono::TimeDelta::seconds(1);
        let err = log
            .query(&AuditQuery {
                since: Some(later),
                until: Some(clock.now()),
                ..Default::default()
            })
            .expect_err("empty range");
        assert!(matches!(err, Error::Audit(AuditError::EmptyRange { .. })));
        for bad in ["", "Bad", "x..y", "a b"] {
            assert!(matches!(
                log.append(AuditRecord::new("system", bad)),
                Err(Error::Audit(AuditError::InvalidAction { .. }))
            ));
            assert!(
                log.query(&AuditQuery {
                    action: Some(bad.into()),
                    ..Default::default()
                })
                .is_err()
            );
        }
        assert!(matches!(
            log.append(AuditRecord::new(" ", "a.b")),
            Err(Error::Validation(ValidationError::InvalidName { .. }))
        ));
        // A refused batch writes nothing.
        let batch = vec![
            AuditRecord::new("system", "a.b"),
            AuditRecord::new("system", "B"),
        ];
        assert!(log.append_all(batch).is_err());
        assert!(log.is_empty().expect("empty"));
    }

    #[test]
    fn sql_updates_and_deletes_are_refused_by_triggers() {
        let (log, clock) = setup();
        fill(&log, &clock);
        let update = log.store.read(|c| {
            c.execute(
                "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
                [],
            )
        });
        assert!(update.is_err());
        let delete = log
            .store
            .read(|c| c.execute("DELETE FROM audit_events WHERE seq = 5", []));
        assert!(delete.is_err());
        assert!(log.verify().expect("verify").is_intact());
    }

    fn first_violation(log: &AuditLog) -> AuditViolation {
        log.verify()
            .expect("verify")
            .first_violation
            .expect("tampering detected")
    }

    #[test]
    fn detects_an_edited_entry() {
        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(
            &log,
            "UPDATE audit_events SET details = '{\"i\":99}' WHERE seq = 3",
        );
        let v = first_violation(&log);
        assert_eq!((v.seq, v.problem), (3, AuditProblem::ContentEdited));
        assert!(v.entry_id.is_some());
    }

    #[test]
    fn detects_a_deleted_entry_in_the_middle() {
        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(&log, "DELETE FROM audit_events WHERE seq = 2");
        let v = first_violation(&log);
        assert_eq!(
            (v.seq, v.problem),
            (2, AuditProblem::MissingEntries { expected_seq: 2 })
        );
    }

    #[test]
    fn detects_a_renumbered_chain_and_a_truncated_tail() {
        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(
            &log,
            "DELETE FROM audit_events WHERE seq = 2; UPDATE audit_events SET seq = seq - 1 WHERE seq > 2;",
        );
        let v = first_violation(&log);
        assert_eq!((v.seq, v.problem), (2, AuditProblem::BrokenLink));

        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(&log, "DELETE FROM audit_events WHERE seq >= 4");
        let v = first_violation(&log);
        assert_eq!(
            (v.seq, v.problem),
            (4, AuditProblem::TruncatedTail { head_seq: 5 })
        );
    }

    #[test]
    fn detects_an_edited_head_and_undecodable_rows() {
        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(&log, "UPDATE audit_head SET hash = 'ff'");
        assert_eq!(first_violation(&log).problem, AuditProblem::HeadMismatch);

        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(
            &log,
            "UPDATE audit_events SET details = 'not json' WHERE seq = 1",
        );
        assert!(matches!(
            first_violation(&log).problem,
            AuditProblem::Undecodable { .. }
        ));
        assert!(log.query(&AuditQuery::default()).is_err());
    }

    #[test]
    fn tampered_types_are_findings_not_errors() {
        for sql in [
            "UPDATE audit_events SET actor = CAST(actor AS BLOB) WHERE seq = 2",
            "UPDATE audit_events SET details = X'00ff' WHERE seq = 3",
            "UPDATE audit_events SET action = X'61' WHERE seq = 1",
        ] {
            let (log, clock) = setup();
            fill(&log, &clock);
            tamper(&log, sql);
            let v = first_violation(&log);
            assert!(
                matches!(v.problem, AuditProblem::Undecodable { .. }),
                "{sql}: {v}"
            );
        }
        let (log, clock) = setup();
        fill(&log, &clock);
        tamper(&log, "UPDATE audit_events SET seq = -2 WHERE seq = 1");
        assert!(!log.verify().expect("verify").is_intact());
        for head in [
            "UPDATE audit_head SET seq = 'x'",
            "UPDATE audit_head SET seq = -1",
            "UPDATE audit_head SET hash = 5",
        ] {
            let (log, clock) = setup();
            fill(&log, &clock);
            tamper(&log, head);
            assert_eq!(
                first_violation(&log).problem,
                AuditProblem::HeadMismatch,
                "{head}"
            );
        }
    }

    #[test]
    fn an_anchor_catches_a_cut_tail_with_a_rewritten_head() {
        let (log, clock) = setup();
        fill(&log, &clock);
        let anchor = log.head().expect("head");
        assert!(
            log.verify_anchored(Some(&anchor))
                .expect("verify")
                .is_intact()
        );
        let (seq3, hash3): (u64, String) = log
            .store
            .read(|c| {
                c.query_row(
                    "SELECT seq, hash FROM audit_events WHERE seq = 3",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .expect("row 3");
        tamper(
            &log,
            &format!(
                "DELETE FROM audit_events WHERE seq > 3; UPDATE audit_head SET seq = {seq3}, hash = '{hash3}';"
            ),
        );
        assert!(
            log.verify().expect("verify").is_intact(),
            "invisible without an anchor"
        );
        let v = log
            .verify_anchored(Some(&anchor))
            .expect("verify")
            .first_violation
            .expect("caught");
        assert_eq!(v.problem, AuditProblem::TruncatedTail { head_seq: 5 });
        let forged = AuditHead {
            seq: 2,
            hash: "00".repeat(32),
        };
        assert_eq!(
            log.verify_anchored(Some(&forged))
                .expect("verify")
                .first_violation
                .expect("caught")
                .problem,
            AuditProblem::AnchorMismatch
        );
        let genesis = AuditHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        };
        assert!(
            log.verify_anchored(Some(&genesis))
                .expect("verify")
                .is_intact()
        );
    }

    #[test]
    fn huge_limits_and_bad_resource_ids() {
        let (log, clock) = setup();
        fill(&log, &clock);
        let all = log
            .query(&AuditQuery {
                limit: Some(u64::MAX),
                ..Default::default()
            })
            .expect("query");
        assert_eq!(all.len(), 5);
        assert!(matches!(
            log.append(AuditRecord::new("system", "a.b").resource("bad id\n")),
            Err(Error::Validation(ValidationError::InvalidId { .. }))
        ));
    }

    #[test]
    fn follows_the_event_bus() {
        let (log, clock) = setup();
        let bus = EventBus::new();
        log.follow(&bus);
        let report = bus.publish(
            clock.now(),
            Event::custom(
                "app.release_approved",
                Some(tenant("acme")),
                Some("svc-1".into()),
                serde_json::json!({"by": "alice"}),
            )
            .expect("event"),
        );
        assert!(report.failures.is_empty());
        let entries = log.query(&AuditQuery::default()).expect("query");
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.action, "app.release_approved");
        assert_eq!(e.tenant_id.as_deref(), Some("acme"));
        assert_eq!(e.resource_id.as_deref(), Some("svc-1"));
        assert_eq!(e.details["data"]["by"], "alice");
        assert_eq!(e.details["event_id"], report.envelope.id.as_str());
    }

    #[test]
    fn concurrent_appends_keep_one_chain() {
        let (log, _) = setup();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append(
                            AuditRecord::new(format!("worker-{t}"), "load.test")
                                .details(serde_json::json!({ "i": i })),
                        )
                        .expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let v = log.verify().expect("verify");
        assert!(v.is_intact());
        assert_eq!(v.entries_checked, 200);
    }

    #[test]
    fn hash_covers_every_field() {
        let (log, _) = setup();
        let e = log
            .append(AuditRecord::new("system", "a.b").tenant(tenant("t")))
            .expect("append");
        let at = format_timestamp(e.at);
        let base = entry_hash(&e, &at, "{}");
        let variants = [
            AuditEvent {
                seq: 2,
                ..e.clone()
            },
            AuditEvent {
                id: "x".into(),
                ..e.clone()
            },
            AuditEvent {
                tenant_id: None,
                ..e.clone()
            },
            AuditEvent {
                tenant_id: Some(String::new()),
                ..e.clone()
            },
            AuditEvent {
                actor: "other".into(),
                ..e.clone()
            },
            AuditEvent {
                action: "a.c".into(),
                ..e.clone()
            },
            AuditEvent {
                resource_id: Some("r".into()),
                ..e.clone()
            },
            AuditEvent {
                prev_hash: "1".into(),
                ..e.clone()
            },
        ];
        for v in variants {
            assert_ne!(entry_hash(&v, &at, "{}"), base, "{v:?}");
        }
        assert_ne!(entry_hash(&e, "2026-01-01T00:00:00Z", "{}"), base);
        assert_ne!(entry_hash(&e, &at, "{\"a\":1}"), base);
    }
}
