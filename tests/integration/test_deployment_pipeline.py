"""Deployments (spec Task 4): the lifecycle queued -> in_progress -> completed | failed, rolled
back from in_progress, completed or failed, with timing, persisted in a real SQLite file and
announced on the event bus (what webhook delivery subscribes to).

Time is driven by a ManualClock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import omnicloud as oc
from tests.conftest import T0


class World:
    """A deployment service on a store file, its bus recording every event."""

    def __init__(self, db: Path) -> None:
        self.clock = oc.ManualClock(T0)
        self.store = oc.Store.open(db)
        self.bus = oc.EventBus(self.clock)
        self.audit = oc.AuditLog(self.store, clock=self.clock)
        self.audit.follow(self.bus)
        self.events: list[oc.Event] = []
        self.bus.subscribe(self.events.append)
        self.deployments = oc.DeploymentService(self.store, clock=self.clock, bus=self.bus)

    def data(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e.kind, e.data) for e in self.events]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "deploy.db")


def test_a_rollout_goes_through_its_states_with_timing(world: World) -> None:
    d = world.deployments.create("acme", "checkout")
    assert (d.state, d.tenant_id, d.service_name) == (oc.DeploymentState.QUEUED, "acme", "checkout")
    assert d.state == "queued" and d.started_at is None
    world.clock.advance(5)
    started = world.deployments.start(d.id)
    assert started.state is oc.DeploymentState.IN_PROGRESS
    assert started.started_at == T0 + dt.timedelta(seconds=5)
    world.clock.advance(95)
    done = world.deployments.complete(d.id)
    assert done.finished_at == T0 + dt.timedelta(seconds=100)
    assert done.duration_seconds == 95.0
    assert world.deployments.get(d.id) == done
    history = world.deployments.history(d.id)
    assert [(f, t) for f, t, _, _ in history] == [
        (None, "queued"),
        ("queued", "in_progress"),
        ("in_progress", "completed"),
    ]


def test_every_change_is_announced_with_the_payload_fields(world: World) -> None:
    d = world.deployments.create("acme", "checkout")
    world.clock.advance(2)
    world.deployments.start(d.id)
    world.clock.advance(30)
    world.deployments.report_health_check_failed(d.id, "GET /health", "503 for 30 s")
    world.deployments.fail(d.id, "health checks failing")
    world.deployments.rollback(d.id, "automatic rollback")
    kinds = [k for k, _ in world.data()]
    assert kinds == [
        "deployment.state_change",
        "deployment.state_change",
        "deployment.health_check_failed",
        "deployment.state_change",
        "deployment.rollback_initiated",
        "deployment.state_change",
    ]
    failed = world.data()[3][1]
    for field in ("deployment_id", "tenant_id", "service_name", "old_state", "new_state", "duration_seconds"):
        assert field in failed, field
    assert (failed["old_state"], failed["new_state"], failed["duration_seconds"]) == ("in_progress", "failed", 30.0)
    assert world.data()[0][1]["old_state"] is None
    assert world.data()[2][1]["check"] == "GET /health"
    assert all(e.tenant_id == "acme" and e.subject == d.id for e in world.events)
    # The audit trail follows the bus.
    actions = [e.action for e in world.audit.query(tenant_id="acme")]
    assert actions.count("deployment.state_change") == 4
    assert world.audit.verify()


def test_transitions_the_lifecycle_forbids_are_refused_and_change_nothing(world: World) -> None:
    d = world.deployments.create("acme", "checkout")
    with pytest.raises(oc.DeploymentTransitionError) as err:
        world.deployments.complete(d.id)
    assert (err.value.deployment_id, err.value.from_state, err.value.to_state) == (d.id, "queued", "completed")
    assert isinstance(err.value, ValueError)
    with pytest.raises(oc.DeploymentTransitionError):
        world.deployments.rollback(d.id, "nothing to roll back")
    world.deployments.start(d.id)
    world.deployments.complete(d.id)
    with pytest.raises(oc.DeploymentTransitionError):
        world.deployments.start(d.id)
    world.deployments.rollback(d.id, "bad release")
    for move in (world.deployments.start, world.deployments.complete):
        with pytest.raises(oc.DeploymentTransitionError):
            move(d.id)
    assert world.deployments.get(d.id).state == "rolled_back"
    assert len([e for e in world.events if e.kind == "deployment.state_change"]) == 4


def test_bad_inputs_are_typed_errors(world: World) -> None:
    with pytest.raises(oc.UnknownDeploymentError) as err:
        world.deployments.get("no-such-deployment")
    assert err.value.deployment_id == "no-such-deployment" and isinstance(err.value, LookupError)
    for bad in ("", "   ", "x" * 201, "line\nbreak"):
        with pytest.raises(oc.ValidationError):
            world.deployments.create("acme", bad)
    with pytest.raises(ValueError):
        world.deployments.create("not a tenant!", "checkout")
    d = world.deployments.create("acme", "checkout")
    with pytest.raises(oc.ValidationError):
        world.deployments.fail(d.id, "")
    with pytest.raises(ValueError):
        world.deployments.list("acme", state="paused")
    with pytest.raises(TypeError):
        world.deployments.create("acme", 42)  # type: ignore[arg-type]


def test_lists_are_per_tenant_newest_first_and_survive_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "deploy.db"
    w = World(db)
    first = w.deployments.create("acme", "a")
    w.clock.advance(1)
    second = w.deployments.create("acme", "b")
    w.deployments.create("globex", "c")
    w.deployments.start(first.id)
    assert [d.id for d in w.deployments.list("acme")] == [second.id, first.id]
    assert [d.id for d in w.deployments.list("acme", state=oc.DeploymentState.IN_PROGRESS)] == [first.id]
    assert [d.service_name for d in w.deployments.list("globex")] == ["c"]
    again = oc.DeploymentService(oc.Store.open(db), clock=w.clock)
    assert again.get(first.id).state == "in_progress"


def test_hundreds_of_deployments_finish_within_a_simulated_minute(world: World) -> None:
    ids = [world.deployments.create("acme", f"svc-{i}").id for i in range(300)]
    for i, did in enumerate(ids):
        world.deployments.start(did)
        world.clock.advance(0.1)
        if i % 10 == 0:
            world.deployments.fail(did, "canary failed")
        else:
            world.deployments.complete(did)
    assert world.clock.now() - T0 <= dt.timedelta(minutes=1)
    changes = [e for e in world.events if e.kind == "deployment.state_change"]
    assert len(changes) == 900
    assert len(world.deployments.list("acme", state="failed", limit=1000)) == 30
