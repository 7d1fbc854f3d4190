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
    "ExchangeRateNotFoundError",
    "BillingError",
    "InvoiceImmutableError",
    "UnknownInvoiceError",
    "PriceNotFoundError",
    "MigrationStoppedError",
    "FailoverError",
    "NoFailoverPolicyError",
    "FailoverConflictError",
    "InvalidTransitionError",
    "TemplateError",
    "UnsafeUrlError",
    "UnknownEndpointError",
    "UnknownDeliveryError",
    "UnknownApiKeyError",
    "UnknownDeploymentError",
    "DeploymentTransitionError",
    "UnknownResourceError",
    "DuplicateResourceError",
    "DependencyCycleError",
    "UnknownDependencyError",
    "HasDependentsError",
    "ConflictError",
    "LineageMismatchError",
    "DriftStrategyError",
    "SnapshotError",
    "SnapshotCorruptError",
    "UnknownSnapshotError",
    "UnschedulableError",
    "UnknownNodeError",
    "DuplicateNodeError",
    "UnknownWorkloadError",
    "DuplicateWorkloadError",
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


class ExchangeRateNotFoundError(OmniCloudError, LookupError):
    """No rate from ``base`` to ``quote`` at that moment, directly, inverted or via USD or EUR."""

    base: str
    quote: str


class BillingError(OmniCloudError):
    """Billing refused an operation (base of the billing exceptions)."""


class InvoiceImmutableError(BillingError):
    """An issued invoice would change (``invoice_id``): usage or a pool charge falling into its
    period, or a second invoice for the same period. Corrections are credit notes."""

    invoice_id: str


class UnknownInvoiceError(BillingError, LookupError):
    """No invoice or credit note has this ``invoice_id``."""

    invoice_id: str


class PriceNotFoundError(BillingError, LookupError):
    """No price is set for ``meter`` (in ``region`` or as the meter's default), in any currency."""

    meter: str
    region: str | None


class MigrationStoppedError(BillingError):
    """The currency migration was stopped by its progress callback after ``processed`` tenants.

    The batches done so far are checkpointed; running the migration again resumes after them.
    """

    processed: int


class FailoverError(OmniCloudError):
    """Failover refused an operation (base of the failover exceptions)."""


class NoFailoverPolicyError(FailoverError, LookupError):
    """The tenant (``tenant_id``) has no failover policy."""

    tenant_id: str


class FailoverConflictError(FailoverError):
    """A manual failover or failback would take ``tenant_id`` where it already is, or another
    plan of the tenant is still in progress (``plan_id``)."""

    tenant_id: str
    plan_id: str | None = None


class MoneyOverflowError(OmniCloudError, ArithmeticError):
    """An amount does not fit in 28 significant digits (``operation`` names the step)."""

    operation: str


class InvalidTransitionError(OmniCloudError, ValueError):
    """The lifecycle does not allow ``from_state -> to_state`` for ``resource_id``."""

    resource_id: str
    from_state: str
    to_state: str


class TemplateError(OmniCloudError, ValueError):
    """A payload template does not compile, or failed while rendering (an undefined variable,
    its fuel used up, output that is not JSON). ``line`` is the 1-based line, when known."""

    line: int | None


class UnsafeUrlError(ValidationError):
    """A webhook destination is refused by the SSRF guard: a private, loopback, link-local or
    otherwise internal address (``address``, when known) or name, not allow-listed."""

    url: str | None
    address: str | None


class UnknownEndpointError(OmniCloudError, LookupError):
    """No webhook endpoint has this id for this tenant (``endpoint_id``)."""

    endpoint_id: str


class UnknownDeliveryError(OmniCloudError, LookupError):
    """No webhook delivery has this id for this tenant (``delivery_id``)."""

    delivery_id: str


class UnknownApiKeyError(OmniCloudError, LookupError):
    """No API key has this id for this tenant (``key_id``)."""

    key_id: str


class UnknownDeploymentError(OmniCloudError, LookupError):
    """No deployment has this id (``deployment_id``)."""

    deployment_id: str


class DeploymentTransitionError(OmniCloudError, ValueError):
    """The deployment lifecycle does not allow ``from_state -> to_state`` for
    ``deployment_id``."""

    deployment_id: str
    from_state: str
    to_state: str


class UnknownResourceError(OmniCloudError, LookupError):
    """No resource has this id (``resource_id``)."""

    resource_id: str


class DuplicateResourceError(OmniCloudError, ValueError):
    """A resource with this id (``resource_id``) is already registered."""

    resource_id: str


class DependencyCycleError(OmniCloudError, ValueError):
    """The dependencies form a cycle.

    ``cycle`` lists its members in cycle order, starting from the smallest id: each member
    depends on the next, and the last on the first.
    """

    cycle: list[str]


class UnknownDependencyError(OmniCloudError, LookupError):
    """``resource_id`` depends on ``dependency``, which is not registered."""

    resource_id: str
    dependency: str


class HasDependentsError(OmniCloudError, ValueError):
    """``resource_id`` cannot be removed while ``dependents`` depend on it."""

    resource_id: str
    dependents: list[str]


class ConflictError(OmniCloudError):
    """A write was based on a stale version (``expected`` serial; the store has ``found``)."""

    resource_id: str | None = None
    expected: int | None = None
    found: int | None = None


class LineageMismatchError(ConflictError):
    """A restore or import came from another state lineage (``writer_lineage``)."""

    store_lineage: str
    writer_lineage: str


class DriftStrategyError(OmniCloudError):
    """A user-supplied drift strategy raised or returned something that is not a change list."""


class SnapshotError(OmniCloudError):
    """A snapshot could not be written, read or restored (``path`` when a file is involved)."""

    path: str | None = None


class SnapshotCorruptError(SnapshotError):
    """The snapshot (``snapshot_id``) is damaged or truncated; nothing was loaded from it."""

    snapshot_id: str


class UnknownSnapshotError(SnapshotError, LookupError):
    """No snapshot has this id (``snapshot_id``)."""

    snapshot_id: str


class UnschedulableError(OmniCloudError):
    """No node can take the workload (``workload_id``).

    ``reasons`` maps each reason to the number of nodes it excluded, as kube-scheduler reports
    ("0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match ...").
    """

    workload_id: str
    reasons: dict[str, int]


class UnknownNodeError(OmniCloudError, LookupError):
    """No node has this id (``node_id``)."""

    node_id: str


class DuplicateNodeError(OmniCloudError, ValueError):
    """A node with this id (``node_id``) already exists."""

    node_id: str


class UnknownWorkloadError(OmniCloudError, LookupError):
    """No placed workload has this id (``workload_id``)."""

    workload_id: str


class DuplicateWorkloadError(OmniCloudError, ValueError):
    """A workload with this id (``workload_id``) is already placed."""

    workload_id: str
