"""Pause and resume on real LXD: capacity given back, data kept, same URL, series go on.

Two hosts of 2 cpus each (this machine's count, the default capacity). OverCloud A (2 nodes
of 1 cpu, spread: one per host) leaves 1 cpu free on each, so B (1 node of 2 cpus) has no
room — until A is paused. B is then applied and takes one host whole; resuming A starts
its other node where it was and moves the one whose host B now fills. A's database row,
URL and DevLake series (same tags) are there after it.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from daemons.process import port_open
from orchestrator.hosts import drivers
from orchestrator.inventory import allocations, default_capacity
from orchestrator.registry import Registry
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: {nodes}, cpu: {cpu}, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


def _doc(tmp: Path, name: str, nodes: int, cpu: int, port: int) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(DOC.format(name=name, nodes=nodes, cpu=cpu, port=port))
    return path


def _sql(env: Env, name: str, node: str, host: str, statement: str) -> str:
    secrets = orjson.loads((env.settings().state_dir / "secrets" / f"{name}.json").read_bytes())
    return drivers(env.settings())[host].exec(
        node, "docker", "exec", "oc-db-1", "mariadb", "-uroot",
        f"-p{secrets['db_root_password']}", "-N", "-e", statement, timeout=60)


def _status(env: Env, host: str, node: str) -> str:
    d = drivers(env.settings())[host]
    return str(d._state(node))  # type: ignore[attr-defined]


def test_a_paused_overcloud_gives_its_room_back_and_resumes_with_its_url(
        uc: Env, tmp_path: Path) -> None:
    cpus, _ = default_capacity(uc.settings())
    if cpus != 2:
        pytest.skip(f"the capacity arithmetic below is for 2-cpu hosts; this machine has {cpus}")
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    a, b = "pause-a", "pause-b"
    port = free_port()
    reg = Registry(uc.settings())
    try:
        out = run_cli(["request", "apply", str(_doc(tmp_path, a, 2, 1, port)), "--wait"], uc,
                      timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        rec = reg.get(a)
        assert rec is not None
        where = {n.node: n.host for n in rec.nodes}
        assert sorted(where.values()) == ["lxd1", "lxd2"], where
        db = f"{a}-n1"
        _sql(uc, a, db, where[db], "CREATE TABLE wordpress.oc_marker (v INT); "
                                   "INSERT INTO wordpress.oc_marker VALUES (42)")
        b_doc = _doc(tmp_path, b, 1, 2, free_port())
        full = run_cli(["request", "apply", str(b_doc), "--dry-run"], uc)
        assert full.returncode == 1 and "no UnderCloud host can take" in full.stderr, \
            full.stdout + full.stderr

        paused = run_cli(["pause", a, "--wait"], uc, timeout=600)
        assert paused.returncode == 0, paused.stdout + paused.stderr + orch.output()
        assert f"{a} is paused" in paused.stdout
        assert reg.get(a).state == "paused"  # type: ignore[union-attr]
        assert {_status(uc, h, n) for n, h in where.items()} == {"Stopped"}
        assert not list((uc.settings().state_dir / "run").glob(f"agent-{a}-*.pid"))
        assert a not in {n.split("-n")[0] for al in allocations(reg).values() for n in al.nodes}
        shown = run_cli(["show", a], Env(uc, COLUMNS="200"), check=True).stdout
        assert "paused" in shown and "node stopped (paused)" in shown, shown
        again = run_cli(["pause", a], uc)
        assert again.returncode == 1 and "is paused" in again.stderr, again.stderr
        assert not port_open("127.0.0.1", port), "the URL refuses connections while paused"

        out = run_cli(["request", "apply", str(b_doc), "--wait"], uc, timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        taken = reg.get(b).nodes[0].host  # type: ignore[union-attr]
        (moving,) = [n for n, h in where.items() if h == taken]

        since = time.time_ns()
        resumed = run_cli(["resume", a, "--wait"], uc, timeout=900)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr + orch.output()
        rec = reg.get(a)
        assert rec is not None and rec.state == "ready" and rec.url == f"http://127.0.0.1:{port}/"
        now = {n.node: n.host for n in rec.nodes}
        assert now[moving] != taken, f"{moving} should have left {taken}, full with {b}"
        assert all(now[n] == where[n] for n in now if n != moving), (where, now)
        assert _sql(uc, a, db, now[db], "SELECT v FROM wordpress.oc_marker").strip() == "42"
        import httpx

        assert httpx.get(rec.url + "wp-admin/install.php", timeout=10).status_code == 200

        def series_go_on() -> bool:
            res = run_cli(["metrics", "query",
                           f"SELECT count(cpu_time_ns) FROM resource_instance WHERE "
                           f"node = '{moving}' AND host = '{now[moving]}' AND "
                           f"time > {since}", "--overcloud", a], uc)
            return res.returncode == 0 and "count" in res.stdout
        wait_until(series_go_on, timeout=90, interval=1,
                   what=f"samples of {moving} after the resume, same tags")

        for name in (a, b):
            run_cli(["delete", name, "--wait"], uc, check=True, timeout=300)
    finally:
        orch.stop()
        lake.stop()
