"""API contracts (spec Task 4): what the library really sends matches what it documents.

Sections:

1. Shared helpers and module-level fixtures (schema loading, a real HTTP receiver on
   127.0.0.1, validators with real format checking).
2. Delivered webhook payloads against the JSON Schemas in docs/schemas/. Deployments are
   driven through every lifecycle edge, plus health-check failures and rollbacks. The bodies
   the receiver got are validated, their Standard Webhooks signatures are verified, and each
   schema is shown to reject broken payloads, so it is not vacuous. Endpoints filtered on
   states get exactly the events whose `new_state` they name.

3. The REST API against docs/openapi.json, through real HTTP to a server started in-process
   (`oc.Server`) over a SQLite file: every response of every call is checked against the
   documented operation (status, media type, body schema with formats and `$ref`s resolved),
   and the behaviour is tested (endpoint CRUD and paging, tenant isolation on every id route,
   authentication, refused input, the deployment lifecycle, and deployments driven over REST
   delivered signed to the receiver, queryable and redeliverable).
4. A property-based run of schemathesis against the document: no 5xx, every answer as
   documented, invalid data refused, authentication enforced.

Add more sections below the last one. Reuse the fixtures of section 1.

Real parts only: SQLite files in temporary directories (opened through ``oc.Store.open``,
never with Python's sqlite3) and a real HTTP server on loopback. Deployment time is driven by
a ManualClock that starts at the real current time, because the Standard Webhooks verifier
checks the signature timestamp against the wall clock.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import http.client
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import omnicloud as oc
from tests.receiver import Receiver, Request

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


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver(status=204)
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


# =============================================================================================
# 3. The REST API vs docs/openapi.json
# =============================================================================================
#
# A real server (`oc.Server`) on loopback over a SQLite file. Every response of every call below
# goes through `Api.call`, which finds the documented operation by method and path template,
# picks the documented response for the status, checks the media type and validates the body
# (draft 2020-12, formats checked, `#/components/schemas/...` resolved inside the document).

OPENAPI_FILE = REPO / "docs" / "openapi.json"
#: The URI the OpenAPI document is registered under, so its internal `$ref`s resolve.
OPENAPI_URI = "https://omnicloud.dev/openapi.json"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://omnicloud.dev/problems/"
MAX_BODY_BYTES = 1024 * 1024
#: The operations that need no API key; every other one is under /v1 and needs one.
UNAUTHENTICATED = {("GET", "/healthz"), ("GET", "/openapi.json")}
#: The receiver paths of this section (section 2 uses /hooks, /templated and /filtered).
API_HOOKS = "/api"
EMPTY_PAGE: Json = {"data": [], "next_after": None}


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to `parts`."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Reply:
    """One real HTTP response."""

    method: str
    path: str
    status: int
    headers: dict[str, str]  # lower-case names
    raw: bytes

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def body(self) -> Json:
        body = self.json()
        assert isinstance(body, dict), (self.method, self.path, body)
        return body

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.media_type} {self.raw[:600]!r}"


class OpenApi:
    """The committed OpenAPI document, and the check of a real response against it."""

    def __init__(self, doc: Json) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(OPENAPI_URI, DRAFT202012.create_resource(doc))
        self._validators: dict[str, Draft202012Validator] = {}
        self._templates = [(self._regex(t), t) for t in doc["paths"]]

    @staticmethod
    def _regex(template: str) -> re.Pattern[str]:
        """A path template as a regex: each `{parameter}` is one non-empty segment."""
        segments = ("[^/]+" if s.startswith("{") else re.escape(s) for s in template.split("/"))
        return re.compile("^" + "/".join(segments) + "$")

    def operations(self) -> list[tuple[str, str, Json]]:
        """Every operation: (METHOD, path template, operation object)."""
        return [(m.upper(), t, op) for t, item in self.doc["paths"].items() for m, op in item.items()]

    def template(self, path: str) -> str | None:
        """The documented path template a concrete path matches (literal templates first)."""
        matches = [t for regex, t in self._templates if regex.match(path)]
        matches.sort(key=lambda t: t.count("{"))
        return matches[0] if matches else None

    def errors(self, pointer: str, instance: object) -> list[str]:
        """Validation errors of `instance` against the schema at `pointer` in the document."""
        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator(
                {"$ref": f"{OPENAPI_URI}#{pointer}"}, registry=self.registry, format_checker=FormatChecker()
            )
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in self._validators[pointer].iter_errors(instance)
        ]

    def check(self, reply: Reply) -> None:
        """Asserts that `reply` is what the document says the operation answers."""
        path = urllib.parse.urlsplit(reply.path).path
        template = self.template(path)
        operation = self.doc["paths"].get(template, {}).get(reply.method.lower()) if template else None
        if operation is None:
            # The two answers the document does not list per operation: no such route (404) and
            # no such method on a route (405, with Allow). Both are problems.
            if template is None:
                assert reply.status == 404, f"undocumented route answered: {reply}"
            else:
                assert reply.status == 405, f"undocumented method answered: {reply}"
                allowed = {m.strip() for m in reply.headers.get("allow", "").split(",")}
                documented = {m.upper() for m in self.doc["paths"][template]}
                assert documented <= allowed and reply.method not in allowed, (allowed, reply)
            assert reply.media_type == PROBLEM_JSON, str(reply)
            problem = reply.body
            assert self.errors(_pointer("components", "schemas", "Problem"), problem) == [], str(reply)
            assert problem["status"] == reply.status, str(reply)
            return
        responses = operation["responses"]
        status = str(reply.status)
        key = next((k for k in (status, f"{status[0]}XX", "default") if k in responses), None)
        assert key is not None, f"status not documented for {reply.method} {template}: {reply}"
        response = responses[key]
        for name, header in response.get("headers", {}).items():
            value = reply.headers.get(name.lower())
            assert value is not None or not header.get("required"), f"header {name} missing: {reply}"
        content = response.get("content")
        if not content:
            assert reply.raw == b"", f"a documented empty answer has a body: {reply}"
            return
        assert reply.media_type in content, f"media type not documented ({sorted(content)}): {reply}"
        operation_pointer = _pointer("paths", template or "", reply.method.lower())
        pointer = operation_pointer + _pointer("responses", key, "content", reply.media_type, "schema")
        body = reply.json()
        assert self.errors(pointer, body) == [], f"{self.errors(pointer, body)}: {reply}"
        if reply.media_type == PROBLEM_JSON:
            assert body["status"] == reply.status, str(reply)
            assert body["type"].startswith(PROBLEM_TYPES), str(reply)
        else:
            assert reply.status < 400, f"an error that is not a problem: {reply}"


_NO_BODY = object()
_json_module = json  # `Api.call` has a parameter named `json`


class Api:
    """A client of one running server that checks every response against the document."""

    def __init__(self, base: str, openapi: OpenApi) -> None:
        self.base = base
        self.openapi = openapi
        parts = urllib.parse.urlsplit(base)
        assert parts.hostname is not None and parts.port is not None, base
        self.host, self.port = parts.hostname, parts.port

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        json: object = _NO_BODY,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        expect: int | None = None,
    ) -> Reply:
        """Sends one request (with `Authorization: Bearer <key>` if `key`), validates the answer
        against the document, and asserts its status if `expect` is given."""
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if json is not _NO_BODY:
            body = _json_module.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        if content_type is not None:
            sent["Content-Type"] = content_type
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            try:
                connection.request(method, path, body=body, headers=sent)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading a large body
            response = connection.getresponse()
            reply = Reply(
                method, path, response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            connection.close()
        self.openapi.check(reply)
        if expect is not None:
            assert reply.status == expect, str(reply)
        return reply

    def create_endpoint(
        self, key: str, url: str, event_types: list[str] | None = None, *, expect: int | None = 201, **fields: object
    ) -> Reply:
        """POST /v1/endpoints with `url`, `event_types` (state_change by default) and `fields`."""
        body = {"url": url, "event_types": event_types or ["state_change"], **fields}
        return self.call("POST", "/v1/endpoints", key=key, json=body, expect=expect)

    def deploy(self, key: str, service_name: str) -> Json:
        """A new deployment (POST /v1/deployments, 201)."""
        return self.call("POST", "/v1/deployments", key=key, json={"service_name": service_name}, expect=201).body

    def problem(self, reply: Reply, status: int, kind: str, **fields: object) -> Json:
        """Asserts that `reply` is a problem of `kind` with `status` and these members."""
        assert reply.status == status, str(reply)
        assert reply.media_type == PROBLEM_JSON, str(reply)
        problem = reply.body
        assert problem["type"] == PROBLEM_TYPES + kind, str(reply)
        for name, value in fields.items():
            assert problem.get(name) == value, (name, str(reply))
        return problem

    def pages(self, path: str, *, key: str, limit: int) -> list[Json]:
        """Every item of a list route, read `limit` at a time through `next_after`."""
        items: list[Json] = []
        after: str | None = None
        separator = "&" if "?" in path else "?"
        for _ in range(1000):
            query = f"limit={limit}" + (f"&after={urllib.parse.quote(after)}" if after else "")
            page = self.call("GET", f"{path}{separator}{query}", key=key, expect=200).body
            assert len(page["data"]) <= limit
            items.extend(page["data"])
            after = page["next_after"]
            if after is None:
                return items
            assert after == page["data"][-1]["id"] and len(page["data"]) == limit, page
        raise AssertionError("paging did not end")


@dataclass
class Running:
    """A started server, its client and API keys by tenant."""

    server: oc.Server
    api: Api
    keys: dict[str, str]

    def key(self, tenant: str) -> str:
        """The tenant's API key (issued on first use)."""
        if tenant not in self.keys:
            self.keys[tenant] = self.server.issue_api_key(tenant)
        return self.keys[tenant]


