"""Producing known samples and counting them in InfluxDB, for the pipeline tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer

from devlake.sinks import InfluxQL
from overcloud import influxql
from overcloud.bus import deadletter_topic, ensure_topics, make_producer, metrics_topic
from overcloud.errors import PermanentError, TemporaryError
from overcloud.influxql import compose
from overcloud.samples import Layer, Sample
from overcloud.settings import Settings
from overcloud.wire import encode_samples

# recent enough to be inside the DevLake retention policy; distinct per test run
BASE_NS = time.time_ns() - 3600 * 10**9


def batch(overcloud: str, seq0: int, n: int, measurement: str = "itest",
          step_ns: int = 1000) -> list[Sample]:
    """`n` samples with distinct timestamps, so the stored count is exactly what was sent."""
    return [
        Sample(measurement, {"overcloud": overcloud, "node": f"n{(seq0 + i) % 7}"},
               {"v": float(seq0 + i), "seq": seq0 + i}, BASE_NS + (seq0 + i) * step_ns)
        for i in range(n)
    ]


@dataclass
class Producer:
    """Sends `batches` × `size` samples at a steady pace from a thread (the 'load')."""

    settings: Settings
    overcloud: str
    batches: int
    size: int = 100
    pace: float = 0.0
    step_ns: int = 1000
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def total(self) -> int:
        return self.batches * self.size

    def run(self) -> None:
        ensure_topics(self.settings)
        p = make_producer(self.settings)
        topic = metrics_topic(self.settings, Layer.RESOURCE)
        for b in range(self.batches):
            samples = batch(self.overcloud, b * self.size, self.size, step_ns=self.step_ns)
            p.send(topic, key=f"n{b % 7}".encode(), value=encode_samples(samples))
            self.sent += len(samples)
            if self.pace and self.stop.wait(self.pace):
                break
        p.flush(30)
        p.close()
        self.done.set()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        return t


def stored(settings: Settings, overcloud: str, measurement: str = "itest") -> int:
    """Points stored for `overcloud` (0 while InfluxDB or the database is not there)."""
    ql = InfluxQL(settings.influx)
    try:
        series = ql.query(compose('SELECT count("seq") FROM {}', influxql.ident(measurement)),
                          f"{settings.influx.database_prefix}{overcloud}")
    except (TemporaryError, PermanentError):
        return 0
    finally:
        ql.close()
    return int(series[0]["values"][0][1]) if series else 0


def deadletters(settings: Settings, expect: int, timeout: float = 60) -> list[bytes]:
    c = KafkaConsumer(
        deadletter_topic(settings), bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
        max_partition_fetch_bytes=64 << 20, fetch_max_bytes=64 << 20,
    )
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=500).values():
            out.extend(m.value for m in msgs)
    c.close()
    return out
