"""Crash safety of the billing currency migration.

A legacy USD-only database (thousands of accounts, one to three legacy invoices each, some
tenants registered with GBP/EUR/JPY, a few accounts already given a currency by hand) is
migrated by a child process that is killed with SIGKILL at random moments, at least fifty
times, and relaunched until it finishes. The result must be identical, row for row in every
table, to an uninterrupted in-process run of the same migration with the same fixed clock:
no account processed twice, none skipped, every legacy invoice copied exactly once, the
legacy rows untouched, and the file intact. A dry run killed at random leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnicloud as oc
from tests.rawsqlite import RawSQLite

UTC = dt.timezone.utc

#: The clock of every migration run: identical timestamps in the reference and the crash run.
FIXED = dt.datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
#: The start of the calendar month after FIXED: when the migrated currencies take effect.
EFFECTIVE = dt.datetime(2026, 4, 1, tzinfo=UTC)
#: Before FIXED: when the legacy data was imported.
IMPORTED = dt.datetime(2025, 12, 1, 8, 0, tzinfo=UTC)

#: Large and finely batched enough that 65 kills fit into one migration with room to spare.
#: At 3,000 accounts in batches of 25 the whole run takes about 0.1 s on 2 cores, less than 65
#: times the few milliseconds between deciding to kill and the child actually dying; 12,000
#: accounts in 3,000 batches take about 1 s.
ACCOUNTS = 12000
BATCH = 4
#: Kills that must land inside the migration (after it started, before it returned).
KILLS = 65
MIN_KILLS = 50
#: The part of the accounts left for the final run (so that it really resumes).
RESERVE = 0.12
REGISTRY_CURRENCIES = ("GBP", "EUR", "JPY")
#: Legacy amounts exactly as the legacy system wrote them (kept byte for byte).
AMOUNTS = ("12.5", "12.50", "0.00", "1234567.891", "7", "0.1", "99999999.99", "250.000", "3.14159")

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys
    import omnicloud as oc

    path, fixed, batch, dry = sys.argv[1], dt.datetime.fromisoformat(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "dry"
    store = oc.Store.open(path)

    def progress(p):
        # One line per committed batch (in a dry run: per batch counted).
        sys.stdout.write(f"p {p.processed}\\n")
        sys.stdout.flush()

    print("start", flush=True)
    report = oc.migrate_billing_currency(store, batch_size=batch, clock=oc.ManualClock(fixed), progress=progress, dry_run=dry)
    print(f"done {report.processed} {report.resumed_after} {report.invoices_backfilled} {report.batches} {report.dry_run}", flush=True)
    """
)


# ----- the legacy database ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Legacy:
    path: Path
    accounts: list[str]
    invoices: list[tuple[str, str, str, dt.datetime, dt.datetime, dt.datetime]]
    expected_currency: dict[str, str]
    hand_set: frozenset[str]