@contextlib.contextmanager
def running_server(db: Path, openapi: OpenApi) -> Iterator[Running]:
    server = oc.Server(db_path=db, allow=["127.0.0.1/32"], delivery_timeout_s=5.0)
    base = server.start()
    try:
        yield Running(server, Api(base, openapi), {t: server.issue_api_key(t) for t in ("acme", "globex")})
    finally:
        server.stop()


@pytest.fixture(scope="module")
def openapi() -> OpenApi:
    doc: Json = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return OpenApi(doc)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, openapi: OpenApi) -> Iterator[Running]:
    """One server for the tests whose state does not interfere (each uses its own ids)."""
    with running_server(tmp_path_factory.mktemp("api") / "api.db", openapi) as running:
        yield running


@pytest.fixture
def fresh(tmp_path: Path, openapi: OpenApi) -> Iterator[Running]:
    """A server of its own, for tests that count what exists."""
    with running_server(tmp_path / "api.db", openapi) as running:
        yield running


def _concrete(template: str, value: str = "missing") -> str:
    return re.sub(r"\{[^/]+\}", value, template)


# --- the document ----------------------------------------------------------------------------


def test_served_openapi_matches_the_committed_document(srv: Running, openapi: OpenApi) -> None:
    served = srv.api.call("GET", "/openapi.json", key=None, expect=200)
    assert served.media_type == "application/json"
    assert served.json() == json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert openapi.doc["openapi"].startswith("3.1.")
    assert openapi.doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ock_<key id>_<secret>",
        "description": "A tenant's API key",
    }
    for method, template, operation in openapi.operations():
        if (method, template) in UNAUTHENTICATED:
            assert not operation.get("security"), (method, template)
        else:
            assert template.startswith("/v1/"), (method, template)
            assert operation.get("security") == [{"bearer": []}], (method, template)
    assert {(m, t) for m, t, _ in openapi.operations()} >= UNAUTHENTICATED


def test_the_document_is_complete_and_its_schemas_are_valid(openapi: OpenApi) -> None:
    ids = [op["operationId"] for _, _, op in openapi.operations()]
    assert len(ids) == len(set(ids)) == 21
    for name, schema in openapi.doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert schema.get("description"), name
    # Every $ref resolves inside the document.
    resolver = openapi.registry.resolver(OPENAPI_URI)

    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = set(walk(openapi.doc))
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs), refs
    for ref in refs:
        resolver.lookup(ref)
    for method, template, operation in openapi.operations():
        responses = operation["responses"]
        assert "500" in responses, (method, template)
        assert any(s.startswith("2") for s in responses), (method, template)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if template.startswith("/v1/"):
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, template)
        if "{" in template:
            assert {"400", "404"} <= set(responses), (method, template)
        if operation.get("requestBody"):
            assert {"400", "413", "415", "422"} <= set(responses), (method, template)
            assert list(operation["requestBody"]["content"]) == ["application/json"]


def test_the_response_check_rejects_what_it_should(srv: Running, openapi: OpenApi) -> None:
    """The check is not vacuous: broken variants of real answers fail it."""
    good = srv.api.call("GET", "/healthz", key=None, expect=200)
    created = dataclasses.replace(good, method="POST", path="/v1/deployments", status=201)
    created.raw = json.dumps(srv.api.deploy(srv.key("acme"), "probe")).encode()
    missing = srv.api.call("GET", "/v1/deployments/missing", key=srv.key("acme"), expect=404)
    not_allowed = srv.api.call("PUT", "/healthz", key=None, expect=405)
    for baseline in (good, created, missing, not_allowed):
        openapi.check(baseline)
    variants = {
        "undocumented status": dataclasses.replace(good, status=201),
        "wrong media type": dataclasses.replace(good, headers={"content-type": "text/plain"}),
        "problem sent as application/json": dataclasses.replace(
            missing, headers={**missing.headers, "content-type": "application/json"}
        ),
        "unknown enum value": dataclasses.replace(good, raw=b'{"status": "degraded"}'),
        "missing required member": dataclasses.replace(
            created, raw=json.dumps({k: v for k, v in created.body.items() if k != "state"}).encode()
        ),
        "date-time not RFC 3339": dataclasses.replace(
            created, raw=json.dumps({**created.body, "created_at": "yesterday"}).encode()
        ),
        "negative duration": dataclasses.replace(
            created, raw=json.dumps({**created.body, "duration_seconds": -1}).encode()
        ),
        "problem status differs from the HTTP status": dataclasses.replace(
            missing, raw=json.dumps({**missing.body, "status": 400}).encode()
        ),
        "problem without a detail": dataclasses.replace(
            missing, raw=json.dumps({k: v for k, v in missing.body.items() if k != "detail"}).encode()
        ),
        "a body on 204": Reply("DELETE", "/v1/endpoints/x", 204, {"content-type": "application/json"}, b"{}"),
        "unknown route answering 200": dataclasses.replace(good, path="/nope"),
        "405 without Allow": dataclasses.replace(
            not_allowed, headers={k: v for k, v in not_allowed.headers.items() if k != "allow"}
        ),
        "405 whose Allow lacks a documented method": dataclasses.replace(
            not_allowed, headers={**not_allowed.headers, "allow": "POST"}
        ),
    }
    for name, reply in variants.items():
        with pytest.raises(AssertionError):
            openapi.check(reply)
            pytest.fail(f"accepted: {name}")


