//! Metering: usage records, billing periods and per-second proration.
//!
//! A usage record spreads its quantity evenly over its interval; a billing period takes the
//! share of the quantity that falls inside it, to the microsecond (so whole-second inputs
//! prorate exactly to the second). Nothing here prices or stores anything.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{BillingError, MoneyError, Result};
use crate::ids::{IdKind, TenantId, validate_id};

/// Microseconds since the Unix epoch: how the store keeps usage instants.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Decimal places of a record's cumulative share at a period edge (see [`Period::prorate`]).
pub const PRORATION_DP: u32 = 18;

/// `quantity × elapsed / duration`, rounded half away from zero to [`PRORATION_DP`] places;
/// exactly `quantity` at the end and zero at the start.
fn cumulative_share(quantity: Decimal, elapsed: i64, duration: i64) -> Result<Decimal, MoneyError> {
    if elapsed <= 0 {
        return Ok(Decimal::ZERO);
    }
    if elapsed >= duration {
        return Ok(quantity);
    }
    let (elapsed, duration) = (Decimal::from(elapsed), Decimal::from(duration));
    // Multiply first for exactness; a quantity too large for that takes the ratio first.
    let share = quantity
        .checked_mul(elapsed)
        .and_then(|q| q.checked_div(duration))
        .or_else(|| {
            elapsed
                .checked_div(duration)
                .and_then(|r| quantity.checked_mul(r))
        })
        .ok_or(MoneyError::Overflow {
            operation: "prorate",
        })?;
    Ok(share.round_dp_with_strategy(
        PRORATION_DP,
        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
    ))
}

/// A half-open billing period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    /// First instant of the period.
    pub start: DateTime<Utc>,
    /// First instant after the period.
    pub end: DateTime<Utc>,
}

impl Period {
    /// A period; `start` must be before `end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self> {
        if start >= end {
            return Err(BillingError::Invalid {
                what: "period",
                reason: format!("start {start} is not before end {end}"),
            }
            .into());
        }
        Ok(Self { start, end })
    }

    /// The share of `quantity`, spread evenly over `[start_us, end_us)`, that falls inside the
    /// period. An instantaneous record (`start_us == end_us`) counts whole in the period that
    /// contains its instant.
    ///
    /// A partial share is the difference of the record's cumulative share at the period's two
    /// edges, each rounded to [`PRORATION_DP`] decimal places, so the shares a record gets in
    /// adjacent periods always add up to exactly its quantity.
    pub(crate) fn prorate(
        &self,
        quantity: Decimal,
        start_us: i64,
        end_us: i64,
    ) -> Result<Decimal, MoneyError> {
        let (ps, pe) = (micros(self.start), micros(self.end));
        if start_us == end_us {
            return Ok(if ps <= start_us && start_us < pe {
                quantity
            } else {
                Decimal::ZERO
            });
        }
        let (lo, hi) = (start_us.max(ps), end_us.min(pe));
        if hi <= lo {
            return Ok(Decimal::ZERO);
        }
        if lo == start_us && hi == end_us {
            return Ok(quantity);
        }
        let duration = end_us - start_us;
        let upto = |t: i64| cumulative_share(quantity, t - start_us, duration);
        upto(hi)?
            .checked_sub(upto(lo)?)
            .ok_or(MoneyError::Overflow {
                operation: "prorate",
            })
    }

    /// Whether a record over `[start_us, end_us)` has any share in the period.
    pub(crate) fn touches(&self, start_us: i64, end_us: i64) -> bool {
        let (ps, pe) = (micros(self.start), micros(self.end));
        if start_us == end_us {
            ps <= start_us && start_us < pe
        } else {
            start_us < pe && end_us > ps
        }
    }
}

/// Metered usage of one tenant: `quantity` of `meter` in `region` over `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Whose usage it is.
    pub tenant_id: TenantId,
    /// What was used (`compute.vcpu_hours`, `storage.gb_months`…).
    pub meter: String,
    /// How much; never negative.
    pub quantity: Decimal,
    /// Where it ran.
    pub region: String,
    /// When it started.
    pub start: DateTime<Utc>,
    /// When it ended (equal to `start` for an instantaneous event).
    pub end: DateTime<Utc>,
    /// The resource that used it, if known.
    pub resource_id: Option<String>,
}

