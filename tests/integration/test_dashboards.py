"""Issue 4 items 4-5 on real services: every dashboard panel and `overcloud top` against data
that went through the real pipeline (agent/producer → tansu → `overcloud devlake run` → InfluxDB).

`resource_host` comes from the real host agent. The other measurements are published on the
metric topics exactly as their agents publish them (docs/METRICS.md tags and fields, agent
tags `node`/`host`/`layer`/`overcloud`), ten minutes of history at 20 s steps, so sparklines and
`GROUP BY time()` panels have something to draw. `alerts` points are written the way the alert
evaluator stores them: line protocol straight into the DevLake database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dashboards
from dashboards.check import check
from devlake.sinks import InfluxQL, InfluxV1Sink
from overcloud.bus import ensure_topics, make_producer, metrics_topic
from overcloud.lineprotocol import encode
from overcloud.samples import Layer, Sample
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import encode_samples
from tests.conftest import Env
from tests.helpers import Background, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STEPS, STEP_S = 30, 20
HOSTS = ("lxd1", "lxd2")
NODES = {"n1": ("lxd1", "db"), "n2": ("lxd2", "app+web")}
TARGET = "/wp-admin/install.php"
OVERCLOUD_MEASUREMENTS = ("resource_instance", "flow_iface", "flow_peer", "service_http",
                          "service_container", "alerts")


def layer_samples(overcloud: str, t_ns: int, i: int) -> dict[Layer, list[Sample]]:
    """One cycle of every agent of a 2-node OverCloud and of the UnderCloud, at time `t_ns`."""
    out: dict[Layer, list[Sample]] = {layer: [] for layer in Layer}
    for h, host in enumerate(HOSTS):
        uc_tags = {"host": host, "node": host, "layer": "resource"}
        out[Layer.RESOURCE].append(Sample("resource_undercloud", uc_tags, {
            "cpu_percent": 10.0 + 5 * h + i % 7, "cpu_cores_used": 0.4 + h, "capacity_cpus": 2.0,
            "mem_usage": 512 * 2**20 + i * 2**20, "mem_percent": 20.0 + h, "capacity_memory": 24 * 2**30,
            "instances": 1, "running_instances": 1, "net_bytes_per_s": 1000.0 * (i % 5 + 1)}, t_ns))
    for n, (node, (host, tier)) in enumerate(NODES.items()):
        tags = {"overcloud": overcloud, "node": node, "host": host}
        peer, (_, peer_tier) = next((k, v) for k, v in NODES.items() if k != node)
        out[Layer.RESOURCE].append(Sample("resource_instance", {**tags, "layer": "resource",
                                                                "instance": f"{overcloud}-{node}"}, {
            "running": True, "processes": 40 + n, "cpu_time_ns": 10**9 * i, "cpu_percent": 5.0 + i % 4 + n,
            "mem_usage": 300 * 2**20, "mem_usage_peak": 350 * 2**20, "disk_usage": 900 * 2**20,
            "net_bytes_received": 10_000 * i, "net_bytes_sent": 8_000 * i,
            "net_bytes_received_per_s": 500.0 + i, "net_bytes_sent_per_s": 400.0 + i}, t_ns))
        out[Layer.FLOW].append(Sample("flow_iface", {**tags, "layer": "flow", "iface": "eth0"}, {
            "bytes_received": 10_000 * i, "bytes_sent": 8_000 * i, "packets_received": 100 * i,
            "packets_sent": 90 * i, "errors_received": 0, "errors_sent": 0, "drops_received": 0,
            "drops_sent": 0, "bytes_received_per_s": 500.0, "bytes_sent_per_s": 400.0,
            "packets_received_per_s": 5.0, "packets_sent_per_s": 4.5}, t_ns))
        out[Layer.FLOW].append(Sample("flow_peer", {**tags, "layer": "flow", "tier": tier, "peer": peer,
                                                    "peer_tier": peer_tier}, {
            "bytes_sent": 6_000 * i, "bytes_received": 7_000 * i, "packets_sent": 60 * i,
            "packets_received": 70 * i, "connections": 3, "bytes_sent_per_s": 300.0 + 10 * (i % 6),
            "bytes_received_per_s": 350.0}, t_ns))
        for service in tier.split("+"):
            out[Layer.SERVICE].append(Sample("service_container", {**tags, "layer": "service",
                                                                   "service": service}, {
                "running": True, "state": "running", "health": "healthy", "healthy": True, "restarts": 0,
                "cpu_percent": 1.5 + n, "mem_usage": 80 * 2**20}, t_ns))
    probe = {"overcloud": overcloud, "node": "probe", "host": HOSTS[0], "layer": "service", "target": TARGET}
    out[Layer.SERVICE].append(Sample("service_http", probe, {
        "up": True, "status": 200, "latency_ms": 12.0 + i % 5, "body_ok": True, "error": ""}, t_ns))
    return out


def publish_history(settings: Settings, overcloud: str, end_ns: int) -> int:
    """Publish STEPS cycles ending at `end_ns` on the metric topics; returns samples sent."""
    ensure_topics(settings)
    producer = make_producer(settings)
    sent = 0
    try:
        for i in range(STEPS):
            t_ns = end_ns - (STEPS - 1 - i) * STEP_S * 10**9
            for layer, samples in layer_samples(overcloud, t_ns, i).items():
                if samples:
                    producer.send(metrics_topic(settings, layer), key=samples[0].tags["node"].encode(),
                                  value=encode_samples(samples))
                    sent += len(samples)
        producer.flush(30)
    finally:
        producer.close()
    return sent


def store_alerts(settings: Settings, overcloud: str, end_ns: int) -> None:
    """Two state changes per scope, as the alert evaluator records them."""
    sink = InfluxV1Sink(settings.influx)
    try:
        under = [Sample("alerts", {"rule": "host-overloaded", "severity": "critical", "host": "lxd1"},
                        {"firing": firing, "value": v}, end_ns - dt * 10**9)
                 for firing, v, dt in ((True, 91.0, 120), (False, 65.0, 30))]
        over = [Sample("alerts", {"rule": "node-overloaded", "severity": "warning", "overcloud": overcloud,
                                  "node": "n1"}, {"firing": firing, "value": v}, end_ns - dt * 10**9)
                for firing, v, dt in ((True, 88.0, 100), (False, 60.0, 20))]
        for db, points in ((settings.influx.default_database, under),
                           (settings.influx.database_prefix + overcloud, over)):
            sink.ensure_database(db)
            sink.write(db, encode(points))
    finally:
        sink.close()


def present(settings: Settings, database: str, measurements: tuple[str, ...]) -> bool:
    ql = InfluxQL(settings.influx)
    try:
        names = {row[0] for s in ql.query("SHOW MEASUREMENTS", database) for row in s.get("values", [])}
        return all(m in names for m in measurements)
    except Exception:
        return False
    finally:
        ql.close()


@pytest.fixture
def fed(env: Env, logdir: Path) -> Iterator[tuple[Env, str]]:
    """A DevLake fed with the host agent's samples and a 2-node OverCloud's ten minutes."""
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        out = run_cli(["agent", "run", "--once"], env, check=True)
        assert "delivered" in out.stdout, out.stdout
        end_ns = time.time_ns()
        assert publish_history(settings, oc, end_ns) > 0
        db = settings.influx.database_prefix + oc
        wait_until(lambda: present(settings, db, OVERCLOUD_MEASUREMENTS[:-1]), timeout=60, interval=0.3,
                   what=f"every layer's measurements in {db}")
        wait_until(lambda: present(settings, settings.influx.default_database,
                                   ("resource_host", "resource_undercloud")),
                   timeout=60, interval=0.3, what="UnderCloud samples")
        store_alerts(settings, oc, end_ns)
        yield env, oc
    finally:
        assert lake.stop() == 0, lake.output()


def test_every_panel_query_returns_data(fed: tuple[Env, str]) -> None:
    env, oc = fed
    settings = env.settings()
    ql = InfluxQL(settings.influx)
    try:
        # every measurement must have arrived completely before counting (10 min of 20 s cycles)
        wait_until(lambda: all(r.ok for r in check(ql, dashboards.all_dashboards(),
                                                   settings.influx.database_prefix + oc,
                                                   settings.influx.default_database)),
                   timeout=30, interval=0.5, what="every panel to have data")
        results = check(ql, dashboards.all_dashboards(), settings.influx.database_prefix + oc,
                        settings.influx.default_database)
    finally:
        ql.close()
    bad = [f"{r.dashboard} / {r.panel}: {r.error or 'no data'}\n  {r.query}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    panels = [r for r in results if not r.panel.startswith("$")]
    assert len(panels) == sum(len(dashboards.queries(d, {"overcloud": "x", "node": "x", "tier": "x"}))
                              for d in dashboards.all_dashboards())
    # the node variable found both nodes, the tier variable both tiers
    variables = {r.panel: r.rows for r in results if r.panel.startswith("$")}
    assert variables["$node"] == 2 and variables["$tier"] == 2

    cli = run_cli(["dashboards", "check", "--overcloud", oc], env)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"{len(results)}/{len(results)} panel queries returned data" in cli.stdout


def test_check_reports_empty_panels_for_an_empty_overcloud(fed: tuple[Env, str]) -> None:
    env, _ = fed
    settings = env.settings()
    empty = f"{env['TEST_OVERCLOUD']}x"
    sink = InfluxV1Sink(settings.influx)
    try:
        sink.ensure_database(settings.influx.database_prefix + empty)
    finally:
        sink.close()
    cli = run_cli(["dashboards", "check", "--overcloud", empty], env)
    assert cli.returncode == 1
    assert "Stack containers" in cli.stdout and "no data" in cli.stdout
    unknown = run_cli(["dashboards", "check", "--overcloud", "nosuchcloud"], env)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no DevLake for OverCloud")


def test_top_once_shows_every_layer(fed: tuple[Env, str]) -> None:
    env, oc = fed
    out = run_cli(["top", "--once", "--overcloud", oc], env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    print(text)  # the frame, for -s runs and failure reports
    for expected in ("lxd1", "lxd2", "n1", "n2", "n1 → n2", "n2 → n1", TARGET, "200", "n1/db", "n2/web",
                     "healthy", "Machines"):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert any(ch in text for ch in "▁▂▃▄▅▆▇█"), "no sparkline drawn"
    under = run_cli(["top", "--once"], env)
    assert under.returncode == 0 and oc in under.stdout and "lxd1" in under.stdout


def test_top_errors_are_one_line(env: Env) -> None:
    unknown = run_cli(["top", "--once", "--overcloud", "nosuchcloud"], env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("error: unknown OverCloud 'nosuchcloud'")
    assert "Traceback" not in unknown.stderr
    down = run_cli(["top", "--once"], {**env, "OVERCLOUD_INFLUX_PORT": "1"})
    assert down.returncode == 1 and down.stderr.startswith("error: DevLake unreachable")
