"""The orchestrator process: consume `overcloud.events`, turn requests into workflows.

A request event becomes a persisted workflow whose id is the event id, so the same event
delivered twice (a redelivery after a crash, a producer retry) finds its workflow instead of
starting a second one. The offset is committed once the workflow is *recorded*; running it
is the engine's job, and `resume_all` at start-up continues whatever a killed process left.
Malformed events are dead-lettered with the reason; the loop never dies on input.

Events can also come back on purpose: the broker (tansu) forgets its log when it restarts,
so every process that publishes events journals them and publishes the journal again when
the log is gone (`overcloud/replay.py`). This process watches the journal of its state
directory (an event acknowledged just before a crash, by a CLI that has exited since, still
arrives), and skips every event id its inbox (`orchestrator/inbox.py`) has seen handled.
A handler that meets a broker or host that is away (`TemporaryError`) is retried from the
same offset a second later instead of ending the process; a commit the broker refuses
(after it restarted, the group is new) is logged — the events are read again and skipped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from orchestrator.handlers import Handlers
from orchestrator.inbox import Inbox
from orchestrator.migration import Move
from orchestrator.provision import Context, delete_spec, provision_spec
from orchestrator.request import OverCloudRequest, RequestInvalid
from orchestrator.schedule import CHECK_EVERY
from orchestrator.store import WorkflowStore
from orchestrator.workflow import Engine, WorkflowState
from overcloud.bus import KafkaEventBus, poll
from overcloud.errors import DecodeError, PermanentError, TemporaryError
from overcloud.events import (
    BackupRequested,
    Event,
    MigrationFinished,
    MigrationRequested,
    NodeOverloaded,
    OverCloudDeleteRequested,
    OverCloudFailed,
    OverCloudRequested,
    OverCloudUpdateRequested,
    PauseRequested,
    RestoreRequested,
    ResumeRequested,
)
from overcloud.replay import EventJournal
from overcloud.wire import decode_event, describe

log = logging.getLogger(__name__)


class Orchestrator:
    def __init__(self, ctx: Context, engine: Engine, store: WorkflowStore,
                 deadletters: Any, inbox: Inbox | None = None) -> None:
        self.ctx = ctx
        self.engine = engine
        self.store = store
        self._dead = deadletters
        self.inbox = inbox or Inbox(ctx.settings.state_dir / "orchestrator" / "inbox.sqlite")
        self.handlers = Handlers()
        self._threads: list[threading.Thread] = []
        self.handlers.on(OverCloudRequested)(self.on_requested)
        self.handlers.on(OverCloudDeleteRequested)(self.on_delete)
        self.handlers.on(NodeOverloaded)(self.on_overloaded)
        self.handlers.on(MigrationRequested)(self.on_migration_requested)
        self.handlers.on(OverCloudUpdateRequested)(self.on_update_requested)
        self.handlers.on(BackupRequested)(self.on_backup_requested)
        self.handlers.on(RestoreRequested)(self.on_restore_requested)
        self.handlers.on(PauseRequested)(self.on_pause_requested)
        self.handlers.on(ResumeRequested)(self.on_resume_requested)

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

    def on_update_requested(self, event: OverCloudUpdateRequested) -> None:
        """Plan the update again against what the registry says now (the document was
        checked against an earlier state) and run it; a refusal is a workflow that fails
        with the reason, so whoever follows the request sees why."""
        from orchestrator.update import plan_update, refusal_spec, unchanged_spec, update_spec

        if self.store.exists(event.id):
            log.info("update %s already handled", event.id)
            return
        rec = self.ctx.registry.get(event.name)
        try:
            request = OverCloudRequest.from_spec(event.spec)
            refusal = self._busy(event.name, again="apply again")
            if refusal is None:
                assert rec is not None
                plan = plan_update(rec, request)
                if plan.refused:
                    refusal = "; ".join(f"{path}: {why}" for path, why in plan.refused)
        except RequestInvalid as exc:
            refusal = "; ".join(exc.lines())
        if refusal is not None:
            log.warning("update %s of %s refused: %s", event.id, event.name, refusal)
            self.store.create(refusal_spec(event.name, refusal), {"name": event.name},
                              workflow_id=event.id)
        elif plan.empty:
            log.info("update %s of %s: nothing to change", event.id, event.name)
            self.store.create(unchanged_spec(event.name), {"name": event.name},
                              workflow_id=event.id)
        else:
            assert rec is not None
            log.info("update %s of %s: %s", event.id, event.name, "; ".join(plan.lines()))
            self.store.create(update_spec(plan, sorted(n.node for n in rec.nodes)),
                              {"name": event.name, "spec": request.to_spec(),
                               "changes": plan.lines()}, workflow_id=event.id)
        self._start(event.id)

    def _busy(self, name: str, again: str = "try again",
              states: tuple[str, ...] = ("ready", "degraded")) -> str | None:
        """Why `name` cannot take an update, backup, restore or pause now (None: it can);
        `states`: the states it must be in (a resume wants it paused)."""
        rec = self.ctx.registry.get(name)
        if rec is None:
            return f"no OverCloud named {name!r}"
        if rec.state not in states:
            if rec.state == "paused":
                return f"{name} is paused; resume it first (overcloud resume {name})"
            return f"{name} is {rec.state}; {again} once it is {' or '.join(states)}"
        running = [wf for wf in self.store.list(subject=name) if not wf.state.finished]
        if running:
            return (f"{name} is busy ({running[0].spec.kind} workflow {running[0].id} is "
                    f"running); {again} when it has finished")
        return None

    def on_backup_requested(self, event: BackupRequested) -> None:
        from orchestrator.backup import backup_spec, new_id, refused_spec

        if self.store.exists(event.id):
            log.info("backup %s already handled", event.id)
            return
        why = self._busy(event.name)
        if why is None and not 1 <= event.keep <= 1000:
            why = f"keep must be 1..1000 backups, got {event.keep}"
        if why is not None:
            spec = refused_spec("backup", event.name, why)
        else:
            spec = backup_spec(event.name, new_id(event.id, event.time.timestamp()), event.keep)
        self.store.create(spec, {"name": event.name}, workflow_id=event.id)
        self._start(event.id)

    def on_restore_requested(self, event: RestoreRequested) -> None:
        from orchestrator.backup import find_backup, refused_spec, restore_spec

        if self.store.exists(event.id):
            log.info("restore %s already handled", event.id)
            return
        why = self._busy(event.name)
        source = event.source if event.source != event.name else ""
        if why is None:
            try:
                of = self.ctx.registry.get(source or event.name)
                if of is None:
                    raise PermanentError(f"no OverCloud named {source!r} to restore a backup of")
                rec = self.ctx.registry.get(event.name)
                if source and rec is not None and of.owner != rec.owner:
                    raise PermanentError(f"{source} and {event.name} have different owners")
                find_backup(self.ctx.settings, source or event.name, event.backup,
                            of.request_id)
            except PermanentError as exc:
                why = str(exc)
        spec = refused_spec("restore", event.name, why) if why is not None \
            else restore_spec(event.name, event.backup, source)
        self.store.create(spec, {"name": event.name}, workflow_id=event.id)
        self._start(event.id)

    def on_pause_requested(self, event: PauseRequested) -> None:
        from orchestrator.backup import refused_spec
        from orchestrator.pause import pause_spec

        if self.store.exists(event.id):
            log.info("pause %s already handled", event.id)
            return
        why = self._busy(event.name)
        spec = refused_spec("pause", event.name, why) if why is not None \
            else pause_spec(event.name)
        self.store.create(spec, {"name": event.name}, workflow_id=event.id)
        self._start(event.id)

    def on_resume_requested(self, event: ResumeRequested) -> None:
        """Decide where each node starts (its host if it still has room), then run it."""
        from orchestrator.backup import refused_spec
        from orchestrator.pause import resume_moves, resume_spec

        if self.store.exists(event.id):
            log.info("resume %s already handled", event.id)
            return
        rec = self.ctx.registry.get(event.name)
        why = self._busy(event.name, states=("paused", "degraded"))
        moves: list[Move] = []
        if why is None and rec is not None:
            try:
                moves = resume_moves(self.ctx, rec)
            except PermanentError as exc:
                why = str(exc)
        if why is not None or rec is None:
            self.store.create(refused_spec("resume", event.name, why or "?"),
                              {"name": event.name}, workflow_id=event.id)
        else:
            self.ctx.registry.set_state(event.name, "resuming", error="")
            self.store.create(resume_spec(rec, moves),
                              {"name": event.name, "spec": rec.spec,
                               "moves": [m.to_dict() for m in moves]}, workflow_id=event.id)
        self._start(event.id)

    def schedule_backups(self, now: float | None = None) -> list[str]:
        """Ask for every scheduled backup that is due (orchestrator/schedule.py); returns the
        OverClouds asked for."""
        from orchestrator.backup import list_backups
        from orchestrator.schedule import due_backups

        now = time.time() if now is None else now
        reg = self.ctx.registry

        def newest(rec: Any) -> float:
            found = list_backups(self.ctx.settings, rec.name, rec.request_id)
            return max((b.time for b in found), default=0.0)

        def key(name: str) -> str:
            rec = reg.get(name)
            return f"backup-asked:{name}:{rec.request_id if rec else ''}"

        asked = []
        for due in due_backups(reg.all(), newest, lambda n: reg.last(key(n)), now):
            if self._busy(due.name) is not None:
                continue  # a workflow runs: the next look asks again
            reg.mark(key(due.name), now)
            self.ctx.bus.publish(BackupRequested(name=due.name, keep=due.keep), key=due.name)
            log.info("scheduled backup of %s asked for (keep %d)", due.name, due.keep)
            asked.append(due.name)
        return asked

    # --- migration ------------------------------------------------------------------------

    def on_overloaded(self, event: NodeOverloaded) -> None:
        """Relieve an overloaded host: measure our nodes there, plan the fewest moves that
        bring it under the rule's recovery threshold, run them. At most once per cool-down
        per host, however often the alert flaps."""
        from orchestrator.inventory import latest_undercloud
        from orchestrator.migration import node_loads, placement_chooser, relief_fits, relief_moves

        s, host = self.ctx.settings, event.host
        if host not in self.ctx.hosts:
            log.info("overloaded host %s is not one of ours: nothing to move", host)
            return
        if self.store.exists(event.id):
            log.info("overload %s already handled", event.id)
            return
        last = self.ctx.registry.last(f"relief:{host}")
        cooldown = s.undercloud.migration_cooldown
        if last is not None and time.time() - last < cooldown:
            log.info("%s overloaded again within its %gs cool-down: no migration", host, cooldown)
            return
        self.ctx.registry.mark(f"relief:{host}")
        loads, other = node_loads(self.ctx, host)
        recover = event.recovery or s.undercloud.relief_below
        latest = latest_undercloud(s)
        capacity = latest[host][1] if host in latest else _capacity(self.ctx, host)
        fits = relief_fits(latest, event.threshold or 100.0)
        moves = relief_moves(loads, capacity, recover, placement_chooser(self.ctx, fits=fits),
                             other)
        if not moves:
            log.info("%s overloaded (%.0f%%) but no node of ours can help by moving", host,
                     event.value)
            return
        self._migrate(moves, f"{event.rule}: {host} at {event.value:.0f}%", host, event.id)

    def on_migration_requested(self, event: MigrationRequested) -> None:
        from orchestrator.migration import manual_moves, verdict_spec

        if self.store.exists(event.id):
            log.info("migration request %s already handled", event.id)
            return
        subject = event.overcloud or event.source
        try:
            moves = manual_moves(self.ctx, event)
        except (PermanentError, ValueError) as exc:
            log.warning("migration request %s refused: %s", event.id, exc)
            self.ctx.bus.publish(MigrationFinished(
                overcloud=event.overcloud, node=event.node, source=event.source,
                target=event.target or event.site, downtime_s=0.0, ok=False, reason=str(exc)),
                key=subject)
            spec = verdict_spec(subject, str(exc), refused=True)
        else:
            if moves:
                self._migrate(moves, event.reason, subject, event.id)
                return
            spec = verdict_spec(subject, "nothing to move: every node is where asked",
                                refused=False)
        self.store.create(spec, {"moves": []}, workflow_id=event.id)
        self._start(event.id)

    def _migrate(self, moves: list[Move], reason: str, subject: str, wid: str) -> None:
        from orchestrator.migration import migrate_spec

        self.store.create(migrate_spec(moves, reason, subject),
                          {"moves": [m.to_dict() for m in moves], "reason": reason},
                          workflow_id=wid)
        log.info("migration %s (%s): %s", wid, reason,
                 ", ".join(f"{m.node} {m.source}→{m.target}" for m in moves))
        self._start(wid)

    def handle(self, event: Event) -> bool:
        """Dispatch `event` unless its id was handled before; False: retry it later."""
        if self.inbox.done(event.id):
            log.info("%s %s: already handled, skipped", event.TYPE, event.id)
            return True
        starts = self.inbox.begin(event.id, event.TYPE)
        if starts > 1:
            log.warning("%s %s: handling again (a previous run stopped half-way)", event.TYPE,
                        event.id)
        try:
            self.handlers.dispatch(event)
        except TemporaryError as exc:
            self.inbox.retry(event.id)
            log.warning("%s %s: %s; retrying", event.TYPE, event.id, exc)
            return False
        self.inbox.finish(event.id)
        return True

    def run(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        for state in (WorkflowState.RUNNING, WorkflowState.PENDING):
            for wf in self.store.list(state=state):
                log.info("resuming %s workflow %s of %s", wf.spec.kind, wf.id, wf.spec.subject)
                self._start(wf.id)
        journal = None
        if isinstance(self.ctx.bus, KafkaEventBus):
            # first check at once: the broker may have lost the log while we were away
            self.ctx.bus.watch(stop)
            journal = self.ctx.bus.journal
        replays = _replays(journal)
        checked = scheduled = time.monotonic()
        while not stop.is_set():
            if journal is not None and time.monotonic() - checked >= 0.5:
                checked = time.monotonic()
                replays = _rewind_after_replay(consumer, journal, replays)
            if time.monotonic() - scheduled >= CHECK_EVERY:
                scheduled = time.monotonic()
                try:
                    self.schedule_backups()
                except (TemporaryError, sqlite3.Error, OSError) as exc:
                    log.warning("scheduled backups not checked this time: %s", exc)
            records = poll(consumer, timeout_ms=200, max_records=100)
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            retry = False
            for tp, messages in records.items():
                for msg in messages:
                    try:
                        event = decode_event(msg.value)
                    except DecodeError as exc:
                        log.warning("dead-lettering %s: %s", describe(msg.value, 80), exc)
                        self._dead.send(str(exc), msg)
                    else:
                        if not self.handle(event):
                            consumer.seek(tp, msg.offset)  # this one again, after a pause
                            retry = True
                            break
                    offsets[tp] = OffsetAndMetadata(msg.offset + 1, "", -1)
            if offsets:
                self._dead.flush()
                try:
                    consumer.commit(offsets)
                except KafkaError as exc:
                    # a broker that restarted does not know our group any more: the events
                    # come again and the inbox skips them
                    log.warning("commit refused (%s); handled events will be skipped when "
                                "they come again", exc)
            if retry:
                stop.wait(1.0)


def _rewind_after_replay(consumer: KafkaConsumer, journal: EventJournal, seen: int) -> int:
    """After a replay of the journal (by any process), read the events topic from its start;
    returns the replay count now.

    The broker lost its log, so the replayed events sit at offsets from 0 of a new one, and
    a consumer can keep its old position across the rebalance (kafka-python keeps a
    partition's position when the same partition is assigned again and there is no
    committed offset to fetch). When the new log has grown to that position by the next
    fetch, no fetch is out of range and the replayed events are passed over without a word.
    A guard against what a fresh-machine CI run showed (after a second broker kill the
    orchestrator never read the replayed request, and logged nothing) — inferred from that
    log, not reproduced here. The inbox skips the events already handled."""
    now = _replays(journal)
    if now != seen:
        for tp in consumer.assignment():
            consumer.seek_to_beginning(tp)
        log.info("the event journal was replayed: reading the events topic from its start "
                 "(handled events are skipped)")
    return now


def _replays(journal: EventJournal | None) -> int:
    """How many replays the journal has seen (-1: unreadable just now)."""
    if journal is None:
        return 0
    try:
        return journal.counter("replays")
    except sqlite3.Error as exc:
        log.debug("the journal's replay counter is unreadable: %s", exc)
        return -1


def _capacity(ctx: Context, host: str) -> float:
    """CPU capacity of `host`: the inventory's override, else the settings' host size."""
    from orchestrator.inventory import Inventory, default_capacity

    inv = Inventory(ctx.settings)
    try:
        rec = next((h for h in inv.hosts() if h.name == host), None)
    finally:
        inv.close()
    return float(rec.cpus) if rec is not None and rec.cpus else default_capacity(ctx.settings)[0]
