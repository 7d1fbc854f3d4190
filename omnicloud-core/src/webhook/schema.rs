//! The webhook tables (migration 9): endpoints, and the delivery queue — one message per
//! event, one delivery per endpoint that wants it, every attempt kept.

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
CREATE TABLE webhook_messages (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL,
    message_id      TEXT NOT NULL REFERENCES webhook_messages (id),
    tenant_id       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    budget_base     INTEGER NOT NULL,
    next_attempt_at TEXT,
    body            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);
";

/// Migration 11: one message per event (an event queued again, by a replay or a second
/// subscriber, adds only the deliveries it lacks to that message), and deliveries found by
/// their message. Events queued twice before this are told apart by suffixing the later
/// copies' event ids with their message id.
pub(crate) const EVENT_INDEX: &str = "
UPDATE webhook_messages SET event_id = event_id || '#' || id
    WHERE id NOT IN (SELECT MIN(id) FROM webhook_messages GROUP BY event_id);
CREATE UNIQUE INDEX webhook_messages_event ON webhook_messages (event_id);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);
";

/// Migration 12: a message keeps its default payload once (`webhook_messages.body`), and a
/// delivery keeps a body only when it differs: rendered by its endpoint's template, or empty
/// when that template failed (nothing was ever sent). `body` NULL means the message's payload;
/// deliveries queued before keep the bodies they have. The deliveries table is rebuilt for
/// the nullable column; its endpoint and tenant indexes become `(…, id)`, the order deliveries
/// are listed in.
pub(crate) const SHARED_PAYLOAD: &str = "
ALTER TABLE webhook_messages ADD COLUMN body TEXT;
CREATE TABLE webhook_deliveries_shared (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL,
    message_id      TEXT NOT NULL REFERENCES webhook_messages (id),
    tenant_id       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    budget_base     INTEGER NOT NULL,
    next_attempt_at TEXT,
    body            TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO webhook_deliveries_shared (id, endpoint_id, message_id, tenant_id, event_type,
        status, attempts, budget_base, next_attempt_at, body, created_at, updated_at)
    SELECT id, endpoint_id, message_id, tenant_id, event_type, status, attempts, budget_base,
        next_attempt_at, body, created_at, updated_at FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_shared RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, id);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);
";