def test_health_answers_without_a_key(srv: Running) -> None:
    assert srv.api.call("GET", "/healthz", key=None, expect=200).body == {"status": "ok"}


# --- endpoints -------------------------------------------------------------------------------


def test_endpoint_crud_round_trip(srv: Running, receiver: Receiver) -> None:
    api, key = srv.api, srv.key("acme")
    url = receiver.url(f"{API_HOOKS}/crud")
    created = api.call(
        "POST",
        "/v1/endpoints",
        key=key,
        json={
            "url": url,
            "event_types": ["rollback_initiated", "state_change"],
            "states": ["failed", "rolled_back"],
            "template": '{"text": {{ service_name | tojson }}}',
            "rate_limit_per_minute": 60,
            "max_attempts": 3,
        },
        expect=201,
    ).body
    assert re.fullmatch(r"ep_[0-9a-f]{32}", created["id"]), created["id"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", created["secret"]), created["secret"]
    assert created["tenant_id"] == "acme" and created["url"] == url
    assert created["event_types"] == ["state_change", "rollback_initiated"]  # sorted
    assert created["states"] == ["failed", "rolled_back"]
    assert (created["rate_limit_per_minute"], created["max_attempts"]) == (60, 3)
    assert created["enabled"] is True
    assert created["disabled_reason"] is None and created["previous_secret_expires_at"] is None
    assert created["created_at"] == created["updated_at"]
    endpoint = {k: v for k, v in created.items() if k != "secret"}
    path = f"/v1/endpoints/{created['id']}"
    assert api.call("GET", path, key=key, expect=200).body == endpoint  # no secret when read

    # Defaults, and a secret of the caller's choosing.
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    plain = api.create_endpoint(key, url, ["health_check_failed"], secret=secret).body
    assert plain["secret"] == secret
    assert (plain["states"], plain["template"]) == (None, None)
    assert (plain["rate_limit_per_minute"], plain["max_attempts"]) == (100, 5)

    # Paging: oldest first, `limit` at a time, `next_after` the cursor.
    more = [api.create_endpoint(key, url).body["id"] for _ in range(3)]
    everything = api.call("GET", "/v1/endpoints?limit=500", key=key, expect=200).body
    assert everything["next_after"] is None
    ids = [e["id"] for e in everything["data"]]
    assert ids == sorted(ids)
    mine = [created["id"], plain["id"], *more]
    assert [i for i in ids if i in mine] == mine
    for limit in (1, 2, 3):
        assert [e["id"] for e in api.pages("/v1/endpoints", key=key, limit=limit)] == ids
    first = api.call("GET", "/v1/endpoints?limit=2", key=key, expect=200).body
    assert first["next_after"] == first["data"][-1]["id"]
    after = api.call("GET", f"/v1/endpoints?limit=2&after={first['next_after']}", key=key, expect=200).body
    assert [e["id"] for e in after["data"]] == ids[2:4]
    assert api.call("GET", f"/v1/endpoints?after={ids[-1]}", key=key, expect=200).body == EMPTY_PAGE

    # Changes: only the fields given; null clears `states` and `template`.
    changed = api.call(
        "PATCH",
        path,
        key=key,
        json={
            "url": url + "/v2",
            "event_types": ["health_check_failed"],
            "rate_limit_per_minute": 10,
            "max_attempts": 20,
        },
        expect=200,
    ).body
    assert changed == {
        **endpoint,
        "url": url + "/v2",
        "event_types": ["health_check_failed"],
        "rate_limit_per_minute": 10,
        "max_attempts": 20,
        "updated_at": changed["updated_at"],
    }
    assert _time(changed["updated_at"]) >= _time(endpoint["updated_at"])
    cleared = api.call("PATCH", path, key=key, json={"states": None, "template": None}, expect=200).body
    assert (cleared["states"], cleared["template"]) == (None, None)
    assert api.call("PATCH", path, key=key, json={}, expect=200).body["url"] == url + "/v2"
    disabled = api.call("PATCH", path, key=key, json={"enabled": False}, expect=200).body
    assert disabled["enabled"] is False and disabled["disabled_reason"]
    enabled = api.call("PATCH", path, key=key, json={"enabled": True}, expect=200).body
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    assert api.call("GET", path, key=key, expect=200).body == enabled

    # Secret rotation: a new secret; the old one keeps signing for the grace period (24 h).
    before = dt.datetime.now(dt.timezone.utc)
    rotated = api.call("POST", f"{path}/rotate-secret", key=key, expect=200).body
    assert rotated["secret"] != created["secret"] and rotated["secret"].startswith("whsec_")
    until = _time(rotated["previous_secret_expires_at"])
    assert abs((until - before).total_seconds() - 86_400) < 60
    chosen = api.call(
        "POST", f"{path}/rotate-secret", key=key, json={"secret": secret, "grace_s": 0}, expect=200
    ).body
    assert chosen["secret"] == secret and chosen["previous_secret_expires_at"] is None
    api.problem(
        api.call("POST", f"{path}/rotate-secret", key=key, json={"secret": "not-a-secret"}),
        422,
        "invalid-secret",
        field="secret",
    )

    # Deletion: 204 without a body, then the endpoint is gone everywhere.
    for endpoint_id in mine[1:]:
        api.call("DELETE", f"/v1/endpoints/{endpoint_id}", key=key, expect=204)
    reply = api.call("DELETE", path, key=key, expect=204)
    assert reply.raw == b""
    for method, route, body in (
        ("GET", path, _NO_BODY),
        ("DELETE", path, _NO_BODY),
        ("PATCH", path, {"max_attempts": 2}),
        ("POST", f"{path}/rotate-secret", _NO_BODY),
    ):
        api.problem(api.call(method, route, key=key, json=body), 404, "not-found")
    assert not set(mine) & {e["id"] for e in api.pages("/v1/endpoints", key=key, limit=500)}


# --- tenants ---------------------------------------------------------------------------------


def test_a_tenant_never_sees_or_touches_another_tenant_s_resources(srv: Running, receiver: Receiver) -> None:
    api, acme, globex = srv.api, srv.key("acme"), srv.key("globex")
    endpoint = api.create_endpoint(acme, receiver.url(f"{API_HOOKS}/isolation")).body
    deployment = api.deploy(acme, "isolated")
    deliveries = api.call("GET", f"/v1/deliveries?endpoint_id={endpoint['id']}", key=acme, expect=200).body["data"]
    assert len(deliveries) == 1
    delivery = deliveries[0]
    globex_deployment = api.deploy(globex, "theirs")

    ids = {"endpoint_id": endpoint["id"], "delivery_id": delivery["id"], "deployment_id": deployment["id"]}
    bodies: dict[str, object] = {
        "/v1/endpoints/{endpoint_id}": {"enabled": False},
        "/v1/endpoints/{endpoint_id}/rotate-secret": {},
        "/v1/deployments/{deployment_id}/fail": {"reason": "sabotage"},
        "/v1/deployments/{deployment_id}/rollback": {"reason": "sabotage"},
        "/v1/deployments/{deployment_id}/health-check-failures": {"check": "GET /", "detail": "sabotage"},
    }
    id_routes = [(m, t) for m, t, _ in srv.api.openapi.operations() if "{" in t]
    assert len(id_routes) == 14
    for method, template in id_routes:
        name = re.search(r"\{([^}]+)\}", template)
        assert name is not None
        path = template.replace("{" + name.group(1) + "}", ids[name.group(1)])
        body = bodies.get(template, _NO_BODY) if method in ("POST", "PATCH") else _NO_BODY
        theirs = api.call(method, path, key=globex, json=body)
        problem = api.problem(theirs, 404, "not-found")
        # Exactly what a missing id answers.
        real = ids[name.group(1)]
        unknown = real[:-1] + ("1" if real.endswith("0") else "0")
        missing = api.call(method, path.replace(real, unknown), key=globex, json=body)
        assert {k: v for k, v in problem.items() if k != "detail"} == {
            k: v for k, v in api.problem(missing, 404, "not-found").items() if k != "detail"
        }
        assert "globex" not in problem["detail"] and "acme" not in problem["detail"]

    # Nothing changed for acme.
    assert api.call("GET", f"/v1/endpoints/{endpoint['id']}", key=acme, expect=200).body == {
        k: v for k, v in endpoint.items() if k != "secret"
    }
    assert api.call("GET", f"/v1/deployments/{deployment['id']}", key=acme, expect=200).body["state"] == "queued"
    assert api.call("GET", f"/v1/deliveries/{delivery['id']}", key=acme, expect=200).body["id"] == delivery["id"]

    # Globex's lists never contain acme's items, even when asked for acme's endpoint.
    lists = ("/v1/endpoints", "/v1/deliveries", "/v1/deployments", f"/v1/deliveries?endpoint_id={endpoint['id']}")
    for path in lists:
        items = api.pages(path, key=globex, limit=500)
        assert not {i["id"] for i in items} & set(ids.values()), path
        assert all(i["tenant_id"] == "globex" for i in items), path
    assert globex_deployment["id"] in {d["id"] for d in api.pages("/v1/deployments", key=globex, limit=500)}
    assert globex_deployment["id"] not in {d["id"] for d in api.pages("/v1/deployments", key=acme, limit=500)}
    assert api.call("GET", f"/v1/deliveries?endpoint_id={endpoint['id']}", key=globex, expect=200).body == EMPTY_PAGE


# --- authentication --------------------------------------------------------------------------

MISSING_CHALLENGE = 'Bearer realm="omnicloud"'
INVALID_CHALLENGE = 'Bearer realm="omnicloud", error="invalid_token"'


@pytest.mark.parametrize(
    ("credentials", "challenge"),
    [
        pytest.param({}, MISSING_CHALLENGE, id="no Authorization header"),
        pytest.param({"Authorization": "Basic YWNtZTpzZWNyZXQ="}, INVALID_CHALLENGE, id="wrong scheme"),
        pytest.param({"Authorization": "Bearer"}, INVALID_CHALLENGE, id="bearer without a token"),
        pytest.param({"Authorization": "Bearer garbage"}, INVALID_CHALLENGE, id="garbage key"),
        pytest.param({"Authorization": f"Bearer ock_{'0' * 32}_x"}, INVALID_CHALLENGE, id="unknown key"),
    ],
)
def test_every_v1_operation_refuses_a_request_without_a_valid_key(
    srv: Running, credentials: dict[str, str], challenge: str
) -> None:
    """401 problem with the bearer challenge, before the body or the path is looked at."""
    operations = [(m, t) for m, t, _ in srv.api.openapi.operations() if (m, t) not in UNAUTHENTICATED]
    assert len(operations) == 19
    for method, template in operations:
        body = {} if method in ("POST", "PATCH") else _NO_BODY
        reply = srv.api.call(method, _concrete(template), key=None, headers=credentials, json=body)
        srv.api.problem(reply, 401, "unauthorized")
        assert reply.headers["www-authenticate"] == challenge, str(reply)


def test_a_key_works_until_revoked_and_its_secret_must_match(srv: Running) -> None:
    api = srv.api
    key = srv.server.issue_api_key("acme", name="ci")
    assert key.startswith("ock_")
    key_id = key.split("_")[1]
    api.call("GET", "/v1/deployments", key=key, expect=200)
    api.call("GET", "/v1/deployments", key=None, headers={"Authorization": f"bearer {key}"}, expect=200)
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    reply = api.call("GET", "/v1/deployments", key=wrong_secret)
    api.problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == INVALID_CHALLENGE
    srv.server.revoke_api_key("acme", key_id)
    for method, path in (("GET", "/v1/deployments"), ("POST", "/v1/deployments")):
        body = {"service_name": "after-revocation"} if method == "POST" else _NO_BODY
        reply = api.call(method, path, key=key, json=body)
        api.problem(reply, 401, "unauthorized")
        assert reply.headers["www-authenticate"] == INVALID_CHALLENGE
    # The tenant's other keys still work.
    api.call("GET", "/v1/deployments", key=srv.key("acme"), expect=200)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://10.0.0.1/x", "unsafe-url"),
        ("http://169.254.169.254/", "unsafe-url"),
        ("http://169.254.169.254/latest/meta-data/", "unsafe-url"),
        ("http://192.168.1.1/hook", "unsafe-url"),
        ("http://[::1]:8080/x", "unsafe-url"),
        ("http://localhost:8080/x", "unsafe-url"),
        ("http://2130706433/", "invalid-url"),
        ("http://0x7f000001/x", "invalid-url"),
        ("ftp://127.0.0.1/x", "invalid-url"),
        ("http://user:pw@127.0.0.1/x", "invalid-url"),
        ("http://127.0.0.1/x#fragment", "invalid-url"),
        ("not a url", "invalid-url"),
        ("", "invalid-url"),
    ],
)
def test_an_unsafe_or_invalid_webhook_url_is_refused(srv: Running, url: str, kind: str) -> None:
    api, key = srv.api, srv.key("acme")
    api.problem(api.create_endpoint(key, url, expect=None), 422, kind, field="url")


