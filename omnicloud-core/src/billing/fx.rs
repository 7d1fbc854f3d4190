//! Exchange rates: an append-only history keyed by (base, quote, as of, source).
//!
//! A lookup at an instant takes the latest rate at or before it; a missing pair is derived
//! from its inverse, or triangulated through USD, then EUR. Rates keep full precision (28
//! significant digits); conversions are not rounded (round the result explicitly). Nothing is
//! ever overwritten: a second, different rate for the same key is refused.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Currency, Money};
use crate::error::{MoneyError, StoreError};
use crate::store::{Store, format_timestamp};

/// The rate history table (migration 4); triggers keep it append-only.
pub(crate) const SCHEMA: &str = "
CREATE TABLE fx_rates (
    base   TEXT NOT NULL,
    quote  TEXT NOT NULL,
    as_of  TEXT NOT NULL,
    source TEXT NOT NULL,
    rate   TEXT NOT NULL,
    PRIMARY KEY (base, quote, as_of, source)
);
CREATE TRIGGER fx_rates_no_update BEFORE UPDATE ON fx_rates
BEGIN SELECT RAISE(ABORT, 'fx_rates is append-only'); END;
CREATE TRIGGER fx_rates_no_delete BEFORE DELETE ON fx_rates
BEGIN SELECT RAISE(ABORT, 'fx_rates is append-only'); END;
";

/// A rate: one `base` is worth `rate` of `quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRate {
    /// The currency converted from.
    pub base: Currency,
    /// The currency converted to.
    pub quote: Currency,
    /// Units of `quote` per unit of `base`.
    pub rate: Decimal,
    /// When the rate was published (for derived rates: the older of its parts).
    pub as_of: DateTime<Utc>,
    /// Who published it (derived rates name their path, such as `ECB inverse` or
    /// `ECB via USD`).
    pub source: String,
}

type Key = (Currency, Currency);

/// One pair's rates by (as of, source).
type Series = BTreeMap<(DateTime<Utc>, String), Decimal>;

/// The rate history, in memory and, when given a store, persisted in it.
#[derive(Debug, Default)]
pub struct ExchangeRates {
    history: RwLock<BTreeMap<Key, Series>>,
    store: Option<Store>,
    /// The last `fx_rates` row loaded from the store.
    seen_rowid: Mutex<i64>,
}

/// Pivot currencies for triangulation, in order of preference.
const PIVOTS: [&str; 2] = ["USD", "EUR"];

impl ExchangeRates {
    /// An empty history kept in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The history kept in `store` (loaded now; every new rate is written there first).
    pub fn persistent(store: Store) -> Result<Self, crate::Error> {
        let rates = Self {
            history: RwLock::default(),
            store: Some(store),
            seen_rowid: Mutex::new(0),
        };
        rates.refresh()?;
        Ok(rates)
    }

