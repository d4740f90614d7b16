"""The broker dies (kill -9) and comes back empty — tansu keeps its log in memory — and
nothing is lost: not a sample of an interval, not a batch it had acknowledged and no DevLake
had read yet, not an event acknowledged just before the crash; and nothing is done twice.

Real processes on the session's tansu and InfluxDB: `overcloud agent run` (1 s), two
`overcloud devlake run` in one group, `overcloud orchestrator run`. The same drills with
node agents of a real OverCloud on LXD, and with the DevLake, InfluxDB, orchestrator and
alert evaluator killed, are in test_drills.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from agents.publisher import Publisher
from agents.runtime import Agent, AgentIdentity, spool_path
from agents.spool import Spool
from collectors.resource.host import HostCollector
from devlake.sinks import InfluxQL
from devtower.services import manager
from orchestrator.inbox import Inbox
from overcloud.bus import KafkaEventBus, ensure_topics, make_producer, metrics_topic
from overcloud.events import OverCloudFailed, OverCloudRequested
from overcloud.replay import EventJournal
from overcloud.samples import Layer
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import encode_samples
from tests.conftest import Env
from tests.helpers import Background
from tests.integration.drill_kit import (
    Buckets,
    Figures,
    copies,
    empty_buckets,
    events_on_topic,
    first_sample_s,
    freeze,
    kill9,
    skipped_runs,
    thaw,
    wait_clock,
)
from tests.integration.pipeline_kit import batch, stored

pytestmark = [
    pytest.mark.integration,
    # a producer dropped during the outage without being closed raises from its finaliser
    # (kafka-python's close() flushes first): that is a leaked sender thread, so a failure
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

OUTAGE_S = 20.0


def last_field(settings: Settings, db: str, measurement: str, field_: str, node: str) -> float:
    ql = InfluxQL(settings.influx)
    try:
        s = ql.query(f'SELECT last("{field_}") FROM "{measurement}" WHERE "node" = \'{node}\'', db)
    except Exception:
        return 0.0
    finally:
        ql.close()
    return float(s[0]["values"][0][1]) if s else 0.0


def test_broker_killed_for_20s_host_agent_keeps_every_second(env: Env, logdir: Path) -> None:
    """Agent at 1 s, two DevLakes; the DevLakes are held still for 3 s before the kill, so
    the broker dies holding batches it acknowledged that nobody had read. After 20 s it comes
    back empty: every 1 s interval of the agent's series must be in InfluxDB."""
    s = env.settings()
    oc, node = env["TEST_OVERCLOUD"], "drill-host"
    db = f"{s.influx.database_prefix}{oc}"
    fig = Figures("broker kill -9, 20 s (host agent, no LXD)")
    lakes = [Background(["devlake", "run"], env, logdir / f"devlake{i}.log").start()
             for i in (1, 2)]
    agent = Background(["agent", "run", "--layer", "resource", "--interval", "1", "--overcloud",
                        oc, "--node", node], env, logdir / "agent.log").start()
    try:
        first = wait_until(lambda: first_sample_s(s, db, "resource_host", "load1", {"node": node}),
                           timeout=90, interval=0.3, what="the agent's first samples in InfluxDB")
        wait_clock(6, first)  # some steady state before the drill
        for lake in lakes:
            freeze(lake)
        t_freeze = time.time()
        wait_clock(3, t_freeze)  # batches acknowledged from now on are not consumed
        t_kill = kill9(s, "kafka")
        for lake in lakes:
            thaw(lake)
        wait_clock(OUTAGE_S, t_kill)
        manager.up(s, ["kafka"])
        t_up = time.time()
        start, end = max(first + 1, math.floor(t_freeze) - 5), math.floor(t_up) + 6

        def window() -> Buckets:
            got = empty_buckets(s, db, "resource_host", "load1", {"node": node}, start, end)
            b = got[0] if got else Buckets("resource_host", end - start,
                                           list(range(start, end)), 0)
            b.skipped = skipped_runs(s, db, node, "host", start, end)
            return b

        wait_clock(end - t_up + 1, t_up)  # the window has passed
        try:
            wait_until(lambda: not window().unexplained, timeout=120, interval=1,
                       what="a sample in every second around the outage")
        finally:
            b = window()
            fig.add(window_s=end - start, outage_s=round(t_up - t_kill, 1),
                    intervals=b.intervals, samples=b.samples, empty_intervals=len(b.empty),
                    skipped_by_agent=b.skipped, unexplained=b.unexplained,
                    empty_at_s_after_kill=[t - round(t_kill) for t in b.empty])
        # the machine may be too busy to measure on time now and then (the agent says so);
        # an agent that waited on the broker would skip most of the outage
        assert b.skipped <= 3, f"{b.skipped} runs skipped around the outage"
        wait_until(lambda: last_field(s, db, "agent_spool", "broker_resets_total", node) >= 1,
                   timeout=60, interval=0.5, what="the agent to report the broker's reset")
        replayed = last_field(s, db, "agent_spool", "replayed_messages_total", node)
        fig.add(broker_resets=last_field(s, db, "agent_spool", "broker_resets_total", node),
                replayed_batches=replayed)
        assert replayed >= 3, "the batches acknowledged while the DevLakes were held were resent"
        assert all(lake.alive() for lake in lakes) and agent.alive(), agent.output()[-2000:]
    finally:
        fig.write()
        agent.stop()
        for lake in lakes:
            thaw(lake)
            lake.stop()
        manager.up(s, ["kafka"])


