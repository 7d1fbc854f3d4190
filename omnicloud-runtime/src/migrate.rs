//! `omnicloud migrate-currency`: the currency migration of billing accounts, with a progress
//! bar. The rules (batches, checkpoints, resumption) are the core's
//! `billing::migrate_billing_currency`; this module reads the options, the optional currency
//! map and draws the progress.

use std::collections::HashMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use omnicloud_core::billing::{
    Currency, MigrationOptions, MigrationProgress, migrate_billing_currency,
};
use omnicloud_core::clock::{SharedClock, SystemClock};
use omnicloud_core::events::EventBus;
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::tenancy::TenantRegistry;

use crate::demo::DemoError;

/// Options of `omnicloud migrate-currency`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The database file (it must exist).
    #[arg(long)]
    pub db: PathBuf,
    /// Accounts per batch; each batch is one transaction and one checkpoint.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Report what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// A CSV file of `tenant_id,CURRENCY` lines (`#` starts a comment). Accounts not listed get
    /// the tenant registry's billing currency, else `--default-currency`.
    #[arg(long)]
    pub currency_map: Option<PathBuf>,
    /// The currency for accounts neither listed nor registered.
    #[arg(long, default_value = "USD")]
    pub default_currency: String,
    /// When the new currencies take effect (RFC 3339); by default the start of next month.
    #[arg(long)]
    pub effective_from: Option<DateTime<Utc>>,
    /// Never draw the progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs the migration; prints the report to `out`.
pub fn run(args: &MigrateArgs, out: &mut impl Write) -> Result<std::process::ExitCode, DemoError> {
    if !args.db.is_file() {
        return Err(DemoError::Refused(format!(
            "{} does not exist; migrate-currency works on an existing database",
            args.db.display()
        )));
    }
    let default = Currency::new(&args.default_currency).map_err(omnicloud_core::Error::from)?;
    let map = match &args.currency_map {
        Some(path) => read_currency_map(path)?,
        None => HashMap::new(),
    };
    let store = Store::open(&args.db)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bar = ProgressBar::with_draw_target(
        None,
        if args.no_progress {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} migrating accounts [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .map_err(|e| DemoError::Refused(format!("progress template: {e}")))?
        .progress_chars("=> "),
    );
    let registry = TenantRegistry::new(store.clone(), clock.clone(), EventBus::new());
    let mut choose = |id: &TenantId| {
        if let Some(c) = map.get(id.as_str()) {
            return Ok(Some(*c));
        }
        // Registered tenants keep the registry's currency; everyone else gets the default.
        let registered = registry.find(id)?;
        Ok(Some(registered.map_or(default, |t| t.billing_currency)))
    };
    let mut tell = |p: &MigrationProgress| {
        bar.set_length(p.total);
        bar.set_position(p.processed);
        if let Some(last) = &p.last_tenant_id {
            bar.set_message(format!("last {last}"));
        }
        ControlFlow::Continue(())
    };
    let options = MigrationOptions {
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        effective_from: args.effective_from,
    };
    let report = migrate_billing_currency(&store, &clock, options, &mut choose, &mut tell)?;
    bar.finish_and_clear();
    let currencies: Vec<String> = report
        .currencies
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    writeln!(
        out,
        "{}{} accounts in {} batches (resumed after {}); currencies: {}; legacy invoices backfilled: {}; new currencies take effect {}",
        if report.dry_run {
            "dry run, nothing written: would migrate "
        } else {
            "migrated "
        },
        report.processed,
        report.batches,
        report.resumed_after,
        if currencies.is_empty() {
            "none".to_owned()
        } else {
            currencies.join(", ")
        },
        report.invoices_backfilled,
        report.effective_from.to_rfc3339()
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads `tenant_id,CURRENCY` lines; names the line of any error.
fn read_currency_map(path: &Path) -> Result<HashMap<String, Currency>, DemoError> {
    let text = std::fs::read_to_string(path)?;
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |why: String| DemoError::Refused(format!("{} line {}: {why}", path.display(), n + 1));
        let (tenant, code) = line
            .split_once(',')
            .ok_or_else(|| bad(format!("expected tenant_id,CURRENCY, got {line:?}")))?;
        let currency = Currency::new(code.trim()).map_err(|e| bad(e.to_string()))?;
        currency
            .billable_minor_units()
            .map_err(|e| bad(e.to_string()))?;
        map.insert(tenant.trim().to_owned(), currency);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use omnicloud_core::billing::{BillingService, ExchangeRates};

    use super::*;

    fn legacy_db(dir: &Path, accounts: usize) -> PathBuf {
        let db = dir.join("billing.db");
        let store = Store::open(&db).expect("open");
        let billing =
            BillingService::new(store, Arc::new(SystemClock), Arc::new(ExchangeRates::new()));
        let ids: Vec<TenantId> = (0..accounts)
            .map(|i| TenantId::new(format!("t{i:04}")).expect("id"))
            .collect();
        billing.import_legacy_accounts(&ids).expect("import");
        db
    }

    fn args(db: &Path) -> MigrateArgs {
        MigrateArgs {
            db: db.to_path_buf(),
            batch_size: 7,
            dry_run: false,
            currency_map: None,
            default_currency: "USD".into(),
            effective_from: None,
            no_progress: true,
        }
    }

    fn run_text(args: &MigrateArgs) -> Result<String, DemoError> {
        let mut out = Vec::new();
        run(args, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn dry_run_then_real_run_then_nothing_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = legacy_db(dir.path(), 20);
        let map = dir.path().join("map.csv");
        std::fs::write(&map, "# tenant,currency\nt0001, EUR\nt0002,JPY # yen\n").expect("write");
        let mut a = args(&db);
        a.currency_map = Some(map);
        a.dry_run = true;
        let text = run_text(&a).expect("dry run");
        assert!(
            text.starts_with("dry run, nothing written: would migrate 20 accounts in 3 batches"),
            "{text}"
        );
        assert!(text.contains("EUR 1, JPY 1, USD 18"), "{text}");
        a.dry_run = false;
        let text = run_text(&a).expect("run");
        assert!(
            text.starts_with("migrated 20 accounts in 3 batches (resumed after 0)"),
            "{text}"
        );
        let text = run_text(&a).expect("rerun");
        assert!(
            text.starts_with("migrated 0 accounts in 0 batches"),
            "{text}"
        );
    }

    #[test]
    fn bad_inputs_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = args(&dir.path().join("absent.db"));
        assert!(matches!(run_text(&missing), Err(DemoError::Refused(_))));
        assert!(!dir.path().join("absent.db").exists());
        let db = legacy_db(dir.path(), 3);
        let map = dir.path().join("map.csv");
        for (content, expected) in [
            ("t0001 EUR\n", "line 1: expected tenant_id,CURRENCY"),
            ("t0001,EUR\nt0002,EURO\n", "line 2: unknown currency code"),
            (
                "t0001,XAU\n",
                "line 1: currency XAU cannot be used for billing",
            ),
        ] {
            std::fs::write(&map, content).expect("write");
            let mut a = args(&db);
            a.currency_map = Some(map.clone());
            let err = run_text(&a).expect_err(content);
            assert!(err.to_string().contains(expected), "{err}");
        }
        let mut a = args(&db);
        a.default_currency = "usd".into();
        assert!(run_text(&a).is_err());
        a.default_currency = "USD".into();
        a.batch_size = 0;
        assert!(run_text(&a).is_err());
        // Nothing was migrated by the refused runs.
        a.batch_size = 10;
        let text = run_text(&a).expect("run");
        assert!(text.starts_with("migrated 3 accounts"), "{text}");
    }
}
