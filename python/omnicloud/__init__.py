"""OmniCloud Core: the engine for the hard parts of multi-cloud orchestration.

State, scheduling, failover, deployments with webhooks, and billing, implemented in Rust and
driven from Python. See the README and ARCHITECTURE.md for the tour.
"""

from __future__ import annotations

from omnicloud._omnicloud import (
    AuditEvent,
    AuditLog,
    AuditVerification,
    Currency,
    Event,
    EventBus,
    ManualClock,
    Money,
    Store,
    SystemClock,
    Tenant,
    TenantRegistry,
    __version__,
)
from omnicloud.enums import AuditProblem, EventKind, RoundingStrategy
from omnicloud.exceptions import (
    ArgumentTypeError,
    AuditError,
    CurrencyMismatchError,
    CurrencyNotBillableError,
    DuplicateTenantError,
    InternalError,
    MoneyOverflowError,
    OmniCloudError,
    StoreCorruptError,
    StoreError,
    UnknownCurrencyError,
    UnknownTenantError,
    ValidationError,
)

__all__ = [
    "__version__",
    # common
    "ManualClock",
    "SystemClock",
    "Store",
    "AuditLog",
    "AuditEvent",
    "AuditVerification",
    "AuditProblem",
    "EventBus",
    "Event",
    "EventKind",
    # tenancy and money
    "Tenant",
    "TenantRegistry",
    "Currency",
    "Money",
    "RoundingStrategy",
    # exceptions
    "OmniCloudError",
    "ValidationError",
    "ArgumentTypeError",
    "InternalError",
    "StoreError",
    "StoreCorruptError",
    "AuditError",
    "UnknownTenantError",
    "DuplicateTenantError",
    "UnknownCurrencyError",
    "CurrencyMismatchError",
    "CurrencyNotBillableError",
    "MoneyOverflowError",
]
