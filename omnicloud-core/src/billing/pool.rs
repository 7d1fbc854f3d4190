//! Shared-cost pools: one cost split across tenants billed in different currencies.
//!
//! The pool's total is split by weights with the largest-remainder method in the pool's
//! currency, so the shares always add back up to the total exactly; each share is then
//! converted to its tenant's billing currency at a recorded rate. This module splits and
//! describes; the service records the charges and bills them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{ExchangeRate, Money};
use crate::ids::TenantId;

/// One tenant's part of a pool allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolShare {
    /// Whose share it is.
    pub tenant_id: TenantId,
    /// The weight it was given.
    pub weight: Decimal,
    /// The share in the pool's currency (the shares sum to the pool total).
    pub share: Money,
    /// The share in the tenant's billing currency, rounded to its minor units.
    pub charge: Money,
    /// The rate used for the conversion (identity when the currencies match).
    pub rate: ExchangeRate,
}

/// A recorded split of a shared cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolAllocation {
    /// Its id.
    pub id: String,
    /// The pool's name (it names the invoice line).
    pub pool: String,
    /// The cost split.
    pub total: Money,
    /// When the cost was incurred (it is billed in the period containing it).
    pub at: DateTime<Utc>,
    /// The shares, in the order the weights were given.
    pub shares: Vec<PoolShare>,
}

impl PoolAllocation {
    /// The sum of the shares in the pool's currency: always exactly [`PoolAllocation::total`].
    pub fn recovered_total(&self) -> Result<Money, crate::error::MoneyError> {
        self.shares
            .iter()
            .try_fold(Money::zero(self.total.currency()), |acc, s| {
                acc.checked_add(&s.share)
            })
    }
}
