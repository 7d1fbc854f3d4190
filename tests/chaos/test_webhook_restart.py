"""Durability of webhook deliveries (spec Task 4): the process sending them is killed with
SIGKILL while deliveries are pending; a restarted process delivers every one of them, each at
least once, and repeats only what was in flight at the kill.

A real HTTP receiver on 127.0.0.1 records every request. In the first test the children queue
deployment events and send through the real HTTP transport; time is a ManualClock so that a
restarted child can step past the lease the killed one held. In the second the children run
the REST server (`oc.Server`, real time): deployments are made over REST and the server
process is killed while the receiver holds requests, answers 503 or is slow. In the third
(nothing is sent) the children change deployments as fast as they can, with the deliveries
written in the same transaction (the transactional outbox), and are killed at random moments:
every deployment's deliveries match its recorded transitions exactly.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import pytest

import omnicloud as oc

DEPLOYMENTS = 150
#: Deliveries claimed per round by a child (the most a kill can leave in flight).
BATCH = 5

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys, time
    import omnicloud as oc

    db, url, mode, offset_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    t0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=offset_s)
    clock = oc.ManualClock(t0)
    store = oc.Store.open(db)
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1/32"])
    if mode == "queue":
        bus = oc.EventBus(clock)
        hooks.follow(bus)
        hooks.register("acme", url, ["state_change"], rate_limit_per_minute=100000)
        deployments = oc.DeploymentService(store, clock=clock, bus=bus)
        for i in range(int(sys.argv[5])):
            d = deployments.create("acme", f"svc-{i}")
            deployments.complete(deployments.start(d.id).id)
        print("queued", flush=True)
    while hooks.run_due(limit=int(sys.argv[6])):
        print("sent", flush=True)
    print("done", flush=True)
    """
)


class _Listener(http.server.ThreadingHTTPServer):
    # Room for every connection a dispatcher opens at once: with the default backlog of 5,
    # connections beyond it wait for a SYN retransmit and can time out before connecting.
    request_queue_size = 128


class Receiver:
    """Records the `webhook-id` of every request it answers (200).

    By default it answers at once. `hold()` makes requests wait (in flight) until `release()`;
    `fail_next(n)` answers the next n requests 503 (`failures` counts those answered);
    `delay_s` slows every answer.
    """

    def __init__(self) -> None:
        #: The `webhook-id` of every request answered 200 (decided before the answer is written,
        #: so a held request answered after its sender was killed counts too).
        self.ids: list[str] = []
        #: The `webhook-id` of every request received, whatever the answer.
        self.seen: list[str] = []
        #: Requests waiting at the gate right now.
        self.waiting = 0
        self.delay_s = 0.0
        self.failures = 0
        self._failures_left = 0
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                assert json.loads(body)["type"] == "deployment.state_change"
                message_id = self.headers["webhook-id"]
                outer.seen.append(message_id)
                status = outer._answer()
                if status == 200:
                    outer.ids.append(message_id)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender was killed while this request was held

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Listener(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}/hooks"

    def _answer(self) -> int:
        """Waits at the gate and for the delay; returns the status to answer."""
        if not self._gate.is_set():
            with self._lock:
                self.waiting += 1
            self._gate.wait(timeout=60)
            with self._lock:
                self.waiting -= 1
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                self.failures += 1
                return 503
        return 200

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._failures_left = n

    def failures_left(self) -> int:
        with self._lock:
            return self._failures_left

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def child(db: Path, url: str, mode: str, offset_s: float) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", CHILD, str(db), url, mode, str(offset_s), str(DEPLOYMENTS), str(BATCH)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(180)
def test_pending_deliveries_survive_sigkill_and_are_all_delivered(tmp_path: Path) -> None:
    db = tmp_path / "hooks.db"
    receiver = Receiver()
    try:
        kills = 0
        # The first child queues every event and starts sending; it and two restarts are
        # killed mid-way, each after the receiver saw more requests.
        for round_ in range(3):
            proc = child(db, receiver.url, "queue" if round_ == 0 else "send", 120.0 * round_)
            assert proc.stdout is not None
            seen = len(receiver.ids)
            deadline = time.monotonic() + 60
            while len(receiver.ids) < seen + 40 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            proc.stdout.close()
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
            assert proc.returncode in (0, -signal.SIGKILL), err
        # The last restart, well past every lease, delivers the rest.
        final = child(db, receiver.url, "send", 1000.0)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        assert out.strip().endswith("done")
    finally:
        receiver.close()

    assert kills >= 2, "the children finished before they could be killed"
    hooks = oc.WebhookService(oc.Store.open(db), clock=oc.ManualClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)))
    deliveries = hooks.deliveries(tenant_id="acme", limit=10_000)
    assert len(deliveries) == 3 * DEPLOYMENTS
    assert Counter(d.status for d in deliveries) == {"delivered": 3 * DEPLOYMENTS}
    received = Counter(receiver.ids)
    assert set(received) == {d.message_id for d in deliveries}, "a delivery never arrived"
    repeats = sum(n - 1 for n in received.values())
    assert repeats <= kills * BATCH, f"{repeats} repeated deliveries after {kills} kills"
    # A killed child's unrecorded sends leave no attempt behind: each delivery has exactly one
    # recorded attempt, its success, and no delivery was duplicated in the queue.
    assert all(d.attempt_count == 1 for d in deliveries)
    assert len({d.id for d in deliveries}) == len(deliveries)


