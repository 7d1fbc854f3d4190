"""A real authoritative DNS server for the RFC 2136 tests and benchmarks: Debian's `knot`,
started on a free loopback port with one TSIG key allowed to update one zone.

`make setup` installs knot (`apt-get install knot knot-dnsutils`); without it, `knotd_path()`
is None and the tests that need it skip saying so (CI always has it).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

ZONE = "failover.test."
KEY_NAME = "omnicloud-test."
#: The zone's records at start: name -> (type, value).
INITIAL_RECORDS = {
    "app.failover.test.": ("A", "192.0.2.10"),
    "www.failover.test.": ("CNAME", "app.failover.test."),
}


def knotd_path() -> str | None:
    """Where knotd is installed, if it is."""
    for candidate in ("/usr/sbin/knotd", "/usr/bin/knotd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("knotd")


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now (knotd binds both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class KnotServer:
    """knotd serving `ZONE` on 127.0.0.1:`port` from a temporary directory; a context manager
    that stops (SIGKILL) and cleans up on exit."""

    def __init__(self) -> None:
        binary = knotd_path()
        if binary is None:
            raise RuntimeError("knotd is not installed: apt-get install knot knot-dnsutils")
        self.binary = binary
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="omnicloud-knot-")
        self.root = Path(self._dir.name)
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self, rewrite: bool = False) -> Path:
        for sub in ("zones", "db", "run"):
            (self.root / sub).mkdir(exist_ok=rewrite)
        lines = [f"$ORIGIN {ZONE}", "$TTL 60", "@ SOA ns1 hostmaster 1 3600 600 86400 60", "@ NS ns1", "ns1 A 127.0.0.1"]
        lines += [f"{name} {rtype} {value}" for name, (rtype, value) in INITIAL_RECORDS.items()]
        (self.root / "zones" / "failover.test.zone").write_text("\n".join(lines) + "\n")
        conf = self.root / "knot.conf"
        conf.write_text(
            f"""server:
  rundir: "{self.root / 'run'}"
  listen: 127.0.0.1@{self.port}
database:
  storage: "{self.root / 'db'}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {self.secret}
acl:
  - id: updaters
    key: {KEY_NAME}
    action: update
zone:
  - domain: {ZONE}
    storage: "{self.root / 'zones'}"
    file: "failover.test.zone"
    acl: updaters
    zonefile-sync: -1
"""
        )
        return conf

    def start(self, attempts: int = 3) -> KnotServer:
        """Starts knotd and waits until it answers; a port taken between choosing and binding
        it (another process's race) is retried on a new port."""
        conf = self._write_config()
        for attempt in range(attempts):
            if attempt:
                self.port = free_port()
                conf = self._write_config(rewrite=True)
            with open(self.root / "knotd.log", "wb") as log:
                self.process = subprocess.Popen(
                    [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log
                )
            deadline = time.monotonic() + 10
            while not self._answers():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                return self
            self._kill()
        log_text = (self.root / "knotd.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"knotd did not start:\n{log_text}")

    def _answers(self) -> bool:
        """Whether the server answers an SOA query for the zone (a raw DNS packet)."""
        query = (
            b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + b"".join(bytes([len(label)]) + label.encode() for label in ZONE.rstrip(".").split("."))
            + b"\x00\x00\x06\x00\x01"
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                answer, _ = s.recvfrom(4096)
            except OSError:
                return False
        return answer[:2] == b"\x12\x34" and answer[3] & 0x0F == 0

    def client(self, **overrides: object) -> object:
        """An `omnicloud.Rfc2136Dns` for this server (keyword overrides for bad-input tests)."""
        import omnicloud as oc

        args: dict[str, object] = {
            "server": "127.0.0.1",
            "port": self.port,
            "zone": ZONE,
            "key_name": KEY_NAME,
            "key_secret": self.secret,
        }
        args.update(overrides)
        return oc.Rfc2136Dns(**args)  # type: ignore[arg-type]

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        self._kill()
        self._dir.cleanup()

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
