"""Producing known samples and counting them in InfluxDB, for the pipeline tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
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


class InfluxTap:
    """A relay on 127.0.0.1 in front of the real InfluxDB that records every line written.

    InfluxDB keeps one point per series and timestamp, so a point written twice is stored once:
    counting stored points cannot show a replay, nor tell "written once" from "written twice,
    identically". The tap sees each write the DevLake makes. It can also *hold* the answer to
    one write after InfluxDB has stored it, so a test can kill the DevLake in the one place a
    crash forces a replay: points stored, offsets not yet committed.
    """

    def __init__(self, upstream: str) -> None:
        import http.server

        self.upstream = upstream.rstrip("/")
        self.writes: list[list[bytes]] = []
        """The lines of every write InfluxDB accepted (204), in order."""
        self.held: list[bytes] = []
        """The lines of the write whose answer was held."""
        self.holding = threading.Event()
        self._armed = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        tap = self

        class Relay(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "authorization")}
                try:
                    r = httpx.request(self.command, tap.upstream + self.path, content=body,
                                      headers=headers, timeout=30)
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                if self.path.startswith("/write") and r.status_code == 204:
                    lines = [ln for ln in body.split(b"\n") if ln]
                    with tap._lock:
                        tap.writes.append(lines)
                        hold = tap._armed.is_set() and not tap.holding.is_set()
                        if hold:
                            tap._armed.clear()
                            tap.held = lines
                            tap.holding.set()
                    if hold:
                        tap._release.wait(120)
                try:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", r.headers.get("content-type", "text/plain"))
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except OSError:
                    pass  # the client is gone (killed while its answer was held)

            do_GET = do_POST = _relay

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def hold_next_write(self) -> None:
        """Store the next write, then keep its answer back until `release`."""
        self._armed.set()

    def release(self) -> None:
        self._release.set()

    def lines(self) -> list[bytes]:
        with self._lock:
            return [ln for w in self.writes for ln in w]

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
