"""Alert notifications end to end: the evaluator process (`overcloud alerts run`), its outbox,
a real Prometheus Alertmanager (Debian's, started by daemons/alertmanager.py) and
a real HTTP receiver in the test.

- Alertmanager forgets an alert it stops hearing about (`resolve_timeout`), so the runner
  re-sends every firing alert each `alerts.resend` seconds; a resolve carries `endsAt`, or
  Alertmanager would keep the alert active until that timeout.
- The outbox promises one notification per state change across a killed evaluator: a
  recomputed change is ignored (its key is already there), an undelivered one is sent by
  the next process.

The samples are produced by the test (a measurement of its own), so what the evaluator sees
and when is known exactly; no LXD is needed.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from devlake.alerts.runner import read_state, state_dir
from devtower.services import manager
from overcloud.bus import events_topic, make_consumer, make_producer, metrics_topic
from overcloud.events import AlertFiring, AlertResolved, Event
from overcloud.samples import Layer, Sample
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import decode_event, encode_samples
from tests.conftest import Env
from tests.helpers import Background, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RULE = "notify-test"


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records every POST, and can refuse them (503)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any, bool]] = []
        """(path, headers, JSON body, accepted) of every POST, in arrival order."""
        self.refuse = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                accepted = not receiver.refuse.is_set()
                receiver.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                       orjson.loads(body), accepted))
                self.send_response(200 if accepted else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def accepted(self, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(h, b) for p, h, b, ok in list(self.posts) if p == path and ok]

    def refused(self, path: str) -> list[Any]:
        return [b for p, _, b, ok in list(self.posts) if p == path and not ok]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def _env(env: Env, tmp_path: Path, receiver: Receiver, **extra: str) -> Env:
    """The session's broker and InfluxDB; evaluator state, group and Alertmanager of our own."""
    tag = uuid.uuid4().hex[:6]
    return Env(env, OVERCLOUD_STATE_DIR=str(tmp_path / "state"),
               OVERCLOUD_ALERTS_GROUP=f"nt{tag}", OVERCLOUD_ALERTS_TICK="0.2",
               OVERCLOUD_ALERTS_ALERTMANAGER_PORT=str(free_port()),
               OVERCLOUD_ALERTS_WEBHOOK_URL=f"{receiver.url}/am", **extra)


