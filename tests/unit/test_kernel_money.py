"""Currency and Money: exact decimal amounts, explicit rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import omnicloud as oc


@pytest.mark.parametrize(
    ("code", "minor", "numeric"),
    [
        ("USD", 2, 840),
        ("EUR", 2, 978),
        ("JPY", 0, 392),
        ("KRW", 0, 410),
        ("ISK", 0, 352),
        ("CLP", 0, 152),
        ("BHD", 3, 48),
        ("KWD", 3, 414),
        ("CLF", 4, 990),
        ("UYW", 4, 927),
        ("XAU", None, 959),
        ("XDR", None, 960),
    ],
)
def test_currencies_follow_iso_4217(code: str, minor: int | None, numeric: int) -> None:
    c = oc.Currency(code)
    assert (c.code, c.minor_units, c.numeric) == (code, minor, numeric)
    assert c == code and c == oc.Currency(code)
    assert hash(c) == hash(code)
    assert str(c) == code and repr(c) == f'Currency("{code}")'


@pytest.mark.parametrize("bad", ["usd", "XYZ", "", "US", "EURO"])
def test_unknown_currency(bad: str) -> None:
    with pytest.raises(oc.UnknownCurrencyError) as err:
        oc.Currency(bad)
    assert err.value.code == bad
    assert isinstance(err.value, ValueError)


def test_money_is_exact() -> None:
    a = oc.Money(Decimal("0.1"), "USD")
    b = oc.Money("0.2", oc.Currency("USD"))
    assert (a + b).amount == Decimal("0.3")
    assert (b - a) == oc.Money("0.1", "USD")
    assert (a * 3).amount == Decimal("0.3")
    assert (Decimal("2.5") * a).amount == Decimal("0.25")
    assert (-a).amount == Decimal("-0.1")
    assert a < b and b >= a and a != b
    assert oc.Money(7, "JPY").amount == Decimal(7)
    assert str(oc.Money("1.50", "EUR")) == "1.50 EUR"
    assert repr(oc.Money("1.50", "EUR")) == "Money('1.50', 'EUR')"
    assert hash(oc.Money("1.5", "EUR")) == hash(oc.Money("1.50", "EUR"))


def test_floats_are_refused_as_money() -> None:
    with pytest.raises(TypeError, match="not float") as err:
        oc.Money(0.1, "USD")  # type: ignore[arg-type]
    assert isinstance(err.value, oc.OmniCloudError)
    with pytest.raises(TypeError, match="not float"):
        oc.Money("1", "USD") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        oc.Money(True, "USD")
    with pytest.raises(TypeError):
        oc.Money(None, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "1e400", "0.12345678901234567890123456789012"])
def test_unrepresentable_amounts_are_value_errors(bad: str) -> None:
    with pytest.raises(oc.ValidationError):
        oc.Money(Decimal(bad) if bad != "abc" else bad, "USD")


def test_currency_mismatch_names_both() -> None:
    usd, eur = oc.Money(1, "USD"), oc.Money(1, "EUR")
    for op in (lambda: usd + eur, lambda: usd - eur, lambda: usd < eur):
        with pytest.raises(oc.CurrencyMismatchError) as err:
            op()
        assert (err.value.left, err.value.right) == ("USD", "EUR")
    assert usd != eur


def test_rounding_is_explicit() -> None:
    assert oc.Money("1.005", "USD").rounded() == oc.Money("1.01", "USD")
    assert oc.Money("-1.005", "USD").rounded() == oc.Money("-1.01", "USD")
    assert oc.Money("2.5", "JPY").rounded() == oc.Money("3", "JPY")
    assert oc.Money("1.0005", "KWD").rounded().amount == Decimal("1.001")
    assert oc.Money("1.005", "USD").rounded(oc.RoundingStrategy.HALF_EVEN).amount == Decimal("1.00")
    assert oc.Money("1.001", "USD").rounded("ceiling").amount == Decimal("1.01")
    assert str(oc.Money("7", "USD").rounded().amount) == "7.00"
    with pytest.raises(oc.ValidationError, match="unknown rounding strategy"):
        oc.Money("1", "USD").rounded("bankers")
    with pytest.raises(oc.CurrencyNotBillableError) as err:
        oc.Money("1", "XAU").rounded()
    assert err.value.code == "XAU"


def test_overflow_is_typed() -> None:
    big = oc.Money("79228162514264337593543950335", "USD")
    with pytest.raises(oc.MoneyOverflowError) as err:
        big + oc.Money(1, "USD")
    assert err.value.operation == "add"
    assert isinstance(err.value, ArithmeticError)


@given(cents=st.integers(-10**12, 10**12), extra=st.integers(0, 999))
def test_rounding_error_is_at_most_half_a_cent(cents: int, extra: int) -> None:
    amount = Decimal(cents) / 100 + Decimal(extra) / 100000
    rounded = oc.Money(amount, "USD").rounded().amount
    assert abs(rounded - amount) <= Decimal("0.005")
    assert rounded.as_tuple().exponent == -2


def test_allocate_by_largest_remainder() -> None:
    parts = oc.Money("100.00", "USD").allocate([1, 1, 1])
    assert [p.amount for p in parts] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert [p.amount for p in oc.Money("10", "JPY").allocate([Decimal("0.5"), "0.3", "0.2"])] == [5, 3, 2]
    assert [p.amount for p in oc.Money("0.01", "USD").allocate([1, 1])] == [Decimal("0.01"), Decimal("0.00")]
    assert [p.amount for p in oc.Money("-1.00", "EUR").allocate([1, 2])] == [Decimal("-0.33"), Decimal("-0.67")]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_allocate_refuses_bad_weights(weights: list[int]) -> None:
    with pytest.raises(oc.ValidationError, match="cannot allocate"):
        oc.Money("1.00", "USD").allocate(weights)  # type: ignore[arg-type]


def test_allocate_refuses_floats_and_unrounded_amounts() -> None:
    with pytest.raises(TypeError, match="not float"):
        oc.Money("1.00", "USD").allocate([0.5, 0.5])  # type: ignore[list-item]
    with pytest.raises(oc.ValidationError, match="round it first"):
        oc.Money("1.005", "USD").allocate([1])


@given(cents=st.integers(-10**9, 10**9), weights=st.lists(st.integers(0, 1000), min_size=1, max_size=10))
def test_allocation_parts_always_sum_to_the_total(cents: int, weights: list[int]) -> None:
    if not any(weights):
        return
    total = oc.Money(Decimal(cents) / 100, "USD")
    parts = total.allocate(weights)  # type: ignore[arg-type]
    assert sum(p.amount for p in parts) == total.amount
    assert all(p.amount == 0 for p, w in zip(parts, weights) if w == 0)


def test_currency_all_is_the_iso_4217_list_of_2026() -> None:
    codes = [c.code for c in oc.Currency.all()]
    assert len(codes) == 178
    assert codes == sorted(codes)
    assert {"USD", "EUR", "JPY", "KWD", "XCG", "ZWG", "XAU"} <= set(codes)
    assert not {"HRK", "BGN", "ANG", "CUC", "SLL", "ZWL"} & set(codes)
    billable = [c for c in oc.Currency.all() if c.billable]
    assert len(billable) == 165
    assert all(c.minor_units is not None for c in billable)
    for code in ["HRK", "BGN"]:
        withdrawn = oc.Currency(code)
        assert withdrawn.withdrawn and not withdrawn.billable
        with pytest.raises(oc.CurrencyNotBillableError):
            oc.Money("1", code).rounded()
