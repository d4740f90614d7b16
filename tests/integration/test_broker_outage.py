"""Issue 2: the broker stops and restarts (tansu forgets every topic); the agent's spool delivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.publisher import Publisher
from agents.runtime import Agent, AgentIdentity, spool_path
from agents.spool import Spool
from collectors.resource.host import HostCollector
from devlake.sinks import InfluxQL
from devtower.services import manager
from overcloud.samples import Layer
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background

pytestmark = [
    pytest.mark.integration,
    # a producer dropped during the outage without being closed raises from its finaliser
    # (kafka-python's close() flushes first): that is a leaked sender thread, so a failure
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


def host_points(settings: Settings, overcloud: str) -> int:
    ql = InfluxQL(settings.influx)
    try:
        series = ql.query('SELECT count("load1") FROM resource_host',
                          f"{settings.influx.database_prefix}{overcloud}")
    except Exception:
        return 0
    finally:
        ql.close()
    return int(series[0]["values"][0][1]) if series else 0


def test_broker_restart_spool_delivers_everything(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    identity = AgentIdentity(node="db-1", host="undercloud-a", overcloud=oc)
    spool = Spool(spool_path(settings, identity, Layer.RESOURCE), settings.agent.spool_max_bytes)
    publisher = Publisher(settings, spool)
    agent = Agent(settings, identity, [HostCollector()], publisher)
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        for _ in range(3):
            agent.cycle()
        assert spool.stats().messages == 0 and publisher.connected
        wait_until(lambda: host_points(settings, oc) == 3, timeout=60, interval=0.2,
                   what="3 samples before the outage")

        manager.down(settings, ["kafka"])
        for _ in range(20):
            agent.cycle()
        assert not publisher.connected
        assert spool.stats().messages == 20, "every cycle during the outage is spooled"
        assert spool.stats().dropped_samples == 0

        manager.up(settings, ["kafka"])  # a fresh, empty broker
        wait_until(lambda: publisher.drain(force=True), timeout=60, interval=0.5,
                   what="the spool to drain")
        agent.cycle()
        wait_until(lambda: host_points(settings, oc) >= 24, timeout=90, interval=0.3,
                   what="all 24 samples, the spooled ones included")
        assert host_points(settings, oc) == 24
        assert lake.alive(), lake.output()
    finally:
        publisher.close(timeout=1)
        manager.up(settings, ["kafka"])
        lake.stop()


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
        wait_until(lambda: publisher.drain(force=True), timeout=60, interval=0.5, what="drain")
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