def test_devlake_reads_a_recreated_topic_from_its_start(env: Env, logdir: Path) -> None:
    """tansu answers a fetch beyond the end of a log with nothing (no out-of-range error), so
    a consumer whose position lies beyond the new, shorter log would wait there, and one
    whose position lies inside a longer new log would skip its start. The DevLake's group is
    unknown to the restarted broker: it joins again, finds no committed offsets and starts at
    the beginning — both cases, on the real broker."""
    s = env.settings()
    oc = env["TEST_OVERCLOUD"]
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    topic = metrics_topic(s, Layer.RESOURCE)

    def send(seq0: int, n: int) -> None:
        ensure_topics(s)
        p = make_producer(s)
        for i in range(seq0, seq0 + n, 10):
            p.send(topic, key=b"n1", value=encode_samples(batch(oc, i, 10))).get(10)
        p.close()

    try:
        send(0, 300)  # 30 messages on one partition: the DevLake's position ends at 30
        wait_until(lambda: stored(s, oc) == 300, timeout=90, interval=0.3, what="300 stored")
        kill9(s, "kafka")
        manager.up(s, ["kafka"])
        send(300, 50)  # a new log of 5 messages: shorter than the old position
        wait_until(lambda: stored(s, oc) == 350, timeout=90, interval=0.3,
                   what="the 50 samples of the new, shorter log")
        kill9(s, "kafka")
        manager.up(s, ["kafka"])
        send(350, 600)  # 60 messages: the new log outgrows the old position at once
        wait_until(lambda: stored(s, oc) == 950, timeout=90, interval=0.3,
                   what="all 600 samples of the new, longer log")
        assert lake.alive(), lake.output()[-2000:]
    finally:
        lake.stop()
        manager.up(s, ["kafka"])