def _rules(tmp_path: Path, actions: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(f"""rules:
  - {{name: node-overloaded, enabled: false}}
  - name: {RULE}
    watch: {{measurement: ntest, field: v, group_by: [host]}}
    condition: ">"
    threshold: 85
    recover: 70
    severity: warning
    actions: {actions}
""")
    return path


def _evaluator(env: Env, rules: Path, log: Path) -> Background:
    proc = Background(["alerts", "run", "--rules", str(rules)], env, log).start()
    # ready (banner) only once its group is joined: samples sent before would not be seen
    wait_until(lambda: "alerts: 1 rules" in proc.output() or not proc.alive(), timeout=90,
               what="the evaluator's ready banner")
    assert proc.alive(), proc.output()
    return proc


class Samples:
    """Sends one `ntest` sample of host h1 at a time; all to one partition (keyed by host)."""

    def __init__(self, s: Settings) -> None:
        self._producer = make_producer(s)
        self._topic = metrics_topic(s, Layer.RESOURCE)

    def send(self, value: float) -> tuple[TopicPartition, int, int]:
        """(partition, offset, sample time in ns) of the sample sent."""
        ts = time.time_ns()
        meta = self._producer.send(self._topic, key=b"h1", value=encode_samples(
            [Sample("ntest", {"host": "h1"}, {"v": value}, ts)])).get(timeout=10)
        return TopicPartition(meta.topic, meta.partition), meta.offset, ts

    def close(self) -> None:
        self._producer.close()


def _parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_alertmanager_resend_while_firing_and_ends_at_on_resolve(
        env: Env, receiver: Receiver, tmp_path: Path) -> None:
    env = _env(env, tmp_path, receiver, OVERCLOUD_ALERTS_RESEND="1")
    s = env.settings()
    rules = _rules(tmp_path, "[{type: alertmanager}]")
    am = s.alerts.alertmanager_base
    manager.up(s, ["alertmanager"])
    samples = Samples(s)
    evaluator: Background | None = None

    def active() -> list[dict[str, Any]]:
        r = httpx.get(f"{am}/api/v2/alerts", params={"filter": f'alertname="{RULE}"'},
                      timeout=5)
        return [a for a in r.json() if a["status"]["state"] == "active"]

    try:
        evaluator = _evaluator(env, rules, tmp_path / "alerts.log")
        _, _, fired_ns = samples.send(95.0)
        (first,) = wait_until(active, timeout=30, what="the alert active in Alertmanager")
        assert first["labels"]["host"] == "h1" and first["labels"]["severity"] == "warning"
        assert abs(_parse(first["startsAt"]) - fired_ns / 1e9) < 0.002

        # no new sample: the runner alone keeps it fresh, once a second (alerts.resend)
        updates = {first["updatedAt"]}
        ends = [_parse(first["endsAt"])]

        def resent() -> bool:
            (a,) = active()
            assert a["fingerprint"] == first["fingerprint"] and a["startsAt"] == first["startsAt"]
            if a["updatedAt"] not in updates:
                updates.add(a["updatedAt"])
                ends.append(_parse(a["endsAt"]))
            return len(updates) >= 4

        wait_until(resent, timeout=20, interval=0.2, what="three re-sends of the firing alert")
        assert ends == sorted(ends) and ends[-1] > ends[0], ends  # each re-send moves endsAt on
        (am_firing,) = wait_until(lambda: receiver.accepted("/am"), timeout=30,
                                  what="Alertmanager's notification of the firing alert")
        assert am_firing[1]["status"] == "firing"

        # back below the recovery threshold: the resolve carries endsAt = the resolving sample
        _, _, resolved_ns = samples.send(40.0)
        wait_until(lambda: not active(), timeout=15, what="the alert resolved in Alertmanager")
        notes = wait_until(lambda: len(n := receiver.accepted("/am")) >= 2 and n, timeout=40,
                           what="Alertmanager's notification of the resolved alert")
        resolved = notes[1][1]
        assert resolved["status"] == "resolved", resolved
        (alert,) = resolved["alerts"]
        assert alert["labels"]["host"] == "h1"
        assert abs(_parse(alert["endsAt"]) - resolved_ns / 1e9) < 0.002, alert["endsAt"]
        # ten re-send periods later (Alertmanager's group interval): nothing re-opened it
        assert not active()
        assert len(receiver.accepted("/am")) == 2
        assert evaluator.alive(), evaluator.output()
    finally:
        if evaluator is not None:
            evaluator.stop()
        samples.close()
        manager.down(s, ["alertmanager"])


class Events:
    def __init__(self, s: Settings) -> None:
        self.consumer = make_consumer(s, [events_topic(s)], f"ev{uuid.uuid4().hex[:6]}")
        self.seen: list[Event] = []

    def of(self, cls: type[Event]) -> list[Any]:
        for msgs in self.consumer.poll(timeout_ms=200).values():
            self.seen += [decode_event(m.value) for m in msgs]
        return [e for e in self.seen if isinstance(e, cls)]


def _committed(s: Settings, tp: TopicPartition) -> int:
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap, group_id=s.alerts.group,
                      enable_auto_commit=False)
    try:
        return c.committed(tp) or 0
    finally:
        c.close()


def _rewind(s: Settings, tp: TopicPartition, offset: int) -> None:
    """Commit `offset` for the evaluator's group, as a member of it: the group admits us
    once the killed member's session has expired, then we commit and leave."""
    c = make_consumer(s, [tp.topic], s.alerts.group)
    try:
        wait_until(lambda: c.poll(timeout_ms=200) is not None and tp in c.assignment(),
                   timeout=60, what="the evaluator's partition assigned to the test")
        c.commit({tp: OffsetAndMetadata(offset, "", -1)})
        assert c.committed(tp) == offset
    finally:
        c.close(autocommit=False)


def _webhook_rows(s: Settings, channel: str = "webhook") -> list[tuple[str, bool]]:
    with sqlite3.connect(state_dir(s) / "outbox.db") as db:
        return [(str(k), d is not None) for k, d in db.execute(
            "SELECT key, done FROM deliveries WHERE channel = ? ORDER BY rowid", (channel,))]


def _events_sent(s: Settings, n: int) -> bool:
    """The events channel is at-least-once towards Kafka (a kill between the send and the
    row's `done` sends again, with the same event id for consumers to drop): a test that
    counts events on the topic kills the evaluator only once its rows are marked sent."""
    rows = _webhook_rows(s, "events")
    return len(rows) == n and all(done for _, done in rows)