def test_an_unsafe_url_is_refused_on_update_too(srv: Running, receiver: Receiver) -> None:
    api, key = srv.api, srv.key("acme")
    endpoint = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/update")).body
    path = f"/v1/endpoints/{endpoint['id']}"
    for change, kind, member in (
        ({"url": "http://169.254.169.254/"}, "unsafe-url", {"field": "url"}),
        ({"template": "{% if %}"}, "invalid-template", {"line": 1}),
        ({"states": []}, "validation-failed", {"field": "states"}),
        ({"rate_limit_per_minute": 0}, "validation-failed", {"field": "rate_limit_per_minute"}),
        ({"max_attempts": 21}, "validation-failed", {"field": "max_attempts"}),
    ):
        api.problem(api.call("PATCH", path, key=key, json=change), 422, kind, **member)
    # Nothing was changed by the refused updates.
    assert api.call("GET", path, key=key, expect=200).body == {k: v for k, v in endpoint.items() if k != "secret"}
    api.call("DELETE", path, key=key, expect=204)


def test_a_template_that_does_not_compile_is_refused_with_its_line(srv: Running, receiver: Receiver) -> None:
    api, key = srv.api, srv.key("acme")
    for template, line in (('{"a": 1,\n "b": {% for %}}', 2), ("{{ x ", 1), ('{\n\n"x": {{ 1 + }}\n}', 3)):
        reply = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/t"), template=template, expect=None)
        problem = api.problem(reply, 422, "invalid-template", line=line)
        assert f"line {line}" in problem["detail"]
    too_long = "x" * (64 * 1024 + 1)
    reply = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/t"), template=too_long, expect=None)
    api.problem(reply, 422, "invalid-template")


