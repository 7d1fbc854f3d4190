"""Crash safety: a writer killed with SIGKILL mid-stream loses nothing it committed and leaves
the audit chain intact and appendable."""

from __future__ import annotations

import os
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

    log = oc.AuditLog(oc.Store.open(sys.argv[1]))
    i = 0
    while True:
        entry = log.append("writer", "crash.test", details={"i": i, "pad": "x" * 512})
        # Report only after the append returned, i.e. after its commit.
        print(entry.seq, flush=True)
        i += 1
    """
)


def run_and_kill(db_path: Path, after_entries: int) -> int:
    """Start a writer, SIGKILL it once it acknowledged `after_entries` appends; return the
    last acknowledged sequence number."""
    last = 0
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while last < after_entries and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return last


def test_sigkill_during_appends_loses_no_committed_entry(db_path: Path) -> None:
    oc.Store.open(db_path)
    acknowledged = run_and_kill(db_path, after_entries=500)
    assert acknowledged >= 500
    store = oc.Store.open(db_path)
    store.integrity_check()
    log = oc.AuditLog(store)
    report = log.verify_report()
    assert report.ok, report
    assert report.entries_checked >= acknowledged, "every acknowledged entry survived"
    entries = log.query()
    assert [e.details["i"] for e in entries] == list(range(len(entries))), "no gaps, no duplicates"


def test_the_chain_continues_after_repeated_crashes(db_path: Path) -> None:
    oc.Store.open(db_path)
    for _ in range(3):
        run_and_kill(db_path, after_entries=100)
    log = oc.AuditLog(oc.Store.open(db_path))
    assert log.verify()
    seq, _ = log.head()
    after = log.append("operator", "crash.recovered")
    assert after.seq == seq + 1
    assert log.verify()
