//! Invoices and credit notes, and the arithmetic that turns rated lines into a total.
//!
//! An invoice is computed in one currency: lines rounded to its minor units, percentage
//! discounts, then fixed discounts in the same currency, then credits from the wallet in the
//! same currency. Once issued it never changes; corrections are credit notes. This module
//! computes and describes invoices; the service stores them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Currency, ExchangeRate, Money, Period, RoundingStrategy};
use crate::error::MoneyError;
use crate::ids::TenantId;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    /// A charge for a billing period.
    Invoice,
    /// A correction of an issued invoice, credited back to the tenant.
    CreditNote,
}

impl InvoiceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoice => "invoice",
            Self::CreditNote => "credit_note",
        }
    }
}

/// Where a line's charge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Metered usage of one meter in one region.
    Usage,
    /// The tenant's share of a shared cost pool.
    PoolShare,
    /// A credit note's correction.
    Correction,
}

/// One line of an invoice, in the invoice's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// Usage, pool share or correction.
    pub kind: LineKind,
    /// The meter (usage), the pool's name (pool share) or `correction`.
    pub meter: String,
    /// The region the usage ran in (usage lines).
    pub region: Option<String>,
    /// Prorated quantity (usage) or 1.
    pub quantity: Decimal,
    /// Price per unit in the invoice currency, full precision.
    pub unit_price: Money,
    /// `quantity × unit_price` rounded to minor units.
    pub amount: Money,
    /// The rate used when the price or share was in another currency.
    pub conversion: Option<ExchangeRate>,
}

/// A discount the tenant holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscountTerms {
    /// A percentage (0 < p ≤ 100) off any invoice, whatever its currency.
    Percent(Decimal),
    /// A fixed amount off invoices in the amount's currency only (capped at what is due).
    Amount(Money),
}

/// A discount and how many more invoices it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    /// Its id.
    pub id: String,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// Percentage or fixed amount.
    pub terms: DiscountTerms,
    /// Invoices it still applies to; `None` for every invoice.
    pub remaining_invoices: Option<u32>,
}

/// A discount as applied to one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDiscount {
    /// The discount's id.
    pub discount_id: String,
    /// How much it took off.
    pub amount: Money,
}

/// An issued invoice or credit note. Immutable once issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Its id (UUIDv7, or the legacy system's id).
    pub id: String,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// Invoice or credit note.
    pub kind: InvoiceKind,
    /// For a credit note: the invoice it corrects.
    pub corrects: Option<String>,
    /// The period billed (credit notes: the corrected invoice's).
    pub period: Option<Period>,
    /// The currency of every amount on it.
    pub currency: Currency,
    /// The lines.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines.
    pub subtotal: Money,
    /// The discounts applied.
    pub discounts: Vec<AppliedDiscount>,
    /// Credits taken from the tenant's wallet in this currency.
    pub credits_applied: Money,
    /// What is due: subtotal − discounts − credits (credit notes: the amount credited).
    pub total: Money,
    /// One unit of `currency` in USD when issued.
    pub exchange_rate_to_usd: Decimal,
    /// When that rate was published.
    pub rate_as_of: DateTime<Utc>,
    /// Who published it (or its derivation).
    pub rate_source: String,
    /// `total` in USD at that rate, rounded to cents.
    pub total_usd: Money,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Whether it came from the legacy USD-only system (kept exactly as it was).
    pub legacy: bool,
    /// A credit note's reason.
    pub memo: Option<String>,
}

/// The amounts of an invoice after discounts and credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settlement {
    pub(crate) subtotal: Money,
    pub(crate) discounts: Vec<AppliedDiscount>,
    pub(crate) credits_applied: Money,
    pub(crate) total: Money,
}

