"""Node-overloaded end to end on real services: a busy machine container on LXD host lxd1 →
host agent (`resource_undercloud`, every 1 s) → tansu → the evaluator process → one webhook
notification, the alert in a real Alertmanager, `NodeOverloaded` on the events topic, the
`alerts` measurement in the DevLake; load stopped → resolved at the first sample below the
recovery threshold; agent stopped → the no-data policy (`alert`) fires.

Run with OC_TEST_BRIDGE_PREFIX=ocal OC_TEST_SUBNET_PREFIX=10.237 (own bridges and subnets).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest

from devlake.alerts.runner import read_state
from devlake.sinks import InfluxQL
from orchestrator.hosts import LxdDriver, NodeSpec
from orchestrator.images import NODE_ALIAS
from overcloud.bus import events_topic, make_consumer
from overcloud.events import AlertFiring, AlertResolved, Event, NodeOverloaded
from overcloud.services import manager
from overcloud.services.lxd import lxc_env
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import decode_event
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FOR_S = 5.0
INTERVAL_S = 1.0


class Hook(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.posts.append((self.path, orjson.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def ours(path: str) -> list[dict[str, Any]]:
    return [b for p, b in Hook.posts if p == path]


@pytest.fixture
def hook() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


class Events:
    def __init__(self, s: Settings) -> None:
        self.consumer = make_consumer(s, [events_topic(s)], f"ev{uuid.uuid4().hex[:6]}")
        self.seen: list[Event] = []

    def poll(self) -> list[Event]:
        for msgs in self.consumer.poll(timeout_ms=200).values():
            self.seen += [decode_event(m.value) for m in msgs]
        return self.seen

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.poll() if isinstance(e, cls)]


def test_node_overloaded(uc: Env, hook: int, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    env = Env(uc, OVERCLOUD_KAFKA_TOPIC_PREFIX=f"al{tag}", OVERCLOUD_DEVLAKE_GROUP=f"dl{tag}",
              OVERCLOUD_ALERTS_GROUP=f"al{tag}", OVERCLOUD_AGENT_INTERVAL=str(INTERVAL_S),
              OVERCLOUD_UNDERCLOUD_HOST_CPUS="0.5", OVERCLOUD_ALERTS_TICK="0.2",
              OVERCLOUD_ALERTS_RESEND="2", OVERCLOUD_DEVLAKE_LINGER="0.1",
              OVERCLOUD_ALERTS_ALERTMANAGER_PORT=str(free_port()),
              OVERCLOUD_ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{hook}/am")
    s = env.settings()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""rules:
  - name: node-overloaded
    for: {FOR_S:g}s
    no_data: {{policy: alert, after: 4s}}
    actions:
      - {{type: event, event: node_overloaded}}
      - {{type: alertmanager}}
      - {{type: webhook, url: "http://127.0.0.1:{hook}/hook"}}
""")
    lxd1 = next(h for h in s.lxd_hosts if h.name == "lxd1")
    driver = LxdDriver(s, lxd1)
    name = f"al{tag}"
    logs = tmp_path / "logs"
    procs: list[Background] = []
    manager.up(s, ["alertmanager"])
    try:
        driver.launch(NodeSpec(name=name, overcloud="alerts-test", node="n1", image=NODE_ALIAS,
                               cpu=2, memory_bytes=512 << 20))
        events = Events(s)
        procs += [Background(["devlake", "run"], env, logs / "devlake.log").start(),
                  Background(["alerts", "run", "--rules", str(rules)], env, logs / "alerts.log").start(),
                  Background(["agent", "run", "--layer", "resource"], env, logs / "agent.log").start()]
        alerts_proc, agent = procs[1], procs[2]

        def samples() -> int:
            st = read_state(s)
            return int(st["samples"]) if st else 0

        # the evaluator has joined its group and sees the host agent's samples
        wait_until(lambda: samples() > 20, timeout=90, interval=0.3, what="samples at the evaluator")
        events.poll()
        assert ours("/hook") == []

        # --- load: two busy loops in the container (capacity 0.5 CPU) ---------------------------
        onset = time.time_ns()
        busy = subprocess.run(
            ["lxc", "exec", name, "--", "sh", "-c",
             "for i in 1 2; do nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & done; echo ok"],
            env=lxc_env(s, lxd1), capture_output=True, text=True, timeout=60, check=True)
        assert "ok" in busy.stdout
        (over,) = wait_until(lambda: events.of(NodeOverloaded), timeout=FOR_S + 30, interval=0.2,
                             what="NodeOverloaded")
        detection = (over.time.timestamp() * 1e9 - onset) / 1e9
        print(f"\ndetection: load onset → NodeOverloaded {detection:.2f}s (for {FOR_S:g}s, "
              f"interval {INTERVAL_S:g}s)")
        assert over.host == "lxd1" and over.value > 85 and over.threshold == 85
        assert detection <= FOR_S + 2 * INTERVAL_S + 0.5, detection
        (firing,) = wait_until(lambda: ours("/hook"), timeout=15, what="webhook notification")
        assert firing["status"] == "firing" and firing["labels"]["host"] == "lxd1"
        assert [e.rule for e in events.of(AlertFiring)] == ["node-overloaded"]

        # Alertmanager holds it (and, routed by its own receiver, notified /am)
        def am_alerts() -> list[Any]:
            r = httpx.get(f"{s.alerts.alertmanager_base}/api/v2/alerts",
                          params={"filter": 'alertname="node-overloaded"'}, timeout=5)
            return [a for a in r.json() if a["labels"].get("host") == "lxd1"]

        (am,) = wait_until(am_alerts, timeout=15, what="the alert in Alertmanager")
        assert am["status"]["state"] == "active" and am["labels"]["severity"] == "critical"
        wait_until(lambda: ours("/am"), timeout=30, what="Alertmanager's own webhook receiver")

        # still firing for several more samples: no second notification (no storm)
        seen = samples()
        wait_until(lambda: samples() >= seen + 5, timeout=30, what="5 more samples while firing")
        assert len(ours("/hook")) == 1 and len(events.of(NodeOverloaded)) == 1

        # --- load stopped: resolved at the first sample below the recovery threshold -------
        subprocess.run(["lxc", "exec", name, "--", "sh", "-c", "pkill -f 'while :' || true"],
                       env=lxc_env(s, lxd1), capture_output=True, timeout=60, check=True)
        (resolved,) = wait_until(lambda: events.of(AlertResolved), timeout=30, what="AlertResolved")
        assert resolved.value < 70
        hooks = wait_until(lambda: len(ours("/hook")) == 2 and ours("/hook"), timeout=15,
                           what="the resolved notification")
        assert hooks[1]["status"] == "resolved" and hooks[1]["reason"] == "recovered"
        ql = InfluxQL(s.influx)
        series = ql.query(
            "SELECT cpu_percent FROM resource_undercloud WHERE host = 'lxd1' AND "
            f"time >= {over.time.timestamp() * 1e9:.0f} AND time <= {resolved.time.timestamp() * 1e9:.0f}",
            s.influx.default_database)
        values = [v for _, v in series[0]["values"]] if series else []
        assert values and values[-1] < 70 and all(v >= 70 for v in values[:-1]), values
        # the alerts measurement, for the dashboards' alerts view
        wait_until(lambda: ql.query("SELECT count(value) FROM alerts WHERE rule = 'node-overloaded' "
                                    "AND host = 'lxd1'", s.influx.default_database), timeout=15,
                   what="alerts measurement")
        (alert_series,) = ql.query("SELECT firing, value FROM alerts WHERE host = 'lxd1'",
                                   s.influx.default_database)
        assert [row[1] for row in alert_series["values"]] == [True, False]
        ql.close()

        # --- the agent stops: the no-data policy (alert) fires --------------------------------
        assert agent.stop() == 0
        nodata = wait_until(lambda: [h for h in ours("/hook") if h.get("reason") == "no_data"],
                            timeout=30, what="no-data notification")
        assert nodata[0]["status"] == "firing" and "no_data" in nodata[0]["annotations"]
        assert len(events.of(NodeOverloaded)) == 1   # silence is not overload
        assert alerts_proc.alive()
        listing = run_cli(["alerts", "list", "--rules", str(rules)], env)
        assert "node-overloaded" in listing.stdout and "firing" in listing.stdout, listing.stdout
        events.consumer.close()
    finally:
        for p in procs:
            p.stop()
        driver.delete(name)
        manager.down(s, ["alertmanager"])
    assert name not in driver.instances()
