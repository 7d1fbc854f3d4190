"""Services talking through the state capability: the StateManager's components working
together, its events reaching the audit trail and other subscribers, and several services
(threads and processes) sharing one state database."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import omnicloud as oc
from omnicloud import ResourceState as S
from tests.conftest import T0


def three_tier(m: oc.StateManager, tenant: str = "acme", prefix: str = "") -> None:
    m.register(oc.Resource(f"{prefix}lb", tenant, "load_balancer", "eu-west-1", {"listeners": [443]}, depends_on=[f"{prefix}app"]))
    m.register(oc.Resource(f"{prefix}app", tenant, "app_server", "eu-west-1", {"replicas": 3}, depends_on=[f"{prefix}db"]))
    m.register(oc.Resource(f"{prefix}db", tenant, "database", "eu-west-1", {"engine": "pg", "size": 100}))


@pytest.fixture
def wired(tmp_path: Path, clock: oc.ManualClock) -> tuple[oc.StateManager, oc.AuditLog, oc.EventBus]:
    store = oc.Store.open(tmp_path / "omnicloud.db")
    bus = oc.EventBus(clock)
    audit = oc.AuditLog(store, clock)
    audit.follow(bus)
    manager = oc.StateManager(store, clock=clock, snapshot_dir=tmp_path / "snapshots", bus=bus)
    return manager, audit, bus


def test_state_changes_reach_the_audit_trail(wired: tuple[oc.StateManager, oc.AuditLog, oc.EventBus], clock: oc.ManualClock) -> None:
    manager, audit, _ = wired
    three_tier(manager)
    for rid in manager.dependency_order(tenant_id="acme"):
        manager.transition(rid, S.PROVISIONING, "rollout")
        clock.advance(5)
        manager.transition(rid, S.ACTIVE, "healthy")
    changes = audit.query(tenant_id="acme", action="resource.state_changed")
    assert [(e.resource_id, e.details["data"]["new_state"]) for e in changes] == [
        ("db", "provisioning"), ("db", "active"),
        ("app", "provisioning"), ("app", "active"),
        ("lb", "provisioning"), ("lb", "active"),
    ]
    assert changes[1].details["data"]["old_state"] == "provisioning"
    assert changes[1].details["data"]["reason"] == "healthy"
    assert len(audit.query(action="resource.registered")) == 3
    assert audit.verify()


def test_subscribers_see_registrations_transitions_removals_and_restores(
    wired: tuple[oc.StateManager, oc.AuditLog, oc.EventBus],
) -> None:
    manager, audit, bus = wired
    seen: list[tuple[str, str | None]] = []
    bus.subscribe(lambda e: seen.append((e.kind, e.subject)), kinds=[
        oc.EventKind.RESOURCE_REGISTERED, oc.EventKind.RESOURCE_STATE_CHANGED,
        oc.EventKind.RESOURCE_REMOVED, oc.EventKind.STATE_RESTORED,
    ])
    manager.register(oc.Resource("db", "acme", "database", "r", {}))
    info = manager.snapshot()
    manager.transition("db", S.PROVISIONING)
    manager.register(oc.Resource("tmp", "acme", "cache", "r", {}))
    manager.remove("tmp")
    manager.restore(info.id)
    assert seen == [
        ("resource.registered", "db"),
        ("resource.state_changed", "db"),
        ("resource.registered", "tmp"),
        ("resource.removed", "tmp"),
        ("state.restored", info.id),
    ]
    restored = audit.query(action="state.restored")
    assert restored[0].details["data"]["resource_count"] == 1


def test_a_failing_subscriber_never_blocks_a_transition(
    wired: tuple[oc.StateManager, oc.AuditLog, oc.EventBus], monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, audit, bus = wired
    monkeypatch.setattr(sys, "unraisablehook", lambda _: None)

    def broken(_: oc.Event) -> None:
        raise RuntimeError("downstream is down")

    bus.subscribe(broken)
    manager.register(oc.Resource("db", "acme", "database", "r", {}))
    manager.transition("db", S.PROVISIONING)
    assert manager.get("db").state is S.PROVISIONING
    assert bus.failure_count == 2
    assert len(audit.query()) == 2, "the audit subscriber still recorded both events"


def test_tenants_and_state_share_one_database(wired: tuple[oc.StateManager, oc.AuditLog, oc.EventBus], clock: oc.ManualClock, tmp_path: Path) -> None:
    manager, audit, bus = wired
    tenants = oc.TenantRegistry(oc.Store.open(tmp_path / "omnicloud.db"), clock, bus)
    tenants.create(oc.Tenant("acme", "Acme", "EUR"))
    tenants.create(oc.Tenant("globex", "Globex", "JPY"))
    three_tier(manager, "acme")
    three_tier(manager, "globex", prefix="g-")
    assert manager.dependency_order(tenant_id="globex") == ["g-db", "g-app", "g-lb"]
    assert [e.action for e in audit.query(tenant_id="globex")] == ["tenant.created"] + ["resource.registered"] * 3


def test_drift_detection_with_actuals_reported_by_a_provider(wired: tuple[oc.StateManager, oc.AuditLog, oc.EventBus]) -> None:
    manager, _, _ = wired
    three_tier(manager)
    provider_view: dict[str, dict[str, object]] = {
        "db": {"engine": "pg", "size": 100.0, "maintenance": None},
        "app": {"replicas": 2},
        "lb": {"listeners": [443]},
    }
    for rid, actual in provider_view.items():
        manager.report_actual(rid, actual)
    reports = manager.detect_drift()
    assert [(r.resource_id, r.paths) for r in reports] == [("app", ["/replicas"])]
    tolerant = manager.detect_drift(oc.ThresholdBased({"/replicas": 1}, relative=False))
    assert tolerant == []
    impacted = manager.impact_of("app")
    assert impacted == {"lb"}


WRITER = textwrap.dedent(
    """
    import sys
    import omnicloud as oc

    db, prefix = sys.argv[1], sys.argv[2]
    m = oc.StateManager(oc.Store.open(db))
    m.register(oc.Resource(prefix + "-db", "acme", "database", "eu-west-1", {}))
    m.register(oc.Resource(prefix + "-app", "acme", "app_server", "eu-west-1", {}, depends_on=[prefix + "-db"]))
    for rid in m.dependency_order():
        if rid.startswith(prefix) and m.get(rid).state == oc.ResourceState.PENDING:
            m.transition(rid, "provisioning", "from " + prefix)
    """
)


def test_processes_share_state_through_the_database(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    oc.Store.open(db)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), f"p{n}"]) for n in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    m = oc.StateManager(oc.Store.open(db))
    assert len(m.list()) == 6
    assert all(r.state is S.PROVISIONING for r in m.list())
    order = m.dependency_order()
    for n in range(3):
        assert order.index(f"p{n}-db") < order.index(f"p{n}-app")
        assert m.history(f"p{n}-app")[0].reason == f"from p{n}"


def test_a_stale_writer_in_another_service_gets_a_conflict(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    fast = oc.StateManager(oc.Store.open(db), cache=True)
    fast.register(oc.Resource("db", "acme", "database", "r", {}))
    fast.get("db")  # cached now
    other = oc.StateManager(oc.Store.open(db))
    other.transition("db", S.PROVISIONING, "other service")
    # The cached service still believes db is pending; its write is checked against the
    # database's serial, so it cannot overwrite the other service's transition with a stale
    # base. The manager re-reads and re-checks the rule against the fresh state.
    with pytest.raises(oc.InvalidTransitionError):
        fast.transition("db", S.TERMINATED, "stale view")
    assert fast.get("db").state is S.PROVISIONING
    assert [t.reason for t in fast.history("db")] == ["other service"]


def test_state_survives_restart_with_its_lineage(tmp_path: Path, clock: oc.ManualClock) -> None:
    db = tmp_path / "state.db"
    first = oc.StateManager(oc.Store.open(db), clock=clock)
    three_tier(first)
    lineage = first.lineage
    del first
    second = oc.StateManager(oc.Store.open(db), clock=clock)
    assert second.lineage == lineage
    assert second.dependency_order() == ["db", "app", "lb"]
    assert second.get("db").updated_at == T0


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_snapshots_taken_while_writers_run_hold_one_instant(tmp_path: Path, backend: str) -> None:
    import threading

    store = oc.Store.open(tmp_path / "s.db") if backend == "sqlite" else None
    manager = oc.StateManager(store, snapshot_dir=tmp_path / "snaps")
    for i in range(30):
        manager.register(oc.Resource(f"r{i:02d}", "acme", "database", "r", {"n": 0}))
    stop = threading.Event()

    def writer(offset: int) -> None:
        n = 0
        while not stop.is_set():
            manager.report_actual(f"r{(2 * n + offset) % 30:02d}", {"n": n})
            n += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    try:
        infos = [manager.snapshot() for _ in range(15)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    snapshots = oc.SnapshotManager(tmp_path / "snaps")
    for info in infos:
        resources = snapshots.restore(info.id)
        # Each write bumps one resource's serial and the state's serial by one: a snapshot of a
        # single instant has its resource serials summing to its state serial.
        assert sum(r.serial for r in resources) == info.serial, info.id
    assert len({i.serial for i in infos}) > 1, "the writers really ran between snapshots"
