"""Python interop rules: the panic boundary, exceptions, datetimes, decimals, enums."""

from __future__ import annotations

import datetime as dt
import inspect
from decimal import Decimal

import pytest

import omnicloud as oc
from omnicloud import _omnicloud, exceptions


def test_an_internal_error_surfaces_as_omnicloud_error_not_panic_exception() -> None:
    with pytest.raises(oc.OmniCloudError) as err:
        _omnicloud._raise_internal_error()
    assert type(err.value) is oc.InternalError
    assert "deliberate internal error" in str(err.value)
    assert "please report" in str(err.value)
    # PanicException derives from BaseException: it must not be what arrived.
    assert isinstance(err.value, Exception)


def test_the_library_still_works_after_an_internal_error(store: oc.Store) -> None:
    with pytest.raises(oc.InternalError):
        _omnicloud._raise_internal_error()
    log = oc.AuditLog(store)
    log.append("system", "after.panic")
    assert log.verify()


def test_every_exception_derives_from_omnicloud_error() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(exceptions, inspect.isclass)
        if obj.__module__ == exceptions.__name__
    ]
    assert len(classes) == len(exceptions.__all__)
    for cls in classes:
        assert issubclass(cls, oc.OmniCloudError), cls
        assert getattr(oc, cls.__name__) is cls


def test_exceptions_carry_typed_fields() -> None:
    err = oc.CurrencyMismatchError("message", left="USD", right="EUR")
    assert (str(err), err.left, err.right) == ("message", "USD", "EUR")
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(
    "aware",
    [
        dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 3, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(2026, 3, 1, 21, 45, tzinfo=dt.timezone(dt.timedelta(hours=9, minutes=45))),
    ],
)
def test_aware_datetimes_in_any_offset_mean_the_same_instant(aware: dt.datetime) -> None:
    clock = oc.ManualClock(aware)
    assert clock.now() == aware
    assert clock.now().utcoffset() == dt.timedelta(0)


def test_microseconds_survive_the_round_trip() -> None:
    t = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert oc.ManualClock(t).now() == t


def test_naive_datetimes_raise_value_error_everywhere(store: oc.Store) -> None:
    naive = dt.datetime(2026, 3, 1, 12)
    log = oc.AuditLog(store)
    for call in (
        lambda: oc.ManualClock(naive),
        lambda: log.query(since=naive),
        lambda: log.query(until=naive),
        lambda: log.append("system", "a.b", details={"at": naive}),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()


@pytest.mark.parametrize("amount", [Decimal("1.10"), 1, "1.10", " 2 ", Decimal("-0.001"), 10**20])
def test_decimal_like_amounts_are_accepted_exactly(amount: object) -> None:
    m = oc.Money(amount, "USD")  # type: ignore[arg-type]
    assert m.amount == Decimal(str(amount).strip())


@pytest.mark.parametrize("amount", [0.1, 1.0, float("nan"), True, b"1", [1], None])
def test_non_decimal_amounts_raise_type_error(amount: object) -> None:
    with pytest.raises(TypeError):
        oc.Money(amount, "USD")  # type: ignore[arg-type]


def test_decimals_come_back_as_decimal() -> None:
    amount = oc.Money("12.345", "BHD").amount
    assert type(amount) is Decimal and amount == Decimal("12.345")


def test_enums_are_real_enums_accepted_as_strings() -> None:
    import enum

    assert issubclass(oc.RoundingStrategy, enum.Enum)
    assert oc.RoundingStrategy("half_even") is oc.RoundingStrategy.HALF_EVEN
    m = oc.Money("0.125", "USD")
    assert m.rounded(oc.RoundingStrategy.HALF_EVEN) == m.rounded("half_even")
    assert [k.value for k in oc.EventKind][0] == "tenant.created"
    assert oc.EventKind("custom") is oc.EventKind.CUSTOM


def test_frozen_classes_refuse_attribute_assignment() -> None:
    t = oc.Tenant("acme", "Acme")
    with pytest.raises(AttributeError):
        t.name = "Other"  # type: ignore[misc]


def test_version_is_exposed() -> None:
    assert oc.__version__ == _omnicloud.__version__
    assert oc.__version__.count(".") == 2
