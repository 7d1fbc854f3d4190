"""Scheduling helpers that live in Python."""

from __future__ import annotations

from collections.abc import Sequence

from omnicloud._omnicloud import Node, Scheduler

__all__ = ["NaiveScheduler"]


class NaiveScheduler(Scheduler):
    """The straightforward reference scheduler, with the same interface as :class:`Scheduler`.

    Every decision scans every node, rebuilds placement-group membership and checks
    anti-affinity against every placed workload. It is the baseline for benchmarks and the
    oracle for differential tests; use :class:`Scheduler` for real work.
    """

    def __new__(cls, nodes: Sequence[Node] = (), strategy: str = "binpack") -> NaiveScheduler:
        return super().__new__(cls, list(nodes), strategy, "naive")
