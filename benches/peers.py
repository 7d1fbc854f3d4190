#!/usr/bin/env python3
"""Side-by-side comparisons of omnicloud against what a Python team would use instead.

Runs our code and its peer on the same generated input in one process and prints, for every
comparison, both timings (best of --repeat runs), their ratio (peer / ours: above 1 means we
are faster) and the input sizes.

    python benches/peers.py audit --json
    python benches/peers.py audit --entries 50000 --repeat 5 --json

Areas:
- audit: the kernel's hash-chained audit trail against sqlite3 + hashlib;
- state: dependency graph (topological order, impact) against networkx, drift detection against
  deepdiff, snapshots of the whole state against pickle + zlib;
- scheduling: 50 Python threads scheduling at 1,000 and 10,000 nodes (p50/p95/p99 latency and
  throughput), against the naive full-scan scheduler.
The other capability areas (scheduling, webhooks, billing, failover) join as they land.
--scale shrinks every input proportionally (0.01 for a smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import omnicloud as oc


@dataclass
class Comparison:
    """One measured pair."""

    name: str
    ours_s: float
    peer_s: float
    ratio: float
    ours: str
    peer: str


def compare(
    name: str,
    repeat: int,
    ours: tuple[str, Callable[[], Any], Callable[[Any], object]],
    peer: tuple[str, Callable[[], Any], Callable[[Any], object]],
) -> Comparison:
    """Times both sides (best of `repeat`, each run on fresh state from its setup)."""
    ours_s = best_of(repeat, ours[1], ours[2])
    peer_s = best_of(repeat, peer[1], peer[2])
    return Comparison(
        name=name,
        ours_s=round(ours_s, 6),
        peer_s=round(peer_s, 6),
        ratio=round(peer_s / ours_s, 2),
        ours=ours[0],
        peer=peer[0],
    )


def best_of(repeat: int, setup: Callable[[], Any], run: Callable[[Any], object]) -> float:
    """The fastest of `repeat` timed runs, each on fresh state from `setup` (not timed)."""
    best = float("inf")
    for _ in range(repeat):
        state = setup()
        start = time.perf_counter()
        run(state)
        best = min(best, time.perf_counter() - start)
    return best


# --- audit: the peer ------------------------------------------------------------------------

GENESIS = "0" * 64


class PythonAuditLog:
    """A straightforward hash-chained audit log in Python: sqlite3 + hashlib + json, with the
    same schema, hashing and one transaction per append as omnicloud's AuditLog."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS audit_events (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, at TEXT NOT NULL,
                tenant_id TEXT, actor TEXT NOT NULL, action TEXT NOT NULL, resource_id TEXT,
                details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS audit_events_tenant_at ON audit_events (tenant_id, at);
            CREATE INDEX IF NOT EXISTS audit_events_action_at ON audit_events (action, at);
            CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at);
            CREATE TABLE IF NOT EXISTS audit_head (singleton INTEGER PRIMARY KEY, seq INTEGER, hash TEXT);
            """
        )

    @staticmethod
    def entry_hash(fields: list[str | None]) -> str:
        h = hashlib.sha256(b"omnicloud-audit-v1")
        for field in fields:
            if field is None:
                h.update(b"\x00")
            else:
                data = field.encode()
                h.update(b"\x01" + len(data).to_bytes(8, "big") + data)
        return h.hexdigest()

    def append(self, actor: str, action: str, tenant_id: str | None, details: dict[str, Any]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        row = self.db.execute("SELECT seq, hash FROM audit_head WHERE singleton = 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        entry_id = str(uuid.uuid4())
        at = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        text = json.dumps(details, sort_keys=True, separators=(",", ":"))
        digest = self.entry_hash([str(seq), entry_id, at, tenant_id, actor, action, None, text, prev])
        self.db.execute(
            "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, entry_id, at, tenant_id, actor, action, None, text, prev, digest),
        )
        self.db.execute(
            "INSERT INTO audit_head VALUES (1, ?, ?) ON CONFLICT (singleton) DO UPDATE "
            "SET seq = excluded.seq, hash = excluded.hash",
            (seq, digest),
        )
        self.db.execute("COMMIT")

    def verify(self) -> bool:
        prev_seq, prev_hash = 0, GENESIS
        for row in self.db.execute("SELECT * FROM audit_events ORDER BY seq"):
            seq, entry_id, at, tenant, actor, action, resource, details, prev, digest = row
            json.loads(details)
            if seq != prev_seq + 1 or prev != prev_hash:
                return False
            fields = [str(seq), entry_id, at, tenant, actor, action, resource, details, prev]
            if self.entry_hash(fields) != digest:
                return False
            prev_seq, prev_hash = seq, digest
        return True


def audit_area(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="omnicloud-peers-") as tmp:
        return compare_audit(args, Path(tmp))


def compare_audit(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n = args.entries
    counter = iter(range(10**9))
    details = [{"i": i, "region": "eu-west-1", "ok": i % 3 == 0} for i in range(n)]
    tenants = [f"tenant-{i % 50}" for i in range(n)]

    def fresh() -> Path:
        return work / f"db-{next(counter)}.sqlite"

    def ours_append(path: Path) -> None:
        log = oc.AuditLog(oc.Store.open(path))
        for tenant, d in zip(tenants, details):
            log.append("bench", "load.entry", tenant_id=tenant, details=d)

    def peer_append(path: Path) -> None:
        log = PythonAuditLog(path)
        for tenant, d in zip(tenants, details):
            log.append("bench", "load.entry", tenant, d)

    def filled(fill: Callable[[Path], None]) -> Callable[[], Path]:
        def make() -> Path:
            path = fresh()
            fill(path)
            return path

        return make

    ours_filled, peer_filled = filled(ours_append)(), filled(peer_append)()

    def ours_verify(path: Path) -> None:
        assert oc.AuditLog(oc.Store.open(path)).verify()

    def peer_verify(path: Path) -> None:
        assert PythonAuditLog(path).verify()

    results = []
    pairs: list[tuple[str, Callable[[], Any], Callable[[Any], object], Callable[[], Any], Callable[[Any], object]]] = [
        ("append (one transaction each)", fresh, ours_append, fresh, peer_append),
        ("verify chain", lambda: ours_filled, ours_verify, lambda: peer_filled, peer_verify),
    ]
    for name, ours_setup, ours_run, peer_setup, peer_run in pairs:
        results.append(
            compare(
                name,
                args.repeat,
                ("omnicloud.AuditLog", ours_setup, ours_run),
                ("Python sqlite3 + hashlib + json", peer_setup, peer_run),
            )
        )
    return {
        "area": "audit",
        "sizes": {"entries": n, "tenants": 50},
        "repeat": args.repeat,
        "comparisons": [asdict(r) for r in results],
    }


# --- state: the peers ----------------------------------------------------------------------


def random_graph(n: int, edges: int, seed: int) -> list[tuple[str, list[str]]]:
    """A random DAG: node i depends on up to a few earlier nodes; `edges` in total."""
    rng = random.Random(seed)
    names = [f"res-{i:07d}" for i in range(n)]
    deps: list[list[str]] = [[] for _ in range(n)]
    placed = 0
    while placed < edges:
        i = rng.randrange(1, n)
        j = rng.randrange(0, i)
        if names[j] not in deps[i]:
            deps[i].append(names[j])
            placed += 1
    return list(zip(names, deps))


def drift_pairs(resources: int, fields: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Desired/actual documents: `fields` leaves each, 2% of leaves drifted."""
    rng = random.Random(seed)
    pairs = []
    for r in range(resources):
        desired: dict[str, Any] = {
            "name": f"res-{r}",
            "tags": {f"t{k}": f"v{k}" for k in range(5)},
            "disks": [{"size": 100 + k, "iops": 3000} for k in range(5)],
        }
        for f in range(fields - 20):
            desired[f"f{f:02d}"] = rng.choice([f, f * 1.5, f"s{f}", True, None])
        actual = json.loads(json.dumps(desired))
        for key in rng.sample(sorted(k for k in actual if k.startswith("f")), k=max(1, fields // 50)):
            actual[key] = "drifted"
        pairs.append((desired, actual))
    return pairs


def state_area(args: argparse.Namespace) -> dict[str, Any]:
    import pickle
    import zlib

    import networkx as nx  # type: ignore[import-untyped,unused-ignore]
    from deepdiff import DeepDiff

    n = max(10, int(100_000 * args.scale))
    e = 3 * n
    graph = random_graph(n, e, seed=7)
    probes = [name for name, _ in graph[:: max(1, n // 100)]][:100]

    def ours_build() -> oc.DependencyResolver:
        g = oc.DependencyResolver()
        g.add_many(graph)
        return g

    def nx_build() -> Any:
        g = nx.DiGraph()
        g.add_nodes_from(name for name, _ in graph)
        g.add_edges_from((d, name) for name, deps in graph for d in deps)
        return g

    def ours_order_impact(g: oc.DependencyResolver) -> None:
        g.topological_order()
        for p in probes:
            g.impact(p)

    def nx_order_impact(g: Any) -> None:
        list(nx.lexicographical_topological_sort(g))
        for p in probes:
            nx.descendants(g, p)

    built_ours, built_nx = ours_build(), nx_build()
    assert built_ours.topological_order() == list(nx.lexicographical_topological_sort(built_nx))
    assert built_ours.impact(probes[0]) == nx.descendants(built_nx, probes[0])

    drift_n = max(10, int(10_000 * args.scale))
    pairs = drift_pairs(drift_n, 50, seed=11)
    detector = oc.DriftDetector(oc.ExactMatch())

    def ours_drift(_: object) -> None:
        reports = detector.detect_many(pairs)
        assert all(r.has_drift for r in reports)

    def peer_drift(_: object) -> None:
        for d, a in pairs:
            assert DeepDiff(d, a)

    snap_n = max(10, int(1_000_000 * args.scale))
    resources = [
        oc.Resource(f"r{i:07d}", "acme", "database", "eu-west-1", {"size": i % 500, "engine": "pg"}, depends_on=[])
        for i in range(snap_n)
    ]
    dicts = [{"id": r.id, "tenant_id": r.tenant_id, "kind": r.kind, "region": r.region, "spec": r.spec, "state": "pending"} for r in resources]
    work = Path(tempfile.mkdtemp(prefix="omnicloud-peers-"))
    snapshots = oc.SnapshotManager(work / "snapshots")
    written: dict[str, str] = {}

    def ours_write(_: object) -> None:
        written["id"] = snapshots.create(resources).id

    def peer_write(_: object) -> None:
        path = work / "peer.pickle.z"
        data = zlib.compress(pickle.dumps(dicts, protocol=pickle.HIGHEST_PROTOCOL), 1)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def ours_restore(_: object) -> None:
        assert len(snapshots.restore(written["id"])) == snap_n

    def peer_restore(_: object) -> None:
        assert len(pickle.loads(zlib.decompress((work / "peer.pickle.z").read_bytes()))) == snap_n

    none: Callable[[], None] = lambda: None  # noqa: E731
    pairs_run: list[tuple[str, Callable[[], Any], Callable[[Any], object], Callable[[], Any], Callable[[Any], object], str]] = [
        ("graph build", none, lambda _: ours_build(), none, lambda _: nx_build(), "networkx.DiGraph"),
        ("topological order + 100 impact queries", lambda: built_ours, ours_order_impact, lambda: built_nx, nx_order_impact, "networkx (lexicographical_topological_sort, descendants)"),
        ("drift detection", none, ours_drift, none, peer_drift, "deepdiff.DeepDiff"),
        ("snapshot write", none, ours_write, none, peer_write, "pickle + zlib + fsync"),
        ("snapshot restore", none, ours_restore, none, peer_restore, "pickle + zlib"),
    ]
    results = []
    for name, ours_setup, ours_run, peer_setup, peer_run, peer in pairs_run:
        results.append(compare(name, args.repeat, ("omnicloud", ours_setup, ours_run), (peer, peer_setup, peer_run)))
    shutil.rmtree(work, ignore_errors=True)
    return {
        "area": "state",
        "sizes": {
            "graph_resources": n,
            "graph_edges": e,
            "impact_queries": len(probes),
            "drift_resources": drift_n,
            "drift_fields": 50,
            "snapshot_resources": snap_n,
        },
        "repeat": args.repeat,
        "comparisons": [asdict(r) for r in results],
    }


# --- scheduling: the naive reference scheduler as the peer ----------------------------------

SCHED_ZONES = ["eu1a", "eu1b", "eu1c"]
SCHED_APPS = ["web", "api", "cache", "batch", "db"]


def sched_nodes(n: int) -> list[oc.Node]:
    return [oc.Node(f"n{i:06d}", "eu1", SCHED_ZONES[i % 3], 16000, 65536, labels={"rack": f"r{i % 40}"}) for i in range(n)]


def sched_request(prefix: str, i: int) -> oc.WorkloadRequest:
    """A mix with anti-affinity (db: one per node) and spread placement groups in play."""
    app = SCHED_APPS[i % len(SCHED_APPS)]
    anti = [oc.AffinityRule({"app": "db"}, "node")] if app == "db" else []
    group = oc.PlacementGroup(f"{prefix}-pg{i % 97}", "spread") if i % 10 == 0 else None
    return oc.WorkloadRequest(f"{prefix}-{i}", "acme", 250, 512, labels={"app": app}, anti_affinity=anti, placement_group=group)


def sched_run(scheduler: oc.Scheduler, threads: int, per_thread: int) -> dict[str, float]:
    """`threads` threads each schedule `per_thread` requests; latency per call in ms."""
    import threading

    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        batch = [sched_request(f"t{t}", i) for i in range(per_thread)]
        mine = []
        barrier.wait()
        for r in batch:
            began = time.perf_counter()
            try:
                scheduler.schedule(r)
            except oc.UnschedulableError:
                pass
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)

    return {
        "requests": len(latencies),
        "throughput_per_s": round(len(latencies) / wall, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def scheduling_area(args: argparse.Namespace) -> dict[str, Any]:
    threads = 50
    runs: list[dict[str, Any]] = []
    comparisons = []
    for n in (1_000, 10_000):
        size = max(10, int(n * args.scale))
        # Both start from the same busy cluster: 3,000 workloads already placed (by the indexed
        # scheduler, then bound to the same nodes in the naive one, whose every check scans them).
        fast, naive_s = oc.Scheduler(sched_nodes(size)), oc.NaiveScheduler(sched_nodes(size))
        for i in range(max(10, int(3000 * args.scale))):
            r = sched_request("warm", i)
            try:
                naive_s.bind(r, fast.schedule(r).node_id)
            except oc.UnschedulableError:
                pass
        ours = sched_run(fast, threads, per_thread=200)
        naive = sched_run(naive_s, threads, per_thread=2 if size <= 1000 else 1)
        runs.append({"nodes": size, "placed_before": fast.stats()["workloads"] - ours["requests"], "scheduler": ours, "naive": naive})
        comparisons.append(
            asdict(
                Comparison(
                    name=f"schedule, {size} nodes, {threads} threads",
                    ours_s=round(1 / ours["throughput_per_s"], 9),
                    peer_s=round(1 / naive["throughput_per_s"], 9),
                    ratio=round(ours["throughput_per_s"] / naive["throughput_per_s"], 1),
                    ours="omnicloud.Scheduler (seconds per placement)",
                    peer="omnicloud.NaiveScheduler (full scans)",
                )
            )
        )
    return {
        "area": "scheduling",
        "sizes": {"threads": threads, "nodes": [r["nodes"] for r in runs]},
        "runs": runs,
        "repeat": 1,
        "comparisons": comparisons,
    }


AREAS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "audit": audit_area,
    "state": state_area,
    "scheduling": scheduling_area,
}
PLANNED = ("webhooks", "billing", "failover")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare omnicloud against its peers side by side, in one process.",
    )
    parser.add_argument("area", choices=sorted(AREAS) + list(PLANNED), help="what to compare")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side (best is kept)")
    parser.add_argument("--entries", type=int, default=20_000, help="audit: entries to append")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink or grow every input (state)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.entries < 1 or not 0 < args.scale <= 10:
        parser.error("--repeat and --entries must be at least 1, --scale in (0, 10]")
    if args.area not in AREAS:
        print(f"peers.py: area {args.area!r} has no comparison yet; available: {', '.join(AREAS)}", file=sys.stderr)
        return 2
    report = AREAS[args.area](args)
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for c in report["comparisons"]:
            print(f"{c['name']:<32} ours {c['ours_s']:.4f}s  peer {c['peer_s']:.4f}s  ratio {c['ratio']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
