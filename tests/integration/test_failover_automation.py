"""Failover automation (spec Task 1): a tenant's three-tier service in a primary region fails
over to its secondary when enough zones fail enough checks, in dependency order, with DNS
switched and every event in the audit trail; failback waits for sustained health.

Time is driven by a ManualClock; the database is a real SQLite file. These suites use the
in-memory DNS provider; the RFC 2136 provider against a real DNS server joins with the
runtime's DNS client.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import omnicloud as oc
from tests.conftest import T0

PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"


def record() -> oc.DnsRecord:
    return oc.DnsRecord("example.com", "api.example.com", "A", "192.0.2.10", "198.51.100.10", ttl=30)


def policy(tenant: str = "acme", **overrides: object) -> oc.FailoverPolicy:
    args: dict[str, object] = {
        "failure_threshold": 3,
        "evaluation_window_s": 60,
        "min_unhealthy_zones": 2,
        "failback_after_s": 300,
        "dns_records": [record()],
    }
    args.update(overrides)
    return oc.FailoverPolicy(tenant, PRIMARY, SECONDARY, **args)  # type: ignore[arg-type]


class World:
    """A tenant's lb -> app -> db service, a controller, its DNS and audit trail."""

    def __init__(self, db: Path) -> None:
        self.clock = oc.ManualClock(T0)
        self.store = oc.Store.open(db)
        self.audit = oc.AuditLog(self.store, clock=self.clock)
        self.state = oc.StateManager(self.store, clock=self.clock)
        # Registered out of order on purpose: the plan must follow the dependency graph.
        self.state.register(oc.Resource("lb", "acme", "load_balancer", PRIMARY, {}, depends_on=["app"]))
        self.state.register(oc.Resource("app", "acme", "app_server", PRIMARY, {}, depends_on=["db"]))
        self.state.register(oc.Resource("db", "acme", "database", PRIMARY, {}))
        self.dns = oc.InMemoryDns()
        self.resources = oc.InMemoryResources()
        self.controller = self.new_controller()
        self.controller.set_policy(policy())

    def new_controller(self) -> oc.FailoverController:
        return oc.FailoverController(
            self.state, self.dns, audit=self.audit, clock=self.clock, resources=self.resources
        )

    def round(self, healthy: bool, zones: tuple[str, ...] = ("a", "b", "c"), tenant: str = "acme",
              region: str = PRIMARY) -> list[oc.FailoverReport]:
        """One round of checks (one per zone), an evaluation, then 10 s pass."""
        for zone in zones:
            self.controller.record_health(oc.HealthCheckResult(tenant, region, zone, healthy, self.clock.now()))
        reports = self.controller.evaluate()
        self.clock.advance(10)
        return reports


@pytest.fixture
def world(db_path: Path) -> World:
    return World(db_path)


