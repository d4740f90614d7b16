"""The DevLake consumer: metric topics → InfluxDB, one database per OverCloud.

Guarantees, and how:
- *No loss*: offsets are committed only after every point up to them was written (and every
  bad message up to them was dead-lettered and acknowledged by the broker).
- *No duplicates*: samples carry their measurement time, so a redelivered batch overwrites
  the same points (same series + timestamp) instead of adding new ones.
- *Never dies on bad input*: undecodable messages go to `overcloud.deadletter` with the
  reason, the source partition and offset and the original bytes, and consumption carries on.
- *Only into DevLakes that exist*: the orchestrator creates an OverCloud's database (its
  `devlake` task) and drops it (`drop_devlake`); this consumer creates only the UnderCloud's
  own database. A sample for any other database goes to the dead letters, so made-up
  `overcloud` tags cannot create databases. Which databases exist is a cached
  `SHOW DATABASES`, read again on a miss at most every `refresh_interval` seconds, so a
  flood of made-up tags can neither hammer InfluxDB nor stall the consumer.
- *Exactly the refused points*: when InfluxDB refuses part of a write (a type conflict, a
  point beyond the retention policy), the write is split in halves and written again (the
  same points overwrite themselves) until the refused points are isolated; only those are
  dead-lettered, with InfluxDB's reason and the message they came from.
- *Outages*: while InfluxDB is down the batch is retried with capped exponential backoff;
  nothing is committed, so a crash meanwhile loses nothing either.
- *A broker that forgot everything* (tansu keeps topics and group offsets in memory): the
  group has no committed offsets after the restart, so the re-joined consumer starts at the
  beginning of the recreated topics (`auto_offset_reset=earliest`) and the idempotent writes
  absorb whatever it reads twice.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from devlake.lineprotocol import message_lines
from devlake.sinks import DatabaseMissing, MetricSink, PointsRefused
from overcloud.bus import deadletter_topic, make_producer, poll
from overcloud.errors import DecodeError, PermanentError, TemporaryError
from overcloud.settings import Settings
from overcloud.wire import describe

log = logging.getLogger(__name__)

#: dead-letter records carry the original bytes; a record bigger than this (the broker may
#: refuse it) keeps only their first `TRUNCATED_KEEP` bytes, with their size and SHA-256
DEADLETTER_MAX_BYTES = 48 * 1024 * 1024
TRUNCATED_KEEP = 64 * 1024
#: refused lines listed in one dead-letter record (the original bytes hold them all)
MAX_LISTED_LINES = 100


class DeadLetters(Protocol):
    def send(self, reason: str, record: Any, detail: Mapping[str, Any] | None = None) -> None: ...
    def flush(self) -> None: ...


class KafkaDeadLetters:
    """Dead-letter records on `<prefix>.deadletter`, one JSON document each::

        {"type": "DeadLetter", "reason": "...",
         "source": {"topic": ..., "partition": ..., "offset": ...}, "key": ...,
         "preview": "<first 200 characters>", "value_b64": "<the original bytes>",
         "time": ..., **detail}

    A record the broker refuses as too large is sent again with the original bytes
    truncated (`"truncated": {"size", "sha256", "kept"}`); the source partition and offset
    still say where the whole message is. `flush` raises `TemporaryError` until the broker
    acknowledged every record, so the caller commits nothing before that.
    """

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self._producer = producer or make_producer(
            settings, max_request_size=DEADLETTER_MAX_BYTES + (1 << 20))
        self._topic = deadletter_topic(settings)
        self._sent: list[tuple[bytes | None, bytes, Callable[[], bytes], Any]] = []
        self.count = 0

    def send(self, reason: str, record: Any, detail: Mapping[str, Any] | None = None) -> None:
        raw: bytes = record.value or b""
        doc = {
            "type": "DeadLetter",
            "reason": reason,
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset},
            "key": record.key.decode(errors="replace") if record.key else None,
            "preview": describe(raw),
            "value_b64": "",
            "time": datetime.now(UTC),
            **(detail or {}),
        }

        def truncated() -> bytes:
            short = {**doc, "value_b64": base64.b64encode(raw[:TRUNCATED_KEEP]).decode(),
                     "truncated": {"size": len(raw), "kept": min(len(raw), TRUNCATED_KEEP),
                                   "sha256": hashlib.sha256(raw).hexdigest()}}
            return orjson.dumps(short)

        if len(raw) * 4 // 3 + 4096 > DEADLETTER_MAX_BYTES:
            value = truncated()
        else:
            value = orjson.dumps({**doc, "value_b64": base64.b64encode(raw).decode()})
        self._send(record.key, value, truncated)
        self.count += 1

    def _send(self, key: bytes | None, value: bytes, truncated: Callable[[], bytes]) -> None:
        try:
            fut: Any = self._producer.send(self._topic, key=key, value=value)
        except MessageSizeTooLargeError:  # kafka-python checks its own limit at once
            fut = self._producer.send(self._topic, key=key, value=truncated())
        except KafkaError as exc:  # no broker: kept, sent again by `flush`
            fut = _Failed(exc)
        self._sent.append((key, value, truncated, fut))

    def flush(self) -> None:
        try:
            self._producer.flush(timeout=30)
        except KafkaError as exc:
            raise TemporaryError(f"dead letters not acknowledged: {exc}") from None
        sent, self._sent = self._sent, []
        failed: list[str] = []
        for key, value, truncated, fut in sent:
            if fut.is_done and fut.succeeded():
                continue
            error = fut.exception if fut.is_done else None
            failed.append(str(error or "no answer"))
            if isinstance(error, MessageSizeTooLargeError | RecordListTooLargeError):
                self._send(key, truncated(), truncated)  # too big for this broker: shorten
            else:
                self._send(key, value, truncated)  # kept, sent again at the next flush
        if failed:
            raise TemporaryError(f"{len(failed)} dead letters not acknowledged: {failed[0]}")


@dataclass(frozen=True)
class _Failed:
    """A send that failed before it had a future (shaped like kafka-python's)."""

    exception: Exception
    is_done: bool = True

    def succeeded(self) -> bool:
        return False


@dataclass
class Stats:
    messages: int = 0
    points: int = 0
    writes: int = 0
    deadlettered: int = 0
    refused_points: int = 0
    unknown_database: int = 0
    retries: int = 0
    databases: set[str] = field(default_factory=set)


@dataclass
class _Pending:
    lines: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: per database: (index of a message's first line there, the message), in line order
    sources: dict[str, list[tuple[int, Any]]] = field(default_factory=lambda: defaultdict(list))
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    points: int = 0
    since: float = 0.0

    def clear(self) -> None:
        self.lines = defaultdict(list)
        self.sources = defaultdict(list)
        self.offsets = {}
        self.points = 0
        self.since = 0.0


class Databases:
    """Which databases exist, from a cached `SHOW DATABASES`.

    A name not in the cache makes it read again, but at most once per `refresh_interval`
    seconds (`may_refresh`); a miss in between is judged by the cache as it is, so a flood
    of made-up names neither hammers InfluxDB nor stalls the consumer. (A new OverCloud's
    database is made before its agents start, so its first samples find it after a fresh
    read.) None from the sink means the server has no databases to list: every
    (validated) name is writable.
    """

    def __init__(self, sink: MetricSink, refresh_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._interval = refresh_interval
        self._clock = clock
        self._known: set[str] | None = set()
        self._last = float("-inf")
        self.refreshes = 0

    def cached(self, name: str) -> bool:
        return self._known is None or name in self._known

    def add(self, name: str) -> None:
        if self._known is not None:
            self._known.add(name)

    def forget(self, name: str) -> None:
        if self._known is not None:
            self._known.discard(name)

    def may_refresh(self) -> bool:
        return self._clock() >= self._last + self._interval

    def refresh(self) -> None:
        """Read the list again; raises the sink's `TemporaryError` while InfluxDB is away."""
        self._last = self._clock()
        self.refreshes += 1
        self._known = self._sink.databases()


class DevLake:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        sink: MetricSink,
        deadletters: DeadLetters,
        *,
        refresh_interval: float = 0.5,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._sink = sink
        self._dead = deadletters
        self._pending = _Pending()
        self._databases = Databases(sink, refresh_interval)
        self._db_of: dict[str, str] = {}
        self.stats = Stats()

    def database_for(self, overcloud: str | None) -> str:
        """`overcloud` was validated at decode (`overcloud.wire`): a DNS label, or empty."""
        s = self._settings.influx
        return f"{s.database_prefix}{overcloud}" if overcloud else s.default_database

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(stop)
        if self._pending.points or self._pending.offsets:
            self.flush(stop)

    def step(self, stop: threading.Event) -> None:
        """One poll: decode, queue lines, and flush when the batch is full or old enough."""
        # overcloud.bus.poll: a broker outage must not end the process
        records = poll(self._consumer, timeout_ms=100, max_records=2000)
        pending = self._pending
        db_of = self._db_of
        cfg = self._settings.devlake
        for tp, messages in records.items():
            for msg in messages:
                self.stats.messages += 1
                try:
                    # decode + validate + render in one pass (same checks as decode_samples)
                    by_overcloud = message_lines(msg.value)
                except DecodeError as exc:
                    self._dead.send(str(exc), msg)
                    self.stats.deadlettered += 1
                else:
                    for overcloud, lines in by_overcloud.items():
                        if lines and not pending.points:
                            pending.since = time.monotonic()
                        db = db_of.get(overcloud)
                        if db is None:
                            if len(db_of) >= 10_000:
                                db_of.clear()
                            db = db_of[overcloud] = self.database_for(overcloud or None)
                        target = pending.lines[db]
                        pending.sources[db].append((len(target), msg))
                        target.extend(lines)
                        pending.points += len(lines)
                pending.offsets[tp] = msg.offset + 1
        due = pending.points >= cfg.batch_points or (
            pending.points and time.monotonic() - pending.since >= cfg.linger
        )
        if due or (pending.offsets and not pending.points):
            self.flush(stop)

    def flush(self, stop: threading.Event) -> None:
        pending = self._pending
        for db in list(pending.lines):
            known = self._exists(db, stop)
            if known is None:
                return  # stopping mid-outage: nothing committed, the batch is redelivered
            if not known:
                self._unknown(db, pending.sources[db])
            elif not self._store(db, pending.lines[db], pending.sources[db], stop):
                return
            del pending.lines[db]
            del pending.sources[db]
        if not self._retry("dead letters", self._dead.flush, stop):
            return
        if pending.offsets:
            try:
                self._consumer.commit(
                    {tp: OffsetAndMetadata(off, "", -1) for tp, off in pending.offsets.items()}
                )
            except CommitFailedError as exc:
                # the group rebalanced: another member re-reads from the last commit, and
                # our writes are idempotent, so nothing is lost or duplicated
                log.warning("commit failed after rebalance: %s", exc)
            except KafkaError as exc:
                log.warning("commit failed, batch will be redelivered: %s", exc)
        pending.clear()

    # --- which databases may be written ---------------------------------------------------

    def _exists(self, db: str, stop: threading.Event) -> bool | None:
        """Whether `db` may be written (None: stopped while InfluxDB was away)."""
        dbs = self._databases
        if dbs.cached(db):
            return True
        if db == self._settings.influx.default_database:
            # the UnderCloud's own database is the only one the DevLake creates
            if not self._retry(f"creating {db}", lambda: self._sink.ensure_database(db), stop):
                return None
            dbs.add(db)
            self.stats.databases.add(db)
            return True
        if dbs.may_refresh() and not self._retry("SHOW DATABASES", dbs.refresh, stop):
            return None
        if dbs.cached(db):
            self.stats.databases.add(db)
        return dbs.cached(db)

    def _unknown(self, db: str, sources: list[tuple[int, Any]]) -> None:
        prefix = self._settings.influx.database_prefix
        name = db.removeprefix(prefix)
        reason = (f"unknown OverCloud {name!r}: no DevLake database {db} (an OverCloud's "
                  "database is created with it; samples for others are not stored)")
        for _start, msg in sources:
            self._dead.send(reason, msg, {"database": db})
            self.stats.deadlettered += 1
            self.stats.unknown_database += 1
        log.warning("dead-lettered %d message(s) for %s: no such DevLake", len(sources), db)

    # --- writing ----------------------------------------------------------------------------

    def _store(self, db: str, lines: list[str], sources: list[tuple[int, Any]],
               stop: threading.Event) -> bool:
        """Write `lines`; refused points are isolated and dead-lettered. False: stopped."""
        refused: list[tuple[int, str]] = []  # (line index, InfluxDB's reason)
        parts = [(0, len(lines))]
        while parts:
            lo, hi = parts.pop()
            outcome = self._write(db, lines, lo, hi, stop)
            if outcome is None:
                return False
            if isinstance(outcome, DatabaseMissing):
                self._databases.forget(db)
                refused += [(i, f"database {db} does not exist (dropped?)") for i in range(lo, hi)]
            elif isinstance(outcome, PointsRefused) and hi - lo > 1 and not (
                    outcome.all_refused or outcome.dropped == hi - lo):
                mid = (lo + hi) // 2
                parts += [(mid, hi), (lo, mid)]  # halves again: stored points overwrite
            elif isinstance(outcome, PermanentError):
                refused += [(i, str(outcome)) for i in range(lo, hi)]
        if refused:
            self._dead_points(db, lines, sources, sorted(refused))
        return True

    def _write(self, db: str, lines: list[str], lo: int, hi: int,
               stop: threading.Event) -> PermanentError | bool | None:
        """Write lines[lo:hi]: True when stored, the refusal, or None when stopped."""
        body = "\n".join(lines[lo:hi]).encode()
        refusal: list[PermanentError] = []

        def attempt() -> None:
            try:
                self._sink.write(db, body)
            except PermanentError as exc:
                refusal.append(exc)

        if not self._retry(f"write to {db}", attempt, stop):
            return None
        self.stats.writes += 1
        if refusal:
            return refusal[0]
        self.stats.points += hi - lo
        return True

    def _dead_points(self, db: str, lines: list[str], sources: list[tuple[int, Any]],
                     refused: list[tuple[int, str]]) -> None:
        """One dead-letter record per source message, listing its refused lines."""
        starts = [start for start, _ in sources]
        by_message: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for i, reason in refused:
            by_message[bisect.bisect_right(starts, i) - 1].append((i, reason))
        for k, items in by_message.items():
            reasons = list(dict.fromkeys(r for _, r in items))
            detail = {"database": db, "refused_points": len(items),
                      "refused": [{"line": lines[i], "reason": r}
                                  for i, r in items[:MAX_LISTED_LINES]]}
            self._dead.send(f"rejected by InfluxDB: {'; '.join(reasons)[:1000]}",
                            sources[k][1], detail)
            self.stats.deadlettered += 1
        self.stats.refused_points += len(refused)
        log.error("InfluxDB refused %d point(s) for %s: %s", len(refused), db, refused[0][1])

    def _retry(self, what: str, action: Callable[[], None], stop: threading.Event) -> bool:
        """Run `action` until it does not raise `TemporaryError` (True) or `stop` (False)."""
        delay = 0.2
        outage_logged = False
        while True:
            try:
                action()
            except TemporaryError as exc:
                self.stats.retries += 1
                if not outage_logged:
                    log.warning("%s failed, retrying with backoff: %s", what, exc)
                    outage_logged = True
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self._settings.devlake.max_backoff)
                continue
            if outage_logged:
                log.info("%s: InfluxDB/broker is back", what)
            return True
