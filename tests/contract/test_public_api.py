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


@pytest.mark.parametrize("name", KERNEL_NAMES)
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


def test_classes_live_in_the_extension_module() -> None:
    for name in ["ManualClock", "Store", "AuditLog", "Money", "Tenant", "EventBus"]:
        assert getattr(oc, name).__module__ == "omnicloud._omnicloud"


def test_stub_file_ships_with_the_package() -> None:
    import pathlib

    package = pathlib.Path(oc.__file__).parent
    assert (package / "_omnicloud.pyi").is_file()
    assert (package / "py.typed").is_file()
