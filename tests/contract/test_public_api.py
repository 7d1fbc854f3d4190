"""The public Python surface: names promised by the design's API contract exist, are exported,
and behave as documented."""

from __future__ import annotations

import inspect

import pytest

import omnicloud as oc

KERNEL_NAMES = [
    "__version__",
    "ManualClock",
    "SystemClock",
    "Store",
    "AuditLog",
    "OmniCloudError",
    "CurrencyMismatchError",
    "UnknownCurrencyError",
    "Currency",
    "Money",
]

BILLING_NAMES = [
    "ExchangeRates",
    "BillingService",
    "Invoice",
    "migrate_billing_currency",
    "MigrationReport",
    "CurrencyMismatchError",
    "UnknownCurrencyError",
    "ExchangeRateNotFoundError",
    "InvoiceImmutableError",
]


@pytest.mark.parametrize("name", KERNEL_NAMES + BILLING_NAMES)
def test_contract_names_are_exported(name: str) -> None:
    assert name in oc.__all__
    assert hasattr(oc, name)


def test_all_is_explicit_and_complete() -> None:
    assert len(oc.__all__) == len(set(oc.__all__))
    for name in oc.__all__:
        assert hasattr(oc, name), name
    public = {n for n in dir(oc) if not n.startswith("_") and n not in {"annotations"}}
    modules = {n for n in public if inspect.ismodule(getattr(oc, n))}
    assert public - modules <= set(oc.__all__)


def test_contract_signatures() -> None:
    sig = inspect.signature(oc.AuditLog.query)
    assert list(sig.parameters)[1:5] == ["tenant_id", "action", "since", "until"]
    assert list(inspect.signature(oc.AuditLog).parameters)[:1] == ["store"]
    assert callable(oc.Store.memory) and callable(oc.Store.open)
    clock = oc.ManualClock(oc.SystemClock().now())
    assert {"now", "advance", "set"} <= set(dir(clock))


def test_billing_contract_signatures() -> None:
    def params(f: object) -> list[str]:
        return [p for p in inspect.signature(f).parameters if p != "self"]  # type: ignore[arg-type]

    assert params(oc.BillingService)[:3] == ["store", "clock", "rates"]
    assert params(oc.BillingService.upsert_tenant)[:2] == ["tenant_id", "billing_currency"]
    assert params(oc.BillingService.set_price)[:2] == ["meter", "price"]
    assert params(oc.BillingService.record_usage)[:7] == [
        "tenant_id", "meter", "quantity", "region", "start", "end", "resource_id"
    ]
    assert params(oc.BillingService.add_credit)[:2] == ["tenant_id", "amount"]
    assert params(oc.BillingService.add_discount)[:3] == ["tenant_id", "percent", "amount"]
    assert params(oc.BillingService.generate_invoice)[:3] == ["tenant_id", "period_start", "period_end"]
    assert params(oc.BillingService.allocate_pool)[:3] == ["total", "weights", "at"]
    assert params(oc.migrate_billing_currency)[:5] == [
        "store", "batch_size", "currency_for", "progress", "dry_run"
    ]
    rates = params(oc.ExchangeRates.set_rate)
    assert rates[:5] == ["base", "quote", "rate", "as_of", "source"]
    for attr in ["id", "tenant_id", "currency", "total", "exchange_rate_to_usd", "rate_as_of",
                 "lines", "issued_at", "legacy"]:
        assert hasattr(oc.Invoice, attr), attr
    assert issubclass(oc.InvoiceImmutableError, oc.OmniCloudError)
    assert issubclass(oc.ExchangeRateNotFoundError, LookupError)


def test_classes_live_in_the_extension_module() -> None:
    for name in ["ManualClock", "Store", "AuditLog", "Money", "Tenant", "EventBus"]:
        assert getattr(oc, name).__module__ == "omnicloud._omnicloud"


def test_stub_file_ships_with_the_package() -> None:
    import pathlib

    package = pathlib.Path(oc.__file__).parent
    assert (package / "_omnicloud.pyi").is_file()
    assert (package / "py.typed").is_file()