/// Settles rated lines: subtotal, then percentage discounts (each on what is left), then fixed
/// discounts in `currency` (capped at what is left), then up to `wallet` in credits.
///
/// Discounts in another currency are skipped (they stay for a later invoice in their currency),
/// and so is every discount once nothing is left to discount (a use is never spent on zero).
/// Percentages are rounded with `rounding`; everything else is already in minor units.
pub(crate) fn settle(
    currency: Currency,
    lines: &[InvoiceLine],
    discounts: &[Discount],
    wallet: Decimal,
    rounding: RoundingStrategy,
) -> Result<Settlement, MoneyError> {
    let mut subtotal = Money::zero(currency);
    for line in lines {
        subtotal = subtotal.checked_add(&line.amount)?;
    }
    let mut due = subtotal.rounded_with(rounding)?;
    let mut applied = Vec::new();
    let percent = discounts.iter().filter_map(|d| match &d.terms {
        DiscountTerms::Percent(p) => Some((d, *p)),
        DiscountTerms::Amount(_) => None,
    });
    for (discount, p) in percent {
        if due.amount().is_zero() {
            break;
        }
        let off = due
            .checked_mul(p / Decimal::ONE_HUNDRED)?
            .rounded_with(rounding)?;
        due = due.checked_sub(&off)?;
        applied.push(AppliedDiscount {
            discount_id: discount.id.clone(),
            amount: off,
        });
    }
    let fixed = discounts.iter().filter_map(|d| match &d.terms {
        DiscountTerms::Amount(m) if m.currency() == currency => Some((d, *m)),
        _ => None,
    });
    for (discount, amount) in fixed {
        if due.amount().is_zero() {
            break;
        }
        let off = Money::new(amount.amount().min(due.amount()), currency).rounded_with(rounding)?;
        due = due.checked_sub(&off)?;
        applied.push(AppliedDiscount {
            discount_id: discount.id.clone(),
            amount: off,
        });
    }
    let credits = Money::new(wallet.min(due.amount()).max(Decimal::ZERO), currency)
        .rounded_with(RoundingStrategy::TowardZero)?;
    let total = due.checked_sub(&credits)?;
    Ok(Settlement {
        subtotal: subtotal.rounded_with(rounding)?,
        discounts: applied,
        credits_applied: credits,
        total,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn c(code: &str) -> Currency {
        Currency::new(code).expect("currency")
    }

    fn line(amount: &str, currency: &str) -> InvoiceLine {
        let m = Money::new(d(amount), c(currency));
        InvoiceLine {
            kind: LineKind::Usage,
            meter: "cpu".into(),
            region: Some("eu-west-1".into()),
            quantity: Decimal::ONE,
            unit_price: m,
            amount: m,
            conversion: None,
        }
    }

    fn discount(id: &str, terms: DiscountTerms) -> Discount {
        Discount {
            id: id.into(),
            tenant_id: TenantId::new("acme").expect("id"),
            terms,
            remaining_invoices: Some(1),
        }
    }

    #[test]
    fn percent_then_fixed_then_credits() {
        let lines = [line("100.00", "EUR"), line("50.00", "EUR")];
        let discounts = [
            discount(
                "fixed-eur",
                DiscountTerms::Amount(Money::new(d("20"), c("EUR"))),
            ),
            discount(
                "fixed-usd",
                DiscountTerms::Amount(Money::new(d("20"), c("USD"))),
            ),
            discount("ten", DiscountTerms::Percent(d("10"))),
        ];
        let s = settle(
            c("EUR"),
            &lines,
            &discounts,
            d("30"),
            RoundingStrategy::default(),
        )
        .expect("settle");
        assert_eq!(s.subtotal.amount(), d("150.00"));
        let applied: Vec<_> = s
            .discounts
            .iter()
            .map(|a| (a.discount_id.as_str(), a.amount.amount()))
            .collect();
        // 10 % of 150 = 15, then the EUR amount; the USD amount does not apply to EUR.
        assert_eq!(applied, [("ten", d("15.00")), ("fixed-eur", d("20.00"))]);
        assert_eq!(s.credits_applied.amount(), d("30.00"));
        assert_eq!(s.total.amount(), d("85.00"));
    }

    #[test]
    fn discounts_and_credits_never_take_the_total_below_zero() {
        let lines = [line("5", "JPY")];
        let discounts = [discount(
            "big",
            DiscountTerms::Amount(Money::new(d("1000"), c("JPY"))),
        )];
        let s = settle(
            c("JPY"),
            &lines,
            &discounts,
            d("500"),
            RoundingStrategy::default(),
        )
        .expect("settle");
        assert_eq!(s.discounts[0].amount.amount(), d("5"));
        assert_eq!(s.credits_applied.amount(), d("0"));
        assert_eq!(s.total.amount(), d("0"));
    }

    #[test]
    fn nothing_due_spends_no_discount() {
        let discounts = [
            discount("ten", DiscountTerms::Percent(d("10"))),
            discount("five", DiscountTerms::Amount(Money::new(d("5"), c("USD")))),
        ];
        let s = settle(
            c("USD"),
            &[],
            &discounts,
            d("3"),
            RoundingStrategy::default(),
        )
        .expect("settle");
        assert!(s.discounts.is_empty());
        assert_eq!(s.total.amount(), d("0.00"));
        assert_eq!(s.credits_applied.amount(), d("0.00"));
    }

    proptest::proptest! {
        #[test]
        fn settlement_adds_up_and_never_goes_negative(
            cents in proptest::collection::vec(0i64..1_000_000, 0..6),
            percent in proptest::option::of(1u32..=100),
            fixed in proptest::option::of(1i64..500_000),
            wallet in 0i64..1_000_000,
        ) {
            let lines: Vec<InvoiceLine> = cents
                .iter()
                .map(|c| line(&Decimal::new(*c, 2).to_string(), "EUR"))
                .collect();
            let mut discounts = Vec::new();
            if let Some(p) = percent {
                discounts.push(discount("p", DiscountTerms::Percent(Decimal::from(p))));
            }
            if let Some(f) = fixed {
                discounts.push(discount("f", DiscountTerms::Amount(Money::new(Decimal::new(f, 2), c("EUR")))));
            }
            let s = settle(c("EUR"), &lines, &discounts, Decimal::new(wallet, 2), RoundingStrategy::default())
                .expect("settle");
            let off: Decimal = s.discounts.iter().map(|a| a.amount.amount()).sum();
            proptest::prop_assert_eq!(s.subtotal.amount() - off - s.credits_applied.amount(), s.total.amount());
            proptest::prop_assert!(s.total.amount() >= Decimal::ZERO);
            proptest::prop_assert!(s.credits_applied.amount() <= Decimal::new(wallet, 2));
            proptest::prop_assert_eq!(s.total.amount().scale(), 2);
        }
    }
}
