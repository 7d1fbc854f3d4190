//! Exact money: a decimal amount in one currency.

use std::fmt;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::Currency;
use crate::error::MoneyError;

/// How to round an amount to its currency's minor units.
///
/// Never left implicit: rust_decimal's own `round_dp` is banker's rounding, which is not what
/// billing systems (Lago, Kill Bill, Stripe) do by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingStrategy {
    /// 0.5 rounds away from zero (1.005 → 1.01, −1.005 → −1.01). The default.
    #[default]
    HalfAwayFromZero,
    /// 0.5 rounds to the even neighbour (banker's rounding).
    HalfEven,
    /// 0.5 rounds toward zero.
    HalfTowardZero,
    /// Always toward zero (truncate).
    TowardZero,
    /// Always away from zero.
    AwayFromZero,
    /// Always toward negative infinity.
    Floor,
    /// Always toward positive infinity.
    Ceiling,
}

impl RoundingStrategy {
    fn to_decimal(self) -> rust_decimal::RoundingStrategy {
        use rust_decimal::RoundingStrategy as R;
        match self {
            Self::HalfAwayFromZero => R::MidpointAwayFromZero,
            Self::HalfEven => R::MidpointNearestEven,
            Self::HalfTowardZero => R::MidpointTowardZero,
            Self::TowardZero => R::ToZero,
            Self::AwayFromZero => R::AwayFromZero,
            Self::Floor => R::ToNegativeInfinity,
            Self::Ceiling => R::ToPositiveInfinity,
        }
    }
}

