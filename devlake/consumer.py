"""The DevLake consumer: metric topics → InfluxDB, one database per OverCloud.

Guarantees, and how:
- *No loss*: offsets are committed only after every point up to them was written (and every
  bad message up to them was dead-lettered and acknowledged by the broker).
- *No duplicates*: samples carry their measurement time, so a redelivered batch overwrites
  the same points (same series + timestamp) instead of adding new ones.
- *Never dies on bad input*: undecodable messages go to `overcloud.deadletter` with the
  reason, and consumption carries on.
- *Outages*: while InfluxDB is down the batch is retried with capped exponential backoff;
  nothing is committed, so a crash meanwhile loses nothing either.
- *A broker that forgot everything* (tansu keeps topics and group offsets in memory): the
  group has no committed offsets after the restart, so the re-joined consumer starts at the
  beginning of the recreated topics (`auto_offset_reset=earliest`) and the idempotent writes
  absorb whatever it reads twice.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from devlake.lineprotocol import message_lines
from devlake.sinks import MetricSink
from overcloud.bus import deadletter_topic, make_producer, poll
from overcloud.errors import DecodeError, PermanentError, TemporaryError
from overcloud.settings import Settings
from overcloud.wire import describe

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    def send(self, reason: str, record: Any) -> None: ...
    def flush(self) -> None: ...


class KafkaDeadLetters:
    """Dead-letter records: the reason, where the message came from, and its bytes."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self._producer = producer or make_producer(settings)
        self._topic = deadletter_topic(settings)
        self.count = 0

    def send(self, reason: str, record: Any) -> None:
        raw: bytes = record.value or b""
        doc = {
            "type": "DeadLetter",
            "reason": reason,
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset},
            "key": record.key.decode(errors="replace") if record.key else None,
            "preview": describe(raw),
            "value_b64": base64.b64encode(raw).decode(),
            "time": datetime.now(UTC),
        }
        self._producer.send(self._topic, key=record.key, value=orjson.dumps(doc))
        self.count += 1

    def flush(self) -> None:
        self._producer.flush(timeout=30)


@dataclass
class Stats:
    messages: int = 0
    points: int = 0
    writes: int = 0
    deadlettered: int = 0
    rejected_batches: int = 0
    retries: int = 0
    databases: set[str] = field(default_factory=set)


@dataclass
class _Pending:
    lines: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    points: int = 0
    since: float = 0.0

    def clear(self) -> None:
        self.lines = defaultdict(list)
        self.offsets = {}
        self.points = 0
        self.since = 0.0


class DevLake:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        sink: MetricSink,
        deadletters: DeadLetters,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._sink = sink
        self._dead = deadletters
        self._pending = _Pending()
        self._known_dbs: set[str] = set()
        self.stats = Stats()

    def database_for(self, overcloud: str | None) -> str:
        s = self._settings.influx
        return f"{s.database_prefix}{overcloud}" if overcloud else s.default_database

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(stop)
        if self._pending.points or self._pending.offsets:
            self.flush(stop)

    def step(self, stop: threading.Event) -> None:
        """One poll: decode, queue lines, and flush when the batch is full or old enough."""
        # (reliability) overcloud.bus.poll: a broker outage must not end the process
        records = poll(self._consumer, timeout_ms=100, max_records=2000)
        pending = self._pending
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
                        pending.lines[self.database_for(overcloud or None)].extend(lines)
                        pending.points += len(lines)
                pending.offsets[tp] = msg.offset + 1
        due = pending.points >= cfg.batch_points or (
            pending.points and time.monotonic() - pending.since >= cfg.linger
        )
        if due or (pending.offsets and not pending.points):
            self.flush(stop)

    def flush(self, stop: threading.Event) -> None:
        pending = self._pending
        for db, lines in list(pending.lines.items()):
            if not self._write_with_retry(db, lines, stop):
                # stopping mid-outage: leave offsets uncommitted, the batch will be redelivered
                return
            del pending.lines[db]
        self._dead.flush()
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

    def _write_with_retry(self, db: str, lines: list[str], stop: threading.Event) -> bool:
        """Write until stored (True) or rejected and dead-lettered (True), or stopped (False)."""
        delay = 0.2
        outage_logged = False
        body = "\n".join(lines).encode()
        while True:
            try:
                if db not in self._known_dbs:
                    self._sink.ensure_database(db)
                    self._known_dbs.add(db)
                    self.stats.databases.add(db)
                self._sink.write(db, body)
                self.stats.points += len(lines)
                self.stats.writes += 1
                if outage_logged:
                    log.info("InfluxDB is back; wrote %d pending points to %s", len(lines), db)
                return True
            except TemporaryError as exc:
                self.stats.retries += 1
                if not outage_logged:
                    log.warning("write to %s failed, retrying with backoff: %s", db, exc)
                    outage_logged = True
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self._settings.devlake.max_backoff)
            except PermanentError as exc:
                log.error("InfluxDB rejected %d points for %s: %s", len(lines), db, exc)
                self.stats.rejected_batches += 1
                self._dead.send(f"rejected by InfluxDB: {exc}", _Rejected(db, body))
                return True


@dataclass(frozen=True)
class _Rejected:
    """A batch InfluxDB refused, shaped like a consumer record for the dead-letter topic."""

    database: str
    value: bytes
    topic: str = "influxdb"
    partition: int = -1
    offset: int = -1

    @property
    def key(self) -> bytes:
        return self.database.encode()
