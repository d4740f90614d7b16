"""Surviving a broker that forgets: check that acknowledged records are still in its log, and
keep recently published events to publish them again when they are not.

Why: the broker we run (tansu) keeps its log in memory. After a restart every topic is gone,
and with it every record it had acknowledged that no consumer had read yet. Nothing in the
Kafka protocol says so (tansu's cluster id is a fixed default), so a producer finds out by
itself, from what it remembers of its own acknowledgements:

- an acknowledgement whose offset is at or below the last one on that partition: the log
  went back;
- `LogProbe.missing`: the record at a remembered offset is not there any more, or is another
  record (the log was recreated and has grown past it since). Used after reconnecting and,
  for events, every few seconds.

Agents keep their acknowledged batches in their spool (`agents/spool.py`); events go
through `EventJournal`, one SQLite file per state directory and events topic, shared by
every process that publishes events there (the CLI, the orchestrator, the alert evaluator,
the DevTower). `recover` publishes
the journal again when its records are gone; consumers de-duplicate by event id (the
orchestrator keeps an inbox of handled ids), so a replayed event is acted on at most once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from overcloud.errors import TemporaryError
from overcloud.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogMark:
    """A record the broker acknowledged: where it was put, and what it was."""

    topic: str
    partition: int
    offset: int
    digest: bytes


def record_digest(key: bytes | None, value: bytes) -> bytes:
    """What identifies a record when it is read back from the broker."""
    h = hashlib.blake2b(digest_size=12)
    h.update(len(key).to_bytes(4, "big") + key if key is not None else b"\xff" * 4)
    h.update(value)
    return h.digest()


class LogProbe:
    """Reads back remembered records to tell whether the broker still holds them.

    Keeps one group-less consumer between calls; `close` releases it."""

    def __init__(self, settings: Settings, read_timeout: float = 1.5) -> None:
        self._settings = settings
        self._read_timeout = read_timeout
        self._consumer: KafkaConsumer | None = None

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                self._consumer = KafkaConsumer(
                    bootstrap_servers=self._settings.kafka.bootstrap, group_id=None,
                    enable_auto_commit=False, auto_offset_reset="earliest",
                    client_id="overcloud-log-probe", bootstrap_timeout_ms=5000,
                    allow_auto_create_topics=False,
                    request_timeout_ms=5000, reconnect_backoff_max_ms=1000,
                    fetch_max_wait_ms=200, max_partition_fetch_bytes=1024 * 1024,
                    metadata_max_age_ms=3000,
                )
            except KafkaError as exc:
                raise TemporaryError(f"broker {self._settings.kafka.bootstrap}: {exc}") from None
        return self._consumer

    def missing(self, marks: Sequence[LogMark]) -> list[LogMark]:
        """The marks whose record is no longer at its offset. Raises `TemporaryError` when
        the broker cannot tell (unreachable, or a record that should be there did not come
        back in time): the caller asks again later rather than replaying on a guess."""
        if not marks:
            return []
        try:
            return self._missing(marks)
        except TemporaryError:
            self.close()
            raise
        except Exception as exc:  # kafka-python raises more than KafkaError mid-restart
            self.close()
            raise TemporaryError(f"cannot read back from the broker: {exc!r}") from None

    def _missing(self, marks: Sequence[LogMark]) -> list[LogMark]:
        c = self._client()
        gone: list[LogMark] = []
        wanted: dict[TopicPartition, LogMark] = {}
        for m in marks:
            if m.partition in (c.partitions_for_topic(m.topic) or set()):
                wanted[TopicPartition(m.topic, m.partition)] = m
            else:  # the topic is gone, or was made again with other partitions
                gone.append(m)
        if not wanted:
            return gone
        c.assign(list(wanted))
        for tp, m in wanted.items():
            c.seek(tp, m.offset)
        deadline = time.monotonic() + self._read_timeout
        while wanted and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=200).items():
                if tp not in wanted or not records:
                    continue
                m = wanted.pop(tp)
                r = records[0]
                if r.offset != m.offset or record_digest(r.key, r.value) != m.digest:
                    gone.append(m)
                c.pause(tp)
        if wanted:
            # nothing at those offsets: gone if the log ends before them (tansu answers a
            # fetch beyond the end with nothing rather than an out-of-range error)
            ends = c.end_offsets(list(wanted), timeout_ms=5000)
            for tp, m in wanted.items():
                if ends.get(tp, 0) <= m.offset:
                    gone.append(m)
                else:
                    raise TemporaryError(f"{tp.topic}[{tp.partition}]@{m.offset} did not come back")
        c.assign([])
        return gone

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False)
            self._consumer = None


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    acked: float


class EventJournal:
    """Events published from this state directory and acknowledged by the broker, kept for
    `window` seconds within `max_bytes` (oldest go first; an early eviction is counted).

    Several processes share the file (SQLite, WAL); `locked()` serialises replays."""

    def __init__(self, path: Path, window: float, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.window = window
        self.max_bytes = max_bytes
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, acked REAL NOT NULL,"
                       " part INTEGER NOT NULL, off INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY,"
                       " value INTEGER NOT NULL)")

    @classmethod
    def of(cls, settings: Settings) -> EventJournal:
        """The journal of this state directory's events topic (one file per topic: processes
        with another topic prefix, or a prefix changed since, never replay into each other)."""
        k = settings.kafka
        topic = settings.topic("events")
        name = topic if re.fullmatch(r"[A-Za-z0-9._-]{1,200}", topic) else \
            hashlib.sha256(topic.encode()).hexdigest()[:32]
        return cls(settings.state_dir / "events" / f"{name}.journal.sqlite", k.replay_window,
                   k.replay_max_bytes)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def record(self, topic: str, key: bytes | None, value: bytes, partition: int,
               offset: int, now: float | None = None) -> bool:
        """Remember one acknowledged event; True when its offset is at or below the newest
        remembered one on that partition: the log may have gone back (or another publisher's
        acknowledgement was recorded first), so `replay_journal(suspect=True)` should look."""
        now = time.time() if now is None else now
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT MAX(off) FROM journal WHERE topic = ? AND part = ?",
                                 (topic, partition)).fetchone()
                went_back = row[0] is not None and offset <= int(row[0])
                db.execute("INSERT INTO journal (topic, key, value, acked, part, off)"
                           " VALUES (?, ?, ?, ?, ?, ?)", (topic, key, value, now, partition, offset))
                self._prune(db, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return went_back

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM journal WHERE acked < ?", (now - self.window,))
        total = int(db.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM journal").fetchone()[0])
        if total <= self.max_bytes:
            return
        cut, n = None, 0
        for seq, size in db.execute("SELECT seq, LENGTH(value) FROM journal ORDER BY seq"):
            cut, n, total = seq, n + 1, total - size
            if total <= self.max_bytes:
                break
        db.execute("DELETE FROM journal WHERE seq <= ?", (cut,))
        _bump(db, "evicted", n)

    def reset_pending(self) -> bool:
        """A replay was found due and has not finished."""
        return self.counter("reset_pending") > 0

    def mark_due(self) -> None:
        with self._db() as db:
            _bump(db, "reset_pending", 1)

    def counter(self, name: str) -> int:
        with self._db() as db:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def marks(self) -> list[LogMark]:
        """Per partition, the newest remembered record (the one with the highest offset)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT j.topic, j.part, j.off, j.key, j.value FROM journal j JOIN"
                " (SELECT topic, part, MAX(off) AS off FROM journal GROUP BY topic, part) m"
                " ON j.topic = m.topic AND j.part = m.part AND j.off = m.off").fetchall()
        return [LogMark(t, int(p), int(o), record_digest(k, bytes(v))) for t, p, o, k, v in rows]

    def entries(self, now: float | None = None) -> list[JournalEntry]:
        now = time.time() if now is None else now
        with self._db() as db:
            rows = db.execute("SELECT seq, topic, key, value, acked FROM journal WHERE acked >= ?"
                              " ORDER BY seq", (now - self.window,)).fetchall()
        return [JournalEntry(int(s), t, k, bytes(v), float(a)) for s, t, k, v, a in rows]

    def replayed(self, seq: int, partition: int, offset: int) -> None:
        with self._db() as db:
            db.execute("UPDATE journal SET part = ?, off = ? WHERE seq = ?", (partition, offset, seq))

    def finish_replay(self, n: int) -> None:
        with self._db() as db:
            db.execute("DELETE FROM counters WHERE name = 'reset_pending'")
            _bump(db, "replays", 1)
            _bump(db, "replayed_events", n)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One replay at a time per journal, across processes."""
        with self.path.with_suffix(".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE"
               " SET value = value + excluded.value", (name, by))


Send = Callable[[str, "bytes | None", bytes], tuple[int, int]]
"""Publishes (topic, key, value) and returns the acknowledgement's (partition, offset)."""


def replay_journal(journal: EventJournal, send: Send, probe: LogProbe | None,
                   suspect: bool = False) -> int:
    """Publish the journal again if the broker lost it; returns how many events were sent.

    Lost means: a replay is already due (`reset_pending`, from a process that found out and
    did not get to replay), or the probe cannot find the newest remembered record of a
    partition. `suspect` (an acknowledgement went back) with a probe that cannot answer
    counts as lost: a needless replay costs duplicates that consumers drop, a missed one
    loses events. Decided again under the journal's lock, so two processes that notice
    together replay once: the second one finds the replayed records in the log."""
    with journal.locked():
        marks = journal.marks()
        due = journal.reset_pending()
        if not due and marks and probe is not None:
            try:
                due = bool(probe.missing(marks))
            except TemporaryError:
                if not suspect:
                    raise
                due = True
        if not due:
            return 0
        journal.mark_due()  # survives us if we die half-way: whoever comes next replays
        entries = journal.entries()
        for e in entries:
            partition, offset = send(e.topic, e.key, e.value)
            journal.replayed(e.seq, partition, offset)
        journal.finish_replay(len(entries))
    log.warning("the broker lost its log: published %d event(s) of the last %gs again",
                len(entries), journal.window)
    return len(entries)

