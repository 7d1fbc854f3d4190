"""API contracts (spec Task 4): what the library really sends matches what it documents.

Sections:

1. Shared helpers and module-level fixtures (schema loading, a real HTTP receiver on
   127.0.0.1, validators with real format checking).
2. Delivered webhook payloads against the JSON Schemas in docs/schemas/. Deployments are
   driven through every lifecycle edge, plus health-check failures and rollbacks. The bodies
   the receiver got are validated, their Standard Webhooks signatures are verified, and each
   schema is shown to reject broken payloads, so it is not vacuous. Endpoints filtered on
   states get exactly the events whose `new_state` they name.

Add more sections (the REST API against docs/openapi.json, for instance) below the last one.
Reuse the fixtures of section 1.

Real parts only: SQLite files in temporary directories (opened through ``oc.Store.open``,
never with Python's sqlite3) and a real HTTP server on loopback. Deployment time is driven by
a ManualClock that starts at the real current time, because the Standard Webhooks verifier
checks the signature timestamp against the wall clock.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import omnicloud as oc

# =============================================================================================
# 1. Shared helpers and module-level fixtures
# =============================================================================================

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "docs" / "schemas"

#: The events a webhook endpoint can subscribe to: payload `type` -> subscription name.
EVENT_TYPES = {
    "deployment.state_change": "state_change",
    "deployment.health_check_failed": "health_check_failed",
    "deployment.rollback_initiated": "rollback_initiated",
}

STATES = ("queued", "in_progress", "completed", "failed", "rolled_back")

#: The states a `deployment.state_change`'s `reason` is a string in (null in the others).
STATES_WITH_REASON = ("failed", "rolled_back")

#: The states a rollback may start from (`rollback_initiated`'s `old_state`).
ROLLBACK_FROM = ("in_progress", "completed", "failed")

#: The deployment lifecycle's edges; `None -> queued` is a deployment's creation.
LIFECYCLE = {
    (None, "queued"),
    ("queued", "in_progress"),
    ("queued", "failed"),
    ("in_progress", "completed"),
    ("in_progress", "failed"),
    ("in_progress", "rolled_back"),
    ("completed", "rolled_back"),
    ("failed", "rolled_back"),
}

Json = dict[str, Any]


def load_schema(event_type: str) -> Json:
    schema: Json = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text(encoding="utf-8"))
    return schema


def validator(schema: Json) -> Draft202012Validator:
    """A draft 2020-12 validator that really checks `format` (date-time, uri, uuid)."""
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(schema: Json, instance: object) -> list[str]:
    """Every validation error, each as `path: message`, for readable assertion failures."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(schema).iter_errors(instance)
    ]


