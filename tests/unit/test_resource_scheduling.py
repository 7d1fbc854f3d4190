"""Resource scheduling (spec Task 3): correctness of the indexed Scheduler, with the
NaiveScheduler as its reference.

Every behavioural test runs against both implementations; a differential property test holds
the indexed scheduler to the naive one on random clusters and request streams.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnicloud as oc

Factory = Callable[..., oc.Scheduler]
IMPLEMENTATIONS: list[Factory] = [oc.Scheduler, oc.NaiveScheduler]


def node(id: str, zone: str = "eu1a", cpu: int = 4000, region: str = "eu1", **labels: str) -> oc.Node:
    return oc.Node(id, region, zone, cpu, cpu * 4, labels=labels or None)


def req(id: str, cpu: int = 1000, **kw: object) -> oc.WorkloadRequest:
    return oc.WorkloadRequest(id, "acme", cpu, cpu, **kw)  # type: ignore[arg-type]


def cluster(make: Factory, strategy: str = "binpack") -> oc.Scheduler:
    nodes = [node("n1", "eu1a"), node("n2", "eu1a"), node("n3", "eu1b"), node("n4", "eu1b"), node("n5", "us1a", region="us1")]
    return make(nodes, strategy)


@pytest.fixture(params=IMPLEMENTATIONS, ids=["indexed", "naive"])
def make(request: pytest.FixtureRequest) -> Factory:
    factory: Factory = request.param
    return factory


# --- model and bad input ----------------------------------------------------------------------


def test_model_values() -> None:
    n = oc.Node("n1", "eu1", "eu1a", 4000, 16000, gpus=2, labels={"disk": "ssd"})
    assert (n.id, n.region, n.zone, n.cpu_millis, n.memory_mib, n.gpus, n.labels) == ("n1", "eu1", "eu1a", 4000, 16000, 2, {"disk": "ssd"})
    rule = oc.AffinityRule({"app": "web"}, "zone", required=False, weight=30)
    assert (rule.match_labels, rule.topology, rule.required, rule.weight) == ({"app": "web"}, "zone", False, 30)
    g = oc.PlacementGroup("kafka", "partition", partitions=3, partition=1)
    assert (g.name, g.strategy, g.partitions, g.partition) == ("kafka", "partition", 3, 1)
    r = req("w1", labels={"app": "web"})
    assert (r.id, r.tenant_id, r.cpu_millis, r.labels) == ("w1", "acme", 1000, {"app": "web"})
    assert "n1" in repr(n) and "w1" in repr(r)


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: oc.Node("bad id", "eu1", "eu1a", 1, 1),
        lambda: oc.Node("n", "", "eu1a", 1, 1),
        lambda: oc.Node("n", "eu1", "eu1a", 0, 1),
        lambda: oc.AffinityRule({}, "zone"),
        lambda: oc.AffinityRule({"a": "b"}, ""),
        lambda: oc.AffinityRule({"a": "b"}, "zone", required=False, weight=0),
        lambda: oc.AffinityRule({"a": "b"}, "zone", weight=101),
        lambda: oc.PlacementGroup("g", "clumped"),
        lambda: oc.PlacementGroup("g", "partition"),
        lambda: oc.PlacementGroup("g", "partition", partitions=8),
        lambda: oc.PlacementGroup("g", "partition", partitions=2, partition=2),
        lambda: oc.PlacementGroup("g", "spread", partitions=2),
        lambda: oc.WorkloadRequest("w", "acme", 0, 0),
        lambda: oc.WorkloadRequest("bad id", "acme", 1, 1),
        lambda: oc.WorkloadRequest("w", "bad tenant", 1, 1),
        lambda: oc.Scheduler(strategy="random"),
        lambda: oc.Scheduler(implementation="magic"),
    ],
)
def test_bad_input_is_a_validation_error(make_bad: Callable[[], object]) -> None:
    with pytest.raises(oc.ValidationError):
        make_bad()


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(OverflowError):
        oc.Node("n", "eu1", "eu1a", -1, 1)


def test_unknown_and_duplicate_ids(make: Factory) -> None:
    s = cluster(make)
    with pytest.raises(oc.DuplicateNodeError) as dup:
        s.add_node(node("n1"))
    assert dup.value.node_id == "n1"
    with pytest.raises(oc.UnknownNodeError):
        s.remove_node("ghost")
    with pytest.raises(oc.UnknownNodeError):
        s.update_node(node("ghost"))
    with pytest.raises(oc.UnknownNodeError):
        s.node_usage("ghost")
    with pytest.raises(oc.UnknownNodeError):
        s.bind(req("w"), "ghost")
    with pytest.raises(oc.UnknownWorkloadError) as unknown:
        s.release("ghost")
    assert unknown.value.workload_id == "ghost"
    s.schedule(req("w"))
    with pytest.raises(oc.DuplicateWorkloadError):
        s.schedule(req("w"))


# --- fit, strategies, constraints ------------------------------------------------------------


def test_never_overcommits_and_reports_reasons(make: Factory) -> None:
    s = cluster(make)
    for i in range(20):
        s.schedule(req(f"w{i}"))
    for n in ["n1", "n2", "n3", "n4", "n5"]:
        usage = s.node_usage(n)
        assert usage.cpu_millis <= usage.cpu_capacity and len(usage.workloads) == 4
    with pytest.raises(oc.UnschedulableError) as err:
        s.schedule(req("extra"))
    assert err.value.reasons == {"Insufficient cpu": 5}
    assert err.value.workload_id == "extra"
    assert "0/5 nodes are available" in str(err.value)
    freed = s.placement_of("w3")
    s.release("w3")
    assert s.schedule(req("extra")).node_id == freed, "the only room is where w3 was"


def test_binpack_packs_and_spread_spreads(make: Factory) -> None:
    packed = cluster(make, "binpack")
    spread = cluster(make, "spread")
    assert packed.strategy == "binpack" and spread.strategy == "spread"
    a = {packed.schedule(req(f"p{i}")).node_id for i in range(3)}
    b = {spread.schedule(req(f"s{i}")).node_id for i in range(3)}
    assert len(a) == 1 and len(b) == 3


def test_region_zone_selector_and_gpus(make: Factory) -> None:
    s = make([node("n1", "eu1a", disk="hdd"), node("n2", "eu1b", disk="ssd"), oc.Node("g1", "eu1", "eu1c", 8000, 32000, gpus=4)])
    assert s.schedule(req("z", zone="eu1b")).node_id == "n2"
    assert s.schedule(req("sel", node_selector={"disk": "hdd"})).node_id == "n1"
    assert s.schedule(oc.WorkloadRequest("gpu", "acme", 100, 100, gpus=2)).node_id == "g1"
    with pytest.raises(oc.UnschedulableError) as err:
        s.schedule(oc.WorkloadRequest("gpu-big", "acme", 100, 100, gpus=3))
    assert err.value.reasons == {"Insufficient gpus": 3}
    with pytest.raises(oc.UnschedulableError):
        s.schedule(req("r", region="ap1"))


# --- inter-workload affinity (kube-scheduler InterPodAffinity cases) ---------------------------

WEB = {"app": "web"}
DB = {"app": "db"}


def test_required_affinity_needs_a_match_in_the_domain(make: Factory) -> None:
    s = cluster(make)
    with pytest.raises(oc.UnschedulableError) as err:
        s.schedule(req("lonely", affinity=[oc.AffinityRule(DB, "zone")]))
    assert any("affinity" in r for r in err.value.reasons)
    db = s.schedule(req("db", labels=DB, zone="eu1b"))
    follower = s.schedule(req("app", affinity=[oc.AffinityRule(DB, "zone")]))
    assert follower.zone == db.zone


def test_first_of_a_self_affine_group_goes_anywhere_then_the_rest_follow(make: Factory) -> None:
    s = cluster(make)
    rule = [oc.AffinityRule(WEB, "zone")]
    first = s.schedule(req("web-1", labels=WEB, affinity=rule))
    zones = {s.schedule(req(f"web-{i}", labels=WEB, affinity=rule, cpu=100)).zone for i in range(2, 8)}
    assert zones == {first.zone}


def test_anti_affinity_and_its_symmetry(make: Factory) -> None:
    s = cluster(make)
    web = s.schedule(req("web", labels=WEB, anti_affinity=[oc.AffinityRule(DB, "zone")]))
    # The newcomer has no rules, but web's anti-affinity repels it from web's zone.
    db = s.schedule(req("db", labels=DB))
    assert db.zone != web.zone
    with pytest.raises(oc.UnschedulableError) as err:
        s.schedule(req("db-2", labels=DB, zone=web.zone))
    assert any("existing workloads' anti-affinity" in r for r in err.value.reasons)
    # The incoming workload's own anti-affinity.
    other = s.schedule(req("cache", anti_affinity=[oc.AffinityRule(WEB, "zone")]))
    assert other.zone != web.zone


def test_a_node_lacking_the_topology_label_never_matches(make: Factory) -> None:
    s = make([node("labelled", rack="r1"), oc.Node("bare", "eu1", "eu1a", 8000, 32000)])
    rule = [oc.AffinityRule({"app": "x"}, "rack")]
    assert s.schedule(req("x1", labels={"app": "x"}, affinity=rule)).node_id == "labelled"
    assert s.schedule(req("y1", anti_affinity=[oc.AffinityRule({"app": "x"}, "rack")])).node_id == "bare"


def test_preferred_rules_tip_the_score() -> None:
    s = cluster(oc.Scheduler, "spread")
    s.schedule(req("cache", labels={"app": "cache"}, zone="eu1b"))
    near = s.schedule(req("near", affinity=[oc.AffinityRule({"app": "cache"}, "zone", required=False, weight=100)]))
    far = s.schedule(req("far", anti_affinity=[oc.AffinityRule({"app": "cache"}, "zone", required=False, weight=100)]))
    assert near.zone == "eu1b" and far.zone != "eu1b"


# --- placement groups -------------------------------------------------------------------------


def test_cluster_groups_share_one_zone(make: Factory) -> None:
    s = cluster(make)
    zones = {s.schedule(req(f"c{i}", cpu=500, placement_group=oc.PlacementGroup("hpc", "cluster"))).zone for i in range(6)}
    assert len(zones) == 1


def test_spread_groups_use_distinct_nodes_and_at_most_seven_per_zone(make: Factory) -> None:
    s = make([node(f"n{i:02d}", ["eu1a", "eu1b"][i % 2]) for i in range(20)])
    placed = [s.schedule(req(f"s{i}", cpu=10, placement_group=oc.PlacementGroup("ha", "spread"))) for i in range(14)]
    assert len({p.node_id for p in placed}) == 14
    assert sorted(sum(p.zone == z for p in placed) for z in ("eu1a", "eu1b")) == [7, 7]
    with pytest.raises(oc.UnschedulableError) as err:
        s.schedule(req("s15", cpu=10, placement_group=oc.PlacementGroup("ha", "spread")))
    assert any("placement group" in r for r in err.value.reasons)


def test_partition_groups_never_share_a_node(make: Factory) -> None:
    s = cluster(make)
    by_partition: dict[int, set[str]] = {0: set(), 1: set()}
    for i in range(8):
        p = i % 2
        placed = s.schedule(req(f"k{i}", cpu=100, placement_group=oc.PlacementGroup("kafka", "partition", partitions=2, partition=p)))
        by_partition[p].add(placed.node_id)
    assert by_partition[0].isdisjoint(by_partition[1])


def test_a_group_keeps_its_strategy(make: Factory) -> None:
    s = cluster(make)
    s.schedule(req("a", placement_group=oc.PlacementGroup("g", "cluster")))
    with pytest.raises(oc.ValidationError):
        s.schedule(req("b", placement_group=oc.PlacementGroup("g", "spread")))


# --- node changes, bind, schedule_many ---------------------------------------------------------


def test_index_invalidation_on_node_add_update_remove(make: Factory) -> None:
    s = make([node("n1", "eu1a", cpu=1000)])
    s.schedule(req("a", cpu=800, labels={"app": "a"}))
    with pytest.raises(oc.UnschedulableError):
        s.schedule(req("b", cpu=800))
    s.add_node(node("n2", "eu1b", cpu=1000))
    assert s.schedule(req("b", cpu=800)).node_id == "n2"
    with pytest.raises(oc.ValidationError):
        s.update_node(node("n1", "eu1a", cpu=500))
    s.update_node(node("n1", "eu1c", cpu=4000))
    assert s.node_usage("n1").cpu_capacity == 4000
    follower = s.schedule(req("f", cpu=100, affinity=[oc.AffinityRule({"app": "a"}, "zone")]))
    assert follower.zone == "eu1c", "the updated zone is what the indexes know"
    assert s.remove_node("n1") == ["a", "f"]
    with pytest.raises(oc.UnschedulableError):
        s.schedule(req("g", cpu=100, affinity=[oc.AffinityRule({"app": "a"}, "zone")]))
    assert s.placement_of("a") is None and s.placement_of("b") == "n2"


def test_bind_runs_the_same_checks(make: Factory) -> None:
    s = cluster(make)
    assert s.bind(req("b1", cpu=4000), "n3").node_id == "n3"
    with pytest.raises(oc.UnschedulableError) as err:
        s.bind(req("b2"), "n3")
    assert err.value.reasons == {"Insufficient cpu": 1}


def test_schedule_many_returns_placements_and_errors(make: Factory) -> None:
    s = make([node("n1", cpu=2000)])
    results = s.schedule_many([req("a"), req("b"), req("c")])
    assert [type(r).__name__ for r in results] == ["Placement", "Placement", "UnschedulableError"]


def test_stats(make: Factory) -> None:
    s = cluster(make)
    s.schedule(req("a", labels=WEB, anti_affinity=[oc.AffinityRule(DB, "node")]))
    stats = s.stats()
    assert stats["nodes"] == 5 and stats["workloads"] == 1 and stats["node_table_bytes"] > 0


# --- differential property test ---------------------------------------------------------------

ZONES = ["eu1a", "eu1b", "eu1c"]
APPS = ["web", "db", "cache"]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[oc.Node], list[oc.WorkloadRequest]]:
    n_nodes = draw(st.integers(1, 10))
    nodes = [
        oc.Node(f"n{i:02d}", "eu1", draw(st.sampled_from(ZONES)), draw(st.integers(1, 6)) * 1000, 64000, labels={"rack": f"r{draw(st.integers(0, 2))}"})
        for i in range(n_nodes)
    ]
    requests = []
    for i in range(draw(st.integers(1, 30))):
        app = draw(st.sampled_from(APPS))
        other = APPS[(APPS.index(app) + 1) % 3]
        topology = draw(st.sampled_from(["node", "zone", "rack", "region"]))
        rule = oc.AffinityRule({"app": other}, topology, required=draw(st.booleans()), weight=10)
        kind = draw(st.sampled_from(["none", "affinity", "anti"]))
        group = draw(st.sampled_from([None, "cluster", "spread", "partition"]))
        pg = None
        if group == "partition":
            pg = oc.PlacementGroup("pg-partition", "partition", partitions=2, partition=i % 2)
        elif group is not None:
            pg = oc.PlacementGroup(f"pg-{group}", group)
        requests.append(
            oc.WorkloadRequest(
                f"w{i:02d}", "acme", draw(st.integers(1, 4)) * 500, 1000, labels={"app": app},
                affinity=[rule] if kind == "affinity" else [], anti_affinity=[rule] if kind == "anti" else [],
                placement_group=pg,
            )
        )
    return nodes, requests


@settings(max_examples=80, deadline=None)
@given(scenario())
def test_indexed_placements_are_feasible_for_the_naive_oracle(case: tuple[list[oc.Node], list[oc.WorkloadRequest]]) -> None:
    nodes, requests = case
    fast, oracle = oc.Scheduler(nodes), oc.NaiveScheduler(nodes)
    for r in requests:
        try:
            naive_choice: oc.Placement | None = oracle.schedule(r)
        except oc.UnschedulableError:
            naive_choice = None
        try:
            fast_choice: oc.Placement | None = fast.schedule(r)
        except oc.UnschedulableError:
            fast_choice = None
        assert (naive_choice is None) == (fast_choice is None), r
        if naive_choice is not None and fast_choice is not None and naive_choice.node_id != fast_choice.node_id:
            # Keep both clusters identical: the oracle must accept the indexed choice.
            oracle.release(r.id)
            oracle.bind(r, fast_choice.node_id)


def test_random_churn_keeps_both_implementations_in_step() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i:02d}", rng.choice(ZONES), cpu=rng.randint(2, 8) * 1000) for i in range(15)]
    fast, oracle = oc.Scheduler(nodes), oc.NaiveScheduler(nodes)
    live: list[str] = []
    for step in range(400):
        if live and rng.random() < 0.3:
            victim = live.pop(rng.randrange(len(live)))
            assert fast.release(victim).node_id == oracle.release(victim).node_id
            continue
        r = req(f"w{step}", cpu=rng.randint(1, 8) * 250, labels={"app": rng.choice(APPS)})
        try:
            p = fast.schedule(r)
        except oc.UnschedulableError:
            with pytest.raises(oc.UnschedulableError):
                oracle.schedule(r)
            continue
        oracle.bind(r, p.node_id)
        live.append(r.id)
    for n in nodes:
        assert fast.node_usage(n.id).workloads == oracle.node_usage(n.id).workloads