def build_legacy(path: Path) -> Legacy:
    rng = random.Random(20260314)
    store = oc.Store.open(path)
    clock = oc.ManualClock(IMPORTED)
    svc = oc.BillingService(store, clock)
    accounts = [f"legacy-{i:05d}" for i in range(ACCOUNTS)]
    # Imported in shuffled order: the migration must still go in tenant-id order.
    shuffled = accounts[:]
    rng.shuffle(shuffled)
    assert svc.import_legacy_accounts(shuffled) == ACCOUNTS
    invoices = []
    for i, t in enumerate(accounts):
        for k in range(rng.randint(1, 3)):
            start = dt.datetime(2025, 1 + (i + k) % 11, 1, tzinfo=UTC)
            end = dt.datetime(2025, 2 + (i + k) % 11, 1, tzinfo=UTC)
            issued = end + dt.timedelta(days=1, seconds=i)
            invoices.append((f"INV-{i:05d}-{k}", t, rng.choice(AMOUNTS), start, end, issued))
    assert svc.import_legacy_invoices(invoices) == len(invoices)
    registry = oc.TenantRegistry(store, clock)
    expected = dict.fromkeys(accounts, "USD")
    for i in range(0, ACCOUNTS, 5):
        code = REGISTRY_CURRENCIES[(i // 5) % 3]
        registry.create(oc.Tenant(accounts[i], f"Legacy customer {i}", code))
        expected[accounts[i]] = code
    # A few accounts were given a currency by hand before the migration: it must keep it.
    hand_set = frozenset(accounts[3::211])
    for t in hand_set:
        svc.upsert_tenant(t, "CHF")
        expected[t] = "CHF"
    return Legacy(path, accounts, invoices, expected, hand_set)


RAW = RawSQLite()


@pytest.fixture(scope="module", autouse=True)
def _raw_sqlite_helper() -> Iterator[None]:
    yield
    RAW.close()


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy (WAL content included) through SQLite's backup API."""
    RAW.call("backup", src, str(dst))
    return dst


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, each column with its SQLite storage class, in a fixed order."""
    return {name: [tuple(r) for r in table] for name, table in RAW.call("dump", path).items()}


def full_dump(path: Path) -> list[str]:
    """The whole database as SQL text: schema, triggers, indexes and rows."""
    return [str(line) for line in RAW.call("iterdump", path)]


def rows(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in RAW.call("rows", path, sql, args)]


def checkpoint(path: Path) -> tuple[str, int, str | None] | None:
    """(last_tenant_id, processed, finished_at) of the migration checkpoint, if any."""
    found = rows(path, "SELECT last_tenant_id, processed, finished_at FROM billing_migration_checkpoint WHERE id = 1")
    return (str(found[0][0]), int(found[0][1]), found[0][2]) if found else None


def integrity_ok(path: Path) -> None:
    """PRAGMA integrity_check through the library's SQLite, and through Python's unless it is
    one of the releases (3.40.0 to 3.41.0) with false "NULL value in" findings on WITHOUT
    ROWID tables."""
    oc.Store.open(path).integrity_check()
    if not (3, 40, 0) <= sqlite3.sqlite_version_info <= (3, 41, 0):
        assert rows(path, "PRAGMA integrity_check") == [("ok",)]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Legacy:
    return build_legacy(tmp_path_factory.mktemp("legacy") / "legacy.db")


@dataclasses.dataclass(frozen=True)
class Reference:
    path: Path
    report: oc.MigrationReport
    seconds: float
    dump: dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def reference(legacy: Legacy, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The uninterrupted run, in process, with the same fixed clock."""
    path = copy_db(legacy.path, tmp_path_factory.mktemp("reference") / "reference.db")
    store = oc.Store.open(path)
    began = time.perf_counter()
    report = oc.migrate_billing_currency(store, batch_size=BATCH, clock=oc.ManualClock(FIXED))
    seconds = time.perf_counter() - began
    del store
    return Reference(path, report, seconds, dump(path))


# ----- running and killing the child ------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One launch of the child: how it was stopped and what it printed."""

    mode: str
    returncode: int
    lines: list[str]
    before: tuple[str, int, str | None] | None
    after: tuple[str, int, str | None] | None
    #: Seconds from the launch to the "start" line, when it was read before the kill.
    startup: float | None = None
    #: Progress lines read before the kill and the seconds they took after "start".
    timed_batches: tuple[int, float] | None = None

    @property
    def started(self) -> bool:
        return "start" in self.lines

    @property
    def finished(self) -> bool:
        return any(line.startswith("done") for line in self.lines)

    @property
    def interrupted(self) -> bool:
        """Killed after the migration began and before it returned, with work left to do."""
        work_left = self.before is None or self.before[2] is None
        return work_left and self.returncode == -signal.SIGKILL and self.started and not self.finished

    @property
    def progress(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("p ")]


def run_once(path: Path, dry: bool, mode: str, delay: float = 0.0, nth: int = 0) -> Run:
    """Launches the child and stops it as `mode` says:

    * ``spawn``: SIGKILL `delay` seconds after the launch, wherever it is (interpreter start,
      import, opening the store, or already migrating);
    * ``start``: SIGKILL as soon as it announces the migration is starting;
    * ``time``: SIGKILL `delay` seconds after that announcement (anywhere in a batch: choosing
      currencies, inside the write transaction, committing, reporting progress);
    * ``nth``: SIGKILL after reading its `nth` progress line, plus `delay` seconds;
    * ``finish``: no kill, wait for it to exit.
    """
    before = checkpoint(path)
    lines: list[str] = []
    startup: float | None = None
    timed: tuple[int, float] | None = None
    argv = [sys.executable, "-c", CHILD, str(path), FIXED.isoformat(), str(BATCH), "dry" if dry else "real"]
    launched = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            if mode == "spawn":
                time.sleep(delay)
            elif mode in ("start", "time", "nth"):
                line = proc.stdout.readline()
                lines.append(line.strip())
                if line.strip() == "start":
                    started = time.perf_counter()
                    startup = started - launched
                    seen = 0
                    while mode == "nth" and seen < nth:
                        line = proc.stdout.readline()
                        if not line:
                            break
                        lines.append(line.strip())
                        seen += line.startswith("p ")
                    if seen:
                        timed = (seen, time.perf_counter() - started)
                    if delay:
                        time.sleep(delay)
            if mode != "finish":
                os.kill(proc.pid, signal.SIGKILL)
            # Through the same buffered readers as above: communicate() would bypass their
            # buffers and drop lines already read from the pipe.
            out = proc.stdout.read()
            err = proc.stderr.read()
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    lines += [line.strip() for line in out.splitlines()]
    assert proc.returncode in (0, -signal.SIGKILL), f"the child failed ({proc.returncode}): {err}"
    return Run(mode, proc.returncode, lines, before, checkpoint(path), startup, timed)


def migrate_with_kills(path: Path, seconds: float, kills: int, seed: int) -> list[Run]:
    """Kills the migration at random points until `kills` launches were interrupted
    mid-migration, then lets it finish.

    The delays are drawn from a seeded random and scaled by the run time measured so far
    (the uninterrupted in-process run first, then the child's own pace): each kill takes on
    average a fair share of what is left, so the kills cover the run from the interpreter's
    start to its last part; RESERVE of the accounts are kept for the final, resumed run."""
    rng = random.Random(seed)
    per_batch = max(seconds / (ACCOUNTS / BATCH), 1e-5)
    startups: list[float] = []
    runs: list[Run] = []
    while sum(r.interrupted for r in runs) < kills:
        assert len(runs) < 10 * kills, "too many launches: the kills do not land in the migration"
        cp = checkpoint(path)
        done = cp[1] if cp and cp[2] is None else 0
        budget = max((ACCOUNTS * (1 - RESERVE) - done) / BATCH, 1.0)
        share = budget / (kills - sum(r.interrupted for r in runs) + 5)
        startup = sorted(startups)[len(startups) // 2] if startups else 0.2
        roll = rng.random()
        if roll < 0.08:
            run = run_once(path, False, "spawn", delay=rng.uniform(0.3, 1.0) * startup)
        elif roll < 0.20:
            run = run_once(path, False, "start")
        elif roll < 0.60:
            run = run_once(path, False, "time", delay=rng.uniform(0.0, 2 * share * per_batch))
        else:
            nth = rng.randint(1, max(1, int(2 * share)))
            run = run_once(path, False, "nth", nth=nth, delay=rng.choice([0.0, rng.uniform(0.0, per_batch)]))
        runs.append(run)
        if run.startup is not None:
            startups.append(run.startup)
        if run.timed_batches is not None and run.timed_batches[0] >= 3:
            per_batch = run.timed_batches[1] / run.timed_batches[0]  # the child's own pace
        if run.after is not None and run.after[2] is not None:
            return runs  # finished before it could be killed enough: the caller checks
    runs.append(run_once(path, False, "finish"))
    return runs


# ----- the tests --------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(
    legacy: Legacy, reference: Reference, tmp_path: Path
) -> None:
    original = dump(legacy.path)
    path = copy_db(legacy.path, tmp_path / "crash.db")
    runs = migrate_with_kills(path, reference.seconds, KILLS, seed=20261129)
    interrupted = [r for r in runs if r.interrupted]
    assert len(interrupted) >= MIN_KILLS, f"only {len(interrupted)} kills interrupted the migration"
    final = runs[-1]
    assert final.returncode == 0 and final.finished, final
    assert final.before is not None and final.before[2] is None, "the migration ended during the kill phase"
    # The kills landed all along the run, from before the first batch to the last ones.
    points = [r.before[1] if r.before and r.before[2] is None else 0 for r in interrupted]
    assert min(points) == 0 and max(points) >= ACCOUNTS // 2
    assert any(r.mode in ("spawn", "start") for r in interrupted), "no very early kill"
    assert Counter(r.mode for r in interrupted)["time"] > 0 and Counter(r.mode for r in interrupted)["nth"] > 0

    # Each launch resumed exactly after the checkpoint left by the one before: no batch done
    # twice, none skipped.
    for run in runs:
        resumed_from = run.before[1] if run.before and run.before[2] is None else 0
        expected = list(range(resumed_from + BATCH, ACCOUNTS + BATCH, BATCH))
        expected = [min(p, ACCOUNTS) for p in expected]
        assert run.progress == expected[: len(run.progress)], (run.mode, resumed_from, run.progress[:3])
        if run.after is not None and run.after[2] is None:
            assert run.after[1] >= resumed_from and (run.after[1] - resumed_from) % BATCH == 0
    processed, resumed_after, backfilled, batches, dry = final.lines[-1].split()[1:]
    assert int(resumed_after) > 0 and int(processed) + int(resumed_after) == ACCOUNTS, [
        (r.mode, r.before, r.after, r.lines[-1:], r.timed_batches) for r in runs[-8:]
    ]
    assert dry == "False" and int(batches) == -(-int(processed) // BATCH)

    # Row for row, every table equals the uninterrupted run's.
    crashed = dump(path)
    assert list(crashed) == list(reference.dump)
    for table, reference_rows in reference.dump.items():
        assert crashed[table] == reference_rows, f"{table} differs from the uninterrupted run"
    check_migrated(path, legacy, original)


def check_migrated(path: Path, legacy: Legacy, original: dict[str, list[tuple[Any, ...]]], with_checkpoint: bool = True) -> None:
    """What a finished migration must have done, checked directly."""
    migrated = rows(path, "SELECT tenant_id, migrated_at FROM billing_accounts ORDER BY tenant_id")
    assert [t for t, _ in migrated] == legacy.accounts
    assert {m for _, m in migrated} == {"2026-03-14T09:26:53.589793000Z"}, "an account was skipped or stamped twice"
    changes = rows(path, "SELECT tenant_id, effective_from, currency FROM billing_currency_changes ORDER BY tenant_id")
    assert Counter(t for t, _, _ in changes) == Counter(legacy.accounts), "an account got no currency or two"
    for t, effective, code in changes:
        assert code == legacy.expected_currency[t], t
        if t not in legacy.hand_set:
            assert effective == "2026-04-01T00:00:00.000000000Z"
    copied = rows(
        path,
        "SELECT i.id, i.tenant_id, i.total, i.total_usd, i.currency, i.legacy, i.kind, l.amount_usd"
        " FROM billing_invoices i JOIN billing_legacy_invoices l ON l.id = i.id ORDER BY i.id",
    )
    assert len(copied) == len(legacy.invoices) == rows(path, "SELECT count(*) FROM billing_invoices")[0][0]
    assert sorted(r[0] for r in copied) == sorted(inv[0] for inv in legacy.invoices), "a legacy invoice was copied twice or never"
    for invoice_id, tenant, total, total_usd, currency, is_legacy, kind, amount in copied:
        assert (total, total_usd, currency, is_legacy, kind) == (amount, amount, "USD", 1, "invoice"), invoice_id
    # The legacy rows themselves are byte for byte what was imported.
    assert dump(path)["billing_legacy_invoices"] == original["billing_legacy_invoices"]
    assert rows(path, "SELECT hex(id), hex(tenant_id), hex(amount_usd) FROM billing_legacy_invoices ORDER BY id") == [
        (r[0].encode().hex().upper(), r[1].encode().hex().upper(), r[2].encode().hex().upper())
        for r in sorted(legacy.invoices)
    ]
    if with_checkpoint:
        last, processed, finished = checkpoint(path) or ("", 0, None)
        assert (last, processed, finished) == (legacy.accounts[-1], ACCOUNTS, "2026-03-14T09:26:53.589793000Z")
        assert rows(path, "SELECT invoices_backfilled FROM billing_migration_checkpoint") == [(len(legacy.invoices),)]
    integrity_ok(path)
    # And through the library: legacy invoices once each, in USD, exactly as written.
    svc = oc.BillingService(oc.Store.open(path), oc.ManualClock(FIXED))
    by_tenant: dict[str, list[tuple[str, str]]] = {}
    for invoice_id, tenant, amount, *_ in legacy.invoices:
        by_tenant.setdefault(tenant, []).append((invoice_id, amount))
    for t in legacy.accounts[::29]:
        listed = svc.invoices(t)
        assert sorted((i.id, str(i.total.amount)) for i in listed) == sorted(by_tenant[t])
        assert all(i.legacy and i.currency.code == "USD" and i.total_usd == i.total for i in listed)
        account = svc.account(t)
        assert account.legacy
        if t in legacy.hand_set:
            assert (account.currency.code, account.pending_currency) == ("CHF", None)
        else:
            assert (account.pending_currency, account.pending_from) == (oc.Currency(legacy.expected_currency[t]), EFFECTIVE)


def test_the_reference_run_migrated_everything(legacy: Legacy, reference: Reference, tmp_path: Path) -> None:
    report = reference.report
    assert (report.processed, report.resumed_after, report.dry_run) == (ACCOUNTS, 0, False)
    assert report.invoices_backfilled == len(legacy.invoices)
    assert report.batches == ACCOUNTS // BATCH and report.effective_from == EFFECTIVE
    assert sum(report.currencies.values()) <= ACCOUNTS
    check_migrated(reference.path, legacy, dump(legacy.path))
    # A second run starts a new pass that finds nothing left to do, and changes nothing.
    path = copy_db(reference.path, tmp_path / "again.db")
    again = oc.migrate_billing_currency(oc.Store.open(path), batch_size=BATCH, clock=oc.ManualClock(FIXED))
    assert (again.processed, again.resumed_after, again.invoices_backfilled, again.batches) == (0, 0, 0, 0)
    assert dump(path) == reference.dump


def test_the_report_counts_only_the_currencies_the_migration_set(legacy: Legacy, reference: Reference) -> None:
    """report.currencies is "accounts given a currency, by currency": the accounts that
    already had a currency (set by hand through upsert_tenant, which the migration keeps)
    were given none and are not counted under the currency the migration would have chosen."""
    given = Counter(code for t, code in legacy.expected_currency.items() if t not in legacy.hand_set)
    assert reference.report.currencies == dict(given)


@pytest.mark.timeout(300)
def test_a_killed_dry_run_leaves_the_database_unchanged(legacy: Legacy, reference: Reference, tmp_path: Path) -> None:
    path = copy_db(legacy.path, tmp_path / "dry.db")
    before = full_dump(path)
    rng = random.Random(7)
    per_batch = reference.seconds / (ACCOUNTS / BATCH)
    kills = 0
    for n in range(12):
        if n % 3 == 0:
            run = run_once(path, True, "nth", nth=rng.randint(1, ACCOUNTS // BATCH - 1))
        elif n % 3 == 1:
            run = run_once(path, True, "time", delay=rng.uniform(0.0, reference.seconds / 4))
        else:
            run = run_once(path, True, "nth", nth=rng.randint(1, 40), delay=rng.uniform(0.0, per_batch))
        kills += run.interrupted
        assert run.after is None, "a dry run wrote a checkpoint"
        assert run.progress[:1] in ([], [BATCH]), "a dry run resumed from something"
        assert full_dump(path) == before, f"a dry run killed ({run.mode}) changed the database"
    assert kills >= 6
    final = run_once(path, True, "finish")
    processed, resumed_after, backfilled, batches, dry = final.lines[-1].split()[1:]
    assert (int(processed), int(resumed_after), int(backfilled), dry) == (ACCOUNTS, 0, len(legacy.invoices), "True")
    assert full_dump(path) == before
    integrity_ok(path)


def test_a_run_resumed_after_a_kill_reports_what_was_done_before(legacy: Legacy, reference: Reference, tmp_path: Path) -> None:
    path = copy_db(legacy.path, tmp_path / "resume.db")
    killed = run_once(path, False, "nth", nth=7)
    assert killed.interrupted and killed.progress[:7] == [BATCH * k for k in range(1, 8)]
    cp = checkpoint(path)
    assert cp is not None and cp[2] is None
    last, done, _ = cp
    assert done >= 7 * BATCH and done % BATCH == 0 and last == legacy.accounts[done - 1]
    seen: list[oc.MigrationProgress] = []
    report = oc.migrate_billing_currency(
        oc.Store.open(path), batch_size=BATCH, clock=oc.ManualClock(FIXED), progress=seen.append
    )
    assert report.resumed_after == done > 0
    assert report.processed == ACCOUNTS - done
    assert seen[0].processed == done + BATCH and seen[0].total == ACCOUNTS
    assert seen[-1].processed == ACCOUNTS and seen[-1].last_tenant_id == legacy.accounts[-1]
    assert dump(path) == reference.dump


def run_together(path: Path, children: int, kill_after: int | None) -> tuple[list[str], int]:
    """Runs `children` migrations of the same file at once; with `kill_after`, the first child
    to commit kill_after batches is killed then (whichever it is: SQLite's busy handler is not
    fair, so one child may get the lock for most of the run while another gets a few batches).
    Returns the finished runs' "done" lines and how many were killed mid-migration."""
    argv = [sys.executable, "-c", CHILD, str(path), FIXED.isoformat(), str(BATCH), "real"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(children)]
    lines: list[list[str]] = [[] for _ in procs]
    batches = [0 for _ in procs]
    arrived: queue.Queue[tuple[int, str | None]] = queue.Queue()

    def read(n: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            arrived.put((n, line.strip()))
        arrived.put((n, None))

    readers = [threading.Thread(target=read, args=(n, proc), daemon=True) for n, proc in enumerate(procs)]
    for reader in readers:
        reader.start()
    victim: int | None = None
    try:
        open_streams = len(procs)
        while open_streams:
            n, line = arrived.get(timeout=120)
            if line is None:
                open_streams -= 1
                continue
            lines[n].append(line)
            batches[n] += line.startswith("p ")
            if victim is None and kill_after is not None and batches[n] >= kill_after:
                victim = n
                os.kill(procs[n].pid, signal.SIGKILL)
        done: list[str] = []
        killed = 0
        for n, proc in enumerate(procs):
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.wait(timeout=120)
            assert proc.returncode in (0, -signal.SIGKILL), err
            if proc.returncode == 0:
                done += [line for line in lines[n] if line.startswith("done")]
            else:
                killed += "start" in lines[n] and not any(line.startswith("done") for line in lines[n])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(timeout=10)
        for proc in procs:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    return done, killed


@pytest.mark.timeout(300)
def test_concurrent_migrations_one_killed_never_process_an_account_twice(
    legacy: Legacy, reference: Reference, tmp_path: Path
) -> None:
    """Three migrations of the same file at once (an operator started it twice, a deploy
    hook once more), one killed mid-run, then one more run: every account is migrated once,
    every legacy invoice copied once, the data identical to a single uninterrupted run."""
    original = dump(legacy.path)
    path = copy_db(legacy.path, tmp_path / "together.db")
    rng = random.Random(11)
    _, killed = run_together(path, 3, kill_after=rng.randint(3, 60))
    assert killed == 1
    final = run_once(path, False, "finish")
    assert final.returncode == 0
    crashed = dump(path)
    for table, reference_rows in reference.dump.items():
        if table != "billing_migration_checkpoint":
            assert crashed[table] == reference_rows, f"{table} differs from the uninterrupted run"
    check_migrated(path, legacy, original, with_checkpoint=False)


@pytest.mark.timeout(300)
def test_concurrent_migrations_account_for_each_account_once(legacy: Legacy, reference: Reference, tmp_path: Path) -> None:
    """Runs that overlap skip the accounts another run already migrated, so their reports
    add up to the accounts there were (report.processed is "accounts processed by this
    run"), and the checkpoint of the finished pass is the same as after a single run."""
    path = copy_db(legacy.path, tmp_path / "together.db")
    done, killed = run_together(path, 3, kill_after=None)
    assert killed == 0 and len(done) == 3
    reports = [line.split()[1:] for line in done]
    assert sum(int(r[2]) for r in reports) == len(legacy.invoices), "a legacy invoice was copied twice"
    crashed = dump(path)
    for table, reference_rows in reference.dump.items():
        if table != "billing_migration_checkpoint":
            assert crashed[table] == reference_rows, f"{table} differs from the uninterrupted run"
    assert sum(int(r[0]) for r in reports) == ACCOUNTS, f"reports claim {[int(r[0]) for r in reports]} accounts processed"
    assert checkpoint(path) == checkpoint(reference.path)
