"""DevTower API latency and throughput under 50 concurrent clients, next to the local CLI.

    python bench/devtower_api.py [--clients 50] [--seconds 10] [--overclouds 20] [--nodes 5]

Starts its own broker, InfluxDB and DevTower (private state dir, free loopback ports), records
`--overclouds` OverClouds of `--nodes` nodes each for two developers (half each) with a
provisioning workflow and a minute of `resource_instance` samples per node in each DevLake,
then drives `GET /v1/overclouds` (list), `GET /v1/overclouds/NAME` (show) and
`/latest` with `wrk` (Debian's C load generator, so the client costs little of our 2 cores)
as developer A. The baseline is the same read through the local CLI (`overcloud list
--json`, `overcloud show`, `overcloud metrics latest`), run one after another in the same
invocation: what a developer waited for before the DevTower. Target: p99 <= 50 ms for
list/show at 50 clients.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import median, overcloud_cli, percentile, print_machine, private_services

from daemons.install import ensure_packages
from devlake.sinks import InfluxV1Sink
from devtower.server import token_store, workflow_store
from devtower.services import manager
from devtower.tokens import Role
from orchestrator.provision import provision_spec
from orchestrator.registry import Registry
from orchestrator.request import parse_request
from overcloud import influxauth
from overcloud.settings import Settings

DOC = """apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: {owner}
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
saas: {{stack: wordpress, tiers: {{app: {{replicas: {app}}}, web: {{replicas: {web}}}}}}}
"""


def seed(s: Settings, n: int, nodes: int) -> list[str]:
    """n ready OverClouds in the registry and workflow store, with DevLake data."""
    reg, store = Registry(s), workflow_store(s)
    sink = InfluxV1Sink(s.influx)
    now = time.time_ns()
    names = []
    for i in range(n):
        owner = "a@example.com" if i % 2 == 0 else "b@example.com"
        name = f"bench{i:02d}"
        app = web = max(1, nodes - 1)  # replica i of app and web share node n(i+1)
        req = parse_request(DOC.format(name=name, owner=owner, nodes=nodes, app=app, web=web),
                            capacity=None)
        wid = f"wf{i:030d}"
        reg.admit(name, owner, req.to_spec(), wid)
        store.create(provision_spec(req), {"name": name, "spec": req.to_spec()}, workflow_id=wid)
        for j, node in enumerate(req.node_names()):
            reg.set_node(name, node, f"lxd{1 + j % 2}", req.tier_layout()[node],
                         f"10.231.{i}.{10 + j}")
        reg.set_state(name, "ready", url=f"http://127.0.0.1:{20080 + i}/")
        db = f"{s.influx.database_prefix}{name}"
        sink.ensure_database(db)
        reader = influxauth.reader(s.influx.credentials, name, wid)
        if reader is not None:  # as the orchestrator's devlake task: its read-only user
            sink.ensure_reader(db, reader)
        lines = [f"resource_instance,overcloud={name},node={node},host=lxd1 cpu_percent={k % 7}.5,"
                 f"mem_usage={1000 + k}i,running=1i {now - k * 1_000_000_000}"
                 for node in req.node_names() for k in range(60)]
        sink.write(db, "\n".join(lines).encode())
        names.append(name)
    sink.close()
    return names


def wrk(url: str, token: str, clients: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-H",
         f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=True).stdout
    lat = {}
    for q in ("50", "99"):
        m = re.search(rf"^\s*{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        lat[q] = float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": lat["50"], "p99": lat["99"], "rps": float(rps[1]) if rps else 0.0,
            "errors": float(non2xx[1]) if non2xx else 0.0}


def cli_times(env: dict[str, str], args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([*overcloud_cli(), *args], env=env, capture_output=True, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--overclouds", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=5, help="1..5 per OverCloud")
    ap.add_argument("--cli-runs", type=int, default=7)
    a = ap.parse_args()
    ensure_packages(["wrk"])
    print_machine()
    from _common import free_port

    with private_services(("kafka", "influxdb"),
                          extra_env={"OVERCLOUD_DEVTOWER_PORT": str(free_port())}) as (s, env):
        names = seed(s, a.overclouds, a.nodes)
        token, _ = token_store(s).create("a@example.com", Role.DEVELOPER)
        import os

        os.environ.update(env)  # the DevTower daemon reads its settings from its environment
        manager.up(s, ["devtower"])
        try:
            base = s.devtower.url
            mine = names[0]
            print(f"{a.overclouds} OverClouds x {a.nodes} nodes; developer A owns "
                  f"{len(names[::2])}; {a.clients} clients, {a.seconds}s per endpoint (wrk)")
            print(f"{'read':<8} {'API req/s':>10} {'API p50':>9} {'API p99':>9} {'errors':>7}   "
                  f"{'CLI p50':>9} {'CLI p99':>9}  {'CLI/API p50':>11}")
            cases = [("list", "/v1/overclouds", ["list", "--json"]),
                     ("show", f"/v1/overclouds/{mine}", ["show", mine]),
                     ("latest", f"/v1/overclouds/{mine}/latest",
                      ["metrics", "latest", "--overcloud", mine])]
            for label, path, cli in cases:
                r = wrk(base + path, token, a.clients, a.seconds)
                t = cli_times(env, cli, a.cli_runs)
                print(f"{label:<8} {r['rps']:>10.0f} {r['p50']:>7.1f}ms {r['p99']:>7.1f}ms "
                      f"{r['errors']:>7.0f}   {median(t):>7.0f}ms {percentile(t, 99):>7.0f}ms  "
                      f"{median(t) / r['p50']:>10.0f}x")
        finally:
            manager.down(s, ["devtower"])


if __name__ == "__main__":
    main()
