"""The side-by-side harness (benches/peers.py) runs and prints the promised JSON shape.

Tiny inputs: this checks the harness, not the figures (those come from full runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PEERS = Path(__file__).resolve().parents[2] / "benches" / "peers.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PEERS), *args], capture_output=True, text=True, timeout=300)


def test_help() -> None:
    out = run("--help")
    assert out.returncode == 0 and "audit" in out.stdout and "state" in out.stdout


@pytest.mark.parametrize(
    ("area", "extra"),
    [
        ("audit", ["--entries", "50"]),
        ("state", ["--scale", "0.001"]),
        ("scheduling", ["--scale", "0.01"]),
        ("billing", ["--scale", "0.001"]),
        ("failover", ["--scale", "0.01"]),
    ],
)
def test_areas_print_one_json_object(area: str, extra: list[str]) -> None:
    out = run(area, "--json", "--repeat", "1", *extra)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["area"] == area and report["sizes"]
    for c in report["comparisons"]:
        assert c["ours_s"] > 0 and c["peer_s"] > 0
        assert c["ratio"] == pytest.approx(c["peer_s"] / c["ours_s"], rel=0.05, abs=0.01)
    # Areas that cross-check their results against the peer say so; a mismatch is a failure.
    for name, ok in report.get("checks", {}).items():
        if isinstance(ok, bool):
            assert ok, name
    if area == "failover":
        check_failover_dns(report)


def check_failover_dns(report: dict[str, Any]) -> None:
    """The RFC 2136 part: figures for both clients against the real server, or a stated skip."""
    dns = report["dns"]
    if "skipped" in dns:
        assert dns["skipped"] in ("knotd not installed", "dnspython not installed")
        assert not any(k.startswith("dns_") for k in report["targets"])
        return
    assert dns["updates"] == report["sizes"]["dns_updates"] >= 20
    for side in ("ours", "peer"):
        figures = dns[side]
        for measured in ("update", "update_to_visible", "query"):
            ms = figures[measured]
            assert 0 < ms["p50_ms"] <= ms["p95_ms"] <= ms["max_ms"], (side, measured, ms)
        assert figures["not_visible"] == 0 and figures["wrong_query_answers"] == 0
    for target in ("failover_under_1s", "dns_under_100ms", "dns_visible_under_100ms"):
        assert isinstance(report["targets"][target], bool)
    names = [c["name"] for c in report["comparisons"]]
    assert any("RFC 2136 update round trip" in n for n in names), names


def test_areas_not_built_yet_say_so() -> None:
    out = run("webhooks", "--json")
    assert out.returncode == 2 and "no comparison yet" in out.stderr
