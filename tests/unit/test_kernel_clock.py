"""ManualClock and SystemClock."""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo

import pytest

import omnicloud as oc
from tests.conftest import T0


def test_manual_clock_starts_where_told_and_returns_utc() -> None:
    clock = oc.ManualClock(T0)
    now = clock.now()
    assert now == T0
    assert now.utcoffset() == dt.timedelta(0)


def test_manual_clock_converts_any_timezone_to_the_same_instant() -> None:
    paris = dt.datetime(2026, 3, 1, 13, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    clock = oc.ManualClock(paris)
    assert clock.now() == T0
    assert clock.now().tzinfo is not None


def test_advance_keeps_sub_second_precision() -> None:
    clock = oc.ManualClock(T0)
    assert clock.advance(1.5) == T0 + dt.timedelta(seconds=1.5)
    clock.advance(0.000001)
    assert clock.now() == T0 + dt.timedelta(seconds=1.5, microseconds=1)
    clock.advance(0)
    assert clock.now() == T0 + dt.timedelta(seconds=1.5, microseconds=1)


def test_set_jumps_both_ways() -> None:
    clock = oc.ManualClock(T0)
    clock.set(T0 + dt.timedelta(days=3))
    assert clock.now() == T0 + dt.timedelta(days=3)
    clock.set(T0 - dt.timedelta(days=1))
    assert clock.now() == T0 - dt.timedelta(days=1)


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf, -math.inf, 1e12])
def test_bad_steps_are_validation_errors_and_leave_the_clock_alone(seconds: float) -> None:
    clock = oc.ManualClock(T0)
    with pytest.raises(oc.ValidationError) as err:
        clock.advance(seconds)
    assert isinstance(err.value, ValueError)
    assert err.value.field == "seconds"
    assert clock.now() == T0


def test_naive_datetimes_are_refused_with_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as err:
        oc.ManualClock(dt.datetime(2026, 1, 1))
    assert isinstance(err.value, oc.OmniCloudError)
    clock = oc.ManualClock(T0)
    with pytest.raises(oc.ValidationError, match="naive datetime 2026-01-01 00:00:00"):
        clock.set(dt.datetime(2026, 1, 1))
    assert clock.now() == T0


@pytest.mark.parametrize("bad", ["2026-01-01T00:00:00Z", 1767225600, dt.date(2026, 1, 1), None])
def test_non_datetimes_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="datetime"):
        oc.ManualClock(bad)  # type: ignore[arg-type]


def test_system_clock_is_aware_and_current() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    now = oc.SystemClock().now()
    after = dt.datetime.now(dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= now <= after + dt.timedelta(seconds=1)
    assert now.utcoffset() == dt.timedelta(0)


def test_reprs() -> None:
    assert repr(oc.ManualClock(T0)) == "ManualClock(2026-03-01T12:00:00+00:00)"
    assert repr(oc.SystemClock()) == "SystemClock()"


def test_a_shared_manual_clock_drives_every_service_that_holds_it(store: oc.Store) -> None:
    clock = oc.ManualClock(T0)
    log = oc.AuditLog(store, clock=clock)
    first = log.append("system", "tick.one")
    clock.advance(90)
    second = log.append("system", "tick.two")
    assert second.at - first.at == dt.timedelta(seconds=90)


def test_services_refuse_something_that_is_not_a_clock(store: oc.Store) -> None:
    with pytest.raises(TypeError, match="clock must be a ManualClock, a SystemClock or None"):
        oc.AuditLog(store, clock=dt.datetime.now)  # type: ignore[arg-type]
