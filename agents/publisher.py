"""Deliver spooled batches to Kafka in order, from a thread of its own.

Collection never waits on the broker: `publish` only appends to the on-disk spool and wakes
the delivery thread, which sends the spool oldest-first (one request in flight, so order is
kept) and retries every second while the broker is away. A cycle therefore takes the same
few milliseconds with the broker up, slow or gone.

At-least-once: a message leaves the waiting queue only after the broker acknowledged it, and
even then it stays in the spool's history for `kafka.replay_window` seconds. The broker we
run (tansu) keeps its log in memory, so a restart forgets what it acknowledged but no DevLake
consumed yet. The publisher finds that out by itself — an acknowledgement at or below the
last offset on its partition (`Spool.acknowledge`), or, after reconnecting, our topics had to
be created again or the last records it had acknowledged are no longer in the log
(`LogProbe`) — and then sends the history again. Resending is harmless because DevLake
writes are idempotent (same series + timestamp overwrite).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from agents.spool import Ack, Spool
from overcloud.bus import close_producer, ensure_topics, make_producer
from overcloud.errors import TemporaryError
from overcloud.replay import LogProbe
from overcloud.settings import Settings

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, settings: Settings, spool: Spool, chunk: int = 200) -> None:
        self._settings = settings
        self.spool = spool
        self._chunk = chunk
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent_messages = 0
        self.connected = False
        self._retry_at = 0.0

    # --- the collection side: never touches the network --------------------------------

    def publish(self, topic: str, key: str, value: bytes, samples: int) -> None:
        """Queue a batch (durably) for the delivery thread; returns at once."""
        evicted = self.spool.append(topic, key.encode(), value, samples)
        if evicted:
            log.warning("spool full: evicted %d oldest message(s); the loss is counted", evicted)
        self._wake.set()

    # --- the delivery side ---------------------------------------------------------------

    def start(self) -> Publisher:
        """Deliver from a background thread until `close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="publisher", daemon=True)
            self._thread.start()
        return self

    def _deliver(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                empty = self.drain()
            except Exception:  # the delivery thread must outlive any surprise
                log.exception("delivery failed; retrying")
                empty = False
            # sleep until a new batch, or retry in a second while something is waiting
            self._wake.wait(None if empty else max(0.05, self._retry_at - time.monotonic()))

    def drain(self, force: bool = False) -> bool:
        """Send queued messages oldest-first; returns True when nothing is waiting."""
        with self._lock:
            if not force and time.monotonic() < self._retry_at:
                return False
            while not self._stop.is_set() or force:
                entries = self.spool.peek(self._chunk)
                if not entries:
                    self._retry_at = 0.0
                    return True
                try:
                    producer = self._connect()
                    futures = [producer.send(e.topic, key=e.key, value=e.value) for e in entries]
                    producer.flush(timeout=self._settings.agent.send_timeout)
                    acks = [Ack(e.seq, e.topic, md.partition, md.offset)
                            for e, md in zip(entries, (f.get(timeout=0) for f in futures),
                                             strict=True)]
                except (KafkaError, TemporaryError) as exc:
                    queued = self.spool.stats().messages
                    self._disconnect(f"broker unavailable, {queued} batch(es) spooled: {exc}")
                    return False
                replay = self.spool.acknowledge(acks)
                if replay:
                    log.warning("the broker's log went back (offsets restarted): sending the "
                                "%d batch(es) it had acknowledged in the last %gs again",
                                replay, self.spool.history_seconds)
                self.sent_messages += len(entries)
            return False

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(self._settings.agent.send_timeout * 1000)
            options: dict[str, Any] = {
                "max_block_ms": timeout_ms,
                "request_timeout_ms": timeout_ms,
                "max_in_flight_requests_per_connection": 1,
                "retries": 2,
            }
            producer = make_producer(self._settings, **options)
            try:
                # tansu forgets topics when restarted: recreate ours with their partitions
                created = ensure_topics(self._settings)
                self._check_log(set(created))
            except BaseException:
                close_producer(producer, timeout=0)  # not kept: close it now, not in __del__
                raise
            self._producer = producer
            if not self.connected:
                log.info("connected to broker %s", self._settings.kafka.bootstrap)
            self.connected = True
        return self._producer

    def _check_log(self, created: set[str]) -> None:
        """After (re)connecting: is what the broker acknowledged to us still in its log?"""
        marks = self.spool.marks()
        if not marks:
            return
        lost = [m for m in marks if m.topic in created]
        if not lost:
            probe = LogProbe(self._settings)
            try:
                lost = probe.missing(marks)
            finally:
                probe.close()
        if lost:
            n = self.spool.requeue_acked()
            log.warning("the broker lost its log (%s[%d]@%d is gone): sending the %d batch(es) "
                        "it had acknowledged in the last %gs again", lost[0].topic,
                        lost[0].partition, lost[0].offset, n, self.spool.history_seconds)

    def _disconnect(self, reason: str) -> None:
        if self.connected:
            log.warning(reason)
        self.connected = False
        self._retry_at = time.monotonic() + 1.0
        if self._producer is not None:
            try:
                close_producer(self._producer, timeout=0)  # what it held is in the spool
            except Exception:  # closing a broken producer must not mask the outage
                log.debug("error closing producer", exc_info=True)
            self._producer = None

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the delivery thread, try to deliver what is queued for up to `timeout` s;
        True when nothing is left waiting."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.agent.send_timeout + 10)
        deadline = time.monotonic() + timeout
        empty = self.drain(force=True)
        while not empty and time.monotonic() < deadline:
            time.sleep(0.2)
            empty = self.drain(force=True)
        with self._lock:
            if self._producer is not None:
                close_producer(self._producer, timeout=2)
                self._producer = None
        self.spool.close()
        return empty