RENDER_FAILURES = {
    # path -> (template, what the attempt's error says)
    "undefined": ("{{ no_such_variable }}", "`no_such_variable` is undefined"),
    "runaway-range": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "ran out of fuel",
    ),
    "runaway-loop": ('{"n": [{% for i in range(40000) %}{{ i }},{% endfor %}0]}', "ran out of fuel"),
    "not-json": ("checkout is {{ new_state }}", "not valid JSON"),
}


def test_a_template_that_fails_only_when_rendered_is_accepted_and_its_deliveries_exhausted(
    srv: Running, receiver: Receiver
) -> None:
    """Registration compiles the template (syntax errors are refused there, with their line);
    an undefined variable (strict), a runaway loop (fuel) or output that is not JSON are only
    known at render time: each such delivery is exhausted at once, with the reason as its only
    attempt, and nothing is sent."""
    api, key = srv.api, srv.key("initech")
    endpoints = {}
    for name, (template, _) in RENDER_FAILURES.items():
        created = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/render/{name}"), template=template)
        endpoints[name] = created.body["id"]
    api.deploy(key, "render")
    assert srv.server.flush(30)
    for name, (_, error) in RENDER_FAILURES.items():
        listed = api.call("GET", f"/v1/deliveries?endpoint_id={endpoints[name]}", key=key, expect=200)
        (delivery,) = listed.body["data"]
        assert (delivery["status"], delivery["attempt_count"]) == ("exhausted", 1), name
        assert delivery["next_attempt_at"] is None, name
        detail = api.call("GET", f"/v1/deliveries/{delivery['id']}", key=key, expect=200).body
        (attempt,) = detail["attempts"]
        assert attempt["status_code"] is None and error in attempt["error"], (name, attempt)
        attempts = api.call("GET", f"/v1/deliveries/{delivery['id']}/attempts", key=key, expect=200).body
        assert attempts == {"data": detail["attempts"]}
        assert receiver.at(f"{API_HOOKS}/render/{name}") == [], name
    exhausted = api.pages("/v1/deliveries?status=exhausted", key=key, limit=2)
    assert {d["endpoint_id"] for d in exhausted} == set(endpoints.values())


def test_redelivering_a_delivery_whose_template_failed_never_sends_an_empty_body(
    srv: Running, receiver: Receiver
) -> None:
    api, key = srv.api, srv.key("hooli")
    path = f"{API_HOOKS}/redeliver-unrendered"
    endpoint = api.create_endpoint(key, receiver.url(path), template="{{ nope }}").body
    api.deploy(key, "unrendered")
    (delivery,) = api.call("GET", f"/v1/deliveries?endpoint_id={endpoint['id']}", key=key, expect=200).body["data"]
    assert delivery["status"] == "exhausted" and delivery["body"] == ""
    # Nothing was ever rendered, so there is nothing to send again: refused, and nothing changes.
    reply = api.call("POST", f"/v1/deliveries/{delivery['id']}/redeliver", key=key)
    problem = api.problem(reply, 409, "not-redeliverable")
    assert "nope" in problem["detail"], problem
    assert srv.server.flush(30)
    after = api.call("GET", f"/v1/deliveries/{delivery['id']}", key=key, expect=200).body
    assert (after["status"], after["attempt_count"]) == ("exhausted", 1), after
    assert receiver.at(path) == []


@pytest.mark.parametrize(
    ("change", "kind", "field"),
    [
        pytest.param({"event_types": ["deployment_created"]}, "validation-failed", None, id="unknown event type"),
        pytest.param({"event_types": []}, "validation-failed", "event_types", id="no event type"),
        pytest.param({"states": []}, "validation-failed", "states", id="empty state filter"),
        pytest.param({"states": ["paused"]}, "validation-failed", None, id="unknown state"),
        pytest.param({"rate_limit_per_minute": 0}, "validation-failed", "rate_limit_per_minute", id="rate limit 0"),
        pytest.param(
            {"rate_limit_per_minute": 100_001}, "validation-failed", "rate_limit_per_minute", id="rate limit too high"
        ),
        pytest.param({"rate_limit_per_minute": -1}, "validation-failed", None, id="negative rate limit"),
        pytest.param({"max_attempts": 0}, "validation-failed", "max_attempts", id="max_attempts 0"),
        pytest.param({"max_attempts": 21}, "validation-failed", "max_attempts", id="max_attempts 21"),
        pytest.param({"secret": "s3cr3t"}, "invalid-secret", "secret", id="secret not whsec_"),
        pytest.param({"secret": "whsec_c2hvcnQ="}, "invalid-secret", "secret", id="secret too short"),
        pytest.param({"url": 5}, "validation-failed", None, id="url not a string"),
        pytest.param({"unknown": 1}, "validation-failed", None, id="unknown field"),
    ],
)
def test_an_unacceptable_endpoint_setting_is_refused_naming_it(
    srv: Running, receiver: Receiver, change: Json, kind: str, field: str | None
) -> None:
    api = srv.api
    body = {"url": receiver.url(f"{API_HOOKS}/refused"), "event_types": ["state_change"], **change}
    problem = api.problem(api.call("POST", "/v1/endpoints", key=srv.key("acme"), json=body), 422, kind)
    assert problem.get("field") == field, problem


def test_a_grace_period_out_of_range_names_the_request_field(srv: Running, receiver: Receiver) -> None:
    api, key = srv.api, srv.key("acme")
    endpoint = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/grace")).body
    reply = api.call("POST", f"/v1/endpoints/{endpoint['id']}/rotate-secret", key=key, json={"grace_s": 604_801})
    api.problem(reply, 422, "validation-failed", field="grace_s")