@dataclass
class Request:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Json:
        payload: Json = json.loads(self.body)
        return payload


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers every POST with 204 and records it."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length", "0"))
                request = Request(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with outer._lock:
                    outer.requests.append(request)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.base = f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def schemas() -> dict[str, Json]:
    """The documented payload schema of every event type, by `type`."""
    return {event_type: load_schema(event_type) for event_type in EVENT_TYPES}


# =============================================================================================
# 2. Delivered webhook payloads vs docs/schemas/
# =============================================================================================

HOOKS_PATH = "/hooks"
TEMPLATE_PATH = "/templated"
FILTERED_PATH = "/filtered"


@dataclass
class Delivered:
    """What one run of the deployment scenario delivered, and what it needs to check it."""

    requests: list[Request]
    secrets: dict[str, str]  # tenant -> the endpoint's signing secret
    deployments: dict[str, oc.Deployment] = field(default_factory=dict)  # by id, final state

    def payloads(self, event_type: str | None = None) -> list[Json]:
        """The delivered bodies, in delivery order; only those of `event_type` if given."""
        bodies = [r.json() for r in self.requests]
        return [p for p in bodies if event_type is None or p["type"] == event_type]


def scenario(deployments: oc.DeploymentService, clock: oc.ManualClock) -> list[oc.Deployment]:
    """Drives deployments through every lifecycle edge, and reports health-check failures in
    every state and rollbacks from every state that allows one. Returns the deployments."""
    made = []

    # queued -> in_progress -> completed, then rolled back (rollback_initiated from completed).
    a = deployments.create("acme", "checkout")
    clock.advance(1.25)
    deployments.start(a.id)
    clock.advance(30)
    deployments.complete(a.id)
    deployments.report_health_check_failed(a.id, "GET /healthz", "HTTP 503 after release")
    clock.advance(5)
    deployments.rollback(a.id, "error rate above 5% after release")
    deployments.report_health_check_failed(a.id, "GET /healthz", "still failing after rollback")
    made.append(a)

    # A health check fails while in progress; the rollout fails; then it is rolled back.
    b = deployments.create("acme", "Zahlungsdienst – Region Süd")
    deployments.report_health_check_failed(b.id, "tcp:5432", "connection refused")
    clock.advance(0.5)
    deployments.start(b.id)
    clock.advance(12.125)
    deployments.report_health_check_failed(b.id, "GET /health", "503 for 30 s")
    deployments.fail(b.id, "health checks failing")
    deployments.report_health_check_failed(b.id, "GET /health", "503 for 60 s")
    clock.advance(2)
    deployments.rollback(b.id, "automatic rollback")
    made.append(b)

    # queued -> failed: it could not start.
    c = deployments.create("acme", "billing-worker")
    clock.advance(3)
    deployments.fail(c.id, "image pull failed")
    made.append(c)

    # in_progress -> rolled_back directly (rollback_initiated from in_progress); another tenant.
    d = deployments.create("globex-eu:prod_1", "search.indexer")
    deployments.start(d.id)
    clock.advance(7)
    deployments.rollback(d.id, "operator abort")
    made.append(d)
    return made


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Delivered:
    """One world on a store file: deployments announced on a bus the webhook service follows,
    one untemplated endpoint per tenant subscribed to every event, the whole scenario run,
    then every due delivery sent to the receiver."""
    clock = oc.ManualClock(dt.datetime.now(dt.timezone.utc))
    store = oc.Store.open(tmp_path_factory.mktemp("contract") / "deliveries.db")
    bus = oc.EventBus(clock)
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1"])
    hooks.follow(bus)
    deployments = oc.DeploymentService(store, clock=clock, bus=bus)
    endpoints = {
        tenant: hooks.register(tenant, receiver.url(HOOKS_PATH), list(EVENT_TYPES.values()))
        for tenant in ("acme", "globex-eu:prod_1")
    }
    made = scenario(deployments, clock)
    queued = [x for e in endpoints.values() for x in hooks.deliveries(endpoint_id=e.id, limit=1000)]
    assert hooks.run_due() == len(queued) > 0
    for e in endpoints.values():
        assert {x.status for x in hooks.deliveries(endpoint_id=e.id, limit=1000)} == {"delivered"}
    requests = receiver.at(HOOKS_PATH)
    assert len(requests) == len(queued)
    return Delivered(
        requests=requests,
        secrets={t: e.secret for t, e in endpoints.items()},
        deployments={x.id: deployments.get(x.id) for x in made},
    )


# --- the schemas themselves ------------------------------------------------------------------


def test_there_is_one_schema_per_event_type_and_nothing_else() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(EVENT_TYPES)
    assert (SCHEMA_DIR / "README.md").is_file()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_schema_is_a_valid_draft_2020_12_schema_pinned_to_its_event(
    schemas: dict[str, Json], event_type: str
) -> None:
    schema = schemas[event_type]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://omnicloud.dev/schemas/{event_type}.json"
    assert schema["title"] and schema["description"]
    assert schema["properties"]["type"]["const"] == event_type
    assert schema["additionalProperties"] is False
    data = schema["properties"]["data"]
    assert data["additionalProperties"] is False
    assert set(data["required"]) == set(data["properties"]) >= {
        "deployment_id",
        "tenant_id",
        "service_name",
        "old_state",
        "new_state",
        "timestamp",
        "duration_seconds",
        "links",
    }


def test_format_keywords_are_really_checked() -> None:
    """Without the optional checkers jsonschema skips `format` silently; these must run."""
    checker = FormatChecker()
    assert {"date-time", "uri", "uuid"} <= set(checker.checkers)
    assert not checker.conforms("2026-03-01 12:00:00", "date-time")
    assert not checker.conforms("not a uri", "uri")
    assert not checker.conforms("not-a-uuid", "uuid")


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_schema_s_examples_validate(schemas: dict[str, Json], event_type: str) -> None:
    examples = schemas[event_type]["examples"]
    assert examples
    for example in examples:
        assert example["type"] == event_type
        assert errors(schemas[event_type], example) == []


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_a_payload_of_one_type_is_rejected_by_the_other_types_schemas(
    schemas: dict[str, Json], event_type: str
) -> None:
    example = schemas[event_type]["examples"][0]
    for other in set(EVENT_TYPES) - {event_type}:
        assert errors(schemas[other], example), (event_type, other)


# --- real deliveries -------------------------------------------------------------------------


def test_every_delivered_payload_validates_against_the_schema_of_its_type(
    schemas: dict[str, Json], delivered: Delivered
) -> None:
    for request in delivered.requests:
        payload = request.json()
        assert payload["type"] in schemas, payload
        assert errors(schemas[payload["type"]], payload) == [], payload


def test_every_event_type_and_every_lifecycle_edge_was_delivered(delivered: Delivered) -> None:
    assert {p["type"] for p in delivered.payloads()} == set(EVENT_TYPES)
    edges = {(p["data"]["old_state"], p["data"]["new_state"]) for p in delivered.payloads("deployment.state_change")}
    assert edges == LIFECYCLE
    health = {p["data"]["new_state"] for p in delivered.payloads("deployment.health_check_failed")}
    assert health == set(STATES)
    rollbacks = delivered.payloads("deployment.rollback_initiated")
    assert {p["data"]["old_state"] for p in rollbacks} == set(ROLLBACK_FROM)
    assert {p["data"]["new_state"] for p in rollbacks} == {"rolled_back"}


def test_delivered_fields_agree_with_the_deployments(delivered: Delivered) -> None:
    """What a schema cannot say: cross-field equalities and the values behind them."""
    seen_events = set()
    for payload in delivered.payloads():
        data = payload["data"]
        deployment = delivered.deployments[data["deployment_id"]]
        assert (data["tenant_id"], data["service_name"]) == (deployment.tenant_id, deployment.service_name)
        assert data["timestamp"] == payload["timestamp"]
        assert data["links"]["deployment"].endswith(f"/v1/deployments/{deployment.id}")
        assert data["links"]["logs"] == data["links"]["deployment"] + "/logs"
        assert payload["event_id"] != data["deployment_id"]
        seen_events.add(payload["event_id"])
    assert len(seen_events) == len(delivered.requests), "one delivery per event and endpoint"


def test_durations_and_reasons_are_what_the_lifecycle_says(delivered: Delivered) -> None:
    by_edge = {
        (p["data"]["deployment_id"], p["data"]["old_state"], p["data"]["new_state"]): p["data"]
        for p in delivered.payloads("deployment.state_change")
    }
    for (_, old, new), data in by_edge.items():
        if new in ("queued", "in_progress"):
            assert data["duration_seconds"] == 0, (old, new)
        # A string exactly for failures and rollbacks.
        assert (data["reason"] is not None) == (new in STATES_WITH_REASON), (old, new, data["reason"])
    finished = {
        (delivered.deployments[did].service_name, new): data["duration_seconds"]
        for (did, _, new), data in by_edge.items()
        if new not in ("queued", "in_progress")
    }
    assert finished == {
        ("checkout", "completed"): 30.0,
        ("checkout", "rolled_back"): 35.0,
        ("Zahlungsdienst – Region Süd", "failed"): 12.125,
        ("Zahlungsdienst – Region Süd", "rolled_back"): 14.125,
        ("billing-worker", "failed"): 3.0,
        ("search.indexer", "rolled_back"): 7.0,
    }
    reasons = {
        (delivered.deployments[did].service_name, new): data["reason"]
        for (did, _, new), data in by_edge.items()
        if data["reason"] is not None
    }
    assert reasons == {
        ("checkout", "rolled_back"): "error rate above 5% after release",
        ("Zahlungsdienst – Region Süd", "failed"): "health checks failing",
        # The latest reason: the rollback's, not the failure's.
        ("Zahlungsdienst – Region Süd", "rolled_back"): "automatic rollback",
        ("billing-worker", "failed"): "image pull failed",
        ("search.indexer", "rolled_back"): "operator abort",
    }
    rollbacks = {
        delivered.deployments[p["data"]["deployment_id"]].service_name: (
            p["data"]["old_state"],
            p["data"]["reason"],
            p["data"]["duration_seconds"],
        )
        for p in delivered.payloads("deployment.rollback_initiated")
    }
    assert rollbacks == {
        "checkout": ("completed", "error rate above 5% after release", 30.0),
        "Zahlungsdienst – Region Süd": ("failed", "automatic rollback", 12.125),
        "search.indexer": ("in_progress", "operator abort", 0),
    }
    checks = sorted(
        (
            delivered.deployments[p["data"]["deployment_id"]].service_name,
            p["data"]["new_state"],
            p["data"]["check"],
            p["data"]["reason"],
        )
        for p in delivered.payloads("deployment.health_check_failed")
    )
    assert checks == sorted(
        [
            ("checkout", "completed", "GET /healthz", "HTTP 503 after release"),
            ("checkout", "rolled_back", "GET /healthz", "still failing after rollback"),
            ("Zahlungsdienst – Region Süd", "queued", "tcp:5432", "connection refused"),
            ("Zahlungsdienst – Region Süd", "in_progress", "GET /health", "503 for 30 s"),
            ("Zahlungsdienst – Region Süd", "failed", "GET /health", "503 for 60 s"),
        ]
    )


def test_a_rollback_is_announced_before_its_state_change_with_the_same_states_and_reason(
    delivered: Delivered,
) -> None:
    changes = {
        p["data"]["deployment_id"]: p
        for p in delivered.payloads("deployment.state_change")
        if p["data"]["new_state"] == "rolled_back"
    }
    rollbacks = delivered.payloads("deployment.rollback_initiated")
    assert len(rollbacks) == len(changes) == 3
    for initiated in rollbacks:
        change = changes[initiated["data"]["deployment_id"]]
        for name in ("old_state", "new_state", "reason", "timestamp"):
            assert initiated["data"][name] == change["data"][name], name
        # Event ids are UUIDv7, ordered by publication.
        assert initiated["event_id"] < change["event_id"]


def test_every_delivery_is_signed_per_standard_webhooks(delivered: Delivered) -> None:
    for request in delivered.requests:
        headers = request.headers
        assert headers["content-type"] == "application/json"
        assert re.fullmatch(r"msg_[0-9a-f]{32}", headers["webhook-id"]), headers["webhook-id"]
        assert re.fullmatch(r"[0-9]+", headers["webhook-timestamp"])
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]+={0,2}", headers["webhook-signature"])
        payload = request.json()
        secret = delivered.secrets[payload["data"]["tenant_id"]]
        assert Webhook(secret).verify(request.body, headers) == payload
    # The message id identifies one event's message; it is not the payload's event id.
    assert len({r.headers["webhook-id"] for r in delivered.requests}) == len(delivered.requests)


