"""The kernel across real processes sharing one database file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import omnicloud as oc

WRITER = textwrap.dedent(
    """
    import sys
    import omnicloud as oc

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = oc.AuditLog(oc.Store.open(path))
    for i in range(count):
        log.append(name, "load.entry", details={"i": i})
    """
)


def test_processes_appending_to_one_file_keep_one_chain(db_path: Path) -> None:
    oc.Store.open(db_path)  # create and migrate once, as a service's start-up would
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), f"proc-{n}", "300"])
        for n in range(3)
    ]
    for w in writers:
        assert w.wait(timeout=120) == 0
    log = oc.AuditLog(oc.Store.open(db_path))
    report = log.verify_report()
    assert report.ok, report
    assert report.entries_checked == 900
    per_actor = {f"proc-{n}": [e.details["i"] for e in log.query() if e.actor == f"proc-{n}"] for n in range(3)}
    assert all(v == list(range(300)) for v in per_actor.values()), "each writer's order is kept"


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    script = "import sys, omnicloud as oc; print(oc.Store.open(sys.argv[1]).schema_version)"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = oc.Store.open(path)
    assert set(outputs) == {str(store.schema_version)}
    versions = [v for v, _, _ in store.applied_migrations()]
    assert versions == list(range(1, store.schema_version + 1))


def test_tenants_events_and_audit_work_together_on_a_file(db_path: Path) -> None:
    clock = oc.ManualClock(oc.SystemClock().now())
    store = oc.Store.open(db_path)
    bus = oc.EventBus(clock)
    audit = oc.AuditLog(store, clock)
    audit.follow(bus)
    tenants = oc.TenantRegistry(store, clock, bus)
    for tid, cur in [("acme", "USD"), ("globex", "EUR"), ("initech", "JPY")]:
        tenants.create(oc.Tenant(tid, tid.title(), cur))
        clock.advance(1)
    bus.publish("app.maintenance_window", tenant_id="globex", data={"minutes": 30})
    # A second process view of the same file sees the same facts.
    reopened = oc.AuditLog(oc.Store.open(db_path))
    assert [e.action for e in reopened.query(tenant_id="globex")] == [
        "tenant.created",
        "app.maintenance_window",
    ]
    assert reopened.verify()
    assert [t.billing_currency.code for t in oc.TenantRegistry(oc.Store.open(db_path)).list()] == [
        "USD",
        "EUR",
        "JPY",
    ]
