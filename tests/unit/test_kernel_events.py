"""EventBus: typed, in-process, failure-isolated."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import omnicloud as oc
from tests.conftest import T0


def test_publish_delivers_in_order_with_filters(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    log: list[str] = []
    bus.subscribe(lambda e: log.append(f"all:{e.kind}"))
    bus.subscribe(lambda e: log.append(f"tenants:{e.kind}"), kinds=["tenant.created"])
    bus.subscribe(lambda e: log.append(f"custom:{e.kind}"), kinds=[oc.EventKind.CUSTOM])
    event = bus.publish("app.release_approved", tenant_id="acme", subject="svc-1", data={"by": "alice"})
    assert log == ["all:app.release_approved", "custom:app.release_approved"]
    assert (event.kind, event.tenant_id, event.subject, event.at) == (
        "app.release_approved",
        "acme",
        "svc-1",
        T0,
    )
    assert event.data == {"by": "alice"}
    assert bus.subscriber_count == 3


def test_callbacks_receive_the_same_event_that_publish_returns(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    got: list[oc.Event] = []
    bus.subscribe(got.append)
    returned = bus.publish("app.x")
    assert got == [returned]
    assert hash(got[0]) == hash(returned)
    assert 'kind="app.x"' in repr(returned)


def test_a_raising_subscriber_does_not_affect_others(
    clock: oc.ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    bus = oc.EventBus(clock)

    def broken(_: oc.Event) -> None:
        raise RuntimeError("subscriber bug")

    reached: list[str] = []
    bus.subscribe(broken)
    bus.subscribe(lambda e: reached.append(e.kind))
    bus.publish("app.x")
    assert reached == ["app.x"]
    assert bus.failure_count == 1
    assert len(unraisable) == 1
    assert isinstance(unraisable[0].exc_value, RuntimeError)


def test_unsubscribe(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    got: list[str] = []
    sub = bus.subscribe(lambda e: got.append(e.kind))
    bus.publish("app.one")
    assert bus.unsubscribe(sub) is True
    assert bus.unsubscribe(sub) is False
    bus.publish("app.two")
    assert got == ["app.one"]


def test_subscribers_may_publish(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    got: list[str] = []

    def relay(e: oc.Event) -> None:
        got.append(e.kind)
        if e.kind == "app.outer":
            bus.publish("app.inner")

    bus.subscribe(relay)
    bus.publish("app.outer")
    assert got == ["app.outer", "app.inner"]


@pytest.mark.parametrize("bad", ["", "App.X", "a..b", "a b", "x" * 65])
def test_bad_kinds_are_refused(clock: oc.ManualClock, bad: str) -> None:
    with pytest.raises(oc.ValidationError, match="event kind"):
        oc.EventBus(clock).publish(bad)


def test_bad_arguments(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    with pytest.raises(oc.ValidationError, match="not a known event kind"):
        bus.subscribe(print, kinds=["tenant.deleted"])
    with pytest.raises(oc.ValidationError):
        bus.publish("app.x", tenant_id="bad id")
    with pytest.raises(TypeError):
        bus.publish("app.x", data={"f": {1, 2}})
    assert bus.subscriber_count == 0


def test_audit_follows_the_bus(store: oc.Store, clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    log = oc.AuditLog(store, clock)
    log.follow(bus)
    event = bus.publish("app.release_approved", tenant_id="acme", subject="svc-1", data={"by": "alice"})
    (entry,) = log.query()
    assert (entry.action, entry.tenant_id, entry.resource_id, entry.actor) == (
        "app.release_approved",
        "acme",
        "svc-1",
        "omnicloud",
    )
    assert entry.details == {"event_id": event.id, "data": {"by": "alice"}}
    assert entry.at == event.at
