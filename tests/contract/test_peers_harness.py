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
    assert out.returncode == 0
    for area in ("audit", "state", "scheduling", "billing", "failover", "webhooks"):
        assert area in out.stdout, area


@pytest.mark.parametrize(
    ("area", "extra"),
    [
        ("audit", ["--entries", "50"]),
        ("state", ["--scale", "0.001"]),
        ("scheduling", ["--scale", "0.01"]),
        ("billing", ["--scale", "0.001"]),
        ("failover", ["--scale", "0.01"]),
        ("webhooks", ["--scale", "0.01"]),
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
    if area == "webhooks":
        check_webhooks(report)


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


def check_webhooks(report: dict[str, Any]) -> None:
    """Enqueue, signed deliveries to the loopback receiver and template rendering: both sides
    on the same input, their rates, every cross-check present, the design's three targets."""
    sizes = report["sizes"]
    assert sizes["enqueued_deliveries"] == sizes["events"] * sizes["enqueue_endpoints"] >= 2000
    assert sizes["deliveries"] >= 300 and sizes["deliveries"] % sizes["delivery_endpoints"] == 0
    assert sizes["renders_per_template"] >= 200 and sizes["templates"] == 3
    names = [c["name"] for c in report["comparisons"]]
    assert len(names) == 2 + sizes["templates"], names
    assert names[0].startswith(f"enqueue {sizes['events']} ") and names[1].startswith(f"deliver {sizes['deliveries']} ")
    assert all(n.startswith(f"render {sizes['renders_per_template']} ") for n in names[2:])
    for check in (
        "enqueue_counts_match", "enqueue_bodies_match", "template_outputs_match", "ours_flush_returned_true",
        *(f"{side}_{what}" for side in ("ours", "peer")
          for what in ("all_delivered", "receiver_counted_each_once", "signatures_verify")),
    ):
        assert report["checks"][check] is True, check
    assert len(report["runs"]) == report["repeat"] == 1
    for side in ("ours", "peer"):
        run_ = report["runs"][0][side]
        assert run_["received"] == sizes["deliveries"] and run_["seconds"] > 0
        assert run_["state"]["by_status"] == {"delivered": sizes["deliveries"]}
    rates = report["rates"]
    assert rates["enqueue"]["ours_deliveries_per_s"] == pytest.approx(
        rates["enqueue"]["ours_events_per_s"] * sizes["enqueue_endpoints"], rel=0.01)
    assert rates["deliver"]["ours_per_s"] > 0 and rates["deliver"]["peer_per_s"] > 0
    assert len(rates["templates"]) == sizes["templates"]
    assert set(report["targets"]) == {
        "enqueue_at_least_50000_events_per_s", "deliver_at_least_2000_per_s", "template_render_at_least_3x_jinja2",
    }
    assert all(isinstance(v, bool) for v in report["targets"].values())


def test_unknown_area_is_refused() -> None:
    out = run("nonesuch", "--json")
    assert out.returncode == 2 and "invalid choice" in out.stderr
