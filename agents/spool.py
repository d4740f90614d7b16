"""A bounded on-disk FIFO of encoded messages, and a history of what the broker acknowledged.

Every batch goes through the spool (write-ahead), so a crash or a broker outage loses
nothing and replay keeps collection order. The bound of the *waiting* messages is in bytes;
when a new message would exceed it, the oldest waiting messages are evicted and counted
(`dropped_messages`, `dropped_samples`, kept in the file across restarts) so that the loss is
reported as a metric of its own — never a silent drop.

A message the broker acknowledged is not deleted at once: it stays as *history* (same row,
marked with the time, partition and offset of the acknowledgement) for `history_seconds`,
within `history_bytes`. The broker we run (tansu) keeps its log in memory, so a restart
forgets batches it had acknowledged but no DevLake had consumed yet; when the publisher sees
that the log went back (`acknowledge` notices an offset at or below the last one on a
partition; the publisher also checks the records below `marks()` after reconnecting) the
history is queued again (`requeue_acked`) and sent a second time. That is harmless: DevLake
writes are idempotent (same series and timestamp overwrite). History that has to go before
its time because of the byte bound is counted (`history_evicted`): it shortens the window in
which a broker restart is survived, and the agent reports it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overcloud.replay import LogMark, record_digest


@dataclass(frozen=True)
class SpoolEntry:
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    samples: int


@dataclass(frozen=True)
class Ack:
    """The broker's acknowledgement of one spooled message."""

    seq: int
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class SpoolStats:
    messages: int
    bytes: int
    dropped_messages: int
    dropped_samples: int
    history_messages: int = 0
    history_bytes: int = 0
    replayed_messages: int = 0
    broker_resets: int = 0
    history_evicted: int = 0


