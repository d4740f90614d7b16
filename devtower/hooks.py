"""Webhooks of each OverCloud (`devtower.notify`): signed, de-duplicated, retried, isolated.

Every change worth telling a developer (lifecycle, migrations, alerts) becomes one delivery
row per webhook URL, keyed by `<event id>/<url>`: `INSERT OR IGNORE`, so an event read twice
(a redelivery, a DevTower restart before its offset was committed, a broker that lost its
log and is re-read) is still delivered once. One worker thread per URL sends that URL's rows
in order with capped exponential backoff: a slow or failing endpoint only delays itself.

Each OverCloud has its own signing secret (shown to its owner once, when the API admits the
request, or when they rotate it). A body is signed at send time: the header
`X-OverCloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, so a
receiver can reject old replays (`verify`, and docs/WEBHOOKS.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-OverCloud-Signature"
NOTIFIED = frozenset({
    "OverCloudRequested", "OverCloudReady", "OverCloudFailed", "OverCloudUpdated",
    "OverCloudDeleted", "OverCloudPaused", "OverCloudResumed", "MigrationStarted",
    "MigrationFinished", "AlertFiring", "AlertResolved",
})
"""Event types an OverCloud's webhooks receive."""


def sign(secret: str, body: bytes, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance: float = 300.0) -> bool:
    """What a receiver does: parse the header, recompute, compare in constant time, and
    refuse signatures older (or newer) than `tolerance` seconds."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        at = int(parts["t"])
        mac = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, at), f"t={at},v1={mac}")


@dataclass(frozen=True)
class Delivery:
    key: str
    overcloud: str
    url: str
    event: str
    state: str
    attempts: int
    status: int | None
    error: str
    created: float
    finished: float | None


class HookStore:
    """Secrets, webhook URLs and deliveries (SQLite, 0600, shared by the DevTower threads)."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._now = now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS endpoints (
              overcloud TEXT PRIMARY KEY, secret TEXT NOT NULL, urls TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS deliveries (
              key TEXT PRIMARY KEY, overcloud TEXT NOT NULL, url TEXT NOT NULL,
              event TEXT NOT NULL, body BLOB NOT NULL, secret TEXT NOT NULL,
              state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
              next_at REAL NOT NULL, status INTEGER, error TEXT NOT NULL DEFAULT '',
              created REAL NOT NULL, finished REAL);
            CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (url, state, created);
            CREATE INDEX IF NOT EXISTS deliveries_by_overcloud ON deliveries (overcloud, created);
            """
        )
        path.chmod(0o600)

    # --- endpoints ------------------------------------------------------------------------

    def register(self, overcloud: str, urls: Iterable[str]) -> str | None:
        """Record the OverCloud's webhook URLs; returns a new secret when it had none."""
        urls_json = orjson.dumps(sorted(set(urls))).decode()
        with self._lock:
            row = self._db.execute("SELECT secret FROM endpoints WHERE overcloud = ?",
                                   (overcloud,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE endpoints SET urls = ? WHERE overcloud = ?",
                                 (urls_json, overcloud))
                return None
            secret = secrets.token_urlsafe(32)
            self._db.execute("INSERT INTO endpoints (overcloud, secret, urls) VALUES (?, ?, ?)",
                             (overcloud, secret, urls_json))
            return secret

    def rotate(self, overcloud: str) -> str | None:
        """A new secret for an OverCloud that has endpoints (None: unknown)."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            cur = self._db.execute("UPDATE endpoints SET secret = ? WHERE overcloud = ?",
                                   (secret, overcloud))
        return secret if cur.rowcount == 1 else None

    def forget(self, overcloud: str) -> None:
        """Drop the endpoint (its queued deliveries keep their own copy of the secret)."""
        with self._lock:
            self._db.execute("DELETE FROM endpoints WHERE overcloud = ?", (overcloud,))

    def urls(self, overcloud: str) -> list[str]:
        with self._lock:
            row = self._db.execute("SELECT urls FROM endpoints WHERE overcloud = ?",
                                   (overcloud,)).fetchone()
        return list(orjson.loads(row[0])) if row else []

    # --- deliveries -----------------------------------------------------------------------

    def enqueue(self, event_id: str, overcloud: str, event_type: str,
                body: dict[str, Any]) -> int:
        """One delivery per URL of the OverCloud; returns how many were new."""
        with self._lock:
            row = self._db.execute("SELECT secret, urls FROM endpoints WHERE overcloud = ?",
                                   (overcloud,)).fetchone()
            if row is None:
                return 0
            secret, urls = row[0], orjson.loads(row[1])
            raw = orjson.dumps(body)
            now = self._now()
            new = 0
            for url in urls:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (key, overcloud, url, event, body, secret,"
                    " next_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (f"{event_id}/{url}", overcloud, url, event_type, raw, secret, now, now))
                new += cur.rowcount
            return new

    def due(self, url: str, limit: int = 20) -> list[tuple[str, bytes, str, int, str]]:
        """(key, body, secret, attempts, event) of `url`'s pending deliveries that are due,
        oldest first; an earlier one still backing off holds the later ones (order)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, body, secret, attempts, event, next_at FROM deliveries"
                " WHERE url = ? AND state = 'pending' ORDER BY created, key LIMIT ?",
                (url, limit)).fetchall()
        now = self._now()
        out = []
        for key, body, secret, attempts, event, next_at in rows:
            if next_at > now:
                break
            out.append((key, bytes(body), secret, int(attempts), event))
        return out

    def pending_urls(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT DISTINCT url FROM deliveries WHERE state = 'pending'")]

    def delivered(self, key: str, status: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, status = ?,"
                " error = '', finished = ? WHERE key = ?", (status, self._now(), key))

    def failed_attempt(self, key: str, error: str, status: int | None, retry_in: float | None
                       ) -> None:
        """Record a failed attempt; `retry_in` None gives the delivery up."""
        now = self._now()
        with self._lock:
            if retry_in is None:
                self._db.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, status = ?,"
                    " error = ?, finished = ? WHERE key = ?", (status, error[:300], now, key))
            else:
                self._db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, status = ?, error = ?,"
                    " next_at = ? WHERE key = ?", (status, error[:300], now + retry_in, key))

    def deliveries(self, overcloud: str, limit: int = 50) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, overcloud, url, event, state, attempts, status, error, created,"
                " finished FROM deliveries WHERE overcloud = ? ORDER BY created DESC LIMIT ?",
                (overcloud, limit)).fetchall()
        return [Delivery(*r) for r in rows]

    def close(self) -> None:
        self._db.close()


