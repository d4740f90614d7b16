"""`overcloud alerts run`: the metric topics → the evaluator → the outbox, offsets last.

Order of a step, and why: poll samples → feed the evaluator → tick the clock → record the
transitions in the outbox (durable) → save the evaluator's state file → commit the offsets.
A crash anywhere re-reads samples since the last commit; the restored state skips samples it
already accounted for, and recomputed transitions have the same keys, so the outbox ignores
them: no second notification, no lost one.

The evaluator has its own consumer group and starts at the *latest* offsets when the group
is new: alerts are about the present, not about whatever history the broker still holds.
Because of that it is only *ready* once the group is joined and partitions are assigned (a
join takes seconds on tansu): `run` calls `on_ready` then, and the CLI prints its banner
only at that point, so `services up alerts` and tests that wait for it do not send samples
the evaluator would never see.

A broker restart (tansu keeps everything in memory) is not a new group, though: when the
group is joined again and a partition has no committed offset, this process reads it from
the *start* of the new log — the samples agents spooled while the broker was away are
evaluated, and the replayed older ones are skipped by the evaluator's per-group times.
Events (`NodeOverloaded` …) go through the events journal (`KafkaEventBus`), which this
process also watches: one acknowledged just before a broker crash is published again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from devlake.alerts.evaluator import Evaluator
from devlake.alerts.outbox import Outbox, Worker, alertmanager_alert, http_post
from devlake.alerts.rules import Rule
from devlake.sinks import MetricSink
from overcloud.bus import KafkaEventBus, poll
from overcloud.errors import DecodeError
from overcloud.lineprotocol import metric_rows
from overcloud.settings import Settings

log = logging.getLogger(__name__)


def state_dir(s: Settings) -> Path:
    return s.state_dir / "alerts"


def state_file(s: Settings) -> Path:
    return state_dir(s) / "state.json"


def read_state(s: Settings) -> dict[str, Any] | None:
    """The running (or last) evaluator's state file, None when there is none."""
    try:
        data = orjson.loads(state_file(s).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def evaluator_running(state: dict[str, Any] | None) -> bool:
    pid = state.get("pid") if state else None
    return isinstance(pid, int) and _pid_alive(pid)


class Senders:
    """The four delivery channels' send functions, with their clients."""

    def __init__(self, s: Settings, producer: KafkaProducer, sink: MetricSink) -> None:
        self._s = s
        self._producer = producer
        self._sink = sink
        self._http = httpx.Client(timeout=5.0)
        self._dbs: set[str] = set()
        self.events = KafkaEventBus(s, producer=producer)

    def event(self, key: str, target: str, body: bytes) -> None:
        self.events.publish_bytes(body, target.encode(), target)

    def webhook(self, key: str, target: str, body: bytes) -> None:
        http_post(self._http, target, body, {"Idempotency-Key": key})

    def alertmanager(self, key: str, target: str, body: bytes) -> None:
        http_post(self._http, f"{self._s.alerts.alertmanager_base}/api/v2/alerts", body, {})

    def devlake(self, key: str, target: str, body: bytes) -> None:
        if target not in self._dbs:
            self._sink.ensure_database(target)
            self._dbs.add(target)
        self._sink.write(target, body)

    def close(self) -> None:
        self._http.close()
        self.events.close(producer=False)  # the producer is the caller's


class AlertRunner:
    def __init__(self, s: Settings, rules: list[Rule], consumer: KafkaConsumer, outbox: Outbox,
                 senders: Senders, clock: Callable[[], int] = time.time_ns,
                 muted: Callable[[], frozenset[str]] | None = None) -> None:
        """`muted`: the OverClouds whose alerts are silenced now (paused ones), asked at
        every clock tick."""
        self._s = s
        self._muted = muted
        self.rules = rules
        self.evaluator = Evaluator(rules)
        self._consumer = consumer
        self._outbox = outbox
        self._senders = senders
        self._clock = clock
        self._offsets: dict[TopicPartition, int] = {}
        self._last_tick = 0
        self._last_save = 0.0
        self._last_resend = 0.0
        self._last_mute = -1e18
        self._dirty = True
        self.transitions = 0
        self.am_uses = any(a.type == "alertmanager" for r in rules for a in r.actions)
        self.rejoined_from_start = 0
        topics = sorted(consumer.subscription() or [])
        if topics:
            consumer.subscribe(topics=topics, listener=_FromStartAfterReset(self))

    def workers(self, stop: threading.Event) -> list[Worker]:
        s = self._senders
        return [
            Worker(self._outbox, "events", s.event, stop),
            Worker(self._outbox, "webhook", s.webhook, stop, max_attempts=8),
            Worker(self._outbox, "alertmanager", s.alertmanager, stop, max_attempts=20),
            Worker(self._outbox, "devlake", s.devlake, stop),
        ]

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Evaluate until `stop`; `on_ready` is called once partitions are assigned."""
        previous = read_state(self._s)
        if previous:
            self.evaluator.restore(previous.get("groups") or [])
        workers = self.workers(stop)
        for w in workers:
            w.start()
        self._senders.events.watch(stop)
        try:
            while not stop.is_set():
                self.step()
                if on_ready is not None and self._consumer.assignment():
                    self.save()  # the state file says who runs before the first sample
                    on_ready()
                    on_ready = None
        finally:
            self.save()
            stop.set()
            for w in workers:
                w.join(timeout=5)

    def step(self) -> None:
        tick_ns = int(self._s.alerts.tick * 1e9)
        mono = time.monotonic()
        if self._muted is not None and mono - self._last_mute >= self._s.alerts.tick:
            self._last_mute = mono  # before the samples: a paused OverCloud's are skipped
            try:
                self.evaluator.mute(self._muted())
            except Exception as exc:  # the registry is busy or away: keep the last set
                log.warning("cannot read which OverClouds are paused: %s", exc)
        records = poll(self._consumer, timeout_ms=min(200, tick_ns // 1_000_000), max_records=5000)
        ev = self.evaluator
        watched = ev.measurements
        for tp, messages in records.items():
            for msg in messages:
                try:
                    rows = metric_rows(msg.value, watched)
                except DecodeError:
                    pass  # DevLake dead-letters it; the evaluator only skips it
                else:
                    ev.feed_rows(rows)
                self._offsets[tp] = msg.offset + 1
        if records:
            self._dirty = True
        now = self._clock()
        if now - self._last_tick >= tick_ns:
            ev.tick(now)
            self._last_tick = now
        transitions = ev.drain()
        if transitions:
            self._outbox.add(transitions, self._s)
            self.transitions += len(transitions)
            for t in transitions:
                log.info("%s %s %s value=%.3f (%s)", t.rule.name, t.state,
                         ",".join(f"{k}={v}" for k, v in t.group.items()) or "-", t.value, t.reason)
            self._dirty = True
        mono = time.monotonic()
        if self._dirty and (transitions or mono - self._last_save >= self._s.alerts.tick):
            self.save()
            self._commit()
        if self.am_uses and mono - self._last_resend >= self._s.alerts.resend:
            self._last_resend = mono
            self._resend(now)

    def save(self) -> None:
        path = state_file(self._s)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({
            "pid": os.getpid(), "updated_ns": self._clock(), "samples": self.evaluator.samples,
            "rules": [r.name for r in self.rules], "groups": self.evaluator.snapshot(),
        }))
        os.replace(tmp, path)
        self._last_save = time.monotonic()
        self._dirty = False

    def _commit(self) -> None:
        if not self._offsets:
            return
        try:
            self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in self._offsets.items()})
            self._offsets.clear()
        except KafkaError as exc:
            log.warning("commit failed (samples will be re-read; state skips them): %s", exc)

    def _resend(self, now: int) -> None:
        """Alertmanager forgets alerts it stops hearing about: re-send every firing one."""
        alerts = [alertmanager_alert(t) for t in self.evaluator.firing(now)
                  if any(a.type == "alertmanager" for a in t.rule.actions)]
        if not alerts:
            return
        try:
            self._senders.alertmanager("resend", "", orjson.dumps(alerts))
        except Exception as exc:  # a resend is best effort: the next one comes in `resend` s
            log.warning("re-sending %d firing alerts to Alertmanager failed: %s", len(alerts), exc)


class _FromStartAfterReset(ConsumerRebalanceListener):  # type: ignore[misc]
    """After the first assignment, a partition without a committed offset means the broker
    lost the group's offsets (a tansu restart): read it from the start, not the end."""

    def __init__(self, runner: AlertRunner) -> None:
        self._runner = runner
        self._joined = False

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._runner._consumer
        if self._joined and assigned:
            fresh = [tp for tp in assigned if consumer.committed(tp) is None]
            if fresh:
                consumer.seek_to_beginning(*fresh)
                self._runner.rejoined_from_start += len(fresh)
                log.warning("re-joined with no committed offsets on %d partition(s) (the broker "
                            "restarted?): reading them from the start", len(fresh))
        self._joined = self._joined or bool(assigned)
