"""The two sources of the journal, each a loop step that a thread of the DevTower runs.

- `EventFeed`: the events topic (a consumer group of its own). Each event goes into the
  journal and, when it concerns an OverCloud with webhooks, into the delivery queue; the
  offset is committed only after both, so a crash re-reads rather than loses. Malformed
  messages are skipped here (the orchestrator dead-letters them; one record is enough).
- `TaskFeed`: the orchestrator's workflow history (its SQLite store), tailed by sequence.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from devtower.hooks import NOTIFIED, HookStore
from devtower.journal import Journal, overcloud_of
from orchestrator.store import WorkflowStore
from overcloud.errors import DecodeError
from overcloud.events import Event, OverCloudDeleted, OverCloudRequested, OverCloudUpdated
from overcloud.wire import decode_event

log = logging.getLogger(__name__)


def event_data(event: Event) -> dict[str, Any]:
    data = asdict(event)
    data.pop("time", None)
    data.pop("spec", None)  # a whole request document: too big for a feed, see GET /overclouds
    return data


def hook_body(event: Event, overcloud: str) -> dict[str, Any]:
    return {"overcloud": overcloud, "type": event.TYPE, "id": event.id,
            "time": event.time.isoformat(), "payload": event_data(event)}


class EventFeed:
    def __init__(self, consumer: KafkaConsumer, journal: Journal, hooks: HookStore) -> None:
        self._consumer = consumer
        self._journal = journal
        self._hooks = hooks
        self.events = 0

    def step(self, timeout_ms: int = 200) -> int:
        records = self._consumer.poll(timeout_ms=timeout_ms, max_records=500)
        offsets: dict[Any, OffsetAndMetadata] = {}
        n = 0
        for tp, messages in records.items():
            for msg in messages:
                offsets[tp] = OffsetAndMetadata(msg.offset + 1, "", -1)
                try:
                    event = decode_event(msg.value)
                except DecodeError as exc:
                    log.debug("skipping a malformed event at %s:%d: %s", tp, msg.offset, exc)
                    continue
                self.handle(event)
                n += 1
        if offsets:
            try:
                self._consumer.commit(offsets)
            except KafkaError as exc:  # re-read later; journal and queue are idempotent
                log.warning("devtower: commit failed, events will be re-read: %s", exc)
        self.events += n
        return n

    def handle(self, event: Event) -> None:
        oc = overcloud_of(event)
        if isinstance(event, OverCloudRequested | OverCloudUpdated):
            # an update's webhooks are registered before its own notification is queued, so
            # a URL it adds hears about the update that added it
            notify = (event.spec.get("devtower") or {}).get("notify") or []
            self._hooks.register(event.name, [str(u) for u in notify])
        self._journal.add(f"event:{event.id}", oc, "event", event.TYPE,
                          event.time.timestamp(), event_data(event))
        if oc and event.TYPE in NOTIFIED:
            self._hooks.enqueue(event.id, oc, event.TYPE, hook_body(event, oc))
        if isinstance(event, OverCloudDeleted):
            self._hooks.forget(event.name)


class TaskFeed:
    CURSOR = "workflow-history"

    def __init__(self, store: WorkflowStore, journal: Journal) -> None:
        self._store = store
        self._journal = journal
        self._seq = journal.cursor(self.CURSOR)

    def step(self) -> int:
        rows = self._store.history_after(self._seq)
        for h, kind, subject in rows:
            self._journal.add(
                f"task:{h.seq}", subject, "task", "task" if h.task else "workflow", h.time,
                {"workflow": h.workflow_id, "kind": kind, "task": h.task, "event": h.event,
                 "detail": h.detail})
            self._seq = h.seq
        if rows:
            self._journal.set_cursor(self.CURSOR, self._seq)
        return len(rows)
