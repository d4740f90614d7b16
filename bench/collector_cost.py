"""Cost of one collection cycle per flow/service collector, on a running OverCloud node.

    OVERCLOUD_STATE_DIR=... python bench/collector_cost.py --overcloud NAME --node NODE \\
        --lxd-host lxd2 [--url http://127.0.0.1:PORT/wp-admin/install.php] [--cycles 30]

Builds the same collectors the node agent runs (`overcloud agent run --layer
resource,flow,service --instance NODE`) against the configured UnderCloud hosts and times each
`collect()`: wall time (what the cycle waits for, including the LXD daemon, dockerd and the
probed server answering) and CPU time of this process (`time.process_time`, what the agent
itself spends). The shared LXD state read is timed on its own (`lxd_state`) and forced fresh
every cycle, so each collector's figure excludes it. Reports median / p99 over the cycles.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, percentile, print_machine

from collectors.flow.iface import IfaceCollector
from collectors.flow.peer import PeerCollector
from collectors.node import Apis, NodeState, PeerDirectory, overcloud_nodes, read_instance_state
from collectors.service.container import ContainerCollector, DockerSource
from collectors.service.http import HttpProbeCollector
from overcloud.settings import load_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--overcloud", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--lxd-host", required=True)
    ap.add_argument("--url", default="")
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--gap", type=float, default=0.5)
    a = ap.parse_args()
    s = load_settings()
    host = {h.name: h for h in s.lxd_hosts}[a.lxd_host]
    apis = Apis()
    state = NodeState(lambda: read_instance_state(apis, host, a.node), max_age=3600)
    hosts = s.lxd_hosts
    directory = PeerDirectory(lambda: overcloud_nodes(apis, hosts, a.overcloud))
    timed: dict[str, Callable[[], object]] = {
        "lxd_state": lambda: state.__dict__.update(_at=-1e9) or state.read(),
        "flow_iface": IfaceCollector(state).collect,
        "flow_peer": PeerCollector(state, directory, {}, a.node).collect,
        "service_container": ContainerCollector(DockerSource(state)).collect,
        "peer_directory_refresh": lambda: overcloud_nodes(apis, hosts, a.overcloud),
    }
    if a.url:
        timed["service_http"] = HttpProbeCollector(a.url, "WordPress").collect
    wall: dict[str, list[float]] = {k: [] for k in timed}
    cpu: dict[str, list[float]] = {k: [] for k in timed}
    for _ in range(a.cycles):
        for name, fn in timed.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - w0) * 1000)
            cpu[name].append((time.process_time() - c0) * 1000)
        time.sleep(a.gap)
    print_machine()
    print(f"{a.cycles} cycles, node {a.node} on {a.lxd_host}")
    print(f"{'collector':<24}{'wall med':>10}{'wall p99':>10}{'cpu med':>10}{'cpu p99':>10}  (ms)")
    for name in timed:
        print(f"{name:<24}{median(wall[name]):>10.2f}{percentile(wall[name], 99):>10.2f}"
              f"{median(cpu[name]):>10.2f}{percentile(cpu[name], 99):>10.2f}")


if __name__ == "__main__":
    main()