class Dispatcher(threading.Thread):
    """Starts one `_UrlWorker` per URL that has pending deliveries; stops them on `stop`."""

    def __init__(self, store: HookStore, stop: threading.Event, *, timeout: float = 5.0,
                 max_attempts: int = 12, max_backoff: float = 300.0) -> None:
        super().__init__(name="hooks", daemon=True)
        self.store = store
        self.stop_event = stop
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self.poke = threading.Event()
        self._workers: dict[str, _UrlWorker] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            for url in self.store.pending_urls():
                w = self._workers.get(url)
                if w is None or not w.is_alive():
                    w = self._workers[url] = _UrlWorker(self, url)
                    w.start()
                w.poke.set()
            self.poke.wait(0.5)
            self.poke.clear()
        for w in self._workers.values():
            w.poke.set()
            w.join(timeout=self.timeout + 1)


class _UrlWorker(threading.Thread):
    def __init__(self, parent: Dispatcher, url: str) -> None:
        super().__init__(name=f"hook {url[:40]}", daemon=True)
        self.parent = parent
        self.url = url
        self.poke = threading.Event()

    def run(self) -> None:
        p = self.parent
        with httpx.Client(timeout=p.timeout, follow_redirects=False) as client:
            while not p.stop_event.is_set():
                batch = p.store.due(self.url)
                if not batch:
                    self.poke.wait(0.5)
                    self.poke.clear()
                    continue
                for key, body, secret, attempts, event in batch:
                    if p.stop_event.is_set():
                        return
                    if not self._send(client, key, body, secret, attempts, event):
                        break  # keep order: later ones wait for this one's retry

    def _send(self, client: httpx.Client, key: str, body: bytes, secret: str, attempts: int,
              event: str) -> bool:
        p = self.parent
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "overcloud-devtower",
            "X-OverCloud-Event": event,
            "X-OverCloud-Delivery": hashlib.sha256(key.encode()).hexdigest()[:32],
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }
        status: int | None = None
        try:
            resp = client.post(self.url, content=body, headers=headers)
            status = resp.status_code
            if 200 <= status < 300:
                p.store.delivered(key, status)
                return True
            error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        tries = attempts + 1
        retry = None if tries >= p.max_attempts else min(p.max_backoff, 0.5 * 2 ** (tries - 1))
        if retry is None:
            log.warning("webhook %s: giving up on %s after %d attempts (%s)",
                        self.url, event, tries, error)
        p.store.failed_attempt(key, error, status, retry)
        return False
