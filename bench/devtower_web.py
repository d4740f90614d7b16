"""The DevTower page in a real browser: time to first paint, to the OverCloud drawn, and to
live data (its charts drawn from its DevLake), with 20 OverClouds of 5 nodes.

    python bench/devtower_web.py [--overclouds 20] [--nodes 5] [--runs 15]

The issue asked for 6 nodes; one OverCloud has at most 5 (db on n1, at most 4 app/web
replicas after it: the request schema refuses more), so the page shows 5 nodes, and the
DevTower holds 100 in all.

Starts its own broker, InfluxDB and DevTower (private state dir, free loopback ports), seeds
`--overclouds` OverClouds (half for developer A) with a minute of samples of each layer per
node in each DevLake, signs A in in Debian's headless Chromium (selenium + chromedriver) and
loads A's first OverCloud's page `--runs` times, each a full page load with a cold memory
cache. Figures are read from the browser's own clock (Performance API): first contentful
paint, `oc-head` (the OverCloud's name, state and nodes drawn) and `oc-live-data` (the charts
drawn with real series). The reference, measured in the same run: the same three API reads
the page makes (show, charts, webhooks) with httpx from Python, one after another — what the
page costs on top of its data. Target: p95 <= 500 ms to live data on our 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from _common import free_port, median, percentile, print_machine, private_services
from devtower_api import seed

from devlake.sinks import InfluxV1Sink
from devtower.server import token_store
from devtower.services import manager
from devtower.tokens import Role
from overcloud.settings import Settings
from tests.browser import chromium, sign_in, wait


def more_layers(s: Settings, names: list[str], nodes: int) -> None:
    """Flow, HTTP and container samples beside `seed`'s resource samples (a minute of each)."""
    sink = InfluxV1Sink(s.influx)
    now = time.time_ns()
    for name in names:
        node_names = [f"{name}-n{j + 1}" for j in range(nodes)]
        lines = []
        for k in range(60):
            t = now - k * 1_000_000_000
            lines.append(f"service_http,overcloud={name},target=site status=200i,"
                         f"latency_ms={40 + k % 9}.0,up=1i {t}")
            for j, node in enumerate(node_names):
                peer = node_names[(j + 1) % len(node_names)]
                lines.append(f"flow_peer,overcloud={name},node={node},peer={peer} "
                             f"bytes_sent_per_s={1000 * (j + 1)}.0,"
                             f"bytes_received_per_s={500 * (j + 1)}.0,connections=2i {t}")
                lines.append(f"service_container,overcloud={name},node={node},service=web "
                             f"state=\"running\",health=\"healthy\",restarts=0i,"
                             f"cpu_percent=1.5,mem_usage=10000000i {t}")
        sink.write(f"{s.influx.database_prefix}{name}", "\n".join(lines).encode())
    sink.close()


WATERFALL_NOTE = "the last load, from navigation start:"
WATERFALL = """
const out = [];
const n = performance.getEntriesByType('navigation')[0];
out.push(['the page (HTML)', Math.round(n.requestStart), Math.round(n.responseEnd)]);
for (const e of performance.getEntriesByType('resource'))
  out.push([e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.responseEnd)]);
out.push(['DOMContentLoaded', 0, Math.round(n.domContentLoadedEventStart)]);
for (const k of ['first-contentful-paint', 'oc-head', 'oc-live-data']) {
  const e = performance.getEntriesByName(k)[0];
  out.push([k, 0, Math.round(e.startTime)]);
}
return out;
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overclouds", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=5, help="1..5 per OverCloud")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--explain", action="store_true",
                    help="also print the last load's waterfall (each request's start and end)")
    a = ap.parse_args()
    print_machine()
    with private_services(("kafka", "influxdb"),
                          extra_env={"OVERCLOUD_DEVTOWER_PORT": str(free_port())}) as (s, env):
        names = seed(s, a.overclouds, a.nodes)
        more_layers(s, names, a.nodes)
        token, _ = token_store(s).create("a@example.com", Role.DEVELOPER)
        os.environ.update(env)  # the DevTower daemon reads its settings from its environment
        manager.up(s, ["devtower"])
        try:
            base = s.devtower.url
            mine = names[0]
            paint, head, live, api = [], [], [], []
            with chromium() as d, httpx.Client(
                    base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
                sign_in(d, base, token)
                for i in range(a.runs + 1):
                    d.execute_cdp_cmd("Network.clearBrowserCache", {})
                    d.get(f"{base}/?run={i}#/oc/{mine}")
                    wait(d, lambda x: x.execute_script(
                        "return performance.getEntriesByName('oc-live-data').length") == 1,
                        timeout=30, message="live data")
                    fcp, h, lv = d.execute_script(
                        "const e = n => (performance.getEntriesByName(n)[0] || {}).startTime;"
                        "return [e('first-contentful-paint'), e('oc-head'), e('oc-live-data')];")
                    t0 = time.perf_counter()
                    for path in (f"/v1/overclouds/{mine}", f"/v1/overclouds/{mine}/charts",
                                 f"/v1/overclouds/{mine}/webhooks"):
                        c.get(path).raise_for_status()
                    took = (time.perf_counter() - t0) * 1000
                    if i == 0:
                        continue  # the first load warms the DevTower's caches
                    if a.explain and i == a.runs:
                        print(WATERFALL_NOTE)
                        for row in d.execute_script(WATERFALL):
                            print(f"  {row[0]:<48} {row[1]:>5} ms -> {row[2]:>5} ms")
                    paint.append(fcp)
                    head.append(h)
                    live.append(lv)
                    api.append(took)
            print(f"{a.overclouds} OverClouds x {a.nodes} nodes; A's page of {mine}, "
                  f"{a.runs} full loads (cold browser cache), Chromium headless")
            print(f"{'stage':<34} {'p50':>8} {'p95':>8}")
            for label, v in [("first contentful paint", paint),
                             ("OverCloud drawn (oc-head)", head),
                             ("live data: charts drawn", live),
                             ("reference: its 3 API reads (httpx)", api)]:
                print(f"{label:<34} {median(v):>6.0f}ms {percentile(v, 95):>6.0f}ms")
            print(f"page cost over its data (live p50 / API p50): "
                  f"{median(live) / median(api):.1f}x; target p95 live <= 500 ms: "
                  f"{'met' if percentile(live, 95) <= 500 else 'MISSED'}")
        finally:
            manager.down(s, ["devtower"])


if __name__ == "__main__":
    main()
