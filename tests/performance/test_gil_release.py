"""The GIL is released while the core works, so other Python threads keep running.

Not a timing bound: it checks whether a pure-Python thread makes progress while another
thread is inside one long core call (verifying a large audit chain).
"""

from __future__ import annotations

import threading
import time

import omnicloud as oc


def test_python_threads_run_while_the_core_verifies_a_long_chain() -> None:
    log = oc.AuditLog(oc.Store.memory())
    for i in range(30_000):
        log.append("bench", "load.entry", details={"i": i})
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        assert log.verify()
        end = time.perf_counter()
    finally:
        stop.set()
        spinner.join()
    # If the call held the GIL, the spinner could not record a single stamp strictly inside
    # [start, end]: it would be frozen from the moment the call began until it returned.
    margin = (end - start) * 0.1
    inside = [t for t in stamps if start + margin < t < end - margin]
    assert len(inside) > 100, (len(inside), end - start)


def test_concurrent_appends_from_threads_keep_one_valid_chain() -> None:
    log = oc.AuditLog(oc.Store.memory())

    def worker(n: int) -> None:
        for i in range(200):
            log.append(f"worker-{n}", "load.entry", details={"i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = log.verify_report()
    assert report.ok and report.entries_checked == 1600
    seqs = [e.seq for e in log.query()]
    assert seqs == list(range(1, 1601))
