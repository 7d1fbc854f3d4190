"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1, on a thread of the test
process, that records every POST (path, headers, body) and answers each with the next of its
scripted statuses, then with its default status."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, NamedTuple


class Request(NamedTuple):
    """One POST the receiver got (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers each POST with the next of `statuses`, then with `status`; keeps them in
    `requests`, in arrival order."""

    def __init__(self, statuses: list[int] | None = None, status: int = 200) -> None:
        self.requests: list[Request] = []
        self._statuses = list(statuses or [])
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length", "0"))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                with outer._lock:
                    outer.requests.append(request)
                    code = outer._statuses.pop(0) if outer._statuses else status
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.base = f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        """The address of `path` on this receiver."""
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Request]:
        """The requests made to `path` so far."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