    /// Loads rates other connections or processes have added to the store since the last
    /// load (a history in memory only has nothing to load). Services that convert money call
    /// it before each run, so a long-lived service sees rates published after it started.
    pub fn refresh(&self) -> Result<(), crate::Error> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut seen = self
            .seen_rowid
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        type Row = (i64, String, String, String, String, String);
        let rows: Vec<Row> = store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT rowid, base, quote, as_of, source, rate FROM fx_rates
                 WHERE rowid > ?1 ORDER BY rowid",
            )?;
            stmt.query_map([*seen], |r| r.try_into())?.collect()
        })?;
        let mut parsed = Vec::with_capacity(rows.len());
        for (rowid, base, quote, as_of, source, rate) in rows {
            let decode = |column, reason: String| StoreError::Decode {
                path: store.label().to_path_buf(),
                table: "fx_rates",
                column,
                reason,
            };
            let base = Currency::new(&base).map_err(|e| decode("base", e.to_string()))?;
            let quote = Currency::new(&quote).map_err(|e| decode("quote", e.to_string()))?;
            let as_of = store.decode_time("fx_rates", "as_of", &as_of)?;
            let rate = rate
                .parse::<Decimal>()
                .map_err(|e| decode("rate", e.to_string()))?;
            parsed.push((rowid, (base, quote), (as_of, source), rate));
        }
        let mut history = self.history.write().unwrap_or_else(PoisonError::into_inner);
        for (rowid, key, when, rate) in parsed {
            history.entry(key).or_default().entry(when).or_insert(rate);
            *seen = rowid;
        }
        Ok(())
    }

    /// Records a rate. Refused: a non-positive rate, a currency against itself, an empty
    /// source, and a different rate for a (base, quote, as of, source) already recorded (the
    /// same rate again is accepted and changes nothing).
    pub fn set_rate(
        &self,
        base: Currency,
        quote: Currency,
        rate: Decimal,
        as_of: DateTime<Utc>,
        source: &str,
    ) -> Result<(), crate::Error> {
        let invalid =
            |reason: String| -> crate::Error { MoneyError::InvalidRate { reason }.into() };
        if base == quote {
            return Err(invalid(format!("{base} against itself")));
        }
        if rate <= Decimal::ZERO {
            return Err(invalid(format!(
                "{base}/{quote} rate {rate} is not positive"
            )));
        }
        if source.trim().is_empty() {
            return Err(invalid("the source must be named".into()));
        }
        let mut history = self.history.write().unwrap_or_else(PoisonError::into_inner);
        let series = history.entry((base, quote)).or_default();
        match series.get(&(as_of, source.to_owned())) {
            Some(existing) if *existing != rate => Err(invalid(format!(
                "{base}/{quote} from {source} as of {as_of} is already {existing}; history is append-only"
            ))),
            Some(_) => Ok(()),
            None => {
                // Durable first, then visible.
                if let Some(store) = &self.store {
                    store.write(|tx| -> Result<(), crate::Error> {
                        tx.execute(
                            "INSERT INTO fx_rates (base, quote, as_of, source, rate)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![
                                base.code(),
                                quote.code(),
                                format_timestamp(as_of),
                                source,
                                rate.to_string()
                            ],
                        )
                        .map_err(|e| store.sqlite_error(e))?;
                        Ok(())
                    })?;
                }
                series.insert((as_of, source.to_owned()), rate);
                Ok(())
            }
        }
    }

    /// The latest recorded rate for exactly this pair at or before `at` (ties on time go to the
    /// source that sorts first).
    fn recorded(&self, base: Currency, quote: Currency, at: DateTime<Utc>) -> Option<ExchangeRate> {
        let history = self.history.read().unwrap_or_else(PoisonError::into_inner);
        let series = history.get(&(base, quote))?;
        let latest = series
            .range(..=(at, String::from("\u{10FFFF}")))
            .next_back()?
            .0
            .0;
        let ((as_of, source), rate) = series.range((latest, String::new())..).next()?;
        Some(ExchangeRate {
            base,
            quote,
            rate: *rate,
            as_of: *as_of,
            source: source.clone(),
        })
    }

    /// A recorded rate for the pair or its inverse, whichever is more recent.
    fn direct(&self, base: Currency, quote: Currency, at: DateTime<Utc>) -> Option<ExchangeRate> {
        let forward = self.recorded(base, quote, at);
        let inverse = self.recorded(quote, base, at).and_then(|r| {
            Decimal::ONE.checked_div(r.rate).map(|rate| ExchangeRate {
                base,
                quote,
                rate,
                as_of: r.as_of,
                source: format!("{} inverse", r.source),
            })
        });
        match (forward, inverse) {
            (Some(f), Some(i)) => Some(if i.as_of > f.as_of { i } else { f }),
            (f, i) => f.or(i),
        }
    }

    /// The rate from `base` to `quote` at `at`: recorded, inverted, or triangulated through
    /// USD then EUR; [`MoneyError::ExchangeRateNotFound`] otherwise.
    pub fn rate(
        &self,
        base: Currency,
        quote: Currency,
        at: DateTime<Utc>,
    ) -> Result<ExchangeRate, MoneyError> {
        if base == quote {
            return Ok(ExchangeRate {
                base,
                quote,
                rate: Decimal::ONE,
                as_of: at,
                source: "identity".into(),
            });
        }
        if let Some(r) = self.direct(base, quote, at) {
            return Ok(r);
        }
        for pivot in PIVOTS {
            let Ok(pivot) = Currency::new(pivot) else {
                continue;
            };
            if pivot == base || pivot == quote {
                continue;
            }
            if let (Some(a), Some(b)) =
                (self.direct(base, pivot, at), self.direct(pivot, quote, at))
                && let Some(rate) = a.rate.checked_mul(b.rate)
            {
                return Ok(ExchangeRate {
                    base,
                    quote,
                    rate,
                    as_of: a.as_of.min(b.as_of),
                    source: format!("{} / {} via {pivot}", a.source, b.source),
                });
            }
        }
        Err(MoneyError::ExchangeRateNotFound {
            base: base.code().to_owned(),
            quote: quote.code().to_owned(),
            at: at.to_rfc3339(),
        })
    }

    /// `money` in `to` at `at`, unrounded, with the rate used.
    pub fn convert(
        &self,
        money: &Money,
        to: Currency,
        at: DateTime<Utc>,
    ) -> Result<(Money, ExchangeRate), MoneyError> {
        let rate = self.rate(money.currency(), to, at)?;
        let converted = money.checked_mul(rate.rate)?;
        Ok((Money::new(converted.amount(), to), rate))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn c(code: &str) -> Currency {
        Currency::new(code).expect("currency")
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn t(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-01-{day:02}T12:00:00Z"))
            .expect("time")
            .with_timezone(&Utc)
    }

    fn rates() -> ExchangeRates {
        let r = ExchangeRates::new();
        r.set_rate(c("EUR"), c("USD"), d("1.10"), t(1), "ECB")
            .expect("set");
        r.set_rate(c("EUR"), c("USD"), d("1.12"), t(5), "ECB")
            .expect("set");
        r.set_rate(c("USD"), c("JPY"), d("150.25"), t(2), "BOJ")
            .expect("set");
        r
    }

    #[test]
    fn lookup_takes_the_latest_rate_at_or_before_the_moment() {
        let r = rates();
        assert_eq!(
            r.rate(c("EUR"), c("USD"), t(1)).expect("rate").rate,
            d("1.10")
        );
        assert_eq!(
            r.rate(c("EUR"), c("USD"), t(4)).expect("rate").rate,
            d("1.10")
        );
        let latest = r.rate(c("EUR"), c("USD"), t(9)).expect("rate");
        assert_eq!(
            (latest.rate, latest.as_of, latest.source.as_str()),
            (d("1.12"), t(5), "ECB")
        );
        assert!(matches!(
            r.rate(c("EUR"), c("USD"), t(1) - chrono::TimeDelta::seconds(1)),
            Err(MoneyError::ExchangeRateNotFound { .. })
        ));
    }

    #[test]
    fn inverse_and_triangulated_rates() {
        let r = rates();
        let inverse = r.rate(c("USD"), c("EUR"), t(9)).expect("inverse");
        assert_eq!(inverse.rate, Decimal::ONE / d("1.12"));
        assert_eq!(inverse.source, "ECB inverse");
        let tri = r.rate(c("EUR"), c("JPY"), t(9)).expect("triangulated");
        assert_eq!(tri.rate, d("1.12") * d("150.25"));
        assert_eq!(tri.as_of, t(2));
        assert_eq!(tri.source, "ECB / BOJ via USD");
        assert_eq!(
            r.rate(c("GBP"), c("GBP"), t(1)).expect("identity").rate,
            Decimal::ONE
        );
        let err = r.rate(c("GBP"), c("CHF"), t(9)).expect_err("no path");
        assert_eq!(
            err.to_string(),
            "no exchange rate from GBP to CHF at 2026-01-09T12:00:00+00:00"
        );
    }

    #[test]
    fn history_is_append_only_and_validated() {
        let r = rates();
        r.set_rate(c("EUR"), c("USD"), d("1.10"), t(1), "ECB")
            .expect("same again is fine");
        assert!(matches!(
            r.set_rate(c("EUR"), c("USD"), d("1.11"), t(1), "ECB"),
            Err(crate::Error::Money(MoneyError::InvalidRate { .. }))
        ));
        r.set_rate(c("EUR"), c("USD"), d("1.11"), t(1), "Fed")
            .expect("another source");
        assert_eq!(
            r.rate(c("EUR"), c("USD"), t(1)).expect("rate").source,
            "ECB",
            "ties go to the first source"
        );
        for (base, quote, rate, source) in [
            ("EUR", "EUR", "1", "x"),
            ("EUR", "USD", "0", "x"),
            ("EUR", "USD", "-1", "x"),
            ("EUR", "USD", "1", " "),
        ] {
            assert!(matches!(
                r.set_rate(c(base), c(quote), d(rate), t(1), source),
                Err(crate::Error::Money(MoneyError::InvalidRate { .. }))
            ));
        }
    }

    #[test]
    fn a_persistent_history_survives_reopening_and_stays_append_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fx.db");
        {
            let r = ExchangeRates::persistent(Store::open(&path).expect("store")).expect("rates");
            r.set_rate(c("EUR"), c("USD"), d("1.0834567890123"), t(1), "ECB")
                .expect("set");
        }
        let r = ExchangeRates::persistent(Store::open(&path).expect("store")).expect("reload");
        assert_eq!(
            r.rate(c("EUR"), c("USD"), t(2)).expect("rate").rate,
            d("1.0834567890123")
        );
        assert!(r.set_rate(c("EUR"), c("USD"), d("2"), t(1), "ECB").is_err());
        let store = Store::open(&path).expect("store");
        let edit = store.read(|conn| conn.execute("UPDATE fx_rates SET rate = '9'", []));
        assert!(edit.is_err(), "the table refuses SQL edits");
    }

    #[test]
    fn conversion_keeps_precision() {
        let r = rates();
        let (jpy, rate) = r
            .convert(&Money::new(d("10.00"), c("USD")), c("JPY"), t(3))
            .expect("convert");
        assert_eq!(jpy, Money::new(d("1502.5000"), c("JPY")));
        assert_eq!(rate.source, "BOJ");
        assert_eq!(jpy.rounded().expect("round").amount(), d("1503"));
    }
}
