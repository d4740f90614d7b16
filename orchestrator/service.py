"""The orchestrator process: consume `overcloud.events`, turn requests into workflows.

A request event becomes a persisted workflow whose id is the event id, so the same event
delivered twice (a redelivery after a crash, a producer retry) finds its workflow instead of
starting a second one. The offset is committed once the workflow is *recorded*; running it
is the engine's job, and `resume_all` at start-up continues whatever a killed process left.
Malformed events are dead-lettered with the reason; the loop never dies on input.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata

from orchestrator.handlers import Handlers
from orchestrator.provision import Context, delete_spec, provision_spec
from orchestrator.request import OverCloudRequest, RequestInvalid
from orchestrator.store import WorkflowStore
from orchestrator.workflow import Engine, WorkflowState
from overcloud.errors import DecodeError
from overcloud.events import OverCloudDeleteRequested, OverCloudFailed, OverCloudRequested
from overcloud.wire import decode_event, describe

log = logging.getLogger(__name__)


class Orchestrator:
    def __init__(self, ctx: Context, engine: Engine, store: WorkflowStore,
                 deadletters: Any) -> None:
        self.ctx = ctx
        self.engine = engine
        self.store = store
        self._dead = deadletters
        self.handlers = Handlers()
        self._threads: list[threading.Thread] = []
        self.handlers.on(OverCloudRequested)(self.on_requested)
        self.handlers.on(OverCloudDeleteRequested)(self.on_delete)

    def _start(self, workflow_id: str) -> None:
        t = threading.Thread(target=self.engine.run, args=(workflow_id,), daemon=True,
                             name=f"wf-{workflow_id[:8]}")
        t.start()
        self._threads.append(t)

    def on_requested(self, event: OverCloudRequested) -> None:
        try:
            request = OverCloudRequest.from_spec(event.spec)
        except RequestInvalid as exc:
            self.ctx.bus.publish(OverCloudFailed(name=event.name, task="admission",
                                                 reason="; ".join(exc.lines())), key=event.name)
            return
        if not self.ctx.registry.admit(request.name, request.owner, request.to_spec(), event.id):
            self.ctx.bus.publish(OverCloudFailed(
                name=event.name, task="admission",
                reason=f"an OverCloud named {event.name!r} already exists"), key=event.name)
            return
        wid = self.store.create(provision_spec(request),
                                {"name": request.name, "spec": request.to_spec()},
                                workflow_id=event.id)
        state = self.store.get(wid).state
        if state.finished:
            log.info("request %s already handled: workflow %s", event.id, state)
            return
        log.info("request %s: provisioning %s", event.id, request.name)
        self._start(wid)

    def on_delete(self, event: OverCloudDeleteRequested) -> None:
        rec = self.ctx.registry.get(event.name)
        if rec is None:
            log.info("delete of unknown OverCloud %s: nothing to do", event.name)
            return
        self.ctx.registry.set_state(event.name, "deleting")
        wid = self.store.create(delete_spec(event.name, event.keep_data),
                                       {"name": event.name}, workflow_id=event.id)
        self._start(wid)

    def run(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        for state in (WorkflowState.RUNNING, WorkflowState.PENDING):
            for wf in self.store.list(state=state):
                log.info("resuming %s workflow %s of %s", wf.spec.kind, wf.id, wf.spec.subject)
                self._start(wf.id)
        while not stop.is_set():
            records = consumer.poll(timeout_ms=200, max_records=100)
            offsets = {}
            for tp, messages in records.items():
                for msg in messages:
                    try:
                        event = decode_event(msg.value)
                    except DecodeError as exc:
                        log.warning("dead-lettering %s: %s", describe(msg.value, 80), exc)
                        self._dead.send(str(exc), msg)
                    else:
                        self.handlers.dispatch(event)
                    offsets[tp] = OffsetAndMetadata(msg.offset + 1, "", -1)
            if offsets:
                self._dead.flush()
                consumer.commit(offsets)
