"""The agent's schedule: measuring never waits on the broker; a slow collector delays only its
own series, and every run it misses is counted and reported.

No broker runs here: the first test points the agent at a "broker" that accepts connections
and never answers (a hung process), the others at a closed port. Collectors are stand-ins
(the real ones need a host, LXD or Docker): what is under test is the scheduling around them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.publisher import Publisher
from agents.runtime import Agent, AgentIdentity
from agents.spool import Spool
from collectors.resource.host import HostCollector
from overcloud.lineprotocol import decode_lines
from overcloud.samples import Layer, Sample, now_ns
from overcloud.settings import Settings, load_settings
from overcloud.waiting import wait_until
from tests.helpers import free_port


def settings_for(tmp: Path, port: int) -> Settings:
    return load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp), "OVERCLOUD_KAFKA_PORT": str(port),
                              "OVERCLOUD_AGENT_SEND_TIMEOUT": "2", "OVERCLOUD_CONFIG": ""})


@pytest.fixture
def hung_broker() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        done.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


def test_measuring_never_waits_on_a_hung_broker(tmp_path: Path, hung_broker: int) -> None:
    """The issue's failure: the cycle waited on the producer, so nothing was measured while
    the broker was away. Here every cycle must take milliseconds and land in the spool."""
    s = settings_for(tmp_path, hung_broker)
    spool = Spool(tmp_path / "spool.sqlite", s.agent.spool_max_bytes)
    publisher = Publisher(s, spool).start()
    agent = Agent(s, AgentIdentity(node="n1", host="h1"), [HostCollector()], publisher)
    took = []
    try:
        for _ in range(10):
            t0 = time.monotonic()
            agent.cycle()
            took.append(time.monotonic() - t0)
        assert spool.stats().messages >= 20, "every run queued: its samples and the health"
        assert not publisher.connected
    finally:
        publisher.close(timeout=0)
    assert max(took) < 0.5, f"a cycle waited: {max(took):.2f}s"


class Gate:
    """A collector whose second run blocks until released (the first reading is at start)."""

    layer = Layer.RESOURCE

    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.runs = 0

    def collect(self) -> list[Sample]:
        self.runs += 1
        if self.gate is not None and self.runs == 2:
            self.gate.wait(30)
        return [Sample("gate", {"collector": self.name}, {"run": self.runs}, now_ns())]


def test_slow_collector_delays_only_itself_and_its_misses_are_reported(tmp_path: Path) -> None:
    s = settings_for(tmp_path, free_port())  # nothing listens: the spool keeps everything
    spool = Spool(tmp_path / "spool.sqlite", s.agent.spool_max_bytes)
    release = threading.Event()
    slow, fast = Gate("slow", release), Gate("fast")
    agent = Agent(s, AgentIdentity(node="n1", host="h1"), [slow, fast], Publisher(s, spool))
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(1.0, stop), daemon=True)
    runner.start()
    try:
        wait_until(lambda: agent.runs_skipped >= 2, timeout=20, interval=0.05,
                   what="two runs of the blocked collector skipped")
        fast_runs = fast.runs
        wait_until(lambda: fast.runs >= fast_runs + 2, timeout=10, interval=0.05,
                   what="the other collector running on meanwhile")
    finally:
        release.set()
        stop.set()
        runner.join(20)
    skipped = [x for e in spool.peek(10_000) for x in decode_lines(e.value)
               if x.measurement == "agent_skipped"]
    assert len(skipped) == agent.runs_skipped >= 2
    assert {x.tags["collector"] for x in skipped} == {"slow"}
    times = sorted(x.time_ns for x in skipped)
    assert all(t % 10**9 == 0 for t in times), "at the second the run was due"
    health = [x for e in spool.peek(10_000) for x in decode_lines(e.value)
              if x.measurement == "agent_spool"]
    assert health[-1].fields["runs_skipped_total"] == agent.runs_skipped
    agent.publisher.close(timeout=0)