impl UsageRecord {
    /// A validated record: ids well formed, quantity not negative, `start <= end`.
    pub fn new(
        tenant_id: TenantId,
        meter: impl Into<String>,
        quantity: Decimal,
        region: impl Into<String>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        resource_id: Option<String>,
    ) -> Result<Self> {
        let (meter, region) = (meter.into(), region.into());
        validate_id(IdKind::Meter, &meter)?;
        validate_id(IdKind::Region, &region)?;
        if let Some(resource) = &resource_id {
            validate_id(IdKind::Resource, resource)?;
        }
        let invalid = |reason: String| BillingError::Invalid {
            what: "usage record",
            reason,
        };
        if quantity.is_sign_negative() && !quantity.is_zero() {
            return Err(invalid(format!("quantity {quantity} is negative")).into());
        }
        if start > end {
            return Err(invalid(format!("start {start} is after end {end}")).into());
        }
        Ok(Self {
            tenant_id,
            meter,
            quantity,
            region,
            start,
            end,
            resource_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn january() -> Period {
        Period::new(t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z")).expect("period")
    }

    #[test]
    fn proration_is_per_second() {
        let p = january();
        // 10 units over 100 s, 40 s of them before the period starts.
        let start = micros(t("2025-12-31T23:59:20Z"));
        let end = micros(t("2026-01-01T00:01:00Z"));
        assert_eq!(p.prorate(d("10"), start, end).expect("prorate"), d("6"));
        // Fully inside: untouched, same scale.
        let inside = (
            micros(t("2026-01-05T00:00:00Z")),
            micros(t("2026-01-06T00:00:00Z")),
        );
        assert_eq!(
            p.prorate(d("2.50"), inside.0, inside.1)
                .expect("prorate")
                .to_string(),
            "2.50"
        );
        // Outside, and touching only the end boundary (half-open).
        let after = micros(t("2026-02-01T00:00:00Z"));
        assert_eq!(
            p.prorate(d("5"), after, after + 1_000_000).expect("p"),
            d("0")
        );
        assert!(!p.touches(after, after + 1));
        // Instantaneous events belong to the period containing them.
        assert_eq!(p.prorate(d("3"), inside.0, inside.0).expect("p"), d("3"));
        assert_eq!(p.prorate(d("3"), after, after).expect("p"), d("0"));
    }

    #[test]
    fn a_record_spanning_two_periods_is_split_exactly() {
        let jan = january();
        let feb = Period::new(t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z")).expect("p");
        let start = micros(t("2026-01-31T16:00:00Z"));
        let end = micros(t("2026-02-01T08:00:00Z"));
        let q = d("7");
        let a = jan.prorate(q, start, end).expect("jan");
        let b = feb.prorate(q, start, end).expect("feb");
        assert_eq!(a, d("3.5"));
        assert_eq!(a + b, q);
    }

    #[test]
    fn indivisible_shares_still_add_up_exactly() {
        let feb = Period::new(t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z")).expect("p");
        let mar = Period::new(t("2026-03-01T00:00:00Z"), t("2026-04-01T00:00:00Z")).expect("p");
        let start = micros(t("2026-02-28T23:59:31Z"));
        let end = micros(t("2026-03-01T00:00:01Z"));
        let (a, b) = (
            feb.prorate(d("10"), start, end).expect("feb"),
            mar.prorate(d("10"), start, end).expect("mar"),
        );
        assert_eq!(b, d("0.333333333333333333"));
        assert_eq!(a + b, d("10"));
        // Three periods: the middle one is a difference of two rounded edges; the sum is exact.
        let thirds: Vec<Decimal> = [("00", "10"), ("10", "20"), ("20", "30")]
            .iter()
            .map(|(a, b)| {
                Period::new(
                    t(&format!("2026-01-01T00:00:{a}Z")),
                    t(&format!("2026-01-01T00:00:{b}Z")),
                )
                .expect("p")
                .prorate(
                    d("1"),
                    micros(t("2026-01-01T00:00:00Z")),
                    micros(t("2026-01-01T00:00:30Z")),
                )
                .expect("share")
            })
            .collect();
        assert_eq!(thirds.iter().sum::<Decimal>(), d("1"));
    }

    #[test]
    fn huge_quantities_prorate_without_overflow() {
        let p = january();
        let start = micros(t("2025-12-15T00:00:00Z"));
        let end = micros(t("2026-01-15T00:00:00Z"));
        let q = d("100000000000000000000");
        let share = p.prorate(q, start, end).expect("prorate");
        assert_eq!(share, d("45161290322580645161.29032258"));
    }

    #[test]
    fn bad_records_and_periods_are_refused() {
        let tenant = TenantId::new("acme").expect("id");
        let at = t("2026-01-01T00:00:00Z");
        let make = |meter: &str, q: &str, region: &str, end: DateTime<Utc>| {
            UsageRecord::new(tenant.clone(), meter, d(q), region, at, end, None)
        };
        assert!(make("cpu", "1", "eu-west-1", at).is_ok());
        assert!(make("cpu", "-1", "eu-west-1", at).is_err());
        assert!(make("", "1", "eu-west-1", at).is_err());
        assert!(make("cpu", "1", "eu west", at).is_err());
        assert!(make("cpu", "1", "eu-west-1", t("2025-01-01T00:00:00Z")).is_err());
        assert!(Period::new(at, at).is_err());
    }
}
