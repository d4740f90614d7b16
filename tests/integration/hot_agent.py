"""A made-up UnderCloud host's agent for the drills: `resource_undercloud` every second with
the host name and CPU the test writes into a control file (JSON: {"host": …, "value": …}).

Its own process (python -m tests.integration.hot_agent CONTROL NODE), so that the test's
busy main thread never delays its runs; the real `Agent` and `Publisher` (spool, replay)
deliver it like any agent. SIGTERM stops it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from agents.publisher import Publisher
from agents.runtime import Agent, AgentIdentity, open_spool
from overcloud.samples import Layer, Sample, now_ns
from overcloud.settings import load_settings


class HotHost:
    name = "drill-hot"
    layer = Layer.RESOURCE

    def __init__(self, control: Path) -> None:
        self.control = control

    def collect(self) -> list[Sample]:
        try:
            want = json.loads(self.control.read_text())
        except (OSError, ValueError):
            return []
        return [Sample("resource_undercloud", {"host": str(want["host"])},
                       {"cpu_percent": float(want["value"]), "capacity_cpus": 1.0}, now_ns())]


def main() -> None:
    control, node = Path(sys.argv[1]), sys.argv[2]
    s = load_settings()
    identity = AgentIdentity(node=node, host="drill-hot")
    publisher = Publisher(s, open_spool(s, identity, Layer.RESOURCE))
    agent = Agent(s, identity, [HotHost(control)], publisher)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("hot agent: running", flush=True)
    agent.run(1.0, stop)
    publisher.close(timeout=5)


if __name__ == "__main__":
    main()
