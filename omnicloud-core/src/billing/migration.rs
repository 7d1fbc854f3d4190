//! The currency migration: from the legacy USD-only billing to per-tenant billing currencies.
//!
//! Legacy accounts are processed in id order, in batches. One batch is one transaction: each
//! account gets its billing currency (effective from the next billing period, so a period in
//! progress finishes in USD), its legacy invoices are copied into the invoice table as legacy
//! USD invoices (the legacy rows themselves are never touched), and the checkpoint moves past
//! the batch. Killed at any point, a run loses at most the batch in flight, which rolls back;
//! the next run resumes after the checkpoint. An account is marked when it is migrated, so it
//! is never processed twice, and a finished pass is followed by a new one that picks up
//! accounts imported since, so none is skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::Currency;
use super::service::{
    InvoiceRow, LegacyRow, insert_change, legacy_row, legacy_to_invoice, next_period_start,
};
use crate::clock::SharedClock;
use crate::error::{BillingError, Error, Result};
use crate::ids::TenantId;
use crate::store::{Store, format_timestamp};

/// How to run the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationOptions {
    /// Accounts per batch (and per checkpoint); at least 1.
    pub batch_size: usize,
    /// Report what would change without writing anything (not even the checkpoint).
    pub dry_run: bool,
    /// When new currencies take effect; by default the start of the next calendar month.
    pub effective_from: Option<DateTime<Utc>>,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            dry_run: false,
            effective_from: None,
        }
    }
}

/// Progress after a batch. With several runs at once, each counts the accounts it migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationProgress {
    /// Accounts processed in this pass so far (earlier runs included).
    pub processed: u64,
    /// Accounts this pass will process in all.
    pub total: u64,
    /// Batches committed by this run.
    pub batches: u64,
    /// The last account processed.
    pub last_tenant_id: Option<String>,
}

/// What a run did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Accounts migrated by this run (a dry run: accounts it would migrate). Accounts another
    /// run, working at the same time, migrated first are not counted.
    pub processed: u64,
    /// Accounts processed in this pass by earlier, interrupted runs.
    pub resumed_after: u64,
    /// Accounts given a currency by this run, by currency (accounts that already had one,
    /// set through the billing service, keep it and are not counted).
    pub currencies: BTreeMap<String, u64>,
    /// Legacy invoices copied into the invoice table (this run).
    pub invoices_backfilled: u64,
    /// Batches committed (this run).
    pub batches: u64,
    /// When the new currencies take effect.
    pub effective_from: DateTime<Utc>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// Chooses an account's billing currency; `None` falls back to the tenant registry's
/// `billing_currency`, then USD.
pub type CurrencyFor<'a> = dyn FnMut(&TenantId) -> Result<Option<Currency>> + 'a;

/// Told after every committed batch; `Break(reason)` stops the run (the work so far is kept).
pub type ProgressFn<'a> = dyn FnMut(&MigrationProgress) -> ControlFlow<String> + 'a;