# --- The REST server killed with SIGKILL ------------------------------------------------------

#: The claim lease of the server children (seconds): what a killed server had in flight is sent
#: again by the next one this long after it was claimed (with the default 60 s this test would
#: wait a minute). The lease must be longer than the delivery timeout.
CLAIM_LEASE_S = 2.0
SERVER_DELIVERY_TIMEOUT_S = 1.0
#: Deliveries in flight at once in a server child: the most one kill can leave unrecorded.
CONCURRENCY = 16
ALLOW = ["127.0.0.1/32"]


SERVER_CHILD = textwrap.dedent(
    """
    import sys, time
    import omnicloud as oc

    db, concurrency, lease_s, timeout_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    server = oc.Server(
        db_path=db,
        port=0,
        allow=["127.0.0.1/32"],
        concurrency=concurrency,
        delivery_timeout_s=timeout_s,
        claim_lease_s=lease_s,
    )
    print(server.start(), flush=True)
    while True:
        time.sleep(3600)
    """
)


class ServerChild:
    """A child process serving the REST API (and its dispatcher) over `db`, until killed."""

    def __init__(self, db: Path, log: Path) -> None:
        self._log: TextIO = log.open("a")
        argv = [
            sys.executable,
            "-c",
            SERVER_CHILD,
            str(db),
            str(CONCURRENCY),
            str(CLAIM_LEASE_S),
            str(SERVER_DELIVERY_TIMEOUT_S),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        self.base = self.proc.stdout.readline().strip()
        if not self.base.startswith("http://"):
            self.proc.wait(timeout=10)
            self.close()
            pytest.fail(f"the server child did not start: {log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no grace for sends in flight, nothing recorded after it."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


#: No proxy from the environment for requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rest(base: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    with _OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


def all_pages(base: str, key: str, path: str, **query: str) -> list[dict[str, Any]]:
    """Every item of a paged listing, following `next_after` (small pages, to page for real)."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {**query, "limit": "100"} | ({"after": after} if after else {})
        page = rest(base, key, "GET", f"{path}?{urllib.parse.urlencode(params)}")
        items.extend(page["data"])
        after = page["next_after"]
        if after is None:
            return items


@pytest.mark.timeout(120)
def test_server_killed_with_deliveries_pending_delivers_all_after_restart(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    log = tmp_path / "server-children.log"
    with oc.Server(db_path=db, allow=ALLOW) as setup:
        key = setup.issue_api_key("acme")
    receiver = Receiver()
    kills = 0
    #: Deliveries queued so far (one per transition) and, at each kill, how many were not
    #: answered 200 yet: pending, leased or failed and waiting for their retry.
    queued = 0
    undelivered_at_kill: list[int] = []
    failed_before_kill: list[dict[str, Any]] = []

    def kill(server: ServerChild) -> None:
        nonlocal kills
        server.kill()
        kills += 1
        undelivered_at_kill.append(queued - len(set(receiver.ids)))

    def transition(base: str, deployment_id: str, move: str) -> None:
        nonlocal queued
        assert rest(base, key, "POST", f"/v1/deployments/{deployment_id}/{move}")["id"] == deployment_id
        queued += 1

    deployment_ids: list[str] = []
    server: ServerChild | None = None
    try:
        # 1. The receiver holds every request: the server registers the endpoint and queues a
        #    deployment per create, claims CONCURRENCY deliveries (all stuck in flight) and is
        #    killed with those in flight and the rest pending.
        receiver.hold()
        server = ServerChild(db, log)
        endpoint = rest(
            server.base,
            key,
            "POST",
            "/v1/endpoints",
            {
                "url": receiver.url,
                "event_types": ["state_change"],
                "rate_limit_per_minute": 100_000,
                "max_attempts": 10,
            },
        )
        for i in range(DEPLOYMENTS):
            created = rest(server.base, key, "POST", "/v1/deployments", {"service_name": f"svc-{i}"})
            deployment_ids.append(created["id"])
            queued += 1
        deadline = time.monotonic() + 10
        while receiver.waiting < CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.005)
        # (More than CONCURRENCY if held requests timed out and their retries are held too.)
        assert receiver.waiting >= CONCURRENCY, "the dispatcher never filled its concurrency"
        kill(server)
        receiver.release()  # the held requests are answered, to a dead server
        while receiver.waiting:
            time.sleep(0.005)

        # 2. Restarted while the receiver is down (it answers 503, slowly): half the deployments
        #    are started and completed, and once 40 sends have failed (so at least
        #    40 - CONCURRENCY are recorded) the server is killed with deliveries failed and
        #    waiting for their retry, in flight and pending.
        receiver.fail_next(1_000_000)
        receiver.delay_s = 0.02
        server = ServerChild(db, log)
        half = DEPLOYMENTS // 2
        for deployment_id in deployment_ids[:half]:
            transition(server.base, deployment_id, "start")
            transition(server.base, deployment_id, "complete")
        deadline = time.monotonic() + 10
        while receiver.failures < 40 and time.monotonic() < deadline:
            time.sleep(0.005)
        failed_before_kill = rest(server.base, key, "GET", "/v1/deliveries?status=failed&limit=500")["data"]
        kill(server)
        receiver.fail_next(0)

        # 3. Restarted with a slow receiver (at most CONCURRENCY / 0.3 s answers a second, with
        #    every delivery so far still to send): the other half is started and completed, and
        #    the server is killed right after, with sends in flight and most deliveries pending.
        receiver.delay_s = 0.3
        server = ServerChild(db, log)
        for deployment_id in deployment_ids[half:]:
            transition(server.base, deployment_id, "start")
            transition(server.base, deployment_id, "complete")
        kill(server)

        # 4. The last restart (not killed) delivers the rest: leases of the killed servers end
        #    CLAIM_LEASE_S after their claims, failed deliveries are retried on schedule.
        receiver.delay_s = 0.0
        server = ServerChild(db, log)
        deadline = time.monotonic() + 30
        while True:
            deliveries = all_pages(server.base, key, "/v1/deliveries")
            statuses = Counter(d["status"] for d in deliveries)
            if statuses == {"delivered": queued} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        deployments = all_pages(server.base, key, "/v1/deployments")
        server.close()
        server = None
    finally:
        if server is not None:
            server.close()
        receiver.close()

    assert kills == 3
    assert all(n > 0 for n in undelivered_at_kill), f"a kill found nothing pending: {undelivered_at_kill}"
    assert failed_before_kill, "no delivery was failed and waiting for its retry at the second kill"

    # Every transition made over REST was queued once and delivered; nothing is left pending,
    # failed or exhausted.
    assert queued == 3 * DEPLOYMENTS
    assert statuses == {"delivered": queued}, f"not all delivered after the last restart: {statuses}"
    assert len({d["id"] for d in deliveries}) == len(deliveries) == queued
    assert {d["endpoint_id"] for d in deliveries} == {endpoint["id"]}
    by_deployment: dict[str, list[str]] = {}
    for d in deliveries:
        data = json.loads(d["body"])["data"]
        by_deployment.setdefault(data["deployment_id"], []).append(data["new_state"])
    assert set(by_deployment) == set(deployment_ids)
    assert all(sorted(states) == ["completed", "in_progress", "queued"] for states in by_deployment.values())

    # The receiver answered 200 to every message at least once (repeats are bounded below).
    message_ids = {d["message_id"] for d in deliveries}
    assert len(message_ids) == queued
    received = Counter(receiver.ids)
    assert set(received) == message_ids, "a delivery never arrived (or an unknown one did)"

    # The file survived three kills: it opens, passes SQLite's integrity check, and the store's
    # own view agrees with the API's.
    store = oc.Store.open(db)
    store.integrity_check()
    hooks = oc.WebhookService(store, clock=oc.ManualClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)))
    stored = hooks.deliveries(tenant_id="acme", limit=10_000)
    assert Counter(d.status for d in stored) == {"delivered": queued}
    assert {d.message_id for d in stored} == message_ids
    attempts = {d.message_id: d.attempts for d in stored}
    assert all(len(d.attempts) == d.attempt_count for d in stored)
    assert all(a[-1]["status_code"] == 200 for a in attempts.values())
    # No answer is recorded that the receiver did not give (a kill loses unrecorded attempts,
    # never invents one); the 503s were recorded, and retried.
    seen = Counter(receiver.seen)
    assert all(sum(x["status_code"] is not None for x in a) <= seen[m] for m, a in attempts.items())
    assert any(x["status_code"] == 503 for a in attempts.values() for x in a)
    # A repeat comes from a send claimed and unrecorded at a kill (at most CONCURRENCY per
    # kill) or from a recorded failure the receiver answered anyway (a timeout).
    timeouts = sum(x["status_code"] is None for a in attempts.values() for x in a)
    repeats = sum(n - 1 for n in received.values())
    assert repeats <= kills * CONCURRENCY + timeouts, f"{repeats} repeated deliveries after {kills} kills"

    # The deployments all exist, completed.
    assert sorted(d["id"] for d in deployments) == sorted(deployment_ids)
    assert Counter(d["state"] for d in deployments) == {"completed": DEPLOYMENTS}


# --- Deployments changed in a tight loop, killed with SIGKILL at random moments ---------------

#: Launches of the deployment child, each killed at a random moment while it works.
OUTBOX_KILLS = 36

DEPLOY_CHILD = textwrap.dedent(
    """
    import random, sys
    import omnicloud as oc

    db, wiring, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = oc.Store.open(db)
    hooks = oc.WebhookService(store, allow=["127.0.0.1/32"])
    if wiring == "outbox":
        # Each change's deliveries are written in the transaction that records it.
        deployments = oc.DeploymentService(store, webhooks=hooks)
    else:
        # The old design, for comparison: the change commits, then a bus subscriber queues
        # its deliveries in a transaction of its own.
        bus = oc.EventBus()
        hooks.follow(bus)
        deployments = oc.DeploymentService(store, bus=bus)

    # The moves tried from each state ("health" reports a failed health check and stays,
    # "stop" leaves the deployment where it is).
    MOVES = {
        "queued": ["start", "start", "start", "fail", "health"],
        "in_progress": ["complete", "complete", "fail", "rollback", "health"],
        "completed": ["rollback", "stop", "stop", "health"],
        "failed": ["rollback", "stop"],
    }
    ops = 0

    def drive(deployment_id, state):
        global ops
        while state in MOVES:
            move = rng.choice(MOVES[state])
            if move == "stop":
                return
            if move == "health":
                deployments.report_health_check_failed(deployment_id, "http", f"503 from /healthz ({ops})")
            elif move == "start":
                state = deployments.start(deployment_id).state.value
            elif move == "complete":
                state = deployments.complete(deployment_id).state.value
            elif move == "fail":
                state = deployments.fail(deployment_id, f"boom {ops}").state.value
            else:
                state = deployments.rollback(deployment_id, f"undo {ops}").state.value
            ops += 1
            print(ops, flush=True)

    print("running", flush=True)
    # First the deployments a killed predecessor left queued or in progress are carried on.
    for tenant in ("acme", "globex"):
        for state in ("queued", "in_progress"):
            for d in deployments.list(tenant, state=state, limit=100000):
                drive(d.id, d.state.value)
    i = 0
    while True:
        tenant = "globex" if rng.random() < 0.2 else "acme"
        d = deployments.create(tenant, f"svc-{seed}-{i}")
        ops += 1
        print(ops, flush=True)
        drive(d.id, "queued")
        i += 1
    """
)


class Subscription(NamedTuple):
    """What an endpoint asked for: its tenant, event types and (optionally) states."""

    tenant_id: str
    event_types: frozenset[str]
    states: frozenset[str] | None

    def wants(self, tenant_id: str, event_type: str, new_state: str | None) -> bool:
        """The queue's filter (`WebhookEndpoint::wants`, for the endpoint's tenant only)."""
        return (
            tenant_id == self.tenant_id
            and event_type in self.event_types
            and (self.states is None or (new_state is not None and new_state in self.states))
        )


def register_outbox_endpoints(db: Path) -> dict[str, Subscription]:
    """The endpoints the deployment children's changes are delivered to, by id."""
    hooks = oc.WebhookService(oc.Store.open(db), allow=ALLOW)
    asked = [
        # Everything about acme's deployments.
        ("acme", ["state_change", "rollback_initiated", "health_check_failed"], None),
        # Only state changes into failed.
        ("acme", ["state_change"], ["failed"]),
        # Rollbacks (their new state is rolled_back) and health checks failing in progress.
        ("acme", ["rollback_initiated", "health_check_failed"], ["in_progress", "rolled_back"]),
        # Everything about the other tenant's deployments (none of acme's).
        ("globex", ["state_change", "rollback_initiated", "health_check_failed"], None),
    ]
    endpoints: dict[str, Subscription] = {}
    for tenant, types, states in asked:
        endpoint = hooks.register(
            tenant, "http://127.0.0.1:9/hooks", types, states=states, rate_limit_per_minute=100_000
        )
        endpoints[endpoint.id] = Subscription(
            tenant, frozenset(types), None if states is None else frozenset(states)
        )
    return endpoints


class ChaosRun(NamedTuple):
    kills: int
    #: Progress lines (changes made) each launch printed after it said it was running.
    progress: list[int]


def kill_deployment_children(db: Path, log: Path, kills: int, seed: int, wiring: str = "outbox") -> ChaosRun:
    """Launches the deployment child `kills` times on `db`, each killed with SIGKILL a random
    5-60 ms after it says it is running (anywhere in its loop: in a transaction, committing,
    between two). `wiring` "bus" runs the old two-transaction design instead of the outbox."""
    rng = random.Random(seed)
    progress: list[int] = []
    for round_ in range(kills):
        with log.open("a") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", DEPLOY_CHILD, str(db), wiring, str(seed * 1000 + round_)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline().strip()
            if first == "running":
                time.sleep(rng.uniform(0.005, 0.060))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            lines = proc.stdout.read().split()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stdout.close()
        # It never stops by itself: anything but our SIGKILL is a failure of the child.
        assert first == "running" and proc.returncode == -signal.SIGKILL, (
            f"launch {round_} ended {proc.returncode}: {log.read_text()[-3000:]}"
        )
        progress.append(len(lines))
    return ChaosRun(kills, progress)


def all_deliveries(hooks: oc.WebhookService) -> list[oc.Delivery]:
    """Every delivery in the store, paging with `after`."""
    deliveries: list[oc.Delivery] = []
    after: str | None = None
    while True:
        page = hooks.deliveries(limit=500, after=after)
        deliveries.extend(page)
        if len(page) < 500:
            return deliveries
        after = page[-1].id


def micros(timestamp: str) -> str:
    """A payload timestamp (nanoseconds, `Z`) cut to the microseconds a datetime keeps."""
    date, _, fraction = timestamp.rstrip("Z").partition(".")
    return f"{date}.{(fraction + '000000')[:6]}"


def check_deliveries_match_transitions(db: Path, endpoints: dict[str, Subscription]) -> Counter[str]:
    """Asserts that every deployment's deliveries are exactly those its recorded transitions
    imply, per endpoint filter, and that health-check deliveries are well-formed; returns how
    many deliveries there are of each event type."""
    store = oc.Store.open(db)
    store.integrity_check()
    deployments = oc.DeploymentService(store)
    hooks = oc.WebhookService(store, allow=ALLOW)

    tenant_of: dict[str, str] = {}
    expected: dict[str, Counter[tuple[str, str, str | None, str, str, str | None]]] = {}
    states_of: dict[str, set[str]] = {}
    for tenant in ("acme", "globex"):
        for d in deployments.list(tenant, limit=1_000_000):
            tenant_of[d.id] = tenant
            history = deployments.history(d.id)
            # The history is a chain from the creation to the current state.
            assert history[0][0] is None and history[-1][1] == d.state, (d, history)
            assert all(a[1] == b[0] for a, b in zip(history, history[1:])), history
            states_of[d.id] = {str(to) for _, to, _, _ in history}
            want: Counter[tuple[str, str, str | None, str, str, str | None]] = Counter()
            for frm, to, at, reason in history:
                old, new = None if frm is None else str(frm), str(to)
                when = at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
                for endpoint_id, sub in endpoints.items():
                    # One state_change per transition (the creation included) ...
                    if sub.wants(tenant, "state_change", new):
                        want[(endpoint_id, "state_change", old, new, when, reason)] += 1
                    # ... and a rollback_initiated with each transition into rolled_back.
                    if new == "rolled_back" and sub.wants(tenant, "rollback_initiated", new):
                        want[(endpoint_id, "rollback_initiated", old, new, when, reason)] += 1
            expected[d.id] = want

    deliveries = all_deliveries(hooks)
    assert len({d.id for d in deliveries}) == len(deliveries), "a delivery was listed twice"
    actual: dict[str, Counter[tuple[str, str, str | None, str, str, str | None]]] = {
        deployment_id: Counter() for deployment_id in expected
    }
    #: Each message (one event): its endpoints, and what every delivery of it carries.
    messages: dict[str, set[str]] = {}
    message_event: dict[str, tuple[str, str, str, str | None, str]] = {}
    for delivery in deliveries:
        assert delivery.endpoint_id in endpoints, f"a delivery to an unknown endpoint: {delivery.id}"
        sub = endpoints[delivery.endpoint_id]
        payload = json.loads(delivery.body)
        data = payload["data"]
        deployment_id = data["deployment_id"]
        # No delivery without its deployment, none to another tenant's endpoint, none sent.
        assert deployment_id in tenant_of, f"a delivery for an unknown deployment: {delivery.body}"
        assert delivery.tenant_id == sub.tenant_id == data["tenant_id"] == tenant_of[deployment_id], delivery.body
        assert payload["type"] == f"deployment.{delivery.event_type}"
        assert delivery.status == "pending" and delivery.attempt_count == 0
        assert sub.wants(delivery.tenant_id, delivery.event_type, data["new_state"]), delivery.body
        event = (payload["event_id"], delivery.event_type, deployment_id, data["old_state"], data["new_state"])
        assert message_event.setdefault(delivery.message_id, event) == event, "one message, two events"
        endpoints_of_message = messages.setdefault(delivery.message_id, set())
        assert delivery.endpoint_id not in endpoints_of_message, "an event delivered twice to one endpoint"
        endpoints_of_message.add(delivery.endpoint_id)
        if delivery.event_type == "health_check_failed":
            # No record to compare with: its state is one the deployment was in, its old state
            # none, and it names the check and what it saw.
            assert data["old_state"] is None and data["new_state"] in states_of[deployment_id], delivery.body
            assert data["check"] == "http" and data["reason"].startswith("503 from /healthz"), delivery.body
            continue
        key = (
            delivery.endpoint_id,
            delivery.event_type,
            data["old_state"],
            data["new_state"],
            micros(data["timestamp"]),
            data["reason"],
        )
        actual[deployment_id][key] += 1

    # Every endpoint that wants an event has its delivery, in the same message (health checks
    # included: they are checked message by message).
    for message_id, endpoint_ids in messages.items():
        _, event_type, deployment_id, _, new_state = message_event[message_id]
        wanting = {e for e, sub in endpoints.items() if sub.wants(tenant_of[deployment_id], event_type, new_state)}
        assert endpoint_ids == wanting, f"message {message_id} ({event_type}) reached {endpoint_ids}, not {wanting}"

    # The heart of it: for EVERY deployment, no delivery without its transition and no
    # transition without its deliveries.
    wrong = {
        deployment_id: (sorted(want - actual[deployment_id]), sorted(actual[deployment_id] - want))
        for deployment_id, want in expected.items()
        if actual[deployment_id] != want
    }
    assert not wrong, (
        f"{len(wrong)} of {len(expected)} deployments have deliveries that do not match their "
        f"transitions (missing, unexpected): {list(wrong.items())[:5]}"
    )
    return Counter(d.event_type for d in deliveries)


@pytest.mark.timeout(120)
def test_deployment_changes_and_their_deliveries_survive_sigkill_together(tmp_path: Path) -> None:
    """A process changing deployments as fast as it can, with `webhooks=`, is killed with
    SIGKILL at random moments, again and again on the same file: afterwards every deployment's
    deliveries are exactly those its recorded transitions imply for each endpoint's filter.

    This is the transactional outbox at work: a change and its deliveries commit in one SQLite
    transaction, so a kill keeps both or neither. The old design committed the change, then
    queued its deliveries in a second transaction (an event-bus subscriber, as `follow` still
    does; the child runs it with wiring "bus"): the child spends a good part of its loop
    between those two commits, so some of these kills land there and leave a recorded
    transition without its deliveries (or, as a rollback's two events were queued one by one,
    its rollback_initiated without its state change): a deployment whose expected and actual
    deliveries differ, which fails the last assertion of `check_deliveries_match_transitions`.
    (Run with wiring "bus", 36 kills left 13 to 17 such deployments per run.)
    """
    db = tmp_path / "outbox.db"
    log = tmp_path / "deploy-children.log"
    endpoints = register_outbox_endpoints(db)

    run = kill_deployment_children(db, log, OUTBOX_KILLS, seed=20260301)
    # The kills landed while the children worked, not before they started.
    assert sum(n > 0 for n in run.progress) >= OUTBOX_KILLS // 2, run.progress
    assert sum(run.progress) >= 100, run.progress

    by_type = check_deliveries_match_transitions(db, endpoints)
    # Every kind of delivery was made (the filters and every path were exercised).
    assert set(by_type) == {"state_change", "rollback_initiated", "health_check_failed"}, by_type
