"""Crash safety of failover plans (spec Task 1): the controller killed with SIGKILL mid-failover
in a subprocess, restarted, completes the plan; every resource promoted exactly once.

A child process owns the controller. It opens a store file, registers a tenant's tiered service
(databases, application servers that need them, load balancers in front) in the primary region
-- only the resources not registered yet, so a child killed while registering is simply
relaunched -- and promotes standbys through a file-backed resource controller written in
Python: each promotion appends a line to an append-only log (flushed and fsynced) and sleeps a
few milliseconds so the parent can kill it mid-plan. The controller is idempotent, as the
library requires: promoting a standby already promoted in that region writes a "repeat" line
and changes nothing. The plan promotes wave by wave (a wave's resources depend on none of each
other) with up to PARALLELISM promotions at once, writing completions with their audit entries
as they arrive; at most twice the parallelism of completed steps are ever unwritten, so only
those may be repeated on resume, and never a step a killed run had already committed.

The parent kills the child at random points (mid-registration once, as the plan resumes, or
once the log grew by a random number of promotions plus a random part of a step) and
relaunches it until a run finishes; a run that finds no plan starts a manual failover, later
ones construct a fresh controller whose evaluate() resumes the open plan. Then the log, the
persisted plan, the audit trail and the tenant's serving region are checked.

The second test kills a failback of one tenant while a second tenant, with the same regions, a
policy and resources of its own, must stay untouched.

The third kills the child at the plan's two edges, where no step is in flight: right after
the plan is persisted (around its failover.initiated audit entry) and right after it
completes (around its failover.completed entry and the tenant's new serving region). The
first two tests keep their kills away from these edges so that they check the steps only.

The store file is never opened with Python's sqlite3 in this process (see tests/rawsqlite.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import omnicloud as oc
from tests.rawsqlite import RawSQLite

PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"
TENANT, OTHER = "acme", "globex"
#: The DNS record of each tenant's policy: (name, primary value, secondary value).
RECORDS = {
    TENANT: ("acme.example.com", "192.0.2.10", "198.51.100.10"),
    OTHER: ("globex.example.com", "192.0.2.20", "198.51.100.20"),
}
#: The interrupted tenant's service: 60 databases, 120 app servers, 120 load balancers.
SERVICE = 300
#: Milliseconds the child's resource controller sleeps before and after writing a promotion:
#: a kill in the first part loses the promotion, a kill in the second one (the promotion done
#: but the step not yet committed) makes the resumed plan repeat it.
SLEEP_BEFORE_MS, SLEEP_AFTER_MS = 1.0, 3.0
#: Promotions of one wave running at once in the child's controller.
PARALLELISM = 8
#: Kills aimed at; the plan must have been interrupted at least MIN_KILLS times.
KILLS = 40
MIN_KILLS = 20
#: The part of the plan left for the final, resumed run.
RESERVE = 0.1
#: Wall-clock budget of the kill phase (the final run comes after it).
KILL_PHASE_S = 45.0

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import omnicloud as oc

    db, log_path, spec_path, mode, run = sys.argv[1:6]
    before_s, after_s = float(sys.argv[6]) / 1000, float(sys.argv[7]) / 1000
    watch = sys.argv[8]
    with open(spec_path) as f:
        spec = json.load(f)

    import threading

    class FileResources:
        '''Standbys promoted into an append-only log; idempotent per (resource, region).
        Called from several threads at once.'''

        def __init__(self, path):
            self.lock = threading.Lock()
            self.region = {}
            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        verb, rid, region, _ = line.split()
                        if verb == "promote":
                            self.region[rid] = region
            self.log = open(path, "a")

        def _write(self, line):
            self.log.write(line + "\\n")
            self.log.flush()
            os.fsync(self.log.fileno())

        def promote(self, rid, region):
            time.sleep(before_s)
            with self.lock:
                if self.region.get(rid) == region:
                    self._write(f"repeat {rid} {region} {run}")
                else:
                    self._write(f"promote {rid} {region} {run}")
                    self.region[rid] = region
            time.sleep(after_s)

    store = oc.Store.open(db)
    clock = oc.SystemClock()
    audit = oc.AuditLog(store, clock=clock)
    state = oc.StateManager(store, clock=clock)
    present = {r.id for r in state.list()}
    added = 0
    for tenant, resources in spec["tenants"].items():
        for rid, kind, deps in resources:
            if rid not in present:
                state.register(oc.Resource(rid, tenant, kind, spec["primary"], {"tier": kind}, depends_on=deps))
                added += 1
                if added % 25 == 0:
                    print("reg", added, flush=True)
    dns = oc.InMemoryDns()
    controller = oc.FailoverController(
        state, dns, audit=audit, clock=clock, resources=FileResources(log_path), parallelism=int(sys.argv[9])
    )
    for tenant, (name, first, second) in spec["records"].items():
        try:
            controller.status(tenant)
        except oc.NoFailoverPolicyError:
            record = oc.DnsRecord("example.com", name, "A", first, second, ttl=30)
            controller.set_policy(oc.FailoverPolicy(tenant, spec["primary"], spec["secondary"], dns_records=[record]))

    tenant = spec["act_on"]
    before = [r for r in controller.reports(tenant) if r.kind == mode]
    dns_pending = not before or any(s.action == "switch_dns" and s.at is None for s in before[-1].steps)
    watcher = None
    if watch != "none":
        # SIGKILL this process the moment a second connection sees the new plan persisted
        # ("planned") or completed ("completed"): the controller runs without the GIL.
        import signal, threading
        seen = oc.Store.open(db)
        observer = oc.FailoverController(oc.StateManager(seen), oc.InMemoryDns(), store=seen)
        known = {r.id for r in observer.reports(tenant)}

        def reached():
            new = [r for r in observer.reports(tenant) if r.id not in known]
            return bool(new) if watch == "planned" else any(r.status == "completed" for r in new)

        def kill_when_reached():
            while not reached():
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        watcher = threading.Thread(target=kill_when_reached, daemon=True)
        watcher.start()
    print("ready", flush=True)
    if not before:
        act = getattr(controller, mode)
        returned = [act(tenant, "chaos drill", operator="chaos")]
        how = mode
    else:
        returned = controller.evaluate()
        how = "evaluate"
    if watcher is not None:
        watcher.join(30)
    plans = [r for r in controller.reports(tenant) if r.kind == mode]
    print("done " + json.dumps({
        "how": how,
        "returned": [[r.tenant_id, r.id, r.status] for r in returned],
        "plans": [[r.id, r.status] for r in plans],
        "dns_pending": dns_pending,
        "dns": dns.lookup(spec["records"][tenant][0]),
        "serving": controller.status(tenant).serving_region,
    }), flush=True)
    """
)