def test_a_body_that_is_not_acceptable_json_is_refused(srv: Running) -> None:
    api, key = srv.api, srv.key("acme")
    post = functools.partial(api.call, "POST", "/v1/deployments", key=key)
    api.problem(post(body=b'{"service_name": ', content_type="application/json"), 400, "malformed-request")
    api.problem(post(body=b"", content_type="application/json"), 400, "malformed-request")
    api.problem(post(body=b"{'service_name': 'x'}", content_type="application/json"), 400, "malformed-request")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):  # None: no Content-Type
        reply = post(body=b'{"service_name": "x"}', content_type=content_type)
        api.problem(reply, 415, "unsupported-media-type")
    api.problem(post(json=[]), 422, "validation-failed")
    api.problem(post(json={}), 422, "validation-failed")
    api.problem(post(json={"service_name": 1}), 422, "validation-failed")
    huge = b'{"service_name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    api.problem(post(body=huge, content_type="application/json"), 413, "payload-too-large")
    reply = api.call("POST", "/v1/endpoints", key=key, body=huge, content_type="application/json")
    api.problem(reply, 413, "payload-too-large")
    # A body just under the limit is read (and refused for its content, not its size).
    under = b'{"service_name": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
    api.problem(post(body=under, content_type="application/json"), 422, "validation-failed")


def test_unknown_routes_and_methods_answer_problems(srv: Running) -> None:
    api, key = srv.api, srv.key("acme")
    for path in ("/nope", "/v1", "/v1/nope", "/v1/endpoints/a/b", "/v2/endpoints"):
        for k in (key, None):
            api.problem(api.call("GET", path, key=k), 404, "not-found")
    for method, path in (
        ("PUT", "/v1/endpoints"),
        ("DELETE", "/v1/deployments"),
        ("POST", "/v1/deployments/x/logs"),
        ("GET", "/v1/deployments/x/start"),
        ("PUT", "/v1/endpoints/x"),
        ("DELETE", "/healthz"),
        ("POST", "/openapi.json"),
    ):
        api.problem(api.call(method, path, key=key), 405, "method-not-allowed")


@pytest.mark.parametrize("route", ["/v1/endpoints", "/v1/deliveries", "/v1/deployments"])
def test_paging_parameters_are_checked(srv: Running, route: str) -> None:
    api, key = srv.api, srv.key("acme")
    for limit in ("0", "501", "-1", "abc", "1.5", ""):
        api.problem(api.call("GET", f"{route}?limit={limit}", key=key), 400, "malformed-request")
    for limit in ("1", "500"):
        assert len(api.call("GET", f"{route}?limit={limit}", key=key, expect=200).body["data"]) <= int(limit)


def test_unknown_filters_are_refused(srv: Running) -> None:
    api, key = srv.api, srv.key("acme")
    for path in ("/v1/deliveries?status=bogus", "/v1/deliveries?status=Delivered", "/v1/deployments?state=paused"):
        api.problem(api.call("GET", path, key=key), 400, "malformed-request")
    for status in ("pending", "delivered", "failed", "exhausted"):
        data = api.call("GET", f"/v1/deliveries?status={status}", key=key, expect=200).body["data"]
        assert all(d["status"] == status for d in data)
    for state in STATES:
        data = api.call("GET", f"/v1/deployments?state={state}", key=key, expect=200).body["data"]
        assert all(d["state"] == state for d in data)


def test_a_malformed_path_parameter_is_a_400_and_an_unknown_id_a_404(srv: Running) -> None:
    api, key = srv.api, srv.key("acme")
    for template in ("/v1/endpoints/{x}", "/v1/deliveries/{x}", "/v1/deployments/{x}", "/v1/deployments/{x}/logs"):
        api.problem(api.call("GET", _concrete(template, "%FF"), key=key), 400, "malformed-request")
        for missing in ("missing", f"ep_{'0' * 32}", f"dlv_{'0' * 32}", str(uuid.UUID(int=0x7 << 76)), "%25"):
            api.problem(api.call("GET", _concrete(template, missing), key=key), 404, "not-found")


# --- deployments -----------------------------------------------------------------------------


