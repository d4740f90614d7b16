"""Agent overhead benchmark: CPU time (process time, not wall) per resource collection cycle.

Three measurements, each over many cycles, reported as median / p99 / mean:

- `collect`: the real `HostCollector.collect()` on this machine (psutil reads of /proc and
  /sys: CPU total and per core, load, memory, swap, disk usage and I/O, network per NIC);
- `cycle+broker`: the full `Agent.cycle()` — collect, tag, health sample, `encode_lines`,
  spool write-ahead (SQLite) and delivery to a real broker (a private tansu started by
  `devtower.services.manager` on a free loopback port, stopped afterwards) with the
  acknowledgement awaited;
- `cycle+spool`: the same cycle while the broker is away (the publisher is between retries,
  so every batch only goes to the on-disk spool).

CPU time is `time.process_time()` of this process: every thread (kafka-python's sender and
network threads included), user + system. Between cycles the agent sleeps `--gap` s like a
scheduled agent would; `mean incl. background` divides all CPU the process used over the
whole run (idle threads included) by the number of cycles. Target: <= 5 ms per cycle.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_env,
    free_port,
    median,
    percentile,
    print_machine,
    private_services,
)

from agents.publisher import Publisher
from agents.runtime import Agent, AgentIdentity, spool_path
from agents.spool import Spool
from collectors.resource.host import HostCollector
from overcloud.samples import Layer
from overcloud.settings import Settings, load_settings

TARGET_MS = 5.0


def measure(fn: Callable[[], object], cycles: int, gap: float) -> dict[str, float]:
    per: list[float] = []
    cpu_start = time.process_time()
    for _ in range(cycles):
        c0 = time.process_time()
        fn()
        per.append((time.process_time() - c0) * 1000)
        if gap:
            time.sleep(gap)
    total = (time.process_time() - cpu_start) * 1000
    return {"median": median(per), "p99": percentile(per, 99), "mean": sum(per) / len(per),
            "mean_all": total / cycles, "cycles": cycles}


def make_agent(settings: Settings, collector: HostCollector) -> Agent:
    ident = AgentIdentity(node="bench-node", host="bench-node", overcloud="bench")
    spool = Spool(spool_path(settings, ident, Layer.RESOURCE), settings.agent.spool_max_bytes)
    return Agent(settings, ident, [collector], Publisher(settings, spool))


def report(name: str, r: dict[str, float], points: int) -> None:
    verdict = "MET" if r["median"] <= TARGET_MS and r["p99"] <= TARGET_MS else (
        "median MET, p99 not" if r["median"] <= TARGET_MS else "NOT MET")
    print(f"{name:<14} median {r['median']:.3f} ms | p99 {r['p99']:.3f} ms | mean "
          f"{r['mean']:.3f} ms | mean incl. background {r['mean_all']:.3f} ms | "
          f"{int(r['cycles'])} cycles, {points} samples/cycle | target <= {TARGET_MS:g} ms: "
          f"{verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--cycles", type=int, default=1000, help="cycles per measurement")
    ap.add_argument("--gap", type=float, default=0.01, help="sleep between cycles (s)")
    ap.add_argument("--skip-broker", action="store_true",
                    help="do not start a broker (no `cycle+broker` measurement)")
    args = ap.parse_args(argv)
    print_machine()

    collector = HostCollector()
    collector.collect()  # first reading: rates exist from the next one on
    time.sleep(0.1)
    points = len(collector.collect())
    report("collect", measure(collector.collect, args.cycles, args.gap), points)

    if not args.skip_broker:
        with private_services(["kafka"]) as (settings, _env):
            agent = make_agent(settings, HostCollector())
            # the delivery thread, as `Agent.run` starts it: without it nothing reaches the
            # broker (and kafka-python's send and ack costs would be missing)
            agent.publisher.start()
            agent.cycle()  # connects, creates topics: not a steady-state cycle
            try:
                r = measure(agent.cycle, args.cycles, args.gap)
                left = agent.publisher.spool.stats().messages
            finally:
                delivered = agent.publisher.close(timeout=30)
            report("cycle+broker", r, points + 1)
            if left:
                print(f"  note: {left} message(s) were still waiting at the last cycle; "
                      f"{'all delivered' if delivered else 'NOT all delivered'} at close",
                      flush=True)

    with tempfile.TemporaryDirectory(prefix="overcloud-bench-spool-") as state:
        # nothing listens on this port; the publisher is held between retries so that each
        # cycle measures the spool path, not kafka-python's connection attempts
        settings = load_settings(config=None,
                                 env=bench_env(Path(state), free_port(), free_port()))
        agent = make_agent(settings, HostCollector())
        agent.publisher._retry_at = math.inf
        agent.cycle()
        r = measure(agent.cycle, args.cycles, args.gap)
        queued = agent.publisher.spool.stats().messages
        agent.publisher.spool.close()
        report("cycle+spool", r, points + 1)
        print(f"  spool holds {queued} message(s) (nothing dropped: the bound was not hit)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
