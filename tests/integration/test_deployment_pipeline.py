"""Deployments (spec Task 4): the lifecycle queued -> in_progress -> completed | failed, rolled
back from in_progress, completed or failed, with timing, persisted in a real SQLite file and
announced on the event bus (what webhook delivery subscribes to).

Time is driven by a ManualClock.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import omnicloud as oc
from tests.conftest import T0
from tests.receiver import Receiver


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


# --- webhook delivery to a real HTTP receiver on 127.0.0.1 ---------------------------------


HOOKS = "/hooks"


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def webhooks(world: World) -> oc.WebhookService:
    service = oc.WebhookService(world.store, clock=world.clock, allow=["127.0.0.1/32"])
    service.follow(world.bus)
    return service


def test_deliveries_arrive_signed_and_verify_with_the_standard_webhooks_library(world: World, receiver: Receiver) -> None:
    from standardwebhooks.webhooks import Webhook

    # The reference verifier checks the signature's timestamp against the real time.
    world.clock.set(dt.datetime.now(dt.timezone.utc))
    hooks = webhooks(world)
    endpoint = hooks.register("acme", receiver.url(HOOKS), ["state_change"])
    d = world.deployments.create("acme", "checkout")
    world.deployments.start(d.id)
    assert hooks.run_due() == 2
    assert len(receiver.requests) == 2
    verifier = Webhook(endpoint.secret)
    for path, headers, body in receiver.requests:
        assert path == "/hooks"
        payload = verifier.verify(body, headers)
        assert payload["type"] == "deployment.state_change"
        assert payload["data"]["deployment_id"] == d.id
        assert {"tenant_id", "service_name", "old_state", "new_state", "timestamp", "duration_seconds", "links"} <= set(payload["data"])
    assert [json.loads(b)["data"]["new_state"] for _, _, b in receiver.requests] == ["queued", "in_progress"]
    assert {x.status for x in hooks.deliveries(endpoint_id=endpoint.id)} == {"delivered"}


def test_retries_follow_the_schedule_exactly_then_exhaust(world: World) -> None:
    receiver = Receiver([500] * 5)
    try:
        hooks = webhooks(world)
        endpoint = hooks.register("acme", receiver.url(HOOKS), ["state_change"])
        world.deployments.create("acme", "checkout")
        sent_at = []
        for _ in range(40):
            if hooks.run_due():
                sent_at.append((world.clock.now() - T0).total_seconds())
            world.clock.advance(0.5)
        assert sent_at == [0, 1, 3, 7, 15]
        (delivery,) = hooks.deliveries(endpoint_id=endpoint.id)
        assert (delivery.status, delivery.attempt_count) == ("exhausted", 5)
        assert [a["status_code"] for a in delivery.attempts] == [500] * 5
        again = hooks.redeliver(delivery.id)
        assert again.status == "pending"
        hooks.run_due()
        assert hooks.delivery(delivery.id).status == "delivered"
    finally:
        receiver.close()


def test_filters_and_the_rate_limit_hold_during_a_burst(world: World, receiver: Receiver) -> None:
    hooks = webhooks(world)
    failures = hooks.register("acme", receiver.url(HOOKS), ["state_change"], states=["failed"], rate_limit_per_minute=20)
    for i in range(60):
        d = world.deployments.create("acme", f"svc-{i}")
        world.deployments.start(d.id)
        world.deployments.fail(d.id, "canary failed")
    sent_per_run = []
    for _ in range(4):
        sent_per_run.append(hooks.run_due())
        world.clock.advance(60)
    assert sent_per_run == [20, 20, 20, 0]
    assert len(receiver.requests) == 60
    assert all(json.loads(b)["data"]["new_state"] == "failed" for _, _, b in receiver.requests)
    assert all(x.attempt_count == 1 for x in hooks.deliveries(endpoint_id=failures.id, limit=100))


def test_bad_endpoints_are_refused_and_tenants_are_isolated(world: World, receiver: Receiver) -> None:
    hooks = webhooks(world)
    strict = oc.WebhookService(world.store, clock=world.clock)
    with pytest.raises(oc.UnsafeUrlError):
        strict.register("acme", receiver.url(HOOKS), ["state_change"])
    for url in ("http://10.0.0.1/x", "http://169.254.169.254/latest", "http://localhost:8080/"):
        with pytest.raises(oc.ValidationError):
            hooks.register("acme", url, ["state_change"])
    with pytest.raises(oc.ValidationError):
        hooks.register("acme", receiver.url(HOOKS), ["deploy_finished"])
    with pytest.raises(oc.TemplateError):
        hooks.register("acme", receiver.url(HOOKS), ["state_change"], template="{% for %}")
    with pytest.raises(oc.ValidationError):
        hooks.register("acme", receiver.url(HOOKS), ["state_change"], rate_limit_per_minute=0)
    mine = hooks.register("acme", receiver.url(HOOKS), ["state_change"])
    hooks.register("globex", receiver.url(HOOKS), ["state_change"])
    assert [e.id for e in hooks.list("acme")] == [mine.id]
    world.deployments.create("acme", "checkout")
    assert len(hooks.deliveries(tenant_id="acme")) == 1
    assert hooks.deliveries(tenant_id="globex") == []
    with pytest.raises(oc.UnknownDeliveryError):
        hooks.delivery("dlv_nope")
    with pytest.raises(oc.UnknownEndpointError):
        hooks.get("ep_nope")


def test_a_deployment_service_given_webhooks_queues_its_events_without_waiting(tmp_path: Path) -> None:
    clock = oc.ManualClock(T0)
    store = oc.Store.open(tmp_path / "d.db")
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1/32"])
    # Nobody listens on this port: transitions must not care.
    endpoint = hooks.register("acme", "http://127.0.0.1:9/hooks", ["state_change", "rollback_initiated"])
    deployments = oc.DeploymentService(store, clock=clock, webhooks=hooks)
    d = deployments.create("acme", "checkout")
    deployments.start(d.id)
    deployments.fail(d.id, "canary failed")
    deployments.rollback(d.id, "automatic")
    queued = hooks.deliveries(endpoint_id=endpoint.id)
    assert sorted(x.event_type for x in queued) == ["rollback_initiated"] + ["state_change"] * 4
    assert {x.status for x in queued} == {"pending"}
    assert hooks.run_due() == 5
    assert {x.status for x in hooks.deliveries(endpoint_id=endpoint.id)} == {"failed"}
    for x in hooks.deliveries(endpoint_id=endpoint.id):
        (attempt,) = x.attempts
        assert attempt["status_code"] is None and attempt["error"], attempt
        assert x.next_attempt_at == T0 + dt.timedelta(seconds=1)


# --- the background dispatcher (real time) -------------------------------------------------


def real_time_world(tmp_path: Path) -> tuple[oc.DeploymentService, oc.WebhookService, oc.EventBus]:
    store = oc.Store.open(tmp_path / "rt.db")
    clock = oc.SystemClock()
    bus = oc.EventBus(clock)
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1/32"], timeout_s=5.0)
    hooks.follow(bus)
    return oc.DeploymentService(store, clock=clock, bus=bus), hooks, bus


def test_the_background_dispatcher_delivers_everything_due_in_real_time(tmp_path: Path, receiver: Receiver) -> None:
    from standardwebhooks.webhooks import Webhook

    deployments, hooks, _ = real_time_world(tmp_path)
    endpoint = hooks.register("acme", receiver.url(HOOKS), ["state_change"], rate_limit_per_minute=10_000)
    assert not hooks.running
    hooks.start(concurrency=8)
    hooks.start()  # already running: a no-op
    assert hooks.running
    for i in range(40):
        d = deployments.create("acme", f"svc-{i}")
        deployments.start(d.id)
        deployments.complete(d.id)
    assert hooks.flush(timeout_s=20.0)
    assert hooks.due_count() == 0
    delivered = hooks.deliveries(endpoint_id=endpoint.id, limit=500)
    assert len(delivered) == 120
    assert {(x.status, x.attempt_count) for x in delivered} == {("delivered", 1)}
    verifier = Webhook(endpoint.secret)
    ids = set()
    for _, headers, body in receiver.requests:
        verifier.verify(body, headers)
        ids.add(headers["webhook-id"])
    assert ids == {x.message_id for x in delivered}
    hooks.stop()
    assert not hooks.running
    hooks.stop()


def test_transitions_never_wait_for_a_stuck_receiver(tmp_path: Path) -> None:
    import http.server
    import threading

    release = threading.Event()
    arrived = threading.Event()

    class Stuck(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("content-length", "0")))
            arrived.set()
            release.wait(10)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stuck)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deployments, hooks, _ = real_time_world(tmp_path)
        hooks.register("acme", f"http://127.0.0.1:{server.server_address[1]}/x", ["state_change"], rate_limit_per_minute=10_000)
        hooks.start(concurrency=4)
        first = deployments.create("acme", "first")
        assert arrived.wait(10), "the dispatcher never sent the first delivery"
        # The receiver now holds every connection; deployments go on regardless.
        done = []
        for i in range(100):
            d = deployments.create("acme", f"svc-{i}")
            deployments.start(d.id)
            done.append(deployments.complete(d.id).state)
        assert done == ["completed"] * 100
        assert not release.is_set()
        assert hooks.due_count() > 0 or hooks.deliveries(endpoint_id=None, status="pending")
        release.set()
        assert hooks.flush(timeout_s=30.0)
        assert {x.status for x in hooks.deliveries(limit=1000)} == {"delivered"}
        assert deployments.get(first.id).state == "queued"
    finally:
        release.set()
        hooks.stop()
        server.shutdown()
        server.server_close()


def test_collected_events_are_queued_in_one_batch(tmp_path: Path, receiver: Receiver) -> None:
    deployments, hooks, bus = real_time_world(tmp_path)
    seen: list[oc.Event] = []
    bus.subscribe(seen.append)
    for i in range(10):
        deployments.create("acme", f"svc-{i}")
    endpoint = hooks.register("acme", receiver.url(HOOKS), ["state_change"])
    # Registered after the events were published: nothing queued for it yet.
    assert hooks.deliveries(endpoint_id=endpoint.id) == []
    ids = hooks.enqueue(seen)
    assert len(ids) == 10
    assert {x.id for x in hooks.deliveries(endpoint_id=endpoint.id)} == set(ids)
    assert hooks.enqueue([]) == []
    other = oc.EventBus(oc.SystemClock()).publish("custom", tenant_id="acme")
    assert hooks.enqueue([other]) == []


def test_dispatcher_bad_inputs_are_typed_errors(tmp_path: Path) -> None:
    _, hooks, _ = real_time_world(tmp_path)
    with pytest.raises(ValueError):
        hooks.start(concurrency=0)
    with pytest.raises(ValueError):
        hooks.flush(timeout_s=-1.0)
    with pytest.raises(TypeError):
        hooks.enqueue([1, 2])  # type: ignore[list-item]
    # Not running: flush answers at once whether anything is due.
    assert hooks.flush(timeout_s=5.0)


def test_service_and_server_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="claim_lease_s"):
        oc.WebhookService(timeout_s=15.0, claim_lease_s=10.0)
    with pytest.raises(ValueError, match="timeout"):
        oc.WebhookService(timeout_s=0.0)
    with pytest.raises(ValueError, match="claim_lease_s"):
        oc.Server(delivery_timeout_s=2.0, claim_lease_s=1.0)
    with pytest.raises(ValueError, match="concurrency"):
        oc.Server(concurrency=0)
    with pytest.raises(oc.ValidationError):
        oc.Server(allow=["not a network"])
    with pytest.raises(ValueError, match="host"):
        oc.Server(host=" ")
    server = oc.Server(tmp_path / "api.db")
    assert server.base_url is None and not server.is_running
    with pytest.raises(ValueError, match="not running"):
        server.issue_api_key("acme")
    with server:
        assert server.is_running and server.base_url
        key = server.issue_api_key("acme", name="ci")
        assert key.startswith("ock_")
        with pytest.raises(oc.ValidationError):
            server.issue_api_key("bad tenant id!")
        with pytest.raises(oc.UnknownApiKeyError):
            server.revoke_api_key("acme", "0" * 32)
        with pytest.raises(oc.UnknownApiKeyError):
            # Another tenant's key is not the caller's to revoke.
            server.revoke_api_key("globex", key.split("_")[1])
        server.revoke_api_key("acme", key.split("_")[1])
    assert not server.is_running
    # The port is taken: a clear error, not a panic.
    with oc.Server(tmp_path / "a.db") as first:
        port = int(str(first.base_url).rsplit(":", 1)[1])
        with pytest.raises(ValueError, match="cannot serve"):
            oc.Server(tmp_path / "b.db", port=port).start()


def test_deployments_and_their_deliveries_share_one_store(tmp_path: Path) -> None:
    hooks = oc.WebhookService(oc.Store.open(tmp_path / "hooks.db"), allow=["127.0.0.1/32"])
    endpoint = hooks.register("acme", "http://127.0.0.1:9/x", ["state_change"])
    # The deliveries commit in the deployment's own transaction, so the stores must be one.
    with pytest.raises(oc.ValidationError, match="store"):
        oc.DeploymentService(oc.Store.open(tmp_path / "other.db"), webhooks=hooks)
    # Without a store of its own, the service uses the webhooks' store.
    deployments = oc.DeploymentService(webhooks=hooks)
    d = deployments.create("acme", "checkout")
    (queued,) = hooks.deliveries(endpoint_id=endpoint.id)
    assert json.loads(queued.body)["data"]["deployment_id"] == d.id


def test_queueing_is_idempotent_by_event(tmp_path: Path) -> None:
    store = oc.Store.open(tmp_path / "d.db")
    bus = oc.EventBus()
    seen: list[oc.Event] = []
    bus.subscribe(seen.append)
    hooks = oc.WebhookService(store, allow=["127.0.0.1/32"])
    first = hooks.register("acme", "http://127.0.0.1:9/a", ["state_change"])
    # Both wirings at once: the outbox queues in the transaction, the follower finds it done.
    hooks.follow(bus)
    deployments = oc.DeploymentService(store, bus=bus, webhooks=hooks)
    d = deployments.create("acme", "checkout")
    deployments.start(d.id)
    assert len(hooks.deliveries(endpoint_id=first.id)) == 2
    assert hooks.enqueue(seen) == []
    # A replay after a new endpoint reaches only the new one.
    second = hooks.register("acme", "http://127.0.0.1:9/b", ["state_change"])
    replayed = hooks.enqueue(seen)
    assert {hooks.delivery(i).endpoint_id for i in replayed} == {second.id}
    assert len(replayed) == 2
    assert len(hooks.deliveries(endpoint_id=first.id)) == 2
    # One message per event: the new endpoint's deliveries carry the same webhook-id.
    assert {hooks.delivery(i).message_id for i in replayed} == {x.message_id for x in hooks.deliveries(endpoint_id=first.id)}
