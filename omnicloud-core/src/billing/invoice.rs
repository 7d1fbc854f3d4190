//! Invoices and credit notes, and the arithmetic that turns rated lines into a total.
//!
//! An invoice is computed in one currency: lines rounded to its minor units, percentage
//! discounts, then fixed discounts in the same currency, then credits from the wallet in the
//! same currency. Once issued it never changes; corrections are credit notes. This module
//! computes and describes invoices; the service stores them.

use std::borrow::Cow;

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

/// The stored form of an invoice: every amount without its currency (the invoice has one),
/// each conversion rate once, lines as arrays. About a tenth of the size of the plain serde form
/// of [`Invoice`], which repeats the currency with every amount and the rate with every line.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    id: Cow<'a, str>,
    tenant: Cow<'a, str>,
    kind: InvoiceKind,
    corrects: Option<Cow<'a, str>>,
    period: Option<Period>,
    currency: Currency,
    lines: Vec<StoredLine<'a>>,
    rates: Vec<ExchangeRate>,
    subtotal: Decimal,
    discounts: Vec<(Cow<'a, str>, Decimal)>,
    credits: Decimal,
    total: Decimal,
    to_usd: Decimal,
    rate_as_of: DateTime<Utc>,
    rate_source: Cow<'a, str>,
    total_usd: Decimal,
    issued_at: DateTime<Utc>,
    legacy: bool,
    memo: Option<Cow<'a, str>>,
}

/// kind, meter, region, quantity, unit price, amount, index of the conversion rate.
#[derive(Serialize, Deserialize)]
struct StoredLine<'a>(
    LineKind,
    Cow<'a, str>,
    Option<Cow<'a, str>>,
    Decimal,
    Decimal,
    Decimal,
    Option<usize>,
);

/// Encodes an invoice for the `document` column.
pub(crate) fn encode(invoice: &Invoice) -> Result<String, serde_json::Error> {
    let mut rates: Vec<ExchangeRate> = Vec::new();
    let mut lines = Vec::with_capacity(invoice.lines.len());
    for l in &invoice.lines {
        let rate = l.conversion.as_ref().map(|r| {
            rates
                .iter()
                .position(|known| known == r)
                .unwrap_or_else(|| {
                    rates.push(r.clone());
                    rates.len() - 1
                })
        });
        lines.push(StoredLine(
            l.kind,
            Cow::Borrowed(&l.meter),
            l.region.as_deref().map(Cow::Borrowed),
            l.quantity,
            l.unit_price.amount(),
            l.amount.amount(),
            rate,
        ));
    }
    let stored = Stored {
        id: Cow::Borrowed(&invoice.id),
        tenant: Cow::Borrowed(invoice.tenant_id.as_str()),
        kind: invoice.kind,
        corrects: invoice.corrects.as_deref().map(Cow::Borrowed),
        period: invoice.period,
        currency: invoice.currency,
        lines,
        rates,
        subtotal: invoice.subtotal.amount(),
        discounts: invoice
            .discounts
            .iter()
            .map(|d| (Cow::Borrowed(d.discount_id.as_str()), d.amount.amount()))
            .collect(),
        credits: invoice.credits_applied.amount(),
        total: invoice.total.amount(),
        to_usd: invoice.exchange_rate_to_usd,
        rate_as_of: invoice.rate_as_of,
        rate_source: Cow::Borrowed(&invoice.rate_source),
        total_usd: invoice.total_usd.amount(),
        issued_at: invoice.issued_at,
        legacy: invoice.legacy,
        memo: invoice.memo.as_deref().map(Cow::Borrowed),
    };
    // Sized up front: a line takes about a hundred bytes.
    let mut out = Vec::with_capacity(512 + 112 * invoice.lines.len());
    serde_json::to_writer(&mut out, &stored)?;
    String::from_utf8(out).map_err(<serde_json::Error as serde::ser::Error>::custom)
}

/// Decodes a `document` column written by [`encode`].
pub(crate) fn decode(document: &str) -> Result<Invoice, String> {
    let s: Stored<'_> = serde_json::from_str(document).map_err(|e| e.to_string())?;
    let c = s.currency;
    let money = |amount| Money::new(amount, c);
    let lines = s
        .lines
        .into_iter()
        .map(
            |StoredLine(kind, meter, region, quantity, unit, amount, rate)| {
                let conversion = rate
                    .map(|i| {
                        s.rates
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("line refers to missing rate {i}"))
                    })
                    .transpose()?;
                Ok(InvoiceLine {
                    kind,
                    meter: meter.into_owned(),
                    region: region.map(Cow::into_owned),
                    quantity,
                    unit_price: money(unit),
                    amount: money(amount),
                    conversion,
                })
            },
        )
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Invoice {
        id: s.id.into_owned(),
        tenant_id: TenantId::new(s.tenant.into_owned()).map_err(|e| e.to_string())?,
        kind: s.kind,
        corrects: s.corrects.map(Cow::into_owned),
        period: s.period,
        currency: c,
        lines,
        subtotal: money(s.subtotal),
        discounts: s
            .discounts
            .into_iter()
            .map(|(id, amount)| AppliedDiscount {
                discount_id: id.into_owned(),
                amount: money(amount),
            })
            .collect(),
        credits_applied: money(s.credits),
        total: money(s.total),
        exchange_rate_to_usd: s.to_usd,
        rate_as_of: s.rate_as_of,
        rate_source: s.rate_source.into_owned(),
        total_usd: Money::new(s.total_usd, Currency::usd()),
        issued_at: s.issued_at,
        legacy: s.legacy,
        memo: s.memo.map(Cow::into_owned),
    })
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
    fn the_stored_form_round_trips_and_keeps_each_rate_once() {
        let rate = ExchangeRate {
            base: c("USD"),
            quote: c("EUR"),
            rate: d("0.9090909090909090909090909091"),
            as_of: DateTime::parse_from_rfc3339("2026-01-31T16:00:00Z")
                .expect("t")
                .with_timezone(&Utc),
            source: "ECB inverse".into(),
        };
        let mut lines = vec![
            line("1.10", "EUR"),
            line("2.20", "EUR"),
            line("0.00", "EUR"),
        ];
        lines[0].conversion = Some(rate.clone());
        lines[1].conversion = Some(rate.clone());
        lines[2].region = None;
        let s = settle(c("EUR"), &lines, &[], d("1"), RoundingStrategy::default()).expect("s");
        let invoice = Invoice {
            id: "inv-1".into(),
            tenant_id: TenantId::new("acme").expect("id"),
            kind: InvoiceKind::Invoice,
            corrects: None,
            period: None,
            currency: c("EUR"),
            lines,
            subtotal: s.subtotal,
            discounts: vec![AppliedDiscount {
                discount_id: "d".into(),
                amount: Money::new(d("0.10"), c("EUR")),
            }],
            credits_applied: s.credits_applied,
            total: s.total,
            exchange_rate_to_usd: d("1.1"),
            rate_as_of: rate.as_of,
            rate_source: "ECB".into(),
            total_usd: Money::new(d("2.53"), c("USD")),
            issued_at: rate.as_of,
            legacy: false,
            memo: Some("note".into()),
        };
        let text = encode(&invoice).expect("encode");
        assert_eq!(text.matches("ECB inverse").count(), 1);
        assert_eq!(decode(&text).expect("decode"), invoice);
        assert!(decode("{}").is_err());
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
