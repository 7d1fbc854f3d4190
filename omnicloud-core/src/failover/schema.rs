//! The failover tables (migration 6): tenants' policies and where they are served, and the
//! persisted plans with their steps; migration 7 records, per promotion, the region the
//! resource ran in when the plan was made (billing attribution reads it).

/// Failover's tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE failover_tenants (
    tenant_id       TEXT PRIMARY KEY,
    policy          TEXT NOT NULL,
    serving         TEXT NOT NULL,
    held            INTEGER NOT NULL,
    last_transition TEXT
) WITHOUT ROWID;
CREATE TABLE failover_plans (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    from_region    TEXT NOT NULL,
    to_region      TEXT NOT NULL,
    trigger        TEXT NOT NULL,
    initiated_at   TEXT NOT NULL,
    dns_updated_at TEXT,
    completed_at   TEXT,
    status         TEXT NOT NULL
);
CREATE INDEX failover_plans_tenant ON failover_plans (tenant_id, initiated_at);
CREATE TABLE failover_steps (
    plan_id    TEXT NOT NULL REFERENCES failover_plans (id),
    position   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    done_at    TEXT,
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    PRIMARY KEY (plan_id, position)
) WITHOUT ROWID;
";

/// Migration 7: each promotion step's source region (NULL for DNS steps and for plans made
/// before it, whose source is the plan's `from_region`).
pub(crate) const STEP_SOURCE_REGION: &str = "
ALTER TABLE failover_steps ADD COLUMN source_region TEXT;
";
