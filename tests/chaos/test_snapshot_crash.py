"""Crash safety of snapshots: a process writing snapshots is killed with SIGKILL at random
moments, over and over; every snapshot it listed afterwards verifies, and the newest good one
restores completely."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import omnicloud as oc

WRITER = textwrap.dedent(
    """
    import sys
    import omnicloud as oc

    directory, round_no = sys.argv[1], int(sys.argv[2])
    snapshots = oc.SnapshotManager(directory)
    resources = [
        oc.Resource(f"r{i:05d}", "acme", "database", "eu-west-1", {"round": round_no, "i": i, "pad": "x" * 64})
        for i in range(RESOURCES)
    ]
    print("ready", flush=True)
    serial = 0
    while True:
        serial += 1
        snapshots.create(resources, lineage="crash-test", serial=serial)
        snapshots.retain(6)
    """
)

KILLS = 50
RESOURCES = 8000


def test_sigkill_at_random_moments_never_leaves_a_bad_listed_snapshot(tmp_path: Path) -> None:
    directory = tmp_path / "snapshots"
    rng = random.Random(20261129)
    for round_no in range(KILLS):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER.replace("RESOURCES", str(RESOURCES)), str(directory), str(round_no)], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            # Anywhere in the loop: encoding, writing the temporary file, fsync, rename, pruning.
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

    # Opening the directory removes temporary files left by the kills.
    manager = oc.SnapshotManager(directory)
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]
    listed = manager.list()
    assert listed, "at least some snapshots completed"
    for info in listed:
        assert manager.verify(info.id) == info
    latest = manager.latest_good()
    assert latest is not None and latest == listed[-1]
    restored = manager.restore(latest.id)
    assert len(restored) == RESOURCES
    rounds = {r.spec["round"] for r in restored}
    assert len(rounds) == 1, "a snapshot holds one instant of one writer"
    assert [r.id for r in restored] == [f"r{i:05d}" for i in range(RESOURCES)]