def test_a_tampered_delivery_fails_verification(delivered: Delivered) -> None:
    request = delivered.requests[0]
    payload = request.json()
    payload["data"]["new_state"] = "completed"
    secret = delivered.secrets[payload["data"]["tenant_id"]]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(json.dumps(payload), request.headers)


# --- the schemas reject what they should (they are not vacuous) -----------------------------

Mutation = Callable[[Json], None]


def _delete(*path: str) -> Mutation:
    def apply(payload: Json) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


def _set(value: object, *path: str) -> Mutation:
    def apply(payload: Json) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _states(old: str | None, new: str, reason: object = ...) -> Mutation:
    """Sets the states (and the reason too, if given)."""

    def apply(payload: Json) -> None:
        payload["data"]["old_state"], payload["data"]["new_state"] = old, new
        if reason is not ...:
            payload["data"]["reason"] = reason

    return apply


def _flip_reason(payload: Json) -> None:
    """A reason where there is none, and none where there is one."""
    data = payload["data"]
    data["reason"] = "why" if data["reason"] is None else None


# Applied to every event type's real payloads.
COMMON_MUTATIONS: dict[str, Mutation] = {
    "type missing": _delete("type"),
    "event_id missing": _delete("event_id"),
    "timestamp missing": _delete("timestamp"),
    "data missing": _delete("data"),
    "extra top-level field": _set("x", "extra"),
    "extra data field": _set(1, "data", "extra"),
    "extra links field": _set("https://x.example/", "data", "links", "extra"),
    "unknown type": _set("deployment.created", "type"),
    "event_id not a uuid": _set("evt_1", "event_id"),
    "timestamp not RFC 3339": _set("2026-03-01 12:00:00", "timestamp"),
    "timestamp without nanoseconds": _set("2026-03-01T12:00:00Z", "timestamp"),
    "timestamp not UTC": _set("2026-03-01T12:00:00.000000000+01:00", "data", "timestamp"),
    "unknown new_state": _set("paused", "data", "new_state"),
    "duration negative": _set(-1.0, "data", "duration_seconds"),
    "duration as string": _set("30", "data", "duration_seconds"),
    "duration null": _set(None, "data", "duration_seconds"),
    "tenant_id with a space": _set("acme corp", "data", "tenant_id"),
    "tenant_id empty": _set("", "data", "tenant_id"),
    "tenant_id too long": _set("t" * 129, "data", "tenant_id"),
    "service_name blank": _set("   ", "data", "service_name"),
    "service_name with a newline": _set("check\nout", "data", "service_name"),
    "service_name too long": _set("s" * 201, "data", "service_name"),
    "service_name null": _set(None, "data", "service_name"),
    "deployment_id not a uuid": _set("dep-1", "data", "deployment_id"),
    "logs link not a uri": _set("not a uri", "data", "links", "logs"),
    "logs link to another path": _set("https://api.example/v1/logs", "data", "links", "logs"),
    "data.links missing": _delete("data", "links"),
    **{
        f"data.{name} missing": _delete("data", name)
        for name in (
            "deployment_id",
            "tenant_id",
            "service_name",
            "old_state",
            "new_state",
            "timestamp",
            "duration_seconds",
            "reason",
        )
    },
}

