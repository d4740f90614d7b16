"""Issue 4 items 2-3 end to end: flow and service layers from an OverCloud's own agents.

Real services only: two LXD daemons (the session's `uc` fixture), the orchestrator and DevLake
as processes, the broker and InfluxDB. A 2-node OverCloud (spread: MariaDB on n1, WordPress +
nginx on n2, on two UnderCloud hosts) is applied; the agents the orchestrator starts for it
must put, into that OverCloud's DevLake:

- `flow_peer` rows naming both ends (n1 → n2 and n2 → n1) once pages are loaded through the
  OverCloud's URL (each page makes WordPress query MariaDB across the two nodes), and
  `flow_iface` rows for each node's eth0;
- after `docker stop` of the WordPress container inside n2: a `service_http` point that is down
  and a `service_container` point for wordpress that is not running, each measured within two
  agent intervals of the stop.

Run with OC_TEST_BRIDGE_PREFIX / OC_TEST_SUBNET_PREFIX set for this session (see conftest).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.hosts import drivers
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: 2, cpu: 1, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""
PAGE = "/wp-admin/install.php"


def _query(env: Env, db: str, q: str) -> list[dict[str, Any]]:
    """Rows of an InfluxQL query as dicts (tags merged in), times in ns."""
    from devlake.sinks import client

    s = env.settings()
    with client(s.influx, 10) as http:  # the admin account (InfluxDB runs with auth on)
        r = http.get("/query", params={"db": db, "q": q, "epoch": "ns"})
    r.raise_for_status()
    rows = []
    for result in r.json().get("results", []):
        for series in result.get("series", []):
            for values in series["values"]:
                rows.append({**series.get("tags", {}), **dict(zip(series["columns"], values,
                                                                  strict=True))})
    return rows


def _load_pages(port: int, n: int = 3) -> None:
    for _ in range(n):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}{PAGE}", timeout=10)


def test_flow_peers_named_and_stopped_wordpress_seen(uc: Env, tmp_path: Path) -> None:
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    name, port = "e2e-flow", free_port()
    db = f"devlake_{name}"
    n1, n2 = f"{name}-n1", f"{name}-n2"
    interval = float(uc["OVERCLOUD_AGENT_INTERVAL"])
    request = tmp_path / f"{name}.yaml"
    request.write_text(REQUEST.format(name=name, port=port))
    try:
        out = run_cli(["request", "apply", str(request), "--wait"], uc, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        hosts = {h: sorted(d.instances(name)) for h, d in drivers(uc.settings()).items()}
        assert sorted(n for nodes in hosts.values() for n in nodes) == [n1, n2]
        assert all(len(v) == 1 for v in hosts.values()), hosts  # spread over both hosts
        host_of = {node: h for h, nodes in hosts.items() for node in nodes}

        # --- flow: WordPress (n2) ↔ MariaDB (n1) across the two hosts, both ends named -----
        def peers() -> list[dict[str, Any]]:
            _load_pages(port)
            return _query(uc, db, "SELECT last(bytes_sent) AS bytes_sent, "
                          "last(bytes_received) AS bytes_received FROM flow_peer "
                          "GROUP BY node, peer, tier, peer_tier")

        def both_ends() -> bool:
            # (a null here was seen once in CI, cause unknown: read as "not yet")
            seen = {(r["node"], r["peer"]) for r in peers()
                    if (r["bytes_sent"] or 0) > 0 and (r["bytes_received"] or 0) > 0}
            return {(n1, n2), (n2, n1)} <= seen

        wait_until(both_ends, timeout=120, interval=1.0, what="flow_peer rows n1↔n2")
        rows = {(r["node"], r["peer"]): r for r in peers()}
        assert rows[(n1, n2)]["tier"] == "db" and rows[(n1, n2)]["peer_tier"] == "app+web"
        assert rows[(n2, n1)]["tier"] == "app+web" and rows[(n2, n1)]["peer_tier"] == "db"
        # what the web node sent to the DB node is what the DB node received from it (both
        # agents read at different moments, so only the order of magnitude must agree)
        sent, got = rows[(n2, n1)]["bytes_sent"], rows[(n1, n2)]["bytes_received"]
        assert 0.3 < sent / got < 3, (sent, got)

        ifaces = _query(uc, db, "SELECT last(bytes_received) FROM flow_iface GROUP BY node, iface")
        eth0 = {r["node"]: r["last"] for r in ifaces if r["iface"] == "eth0"}
        assert set(eth0) == {n1, n2} and all(v > 0 for v in eth0.values()), ifaces

        # --- service: up first, then WordPress stopped inside n2 ------------------------------
        def latest_http() -> list[dict[str, Any]]:
            return _query(uc, db, "SELECT up, status, body_ok FROM service_http "
                          "ORDER BY time DESC LIMIT 1")

        wait_until(lambda: bool(latest_http()) and latest_http()[0]["up"] is True,
                   timeout=60, interval=0.5, what="service_http up")
        http_rows = _query(uc, db, "SELECT count(up) FROM service_http GROUP BY node")
        assert [r["node"] for r in http_rows] == [n2], "one probe, from the node serving the URL"
        svc = _query(uc, db, "SELECT last(running) AS running FROM service_container "
                     "GROUP BY node, service")
        assert {(r["node"], r["service"]) for r in svc} >= {(n1, "db"), (n2, "wordpress"),
                                                            (n2, "nginx")}

        node2 = drivers(uc.settings())[host_of[n2]]
        node2.exec(n2, "sh", "-c", "docker stop $(docker ps -q --filter "
                   "label=com.docker.compose.service=wordpress)", timeout=120)
        stopped_ns = time.time_ns()

        def after(select: str, where: str = "") -> list[dict[str, Any]]:
            cond = f"({where}) AND " if where else ""
            return _query(uc, db, f"{select} WHERE {cond}time > {stopped_ns} "
                          "ORDER BY time ASC LIMIT 1")

        http_q = "SELECT up, status, error FROM service_http"
        cont_q = ("SELECT running, state FROM service_container", "service = 'wordpress'")
        wait_until(lambda: bool(after(http_q)), timeout=60, interval=0.5,
                   what="a service_http point after the stop")
        wait_until(lambda: bool(after(*cont_q)), timeout=60, interval=0.5,
                   what="a service_container point after the stop")
        (probe,), (cont,) = after(http_q), after(*cont_q)
        assert probe["up"] is False and probe["status"] != 200, probe
        assert cont["running"] is False and cont["state"] == "exited", cont
        budget = 2 * interval * 1e9
        assert probe["time"] - stopped_ns <= budget and cont["time"] - stopped_ns <= budget, (
            probe, cont, stopped_ns)

        gone = run_cli(["delete", name, "--wait"], uc, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not list((Path(uc["OVERCLOUD_STATE_DIR"]) / "run").glob(f"agent-{name}-*"))
        assert not any(d.instances(name) for d in drivers(uc.settings()).values())
    finally:
        orch.stop()
        lake.stop()
