"""Deliveries of alert state changes, exactly one per change and channel, with retries.

Why an outbox: a state change must reach the events topic, the webhook, Alertmanager and the
DevLake even if one of them is down, and must reach each of them *once* even when the
evaluator restarts or the broker redelivers samples. So the runner first records every
delivery in a SQLite table keyed by the transition's stable key plus the channel
(`INSERT OR IGNORE`: a recomputed transition adds nothing), and only then commits its Kafka
offsets. One worker thread per channel delivers that channel's rows in order, retrying with
capped exponential backoff, and marks them delivered; a slow webhook never delays
`NodeOverloaded`. Undelivered rows survive a restart and are sent then.

Channels and what they carry:
- `events`: `AlertFiring`/`AlertResolved`, and `NodeOverloaded`/`NodeRecovered` for rules
  with the `event: node_overloaded` action; the event id is derived from the key, so an
  event consumer can de-duplicate too.
- `webhook`: a JSON POST per change (`Idempotency-Key` header = the key), given up on after
  `max_attempts` (logged and recorded with the reason).
- `alertmanager`: Alertmanager v2 `POST /api/v2/alerts`; firing alerts are re-sent every
  `alerts.resend` seconds by the runner (Alertmanager expires alerts it stops hearing about),
  a resolve carries `endsAt`.
- `devlake`: the `alerts` measurement (tags rule, severity and the group's tags; fields
  `firing`, `value`) in the DevLake database of the group's OverCloud, or the UnderCloud's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from devlake.alerts.evaluator import Transition
from devlake.alerts.rules import AlertmanagerAction, EventAction, WebhookAction
from overcloud.errors import PermanentError, TemporaryError
from overcloud.events import AlertFiring, AlertResolved, Event, NodeOverloaded, NodeRecovered
from overcloud.lineprotocol import line
from overcloud.samples import FieldValue, Sample
from overcloud.settings import Settings
from overcloud.wire import encode_event

log = logging.getLogger(__name__)

CHANNELS = ("events", "webhook", "alertmanager", "devlake")
GROUP_TAGS = ("overcloud", "cluster", "node", "host", "service", "tier", "instance")
"""Group tags copied onto the `alerts` measurement (bounded tags of METRICS.md)."""


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def finite(v: float) -> float:
    """No-data alerts may have no value; the wire (JSON) has no NaN."""
    return v if math.isfinite(v) else 0.0


def _event_id(key: str, kind: str) -> str:
    return hashlib.sha256(f"{key}/{kind}".encode()).hexdigest()[:32]


def events_for(t: Transition) -> list[Event]:
    when = datetime.fromtimestamp(t.at_ns / 1e9, UTC)
    value = finite(t.value)
    out: list[Event] = []
    if t.state == "firing":
        out.append(AlertFiring(id=_event_id(t.key, "alert"), time=when, rule=t.rule.name,
                               severity=t.rule.severity, labels=t.labels, value=value,
                               summary=t.annotations().get("summary", "")))
    else:
        out.append(AlertResolved(id=_event_id(t.key, "alert"), time=when, rule=t.rule.name,
                                 labels=t.labels, value=value))
    # no data from a host is not a busy host: the orchestrator must not migrate on silence
    if any(isinstance(a, EventAction) for a in t.rule.actions) and t.reason != "no_data":
        g = t.group
        host, node, oc = g.get("host", ""), g.get("node", ""), g.get("overcloud", "")
        if t.state == "firing":
            out.append(NodeOverloaded(id=_event_id(t.key, "node"), time=when, host=host,
                                      rule=t.rule.name, value=value, threshold=t.rule.threshold,
                                      node=node, overcloud=oc,
                                      recovery=finite(t.rule.recover_at)))
        else:
            out.append(NodeRecovered(id=_event_id(t.key, "node"), time=when, host=host,
                                     rule=t.rule.name, value=value, node=node, overcloud=oc))
    return out


def webhook_body(t: Transition) -> dict[str, Any]:
    return {
        "key": t.key, "status": t.state, "rule": t.rule.name, "severity": t.rule.severity,
        "labels": t.labels, "annotations": t.annotations(), "value": finite(t.value),
        "threshold": t.rule.threshold, "recover": t.rule.recover_at, "reason": t.reason,
        "startsAt": iso(t.since_ns), "at": iso(t.at_ns),
    }


def alertmanager_alert(t: Transition, resolved_at_ns: int | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": t.labels, "annotations": t.annotations(), "startsAt": iso(t.since_ns),
        "generatorURL": f"overcloud://alerts/{t.rule.name}",
    }
    if resolved_at_ns is not None:
        alert["endsAt"] = iso(resolved_at_ns)
    return alert


def alerts_point(t: Transition, default_db: str, prefix: str) -> tuple[str, str]:
    """(database, line protocol) of the `alerts` measurement for one state change."""
    tags = {"rule": t.rule.name, "severity": t.rule.severity,
            **{k: v for k, v in t.group.items() if k in GROUP_TAGS and v}}
    fields: dict[str, FieldValue] = {"firing": t.state == "firing"}
    if math.isfinite(t.value):
        fields["value"] = float(t.value)
    overcloud = t.group.get("overcloud", "")
    db = f"{prefix}{overcloud}" if overcloud else default_db
    return db, line(Sample("alerts", tags, fields, t.at_ns))


class Outbox:
    """The SQLite table of deliveries; safe to use from the runner and the worker threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.wake = {c: threading.Event() for c in CHANNELS}
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, channel TEXT NOT NULL,"
                " target TEXT NOT NULL, body BLOB NOT NULL, created REAL NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, done REAL, error TEXT)")
            db.execute("CREATE INDEX IF NOT EXISTS open ON deliveries(channel, done)")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def add(self, transitions: Iterable[Transition], s: Settings) -> int:
        """Record every delivery of these transitions; returns how many rows were new."""
        rows: list[tuple[str, str, str, bytes]] = []
        for t in transitions:
            for ev in events_for(t):
                rows.append((f"{t.key}/event/{ev.TYPE}", "events", ev.TYPE, encode_event(ev)))
            for a in t.rule.actions:
                if isinstance(a, WebhookAction):
                    url = a.url or s.alerts.webhook_url
                    if url:
                        rows.append((f"{t.key}/webhook/{url}", "webhook", url,
                                     orjson.dumps(webhook_body(t))))
                elif isinstance(a, AlertmanagerAction):
                    ends = t.at_ns if t.state == "resolved" else None
                    rows.append((f"{t.key}/alertmanager", "alertmanager", "",
                                 orjson.dumps([alertmanager_alert(t, ends)])))
            db_name, point = alerts_point(t, s.influx.default_database, s.influx.database_prefix)
            rows.append((f"{t.key}/devlake", "devlake", db_name, point.encode()))
        if not rows:
            return 0
        with self._db() as db:
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO deliveries (key, channel, target, body, created)"
                           " VALUES (?, ?, ?, ?, ?)", [(*r, time.time()) for r in rows])
            db.execute("COMMIT")
            added = db.total_changes - before
        for c in {r[1] for r in rows}:
            self.wake[c].set()
        return int(added)

    def open(self, channel: str, limit: int = 100) -> list[tuple[str, str, bytes, int]]:
        with self._db() as db:
            return [(str(k), str(t), bytes(b), int(a)) for k, t, b, a in db.execute(
                "SELECT key, target, body, attempts FROM deliveries WHERE channel = ? AND done IS NULL"
                " ORDER BY rowid LIMIT ?", (channel, limit))]

    def finish(self, key: str, error: str | None = None) -> None:
        with self._db() as db:
            db.execute("UPDATE deliveries SET done = ?, error = ?, attempts = attempts + 1 WHERE key = ?",
                       (time.time(), error, key))

    def failed_attempt(self, key: str, error: str) -> None:
        with self._db() as db:
            db.execute("UPDATE deliveries SET attempts = attempts + 1, error = ? WHERE key = ?",
                       (error, key))

    def counts(self) -> dict[str, dict[str, int]]:
        """channel → {delivered, pending, failed} (failed = given up, with an error)."""
        out: dict[str, dict[str, int]] = {c: {"delivered": 0, "pending": 0, "failed": 0} for c in CHANNELS}
        with self._db() as db:
            for channel, done, error, n in db.execute(
                    "SELECT channel, done IS NOT NULL, error IS NOT NULL, count(*) FROM deliveries"
                    " GROUP BY 1, 2, 3"):
                kind = "pending" if not done else ("failed" if error else "delivered")
                out.setdefault(channel, {"delivered": 0, "pending": 0, "failed": 0})[kind] += n
        return out


