"""The agent: APScheduler runs collectors on an interval; samples are tagged and published.

One message per layer per cycle (the cycle's samples batched), keyed by node so a node's
samples stay ordered in one partition. Each cycle also reports the agent's own health as
`agent_spool` (queued, dropped, sent, replayed): a full spool is visible on the dashboards.

A cycle only measures and appends to the spool; the publisher's own thread talks to the
broker. So a broker that is gone or slow never delays a measurement (it once did: the cycle
waited on the producer and APScheduler skipped the next runs, 5-6 s of samples lost per
broker restart). Cycles start on multiples of the interval (like Telegraf's
`round_interval`): every `GROUP BY time(interval)` bucket gets one sample, not zero or two
when a cycle runs a little late.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from agents.publisher import Publisher
from agents.spool import Spool
from collectors.base import Collector
from overcloud.bus import metrics_topic
from overcloud.samples import Layer, Sample, now_ns
from overcloud.settings import Settings
from overcloud.wire import encode_samples

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


def open_spool(settings: Settings, identity: AgentIdentity, layer: Layer, *more: Layer) -> Spool:
    """The agent's spool, keeping acknowledged batches for the configured replay window."""
    return Spool(spool_path(settings, identity, layer, *more), settings.agent.spool_max_bytes,
                 history_bytes=settings.kafka.replay_max_bytes,
                 history_seconds=settings.kafka.replay_window)


def spool_path(settings: Settings, identity: AgentIdentity, layer: Layer, *more: Layer) -> Path:
    """One spool per agent process; an agent of several layers spools them all in one file
    (each message keeps its own topic), named after its layers."""
    scope = identity.overcloud or "_undercloud"
    layers = "+".join(x.value for x in (layer, *more))
    return settings.state_dir / "spool" / f"{scope}.{identity.node}.{layers}.sqlite"


class Agent:
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

    def cycle(self) -> int:
        """Collect from every collector once and queue the samples for delivery; returns the
        number of samples. Does not wait on the broker."""
        by_layer: dict[Layer, list[Sample]] = defaultdict(list)
        for c in self._collectors:
            try:
                samples = c.collect()
            except Exception:  # one broken collector must not stop the others
                log.exception("collector %s failed", c.name)
                continue
            tags = self.identity.tags(c.layer)
            by_layer[c.layer].extend(s.with_tags(tags) for s in samples)
        if not by_layer:
            return 0
        first_layer = next(iter(by_layer))
        by_layer[first_layer].append(self._health_sample(first_layer))
        total = 0
        for layer, samples in by_layer.items():
            self.publisher.publish(
                metrics_topic(self._settings, layer),
                self.identity.node,
                encode_samples(samples),
                len(samples),
            )
            total += len(samples)
        self.cycles += 1
        self.samples_published += total
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
            },
            now_ns(),
        )

    def run(self, interval: float, stop: threading.Event) -> None:
        """Collect every `interval` seconds until `stop` is set; the publisher delivers."""
        self.publisher.start()
        scheduler = BackgroundScheduler(timezone="UTC")
        # a cycle that could not start on time still runs (late), never silently skipped
        scheduler.add_job(
            self.cycle, "interval", seconds=interval, id="collect", max_instances=1,
            coalesce=True, misfire_grace_time=None, next_run_time=None,
            start_date=aligned_start(time.time(), interval),
        )
        scheduler.start()
        # first cycle at once so that a user sees data immediately
        self.cycle()
        scheduler.resume_job("collect")
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)


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

