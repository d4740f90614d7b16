"""What happened to each OverCloud, in one ordered, resumable log: the DevTower's memory.

Server-sent events need ids a client can resume from (`Last-Event-ID`), and webhooks need
each change once. The sources are two: domain events on the Kafka events topic (lifecycle,
migrations, alerts) and the orchestrator's workflow history (every task change, in its own
SQLite store). Both are copied into one SQLite table with a global, increasing `id`; a
UNIQUE `key` per source item (`event:<event id>`, `task:<history seq>`) makes the copy
idempotent, so a redelivered event or a re-read history row adds nothing. A reader asks for
the entries of one OverCloud after the id it saw last.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overcloud.events import (
    AlertFiring,
    AlertResolved,
    Event,
    MigrationFinished,
    MigrationRequested,
    MigrationStarted,
    NodeOverloaded,
    NodeRecovered,
)


@dataclass(frozen=True)
class Entry:
    id: int
    overcloud: str
    kind: str
    """`event` (a domain event) or `task` (a workflow task change)."""
    type: str
    """The event's type, or `task` / `workflow`."""
    time: float
    data: dict[str, Any]
    key: str = ""
    """Its source item: `event:<event id>` or `task:<history seq>`."""

    def starts_another(self, request_id: str) -> bool:
        """Whether this entry is the first of an OverCloud other than the incarnation whose
        request was `request_id`: another request of the name, or another provisioning
        workflow of it (whichever reaches the journal first)."""
        if self.type == "OverCloudRequested":
            return self.key != f"event:{request_id}"
        return (self.kind == "task" and self.data.get("kind") == "provision"
                and self.data.get("workflow") != request_id)


_COLUMNS = "id, overcloud, kind, type, time, data, key"


def _entry(r: tuple[Any, ...]) -> Entry:
    return Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])


def overcloud_of(event: Event) -> str:
    """Which OverCloud an event is about ('' when none: an UnderCloud host's overload)."""
    if isinstance(event, AlertFiring | AlertResolved):
        return event.labels.get("overcloud", "")
    if isinstance(event, MigrationStarted | MigrationFinished | MigrationRequested
                  | NodeOverloaded | NodeRecovered):
        return event.overcloud
    name = getattr(event, "name", "")
    return name if isinstance(name, str) else ""


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS entries (
              id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
              overcloud TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
              time REAL NOT NULL, data TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS entries_by_overcloud ON entries (overcloud, id);
            CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )

    def add(self, key: str, overcloud: str, kind: str, type_: str, time: float,
            data: dict[str, Any]) -> int | None:
        """Append an entry; None when `key` is already there (a redelivery)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO entries (key, overcloud, kind, type, time, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, overcloud, kind, type_, time, json.dumps(data, default=str)))
            if cur.rowcount != 1:
                return None
            self._changed.notify_all()
            return int(cur.lastrowid or 0)

    def since(self, overclouds: Iterable[str] | None, after: int = 0,
              limit: int = 500) -> list[Entry]:
        """Entries after id `after`, of the given OverClouds (None: all), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM entries WHERE id > ?"
        params: list[Any] = [after]
        if overclouds is not None:
            names = list(overclouds)
            if not names:
                return []
            sql += f" AND overcloud IN ({','.join('?' * len(names))})"
            params += names
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
        return [_entry(r) for r in rows]

    def of_types(self, overcloud: str, types: Iterable[str], after: int, since: float,
                 limit: int = 500) -> list[Entry]:
        """Entries of `overcloud` of the given types, after id `after` and at or after time
        `since` (what the page draws as markers on its charts), oldest first."""
        kinds = list(types)
        if not kinds:
            return []
        sql = (f"SELECT {_COLUMNS} FROM entries WHERE overcloud = ?"
               f" AND id > ? AND time >= ? AND type IN ({','.join('?' * len(kinds))})"
               " ORDER BY id DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, [overcloud, after, since, *kinds, limit]).fetchall()
        return [_entry(r) for r in reversed(rows)]

    def firing(self, limit: int = 5000) -> list[Entry]:
        """The alerts firing now: the newest `AlertFiring` of each (rule, labels) that no
        `AlertResolved` followed, among the last `limit` alert entries."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM entries"
                " WHERE type IN ('AlertFiring', 'AlertResolved') ORDER BY id DESC LIMIT ?",
                (limit,)).fetchall()
        state: dict[str, Entry] = {}
        for r in reversed(rows):
            e = _entry(r)
            key = json.dumps([e.data.get("rule"), e.data.get("labels")], sort_keys=True)
            state[key] = e
        return [e for e in state.values() if e.type == "AlertFiring"]

    def first_of(self, overcloud: str, request_id: str) -> int:
        """The id of the first entry of this incarnation of `overcloud` (its request event or
        its provisioning workflow, whichever came in first); 0 when none is there yet.

        A reader starts after `first_of - 1`: entries of an earlier OverCloud of the same
        name (deleted, the name taken again, maybe by another tenant) stay out of reach."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(id) FROM entries WHERE overcloud = ? AND (key = ?"
                " OR json_extract(data, '$.workflow') = ?)",
                (overcloud, f"event:{request_id}", request_id)).fetchone()
        return int(row[0] or 0)

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
        return int(row[0])

    def wait(self, after: int, timeout: float) -> bool:
        """Block until an entry newer than `after` was added in this process (or timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._max_locked() > after, timeout)

    def _max_locked(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
        return int(row[0])

    def cursor(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, value: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    def close(self) -> None:
        self._db.close()
