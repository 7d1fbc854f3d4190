"""Durability of webhook deliveries (spec Task 4): the process sending them is killed with
SIGKILL while deliveries are pending; a restarted process delivers every one of them, each at
least once, and repeats only what was in flight at the kill.

A real HTTP receiver on 127.0.0.1 records every request. The children queue deployment events
and send through the real HTTP transport; time is a ManualClock so that a restarted child can
step past the lease the killed one held.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

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


class Receiver:
    """Records the `webhook-id` of every request it answers (200)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                assert json.loads(body)["type"] == "deployment.state_change"
                outer.ids.append(self.headers["webhook-id"])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}/hooks"

    def close(self) -> None:
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
