"""AuditLog: append-only, hash-chained, queryable, verifiable."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import omnicloud as oc
from tests.conftest import T0

GENESIS = "0" * 64


def fill(log: oc.AuditLog, clock: oc.ManualClock) -> list[oc.AuditEvent]:
    rows = [
        ("acme", "tenant.created"),
        ("globex", "tenant.created"),
        ("acme", "failover.started"),
        ("acme", "failover.completed"),
        ("globex", "invoice.issued"),
    ]
    out = []
    for i, (tenant, action) in enumerate(rows):
        out.append(
            log.append("system", action, tenant_id=tenant, resource_id=f"r{i}", details={"i": i})
        )
        clock.advance(10)
    return out


@pytest.fixture
def log(file_store: oc.Store, clock: oc.ManualClock) -> oc.AuditLog:
    return oc.AuditLog(file_store, clock=clock)


def test_entries_form_a_chain(log: oc.AuditLog, clock: oc.ManualClock) -> None:
    assert log.head() == (0, GENESIS)
    entries = fill(log, clock)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for before, after in zip(entries, entries[1:]):
        assert after.prev_hash == before.hash
        assert len(after.hash) == 64
    assert log.head() == (5, entries[-1].hash)
    assert len(log) == 5
    assert log.verify() is True
    report = log.verify_report()
    assert report and report.ok and report.entries_checked == 5
    assert report.first_bad_seq is None and report.problem is None and report.message is None


def test_entry_fields_round_trip(log: oc.AuditLog) -> None:
    e = log.append(
        "alice@example.com",
        "deploy.approved",
        tenant_id="acme",
        resource_id="svc-42",
        details={"amount": Decimal("12.30"), "when": T0, "nested": {"ok": True, "n": [1, 2.5, None]}},
    )
    (stored,) = log.query()
    assert stored == e
    assert (stored.actor, stored.action, stored.tenant_id, stored.resource_id) == (
        "alice@example.com",
        "deploy.approved",
        "acme",
        "svc-42",
    )
    assert stored.at == T0
    assert stored.details == {
        "amount": "12.30",
        "when": "2026-03-01T12:00:00.000000000Z",
        "nested": {"ok": True, "n": [1, 2.5, None]},
    }
    assert "deploy.approved" in repr(stored)


def test_query_filters(log: oc.AuditLog, clock: oc.ManualClock) -> None:
    fill(log, clock)

    def seqs(**kw: object) -> list[int]:
        return [e.seq for e in log.query(**kw)]  # type: ignore[arg-type]

    assert seqs(tenant_id="acme") == [1, 3, 4]
    assert seqs(action="failover.*") == [3, 4]
    assert seqs(action="tenant.created", tenant_id="globex") == [2]
    assert seqs(since=T0 + dt.timedelta(seconds=10), until=T0 + dt.timedelta(seconds=30)) == [2, 3]
    assert seqs(since=T0 + dt.timedelta(seconds=40)) == [5]
    assert seqs(until=T0 + dt.timedelta(seconds=10)) == [1]
    assert seqs(limit=2) == [1, 2]
    assert seqs(tenant_id="nobody") == []


def test_bad_queries_and_entries(log: oc.AuditLog) -> None:
    with pytest.raises(oc.AuditError, match="range is empty"):
        log.query(since=T0 + dt.timedelta(seconds=1), until=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        log.query(since=dt.datetime(2026, 1, 1))
    for bad in ["", "Tenant.Created", "a..b", "a b", "x" * 65]:
        with pytest.raises(oc.AuditError) as err:
            log.append("system", bad)
        assert err.value.action == bad
        with pytest.raises(oc.AuditError):
            log.query(action=bad)
    with pytest.raises(oc.ValidationError, match="audit actor"):
        log.append("  ", "a.b")
    with pytest.raises(oc.ValidationError):
        log.append("system", "a.b", tenant_id="not valid")
    with pytest.raises(TypeError, match="JSON-like"):
        log.append("system", "a.b", details={"x": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        log.append("system", "a.b", details={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="finite"):
        log.append("system", "a.b", details={"x": float("nan")})
    assert len(log) == 0, "nothing refused was written"


def test_the_table_refuses_sql_updates_and_deletes(log: oc.AuditLog, clock: oc.ManualClock, db_path: Path) -> None:
    fill(log, clock)
    with sqlite3.connect(db_path) as raw:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit_events WHERE seq = 5")
    assert log.verify()


def tamper(db_path: Path, *statements: str) -> None:
    """Edit the SQLite file directly, as an attacker with file access would."""
    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        raw.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for sql in statements:
            raw.execute(sql)


def test_an_edited_row_in_the_file_is_detected_and_named(
    log: oc.AuditLog, clock: oc.ManualClock, db_path: Path
) -> None:
    entries = fill(log, clock)
    tamper(db_path, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    assert log.verify() is False
    report = log.verify_report()
    assert not report
    assert report.first_bad_seq == 3
    assert report.first_bad_id == entries[2].id
    assert report.problem is oc.AuditProblem.CONTENT_EDITED
    assert report.message is not None and "seq 3" in report.message and entries[2].id in report.message


@pytest.mark.parametrize(
    ("statements", "seq", "problem"),
    [
        (["UPDATE audit_events SET details = '{\"i\":99}' WHERE seq = 2"], 2, oc.AuditProblem.CONTENT_EDITED),
        (["UPDATE audit_events SET at = '2020-01-01T00:00:00.000000000Z' WHERE seq = 4"], 4, oc.AuditProblem.CONTENT_EDITED),
        (["DELETE FROM audit_events WHERE seq = 2"], 2, oc.AuditProblem.MISSING_ENTRIES),
        (
            ["DELETE FROM audit_events WHERE seq = 2", "UPDATE audit_events SET seq = seq - 1 WHERE seq > 2"],
            2,
            oc.AuditProblem.BROKEN_LINK,
        ),
        (["DELETE FROM audit_events WHERE seq >= 4"], 4, oc.AuditProblem.TRUNCATED_TAIL),
        (["UPDATE audit_head SET hash = 'ff'"], 5, oc.AuditProblem.HEAD_MISMATCH),
        (["UPDATE audit_events SET details = 'not json' WHERE seq = 1"], 1, oc.AuditProblem.UNDECODABLE),
    ],
)
def test_every_kind_of_tampering_is_detected(
    log: oc.AuditLog,
    clock: oc.ManualClock,
    db_path: Path,
    statements: list[str],
    seq: int,
    problem: oc.AuditProblem,
) -> None:
    fill(log, clock)
    tamper(db_path, *statements)
    report = log.verify_report()
    assert log.verify() is False
    assert (report.first_bad_seq, report.problem) == (seq, problem)


def test_verification_sees_tampering_from_a_fresh_process_view(
    log: oc.AuditLog, clock: oc.ManualClock, db_path: Path
) -> None:
    fill(log, clock)
    tamper(db_path, "UPDATE audit_events SET tenant_id = 'globex' WHERE seq = 1")
    reopened = oc.AuditLog(oc.Store.open(db_path))
    assert reopened.verify_report().first_bad_seq == 1


def test_appends_after_reopen_continue_the_chain(db_path: Path, clock: oc.ManualClock) -> None:
    first = oc.AuditLog(oc.Store.open(db_path), clock).append("system", "a.one")
    second = oc.AuditLog(oc.Store.open(db_path), clock).append("system", "a.two")
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert oc.AuditLog(oc.Store.open(db_path)).verify()


def test_default_store_is_private_memory() -> None:
    log = oc.AuditLog()
    log.append("system", "a.b")
    assert len(log) == 1 and log.store.path is None
    assert len(oc.AuditLog()) == 0


COLUMNS = ["seq", "id", "at", "tenant_id", "actor", "action", "resource_id", "details", "prev_hash", "hash"]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    data=st.data(),
)
def test_any_single_edit_of_any_type_to_any_column_is_detected(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        log = oc.AuditLog(oc.Store.open(path), clock=oc.ManualClock(T0))
        for i in range(n):
            log.append("system", "prop.entry", tenant_id=f"t{i % 3}", resource_id=f"r{i}", details={"i": i})
        assert log.verify()
        seq = data.draw(st.integers(1, n), label="seq")
        column = data.draw(st.sampled_from(COLUMNS), label="column")
        with sqlite3.connect(path) as raw:
            (old,) = raw.execute(f"SELECT {column} FROM audit_events WHERE seq = ?", (seq,)).fetchone()
        values = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.binary(max_size=8))
        new = data.draw(values.filter(lambda v: v != old), label="new")
        tamper(path)
        try:
            with sqlite3.connect(path) as raw:
                raw.execute(f"UPDATE audit_events SET {column} = ? WHERE seq = ?", (new, seq))
        except sqlite3.IntegrityError:
            assume(False)  # a duplicate seq: SQLite itself refuses that edit
        report = log.verify_report()
        assert not report.ok
        assert report.first_bad_seq is not None and report.first_bad_seq <= seq + 1