SPECIFIC_MUTATIONS: dict[str, dict[str, Mutation]] = {
    "deployment.state_change": {
        "a reason where there is none, or none where there is one": _flip_reason,
        "queued with a reason": _states(None, "queued", "why"),
        "in_progress with a reason": _states("queued", "in_progress", "why"),
        "completed with a reason": _states("in_progress", "completed", "why"),
        "failed without a reason": _states("in_progress", "failed", None),
        "rolled_back without a reason": _states("completed", "rolled_back", None),
        "empty reason": _set("", "data", "reason"),
        "blank reason": _set("  ", "data", "reason"),
        "reason too long": _set("r" * 1001, "data", "reason"),
        "reason with a control character": _set("image\npull failed", "data", "reason"),
        "reason not a string": _set(1, "data", "reason"),
        "a check": _set("GET /healthz", "data", "check"),
        "queued -> completed (not a lifecycle edge)": _states("queued", "completed"),
        "completed -> in_progress (backwards)": _states("completed", "in_progress"),
        "failed -> completed": _states("failed", "completed"),
        "rolled_back as the old state (terminal)": _states("rolled_back", "queued"),
        "created in a state other than queued": _states(None, "in_progress"),
        "queued with an old state": _states("in_progress", "queued"),
    },
    "deployment.health_check_failed": {
        "an old state": _set("queued", "data", "old_state"),
        "no detail": _set(None, "data", "reason"),
        "empty detail": _set("", "data", "reason"),
        "detail too long": _set("d" * 1001, "data", "reason"),
        "data.check missing": _delete("data", "check"),
        "check null": _set(None, "data", "check"),
        "check empty": _set("", "data", "check"),
        "check blank": _set(" ", "data", "check"),
        "check too long": _set("c" * 201, "data", "check"),
        "check with a newline": _set("GET\n/healthz", "data", "check"),
        "check not a string": _set(["GET /healthz"], "data", "check"),
    },
    "deployment.rollback_initiated": {
        "no old state": _set(None, "data", "old_state"),
        "from queued (not allowed)": _set("queued", "data", "old_state"),
        "from rolled_back (terminal)": _set("rolled_back", "data", "old_state"),
        "new_state other than rolled_back": _set("completed", "data", "new_state"),
        "the former shape (old_state null, new_state the state rolled back from)": _states(None, "completed"),
        "no reason": _set(None, "data", "reason"),
        "empty reason": _set("", "data", "reason"),
        "reason too long": _set("r" * 1001, "data", "reason"),
        "a check": _set("GET /healthz", "data", "check"),
    },
}

