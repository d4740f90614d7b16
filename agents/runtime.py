"""The agent: APScheduler runs collectors on an interval; samples are tagged and published.

One message per collector run (its samples batched), keyed by node so a node's samples stay
ordered in one partition. Every interval the agent also reports its own health as
`agent_spool` (queued, dropped, sent, replayed, skipped runs): a full spool is visible on
the dashboards.

A run only measures and appends to the spool; the publisher's own thread talks to the
broker. So a broker that is gone or slow never delays a measurement (it once did: the cycle
waited on the producer and APScheduler skipped the next runs, 5-6 s of samples lost per
broker restart). Runs start on multiples of the interval (like Telegraf's
`round_interval`): every `GROUP BY time(interval)` bucket gets one sample, not zero or two
when a run starts a little late.
"""

from __future__ import annotations

import fcntl
import logging
import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from agents.publisher import Publisher
from agents.spool import Spool
from collectors.base import Collector
from overcloud.bus import metrics_topic
from overcloud.errors import UserError
from overcloud.lineprotocol import encode_lines
from overcloud.samples import Layer, Sample, now_ns
from overcloud.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentIdentity:
    """Who the samples are about: tags added to every sample."""

    node: str
    host: str
    overcloud: str = ""
    cluster: str = ""

    def tags(self, layer: Layer) -> dict[str, str]:
        tags = {"node": self.node, "host": self.host, "layer": layer.value}
        if self.overcloud:
            tags["overcloud"] = self.overcloud
        if self.cluster:
            tags["cluster"] = self.cluster
        return tags


_held: list[IO[bytes]] = []
"""The spool locks this process holds (released when it exits)."""


def open_spool(settings: Settings, identity: AgentIdentity, layer: Layer, *more: Layer) -> Spool:
    """The agent's spool, keeping acknowledged batches for the configured replay window; this
    process its only user for as long as it runs.

    Exclusive because two agents on one spool (the same node's agent started twice) each saw
    the other's acknowledged offsets as "the broker's log went back", resent their whole
    history, and kept each other doing it several times a second: the broker grew past 10 GB
    of memory. A second agent of the same node and layers is refused at start instead."""
    path = spool_path(settings, identity, layer, *more)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UserError(f"another agent of {identity.node} ({'+'.join(x.value for x in (layer, *more))}) "
                        f"already runs on this machine: its spool {path} is in use") from None
    _held.append(lock)
    return Spool(path, settings.agent.spool_max_bytes,
                 history_bytes=settings.kafka.replay_max_bytes,
                 history_seconds=settings.kafka.replay_window)


def spool_path(settings: Settings, identity: AgentIdentity, layer: Layer, *more: Layer) -> Path:
    """One spool per agent process; an agent of several layers spools them all in one file
    (each message keeps its own topic), named after its layers."""
    scope = identity.overcloud or "_undercloud"
    layers = "+".join(x.value for x in (layer, *more))
    return settings.state_dir / "spool" / f"{scope}.{identity.node}.{layers}.sqlite"