def test_event_acknowledged_before_a_crash_is_handled_once(env: Env, logdir: Path) -> None:
    """The orchestrator is held still; an `OverCloudRequested` is published (acknowledged,
    journaled) and the broker is killed before anyone read it. After the restart the
    orchestrator's journal watcher publishes it again; it is handled once (this one fails
    admission: one `OverCloudFailed`). A second crash later replays it again: skipped."""
    s = env.settings()
    fig = Figures("event acknowledged, then broker kill -9 (orchestrator held)")
    orch = Background(["orchestrator", "run"], env, logdir / "orchestrator.log").start()
    name = f"{env['TEST_OVERCLOUD']}-bad"
    journal = EventJournal.of(s)
    try:
        wait_until(lambda: "orchestrator:" in orch.output(), timeout=60, interval=0.2,
                   what="the orchestrator's banner")
        freeze(orch)
        bus = KafkaEventBus(s)
        event = OverCloudRequested(name=name, owner="t@example.org", spec={"kind": "nonsense"})
        bus.publish(event, key=name)
        bus.close()
        assert any(e.value and event.id.encode() in e.value for e in journal.entries())
        t_kill = kill9(s, "kafka")
        thaw(orch)
        wait_clock(3, t_kill)
        manager.up(s, ["kafka"])
        inbox = Inbox(s.state_dir / "orchestrator" / "inbox.sqlite")

        def failed() -> list[OverCloudFailed]:
            return [e for e in events_on_topic(s)
                    if isinstance(e, OverCloudFailed) and e.name == name]

        wait_until(lambda: inbox.done(event.id) and failed(), timeout=90, interval=0.5,
                   what="the replayed request to be handled")
        assert journal.counter("replays") >= 1
        # the broker dies again: the journal (request and its OverCloudFailed) comes back once
        # more, and the orchestrator must not act on it a second time
        replays = journal.counter("replays")
        kill9(s, "kafka")
        manager.up(s, ["kafka"])
        wait_until(lambda: journal.counter("replays") > replays, timeout=60, interval=0.3,
                   what="the second replay")
        wait_until(lambda: any(isinstance(e, OverCloudRequested) and e.id == event.id
                               for e in events_on_topic(s)),
                   timeout=30, interval=0.3, what="the request back on the topic")
        on_topic = events_on_topic(s)
        # skipped (said in its log), or handled a second time (the assertion below says so)
        wait_until(lambda: f"{event.id}: already handled, skipped" in orch.output()
                   or inbox.starts(event.id) > 1, timeout=60, interval=0.3,
                   what="the orchestrator to see the replayed request")
        distinct_failed = {e.id for e in on_topic if isinstance(e, OverCloudFailed)
                           and e.name == name}
        ids, replayed = copies(on_topic)
        fig.add(events_published=2, events_on_topic_distinct=ids, replayed_copies=replayed,
                handling_starts=inbox.starts(event.id), failed_events=len(distinct_failed),
                journal_replays=journal.counter("replays"))
        assert inbox.starts(event.id) == 1, "handled once, whatever came back"
        assert len(distinct_failed) == 1
        assert orch.alive(), orch.output()[-3000:]
    finally:
        fig.write()
        thaw(orch)
        orch.stop()
        manager.up(s, ["kafka"])


def test_spool_limit_hit_is_counted_and_published(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    identity = AgentIdentity(node="web-9", host="undercloud-a", overcloud=oc)
    spool = Spool(spool_path(settings, identity, Layer.RESOURCE), max_bytes=16 * 1024)
    publisher = Publisher(settings, spool)
    agent = Agent(settings, identity, [HostCollector()], publisher)
    manager.down(settings, ["kafka"])
    try:
        for _ in range(30):
            agent.cycle()
        dropped = spool.stats().dropped_samples
        assert dropped > 0 and spool.stats().bytes <= 16 * 1024
    finally:
        manager.up(settings, ["kafka"])
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        publisher.start()
        agent.cycle()  # reports the loss in agent_spool

        def reported() -> float:
            ql = InfluxQL(settings.influx)
            try:
                s = ql.query("SELECT last(dropped_samples_total) FROM agent_spool",
                             f"{settings.influx.database_prefix}{oc}")
            except Exception:
                return 0
            finally:
                ql.close()
            return float(s[0]["values"][0][1]) if s else 0

        wait_until(lambda: reported() >= dropped, timeout=60, interval=0.3,
                   what="the loss metric in InfluxDB")
    finally:
        publisher.close(timeout=1)
        lake.stop()