/// An exact amount of one currency. Amounts keep full precision until rounded explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// An amount in `currency`, kept exactly as given.
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    /// The amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.code().to_owned(),
                right: other.currency.code().to_owned(),
            })
        }
    }

    /// The sum; both operands must be in the same currency.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow { operation: "add" })?;
        Ok(Money::new(amount, self.currency))
    }

    /// The difference; both operands must be in the same currency.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow {
                operation: "subtract",
            })?;
        Ok(Money::new(amount, self.currency))
    }

    /// The amount multiplied by a dimensionless factor (a quantity, a rate, a percentage).
    ///
    /// Products keep at most 28 significant digits, as Python's `decimal` default context does:
    /// a product needing more is rounded to fit (banker's rounding inside rust_decimal). Money
    /// amounts and prices never come near that; round to minor units explicitly afterwards.
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow {
                operation: "multiply",
            })?;
        Ok(Money::new(amount, self.currency))
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    /// Rounded to the currency's minor units with `strategy`.
    ///
    /// The result carries exactly the currency's minor units as its scale (`7` USD becomes
    /// `7.00`), except for amounts so large (over 26 integer digits) that the scale cannot grow.
    ///
    /// Currencies without a minor unit (XAU, XDR…) are refused as not billable.
    pub fn rounded_with(&self, strategy: RoundingStrategy) -> Result<Money, MoneyError> {
        let dp = self.currency.billable_minor_units()?;
        let mut amount = self
            .amount
            .round_dp_with_strategy(dp, strategy.to_decimal());
        amount.rescale(dp);
        Ok(Money::new(amount, self.currency))
    }

    /// Rounded to minor units, half away from zero.
    pub fn rounded(&self) -> Result<Money, MoneyError> {
        self.rounded_with(RoundingStrategy::default())
    }

    /// Splits the amount by `weights` with the largest-remainder method in minor units: each
    /// part gets its share rounded down, then the minor units left over go one each to the parts
    /// with the largest remainders (ties to the earlier weight). The parts always sum exactly to
    /// the amount, which must already be a whole number of minor units.
    ///
    /// Weights must not be negative and must not all be zero; a zero weight gets zero. A
    /// negative amount is split like its absolute value, every part negative.
    pub fn allocate(&self, weights: &[Decimal]) -> Result<Vec<Money>, MoneyError> {
        let invalid = |reason: String| MoneyError::InvalidAllocation { reason };
        if weights.is_empty() {
            return Err(invalid("no weights given".into()));
        }
        if let Some(w) = weights
            .iter()
            .find(|w| w.is_sign_negative() && !w.is_zero())
        {
            return Err(invalid(format!("weight {w} is negative")));
        }
        let total_weight = weights
            .iter()
            .try_fold(Decimal::ZERO, |acc, w| acc.checked_add(*w))
            .ok_or(MoneyError::Overflow {
                operation: "allocate",
            })?;
        if total_weight.is_zero() {
            return Err(invalid("the weights sum to zero".into()));
        }
        let dp = self.currency.billable_minor_units()?;
        let scale = Decimal::from(10u64.pow(dp));
        let units = self.amount.checked_mul(scale).ok_or(MoneyError::Overflow {
            operation: "allocate",
        })?;
        if !units.fract().is_zero() {
            return Err(invalid(format!(
                "{} is not a whole number of {} minor units; round it first",
                self.amount, self.currency
            )));
        }
        let negative = units.is_sign_negative();
        let units = units.abs();
        let mut parts = Vec::with_capacity(weights.len());
        let mut remainders = Vec::with_capacity(weights.len());
        let mut given = Decimal::ZERO;
        for (i, w) in weights.iter().enumerate() {
            let exact = units
                .checked_mul(*w)
                .and_then(|x| x.checked_div(total_weight))
                .ok_or(MoneyError::Overflow {
                    operation: "allocate",
                })?;
            let floor = exact.floor();
            given += floor;
            parts.push(floor);
            remainders.push((exact - floor, i));
        }
        // Largest remainder first; equal remainders keep weight order.
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // At most one unit per part is left over (each floor lost less than one).
        let left = (units - given)
            .trunc()
            .to_usize()
            .ok_or(MoneyError::Overflow {
                operation: "allocate",
            })?;
        for (_, i) in remainders.iter().take(left) {
            parts[*i] += Decimal::ONE;
        }
        Ok(parts
            .into_iter()
            .map(|p| {
                let mut amount = p / scale;
                if negative {
                    amount = -amount;
                }
                amount.rescale(dp);
                Money::new(amount, self.currency)
            })
            .collect())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn m(amount: &str, code: &str) -> Money {
        Money::new(
            Decimal::from_str(amount).expect("decimal"),
            Currency::new(code).expect("currency"),
        )
    }

    #[test]
    fn rounding_is_explicit_and_defaults_half_away_from_zero() {
        assert_eq!(m("1.005", "USD").rounded(), Ok(m("1.01", "USD")));
        assert_eq!(m("-1.005", "USD").rounded(), Ok(m("-1.01", "USD")));
        assert_eq!(m("2.5", "JPY").rounded(), Ok(m("3", "JPY")));
        assert_eq!(m("1.0005", "BHD").rounded(), Ok(m("1.001", "BHD")));
        assert_eq!(
            m("1.005", "USD").rounded_with(RoundingStrategy::HalfEven),
            Ok(m("1.00", "USD"))
        );
        assert_eq!(
            m("1.001", "USD").rounded_with(RoundingStrategy::Ceiling),
            Ok(m("1.01", "USD"))
        );
        assert_eq!(
            m("7", "USD").rounded().map(|x| x.to_string()),
            Ok("7.00 USD".into())
        );
        assert_eq!(
            m("1", "XAU").rounded(),
            Err(MoneyError::NotBillable { code: "XAU".into() })
        );
    }

    #[test]
    fn arithmetic_across_currencies_names_both() {
        let err = m("1", "USD")
            .checked_add(&m("1", "EUR"))
            .expect_err("mismatch");
        assert_eq!(
            err,
            MoneyError::CurrencyMismatch {
                left: "USD".into(),
                right: "EUR".into()
            }
        );
        assert!(m("1", "USD").checked_cmp(&m("1", "JPY")).is_err());
        assert!(m("1", "USD").checked_sub(&m("1", "GBP")).is_err());
    }

    #[test]
    fn arithmetic_is_exact() {
        let a = m("0.1", "USD");
        let b = m("0.2", "USD");
        assert_eq!(a.checked_add(&b), Ok(m("0.3", "USD")));
        assert_eq!(b.checked_sub(&a), Ok(m("0.1", "USD")));
        assert_eq!(a.checked_mul(Decimal::from(3)), Ok(m("0.3", "USD")));
        assert_eq!(
            m("79228162514264337593543950335", "USD").checked_add(&m("1", "USD")),
            Err(MoneyError::Overflow { operation: "add" })
        );
    }

    #[test]
    fn allocation_uses_the_largest_remainder_and_sums_exactly() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        let parts = m("100.00", "USD")
            .allocate(&[d("1"), d("1"), d("1")])
            .expect("split");
        assert_eq!(
            parts,
            vec![m("33.34", "USD"), m("33.33", "USD"), m("33.33", "USD")]
        );
        let parts = m("10", "JPY")
            .allocate(&[d("0.5"), d("0.3"), d("0.2")])
            .expect("split");
        assert_eq!(parts, vec![m("5", "JPY"), m("3", "JPY"), m("2", "JPY")]);
        let parts = m("0.05", "USD")
            .allocate(&[d("3"), d("0"), d("7")])
            .expect("split");
        assert_eq!(
            parts,
            vec![m("0.02", "USD"), m("0.00", "USD"), m("0.03", "USD")]
        );
        let parts = m("-1.00", "EUR")
            .allocate(&[d("1"), d("2")])
            .expect("split");
        assert_eq!(parts, vec![m("-0.33", "EUR"), m("-0.67", "EUR")]);
        // Ties go to the earlier weight.
        let parts = m("0.01", "USD").allocate(&[d("1"), d("1")]).expect("split");
        assert_eq!(parts, vec![m("0.01", "USD"), m("0.00", "USD")]);
    }

    #[test]
    fn allocation_refuses_bad_weights_and_unrounded_amounts() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        for weights in [vec![], vec![d("0"), d("0")], vec![d("1"), d("-1")]] {
            assert!(matches!(
                m("1.00", "USD").allocate(&weights),
                Err(MoneyError::InvalidAllocation { .. })
            ));
        }
        assert!(matches!(
            m("1.005", "USD").allocate(&[d("1")]),
            Err(MoneyError::InvalidAllocation { .. })
        ));
        assert!(matches!(
            m("1", "XAU").allocate(&[d("1")]),
            Err(MoneyError::NotBillable { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn allocation_parts_sum_to_the_whole(cents in -10_000_000i64..10_000_000, weights in proptest::collection::vec(0u32..1000, 1..12)) {
            proptest::prop_assume!(weights.iter().any(|w| *w > 0));
            let total = Money::new(Decimal::new(cents, 2), Currency::usd());
            let ws: Vec<Decimal> = weights.iter().map(|w| Decimal::from(*w)).collect();
            let parts = total.allocate(&ws).expect("split");
            let sum = parts.iter().try_fold(Money::zero(Currency::usd()), |acc, p| acc.checked_add(p)).expect("sum");
            proptest::prop_assert_eq!(sum.amount(), total.amount());
            for (p, w) in parts.iter().zip(&weights) {
                if *w == 0 { proptest::prop_assert!(p.amount().is_zero()); }
                proptest::prop_assert_eq!(p.amount().scale(), 2);
            }
        }

        #[test]
        fn rounding_moves_less_than_half_a_minor_unit(cents in -1_000_000_000i64..1_000_000_000, frac in 0u32..1000) {
            let amount = Decimal::new(cents, 2) + Decimal::new(i64::from(frac), 5);
            let r = Money::new(amount, Currency::usd()).rounded().expect("round");
            let diff = (r.amount() - amount).abs();
            proptest::prop_assert!(diff <= Decimal::new(5, 3));
            proptest::prop_assert_eq!(r.amount().scale(), 2);
        }
    }
}
