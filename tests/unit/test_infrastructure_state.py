"""Infrastructure state (spec Task 2): the four components and the StateManager facade.

StateMachine, DriftDetector, DependencyResolver and SnapshotManager are each tested on their
own, then through StateManager over every kind of state store.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnicloud as oc
from omnicloud import ResourceState as S
from tests.conftest import T0


def res(id: str, deps: list[str] | None = None, tenant: str = "acme", kind: str = "database", **spec: Any) -> oc.Resource:
    return oc.Resource(id, tenant, kind, "eu-west-1", spec or {"size": 1}, depends_on=deps or [])


# --- Resource -------------------------------------------------------------------------------


def test_resource_fields_and_defaults() -> None:
    r = oc.Resource(
        "db-1", "acme", "database", "eu-west-1", {"engine": "pg", "disks": [1, 2]},
        depends_on=["net-2", "net-1", "net-2"], zone="eu-west-1a", labels={"tier": "data"},
    )
    assert (r.id, r.tenant_id, r.kind, r.region, r.zone) == ("db-1", "acme", "database", "eu-west-1", "eu-west-1a")
    assert r.depends_on == ["net-1", "net-2"], "sorted and de-duplicated"
    assert r.spec == {"engine": "pg", "disks": [1, 2]}
    assert r.labels == {"tier": "data"}
    assert r.state is S.PENDING and r.actual is None and r.serial == 0 and r.updated_at is None
    assert r == oc.Resource("db-1", "acme", "database", "eu-west-1", {"engine": "pg", "disks": [1, 2]},
                            depends_on=["net-1", "net-2"], zone="eu-west-1a", labels={"tier": "data"})
    assert 'id="db-1"' in repr(r) and 'state="pending"' in repr(r)


def test_resource_spec_is_a_copy() -> None:
    r = res("db")
    spec = r.spec
    spec["size"] = 99
    assert r.spec == {"size": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": ""},
        {"id": "a b"},
        {"tenant_id": "bad tenant"},
        {"kind": ""},
        {"region": "  "},
        {"depends_on": ["x"]},
        {"depends_on": ["not valid"]},
        {"zone": ""},
    ],
)
def test_bad_resources_are_validation_errors(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"id": "x", "tenant_id": "acme", "kind": "db", "region": "r", "spec": {}}
    args.update(kwargs)
    with pytest.raises((oc.ValidationError, oc.DependencyCycleError)):
        oc.Resource(**args)


def test_spec_must_be_a_dict_of_json_values() -> None:
    with pytest.raises(TypeError):
        oc.Resource("x", "acme", "db", "r", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON-like"):
        oc.Resource("x", "acme", "db", "r", {"f": object()})


# --- StateMachine ----------------------------------------------------------------------------

TABLE = {
    S.PENDING: {S.PROVISIONING, S.TERMINATED},
    S.PROVISIONING: {S.ACTIVE, S.STANDBY, S.FAILED, S.DEPROVISIONING},
    S.ACTIVE: {S.UPDATING, S.DEGRADED, S.FAILED, S.STANDBY, S.DEPROVISIONING},
    S.UPDATING: {S.ACTIVE, S.DEGRADED, S.FAILED},
    S.DEGRADED: {S.ACTIVE, S.UPDATING, S.FAILED, S.STANDBY, S.DEPROVISIONING},
    S.FAILED: {S.PROVISIONING, S.DEPROVISIONING},
    S.STANDBY: {S.ACTIVE, S.UPDATING, S.FAILED, S.DEPROVISIONING},
    S.DEPROVISIONING: {S.TERMINATED, S.FAILED},
    S.TERMINATED: set(),
}


def test_the_transition_table_is_explicit() -> None:
    m = oc.StateMachine()
    for a in S:
        assert set(m.allowed_from(a)) == TABLE[a], a
        for b in S:
            assert m.can_transition(a, b) == (b in TABLE[a])
            assert m.can_transition(a.value, b.value) == (b in TABLE[a]), "plain strings work too"
    assert [s for s in S if m.is_terminal(s)] == [S.TERMINATED]


def test_check_names_the_resource_and_both_states() -> None:
    m = oc.StateMachine()
    m.check("db-1", S.PENDING, S.PROVISIONING)
    with pytest.raises(oc.InvalidTransitionError) as err:
        m.check("db-1", S.TERMINATED, S.ACTIVE)
    assert (err.value.resource_id, err.value.from_state, err.value.to_state) == ("db-1", "terminated", "active")
    assert "db-1" in str(err.value) and "terminated -> active" in str(err.value)


@pytest.mark.parametrize("bad", ["running", "", "ACTIVE", "Active "])
def test_unknown_state_names_are_validation_errors(bad: str) -> None:
    with pytest.raises(oc.ValidationError, match="unknown resource state"):
        oc.StateMachine().can_transition(bad, "active")


@given(st.lists(st.sampled_from(list(S)), max_size=60))
def test_random_transition_sequences_never_leave_the_table(targets: list[S]) -> None:
    m = oc.StateMachine()
    sm = oc.StateManager(clock=oc.ManualClock(T0))
    sm.register(res("r"))
    state = S.PENDING
    for target in targets:
        if m.can_transition(state, target):
            sm.transition("r", target)
            state = target
        else:
            with pytest.raises(oc.InvalidTransitionError):
                sm.transition("r", target)
        assert sm.get("r").state is state
    history = sm.history("r")
    for t in history:
        assert t.to_state in TABLE[t.from_state]


# --- DriftDetector ---------------------------------------------------------------------------


def test_exact_match_reports_every_path_with_kind_and_both_values() -> None:
    report = oc.DriftDetector(oc.ExactMatch()).detect(
        {"size": 2, "tags": ["a"], "db": {"v": 15}, "gone": 1},
        {"size": 2.0, "tags": ["a"], "db": {"v": 16}, "new": None},
    )
    assert report.has_drift and len(report) == 4
    got = {(c.path, c.kind, c.desired, c.actual) for c in report.changes}
    assert got == {
        ("/db/v", oc.ChangeKind.CHANGED, 15, 16),
        ("/gone", oc.ChangeKind.REMOVED, 1, None),
        ("/new", oc.ChangeKind.ADDED, None, None),
        ("/size", oc.ChangeKind.CHANGED, 2, 2.0),
    }


def test_semantic_equality_rules() -> None:
    d = oc.DriftDetector(oc.SemanticEquality(ignore=["/meta/*/updated"], unordered=["/tags", "/rules"]))
    desired = {"b": 1, "a": None, "tags": ["x", "y"], "rules": [{"port": 80}, {"port": 443}], "meta": {"m": {"updated": 1}}}
    actual = {"tags": ["y", "x"], "b": 1.0, "rules": [{"port": 443.0}, {"port": 80, "cidr": None}], "meta": {"m": {"updated": 2}}}
    assert not d.detect(desired, actual).has_drift
    actual["tags"] = ["x", "x"]
    assert d.detect(desired, actual).paths == ["/tags"]


def test_threshold_based_absolute_and_relative() -> None:
    absolute = oc.DriftDetector(oc.ThresholdBased({"/cpu": 0.5, "/disks/*/iops": 10}, relative=False))
    assert not absolute.detect({"cpu": 2, "disks": [{"iops": 100}]}, {"cpu": 2.4, "disks": [{"iops": 109}]}).has_drift
    assert absolute.detect({"cpu": 2}, {"cpu": 2.6}).paths == ["/cpu"]
    relative = oc.DriftDetector(oc.ThresholdBased({"/mem": 0.1}))
    assert not relative.detect({"mem": 100}, {"mem": 109}).has_drift
    assert relative.detect({"mem": 100}, {"mem": 111}).paths == ["/mem"]
    assert relative.detect({"mem": 100, "x": 1}, {"mem": 100, "x": 1.5}).paths == ["/x"], "only named paths are tolerant"


@pytest.mark.parametrize(
    "make",
    [
        lambda: oc.SemanticEquality(ignore=["no-slash"]),
        lambda: oc.SemanticEquality(unordered=["/a~2"]),
        lambda: oc.ThresholdBased({"/x": -1.0}),
        lambda: oc.ThresholdBased({"/x": float("nan")}),
        lambda: oc.ThresholdBased({"bad": 1.0}),
    ],
)
def test_bad_drift_rules_are_validation_errors(make: Any) -> None:
    with pytest.raises(oc.ValidationError, match="invalid drift rule"):
        make()


def test_python_callables_plug_in_as_strategies() -> None:
    def only_versions(desired: dict[str, Any], actual: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        if desired.get("version") != actual.get("version"):
            out.append(("/version", "changed", desired.get("version"), actual.get("version")))
        if "owner" in actual and "owner" not in desired:
            out.append({"path": "/owner", "kind": "added", "actual": actual["owner"]})
        out.append(oc.DriftChange("/audit", oc.ChangeKind.CHANGED, 1, 2)) if actual.get("audit") else None
        return out

    d = oc.DriftDetector(only_versions)
    assert d.strategy_name == "only_versions"
    report = d.detect({"version": 1, "size": 1}, {"version": 2, "size": 9, "owner": "bob", "audit": True})
    assert [(c.path, c.kind.value) for c in report.changes] == [("/version", "changed"), ("/owner", "added"), ("/audit", "changed")]


@pytest.mark.parametrize(
    "strategy",
    [
        lambda d, a: [("/x", "weird", 1, 2)],
        lambda d, a: [("/x", "changed")],
        lambda d, a: [42],
        lambda d, a: 7,
        lambda d, a: 1 / 0,
    ],
)
def test_a_misbehaving_python_strategy_is_a_typed_error(strategy: Any) -> None:
    with pytest.raises(oc.DriftStrategyError):
        oc.DriftDetector(strategy).detect({"x": 1}, {"x": 2})


def test_non_strategies_are_refused() -> None:
    with pytest.raises(TypeError, match="strategy must be"):
        oc.DriftDetector(42)  # type: ignore[arg-type]


def test_detect_many_keeps_order() -> None:
    d = oc.DriftDetector()
    reports = d.detect_many([({"a": 1}, {"a": 1}), ({"a": 1}, {"a": 2})])
    assert [r.has_drift for r in reports] == [False, True]


# --- DependencyResolver ----------------------------------------------------------------------


def three_tier() -> oc.DependencyResolver:
    g = oc.DependencyResolver()
    g.add("lb", ["app-a", "app-b"])
    g.add("app-a", ["db"])
    g.add("app-b", ["db", "cache"])
    g.add("db")
    g.add("cache")
    return g


def test_order_levels_teardown_and_queries() -> None:
    g = three_tier()
    assert g.topological_order() == ["cache", "db", "app-a", "app-b", "lb"]
    assert g.levels() == [["cache", "db"], ["app-a", "app-b"], ["lb"]]
    assert g.teardown_order() == ["lb", "app-b", "app-a", "db", "cache"]
    assert g.impact("db") == {"app-a", "app-b", "lb"}
    assert g.transitive_dependencies("lb") == {"app-a", "app-b", "db", "cache"}
    assert g.dependencies("app-b") == ["cache", "db"]
    assert g.dependents("db") == ["app-a", "app-b"]
    assert "db" in g and "nope" not in g and len(g) == 5


def test_cycles_are_reported_with_members_in_cycle_order() -> None:
    g = oc.DependencyResolver()
    g.add("a", ["b"])
    g.add("b", ["c"])
    g.add("c", ["a"])
    g.add("x", ["a"])
    assert g.find_cycles() == [["a", "b", "c"]]
    with pytest.raises(oc.DependencyCycleError) as err:
        g.topological_order()
    assert err.value.cycle == ["a", "b", "c"]
    assert "a -> b -> c -> a" in str(err.value)
    with pytest.raises(oc.DependencyCycleError):
        g.levels()
    with pytest.raises(oc.DependencyCycleError) as self_err:
        g.add("s", ["s"])
    assert self_err.value.cycle == ["s"]


def test_would_cycle_and_unknown_dependencies() -> None:
    g = oc.DependencyResolver()
    g.add("app", ["db"])
    with pytest.raises(oc.UnknownDependencyError) as err:
        g.topological_order()
    assert (err.value.resource_id, err.value.dependency) == ("app", "db")
    assert g.would_cycle("db", ["app"]) == ["app", "db"]
    g.add("db")
    assert g.topological_order() == ["db", "app"]


def test_remove_and_bad_input() -> None:
    g = three_tier()
    with pytest.raises(oc.HasDependentsError) as err:
        g.remove("db")
    assert err.value.dependents == ["app-a", "app-b"]
    g.remove("lb")
    assert "lb" not in g
    with pytest.raises(oc.UnknownResourceError):
        g.remove("lb")
    with pytest.raises(oc.UnknownResourceError):
        g.impact("ghost")
    with pytest.raises(oc.DuplicateResourceError):
        g.add("db")
    with pytest.raises(oc.ValidationError):
        g.add("bad id")


def test_add_many_and_a_large_chain() -> None:
    g = oc.DependencyResolver()
    n = 200_000
    g.add_many([(f"r{i:06d}", [f"r{i - 1:06d}"] if i else []) for i in range(n)])
    order = g.topological_order()
    assert len(order) == n and order[0] == "r000000" and order[-1] == f"r{n - 1:06d}"
    assert len(g.impact("r199990")) == 9


def random_dag(rng: random.Random, n: int) -> list[tuple[str, list[str]]]:
    names = [f"n{i:03d}" for i in range(n)]
    rng.shuffle(names)
    return [(names[i], sorted(set(rng.sample(names[:i], k=min(i, rng.randint(0, 3)))))) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_topological_order_respects_every_edge_of_random_dags(seed: int, n: int) -> None:
    rng = random.Random(seed)
    dag = random_dag(rng, n)
    g = oc.DependencyResolver()
    for node, deps in reversed(dag):
        g.add(node, deps)
    position = {node: i for i, node in enumerate(g.topological_order())}
    for node, deps in dag:
        for d in deps:
            assert position[d] < position[node]
    levels = g.levels()
    assert sorted(x for level in levels for x in level) == sorted(position)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40), st.integers(2, 8))
def test_a_random_cycle_is_found_with_exactly_its_members(seed: int, n: int, length: int) -> None:
    rng = random.Random(seed)
    dag = random_dag(rng, n)
    g = oc.DependencyResolver()
    for node, deps in dag:
        g.add(node, deps)
    ring = [f"c{i}" for i in rng.sample(range(100), length)]
    for i, member in enumerate(ring):
        g.add(member, [ring[(i + 1) % length], rng.choice(dag)[0]])
    cycles = g.find_cycles()
    assert len(cycles) == 1
    assert sorted(cycles[0]) == sorted(ring)
    for i, member in enumerate(cycles[0]):
        assert cycles[0][(i + 1) % length] in g.dependencies(member), "each member depends on the next"


# --- SnapshotManager -------------------------------------------------------------------------


def test_snapshot_create_list_verify_restore(tmp_path: Path, clock: oc.ManualClock) -> None:
    m = oc.SnapshotManager(tmp_path / "snaps", clock=clock)
    resources = [res(f"r{i}", size=i) for i in range(50)]
    info = m.create(resources, lineage="lin-1", serial=9)
    assert (info.resource_count, info.lineage, info.serial, info.created_at) == (50, "lin-1", 9, T0)
    assert len(info.checksum) == 64 and info.payload_bytes > 0
    assert m.list() == [info]
    assert m.verify(info.id) == info
    assert m.restore(info.id) == resources
    assert m.latest_good() == info


def test_corrupt_and_truncated_snapshots_are_reported_not_loaded(tmp_path: Path) -> None:
    m = oc.SnapshotManager(tmp_path)
    info = m.create([res(f"r{i}") for i in range(20)])
    path = tmp_path / f"{info.id}.ocsnap"
    good = path.read_bytes()
    path.write_bytes(good[:-10] + bytes(b ^ 0xFF for b in good[-10:]))
    with pytest.raises(oc.SnapshotCorruptError, match="checksum") as err:
        m.restore(info.id)
    assert err.value.snapshot_id == info.id
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(oc.SnapshotCorruptError, match="truncated"):
        m.verify(info.id)
    assert m.latest_good() is None
    path.write_bytes(good)
    assert len(m.restore(info.id)) == 20


def test_snapshot_bad_ids_directories_and_retention(tmp_path: Path, clock: oc.ManualClock) -> None:
    m = oc.SnapshotManager(tmp_path, clock=clock)
    with pytest.raises(oc.ValidationError):
        m.restore("../../etc/passwd")
    with pytest.raises(oc.UnknownSnapshotError):
        m.restore("snap-01234567-89ab-cdef-0123-456789abcdef")
    (tmp_path / "file").write_text("x")
    with pytest.raises(oc.SnapshotError) as err:
        oc.SnapshotManager(tmp_path / "file")
    assert err.value.path == str(tmp_path / "file")
    ids = []
    for _ in range(5):
        ids.append(m.create([res("r")]).id)
        clock.advance(1)
    assert m.retain(2) == ids[:3]
    assert [i.id for i in m.list()] == ids[3:]
    m.delete(ids[3])
    with pytest.raises(oc.UnknownSnapshotError):
        m.delete(ids[3])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "n": st.integers(-(2**53), 2**53),
                "f": st.floats(allow_nan=False, allow_infinity=False),
                "s": st.text(max_size=10),
                "l": st.lists(st.booleans() | st.none(), max_size=3),
            }
        ),
        max_size=20,
    )
)
def test_snapshot_round_trips_random_state(specs: list[dict[str, Any]]) -> None:
    import tempfile

    resources = [oc.Resource(f"r{i}", "acme", "k", "r", spec) for i, spec in enumerate(specs)]
    with tempfile.TemporaryDirectory() as tmp:
        m = oc.SnapshotManager(tmp)
        assert m.restore(m.create(resources).id) == resources


# --- StateManager ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "sqlite-file-cached"])
def manager(request: pytest.FixtureRequest, tmp_path: Path, clock: oc.ManualClock) -> oc.StateManager:
    if request.param == "memory":
        return oc.StateManager(clock=clock, snapshot_dir=tmp_path / "snaps")
    if request.param == "sqlite":
        return oc.StateManager(oc.Store.memory(), clock=clock, snapshot_dir=tmp_path / "snaps")
    return oc.StateManager(oc.Store.open(tmp_path / "state.db"), clock=clock, snapshot_dir=tmp_path / "snaps", cache=True)


def test_register_get_list(manager: oc.StateManager, clock: oc.ManualClock) -> None:
    stored = manager.register(res("db"))
    assert stored.serial == 1 and stored.updated_at == T0 and stored.state is S.PENDING
    manager.register(res("web", tenant="globex"))
    assert manager.get("db") == stored
    assert [r.id for r in manager.list()] == ["db", "web"]
    assert [r.id for r in manager.list(tenant_id="globex")] == ["web"]
    assert [r.id for r in manager.list(state=S.PENDING)] == ["db", "web"]
    assert manager.list(tenant_id="acme", state="active") == []
    with pytest.raises(oc.DuplicateResourceError) as err:
        manager.register(res("db"))
    assert err.value.resource_id == "db"
    with pytest.raises(oc.UnknownResourceError):
        manager.get("ghost")


def test_transitions_are_validated_and_kept_as_history(manager: oc.StateManager, clock: oc.ManualClock) -> None:
    manager.register(res("db"))
    t1 = manager.transition("db", S.PROVISIONING, "create")
    clock.advance(30)
    manager.transition("db", "active", "health checks pass")
    with pytest.raises(oc.InvalidTransitionError) as err:
        manager.transition("db", S.PENDING, "undo")
    assert (err.value.resource_id, err.value.from_state, err.value.to_state) == ("db", "active", "pending")
    history = manager.history("db")
    assert [(t.from_state, t.to_state, t.reason) for t in history] == [
        (S.PENDING, S.PROVISIONING, "create"),
        (S.PROVISIONING, S.ACTIVE, "health checks pass"),
    ]
    assert history[0] == t1 and history[1].at == T0 + dt.timedelta(seconds=30)
    assert manager.get("db").state is S.ACTIVE and manager.get("db").serial == 3
    with pytest.raises(oc.UnknownResourceError):
        manager.transition("ghost", S.ACTIVE)
    with pytest.raises(oc.ValidationError):
        manager.transition("db", "exploded")


def test_dependency_order_impact_and_cycles(manager: oc.StateManager) -> None:
    manager.register(res("lb", ["app"], kind="load_balancer"))
    manager.register(res("app", ["db"], kind="app_server"))
    manager.register(res("db"))
    manager.register(res("other", tenant="globex"))
    assert manager.dependency_order(tenant_id="acme") == ["db", "app", "lb"]
    assert manager.teardown_order(tenant_id="acme") == ["lb", "app", "db"]
    assert manager.levels(tenant_id="acme") == [["db"], ["app"], ["lb"]]
    assert manager.impact_of("db") == {"app", "lb"}
    assert manager.dependencies("app") == (["db"], ["lb"])
    with pytest.raises(oc.UnknownResourceError):
        manager.impact_of("ghost")


def test_registering_a_resource_that_closes_a_cycle_is_refused(manager: oc.StateManager) -> None:
    manager.register(res("b", ["a"]))
    manager.register(res("c", ["b"]))
    with pytest.raises(oc.DependencyCycleError) as err:
        manager.register(res("a", ["c"]))
    assert err.value.cycle == ["a", "c", "b"]
    with pytest.raises(oc.UnknownResourceError):
        manager.get("a")


def test_unknown_dependencies_block_ordering_until_registered(manager: oc.StateManager) -> None:
    manager.register(res("app", ["db"]))
    with pytest.raises(oc.UnknownDependencyError):
        manager.dependency_order()
    manager.register(res("db"))
    assert manager.dependency_order() == ["db", "app"]


def test_remove(manager: oc.StateManager) -> None:
    manager.register(res("db"))
    manager.register(res("app", ["db"]))
    with pytest.raises(oc.HasDependentsError):
        manager.remove("db")
    manager.remove("app")
    manager.remove("db")
    assert manager.list() == []


def test_drift_over_reported_actuals(manager: oc.StateManager) -> None:
    manager.register(res("db", size=2, engine="pg"))
    manager.register(res("quiet"))
    assert manager.detect_drift() == []
    manager.report_actual("db", {"engine": "pg", "size": 2.0})
    assert manager.detect_drift() == [], "semantic equality by default"
    exact = manager.detect_drift(oc.ExactMatch())
    assert [(r.resource_id, r.paths) for r in exact] == [("db", ["/size"])]
    manager.report_actual("db", {"engine": "mysql", "size": 2})
    (report,) = manager.detect_drift()
    assert report.changes[0].path == "/engine" and report.changes[0].actual == "mysql"
    custom = manager.detect_drift(lambda d, a: [("/custom", "changed", 1, 2)])
    assert [r.resource_id for r in custom] == ["db"]
    with pytest.raises(oc.UnknownResourceError):
        manager.report_actual("ghost", {})
    with pytest.raises(TypeError):
        manager.report_actual("db", [1])  # type: ignore[arg-type]


def test_snapshot_and_restore(manager: oc.StateManager) -> None:
    manager.register(res("db"))
    manager.register(res("app", ["db"]))
    info = manager.snapshot()
    assert info.resource_count == 2 and info.lineage == manager.lineage
    manager.transition("db", S.PROVISIONING)
    manager.register(res("extra"))
    restored = manager.restore(info.id)
    assert [r.id for r in restored] == ["app", "db"]
    assert manager.get("db").state is S.PENDING
    with pytest.raises(oc.UnknownResourceError):
        manager.get("extra")
    assert manager.dependency_order() == ["db", "app"]


def test_restoring_another_lineage_needs_force(tmp_path: Path, clock: oc.ManualClock) -> None:
    a = oc.StateManager(clock=clock, snapshot_dir=tmp_path)
    b = oc.StateManager(clock=clock, snapshot_dir=tmp_path)
    a.register(res("db"))
    info = a.snapshot()
    with pytest.raises(oc.LineageMismatchError) as err:
        b.restore(info.id)
    assert err.value.writer_lineage == a.lineage and err.value.store_lineage == b.lineage
    assert isinstance(err.value, oc.ConflictError)
    assert [r.id for r in b.restore(info.id, force=True)] == ["db"]


def test_snapshot_without_a_directory_is_a_typed_error(clock: oc.ManualClock) -> None:
    with pytest.raises(oc.SnapshotError, match="no snapshot directory"):
        oc.StateManager(clock=clock).snapshot()


def test_serial_grows_with_every_write(manager: oc.StateManager) -> None:
    before = manager.serial
    manager.register(res("db"))
    manager.transition("db", S.PROVISIONING)
    assert manager.serial == before + 2


def test_concurrent_transitions_never_skip_the_table(tmp_path: Path) -> None:
    m = oc.StateManager(oc.Store.open(tmp_path / "s.db"))
    m.register(res("db"))
    m.transition("db", S.PROVISIONING)
    m.transition("db", S.ACTIVE)
    outcomes: list[str] = []

    def flip(target: S) -> None:
        for _ in range(50):
            try:
                m.transition("db", target)
                outcomes.append("ok")
            except oc.InvalidTransitionError:
                outcomes.append("refused")

    threads = [threading.Thread(target=flip, args=(t,)) for t in (S.UPDATING, S.ACTIVE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for applied in m.history("db"):
        assert applied.to_state in TABLE[applied.from_state]
    assert outcomes.count("ok") == len(m.history("db")) - 2
