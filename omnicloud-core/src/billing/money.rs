//! Exact money: a decimal amount in one currency.

use std::fmt;

use rust_decimal::Decimal;
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

    proptest::proptest! {
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
