"""The edge's route table: which loopback port is whose OverCloud, served by which web nodes.

The orchestrator writes it, the edge (edge/server.py) serves it; they share two files under
the state directory, so either can restart without the other:

    STATE/edge/routes.json   {"serial": N, "routes": {"<port>": {"overcloud": NAME,
                                                                  "backends": ["ADDR:PORT"]}}}
    STATE/edge/status.json   {"pid": P, "serial": N, "listening": [ports],
                              "errors": {"<port>": why}, "active": {"ADDR:PORT": open}}

Every change goes through `set_route` / `drop_route`: under an exclusive lock on
`routes.lock`, read, change, write to a temporary file, fsync, rename, with the serial one
higher. The edge re-reads the table when it changes and writes the serial it serves; so a
caller that wrote serial N knows its change is live once the status says N or more
(`wait_applied`), and that a backend it took out has finished its connections once its
`active` count is 0 (`wait_drained`).

Both files are ours (the state directory is root's), but the edge still checks every entry
(`parse_routes`): a port, an OverCloud name, IPv4 backends; anything else is left out and
logged, never bound or connected to.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.process import pid_alive
from overcloud.errors import PermanentError, TemporaryError
from overcloud.settings import Settings

NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Route:
    port: int
    overcloud: str
    backends: tuple[str, ...]
    """`ADDR:PORT` of each web node, tried in turn (round robin, skipping one that refuses)."""


@dataclass(frozen=True)
class EdgeStatus:
    pid: int = 0
    serial: int = -1
    listening: frozenset[int] = frozenset()
    errors: dict[int, str] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)


def edge_dir(s: Settings) -> Path:
    return s.state_dir / "edge"


def routes_file(s: Settings) -> Path:
    return edge_dir(s) / "routes.json"


def status_file(s: Settings) -> Path:
    return edge_dir(s) / "status.json"


def backend(address: str, port: int = 80) -> str:
    """`ADDR:PORT` for an IPv4 node address (the only kind our bridges give)."""
    return f"{ipaddress.IPv4Address(address)}:{int(port)}"


def _valid_backend(text: Any) -> bool:
    if not isinstance(text, str) or text.count(":") != 1:
        return False
    addr, _, port = text.partition(":")
    try:
        ipaddress.IPv4Address(addr)
    except ValueError:
        return False
    return port.isascii() and port.isdigit() and 0 < int(port) < 65536


def parse_routes(data: Any) -> tuple[int, dict[int, Route], list[str]]:
    """(serial, routes, problems) of a routes document; a bad entry is left out with why."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return -1, {}, ["the route table is not a JSON object"]
    serial = data.get("serial")
    serial = serial if isinstance(serial, int) and not isinstance(serial, bool) else -1
    routes: dict[int, Route] = {}
    raw = data.get("routes")
    for key, entry in (raw.items() if isinstance(raw, dict) else []):
        port = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else 0
        if not 0 < port < 65536 or not isinstance(entry, dict):
            problems.append(f"route {str(key)[:20]!r}: not a port with an entry")
            continue
        name, backends = entry.get("overcloud"), entry.get("backends")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(f"route {port}: not an OverCloud name")
            continue
        if not isinstance(backends, list) or not all(_valid_backend(b) for b in backends):
            problems.append(f"route {port}: backends must be IPv4 ADDR:PORT")
            continue
        routes[port] = Route(port, name, tuple(backends))
    return serial, routes, problems


def read_routes(s: Settings) -> tuple[int, dict[int, Route]]:
    try:
        data = json.loads(routes_file(s).read_text())
    except FileNotFoundError:
        return 0, {}
    except (OSError, ValueError) as exc:
        raise PermanentError(f"the edge's route table {routes_file(s)} is unreadable: {exc}") from None
    serial, routes, _ = parse_routes(data)
    return serial, routes


@contextlib.contextmanager
def _locked(s: Settings) -> Iterator[None]:
    edge_dir(s).mkdir(parents=True, exist_ok=True, mode=0o700)
    with (edge_dir(s) / "routes.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Replace `path` with `data` at once (a reader sees the old file or the new one);
    fsynced first when `durable` (the route table; the edge's status is rewritten up to 20
    times a second and means nothing after a crash: no fsync blocks its event loop)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, sort_keys=True)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)


def _change(s: Settings, port: int, entry: dict[str, Any] | None) -> int:
    with _locked(s):
        serial, routes = read_routes(s)
        doc = {str(p): {"overcloud": r.overcloud, "backends": list(r.backends)}
               for p, r in routes.items()}
        if entry is None:
            doc.pop(str(port), None)
        else:
            doc[str(port)] = entry
        serial += 1
        write_json(routes_file(s), {"serial": serial, "routes": doc})
        return serial


def set_route(s: Settings, port: int, overcloud: str, backends: list[str]) -> int:
    """Serve `port` by `backends` (from now: connections open on others stay until they end);
    returns the table's new serial."""
    if not 0 < port < 65536 or not NAME_RE.fullmatch(overcloud):
        raise PermanentError(f"no route for port {port} of {overcloud[:64]!r}")
    if not backends or not all(_valid_backend(b) for b in backends):
        raise PermanentError(f"{overcloud}: a route needs IPv4 ADDR:PORT backends, not "
                             f"{backends!r:.120}")
    return _change(s, port, {"overcloud": overcloud, "backends": list(backends)})


def drop_route(s: Settings, port: int) -> int:
    """Stop serving `port` (the listener closes; open connections finish)."""
    return _change(s, port, None)


def read_status(s: Settings) -> EdgeStatus:
    try:
        data = json.loads(status_file(s).read_text())
        return EdgeStatus(
            pid=int(data["pid"]), serial=int(data["serial"]),
            listening=frozenset(int(p) for p in data.get("listening", [])),
            errors={int(k): str(v) for k, v in data.get("errors", {}).items()},
            active={str(k): int(v) for k, v in data.get("active", {}).items()})
    except (OSError, ValueError, KeyError, TypeError):
        return EdgeStatus()


def _running(pid: int) -> bool:
    return pid > 0 and pid_alive(pid)


def running(s: Settings) -> bool:
    return _running(read_status(s).pid)


def wait_applied(s: Settings, serial: int, port: int | None = None,
                 timeout: float = 20.0) -> EdgeStatus:
    """Wait until the edge serves table `serial` (and listens on `port`, when given);
    a TemporaryError (the task is retried) when it does not within `timeout`, a
    PermanentError when another process holds `port` (the edge keeps trying to take it)."""
    deadline = time.monotonic() + timeout
    st = read_status(s)
    while time.monotonic() < deadline:
        st = read_status(s)
        if st.serial >= serial and (port is None or port in st.listening):
            return st
        if st.serial >= serial and port is not None and port in st.errors:
            raise PermanentError(f"port {port} is taken by another process: the edge cannot "
                                 f"listen on it ({st.errors[port]})")
        time.sleep(0.05)
    if not _running(st.pid):
        raise TemporaryError("the edge (which serves the OverClouds' URLs) is not running: "
                             "overcloud services up edge")
    raise TemporaryError(f"the edge has not taken route table {serial} within {timeout:g}s "
                         f"(it serves {st.serial})")


def wait_drained(s: Settings, backends: list[str], timeout: float = 60.0) -> None:
    """Wait until no connection through the edge is open to any of `backends` (taken out of
    their route before): their requests have been answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_status(s)
        if not _running(st.pid) or not any(st.active.get(b, 0) for b in backends):
            return
        time.sleep(0.05)
    raise TemporaryError(f"connections to {', '.join(backends)} still open after {timeout:g}s")