def test_each_change_is_notified_once_across_a_killed_evaluator(
        env: Env, receiver: Receiver, tmp_path: Path) -> None:
    """Two crashes, placed where they test something:

    1. SIGKILL after the firing change is in the outbox but before the state file and the
       offsets caught up (the test puts back the state file and the committed offset from
       before the firing sample, which is what such a crash leaves): the next evaluator
       re-reads the sample and computes the same change again; the outbox must ignore it.
    2. SIGKILL while the receiver refuses the resolved notification: the next evaluator must
       deliver it, once.
    """
    env = _env(env, tmp_path, receiver)
    s = env.settings()
    rules = _rules(tmp_path, f'[{{type: webhook, url: "{receiver.url}/hook"}}]')
    samples = Samples(s)
    events = Events(s)
    procs: list[Background] = []
    try:
        procs.append(_evaluator(env, rules, tmp_path / "alerts-1.log"))
        tp, off, _ = samples.send(10.0)  # below the threshold: no change
        wait_until(lambda: _committed(s, tp) > off, timeout=30, interval=0.2,
                   what="the evaluator to commit the first sample")
        before_state = tmp_path / "state-before.json"
        shutil.copyfile(state_dir(s) / "state.json", before_state)
        before_offset = off + 1

        tp, off, fired_ns = samples.send(95.0)
        (firing,) = wait_until(lambda: receiver.accepted("/hook"), timeout=30,
                               what="the firing notification")
        wait_until(lambda: _webhook_rows(s) and all(done for _, done in _webhook_rows(s)),
                   timeout=10, what="its outbox row marked delivered")
        wait_until(lambda: _committed(s, tp) > off, timeout=30, interval=0.2,
                   what="the evaluator to commit the firing sample")
        wait_until(lambda: _events_sent(s, 1), timeout=30, what="AlertFiring marked sent")

        # crash 1: the change is in the outbox, state and offsets are from before the sample
        procs[-1].kill()
        shutil.copyfile(before_state, state_dir(s) / "state.json")
        _rewind(s, tp, before_offset)
        procs.append(_evaluator(env, rules, tmp_path / "alerts-2.log"))

        def refired() -> bool:
            groups = (read_state(s) or {}).get("groups") or []
            return any(g.get("status") == "firing" and g.get("since_ns") == fired_ns
                       for g in groups)

        # the replay happened: the restored state knew nothing of it, the new process
        # computed the same firing change from the re-read sample
        wait_until(refired, timeout=30, interval=0.2, what="the firing change recomputed")

        # crash 2: the receiver refuses the resolved notification, the evaluator is killed
        receiver.refuse.set()
        tp, off, resolved_ns = samples.send(40.0)
        wait_until(lambda: receiver.refused("/hook"), timeout=30,
                   what="a refused attempt at the resolved notification")
        wait_until(lambda: _committed(s, tp) > off, timeout=30, interval=0.2,
                   what="the evaluator to commit the resolving sample")
        wait_until(lambda: _events_sent(s, 2), timeout=30, what="AlertResolved marked sent")
        procs[-1].kill()
        receiver.refuse.clear()
        procs.append(_evaluator(env, rules, tmp_path / "alerts-3.log"))
        hooks = wait_until(lambda: len(h := receiver.accepted("/hook")) >= 2 and h, timeout=30,
                           what="the resolved notification from the third evaluator")

        # each change reached the receiver exactly once, firing first
        assert [(b["status"], b["startsAt"]) for _, b in hooks] == [
            ("firing", firing[1]["startsAt"]), ("resolved", firing[1]["startsAt"])], hooks
        keys = [h["idempotency-key"] for h, _ in hooks]
        assert len(set(keys)) == 2, keys
        assert abs(_parse(hooks[1][1]["at"]) - resolved_ns / 1e9) < 0.002
        assert all(b["key"] == k.split("/")[0] for k, (_, b) in zip(keys, hooks, strict=True))
        wait_until(lambda: all(done for _, done in _webhook_rows(s)), timeout=10,
                   what="every outbox row delivered")
        assert len(_webhook_rows(s)) == 2
        # and on the events topic, one of each
        wait_until(lambda: events.of(AlertResolved), timeout=30, what="AlertResolved")
        assert len(events.of(AlertFiring)) == 1 and len(events.of(AlertResolved)) == 1
        assert procs[-1].stop() == 0, procs[-1].output()
        assert len(receiver.accepted("/hook")) == 2
    finally:
        for p in procs:
            p.stop()
        events.consumer.close()
        samples.close()
