"""Exceptions raised by omnicloud.

Every exception the library raises derives from :class:`OmniCloudError`. Where a builtin
category fits, the class also derives from it, so ``except ValueError`` keeps working:
validation problems are ``ValueError``, lookups of unknown things are ``LookupError``, wrong
argument types are ``TypeError``.

Each exception carries the typed fields of the failure as attributes (the path that failed to
open, the two currencies that do not match, the unknown tenant's id).
"""

from __future__ import annotations

from typing import Any

__all__ = [
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


class OmniCloudError(Exception):
    """Base class of every exception raised by omnicloud.

    Keyword arguments given by the library become attributes of the exception.
    """

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.message


class ValidationError(OmniCloudError, ValueError):
    """A value was refused: a malformed id or name, a naive datetime, a bad clock step.

    Attributes ``field`` and ``value`` name the rejected input when known.
    """

    field: str | None = None
    value: str | None = None


class ArgumentTypeError(OmniCloudError, TypeError):
    """An argument has a type the library refuses on purpose (a float where money is expected)."""


class InternalError(OmniCloudError):
    """A bug inside omnicloud was contained at the boundary. Please report it."""


class StoreError(OmniCloudError):
    """The embedded database could not be opened, migrated, read or written.

    ``path`` is the database file (``":memory:"`` for in-memory stores).
    """

    path: str | None = None


class StoreCorruptError(StoreError):
    """The file is not an OmniCloud SQLite database, or its pages are damaged."""


class AuditError(OmniCloudError, ValueError):
    """The audit trail refused a query or an entry (bad action name, empty time range)."""

    action: str | None = None


class UnknownTenantError(OmniCloudError, LookupError):
    """No tenant has this id (``tenant_id``)."""

    tenant_id: str


class DuplicateTenantError(OmniCloudError, ValueError):
    """A tenant with this id (``tenant_id``) already exists."""

    tenant_id: str


class UnknownCurrencyError(OmniCloudError, ValueError):
    """The code (``code``) is not in the ISO 4217 list."""

    code: str


class CurrencyMismatchError(OmniCloudError, ValueError):
    """Two amounts in different currencies (``left``, ``right``) were combined or compared."""

    left: str
    right: str


class CurrencyNotBillableError(OmniCloudError, ValueError):
    """The currency (``code``) has no minor unit in ISO 4217 (XAU, XDR...) and cannot be billed."""

    code: str


class MoneyOverflowError(OmniCloudError, ArithmeticError):
    """An amount does not fit in 28 significant digits (``operation`` names the step)."""

    operation: str