class TestRegionalOutage:
    def test_an_outage_fails_over_in_dependency_order_and_switches_dns(self, world: World) -> None:
        assert world.round(False) == [] and world.round(False) == []
        (report,) = world.round(False)
        assert (report.kind, report.status) == ("failover", "completed")
        assert (report.from_region, report.to_region) == (PRIMARY, SECONDARY)
        assert [(s.action, s.resource_id) for s in report.steps] == [
            ("promote", "db"), ("promote", "app"), ("promote", "lb"), ("switch_dns", "api.example.com."),
        ]
        assert all(s.at is not None and s.attempts == 1 for s in report.steps)
        assert world.resources.promoted() == {"db": SECONDARY, "app": SECONDARY, "lb": SECONDARY}
        assert world.dns.lookup("api.example.com") == ("198.51.100.10", 30)
        assert report.dns_delay_s is not None and 0 <= report.dns_delay_s <= 60
        assert report.dns_updated_at is not None and report.completed_at is not None
        assert world.controller.status("acme").serving_region == SECONDARY

    def test_the_trigger_names_the_failing_zones_and_their_checks(self, world: World) -> None:
        for _ in range(2):
            world.round(False)
        (report,) = world.round(False)
        trigger = report.trigger
        assert trigger["automatic"] is True
        zones = {z["zone"]: z["failures"] for z in trigger["health"]}
        assert set(zones) == {"a", "b", "c"} and all(len(f) == 3 for f in zones.values())

    def test_the_audit_trail_records_every_event(self, world: World) -> None:
        for _ in range(3):
            world.round(False)
        events = world.audit.query(tenant_id="acme", action="failover.*")
        assert [e.action for e in events] == [
            "failover.initiated", "failover.step", "failover.step", "failover.step", "failover.step",
            "failover.completed",
        ]
        assert [e.resource_id for e in events[1:4]] == ["db", "app", "lb"]
        assert all(e.at == events[0].at for e in events)
        assert world.audit.verify()

    def test_a_sustained_outage_fails_over_once(self, world: World) -> None:
        reports = [r for _ in range(20) for r in world.round(False)]
        assert len(reports) == 1

    def test_failback_waits_for_the_whole_failback_delay(self, world: World) -> None:
        for _ in range(3):
            world.round(False)
        started = world.clock.now()
        backs: list[oc.FailoverReport] = []
        while not backs:
            backs = world.round(True)
            assert world.clock.now() - started <= dt.timedelta(seconds=330)
        (back,) = backs
        assert back.kind == "failback" and back.to_region == PRIMARY
        assert back.initiated_at - started >= dt.timedelta(seconds=300)
        assert world.dns.lookup("api.example.com") == ("192.0.2.10", 30)
        assert world.controller.status("acme").on_primary

    def test_no_automatic_failback_when_disabled(self, world: World) -> None:
        world.controller.set_policy(policy(auto_failback=False))
        for _ in range(3):
            world.round(False)
        assert all(world.round(True) == [] for _ in range(40))
        assert not world.controller.status("acme").on_primary


class TestNoFlapping:
    def test_transient_blips_never_fail_over(self, world: World) -> None:
        for i in range(30):
            assert world.round(i % 3 != 0) == []

    def test_one_failing_zone_is_not_a_regional_outage(self, world: World) -> None:
        for _ in range(10):
            world.round(True, zones=("b", "c"))
            assert world.round(False, zones=("a",)) == []

    def test_failures_spread_beyond_the_window_do_not_count(self, world: World) -> None:
        for _ in range(4):
            world.round(False)
            world.clock.advance(60)
            world.round(True)
        assert world.controller.status("acme").on_primary


class TestManualControl:
    def test_manual_failover_while_healthy_and_held(self, world: World) -> None:
        world.controller.hold("acme")
        for _ in range(3):
            assert world.round(False) == []
        report = world.controller.failover("acme", "emergency drill", operator="alice")
        assert report.trigger == {"automatic": False, "operator": "alice", "reason": "emergency drill"}
        assert world.controller.status("acme").held
        with pytest.raises(oc.FailoverConflictError):
            world.controller.failover("acme", "again")
        back = world.controller.failback("acme", "drill over", operator="alice")
        assert back.kind == "failback" and world.controller.status("acme").on_primary

    def test_release_hold_lets_automatic_action_resume(self, world: World) -> None:
        world.controller.hold("acme")
        world.round(False), world.round(False)
        world.controller.release_hold("acme")
        assert len(world.round(False)) == 1

    def test_target_region_must_be_the_secondary(self, world: World) -> None:
        with pytest.raises(oc.ValidationError):
            world.controller.failover("acme", "drill", target_region="ap-south-1")
        assert world.controller.failover("acme", "drill", target_region=SECONDARY).status == "completed"


