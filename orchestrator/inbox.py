"""The orchestrator's inbox: which events it has handled, by event id, on disk.

Why: the same event can arrive more than once — a redelivery after a crash (the offset was
not committed yet), and, by design, a replay: when the broker loses its log, the event
journal is published again (`overcloud/replay.py`), old events included. Handlers already
key their workflows by event id, but not every decision leaves a workflow behind (a request
refused at admission, an overload inside its cool-down, a delete of a name that another
request has taken since), so the orchestrator skips any id it has finished handling.

`begin` counts how many times handling of an id started: more than once only if a process
died between starting and `finish` — the count the reliability drills read to prove that a
replayed event was not acted on twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

KEEP_SECONDS = 30 * 86400
"""How long handled ids are kept: far longer than any replay window (`kafka.replay_window`)."""


class Inbox:
    def __init__(self, path: Path, keep_seconds: float = KEEP_SECONDS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS handled (id TEXT PRIMARY KEY, type TEXT NOT NULL,"
            " first REAL NOT NULL, done REAL, starts INTEGER NOT NULL DEFAULT 0)")
        self._pruned = 0.0

    def done(self, event_id: str) -> bool:
        """Has handling of this event finished before?"""
        with self._lock:
            row = self._db.execute("SELECT done FROM handled WHERE id = ?", (event_id,)).fetchone()
        return row is not None and row[0] is not None

    def begin(self, event_id: str, event_type: str) -> int:
        """Handling starts; returns how many times it has started (1 the first time)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO handled (id, type, first, starts) VALUES (?, ?, ?, 1)"
                " ON CONFLICT(id) DO UPDATE SET starts = starts + 1", (event_id, event_type,
                                                                      time.time()))
            row = self._db.execute("SELECT starts FROM handled WHERE id = ?", (event_id,)).fetchone()
        return int(row[0])

    def retry(self, event_id: str) -> None:
        """Handling stopped on a temporary error and will start again: not a second start."""
        with self._lock:
            self._db.execute("UPDATE handled SET starts = MAX(starts - 1, 0) WHERE id = ?",
                             (event_id,))

    def finish(self, event_id: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("UPDATE handled SET done = ? WHERE id = ?", (now, event_id))
            if now - self._pruned > 3600:
                self._db.execute("DELETE FROM handled WHERE done < ?", (now - self._keep,))
                self._pruned = now

    def starts(self, event_id: str) -> int:
        """How many times handling of `event_id` started (0: never seen)."""
        with self._lock:
            row = self._db.execute("SELECT starts FROM handled WHERE id = ?", (event_id,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