NEGATIVE_CASES = [
    pytest.param(event_type, name, id=f"{event_type}: {name}")
    for event_type in sorted(EVENT_TYPES)
    for name in [*COMMON_MUTATIONS, *SPECIFIC_MUTATIONS[event_type]]
]


@pytest.mark.parametrize(("event_type", "mutation"), NEGATIVE_CASES)
def test_the_schema_rejects_a_broken_payload(
    schemas: dict[str, Json], delivered: Delivered, event_type: str, mutation: str
) -> None:
    apply = {**COMMON_MUTATIONS, **SPECIFIC_MUTATIONS[event_type]}[mutation]
    real = delivered.payloads(event_type)
    assert real
    for payload in real:
        broken = copy.deepcopy(payload)
        apply(broken)
        assert errors(schemas[event_type], broken), (mutation, broken)


# --- state filters match new_state ------------------------------------------------------------


def test_state_filters_match_new_state_so_rolled_back_gets_rollback_initiated(
    tmp_path: Path, receiver: Receiver, schemas: dict[str, Json]
) -> None:
    """An endpoint filtered on ["rolled_back"] gets every rollback_initiated (its new_state is
    rolled_back) as well as the state changes to rolled_back; one filtered on the states a
    rollback starts from gets none of them."""
    clock = oc.ManualClock(dt.datetime.now(dt.timezone.utc))
    store = oc.Store.open(tmp_path / "filtered.db")
    bus = oc.EventBus(clock)
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1"])
    hooks.follow(bus)
    deployments = oc.DeploymentService(store, clock=clock, bus=bus)
    every_event = list(EVENT_TYPES.values())
    endpoints = {
        "rolled_back": hooks.register(
            "acme", receiver.url(f"{FILTERED_PATH}/rolled_back"), every_event, states=["rolled_back"]
        ),
        "rollback_only": hooks.register(
            "acme", receiver.url(f"{FILTERED_PATH}/rollback_only"), ["rollback_initiated"], states=["rolled_back"]
        ),
        "from": hooks.register(
            "acme", receiver.url(f"{FILTERED_PATH}/from"), every_event, states=list(ROLLBACK_FROM)
        ),
    }

    # One rollback from each state that allows one; a health check after the last rollback.
    ids = {}
    for origin in ROLLBACK_FROM:
        d = deployments.create("acme", f"svc-{origin}")
        if origin == "failed":
            deployments.fail(d.id, "image pull failed")
        else:
            deployments.start(d.id)
            clock.advance(2)
            if origin == "completed":
                deployments.complete(d.id)
        deployments.rollback(d.id, f"rollback from {origin}")
        ids[d.id] = origin
    deployments.report_health_check_failed(d.id, "GET /healthz", "still failing")
    hooks.run_due()

    got: dict[str, list[Json]] = {}
    for name, endpoint in endpoints.items():
        requests = receiver.at(f"{FILTERED_PATH}/{name}")
        for request in requests:
            assert Webhook(endpoint.secret).verify(request.body, request.headers) == request.json()
            payload = request.json()
            assert errors(schemas[payload["type"]], payload) == [], payload
        got[name] = [r.json() for r in requests]

    def seen(name: str) -> list[tuple[str, str | None, str, str | None]]:
        return sorted(
            (p["type"], p["data"]["old_state"], p["data"]["new_state"], ids[p["data"]["deployment_id"]])
            for p in got[name]
        )

    rollbacks = [("deployment.rollback_initiated", origin, "rolled_back", origin) for origin in ROLLBACK_FROM]
    assert seen("rollback_only") == sorted(rollbacks)
    assert seen("rolled_back") == sorted(
        [
            *rollbacks,
            *[("deployment.state_change", origin, "rolled_back", origin) for origin in ROLLBACK_FROM],
            ("deployment.health_check_failed", None, "rolled_back", "failed"),
        ]
    )
    for p in got["rolled_back"]:
        if p["type"] != "deployment.health_check_failed":
            assert p["data"]["reason"] == f"rollback from {ids[p['data']['deployment_id']]}", p
    assert seen("from") == sorted(
        [
            ("deployment.state_change", "queued", "in_progress", "in_progress"),
            ("deployment.state_change", "queued", "in_progress", "completed"),
            ("deployment.state_change", "in_progress", "completed", "completed"),
            ("deployment.state_change", "queued", "failed", "failed"),
        ]
    )


