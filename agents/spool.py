"""A bounded on-disk FIFO of encoded messages waiting for the broker (SQLite, one file).

Every batch goes through the spool (write-ahead), so a crash or a broker outage loses
nothing and replay keeps collection order. The bound is in bytes; when a new message would
exceed it, the *oldest* messages are evicted and counted (`dropped_messages`,
`dropped_samples`, kept in the file across restarts) so that the loss is reported as a metric
of its own — never a silent drop.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpoolEntry:
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    samples: int


@dataclass(frozen=True)
class SpoolStats:
    messages: int
    bytes: int
    dropped_messages: int
    dropped_samples: int


class Spool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, samples INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM queue").fetchone()
        self._messages, self._bytes = int(row[0]), int(row[1])

    def append(self, topic: str, key: bytes | None, value: bytes, samples: int) -> int:
        """Queue one message; returns how many older messages had to be evicted for it."""
        with self._lock:
            evicted = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                while self._messages and self._bytes + len(value) > self.max_bytes:
                    seq, size, n = self._db.execute(
                        "SELECT seq, LENGTH(value), samples FROM queue ORDER BY seq LIMIT 1"
                    ).fetchone()
                    self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))
                    self._bump("dropped_messages", 1)
                    self._bump("dropped_samples", n)
                    self._messages -= 1
                    self._bytes -= size
                    evicted += 1
                if len(value) > self.max_bytes:
                    # a single message larger than the whole spool cannot be kept
                    self._bump("dropped_messages", 1)
                    self._bump("dropped_samples", samples)
                    self._db.execute("COMMIT")
                    return evicted + 1
                self._db.execute(
                    "INSERT INTO queue (topic, key, value, samples) VALUES (?, ?, ?, ?)",
                    (topic, key, value, samples),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._messages += 1
            self._bytes += len(value)
            return evicted

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def peek(self, limit: int) -> list[SpoolEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, samples FROM queue ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpoolEntry(*r) for r in rows]

    def remove_through(self, seq: int) -> None:
        """Forget every message up to and including `seq` (they were delivered)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM queue WHERE seq <= ?", (seq,)
            ).fetchone()
            self._db.execute("DELETE FROM queue WHERE seq <= ?", (seq,))
            self._messages -= int(row[0])
            self._bytes -= int(row[1])

    def stats(self) -> SpoolStats:
        with self._lock:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            return SpoolStats(
                self._messages,
                self._bytes,
                int(counters.get("dropped_messages", 0)),
                int(counters.get("dropped_samples", 0)),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