class Sender(Protocol):
    def __call__(self, target: str, body: bytes) -> None:
        """Deliver one row; raise TemporaryError to retry later, PermanentError to give up."""
        ...


def http_post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        r = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as exc:
        raise TemporaryError(f"POST {url}: {exc}") from None
    if r.status_code >= 500 or r.status_code in (408, 429):
        raise TemporaryError(f"POST {url}: {r.status_code} {r.text[:200]}")
    if r.status_code >= 400:
        raise PermanentError(f"POST {url}: {r.status_code} {r.text[:200]}")


class Worker(threading.Thread):
    """Delivers one channel's open rows in order, with capped exponential backoff."""

    def __init__(self, outbox: Outbox, channel: str, send: Callable[[str, str, bytes], None],
                 stop: threading.Event, max_attempts: int = 0, max_backoff: float = 10.0) -> None:
        super().__init__(name=f"alerts-{channel}", daemon=True)
        self.outbox, self.channel, self.send = outbox, channel, send
        self.stop, self.max_attempts, self.max_backoff = stop, max_attempts, max_backoff
        self.delivered = 0

    def run(self) -> None:
        wake = self.outbox.wake[self.channel]
        delay = 0.25
        while not self.stop.is_set():
            wake.clear()
            rows = self.outbox.open(self.channel)
            blocked = False
            for key, target, body, attempts in rows:
                try:
                    self.send(key, target, body)
                except TemporaryError as exc:
                    if self.max_attempts and attempts + 1 >= self.max_attempts:
                        log.error("%s: giving up on %s after %d attempts: %s", self.channel, key,
                                  attempts + 1, exc)
                        self.outbox.finish(key, f"gave up: {exc}")
                        continue
                    self.outbox.failed_attempt(key, str(exc))
                    if delay >= 1:
                        log.warning("%s: delivery failed, retrying in %.1fs: %s", self.channel, delay, exc)
                    blocked = True
                    break  # keep the order: retry this row first
                except PermanentError as exc:
                    log.error("%s: %s rejected: %s", self.channel, key, exc)
                    self.outbox.finish(key, str(exc))
                    continue
                self.outbox.finish(key)
                self.delivered += 1
            if blocked:
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, self.max_backoff)
            else:
                delay = 0.25
                wake.wait(1.0)
