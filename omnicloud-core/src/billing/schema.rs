//! The billing tables (migration 5).
//!
//! Append-only where history matters: usage, issued invoices, legacy invoices and the credit
//! ledger refuse updates and deletes in SQL, so not even a bug in this crate can rewrite them.

/// The schema of billing accounts, currencies, prices, usage, invoices, credits, discounts,
/// pool charges and the currency-migration checkpoint.
pub(crate) const SCHEMA: &str = "
CREATE TABLE billing_accounts (
    tenant_id   TEXT PRIMARY KEY,
    legacy      INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    migrated_at TEXT
) WITHOUT ROWID;
CREATE INDEX billing_accounts_unmigrated ON billing_accounts (tenant_id)
    WHERE legacy = 1 AND migrated_at IS NULL;

CREATE TABLE billing_currency_changes (
    tenant_id      TEXT NOT NULL REFERENCES billing_accounts (tenant_id),
    effective_from TEXT NOT NULL,
    currency       TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, effective_from)
) WITHOUT ROWID;

CREATE TABLE billing_prices (
    meter      TEXT NOT NULL,
    region     TEXT NOT NULL,
    currency   TEXT NOT NULL,
    unit_price TEXT NOT NULL,
    set_at     TEXT NOT NULL,
    PRIMARY KEY (meter, region, currency, set_at)
) WITHOUT ROWID;

CREATE TABLE billing_usage (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    meter       TEXT NOT NULL,
    region      TEXT NOT NULL,
    quantity    TEXT NOT NULL,
    start_us    INTEGER NOT NULL,
    end_us      INTEGER NOT NULL,
    resource_id TEXT,
    recorded_at TEXT NOT NULL
);
CREATE TRIGGER billing_usage_no_update BEFORE UPDATE ON billing_usage
BEGIN SELECT RAISE(ABORT, 'billing_usage is append-only'); END;
CREATE TRIGGER billing_usage_no_delete BEFORE DELETE ON billing_usage
BEGIN SELECT RAISE(ABORT, 'billing_usage is append-only'); END;

CREATE TABLE billing_invoices (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    corrects             TEXT,
    period_start         TEXT,
    period_end           TEXT,
    currency             TEXT NOT NULL,
    total                TEXT NOT NULL,
    exchange_rate_to_usd TEXT NOT NULL,
    rate_as_of           TEXT NOT NULL,
    rate_source          TEXT NOT NULL,
    total_usd            TEXT NOT NULL,
    issued_at            TEXT NOT NULL,
    legacy               INTEGER NOT NULL,
    document             TEXT NOT NULL
);
CREATE INDEX billing_invoices_tenant ON billing_invoices (tenant_id, period_start);
CREATE INDEX billing_invoices_corrects ON billing_invoices (corrects) WHERE corrects IS NOT NULL;
CREATE TRIGGER billing_invoices_no_update BEFORE UPDATE ON billing_invoices
BEGIN SELECT RAISE(ABORT, 'billing_invoices is immutable'); END;
CREATE TRIGGER billing_invoices_no_delete BEFORE DELETE ON billing_invoices
BEGIN SELECT RAISE(ABORT, 'billing_invoices is immutable'); END;

CREATE TABLE billing_legacy_invoices (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    amount_usd   TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    issued_at    TEXT NOT NULL
);
CREATE INDEX billing_legacy_invoices_tenant ON billing_legacy_invoices (tenant_id);
CREATE TRIGGER billing_legacy_invoices_no_update BEFORE UPDATE ON billing_legacy_invoices
BEGIN SELECT RAISE(ABORT, 'billing_legacy_invoices is immutable'); END;
CREATE TRIGGER billing_legacy_invoices_no_delete BEFORE DELETE ON billing_legacy_invoices
BEGIN SELECT RAISE(ABORT, 'billing_legacy_invoices is immutable'); END;

CREATE TABLE billing_wallets (
    tenant_id TEXT NOT NULL,
    currency  TEXT NOT NULL,
    balance   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, currency)
) WITHOUT ROWID;

CREATE TABLE billing_credit_ledger (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    currency   TEXT NOT NULL,
    amount     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    invoice_id TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX billing_credit_ledger_tenant ON billing_credit_ledger (tenant_id, currency);
CREATE TRIGGER billing_credit_ledger_no_update BEFORE UPDATE ON billing_credit_ledger
BEGIN SELECT RAISE(ABORT, 'billing_credit_ledger is append-only'); END;
CREATE TRIGGER billing_credit_ledger_no_delete BEFORE DELETE ON billing_credit_ledger
BEGIN SELECT RAISE(ABORT, 'billing_credit_ledger is append-only'); END;

CREATE TABLE billing_discounts (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    terms      TEXT NOT NULL,
    remaining  INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX billing_discounts_tenant ON billing_discounts (tenant_id);

CREATE TABLE billing_pool_charges (
    allocation_id TEXT NOT NULL,
    position      INTEGER NOT NULL,
    pool          TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    at_us         INTEGER NOT NULL,
    total         TEXT NOT NULL,
    share         TEXT NOT NULL,
    PRIMARY KEY (allocation_id, position)
) WITHOUT ROWID;
CREATE INDEX billing_pool_charges_tenant ON billing_pool_charges (tenant_id, at_us);

CREATE TABLE billing_migration_checkpoint (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    last_tenant_id      TEXT NOT NULL,
    processed           INTEGER NOT NULL,
    currencies_set      INTEGER NOT NULL,
    invoices_backfilled INTEGER NOT NULL,
    started_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    finished_at         TEXT
);
";
