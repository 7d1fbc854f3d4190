//! ISO 4217 currencies: code, numeric code and minor units.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::MoneyError;

/// An ISO 4217 currency, by its alphabetic code.
///
/// Minor units are ISO's: 2 for USD and EUR, 0 for JPY, KRW, ISK and CLP, 3 for BHD and KWD,
/// 4 for CLF and UYW, and none for gold, SDR and the other codes without a minor unit (those
/// are not billable).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Looks a code up (case-sensitive upper-case, as ISO writes them).
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        iso_currency::Currency::from_code(code)
            .map(Self)
            .ok_or_else(|| MoneyError::UnknownCurrency {
                code: code.to_owned(),
            })
    }

    /// The US dollar, the reference currency of legacy invoices.
    pub fn usd() -> Self {
        Self(iso_currency::Currency::USD)
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// The three-digit numeric code.
    pub fn numeric(&self) -> u16 {
        self.0.numeric()
    }

    /// The English name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Decimal places of the minor unit, or `None` where ISO 4217 defines none.
    pub fn minor_units(&self) -> Option<u32> {
        self.0.exponent().map(u32::from)
    }

    /// The minor units, or [`MoneyError::NotBillable`] for currencies without one.
    pub fn billable_minor_units(&self) -> Result<u32, MoneyError> {
        self.minor_units().ok_or_else(|| MoneyError::NotBillable {
            code: self.code().to_owned(),
        })
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217() {
        let cases = [
            ("USD", Some(2)),
            ("EUR", Some(2)),
            ("JPY", Some(0)),
            ("KRW", Some(0)),
            ("ISK", Some(0)),
            ("CLP", Some(0)),
            ("BHD", Some(3)),
            ("KWD", Some(3)),
            ("CLF", Some(4)),
            ("UYW", Some(4)),
            ("XAU", None),
            ("XDR", None),
        ];
        for (code, minor) in cases {
            let c = Currency::new(code).expect(code);
            assert_eq!(c.minor_units(), minor, "{code}");
            assert_eq!(c.code(), code);
        }
        assert_eq!(Currency::new("EUR").expect("EUR").numeric(), 978);
    }

    #[test]
    fn unknown_and_non_billable_codes_are_typed_errors() {
        for bad in ["", "usd", "XYZ", "US", "USDD", "€"] {
            assert_eq!(
                Currency::new(bad),
                Err(MoneyError::UnknownCurrency { code: bad.into() })
            );
        }
        let gold = Currency::new("XAU").expect("XAU");
        assert_eq!(
            gold.billable_minor_units(),
            Err(MoneyError::NotBillable { code: "XAU".into() })
        );
    }

    #[test]
    fn serde_uses_the_code() {
        let json = serde_json::to_string(&Currency::usd()).expect("ser");
        assert_eq!(json, "\"USD\"");
        assert!(serde_json::from_str::<Currency>("\"ABC\"").is_err());
    }
}