def _time(value: str) -> dt.datetime:
    """An RFC 3339 UTC timestamp with up to nanoseconds (Python keeps microseconds)."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", value)
    assert match, value
    return dt.datetime.fromisoformat(match.group(1) + "." + (match.group(2) or "0").ljust(6, "0")[:6] + "+00:00")


def test_a_deployment_goes_through_its_lifecycle_over_rest(srv: Running) -> None:
    api, key = srv.api, srv.key("acme")
    created = api.deploy(key, "checkout")
    assert uuid.UUID(created["id"]).version == 7
    assert (created["tenant_id"], created["service_name"], created["state"]) == ("acme", "checkout", "queued")
    assert (created["started_at"], created["finished_at"], created["reason"]) == (None, None, None)
    path = f"/v1/deployments/{created['id']}"
    assert api.call("GET", path, key=key, expect=200).body["state"] == "queued"

    started = api.call("POST", f"{path}/start", key=key, expect=200).body
    assert started["state"] == "in_progress" and started["started_at"] is not None
    check = {"check": "GET /healthz", "detail": "HTTP 503"}
    reported = api.call("POST", f"{path}/health-check-failures", key=key, json=check, expect=202).body
    assert reported["state"] == "in_progress"  # a failed check does not move it
    completed = api.call("POST", f"{path}/complete", key=key, expect=200).body
    assert completed["state"] == "completed" and completed["finished_at"] is not None
    assert completed["duration_seconds"] == pytest.approx(
        (_time(completed["finished_at"]) - _time(completed["started_at"])).total_seconds(), abs=1e-5
    )
    reason = {"reason": "error rate above 5%"}
    rolled_back = api.call("POST", f"{path}/rollback", key=key, json=reason, expect=200).body
    assert (rolled_back["state"], rolled_back["reason"]) == ("rolled_back", "error rate above 5%")
    api.call("POST", f"{path}/health-check-failures", key=key, json=check, expect=202)  # after the end too

    logs = api.call("GET", f"{path}/logs", key=key, expect=200).body
    assert logs["deployment_id"] == created["id"]
    assert [(t["from"], t["to"], t["reason"]) for t in logs["data"]] == [
        (None, "queued", None),
        ("queued", "in_progress", None),
        ("in_progress", "completed", None),
        ("completed", "rolled_back", "error rate above 5%"),
    ]
    assert [t["at"] for t in logs["data"]] == [
        created["created_at"], started["started_at"], completed["finished_at"], rolled_back["finished_at"]
    ]

    # queued -> failed -> rolled_back.
    other = api.deploy(key, "billing-worker")
    reason = {"reason": "image pull failed"}
    failed = api.call("POST", f"/v1/deployments/{other['id']}/fail", key=key, json=reason, expect=200).body
    assert (failed["state"], failed["reason"], failed["started_at"]) == ("failed", "image pull failed", None)
    api.call("POST", f"/v1/deployments/{other['id']}/rollback", key=key, json={"reason": "clean up"}, expect=200)


INVALID_MOVES = [
    # (how far to take it first, the move refused)
    ([], "complete"),
    ([], "rollback"),
    (["start"], "start"),
    (["start", "complete"], "start"),
    (["start", "complete"], "complete"),
    (["start", "complete"], "fail"),
    (["fail"], "start"),
    (["fail"], "fail"),
    (["start", "rollback"], "rollback"),
    (["start", "rollback"], "start"),
    (["start", "rollback"], "complete"),
    (["start", "rollback"], "fail"),
]


@pytest.mark.parametrize(
    ("before", "move"), INVALID_MOVES, ids=[f"{'>'.join(b) or 'queued'}: {m}" for b, m in INVALID_MOVES]
)
def test_an_invalid_transition_is_a_409_problem_and_changes_nothing(
    srv: Running, before: list[str], move: str
) -> None:
    api, key = srv.api, srv.key("acme")
    deployment = api.deploy(key, "moves")
    path = f"/v1/deployments/{deployment['id']}"

    def send(step: str) -> Reply:
        body = {"reason": f"{step} requested"} if step in ("fail", "rollback") else _NO_BODY
        return api.call("POST", f"{path}/{step}", key=key, json=body)

    for step in before:
        assert send(step).status == 200
    state = api.call("GET", path, key=key, expect=200).body
    problem = api.problem(send(move), 409, "invalid-transition")
    assert deployment["id"] in problem["detail"] and state["state"] in problem["detail"]
    assert api.call("GET", path, key=key, expect=200).body["updated_at"] == state["updated_at"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("", {"service_name": ""}),
        ("", {"service_name": "   "}),
        ("", {"service_name": "check\nout"}),
        ("", {"service_name": "s" * 201}),
        ("", {"service_name": "checkout", "tenant_id": "globex"}),
        ("/fail", {"reason": ""}),
        ("/fail", {"reason": "image\npull failed"}),
        ("/fail", {"reason": "r" * 1001}),
        ("/rollback", {}),
        ("/health-check-failures", {"check": "GET /healthz"}),
        ("/health-check-failures", {"check": "", "detail": "503"}),
        ("/health-check-failures", {"check": "c" * 201, "detail": "503"}),
        ("/health-check-failures", {"check": "GET /", "detail": "d" * 1001}),
    ],
)
def test_an_unacceptable_deployment_value_is_a_422(srv: Running, route: str, body: Json) -> None:
    api, key = srv.api, srv.key("acme")
    if route:
        deployment = api.deploy(key, "values")
        api.call("POST", f"/v1/deployments/{deployment['id']}/start", key=key, expect=200)
        path = f"/v1/deployments/{deployment['id']}{route}"
    else:
        path = "/v1/deployments"
    api.problem(api.call("POST", path, key=key, json=body), 422, "validation-failed")
    if route:
        after = api.call("GET", f"/v1/deployments/{deployment['id']}", key=key, expect=200).body
        assert after["state"] == "in_progress"


def test_deployments_are_listed_newest_first_and_filtered_by_state(fresh: Running) -> None:
    api, key = fresh.api, fresh.key("acme")
    made = [api.deploy(key, f"svc-{i}")["id"] for i in range(5)]
    for deployment_id in made[:2]:
        api.call("POST", f"/v1/deployments/{deployment_id}/start", key=key, expect=200)
    listed = api.call("GET", "/v1/deployments", key=key, expect=200).body
    assert [d["id"] for d in listed["data"]] == made[::-1] and listed["next_after"] is None
    for limit in (1, 2, 4):
        assert [d["id"] for d in api.pages("/v1/deployments", key=key, limit=limit)] == made[::-1]
    assert [d["id"] for d in api.pages("/v1/deployments?state=in_progress", key=key, limit=1)] == made[1::-1]
    assert [d["id"] for d in api.pages("/v1/deployments?state=queued", key=key, limit=2)] == made[:1:-1]
    assert api.call("GET", "/v1/deployments?state=completed", key=key, expect=200).body == EMPTY_PAGE
    assert api.call("GET", "/v1/deployments", key=fresh.key("globex"), expect=200).body == EMPTY_PAGE


# --- end to end: REST in, signed webhooks out --------------------------------------------------


def test_deployments_driven_over_rest_are_delivered_signed_and_queryable(
    fresh: Running, receiver: Receiver, schemas: dict[str, Json]
) -> None:
    api, acme, globex = fresh.api, fresh.key("acme"), fresh.key("globex")
    acme_path, globex_path = f"{API_HOOKS}/e2e/acme", f"{API_HOOKS}/e2e/globex"
    endpoint = api.create_endpoint(acme, receiver.url(acme_path), list(EVENT_TYPES.values())).body
    theirs = api.create_endpoint(globex, receiver.url(globex_path), ["state_change"]).body

    def post(key: str, path: str, body: object = _NO_BODY, expect: int = 200) -> Json:
        return api.call("POST", path, key=key, json=body, expect=expect).body

    a = post(acme, "/v1/deployments", {"service_name": "checkout"}, 201)["id"]
    post(acme, f"/v1/deployments/{a}/start")
    post(acme, f"/v1/deployments/{a}/health-check-failures", {"check": "GET /healthz", "detail": "HTTP 503"}, 202)
    post(acme, f"/v1/deployments/{a}/complete")
    post(acme, f"/v1/deployments/{a}/rollback", {"reason": "error rate above 5%"})
    b = post(acme, "/v1/deployments", {"service_name": "billing-worker"}, 201)["id"]
    post(acme, f"/v1/deployments/{b}/fail", {"reason": "image pull failed"})
    c = post(globex, "/v1/deployments", {"service_name": "search"}, 201)["id"]
    post(globex, f"/v1/deployments/{c}/start")
    post(globex, f"/v1/deployments/{c}/complete")
    assert fresh.server.flush(30)

    # What the receiver got: 6 events of a, 2 of b for acme; 3 state changes of c for globex.
    requests = receiver.at(acme_path)
    assert len(requests) == 8
    payloads = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in requests]
    assert sorted((p["data"]["deployment_id"], p["type"]) for p in payloads) == sorted(
        [(a, "deployment.state_change")] * 4
        + [(a, "deployment.health_check_failed"), (a, "deployment.rollback_initiated")]
        + [(b, "deployment.state_change")] * 2
    )
    for request, payload in zip(requests, payloads):
        assert payload == request.json()
        assert errors(schemas[payload["type"]], payload) == [], payload
        data = payload["data"]
        assert data["tenant_id"] == "acme"
        assert data["links"]["deployment"] == f"{api.base}/v1/deployments/{data['deployment_id']}"
        assert data["links"]["logs"] == data["links"]["deployment"] + "/logs"
        for link, schema in (("deployment", "Deployment"), ("logs", "DeploymentLogs")):
            followed = api.call("GET", urllib.parse.urlsplit(data["links"][link]).path, key=acme, expect=200).body
            assert (followed.get("id") or followed.get("deployment_id")) == data["deployment_id"]
        # Another tenant's key cannot follow the links.
        api.problem(api.call("GET", urllib.parse.urlsplit(data["links"]["logs"]).path, key=globex), 404, "not-found")
    theirs_got = receiver.at(globex_path)
    assert len(theirs_got) == 3
    for request in theirs_got:
        payload = Webhook(theirs["secret"]).verify(request.body, request.headers)
        assert payload["data"]["deployment_id"] == c and payload["type"] == "deployment.state_change"
        assert errors(schemas[payload["type"]], payload) == []

    # The deliveries, as the API reports them.
    delivered = api.call("GET", "/v1/deliveries?status=delivered", key=acme, expect=200).body
    assert delivered["next_after"] is None
    listed = delivered["data"]
    assert len(listed) == 8
    assert [d["id"] for d in listed] == sorted((d["id"] for d in listed), reverse=True)  # newest first
    by_message = {r.headers["webhook-id"]: r for r in requests}
    assert set(by_message) == {d["message_id"] for d in listed}
    for d in listed:
        request = by_message[d["message_id"]]
        assert d["body"] == request.body.decode()
        assert (d["endpoint_id"], d["tenant_id"], d["status"], d["attempt_count"], d["next_attempt_at"]) == (
            endpoint["id"], "acme", "delivered", 1, None
        )
        assert EVENT_TYPES[request.json()["type"]] == d["event_type"]
        detail = api.call("GET", f"/v1/deliveries/{d['id']}", key=acme, expect=200).body
        assert {k: v for k, v in detail.items() if k != "attempts"} == d
        (attempt,) = detail["attempts"]
        # The receiver answers 204.
        assert (attempt["attempt"], attempt["status_code"], attempt["error"]) == (1, 204, None)
        assert attempt["duration_ms"] >= 0
        attempts = api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key=acme, expect=200).body
        assert attempts == {"data": [attempt]}
    for status in ("pending", "failed", "exhausted"):
        assert api.call("GET", f"/v1/deliveries?status={status}", key=acme, expect=200).body["data"] == []
    assert [d["id"] for d in api.pages(f"/v1/deliveries?endpoint_id={endpoint['id']}", key=acme, limit=3)] == [
        d["id"] for d in listed
    ]
    assert {d["id"] for d in api.pages("/v1/deliveries", key=globex, limit=500)}.isdisjoint(d["id"] for d in listed)

    # Redelivery: 202 and pending, then sent again (same message, same body, signed anew).
    target = listed[-1]
    again = api.call("POST", f"/v1/deliveries/{target['id']}/redeliver", key=acme, expect=202).body
    assert (again["id"], again["status"], again["message_id"]) == (target["id"], "pending", target["message_id"])
    assert fresh.server.flush(30)
    resent = [r for r in receiver.at(acme_path) if r.headers["webhook-id"] == target["message_id"]]
    assert len(resent) == 2 and resent[0].body == resent[1].body
    assert Webhook(endpoint["secret"]).verify(resent[1].body, resent[1].headers) == resent[0].json()
    detail = api.call("GET", f"/v1/deliveries/{target['id']}", key=acme, expect=200).body
    assert (detail["status"], detail["attempt_count"]) == ("delivered", 2)
    assert [(a["attempt"], a["status_code"]) for a in detail["attempts"]] == [(1, 204), (2, 204)]
    api.problem(api.call("POST", f"/v1/deliveries/{target['id']}/redeliver", key=globex), 404, "not-found")


# =============================================================================================
# 4. Property-based: schemathesis against docs/openapi.json finds no 5xx and no nonconformance
# =============================================================================================

#: Examples per operation and generation mode (positive, negative); unauthenticated runs get
#: fewer (every /v1 answer is then a 401).
FUZZ_EXAMPLES = 25
FUZZ_EXAMPLES_UNAUTHENTICATED = 5

FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


def _fuzz_schema(doc: Json, base: str, key: str | None) -> Any:
    """The document loaded by schemathesis, sending to `base` with `key` (never generated)."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": base,
            "headers": {"Authorization": f"Bearer {key}"} if key else {},
            "generation": {"with-security-parameters": False},
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_dict(copy.deepcopy(doc), config=config)


