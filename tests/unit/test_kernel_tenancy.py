"""Tenant and TenantRegistry."""

from __future__ import annotations

import datetime as dt

import pytest

import omnicloud as oc
from tests.conftest import T0


def test_tenant_value_semantics() -> None:
    a = oc.Tenant("acme", "Acme Corp", "EUR")
    assert (a.id, a.name, a.billing_currency.code) == ("acme", "Acme Corp", "EUR")
    assert a == oc.Tenant("acme", "Acme Corp", oc.Currency("EUR"))
    assert a != oc.Tenant("acme", "Acme Corp", "USD")
    assert len({a, oc.Tenant("acme", "Acme Corp", "EUR")}) == 1
    assert repr(a) == 'Tenant(id="acme", name="Acme Corp", billing_currency="EUR")'
    assert oc.Tenant("t", "T").billing_currency == "USD"


@pytest.mark.parametrize("bad_id", ["", "a b", "a/b", "x" * 129, "ünï"])
def test_bad_ids_are_validation_errors(bad_id: str) -> None:
    with pytest.raises(oc.ValidationError, match="invalid tenant id") as err:
        oc.Tenant(bad_id, "Name")
    assert err.value.value == bad_id


@pytest.mark.parametrize("bad_name", ["", "   ", "line\nbreak", "n" * 201])
def test_bad_names_are_validation_errors(bad_name: str) -> None:
    with pytest.raises(oc.ValidationError, match="tenant name") as err:
        oc.Tenant("acme", bad_name)
    assert err.value.field == "tenant name"


@pytest.mark.parametrize("bad_code", ["usd", "XYZ", "", "EURO"])
def test_unknown_billing_currencies_are_refused(bad_code: str) -> None:
    with pytest.raises(oc.UnknownCurrencyError) as err:
        oc.Tenant("acme", "Acme", bad_code)
    assert err.value.code == bad_code


def test_registry_round_trip(store: oc.Store, clock: oc.ManualClock) -> None:
    reg = oc.TenantRegistry(store, clock)
    reg.create(oc.Tenant("globex", "Globex", "JPY"))
    clock.advance(60)
    reg.create(oc.Tenant("acme", "Acme", "EUR"))
    assert [t.id for t in reg.list()] == ["acme", "globex"]
    assert reg.get("globex").billing_currency.minor_units == 0
    assert reg.created_at("globex") == T0
    assert reg.created_at("acme") == T0 + dt.timedelta(seconds=60)


def test_duplicates_are_refused_and_the_original_kept(store: oc.Store) -> None:
    reg = oc.TenantRegistry(store)
    reg.create(oc.Tenant("acme", "Acme", "EUR"))
    with pytest.raises(oc.DuplicateTenantError) as err:
        reg.create(oc.Tenant("acme", "Impostor", "USD"))
    assert err.value.tenant_id == "acme"
    assert reg.get("acme") == oc.Tenant("acme", "Acme", "EUR")


def test_unknown_tenants(store: oc.Store) -> None:
    reg = oc.TenantRegistry(store)
    with pytest.raises(oc.UnknownTenantError) as err:
        reg.get("ghost")
    assert isinstance(err.value, LookupError)
    assert err.value.tenant_id == "ghost"
    assert reg.find("ghost") is None
    with pytest.raises(oc.UnknownTenantError):
        reg.created_at("ghost")
    with pytest.raises(oc.ValidationError):
        reg.get("not a valid id")


def test_creation_is_published_and_audited(store: oc.Store, clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    log = oc.AuditLog(store, clock)
    log.follow(bus)
    seen: list[oc.Event] = []
    bus.subscribe(seen.append, kinds=[oc.EventKind.TENANT_CREATED])
    reg = oc.TenantRegistry(store, clock, bus)
    reg.create(oc.Tenant("acme", "Acme", "EUR"))
    with pytest.raises(oc.DuplicateTenantError):
        reg.create(oc.Tenant("acme", "Acme", "EUR"))
    assert [(e.kind, e.tenant_id, e.subject) for e in seen] == [("tenant.created", "acme", "acme")]
    assert seen[0].data == {"tenant_id": "acme", "name": "Acme", "billing_currency": "EUR"}
    entries = log.query(action="tenant.created")
    assert len(entries) == 1
    assert entries[0].tenant_id == "acme"
    assert entries[0].details["event_id"] == seen[0].id