class TestResilience:
    def test_failing_steps_are_retried(self, world: World) -> None:
        world.resources.fail_next("app", 2)
        report = world.controller.failover("acme", "drill")
        assert report.status == "completed"
        assert [s.attempts for s in report.steps[:3]] == [1, 3, 1]

    def test_a_step_failing_every_attempt_stops_in_a_reported_state(self, world: World) -> None:
        world.resources.fail_next("app", 100)
        report = world.controller.failover("acme", "drill")
        assert report.status == "stopped"
        assert report.steps[1].error is not None and "injected" in report.steps[1].error
        assert report.steps[2].at is None and world.dns.lookup("api.example.com") is None
        assert world.controller.status("acme").on_primary

    def test_a_restarted_controller_remembers_where_tenants_are_served(self, world: World) -> None:
        world.controller.failover("acme", "drill")
        restarted = world.new_controller()
        status = restarted.status("acme")
        assert status.serving_region == SECONDARY and status.last_transition is not None
        assert [r.kind for r in restarted.reports("acme")] == ["failover"]


class TestTenants:
    def test_two_tenants_outages_in_different_regions_do_not_affect_each_other(self, world: World) -> None:
        world.state.register(oc.Resource("g-db", "globex", "database", "us-east-1", {}))
        world.controller.set_policy(
            oc.FailoverPolicy("globex", "us-east-1", "us-west-2", failure_threshold=2, min_unhealthy_zones=1)
        )
        reports = []
        for _ in range(3):
            world.controller.record_health(oc.HealthCheckResult("acme", PRIMARY, "a", True, world.clock.now()))
            reports += world.round(False, zones=("a",), tenant="globex", region="us-east-1")
        assert [(r.tenant_id, [s.resource_id for s in r.steps]) for r in reports] == [("globex", ["g-db"])]
        assert world.controller.status("acme").on_primary
        assert world.resources.promoted() == {"g-db": "us-west-2"}


class TestBadInput:
    def test_invalid_policies_are_refused(self) -> None:
        with pytest.raises(oc.ValidationError):
            oc.FailoverPolicy("acme", PRIMARY, PRIMARY)
        for kwargs in [{"failure_threshold": 0}, {"failure_threshold": 11}, {"evaluation_window_s": 5},
                       {"min_unhealthy_zones": 0}, {"failback_after_s": -1}]:
            with pytest.raises(oc.ValidationError):
                oc.FailoverPolicy("acme", PRIMARY, SECONDARY, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(oc.ValidationError):
            oc.FailoverPolicy("bad tenant", PRIMARY, SECONDARY)

    def test_invalid_records_are_refused(self) -> None:
        for args in [
            ("example.com", "api.other.com", "A", "192.0.2.1", "192.0.2.2"),
            ("example.com", "api.example.com", "A", "not-an-ip", "192.0.2.2"),
            ("example.com", "api.example.com", "MX", "192.0.2.1", "192.0.2.2"),
            ("example.com", "api.example.com", "A", "192.0.2.1", "192.0.2.1"),
        ]:
            with pytest.raises(oc.ValidationError):
                oc.DnsRecord(*args)
        with pytest.raises(oc.ValidationError):
            oc.DnsRecord("example.com", "api.example.com", "A", "192.0.2.1", "192.0.2.2", ttl=300)

    def test_unknown_tenants_and_regions(self, world: World) -> None:
        with pytest.raises(oc.NoFailoverPolicyError) as err:
            world.controller.status("ghost")
        assert err.value.tenant_id == "ghost" and isinstance(err.value, LookupError)
        with pytest.raises(oc.NoFailoverPolicyError):
            world.controller.record_health(oc.HealthCheckResult("ghost", PRIMARY, "a", False, T0))
        with pytest.raises(oc.ValidationError):
            world.controller.record_health(oc.HealthCheckResult("acme", "ap-south-1", "a", False, T0))
        with pytest.raises(ValueError):
            oc.HealthCheckResult("acme", PRIMARY, "a", False, dt.datetime(2026, 1, 1))
        with pytest.raises(oc.ValidationError):
            world.controller.failover("acme", "")

    def test_billing_attribution_is_refused_until_it_is_wired(self, world: World) -> None:
        with pytest.raises(oc.ValidationError):
            oc.FailoverController(world.state, world.dns, billing=oc.BillingService())