def _fuzz(strategy: Any, examples: int, exercise: Callable[[Any], None]) -> None:
    """Runs `exercise` on `examples` cases drawn from `strategy`: seeded, no deadline, no
    example database, no shrinking (a failure is reported as found)."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        exercise(case)

    run()


def test_schemathesis_finds_no_server_error(fresh: Running, receiver: Receiver, openapi: OpenApi) -> None:
    """Every operation, with data valid and invalid per the document, authenticated (acme) and
    not: no 5xx, every status, media type, header and body as documented, invalid data refused,
    auth enforced. Path ids are generated, or acme's real ones so that real resources are hit.
    Every response also passes this module's own check."""
    api, key = fresh.api, fresh.key("acme")
    endpoint = api.create_endpoint(key, receiver.url(f"{API_HOOKS}/fuzz")).body
    deployment = api.deploy(key, "fuzzed")
    assert fresh.server.flush(30)
    (delivery,) = api.call("GET", "/v1/deliveries", key=key, expect=200).body["data"]
    real_ids = {"endpoint_id": endpoint["id"], "deployment_id": deployment["id"], "delivery_id": delivery["id"]}

    failures: dict[str, str] = {}
    calls: collections.Counter[str] = collections.Counter()
    for auth_key, modes, examples in (
        (key, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), FUZZ_EXAMPLES),
        (None, (GenerationMode.POSITIVE,), FUZZ_EXAMPLES_UNAUTHENTICATED),
    ):
        schema = _fuzz_schema(openapi.doc, api.base, auth_key)
        for result in schema.get_all_operations():
            operation = result.ok()
            path_names = [p.name for p in operation.path_parameters]
            has_inputs = bool(operation.body) or bool(operation.query)
            for mode in modes:
                if mode is GenerationMode.NEGATIVE and not has_inputs:
                    continue  # only path ids (any string is one) or nothing to make invalid
                strategy = operation.as_strategy(generation_mode=mode)
                if path_names and mode is GenerationMode.POSITIVE:
                    strategy = strategy | operation.as_strategy(
                        generation_mode=mode, path_parameters={n: real_ids[n] for n in path_names}
                    )
                label = f"{operation.label} [{mode.value}, {'acme' if auth_key else 'no key'}]"

                def exercise(case: Any, label: str = label, auth_key: str | None = auth_key) -> None:
                    calls[label] += 1
                    response = case.call_and_validate(checks=FUZZ_CHECKS)
                    reply = Reply(
                        case.method.upper(),
                        urllib.parse.urlsplit(response.request.url).path,
                        response.status_code,
                        {k.lower(): ", ".join(v) for k, v in response.headers.items()},
                        response.content,
                    )
                    openapi.check(reply)
                    if auth_key is None and reply.path.startswith("/v1/") and reply.status != 404:
                        assert reply.status in (401, 405), str(reply)

                try:
                    _fuzz(strategy, examples, exercise)
                except BaseException as error:  # noqa: BLE001 - schemathesis raises exception groups
                    if isinstance(error, (KeyboardInterrupt, SystemExit)):
                        raise
                    failures[label] = f"{type(error).__name__}: {error}"
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    # Each operation with and without a key, and negated where it reads a query or a body.
    negatable = [
        op
        for _, _, op in openapi.operations()
        if op.get("requestBody") or any(p["in"] == "query" for p in op.get("parameters", []))
    ]
    assert len(negatable) == 10
    assert len(calls) == 2 * len(openapi.operations()) + len(negatable), sorted(calls)
    assert sum(calls.values()) >= 700, calls