/// Migrates legacy accounts to billing currencies; see the module documentation.
pub fn migrate_billing_currency(
    store: &Store,
    clock: &SharedClock,
    options: MigrationOptions,
    currency_for: &mut CurrencyFor<'_>,
    progress: &mut ProgressFn<'_>,
) -> Result<MigrationReport> {
    if options.batch_size == 0 {
        return Err(BillingError::Invalid {
            what: "migration",
            reason: "batch_size must be at least 1".into(),
        }
        .into());
    }
    let sql = |e| Error::Store(store.sqlite_error(e));
    let now = clock.now();
    if let Some(at) = options.effective_from
        && at < now
    {
        return Err(BillingError::Invalid {
            what: "migration",
            reason: format!(
                "effective_from {at} is in the past (now is {now}); a period in progress must finish in its currency"
            ),
        }
        .into());
    }
    let effective_from = options
        .effective_from
        .unwrap_or_else(|| next_period_start(now));
    let effective_text = format_timestamp(effective_from);
    let checkpoint = store.read(read_checkpoint)?;
    // A finished (or never started) pass begins a new one from the first account.
    let (mut last, resumed_after) = match &checkpoint {
        Some(cp) if cp.finished_at.is_none() => (cp.last_tenant_id.clone(), cp.processed),
        _ => (String::new(), 0),
    };
    let remaining: u64 = store.read(|c| {
        c.query_row(
            "SELECT count(*) FROM billing_accounts
             WHERE legacy = 1 AND migrated_at IS NULL AND tenant_id > ?1",
            [&last],
            |r| r.get(0),
        )
    })?;
    let total = resumed_after + remaining;
    let mut report = MigrationReport {
        processed: 0,
        resumed_after,
        currencies: BTreeMap::new(),
        invoices_backfilled: 0,
        batches: 0,
        effective_from,
        dry_run: options.dry_run,
    };
    let limit = i64::try_from(options.batch_size).unwrap_or(i64::MAX);
    // Another run working at the same time can leave accounts behind the checkpoint (its batch
    // in flight when it was killed): once at the end, look again from the first account.
    let mut wrapped = last.is_empty();
    loop {
        let batch: Vec<String> = store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT tenant_id FROM billing_accounts
                 WHERE legacy = 1 AND migrated_at IS NULL AND tenant_id > ?1
                 ORDER BY tenant_id LIMIT ?2",
            )?;
            stmt.query_map(params![last, limit], |r| r.get(0))?
                .collect()
        })?;
        let Some(batch_last) = batch.last().cloned() else {
            if !wrapped && !options.dry_run && store.read(any_unmigrated)? {
                wrapped = true;
                last.clear();
                continue;
            }
            break;
        };
        let first = batch.first().cloned().unwrap_or_default();
        // Choose currencies before the write lock is taken (the chooser may be slow).
        let registered =
            store.read(|c| crate::tenancy::billing_currencies_between(c, &first, &batch_last))?;
        let mut chosen = Vec::with_capacity(batch.len());
        for tenant in &batch {
            let id = TenantId::new(tenant.clone())?;
            let currency = match currency_for(&id)? {
                Some(c) => c,
                None => registered
                    .get(tenant)
                    .copied()
                    .unwrap_or_else(Currency::usd),
            };
            currency.billable_minor_units()?;
            chosen.push((tenant.as_str(), currency));
        }
        let (migrated, backfilled, set) = if options.dry_run {
            let facts = store.read(|c| BatchFacts::read(c, &first, &batch_last))?;
            let set = chosen
                .iter()
                .filter(|(t, _)| !facts.with_currency.contains(*t))
                .map(|(_, c)| *c)
                .collect::<Vec<_>>();
            let copied = facts.legacy.values().map(Vec::len).sum::<usize>() as u64;
            (batch.len() as u64, copied, set)
        } else {
            store.write(|tx| -> Result<(u64, u64, Vec<Currency>)> {
                // Re-read under the write lock: a concurrent run may have done some.
                let mut facts = BatchFacts::read(tx, &first, &batch_last).map_err(sql)?;
                let (mut migrated, mut copied) = (0, 0);
                let mut set = Vec::new();
                let stamp = format_timestamp(now);
                for (tenant, currency) in &chosen {
                    if !facts.pending.contains(*tenant) {
                        continue;
                    }
                    if !facts.with_currency.contains(*tenant) {
                        insert_change(tx, tenant, &effective_text, *currency, now).map_err(sql)?;
                        set.push(*currency);
                    }
                    for row in facts.legacy.remove(*tenant).unwrap_or_default() {
                        copy_legacy_invoice(store, tx, row)?;
                        copied += 1;
                    }
                    tx.prepare_cached(
                        "UPDATE billing_accounts SET migrated_at = ?2 WHERE tenant_id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![tenant, stamp]))
                    .map_err(sql)?;
                    migrated += 1;
                }
                if migrated > 0 {
                    let counts = (migrated, set.len() as u64, copied);
                    write_checkpoint(tx, &batch_last, counts, now).map_err(sql)?;
                }
                Ok((migrated, copied, set))
            })?
        };
        report.processed += migrated;
        report.invoices_backfilled += backfilled;
        report.batches += 1;
        for currency in &set {
            *report
                .currencies
                .entry(currency.code().to_owned())
                .or_default() += 1;
        }
        last = batch_last;
        let step = MigrationProgress {
            processed: resumed_after + report.processed,
            total,
            batches: report.batches,
            last_tenant_id: Some(last.clone()),
        };
        if let ControlFlow::Break(reason) = progress(&step) {
            return Err(BillingError::MigrationStopped {
                processed: step.processed,
                reason,
            }
            .into());
        }
    }
    if !options.dry_run {
        store.write(|tx| -> Result<()> {
            // Finished only when no account is left (a concurrent run may still be working).
            tx.execute(
                "UPDATE billing_migration_checkpoint SET finished_at = ?1, updated_at = ?1
                 WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM billing_accounts
                                              WHERE legacy = 1 AND migrated_at IS NULL)",
                [format_timestamp(now)],
            )
            .map_err(sql)?;
            Ok(())
        })?;
    }
    Ok(report)
}