class Spool:
    def __init__(self, path: Path, max_bytes: int, history_bytes: int = 0,
                 history_seconds: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.history_bytes = history_bytes
        self.history_seconds = history_seconds
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, samples INTEGER NOT NULL)"
        )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(queue)")}
        for name, typ in (("acked", "REAL"), ("part", "INTEGER"), ("off", "INTEGER")):
            if name not in columns:  # a spool written before the history existed
                self._db.execute(f"ALTER TABLE queue ADD COLUMN {name} {typ}")
        self._db.execute("CREATE INDEX IF NOT EXISTS queue_acked ON queue(acked)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS marks (topic TEXT NOT NULL, part INTEGER NOT NULL,"
            " off INTEGER NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (topic, part))"
        )
        self._messages, self._bytes = self._count("acked IS NULL")
        self._hist_messages, self._hist_bytes = self._count("acked IS NOT NULL")

    def _count(self, where: str) -> tuple[int, int]:
        row = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM queue WHERE {where}"
        ).fetchone()
        return int(row[0]), int(row[1])

    def append(self, topic: str, key: bytes | None, value: bytes, samples: int) -> int:
        """Queue one message; returns how many older messages had to be evicted for it."""
        with self._lock:
            evicted = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                while self._messages and self._bytes + len(value) > self.max_bytes:
                    seq, size, n = self._db.execute(
                        "SELECT seq, LENGTH(value), samples FROM queue WHERE acked IS NULL"
                        " ORDER BY seq LIMIT 1"
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
        """The oldest messages waiting for the broker (not yet acknowledged)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, samples FROM queue WHERE acked IS NULL"
                " ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpoolEntry(*r) for r in rows]

    def acknowledge(self, acks: Sequence[Ack], now: float | None = None) -> int:
        """Move acknowledged messages into the history. If an offset is at or below the last
        one acknowledged on its partition, the broker's log went back (it lost what it had):
        every message of the history is queued again, and their number is returned."""
        if not acks:
            return 0
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                marks = {(t, p): o for t, p, o in
                         self._db.execute("SELECT topic, part, off FROM marks")}
                lowest: dict[tuple[str, int], int] = {}
                for a in acks:
                    tp = (a.topic, a.partition)
                    lowest[tp] = min(lowest.get(tp, a.offset), a.offset)
                went_back = any(tp in marks and off <= marks[tp] for tp, off in lowest.items())
                requeued = self._requeue_locked(now) if went_back else 0
                seqs = [a.seq for a in acks]
                rows = self._db.execute(
                    f"SELECT seq, key, value FROM queue WHERE seq IN ({','.join('?' * len(seqs))})"
                    " AND acked IS NULL", seqs).fetchall()
                found = {int(s): (k, v) for s, k, v in rows}
                newest: dict[tuple[str, int], Ack] = {}
                for a in acks:
                    if a.seq not in found:
                        continue  # already acknowledged (a retry of the same chunk)
                    k, v = found[a.seq]
                    self._db.execute("UPDATE queue SET acked = ?, part = ?, off = ? WHERE seq = ?",
                                     (now, a.partition, a.offset, a.seq))
                    self._messages -= 1
                    self._bytes -= len(v)
                    self._hist_messages += 1
                    self._hist_bytes += len(v)
                    tp = (a.topic, a.partition)
                    if tp not in newest or a.offset > newest[tp].offset:
                        newest[tp] = a
                for (topic, part), a in newest.items():
                    k, v = found[a.seq]
                    self._db.execute(
                        "INSERT INTO marks (topic, part, off, digest) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT(topic, part) DO UPDATE SET off = excluded.off,"
                        " digest = excluded.digest", (topic, part, a.offset, record_digest(k, v)))
                self._prune_locked(now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if requeued:  # the requeued rows moved from history back to waiting
                self._messages, self._bytes = self._count("acked IS NULL")
                self._hist_messages, self._hist_bytes = self._count("acked IS NOT NULL")
            return requeued

    def requeue_acked(self) -> int:
        """The broker lost its log: queue the whole history again (it is sent before anything
        newer, in its original order); returns how many messages that is."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._requeue_locked(time.time())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._messages, self._bytes = self._count("acked IS NULL")
            self._hist_messages, self._hist_bytes = self._count("acked IS NOT NULL")
            return n

    def _requeue_locked(self, now: float) -> int:
        self._prune_locked(now)
        cur = self._db.execute("UPDATE queue SET acked = NULL, part = NULL, off = NULL"
                               " WHERE acked IS NOT NULL")
        n = int(cur.rowcount)
        self._db.execute("DELETE FROM marks")  # they point into the log that is gone
        self._bump("broker_resets", 1)
        self._bump("replayed_messages", n)
        return n

    def _prune_locked(self, now: float) -> None:
        """Forget history older than `history_seconds`, then the oldest beyond `history_bytes`
        (that second kind is counted: it is protection lost before its time)."""
        cur = self._db.execute("DELETE FROM queue WHERE acked IS NOT NULL AND acked < ?",
                               (now - self.history_seconds,))
        if cur.rowcount:
            self._hist_messages, self._hist_bytes = self._count("acked IS NOT NULL")
        if self._hist_bytes <= self.history_bytes:
            return
        excess = self._hist_bytes - self.history_bytes
        cut, freed, n = None, 0, 0
        for seq, size in self._db.execute(
                "SELECT seq, LENGTH(value) FROM queue WHERE acked IS NOT NULL ORDER BY seq"):
            cut, freed, n = seq, freed + size, n + 1
            if freed >= excess:
                break
        if cut is not None:
            self._db.execute("DELETE FROM queue WHERE acked IS NOT NULL AND seq <= ?", (cut,))
            self._bump("history_evicted", n)
            self._hist_messages -= n
            self._hist_bytes -= freed

    def marks(self) -> list[LogMark]:
        """Per partition, the last record the broker acknowledged to us."""
        with self._lock:
            return [LogMark(t, int(p), int(o), bytes(d)) for t, p, o, d in
                    self._db.execute("SELECT topic, part, off, digest FROM marks")]

    def remove_through(self, seq: int) -> None:
        """Forget every message up to and including `seq`, waiting or history."""
        with self._lock:
            self._db.execute("DELETE FROM queue WHERE seq <= ?", (seq,))
            self._messages, self._bytes = self._count("acked IS NULL")
            self._hist_messages, self._hist_bytes = self._count("acked IS NOT NULL")

    def stats(self) -> SpoolStats:
        with self._lock:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            return SpoolStats(
                self._messages,
                self._bytes,
                int(counters.get("dropped_messages", 0)),
                int(counters.get("dropped_samples", 0)),
                self._hist_messages,
                self._hist_bytes,
                int(counters.get("replayed_messages", 0)),
                int(counters.get("broker_resets", 0)),
                int(counters.get("history_evicted", 0)),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