class Agent:
    """Runs each collector on its own schedule and queues its samples for the publisher.

    One APScheduler job per collector, all on interval boundaries: a slow collector (an LXD
    API that takes a second on a busy host) only delays its own series, never the others.
    A run that cannot happen on time — the previous one of that collector still runs, or the
    scheduler woke too late and coalesced runs — is a *skipped run*: counted, logged, and
    published as an `agent_skipped` sample at the time it should have run, so an interval
    without a sample is always either reported by the agent or a loss downstream of it."""

    def __init__(
        self,
        settings: Settings,
        identity: AgentIdentity,
        collectors: Sequence[Collector],
        publisher: Publisher,
    ) -> None:
        self._settings = settings
        self.identity = identity
        self._collectors = list(collectors)
        self.publisher = publisher
        self.cycles = 0
        self.samples_published = 0
        self.runs_skipped = 0
        self._lock = threading.Lock()
        self._last_run: dict[str, datetime] = {}
        self._interval = 0.0

    @property
    def _first_layer(self) -> Layer:
        return self._collectors[0].layer if self._collectors else Layer.RESOURCE

    def collect(self, c: Collector) -> int:
        """One run of one collector: measure, tag, queue (never waits on the broker)."""
        try:
            samples = c.collect()
        except Exception:  # one broken collector must not stop the others
            log.exception("collector %s failed", c.name)
            return 0
        if not samples:
            return 0
        tags = self.identity.tags(c.layer)
        self._queue(c.layer, [s.with_tags(tags) for s in samples])
        with self._lock:
            self.samples_published += len(samples)
        return len(samples)

    def report(self) -> None:
        """Queue the agent's own health (`agent_spool`)."""
        self._queue(self._first_layer, [self._health_sample(self._first_layer)])

    def _queue(self, layer: Layer, samples: list[Sample]) -> None:
        self.publisher.publish(metrics_topic(self._settings, layer), self.identity.node,
                               encode_lines(samples), len(samples))

    def cycle(self) -> int:
        """Every collector once, then the health sample; returns the number of samples."""
        total = sum(self.collect(c) for c in self._collectors)
        self.report()
        self.cycles += 1
        return total

    def _health_sample(self, layer: Layer) -> Sample:
        st = self.publisher.spool.stats()
        return Sample(
            "agent_spool",
            self.identity.tags(layer),
            {
                "queued_messages": st.messages,
                "queued_bytes": st.bytes,
                "dropped_messages_total": st.dropped_messages,
                "dropped_samples_total": st.dropped_samples,
                "sent_messages_total": self.publisher.sent_messages,
                "connected": self.publisher.connected,
                "history_messages": st.history_messages,
                "replayed_messages_total": st.replayed_messages,
                "broker_resets_total": st.broker_resets,
                "history_evicted_total": st.history_evicted,
                "runs_skipped_total": self.runs_skipped,
            },
            now_ns(),
        )

    def _on_schedule(self, event: JobSubmissionEvent) -> None:
        """Count the runs that did not happen: skipped because the previous one still ran,
        and runs the scheduler coalesced away because it woke up late."""
        when = event.scheduled_run_times[-1]
        with self._lock:
            last = self._last_run.get(event.job_id)
            self._last_run[event.job_id] = when
        missed = []
        if last is not None:
            steps = round((when - last).total_seconds() / self._interval)
            missed = [last + timedelta(seconds=self._interval * k) for k in range(1, steps)]
        if event.code == EVENT_JOB_MAX_INSTANCES:
            missed.append(when)
        if not missed:
            return
        collector = event.job_id.split(":", 1)[1]
        with self._lock:
            self.runs_skipped += len(missed)
        log.warning("%s: %d run(s) skipped (the previous one was still running or the machine "
                    "was too busy to start it on time)", collector, len(missed))
        self._queue(self._first_layer, [
            Sample("agent_skipped", {**self.identity.tags(self._first_layer),
                                     "collector": collector},
                   {"runs": 1}, int(t.timestamp() * 1e9)) for t in missed])

    def run(self, interval: float, stop: threading.Event) -> None:
        """Collect every `interval` seconds until `stop` is set; the publisher delivers."""
        self._interval = interval
        self.publisher.start()
        # first readings at once so that a user sees data immediately
        self.cycle()
        scheduler = BackgroundScheduler(
            timezone="UTC", executors={"default": ThreadPoolExecutor(len(self._collectors) + 2)})
        scheduler.add_listener(self._on_schedule, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        start = aligned_start(time.time(), interval)
        for i, c in enumerate(self._collectors):
            # a run that could not start on time still runs (late) once, never silently
            scheduler.add_job(self.collect, "interval", args=(c,), seconds=interval,
                              id=f"{i}:{c.name}", name=f"collect {c.name}", max_instances=1,
                              coalesce=True, misfire_grace_time=None, start_date=start)
        scheduler.add_job(self.report, "interval", seconds=interval, id="health:agent_spool",
                          max_instances=1, coalesce=True, misfire_grace_time=None,
                          start_date=start)
        scheduler.start()
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)
            self.report()  # the last figures, delivered by the publisher's close


def aligned_start(now: float, interval: float) -> datetime:
    """The next multiple of `interval` after `now` (UTC), where the schedule starts."""
    return datetime.fromtimestamp(math.floor(now / interval + 1) * interval, UTC)


def prime(collectors: Sequence[Collector], seconds: float) -> None:
    """Take a first reading so that rate fields exist in the next one (for `--once`)."""
    for c in collectors:
        c.collect()
    time.sleep(seconds)


def default_identity(overcloud: str = "", node: str = "", cluster: str = "") -> AgentIdentity:
    host = socket.gethostname()
    return AgentIdentity(node=node or host, host=host, overcloud=overcloud, cluster=cluster)

