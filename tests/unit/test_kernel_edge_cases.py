"""Edge cases at the kernel's boundaries: ranges, tampered types, anchors, foreign files."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

import omnicloud as oc
from tests.conftest import T0


def test_the_clock_cannot_be_advanced_past_year_9999() -> None:
    end = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc)
    clock = oc.ManualClock(end)
    with pytest.raises(oc.ValidationError, match="9999"):
        clock.advance(3600)
    assert clock.now() == end
    log = oc.AuditLog(clock=clock)
    log.append("system", "end.of.time")
    assert log.verify()


def test_datetimes_that_cannot_become_utc_are_validation_errors() -> None:
    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    with pytest.raises(oc.ValidationError, match="cannot be converted to UTC"):
        oc.ManualClock(early)

    class Broken(dt.tzinfo):
        def utcoffset(self, _: dt.datetime | None) -> dt.timedelta:
            raise RuntimeError("tz database unavailable")

        def dst(self, _: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(0)

        def tzname(self, _: dt.datetime | None) -> str:
            return "broken"

    with pytest.raises(oc.ValidationError, match="tz database unavailable"):
        oc.ManualClock(dt.datetime(2026, 1, 1, tzinfo=Broken()))


def tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        raw.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        raw.executescript(sql)


def filled(path: Path) -> oc.AuditLog:
    log = oc.AuditLog(oc.Store.open(path), clock=oc.ManualClock(T0))
    for i in range(5):
        log.append("system", "edge.entry", tenant_id="acme", details={"i": i})
    return log


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_events SET actor = CAST(actor AS BLOB) WHERE seq = 2",
        "UPDATE audit_events SET seq = -2 WHERE seq = 1",
        "UPDATE audit_head SET seq = 'x'",
        "UPDATE audit_head SET seq = -1",
    ],
)
def test_values_of_the_wrong_type_are_findings_not_errors(db_path: Path, sql: str) -> None:
    log = filled(db_path)
    tamper(db_path, sql)
    assert log.verify() is False
    assert log.verify_report().problem is not None


def test_an_anchor_catches_a_cut_tail_with_a_rewritten_head(db_path: Path) -> None:
    log = filled(db_path)
    anchor = log.head()
    assert log.verify(anchor=anchor)
    with sqlite3.connect(db_path) as raw:
        seq, digest = raw.execute("SELECT seq, hash FROM audit_events WHERE seq = 3").fetchone()
    tamper(
        db_path,
        f"DELETE FROM audit_events WHERE seq > 3; UPDATE audit_head SET seq = {seq}, hash = '{digest}';",
    )
    assert log.verify() is True, "the file alone cannot show this"
    report = log.verify_report(anchor=anchor)
    assert report.problem is oc.AuditProblem.TRUNCATED_TAIL and report.first_bad_seq == 4
    forged = (2, "0" * 64)
    assert log.verify_report(anchor=forged).problem is oc.AuditProblem.ANCHOR_MISMATCH


def test_another_applications_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "crm.db"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE tenants (customer TEXT)")
    before = foreign.read_bytes()
    with pytest.raises(oc.StoreCorruptError, match="another application") as err:
        oc.Store.open(foreign)
    assert err.value.path == str(foreign)
    assert foreign.read_bytes() == before
    assert not Path(str(foreign) + "-wal").exists()


def test_paths_are_plain_files_never_sqlite_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = oc.Store.open("file:weird.db")
    assert store.path == "file:weird.db"
    assert (tmp_path / "file:weird.db").is_file()
    assert not (tmp_path / "weird.db").exists()


def test_a_read_only_file_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    oc.Store.open(path)
    as_root = os.geteuid() == 0
    if not as_root:
        path.chmod(0o444)
    elif not (shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0):
        pytest.skip("needs chattr (e2fsprogs) on a file system with immutable files to lock a file as root")
    try:
        with pytest.raises(oc.StoreError, match="read-only") as err:
            oc.Store.open(path)
        assert err.value.path == str(path)
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o644)


def test_bad_limits(store: oc.Store) -> None:
    log = oc.AuditLog(store)
    log.append("system", "a.b")
    with pytest.raises(oc.ValidationError, match="limit must be >= 0"):
        log.query(limit=-1)
    assert len(log.query(limit=2**63 - 1)) == 1
    assert len(log.query(limit=0)) == 0


def test_resource_ids_in_audit_entries_follow_the_id_grammar(store: oc.Store) -> None:
    log = oc.AuditLog(store)
    for bad in ["", "a\nb", "x" * 129, "nul\x00"]:
        with pytest.raises(oc.ValidationError):
            log.append("system", "a.b", resource_id=bad)
    assert len(log) == 0


@pytest.mark.parametrize("code", ["XAU", "XXX", "XDR"])
def test_currencies_without_minor_units_cannot_bill_a_tenant(code: str) -> None:
    with pytest.raises(oc.CurrencyNotBillableError) as err:
        oc.Tenant("acme", "Acme", code)
    assert err.value.code == code


@pytest.mark.parametrize("kind", ["tenant.created", "resource.state_changed", "billing.x", "audit.y"])
def test_custom_events_cannot_impersonate_core_events(kind: str, clock: oc.ManualClock) -> None:
    with pytest.raises(oc.ValidationError, match="reserved"):
        oc.EventBus(clock).publish(kind, tenant_id="acme")


def test_custom_event_subjects_follow_the_id_grammar(clock: oc.ManualClock) -> None:
    with pytest.raises(oc.ValidationError):
        oc.EventBus(clock).publish("app.x", subject="not an id\n")


def test_reprs_quote_once(store: oc.Store, clock: oc.ManualClock) -> None:
    e = oc.AuditLog(store, clock).append("system", "a.b", tenant_id="acme")
    assert 'tenant_id="acme"' in repr(e) and "resource_id=None" in repr(e)
    ev = oc.EventBus(clock).publish("app.x")
    assert "tenant_id=None" in repr(ev)


def test_money_sums_and_refuses_other_operands() -> None:
    total = sum([oc.Money("1.10", "EUR"), oc.Money("2.20", "EUR")])
    assert total == oc.Money("3.30", "EUR")
    with pytest.raises(TypeError):
        oc.Money(1, "EUR") + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        1 + oc.Money(1, "EUR")
    assert oc.Money(1, "EUR") != 1
    assert (oc.Money("12.5", "EUR") * Decimal("0.1")).amount == Decimal("1.25")


def test_subscribers_must_be_callable(clock: oc.ManualClock) -> None:
    bus = oc.EventBus(clock)
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe(5)  # type: ignore[arg-type]
    assert bus.subscriber_count == 0
    assert bus.unsubscribe(-1) is False
