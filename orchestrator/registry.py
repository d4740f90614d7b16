"""What OverClouds exist, where their nodes run, and their generated secrets.

SQLite in the state directory (shared by the orchestrator and the CLI, which only reads it
and waits on it). Secrets live beside it in one 0600 file per OverCloud: generated once, on
first need, reused by every retry or resume, deleted with the OverCloud.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.stack.compose import StackSecrets
from overcloud.errors import PermanentError
from overcloud.settings import NETWORK_SLOTS, Settings

PORT_RANGE = range(20080, 20980)


@dataclass(frozen=True)
class NodeRecord:
    node: str
    host: str
    address: str
    tiers: list[str]
    instance: str = ""
    """The node's container when it is not named after the node (one taken from the warm
    pool, orchestrator/pool.py); empty: the container is `node`."""

    @property
    def container(self) -> str:
        return self.instance or self.node


@dataclass(frozen=True)
class OverCloudRecord:
    name: str
    owner: str
    state: str  # provisioning | ready | failed | deleting | migrating | degraded | paused | resuming
    spec: dict[str, Any]
    request_id: str
    port: int | None
    url: str
    error: str
    created: float
    updated: float
    nodes: list[NodeRecord]


class Registry:
    def __init__(self, settings: Settings) -> None:
        base = settings.state_dir / "orchestrator"
        base.mkdir(parents=True, exist_ok=True)
        self.secrets_dir = settings.state_dir / "secrets"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(base / "overclouds.sqlite", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS overclouds (
              name TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL,
              spec TEXT NOT NULL, request_id TEXT NOT NULL, port INTEGER UNIQUE,
              url TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
              created REAL NOT NULL, updated REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS nodes (
              overcloud TEXT NOT NULL, node TEXT NOT NULL, host TEXT NOT NULL,
              address TEXT NOT NULL DEFAULT '', tiers TEXT NOT NULL,
              PRIMARY KEY (overcloud, node));
            CREATE TABLE IF NOT EXISTS networks (
              overcloud TEXT NOT NULL, host TEXT NOT NULL, slot INTEGER NOT NULL UNIQUE,
              PRIMARY KEY (overcloud, host));
            CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, time REAL NOT NULL);
            """
        )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(nodes)")}
        if "instance" not in columns:  # a registry from before the warm pool
            with contextlib.suppress(sqlite3.OperationalError):  # another process was first
                self._db.execute("ALTER TABLE nodes ADD COLUMN instance TEXT NOT NULL DEFAULT ''")

    # --- lifecycle -------------------------------------------------------------------------

    def admit(self, name: str, owner: str, spec: dict[str, Any], request_id: str) -> bool:
        """Record a new OverCloud; False when the name is taken by another request."""
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT request_id FROM overclouds WHERE name = ?",
                                   (name,)).fetchone()
            if row is not None:
                return bool(row[0] == request_id)
            self._db.execute(
                "INSERT INTO overclouds (name, owner, state, spec, request_id, created, updated)"
                " VALUES (?, ?, 'provisioning', ?, ?, ?, ?)",
                (name, owner, json.dumps(spec), request_id, now, now),
            )
            return True

    def set_state(self, name: str, state: str, *, url: str | None = None,
                  error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE overclouds SET state = ?, url = COALESCE(?, url),"
                " error = COALESCE(?, error), updated = ? WHERE name = ?",
                (state, url, error, time.time(), name),
            )

    def update_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Record the request an OverCloud runs now (after an update was carried out)."""
        with self._lock:
            self._db.execute("UPDATE overclouds SET spec = ?, updated = ? WHERE name = ?",
                             (json.dumps(spec), time.time(), name))

    def forget(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE overcloud = ?", (name,))
            self._db.execute("DELETE FROM networks WHERE overcloud = ?", (name,))
            self._db.execute("DELETE FROM overclouds WHERE name = ?", (name,))
        self.secrets_path(name).unlink(missing_ok=True)

    # --- placement and nodes -----------------------------------------------------------------

    def set_node(self, name: str, node: str, host: str, tiers: list[str],
                 address: str = "", instance: str = "") -> None:
        """Record where `node` is. `instance`: its pooled container (kept while the host
        stays the same; a node recorded on another host is in a container of its own name)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO nodes (overcloud, node, host, address, tiers, instance)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(overcloud, node) DO UPDATE SET host = excluded.host,"
                " address = CASE WHEN excluded.address = '' THEN nodes.address"
                " ELSE excluded.address END, tiers = excluded.tiers,"
                " instance = CASE WHEN excluded.instance != '' OR excluded.host != nodes.host"
                " THEN excluded.instance ELSE nodes.instance END",
                (name, node, host, address, json.dumps(tiers), instance),
            )

    def remove_node(self, name: str, node: str) -> None:
        """Forget one node of `name` (an app replica retired by an update)."""
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE overcloud = ? AND node = ?", (name, node))

    def allocate_port(self, name: str, wanted: int | None) -> int:
        """The OverCloud's loopback port: the one asked for, or a free one (stable on retry)."""
        with self._lock:
            row = self._db.execute("SELECT port FROM overclouds WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
            used = {r[0] for r in self._db.execute("SELECT port FROM overclouds") if r[0]}
            candidates = [wanted] if wanted else [p for p in PORT_RANGE if p not in used]
            for port in candidates:
                if port in used or _listening(port):
                    continue
                self._db.execute("UPDATE overclouds SET port = ? WHERE name = ?", (port, name))
                return port
        if wanted:
            raise PermanentError(f"port {wanted} on 127.0.0.1 is already in use")
        raise PermanentError("no free port left in the OverCloud range")

    def allocate_network(self, name: str, host: str) -> int:
        """The slot of this OverCloud's network on `host` (stable on retry; unique per machine:
        slots name the bridges, and several hosts may share one kernel)."""
        with self._lock:
            row = self._db.execute("SELECT slot FROM networks WHERE overcloud = ? AND host = ?",
                                   (name, host)).fetchone()
            if row is not None:
                return int(row[0])
            used = {r[0] for r in self._db.execute("SELECT slot FROM networks")}
            slot = next((i for i in range(NETWORK_SLOTS) if i not in used), None)
            if slot is None:
                raise PermanentError("no OverCloud network left on this UnderCloud")
            self._db.execute("INSERT INTO networks (overcloud, host, slot) VALUES (?, ?, ?)",
                             (name, host, slot))
            return slot

    def release_network(self, name: str, host: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM networks WHERE overcloud = ? AND host = ?", (name, host))

    def mark(self, key: str, now: float | None = None) -> float | None:
        """Record that `key` happened now; returns when it happened before (None: never)."""
        with self._lock:
            row = self._db.execute("SELECT time FROM marks WHERE key = ?", (key,)).fetchone()
            self._db.execute("INSERT INTO marks (key, time) VALUES (?, ?) ON CONFLICT(key)"
                             " DO UPDATE SET time = excluded.time",
                             (key, time.time() if now is None else now))
        return None if row is None else float(row[0])

    def last(self, key: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT time FROM marks WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def network_slots(self, name: str) -> dict[str, int]:
        with self._lock:
            return {h: int(s) for h, s in self._db.execute(
                "SELECT host, slot FROM networks WHERE overcloud = ?", (name,))}

    # --- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> OverCloudRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, owner, state, spec, request_id, port, url, error, created, updated"
                " FROM overclouds WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            nodes = [
                NodeRecord(n, h, a, json.loads(t), i)
                for n, h, a, t, i in self._db.execute(
                    "SELECT node, host, address, tiers, instance FROM nodes WHERE overcloud = ?"
                    " ORDER BY node", (name,))
            ]
        return OverCloudRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5],
                               row[6], row[7], row[8], row[9], nodes)

    def version(self) -> tuple[int, int]:
        """Changes whenever any connection (another process's or this one) committed to the
        registry: SQLite's `data_version` counts the others' commits, `total_changes` ours.
        A reader that caches records compares it instead of re-reading every row."""
        with self._lock:
            return self._db.execute("PRAGMA data_version").fetchone()[0], self._db.total_changes

    def all(self) -> list[OverCloudRecord]:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT name FROM overclouds ORDER BY name")]
        return [rec for n in names if (rec := self.get(n)) is not None]

    # --- secrets ----------------------------------------------------------------------------

    def secrets_path(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.json"

    def secrets(self, name: str) -> StackSecrets:
        """This OverCloud's credentials, generated on first call and kept (mode 0600)."""
        path = self.secrets_path(name)
        with self._lock:
            if not path.exists():
                self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(StackSecrets.generate().to_dict(), f)
                tmp.replace(path)
            data = json.loads(path.read_text())
        return StackSecrets(**data)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
