//! Billing: currencies and money.
//!
//! This folder owns the money model every capability shares: ISO 4217 [`Currency`] and exact
//! decimal [`Money`]. It never uses floating point and never rounds implicitly; rounding takes
//! an explicit [`RoundingStrategy`]. Exchange rates, metering, invoices, credits, allocation and
//! the currency migration join it as billing grows.

mod currency;
mod fx;
mod money;

pub use currency::Currency;
pub use fx::{ExchangeRate, ExchangeRates};

pub(crate) use fx::SCHEMA as FX_SCHEMA;
pub use money::{Money, RoundingStrategy};
