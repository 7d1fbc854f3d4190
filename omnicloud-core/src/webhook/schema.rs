//! The webhook tables (migration 9): endpoints. (The delivery queue comes with the
//! dispatcher.)

/// Webhooks' tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL,
    states                TEXT,
    template              TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    rate_limit_per_minute INTEGER NOT NULL,
    max_attempts          INTEGER NOT NULL,
    disabled_reason       TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);
";
