"""What a dead-letter record carries, whatever happens on the way to the broker.

The drill in `tests/integration/test_devlake_hardening.py` checks source partition, offset
and the original bytes on the real broker for messages that fit in a record; these pin the
paths it cannot reach: a message too big to carry whole (cut by us, or refused by the
broker), and a record the broker did not acknowledge (sent again, nothing lost, never
changed on the way).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from devlake.consumer import DEADLETTER_MAX_BYTES, TRUNCATED_KEEP, KafkaDeadLetters
from overcloud.bus import deadletter_topic
from overcloud.errors import TemporaryError
from overcloud.settings import load_settings
from tests.unit.test_devlake_consumer import Record

SETTINGS = load_settings(env={"OVERCLOUD_CONFIG": ""})


@dataclass
class Future:
    exception: Exception | None = None
    is_done: bool = True

    def succeeded(self) -> bool:
        return self.exception is None


@dataclass
class Producer:
    """Acknowledges what it is given, except what `refuse` says to fail (once each)."""

    limit: int = DEADLETTER_MAX_BYTES * 2
    refuse: list[Exception] = field(default_factory=list)
    raise_on_send: list[Exception] = field(default_factory=list)
    acked: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        if self.raise_on_send:
            raise self.raise_on_send.pop(0)
        if len(value) > self.limit:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        if self.refuse:
            return Future(self.refuse.pop(0))
        self.acked.append((topic, key, value))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        pass


def doc(value: bytes) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(value)
    return out


def test_a_record_carries_source_partition_offset_key_and_the_original_bytes() -> None:
    producer = Producer()
    dead = KafkaDeadLetters(SETTINGS, producer=producer)  # type: ignore[arg-type]
    raw = bytes(range(256)) * 3  # every byte value, not only text
    dead.send("not JSON: x", Record("oc.metrics.resource", 3, 4711, b"k1", raw), {"extra": 1})
    dead.flush()
    [(topic, key, value)] = producer.acked
    r = doc(value)
    assert topic == deadletter_topic(SETTINGS) and key == b"k1"
    assert r["source"] == {"topic": "oc.metrics.resource", "partition": 3, "offset": 4711}
    assert base64.b64decode(r["value_b64"]) == raw and "truncated" not in r
    assert r["reason"] == "not JSON: x" and r["key"] == "k1" and r["extra"] == 1


def test_a_message_too_big_to_carry_keeps_its_source_its_start_its_size_and_digest() -> None:
    producer = Producer()
    dead = KafkaDeadLetters(SETTINGS, producer=producer)  # type: ignore[arg-type]
    raw = b"\x00big" * (DEADLETTER_MAX_BYTES // 4 + 1)
    dead.send("too big", Record("t", 1, 99, None, raw))
    dead.flush()
    r = doc(producer.acked[0][2])
    assert r["source"] == {"topic": "t", "partition": 1, "offset": 99}
    assert base64.b64decode(r["value_b64"]) == raw[:TRUNCATED_KEEP]
    assert r["truncated"] == {"size": len(raw), "kept": TRUNCATED_KEEP,
                              "sha256": hashlib.sha256(raw).hexdigest()}


@pytest.mark.parametrize("where", ["at send", "on acknowledgement"])
def test_a_record_the_broker_finds_too_big_is_sent_again_cut(where: str) -> None:
    raw = b"y" * (2 * TRUNCATED_KEEP)
    producer = Producer(limit=TRUNCATED_KEEP * 2) if where == "at send" else \
        Producer(refuse=[MessageSizeTooLargeError("broker: too large")])
    dead = KafkaDeadLetters(SETTINGS, producer=producer)  # type: ignore[arg-type]
    dead.send("bad", Record("t", 0, 7, b"k", raw))
    if where == "on acknowledgement":
        with pytest.raises(TemporaryError):
            dead.flush()  # nothing acknowledged yet: the caller commits nothing
    dead.flush()
    [(_, key, value)] = producer.acked
    r = doc(value)
    assert key == b"k" and r["source"] == {"topic": "t", "partition": 0, "offset": 7}
    assert base64.b64decode(r["value_b64"]) == raw[:TRUNCATED_KEEP]
    assert r["truncated"]["size"] == len(raw)
    assert r["truncated"]["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_record_not_acknowledged_is_sent_again_unchanged_until_it_is() -> None:
    producer = Producer(raise_on_send=[KafkaConnectionError("no broker")],
                        refuse=[KafkaConnectionError("broker went away")])
    dead = KafkaDeadLetters(SETTINGS, producer=producer)  # type: ignore[arg-type]
    raw = b'{"type": "SampleBatch", broken'
    dead.send("not JSON", Record("t", 2, 5, None, raw))
    for _ in range(2):  # refused at send, then not acknowledged
        with pytest.raises(TemporaryError):
            dead.flush()  # the caller commits nothing
    dead.flush()  # (this fake acknowledges at the third send, real producers at flush)
    [(_, _, value)] = producer.acked
    r = doc(value)
    assert r["source"] == {"topic": "t", "partition": 2, "offset": 5}
    assert base64.b64decode(r["value_b64"]) == raw and "truncated" not in r
    dead.flush()
    assert len(producer.acked) == 1, "sent once it was acknowledged"
