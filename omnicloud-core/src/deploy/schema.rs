//! The deployment tables (migration 8): deployments and their transitions.

/// Deployments' tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE deployments (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    service_name TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    updated_at   TEXT NOT NULL,
    reason       TEXT
) WITHOUT ROWID;
CREATE INDEX deployments_tenant ON deployments (tenant_id, created_at);
CREATE TABLE deployment_transitions (
    seq           INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    at            TEXT NOT NULL,
    reason        TEXT
);
CREATE INDEX deployment_transitions_deployment ON deployment_transitions (deployment_id, seq);
";