# --- templates replace the default payload ---------------------------------------------------


def test_an_endpoint_with_a_template_gets_exactly_the_template_s_json(
    tmp_path: Path, receiver: Receiver, schemas: dict[str, Json]
) -> None:
    clock = oc.ManualClock(dt.datetime.now(dt.timezone.utc))
    store = oc.Store.open(tmp_path / "templated.db")
    hooks = oc.WebhookService(store, clock=clock, allow=["127.0.0.1"])
    template = (
        '{"text": "{{ service_name }} is {{ new_state }}", "event": {{ event_type | tojson }},'
        ' "deployment": {{ deployment_id | tojson }}, "logs": {{ payload.data.links.logs | tojson }}}'
    )
    endpoint = hooks.register("acme", receiver.url(TEMPLATE_PATH), ["state_change"], template=template)
    deployments = oc.DeploymentService(store, clock=clock, webhooks=hooks)
    d = deployments.create("acme", "checkout")
    assert hooks.run_due() == 1
    (request,) = receiver.at(TEMPLATE_PATH)
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body == {
        "text": "checkout is queued",
        "event": "deployment.state_change",
        "deployment": d.id,
        "logs": f"http://127.0.0.1:8080/v1/deployments/{d.id}/logs",
    }
    assert errors(schemas["deployment.state_change"], body), "a templated body is not the default payload"
