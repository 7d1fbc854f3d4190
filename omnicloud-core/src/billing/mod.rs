//! Billing: money, exchange rates, metering, invoices, credits, cost pools and the currency
//! migration.
//!
//! This folder owns the money model every capability shares (ISO 4217 [`Currency`], exact
//! decimal [`Money`], the [`ExchangeRates`] history) and the billing service built on it
//! ([`BillingService`]): usage metered per second, priced per meter and region, invoiced in
//! each tenant's billing currency with the rate to USD recorded, discounts and per-currency
//! credit wallets, shared-cost pools split by the largest-remainder method, and the resumable
//! migration from legacy USD-only billing ([`migrate_billing_currency`]). It never uses
//! floating point, never rounds implicitly and never rewrites an issued invoice.

mod currency;
mod fx;
mod invoice;
mod metering;
mod migration;
mod money;
mod pool;
mod schema;
mod service;

pub use currency::Currency;
pub use fx::{ExchangeRate, ExchangeRates};
pub use invoice::{
    AppliedDiscount, Discount, DiscountTerms, Invoice, InvoiceKind, InvoiceLine, LineKind,
};
pub use metering::{PRORATION_DP, Period, UsageRecord};
pub use migration::{
    CurrencyFor, MigrationOptions, MigrationProgress, MigrationReport, ProgressFn,
    migrate_billing_currency,
};
pub use money::{Money, RoundingStrategy};
pub use pool::{PoolAllocation, PoolShare};
pub use service::{
    BillingAccount, BillingService, LegacyInvoice, MAX_RATING_THREADS, MAX_REASON_CHARS,
    next_period_start,
};

pub(crate) use fx::SCHEMA as FX_SCHEMA;
pub(crate) use schema::SCHEMA;

#[cfg(test)]
mod tests;
