"""Deliver spooled batches to Kafka in order; keep them on disk while the broker is away.

At-least-once: a message leaves the spool only after the broker acknowledged it. A crash
between acknowledgement and removal resends it, which is harmless because DevLake writes
are idempotent (same series + timestamp overwrite). Order is kept by sending the spool
oldest-first with one request in flight per connection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from agents.spool import Spool
from overcloud.bus import close_producer, ensure_topics, make_producer
from overcloud.errors import TemporaryError
from overcloud.settings import Settings

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, settings: Settings, spool: Spool, chunk: int = 200) -> None:
        self._settings = settings
        self.spool = spool
        self._chunk = chunk
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self.sent_messages = 0
        self.connected = False
        self._retry_at = 0.0

    def publish(self, topic: str, key: str, value: bytes, samples: int) -> None:
        """Queue a batch (durably) and try to deliver everything queued."""
        evicted = self.spool.append(topic, key.encode(), value, samples)
        if evicted:
            log.warning("spool full: evicted %d oldest message(s); the loss is counted", evicted)
        self.drain()

    def drain(self, force: bool = False) -> bool:
        """Send queued messages oldest-first; returns True when the spool is empty."""
        with self._lock:
            if not force and time.monotonic() < self._retry_at:
                return False
            while True:
                entries = self.spool.peek(self._chunk)
                if not entries:
                    self._retry_at = 0.0
                    return True
                try:
                    producer = self._connect()
                    futures = [producer.send(e.topic, key=e.key, value=e.value) for e in entries]
                    producer.flush(timeout=self._settings.agent.send_timeout)
                    for f in futures:
                        f.get(timeout=0)
                except (KafkaError, TemporaryError) as exc:
                    queued = self.spool.stats().messages
                    self._disconnect(f"broker unavailable, {queued} batch(es) spooled: {exc}")
                    return False
                self.spool.remove_through(entries[-1].seq)
                self.sent_messages += len(entries)

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
                ensure_topics(self._settings)
            except BaseException:
                close_producer(producer, timeout=0)  # not kept: close it now, not in __del__
                raise
            self._producer = producer
            if not self.connected:
                log.info("connected to broker %s", self._settings.kafka.bootstrap)
            self.connected = True
        return self._producer

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
        """Try to deliver what is queued for up to `timeout` s; True when nothing is left."""
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
