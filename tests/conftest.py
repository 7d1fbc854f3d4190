"""Shared fixtures for the omnicloud test suites.

Real parts only: SQLite files in temporary directories, real subprocesses, real threads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

import omnicloud as oc

#: The instant every ManualClock-driven test starts at.
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def t0() -> dt.datetime:
    """The fixed start instant."""
    return T0


@pytest.fixture
def clock() -> oc.ManualClock:
    """A manual clock at T0."""
    return oc.ManualClock(T0)


@pytest.fixture
def store() -> oc.Store:
    """A fresh in-memory store."""
    return oc.Store.memory()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a database file in a fresh temporary directory."""
    return tmp_path / "omnicloud.db"


@pytest.fixture
def file_store(db_path: Path) -> Iterator[oc.Store]:
    """A fresh store in a real file."""
    yield oc.Store.open(db_path)
