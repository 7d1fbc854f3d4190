"""Store: the embedded SQLite database."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

import omnicloud as oc


def test_memory_store_has_the_full_schema() -> None:
    store = oc.Store.memory()
    assert store.path is None
    assert store.schema_version >= 2
    applied = store.applied_migrations()
    assert [v for v, _, _ in applied] == list(range(1, store.schema_version + 1))
    assert all(isinstance(at, dt.datetime) and at.tzinfo is not None for _, _, at in applied)
    store.integrity_check()
    assert repr(store) == "Store.memory()"


def test_memory_stores_are_private() -> None:
    a, b = oc.Store.memory(), oc.Store.memory()
    oc.TenantRegistry(a).create(oc.Tenant("acme", "Acme"))
    assert oc.TenantRegistry(b).find("acme") is None


def test_file_store_is_wal_and_keeps_data_across_reopen(db_path: Path) -> None:
    store = oc.Store.open(db_path)
    assert store.path == str(db_path)
    oc.TenantRegistry(store).create(oc.Tenant("acme", "Acme", "EUR"))
    migrations = store.applied_migrations()
    del store
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = oc.Store.open(str(db_path))
    assert again.applied_migrations() == migrations, "migrations are not re-applied"
    assert oc.TenantRegistry(again).get("acme").billing_currency == "EUR"


def test_open_accepts_pathlike(db_path: Path) -> None:
    assert oc.Store.open(db_path).path == os.fspath(db_path)


def test_open_on_a_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(oc.StoreError, match="is a directory") as err:
        oc.Store.open(tmp_path)
    assert err.value.path == str(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_open_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "omnicloud.db"
    with pytest.raises(oc.StoreError, match="parent directory does not exist") as err:
        oc.Store.open(target)
    assert err.value.path == str(target)
    assert not target.parent.exists()


def test_open_under_a_regular_file_names_the_path(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(oc.StoreError, match="parent is not a directory") as err:
        oc.Store.open(regular / "omnicloud.db")
    assert err.value.path == str(regular / "omnicloud.db")


def test_open_where_nothing_can_be_created_names_the_path() -> None:
    # /proc is a directory nobody (not even root) can create files in.
    target = "/proc/omnicloud-test.db"
    with pytest.raises(oc.StoreError) as err:
        oc.Store.open(target)
    assert err.value.path == target
    assert target in str(err.value)


def test_open_on_a_read_only_file_system_path_names_the_path(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/sys/omnicloud-test.db"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = str(locked / "omnicloud.db")
    with pytest.raises(oc.StoreError) as err:
        oc.Store.open(target)
    assert err.value.path == target


def test_open_on_a_corrupt_file_names_it_and_leaves_it_untouched(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    garbage = b"definitely not an sqlite database " * 200
    corrupt.write_bytes(garbage)
    with pytest.raises(oc.StoreCorruptError, match="corrupt") as err:
        oc.Store.open(corrupt)
    assert isinstance(err.value, oc.StoreError)
    assert err.value.path == str(corrupt)
    assert corrupt.read_bytes() == garbage


def test_open_on_a_truncated_database_is_reported(tmp_path: Path, db_path: Path) -> None:
    log = oc.AuditLog(oc.Store.open(db_path))
    for i in range(200):
        log.append("system", "fill.up", details={"i": i, "pad": "x" * 200})
    del log
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db_path.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: len(data) // 3])
    # Opening reads the schema, whose pages are gone: corruption is reported with the path,
    # before anything is written.
    with pytest.raises(oc.StoreCorruptError, match="malformed") as err:
        oc.Store.open(cut)
    assert err.value.path == str(cut)


def test_a_database_from_a_newer_omnicloud_is_refused(db_path: Path) -> None:
    version = oc.Store.open(db_path).schema_version
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from the future', '2099-01-01T00:00:00Z')",
            (version + 1,),
        )
    with pytest.raises(oc.StoreError, match=f"schema version {version + 1}") as err:
        oc.Store.open(db_path)
    assert err.value.path == str(db_path)


def test_two_handles_on_one_file_see_each_other(db_path: Path) -> None:
    a = oc.Store.open(db_path)
    b = oc.Store.open(db_path)
    oc.TenantRegistry(a).create(oc.Tenant("acme", "Acme"))
    assert oc.TenantRegistry(b).get("acme").name == "Acme"