# ----- the service ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Service:
    """A tenant's resources: id -> (kind, dependencies), in registration order."""

    tenant: str
    resources: dict[str, tuple[str, list[str]]]


def tiered_service(tenant: str, size: int, seed: int) -> Service:
    """size / 5 databases, 2 size / 5 app servers each needing one or two databases, 2 size / 5
    load balancers each in front of one to three app servers; registered in shuffled order (the
    plan must follow the graph, not the registration order)."""
    rng = random.Random(seed)
    dbs = [f"{tenant}-db-{i:03d}" for i in range(size // 5)]
    apps = [f"{tenant}-app-{i:03d}" for i in range(2 * size // 5)]
    lbs = [f"{tenant}-lb-{i:03d}" for i in range(size - len(dbs) - len(apps))]
    entries: list[tuple[str, str, list[str]]] = [(d, "database", []) for d in dbs]
    entries += [(a, "app_server", sorted(rng.sample(dbs, rng.randint(1, 2)))) for a in apps]
    entries += [(lb, "load_balancer", sorted(rng.sample(apps, rng.randint(1, 3)))) for lb in lbs]
    rng.shuffle(entries)
    return Service(tenant, {rid: (kind, deps) for rid, kind, deps in entries})


def write_spec(path: Path, services: list[Service], act_on: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "primary": PRIMARY,
                "secondary": SECONDARY,
                "tenants": {
                    s.tenant: [[rid, kind, deps] for rid, (kind, deps) in s.resources.items()] for s in services
                },
                "records": {s.tenant: list(RECORDS[s.tenant]) for s in services},
                "act_on": act_on,
            }
        )
    )
    return path


# ----- the promotion log ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Promotion:
    """One line of the log: an effective promotion or an idempotent repeat."""

    verb: str
    resource_id: str
    region: str
    run: int


def read_log(path: Path) -> list[Promotion]:
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a torn line in the promotion log"
    out = []
    for line in text.splitlines():
        verb, rid, region, run = line.split()
        assert verb in ("promote", "repeat"), line
        out.append(Promotion(verb, rid, region, int(run)))
    return out


def log_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# ----- running and killing the child ------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One launch of the child: how it was stopped and what it printed."""

    index: int
    mode: str
    returncode: int
    lines: list[str]
    #: Promotion-log lines before the launch and when it ended.
    log_before: int
    log_after: int

    @property
    def started(self) -> bool:
        return "ready" in self.lines

    @property
    def done(self) -> dict[str, Any] | None:
        for line in self.lines:
            if line.startswith("done "):
                found: dict[str, Any] = json.loads(line[5:])
                return found
        return None

    @property
    def interrupted(self) -> bool:
        """Killed after the plan started (or resumed) and before it returned."""
        return self.returncode == -signal.SIGKILL and self.started and self.done is None

    @property
    def progressed(self) -> bool:
        return self.log_after > self.log_before


@dataclasses.dataclass
class Crash:
    """Launches the child over one store, promotion log and spec, and kills it."""

    db: Path
    log: Path
    spec: Path
    kind: str
    runs: list[Run] = dataclasses.field(default_factory=list)

    def launch(self, mode: str, lines: int = 0, delay: float = 0.0, sleeps: bool = True) -> Run:
        """One launch, stopped as `mode` says:

        * ``register``: SIGKILL at the first registration progress line (mid-registration);
        * ``ready``: SIGKILL as soon as it is about to start or resume the plan;
        * ``lines``: SIGKILL once the promotion log grew by `lines`, plus `delay` seconds;
        * ``planned``, ``completed``: the child kills itself with SIGKILL as soon as it sees
          the new plan persisted, or completed, through a second connection;
        * ``finish``: no kill, wait for it to exit.

        Without `sleeps`, promotions take no time.
        """
        index = len(self.runs)
        before_ms, after_ms = (SLEEP_BEFORE_MS, SLEEP_AFTER_MS) if sleeps else (0.0, 0.0)
        watch = mode if mode in ("planned", "completed") else "none"
        argv = [
            sys.executable, "-c", CHILD, str(self.db), str(self.log), str(self.spec), self.kind, str(index),
            str(before_ms), str(after_ms), watch, str(PARALLELISM),
        ]
        before = log_lines(self.log)
        out: list[str] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                if mode in ("register", "ready", "lines"):
                    wanted = "reg" if mode == "register" else "ready"
                    while True:
                        line = proc.stdout.readline()
                        if not line:
                            break
                        out.append(line.strip())
                        if line.split()[0] == wanted:
                            break
                    if mode == "lines":
                        deadline = time.monotonic() + 30
                        while log_lines(self.log) < before + lines and proc.poll() is None:
                            assert time.monotonic() < deadline, "the plan made no progress"
                            time.sleep(0.0005)
                        time.sleep(delay)
                    os.kill(proc.pid, signal.SIGKILL)
                # Through the same buffered reader as above (communicate() would bypass it).
                rest = proc.stdout.read()
                err = proc.stderr.read()
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        out += [line.strip() for line in rest.splitlines()]
        assert proc.returncode in (0, -signal.SIGKILL), f"the child failed ({proc.returncode}): {err}"
        run = Run(index, mode, proc.returncode, out, before, log_lines(self.log))
        self.runs.append(run)
        return run

    def until_done(self, steps: int, seed: int, kill_registration: bool = False) -> Run:
        """Kills the plan at random points until KILLS launches were interrupted mid-plan (or
        the time budget is spent), keeping RESERVE of the `steps` promotions for the last run;
        then lets a run finish and returns it."""
        rng = random.Random(seed)
        started = time.monotonic()
        base = log_lines(self.log)
        step_s = (SLEEP_BEFORE_MS + SLEEP_AFTER_MS) / 1000
        if kill_registration:
            run = self.launch("register")
            assert run.returncode == -signal.SIGKILL and not run.started, "the registration was not interrupted"
        while sum(r.interrupted for r in self.runs) < KILLS and time.monotonic() - started < KILL_PHASE_S:
            assert len(self.runs) < 4 * KILLS, "too many launches: the kills do not land in the plan"
            done = log_lines(self.log) - base
            budget = max(steps * (1 - RESERVE) - done, 1.0)
            share = budget / (KILLS - sum(r.interrupted for r in self.runs) + 3)
            roll = rng.random()
            # Kills as the plan resumes only once it exists (written by a run that promoted
            # something): before that a kill there could land at the plan's edge, which
            # test_a_failover_killed_at_an_edge_of_the_plan... covers on purpose.
            if roll < 0.1 and done > 0:
                run = self.launch("ready")
            else:
                # Half of the kills right after a promotion was written (before its step was
                # committed: the resumed plan repeats it), half anywhere in the next step.
                delay = rng.uniform(0, SLEEP_AFTER_MS / 1000) if roll < 0.55 else rng.uniform(0, 1.5 * step_s)
                run = self.launch("lines", lines=rng.randint(1, max(1, int(2 * share))), delay=delay)
            if run.done is not None:
                return run  # finished before it could be killed enough: the caller checks
        return self.launch("finish")


# ----- checks -----------------------------------------------------------------------------


RAW = RawSQLite()


@pytest.fixture(scope="module", autouse=True)
def _raw_sqlite_helper() -> Iterator[None]:
    yield
    RAW.close()


@dataclasses.dataclass
class Opened:
    """The store as a fresh controller sees it (in this process, after the children)."""

    store: oc.Store
    audit: oc.AuditLog
    state: oc.StateManager
    resources: oc.InMemoryResources
    controller: oc.FailoverController


def open_fresh(db: Path) -> Opened:
    store = oc.Store.open(db)
    audit = oc.AuditLog(store)
    state = oc.StateManager(store)
    resources = oc.InMemoryResources()
    controller = oc.FailoverController(state, oc.InMemoryDns(), audit=audit, resources=resources)
    return Opened(store, audit, state, resources, controller)


def check_promotions(
    promotions: list[Promotion], service: Service, region: str, plan: oc.FailoverReport, runs: list[Run]
) -> int:
    """The promotion log of one plan: every resource promoted exactly once, after all its
    dependencies, in `region`; repeats only of promotions a killed earlier run made, at most
    twice the parallelism per run (the completions a run may hold unwritten). Returns the
    number of repeats."""
    effective = [p for p in promotions if p.verb == "promote"]
    counts = Counter(p.resource_id for p in effective)
    assert set(counts) == set(service.resources), "a resource was never promoted, or one not in the service was"
    twice = sorted(rid for rid, n in counts.items() if n > 1)
    assert not twice, f"promoted more than once: {twice[:10]}"
    assert {p.region for p in promotions} == {region}
    order = [p.resource_id for p in effective]
    position = {rid: i for i, rid in enumerate(order)}
    for rid, (_, deps) in service.resources.items():
        late = [d for d in deps if position[d] > position[rid]]
        assert not late, f"{rid} was promoted before its dependencies {late}"
    # Runs are sequential: each run's lines are contiguous and in launch order.
    assert [p.run for p in promotions] == sorted(p.run for p in promotions)
    by_index = {r.index: r for r in runs}
    first_run = {p.resource_id: p.run for p in effective}
    repeats_per_run = Counter(p.run for p in promotions if p.verb == "repeat")
    for p in promotions:
        if p.verb != "repeat":
            continue
        made = first_run[p.resource_id]
        assert made < p.run, f"{p.resource_id} repeated within run {p.run}: a completed step was redone"
        assert by_index[made].returncode == -signal.SIGKILL, f"{p.resource_id} repeated after a run that was not killed"
        # Only the last promotions of the killed run can have been unwritten.
        last = [q.resource_id for q in effective if q.run == made][-2 * PARALLELISM :]
        assert p.resource_id in last, f"run {p.run} repeated {p.resource_id}, committed long before run {made} was killed"
    worst = max(repeats_per_run.values(), default=0)
    assert worst <= 2 * PARALLELISM, f"a run repeated {worst} promotions, more than twice the parallelism"
    return sum(repeats_per_run.values())


def check_plan(plan: oc.FailoverReport, kind: str, service: Service, to_region: str) -> None:
    """The persisted plan: completed, every step done once, after its dependencies."""
    assert (plan.kind, plan.status, plan.tenant_id, plan.to_region) == (kind, "completed", service.tenant, to_region)
    name = RECORDS[service.tenant][0]
    assert [s.action for s in plan.steps] == ["promote"] * len(service.resources) + ["switch_dns"]
    assert plan.steps[-1].resource_id == name + "."
    assert all(s.at is not None for s in plan.steps), "a step of a completed plan has no completion time"
    assert all(s.attempts >= 1 and s.error is None for s in plan.steps)
    stamps = [s.at for s in plan.steps if s.at is not None]
    done = {s.resource_id: s.at for s in plan.steps if s.at is not None}
    for rid, (_, deps) in service.resources.items():
        late = [d for d in deps if done[d] > done[rid]]
        assert not late, f"{rid} completed before its dependencies {late}"
    assert plan.initiated_at <= min(stamps) and plan.steps[-1].at == max(stamps)
    assert plan.dns_updated_at == plan.steps[-1].at
    assert plan.completed_at is not None and plan.completed_at >= stamps[-1]
    assert plan.trigger == {"automatic": False, "operator": "chaos", "reason": "chaos drill"}


def check_audit(opened: Opened, plan: oc.FailoverReport) -> None:
    """The audit trail verifies and holds the plan's events exactly once each."""
    verification = opened.audit.verify_report()
    assert verification.ok, verification.message
    assert opened.audit.verify()
    events = [
        e for e in opened.audit.query(tenant_id=plan.tenant_id, action="failover.*")
        if e.details["plan_id"] == plan.id
    ]
    actions = Counter(e.action for e in events)
    expected = {"failover.initiated": 1, "failover.step": len(plan.steps), "failover.completed": 1}
    assert actions == expected, f"the plan's audit entries are {dict(actions)}, expected {expected}"
    assert events[0].action == "failover.initiated" and events[-1].action == "failover.completed"
    # Steps of one wave complete (and are audited) in any order: compare in plan order.
    steps = sorted((e for e in events if e.action == "failover.step"), key=lambda e: int(e.details["event"]["position"]))
    assert [e.details["event"]["position"] for e in steps] == list(range(len(plan.steps))), "a step was audited twice"
    assert [e.resource_id for e in steps] == [s.resource_id for s in plan.steps]
    assert [e.details["event"]["attempts"] for e in steps] == [s.attempts for s in plan.steps]
    assert [e.details["event"]["action"] for e in steps] == [s.action for s in plan.steps]
    # Committed together: the entry is stamped just after the step's completion time.
    for e, s in zip(steps, plan.steps):
        assert s.at is not None and dt.timedelta(0) <= e.at - s.at < dt.timedelta(seconds=1), (e, s)


def check_rows(db: Path, plans: int, steps: int) -> None:
    """The persisted rows, read independently: no duplicate plan, no step left open."""
    assert RAW.rows(db, "SELECT count(*), sum(status = 'completed') FROM failover_plans") == [(plans, plans)]
    assert RAW.rows(db, "SELECT count(*), sum(done_at IS NULL) FROM failover_steps") == [(steps, 0)]


def check_final_run(run: Run, plan: oc.FailoverReport, to_region: str, value: str) -> None:
    assert run.returncode == 0 and run.done is not None, run
    done = run.done
    assert done["plans"] == [[plan.id, "completed"]], done
    assert done["serving"] == to_region
    if done["dns_pending"]:
        # DNS lives in the child's memory: it answers the target's value only if this last
        # run switched it.
        assert done["dns"] == [value, 30], done


def summary(runs: list[Run], repeats: int, seconds: float) -> str:
    modes = Counter(r.mode for r in runs if r.interrupted)
    return (
        f"{len(runs)} launches, {sum(r.interrupted for r in runs)} kills mid-plan {dict(modes)}, "
        f"{sum(r.interrupted and r.progressed for r in runs)} after promotions, {repeats} repeats, {seconds:.1f} s"
    )


# ----- the tests --------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_failover_killed_at_random_points_completes_promoting_each_resource_once(tmp_path: Path) -> None:
    began = time.monotonic()
    service = tiered_service(TENANT, SERVICE, seed=20260301)
    db, log = tmp_path / "failover.db", tmp_path / "promotions.log"
    crash = Crash(db, log, write_spec(tmp_path / "spec.json", [service], TENANT), "failover")
    final = crash.until_done(len(service.resources), seed=1129, kill_registration=True)
    runs = crash.runs
    interrupted = [r for r in runs if r.interrupted]
    assert len(interrupted) >= MIN_KILLS, f"only {len(interrupted)} kills interrupted the plan"
    assert sum(r.progressed for r in interrupted) >= MIN_KILLS // 2, "too few kills after promotions"
    assert final.log_before < log_lines(log), "the last run did not resume the plan: nothing was left"

    opened = open_fresh(db)
    reports = opened.controller.reports(TENANT)
    assert len(reports) == 1, f"{len(reports)} plans: a restart created a new plan"
    (plan,) = reports
    check_plan(plan, "failover", service, SECONDARY)
    repeats = check_promotions(read_log(log), service, SECONDARY, plan, runs)
    assert repeats <= 2 * PARALLELISM * len([r for r in runs if r.returncode == -signal.SIGKILL])
    check_audit(opened, plan)
    check_final_run(final, plan, SECONDARY, RECORDS[TENANT][2])
    status = opened.controller.status(TENANT)
    assert (status.serving_region, status.on_primary) == (SECONDARY, False)
    assert status.last_transition == plan.completed_at
    # Nothing is left to resume: a fresh controller does nothing.
    assert opened.controller.evaluate() == [] and opened.resources.calls() == []
    opened.store.integrity_check()
    assert sorted(r.id for r in opened.state.list(TENANT)) == sorted(service.resources), "registered twice or lost"
    check_rows(db, plans=1, steps=len(plan.steps))
    print(summary(runs, repeats, time.monotonic() - began))


@pytest.mark.timeout(180)
def test_a_failback_killed_at_random_points_completes_and_leaves_the_other_tenant_untouched(tmp_path: Path) -> None:
    """One tenant fails over (uninterrupted), then its failback is killed at random points and
    resumed; a second tenant in the same regions, with its policy and resources, is never
    touched: no plan, no promotion, no audit entry, still served from its primary."""
    began = time.monotonic()
    service = tiered_service(TENANT, SERVICE, seed=20260302)
    other = tiered_service(OTHER, 60, seed=20260303)
    db, log = tmp_path / "failback.db", tmp_path / "promotions.log"
    spec = write_spec(tmp_path / "spec.json", [service, other], TENANT)
    setup = Crash(db, log, spec, "failover").launch("finish")
    assert setup.done is not None and setup.done["plans"][0][1] == "completed", setup
    offset = log_lines(log)
    assert offset == len(service.resources)
    opened = open_fresh(db)
    other_before = sorted(opened.state.list(OTHER), key=lambda r: r.id)
    assert len(other_before) == len(other.resources)
    audit_head = opened.audit.head()
    del opened

    crash = Crash(db, log, spec, "failback")
    final = crash.until_done(len(service.resources), seed=4242)
    runs = crash.runs
    interrupted = [r for r in runs if r.interrupted]
    assert len(interrupted) >= MIN_KILLS, f"only {len(interrupted)} kills interrupted the failback"
    assert sum(r.progressed for r in interrupted) >= MIN_KILLS // 2, "too few kills after promotions"

    opened = open_fresh(db)
    reports = opened.controller.reports(TENANT)
    assert [(r.kind, r.status) for r in reports] == [("failover", "completed"), ("failback", "completed")], (
        "a restart created a new plan"
    )
    back = reports[1]
    assert back.from_region == SECONDARY
    check_plan(back, "failback", service, PRIMARY)
    promotions = read_log(log)
    assert all(p.run == 0 and p.verb == "promote" for p in promotions[:offset]), "the failover log changed"
    repeats = check_promotions(promotions[offset:], service, PRIMARY, back, runs)
    assert repeats <= 2 * PARALLELISM * len([r for r in runs if r.returncode == -signal.SIGKILL])
    check_audit(opened, back)
    check_final_run(final, back, PRIMARY, RECORDS[TENANT][1])
    status = opened.controller.status(TENANT)
    assert (status.serving_region, status.on_primary) == (PRIMARY, True)
    assert status.last_transition == back.completed_at

    # The other tenant: untouched.
    assert opened.controller.reports(OTHER) == []
    assert not [p for p in promotions if p.resource_id in other.resources], "the other tenant's resources were promoted"
    assert opened.audit.query(tenant_id=OTHER, action="failover.*") == []
    later = [e for e in opened.audit.query() if e.seq > audit_head[0]]
    assert {e.tenant_id for e in later} == {TENANT}, "an entry for another tenant appeared during the failback"
    other_status = opened.controller.status(OTHER)
    assert (other_status.serving_region, other_status.on_primary, other_status.last_transition) == (PRIMARY, True, None)
    assert sorted(opened.state.list(OTHER), key=lambda r: r.id) == other_before
    assert opened.controller.evaluate() == [] and opened.resources.calls() == []
    opened.store.integrity_check()
    check_rows(db, plans=2, steps=len(reports[0].steps) + len(back.steps))
    print(summary(runs, repeats, time.monotonic() - began))


#: Launches killed at each edge of a plan, and the size of the service they fail over.
EDGE_TRIALS = 30
EDGE_SERVICE = 15


def problems(checks: dict[str, Callable[[], object]]) -> list[str]:
    """The failed checks' names and messages (every check runs)."""
    found = []
    for name, check in checks.items():
        try:
            check()
        except AssertionError as e:
            found.append(f"{name}: {str(e).splitlines()[0] if str(e) else 'failed'}")
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize("edge", ["planned", "completed"])
def test_a_failover_killed_at_an_edge_of_the_plan_completes_and_is_recorded_once(tmp_path: Path, edge: str) -> None:
    """The kills above land mostly inside steps. These land at the plan's two edges: the child
    kills itself the moment a second connection sees the plan persisted ("planned": before or
    around its failover.initiated entry) or completed ("completed": around its
    failover.completed entry and the tenant's new serving region). Restarted, the controller
    must end in the same place as an uninterrupted run: one completed plan, every resource
    promoted once, the initiated, step and completed entries once each, the tenant served
    from the secondary, and a second failover refused."""
    service = tiered_service(TENANT, EDGE_SERVICE, seed=20260304)
    spec = write_spec(tmp_path / "spec.json", [service], TENANT)
    failed: list[str] = []
    landed = 0
    for trial in range(EDGE_TRIALS):
        db, log = tmp_path / f"edge-{trial}.db", tmp_path / f"edge-{trial}.log"
        crash = Crash(db, log, spec, "failover")
        killed = crash.launch(edge, sleeps=False)
        assert killed.interrupted, killed
        # Where the kill landed (for the failure message).
        opened = open_fresh(db)
        plans = opened.controller.reports(TENANT)
        entries = Counter(e.action for e in opened.audit.query(tenant_id=TENANT, action="failover.*"))
        if edge == "planned":
            landed += entries["failover.initiated"] == 0
        else:
            serving = opened.controller.status(TENANT).serving_region
            landed += plans[0].status == "completed" and (entries["failover.completed"] == 0 or serving == PRIMARY)
        del opened, plans

        final = crash.launch("finish", sleeps=False)
        opened = open_fresh(db)
        reports = opened.controller.reports(TENANT)
        plan = reports[0]

        def refuses_a_second_failover() -> None:
            try:
                again = opened.controller.failover(TENANT, "again", operator="chaos")
            except oc.FailoverConflictError:
                return
            raise AssertionError(
                f"a second failover was accepted: plan {again.id} ({again.status}) promoted "
                f"{len(opened.resources.calls())} resources again"
            )

        found = problems({
            "one plan": lambda: _equal(len(reports), 1),
            "plan": lambda: check_plan(plan, "failover", service, SECONDARY),
            "promotions": lambda: check_promotions(read_log(log), service, SECONDARY, plan, crash.runs),
            "audit": lambda: check_audit(opened, plan),
            "serving region": lambda: _equal(opened.controller.status(TENANT).serving_region, SECONDARY),
            "restarted child": lambda: check_final_run(final, plan, SECONDARY, RECORDS[TENANT][2]),
            "second failover": refuses_a_second_failover,
        })
        opened.store.integrity_check()
        if found:
            failed.append(f"trial {trial}: " + "; ".join(found))
        del opened
    print(f"{edge}: {landed} of {EDGE_TRIALS} kills landed between the plan's row and its audit entry or serving region")
    if failed:
        pytest.fail(
            f"{len(failed)} of {EDGE_TRIALS} runs killed at the plan's edge ({edge}) did not end like an "
            "uninterrupted run:\n" + "\n".join(failed),
            pytrace=False,
        )


def _equal(actual: object, expected: object) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"