/// The checkpoint of the current or last pass.
#[derive(Debug, Clone)]
struct Checkpoint {
    last_tenant_id: String,
    processed: u64,
    finished_at: Option<String>,
}

fn read_checkpoint(conn: &Connection) -> rusqlite::Result<Option<Checkpoint>> {
    conn.query_row(
        "SELECT last_tenant_id, processed, finished_at FROM billing_migration_checkpoint WHERE id = 1",
        [],
        |r| {
            Ok(Checkpoint {
                last_tenant_id: r.get(0)?,
                processed: r.get(1)?,
                finished_at: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Adds a batch's counts (accounts migrated, currencies set, legacy invoices copied) to the
/// checkpoint and moves it past `last`; after a finished pass, starts a new one.
fn write_checkpoint(
    tx: &Connection,
    last: &str,
    (migrated, set, copied): (u64, u64, u64),
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let at = format_timestamp(now);
    tx.execute(
        "INSERT INTO billing_migration_checkpoint
         (id, last_tenant_id, processed, currencies_set, invoices_backfilled, started_at, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (id) DO UPDATE SET
             last_tenant_id = CASE WHEN finished_at IS NULL
                 THEN max(last_tenant_id, excluded.last_tenant_id) ELSE excluded.last_tenant_id END,
             processed = CASE WHEN finished_at IS NULL
                 THEN processed + excluded.processed ELSE excluded.processed END,
             currencies_set = CASE WHEN finished_at IS NULL
                 THEN currencies_set + excluded.currencies_set ELSE excluded.currencies_set END,
             invoices_backfilled = CASE WHEN finished_at IS NULL
                 THEN invoices_backfilled + excluded.invoices_backfilled
                 ELSE excluded.invoices_backfilled END,
             started_at = CASE WHEN finished_at IS NULL THEN started_at ELSE excluded.started_at END,
             updated_at = excluded.updated_at,
             finished_at = NULL",
        params![last, migrated, set, copied, at],
    )
}

fn any_unmigrated(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM billing_accounts WHERE legacy = 1 AND migrated_at IS NULL LIMIT 1",
    )?
    .exists([])
}

/// What one batch's id range `[first, last]` holds, read with one query each.
struct BatchFacts {
    /// Legacy accounts not migrated yet.
    pending: HashSet<String>,
    /// Accounts that already have a currency (set through the billing service).
    with_currency: HashSet<String>,
    /// Legacy invoices not copied yet, by tenant.
    legacy: HashMap<String, Vec<LegacyRow>>,
}

impl BatchFacts {
    fn read(conn: &Connection, first: &str, last: &str) -> rusqlite::Result<Self> {
        let ids = |sql: &str| -> rusqlite::Result<HashSet<String>> {
            conn.prepare_cached(sql)?
                .query_map([first, last], |r| r.get(0))?
                .collect()
        };
        let pending = ids("SELECT tenant_id FROM billing_accounts
             WHERE legacy = 1 AND migrated_at IS NULL AND tenant_id BETWEEN ?1 AND ?2")?;
        let with_currency = ids("SELECT DISTINCT tenant_id FROM billing_currency_changes
             WHERE tenant_id BETWEEN ?1 AND ?2")?;
        let mut legacy: HashMap<String, Vec<LegacyRow>> = HashMap::new();
        let mut stmt = conn.prepare_cached(
            "SELECT l.id, l.tenant_id, l.amount_usd, l.period_start, l.period_end, l.issued_at
             FROM billing_legacy_invoices l WHERE l.tenant_id BETWEEN ?1 AND ?2
             AND NOT EXISTS (SELECT 1 FROM billing_invoices i WHERE i.id = l.id)
             ORDER BY l.tenant_id, l.issued_at, l.id",
        )?;
        for row in stmt.query_map([first, last], legacy_row)? {
            let row = row?;
            legacy.entry(row.1.clone()).or_default().push(row);
        }
        Ok(Self {
            pending,
            with_currency,
            legacy,
        })
    }
}

/// Copies a legacy invoice into the invoice table as a legacy USD invoice.
fn copy_legacy_invoice(store: &Store, tx: &Connection, row: LegacyRow) -> Result<()> {
    let amount_text = row.2.clone();
    let (start, end) = (row.3.clone(), row.4.clone());
    let invoice = legacy_to_invoice(store, row)?;
    // The legacy texts go into the row exactly as the legacy system wrote them.
    let mut row = InvoiceRow::of(&invoice)?;
    row.total = amount_text.clone();
    row.total_usd = amount_text;
    row.period_start = Some(start);
    row.period_end = Some(end);
    row.insert(tx)
        .map_err(|e| Error::Store(store.sqlite_error(e)))
}
