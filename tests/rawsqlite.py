"""Raw SQL against a store's file with the standard library's sqlite3, in a helper process.

Never in the test process: a second SQLite library loaded next to the one compiled into
omnicloud shares the process's POSIX locks on the file, and closing it would checkpoint and
unlink the WAL under omnicloud's open connections (docs/billing.md, operating notes).

One long-lived helper process serves every request of a test module (start-up is the slow
part); requests are serialised by a lock, so threads may share it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

_HELPER = textwrap.dedent(
    """
    import json, sqlite3, sys

    def dump(conn):
        out = {}
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for name in names:
            columns = [c[1] for c in conn.execute(f'PRAGMA table_info("{name}")')]
            select = ", ".join(f'"{c}", typeof("{c}")' for c in columns)
            order = ", ".join(str(i + 1) for i in range(0, 2 * len(columns), 2))
            out[name] = [list(r) for r in conn.execute(f'SELECT {select} FROM "{name}" ORDER BY {order}')]
        return out

    for request in sys.stdin:
        kind, db, arg, args = json.loads(request)
        conn = sqlite3.connect(db, timeout=30)
        try:
            if kind == "backup":
                target = sqlite3.connect(arg)
                conn.backup(target)
                target.close()
                reply = {"result": None}
            elif kind == "dump":
                reply = {"result": dump(conn)}
            elif kind == "iterdump":
                reply = {"result": list(conn.iterdump())}
            else:
                reply = {"result": [list(r) for r in conn.execute(arg, args).fetchall()]}
                conn.commit()
        except sqlite3.Error as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            conn.close()
        sys.stdout.write(json.dumps(reply) + "\\n")
        sys.stdout.flush()
    """
)


class RawSQLite:
    """The standard library's sqlite3, in a helper process (see the module docstring)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def call(self, kind: str, path: Path, arg: str = "", args: tuple[object, ...] = ()) -> Any:
        """Runs one request: `rows` (SQL `arg` with `args`, committed), `dump` (every table's
        rows with their SQLite types), `iterdump` (the SQL text) or `backup` (to file `arg`).

        A failure of SQLite is raised as `sqlite3.DatabaseError` with its message.
        """
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps([kind, str(path), arg, list(args)]) + "\n")
            self._proc.stdin.flush()
            reply = json.loads(self._proc.stdout.readline())
        if "error" in reply:
            raise sqlite3.DatabaseError(f"raw SQLite {kind} failed: {reply['error']}")
        return reply["result"]

    def rows(self, path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of `sql` (a write is committed)."""
        return [tuple(r) for r in self.call("rows", path, sql, args)]

    def close(self) -> None:
        """Stops the helper process (a later call starts a new one)."""
        with self._lock:
            if self._proc is not None:
                assert self._proc.stdin is not None and self._proc.stdout is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
                self._proc.stdout.close()
                self._proc = None
