"""The Kafka bus: topic names, topic creation, and configured kafka-python clients.

Only this module and the processes that move data (agents, DevLake, orchestrator) talk to
Kafka; collectors never do. The broker may be tansu (memory only: it forgets topics when
restarted), so `ensure_topics` is cheap and called whenever a client (re)connects.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from overcloud.errors import TemporaryError
from overcloud.events import Event
from overcloud.replay import EventJournal, LogProbe, replay_journal
from overcloud.samples import Layer
from overcloud.settings import Settings
from overcloud.wire import encode_event

log = logging.getLogger(__name__)


def metrics_topic(settings: Settings, layer: Layer | str) -> str:
    return settings.topic(f"metrics.{Layer(layer).value}")


def events_topic(settings: Settings) -> str:
    return settings.topic("events")


def deadletter_topic(settings: Settings) -> str:
    return settings.topic("deadletter")


def all_topics(settings: Settings) -> dict[str, int]:
    """Every topic the system uses, with its partition count.

    Metric topics are keyed by node and partitioned so DevLake consumers can share them;
    the events topic has one partition so that events about one OverCloud stay in order.
    """
    topics = {metrics_topic(settings, layer): settings.kafka.partitions for layer in Layer}
    topics[events_topic(settings)] = 1
    topics[deadletter_topic(settings)] = 1
    return topics


def ensure_topics(settings: Settings, topics: dict[str, int] | None = None) -> list[str]:
    """Create missing topics and return their names (a topic of ours that is missing after a
    broker restart means the broker lost its log); raises `TemporaryError` while the broker
    is unreachable."""
    wanted = all_topics(settings) if topics is None else topics
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka.bootstrap,
            client_id="overcloud-admin",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
            reconnect_backoff_max_ms=1000,
        )
    except KafkaError as exc:
        raise TemporaryError(f"Kafka broker at {settings.kafka.bootstrap} unreachable: {exc}") from None
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
    except KafkaError as exc:
        raise TemporaryError(f"could not create topics: {exc}") from None
    finally:
        admin.close()
    return [t.name for t in missing]


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap,
        "acks": 1,
        "linger_ms": 5,
        "max_block_ms": 5000,
        "retries": 3,
        "compression_type": None,
        "max_request_size": 8 * 1024 * 1024,
        "bootstrap_timeout_ms": 5000,
        "reconnect_backoff_max_ms": 1000,
        # only `ensure_topics` makes topics: one the broker makes on a first send (after a
        # restart, before anyone recreated ours) gets its own partition count — an events
        # topic with four partitions loses the order of events about one OverCloud
        "allow_auto_create_topics": False,
    }
    options.update(overrides)
    try:
        return KafkaProducer(**options)
    except KafkaError as exc:
        raise TemporaryError(f"Kafka broker at {settings.kafka.bootstrap} unreachable: {exc}") from None


def close_producer(producer: KafkaProducer, timeout: float) -> bool:
    """Close `producer`, waiting up to `timeout` s for what it holds; True if all went out.

    kafka-python 2.x's `close()` flushes first and raises when that times out (a broker that
    is gone), before it has stopped anything: the sender thread and its connections stay,
    and the producer's finaliser tries again later and raises from `__del__`. Here the
    sender is stopped either way; what was not delivered is the caller's to keep (the agents
    hold it in their spool)."""
    try:
        producer.close(timeout=timeout)
        return True
    except KafkaError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True  # kafka-python: keeps __del__ from closing it again
        return False


def make_consumer(
    settings: Settings, topics: Iterable[str], group: str, **overrides: Any
) -> KafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # tansu takes half the session timeout to admit a member: keep it short
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "max_poll_interval_ms": 600_000,
        "fetch_max_bytes": 32 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "bootstrap_timeout_ms": 10000,
        # notice a recreated topic (tansu restart) within seconds, not the 5 min default
        "metadata_max_age_ms": 3000,
        "reconnect_backoff_max_ms": 1000,
        "allow_auto_create_topics": False,
    }
    options.update(overrides)
    try:
        return KafkaConsumer(*topics, **options)
    except KafkaError as exc:
        raise TemporaryError(f"Kafka broker at {settings.kafka.bootstrap} unreachable: {exc}") from None


_last_poll_warning = 0.0


def poll(consumer: KafkaConsumer, timeout_ms: int, max_records: int) -> dict[Any, Any]:
    """`consumer.poll`, but a broker that is away means "nothing yet", not an exception.

    kafka-python (3.0) lets a `KafkaConnectionError` escape from `poll` while it looks for the
    group coordinator of a broker that is down: a DevLake once died of it mid-outage. The
    consumer recovers on a later poll, so wait a little and say so (at most every 10 s)."""
    global _last_poll_warning
    try:
        return dict(consumer.poll(timeout_ms=timeout_ms, max_records=max_records))
    except KafkaError as exc:
        now = time.monotonic()
        if now - _last_poll_warning > 10:
            _last_poll_warning = now
            log.warning("broker unavailable, consumer waiting: %s", exc)
        time.sleep(min(timeout_ms, 500) / 1000)
        return {}


class EventBus(Protocol):
    """What publishes domain events; the Kafka one below, or a list in unit tests."""

    def publish(self, event: Event, key: str | None = None) -> None: ...


class KafkaEventBus:
    """Publishes events to the events topic and waits for the broker's acknowledgement.

    Every acknowledged event is also written to the state directory's `EventJournal`, so it
    can be published again if the broker loses its log before a consumer read it
    (`recover`, and `watch` in long-running processes). An acknowledgement at or below the
    last offset the journal knows is checked at once: that is how a publisher finds out
    that the broker restarted since the last event."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None,
                 journal: EventJournal | None = None) -> None:
        self._settings = settings
        self._producer = producer or make_producer(settings)
        self._topic = events_topic(settings)
        self.journal = journal if journal is not None else EventJournal.of(settings)
        self._probe = LogProbe(settings)
        self._probe_lock = threading.Lock()
        self.replayed = 0

    def publish(self, event: Event, key: str | None = None) -> None:
        self.publish_bytes(encode_event(event), key.encode() if key else None, event.TYPE)

    def publish_bytes(self, value: bytes, key: bytes | None, what: str = "event") -> None:
        """Publish an encoded event (the alert evaluator's outbox holds them encoded)."""
        partition, offset = self._send(self._topic, key, value, what)
        if self.journal.record(self._topic, key, value, partition, offset):
            try:
                self.recover(suspect=True)
            except TemporaryError as exc:  # the watcher, or the next publish, tries again
                log.warning("could not replay the event journal: %s", exc)

    def _send(self, topic: str, key: bytes | None, value: bytes, what: str) -> tuple[int, int]:
        for attempt in (1, 2):
            try:
                md = self._producer.send(topic, key=key, value=value).get(timeout=10)
                return int(md.partition), int(md.offset)
            except KafkaError as exc:
                if attempt == 2:
                    raise TemporaryError(f"could not publish {what}: {exc}") from None
                # a broker that restarted has no topics until someone makes them again
                ensure_topics(self._settings)
        raise AssertionError("unreachable")

    def recover(self, suspect: bool = False) -> int:
        """Publish the journal again if the broker no longer holds it; returns how many."""
        with self._probe_lock:
            n = replay_journal(self.journal, lambda t, k, v: self._send(t, k, v, "replay"),
                               self._probe, suspect=suspect)
        self.replayed += n
        return n

    def watch(self, stop: threading.Event, every: float = 2.0) -> threading.Thread:
        """Check the journal against the broker every `every` s until `stop` (a thread)."""

        def loop() -> None:
            while True:
                try:
                    self.recover()
                except TemporaryError as exc:
                    log.debug("journal check postponed: %s", exc)
                except Exception:  # the watcher must outlive any surprise
                    log.exception("journal check failed")
                if stop.wait(every):
                    return

        t = threading.Thread(target=loop, name="journal-watch", daemon=True)
        t.start()
        return t

    def close(self, producer: bool = True) -> None:
        """Release the probe, and the producer unless it belongs to the caller."""
        with self._probe_lock:
            self._probe.close()
        if producer:
            close_producer(self._producer, timeout=5)
