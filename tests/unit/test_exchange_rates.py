"""ExchangeRates: append-only history, lookups by time, inversion and triangulation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

import omnicloud as oc


def day(n: int) -> dt.datetime:
    return dt.datetime(2026, 1, n, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def rates() -> oc.ExchangeRates:
    r = oc.ExchangeRates()
    r.set_rate("EUR", "USD", Decimal("1.10"), day(1))
    r.set_rate("EUR", "USD", Decimal("1.12"), day(5))
    r.set_rate(oc.Currency("USD"), "JPY", "150.25", day(2), source="BOJ")
    return r


def test_latest_rate_at_or_before_the_moment(rates: oc.ExchangeRates) -> None:
    assert rates.rate("EUR", "USD", day(1)) == Decimal("1.10")
    assert rates.rate("EUR", "USD", day(4)) == Decimal("1.10")
    q = rates.quote("EUR", "USD", day(9))
    assert (q.rate, q.as_of, q.source, q.base.code, q.quote.code) == (Decimal("1.12"), day(5), "ECB", "EUR", "USD")
    with pytest.raises(oc.ExchangeRateNotFoundError) as err:
        rates.rate("EUR", "USD", day(1) - dt.timedelta(seconds=1))
    assert (err.value.base, err.value.quote) == ("EUR", "USD")
    assert isinstance(err.value, LookupError)


def test_inverse_and_triangulation(rates: oc.ExchangeRates) -> None:
    assert rates.rate("USD", "EUR", day(9)) == Decimal(1) / Decimal("1.12")
    tri = rates.quote("EUR", "JPY", day(9))
    assert tri.rate == Decimal("1.12") * Decimal("150.25")
    assert tri.source == "ECB / BOJ via USD" and tri.as_of == day(2)
    assert rates.rate("GBP", "GBP", day(1)) == 1
    with pytest.raises(oc.ExchangeRateNotFoundError):
        rates.rate("GBP", "CHF", day(9))


def test_convert_keeps_precision_until_rounded(rates: oc.ExchangeRates) -> None:
    jpy = rates.convert(oc.Money("10.00", "USD"), "JPY", day(3))
    assert jpy == oc.Money("1502.5000", "JPY")
    assert jpy.rounded() == oc.Money("1503", "JPY")


def test_history_is_append_only_and_inputs_are_checked(rates: oc.ExchangeRates) -> None:
    rates.set_rate("EUR", "USD", "1.10", day(1))  # the same fact again changes nothing
    with pytest.raises(oc.ValidationError, match="append-only"):
        rates.set_rate("EUR", "USD", "1.11", day(1))
    for base, quote, rate in [("EUR", "EUR", "1"), ("EUR", "USD", "0"), ("EUR", "USD", "-2")]:
        with pytest.raises(oc.ValidationError):
            rates.set_rate(base, quote, rate, day(3))
    with pytest.raises(TypeError, match="not float"):
        rates.set_rate("EUR", "GBP", 0.85, day(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        rates.set_rate("EUR", "GBP", "0.85", dt.datetime(2026, 1, 3))
    with pytest.raises(oc.UnknownCurrencyError):
        rates.set_rate("EUR", "XYZ", "1", day(3))
    with pytest.raises(oc.ValidationError):
        rates.set_rate("EUR", "GBP", "0.85", day(3), source=" ")


def test_a_store_keeps_the_history(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "fx.db"
    first = oc.ExchangeRates(oc.Store.open(path))
    first.set_rate("EUR", "USD", "1.0834567890123", day(1))
    again = oc.ExchangeRates(oc.Store.open(path))
    assert again.rate("EUR", "USD", day(2)) == Decimal("1.0834567890123")
    with pytest.raises(oc.ValidationError, match="append-only"):
        again.set_rate("EUR", "USD", "2", day(1))


def test_rates_published_by_another_connection_reach_a_running_billing_service(
    db_path: Path, clock: oc.ManualClock
) -> None:
    """A long-lived service sees rates another process publishes after it started."""
    store = oc.Store.open(db_path)
    billing = oc.BillingService(store, clock)  # its own persisted history, loaded now
    billing.upsert_tenant("acme", "EUR")
    billing.set_price("cpu", oc.Money("1.00", "EUR"))
    start = clock.now() - dt.timedelta(days=1)
    billing.record_usage("acme", "cpu", 10, "eu-west-1", start, start + dt.timedelta(hours=1))
    with pytest.raises(oc.ExchangeRateNotFoundError):
        billing.preview_invoice("acme", start, clock.now())
    publisher = oc.ExchangeRates(oc.Store.open(db_path))  # another connection
    publisher.set_rate("EUR", "USD", Decimal("1.25"), start)
    invoice = billing.preview_invoice("acme", start, clock.now())
    assert invoice.exchange_rate_to_usd == Decimal("1.25")
    assert invoice.total_usd == oc.Money("12.50", "USD")
    reader = oc.ExchangeRates(store)
    publisher.set_rate("EUR", "USD", Decimal("1.30"), clock.now())
    assert reader.rate("EUR", "USD", clock.now()) == Decimal("1.25")
    reader.refresh()
    assert reader.rate("EUR", "USD", clock.now()) == Decimal("1.30")
