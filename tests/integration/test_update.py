"""A living OverCloud on real LXD: `request apply` of a changed document to one that runs.

One OverCloud (retention 12h, 1 cpu, 1GiB), then: a dry run prints the plan and changes
nothing; the update resizes the running node live (LXD limits change, the container's init
keeps its pid: no restart) and alters the DevLake's retention while a probe GETs the page
every 100 ms (no failed request); `OverCloudUpdated` is published; the same document again
changes nothing; a change that cannot be made in place is refused and changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from devlake.sinks import InfluxQL
from lxdclient import lxc
from orchestrator.downtime import DowntimeProbe
from orchestrator.hosts import LxdDriver, drivers
from overcloud import influxql
from overcloud.bus import events_topic, make_consumer
from overcloud.events import OverCloudUpdated
from overcloud.waiting import wait_until
from overcloud.wire import decode_event
from tests.conftest import Env
from tests.helpers import Background, free_port, install_wordpress, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: 1, cpu: {cpu}, memory: {memory}}}
devlake: {{retention: {retention}}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


def _doc(tmp: Path, name: str, port: int, cpu: int = 1, memory: str = "1GiB",
         retention: str = "12h", tag: str = "") -> Path:
    path = tmp / f"{name}{tag}.yaml"
    path.write_text(DOC.format(name=name, port=port, cpu=cpu, memory=memory,
                               retention=retention))
    return path


def _node(env: Env, node: str) -> tuple[LxdDriver, dict[str, str], int]:
    """(its host, its limits, its init's pid) of a node, as LXD reports them."""
    for d in drivers(env.settings()).values():
        assert isinstance(d, LxdDriver)
        if node in d.instances():
            cfg = json.loads(lxc(env.settings(), d.host, "query", f"/1.0/instances/{node}").stdout)
            state = json.loads(lxc(env.settings(), d.host, "query",
                                   f"/1.0/instances/{node}/state").stdout)
            limits = {k: v for k, v in cfg["config"].items() if k.startswith("limits.")}
            return d, limits, int(state["pid"])
    raise AssertionError(f"{node} runs on no host")


def _retention(env: Env, name: str) -> str:
    s = env.settings()
    (series,) = InfluxQL(s.influx).query(
        influxql.show_retention_policies(f"{s.influx.database_prefix}{name}"))
    cols = series["columns"]
    return next(str(r[cols.index("duration")]) for r in series["values"]
                if r[cols.index("default")])


def _workflows(env: Env, name: str) -> list[dict[str, object]]:
    shown = run_cli(["show", name, "--json"], env, check=True).stdout
    return list(json.loads(shown)["workflows"])


def test_a_running_overcloud_is_resized_live_and_its_retention_changed(
        uc: Env, tmp_path: Path) -> None:
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    name, port = "upd-one", free_port()
    node = f"{name}-n1"
    events = make_consumer(uc.settings(), [events_topic(uc.settings())], f"upd-{port}")
    try:
        out = run_cli(["request", "apply", str(_doc(tmp_path, name, port)), "--wait"], uc,
                      timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        assert _retention(uc, name) == "12h0m0s", "the request's retention, not the default"
        _, limits, pid = _node(uc, node)
        assert limits == {"limits.cpu": "1", "limits.memory": str(1 << 30)}, limits
        changed = _doc(tmp_path, name, port, cpu=2, memory="1536MiB", retention="90d",
                       tag="-changed")
        plan = [f"~ {node} cpu 1 → 2", f"~ {node} memory 1GiB → 1.5GiB", "~ retention 12h → 90d"]

        dry = run_cli(["request", "apply", str(changed), "--dry-run"], uc)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert all(line in dry.stdout for line in plan), dry.stdout
        assert "nothing was changed" in dry.stdout
        assert _node(uc, node)[1] == limits and _retention(uc, name) == "12h0m0s"
        before = len(_workflows(uc, name))

        with DowntimeProbe(f"http://127.0.0.1:{port}/wp-admin/install.php") as probe:
            up = run_cli(["request", "apply", str(changed), "--wait"], uc, timeout=600)
            wait_until(lambda: probe.ok >= 10, timeout=60, what="ten good probes")
        assert up.returncode == 0, up.stdout + up.stderr + orch.output()
        assert all(line in up.stdout for line in plan) and "is updated" in up.stdout, up.stdout
        assert probe.failures == 0, (probe.outages, probe.kinds())
        _, now, pid_after = _node(uc, node)
        assert now == {"limits.cpu": "2", "limits.memory": str(1536 << 20)}, now
        assert pid_after == pid, "the node was resized live, not restarted"
        assert _retention(uc, name) == "2160h0m0s"
        spec = json.loads(run_cli(["show", name, "--json"], uc, check=True).stdout)["spec"]
        assert spec["cluster"]["memory"] == "1536MiB" and spec["devlake"]["retention"] == "90d"

        def updated() -> list[OverCloudUpdated]:
            seen = [decode_event(m.value) for ms in events.poll(timeout_ms=200).values()
                    for m in ms]
            found.extend(e for e in seen if isinstance(e, OverCloudUpdated) and e.name == name)
            return found

        found: list[OverCloudUpdated] = []
        (ev,) = wait_until(updated, timeout=30, what="OverCloudUpdated")
        assert ev.changes == plan and ev.spec["cluster"]["cpu"] == 2

        # the same document again: nothing to change, nothing run
        again = run_cli(["request", "apply", str(changed), "--wait"], uc, timeout=120)
        assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
        assert len(_workflows(uc, name)) == before + 1
        # a change that cannot be made in place: refused with the reason, nothing changes
        moved = _doc(tmp_path, name, free_port(), cpu=1, tag="-moved")
        refused = run_cli(["request", "apply", str(moved), "--wait"], uc, timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"{moved}:9: saas.expose.port: cannot change in place" in refused.stderr, \
            refused.stderr
        assert "nothing was changed" in refused.stderr
        assert _node(uc, node)[1] == now and len(_workflows(uc, name)) == before + 1
        assert updated() == [ev], "no second OverCloudUpdated"

        run_cli(["delete", name, "--wait"], uc, check=True, timeout=300)
    finally:
        events.close()
        orch.stop()
        lake.stop()


SPLIT = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
saas:
  stack: wordpress
  tiers: {{app: {{replicas: {app}}}, web: {{replicas: {web}}}}}
  expose: {{port: {port}}}
"""


def _split(tmp: Path, name: str, port: int, app: int, web: int = 1) -> Path:
    path = tmp / f"{name}-app{app}-web{web}.yaml"
    path.write_text(SPLIT.format(name=name, port=port, nodes=max(app, web) + 1, app=app,
                                 web=web))
    return path


def _nginx_served(env: Env, node: str, path: str) -> int:
    """How many requests for `path` the nginx on `node` has answered (its access log)."""
    d, _, _ = _node(env, node)
    log = d.exec(node, "docker", "compose", "--project-directory", "/srv/stack", "logs",
                 "--no-log-prefix", "nginx", timeout=60)
    return sum(1 for line in log.splitlines() if f'"GET {path} HTTP' in line)


def _served_by(env: Env, node: str, path: str) -> int:
    """How many requests for `path` the WordPress on `node` has answered (Apache's access
    log of the site, in the container)."""
    d, _, _ = _node(env, node)
    log = d.exec(node, "docker", "compose", "--project-directory", "/srv/stack", "exec", "-T",
                 "wordpress", "cat", "/var/log/apache2/other_vhosts_access.log", timeout=60)
    return sum(1 for line in log.splitlines() if f'"GET {path} HTTP' in line)


def _scale_down(uc: Env, tmp: Path, name: str, port: int, page: str, orch: Background,
                planned: str) -> None:
    """Back to one app and one web replica under a 100 ms probe: the plan says `planned`,
    no probe fails, and the retired node (`<name>-n3`) is gone from every host."""
    with DowntimeProbe(f"http://127.0.0.1:{port}{page}") as probe:
        down = run_cli(["request", "apply", str(_split(tmp, name, port, 1)), "--wait"], uc,
                       timeout=900)
        wait_until(lambda: probe.ok >= 10, timeout=60, what="ten good probes")
    assert down.returncode == 0, down.stdout + down.stderr + orch.output()
    assert planned in down.stdout, down.stdout
    assert probe.failures == 0, (probe.outages, probe.kinds())
    assert not any(f"{name}-n3" in d.instances() for d in drivers(uc.settings()).values())


def test_app_replicas_scale_up_and_down_with_no_failed_request(uc: Env, tmp_path: Path) -> None:
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    name, port = "upd-scale", free_port()
    page = "/"  # the front page: public, spread over the replicas (wp-admin goes to the first)
    new = f"{name}-n3"
    try:
        out = run_cli(["request", "apply", str(_split(tmp_path, name, port, 1)), "--wait"], uc,
                      timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        install_wordpress(port)

        with DowntimeProbe(f"http://127.0.0.1:{port}{page}") as probe:
            up = run_cli(["request", "apply", str(_split(tmp_path, name, port, 2)), "--wait"],
                         uc, timeout=900)
            assert up.returncode == 0, up.stdout + up.stderr + orch.output()
            # the new replica takes its share of the probe's requests
            try:
                wait_until(lambda: _served_by(uc, new, page) >= 5, timeout=60,
                           what=f"{new}'s WordPress to answer requests sent to the URL")
            except AssertionError:
                raise
            except Exception as exc:
                d, _, _ = _node(uc, f"{name}-n2")
                conf = d.exec(f"{name}-n2", "sh", "-c", "docker exec $(docker ps -qf "
                              "name=nginx) cat /etc/nginx/conf.d/overcloud.conf", timeout=60)
                raise AssertionError(f"{exc}\n{up.stdout}\n{conf}") from None
        assert f"+ node {new} (app, placed by spread)" in up.stdout and "is updated" in up.stdout
        assert probe.failures == 0 and probe.ok > 0, (probe.outages, probe.kinds())
        shown = json.loads(run_cli(["show", name, "--json"], uc, check=True).stdout)
        assert sorted(n["node"] for n in shown["nodes"]) == [f"{name}-n{i}" for i in (1, 2, 3)]
        assert shown["spec"]["saas"]["tiers"]["app"]["replicas"] == 2
        assert _served_by(uc, f"{name}-n2", page) > 0, "the first replica still serves too"
        # an uploaded file lives on the primary replica (n2: the first app node), and every
        # request for it goes there: none is answered by the new replica, which lacks it
        d2, _, _ = _node(uc, f"{name}-n2")
        d2.exec(f"{name}-n2", "docker", "compose", "--project-directory", "/srv/stack", "exec",
                "-T", "wordpress", "sh", "-c", "mkdir -p /var/lib/wordpress/wp-content/uploads/"
                "2026 && echo picture > /var/lib/wordpress/wp-content/uploads/2026/p.txt",
                timeout=60)
        got = [httpx.get(f"http://127.0.0.1:{port}/wp-content/uploads/2026/p.txt",
                         timeout=30).status_code for _ in range(10)]
        assert got == [200] * 10, got
        assert _served_by(uc, new, "/wp-content/uploads/2026/p.txt") == 0

        _scale_down(uc, tmp_path, name, port, page, orch,
                    f"- node {new} (app; leaves the upstream and drains first)")
        shown = json.loads(run_cli(["show", name, "--json"], uc, check=True).stdout)
        assert sorted(n["node"] for n in shown["nodes"]) == [f"{name}-n1", f"{name}-n2"]
        assert not (uc.settings().state_dir / "run" / f"agent-{name}-{new}.pid").exists()

        # a second web replica: nginx of its own behind the edge, in the URL's route once it
        # serves; then out of the route, drained, and deleted — no request fails either way
        with DowntimeProbe(f"http://127.0.0.1:{port}{page}") as probe:
            up = run_cli(["request", "apply", str(_split(tmp_path, name, port, 1, web=2)),
                          "--wait"], uc, timeout=900)
            assert up.returncode == 0, up.stdout + up.stderr + orch.output()
            # the edge balances connections (the probe keeps one alive, on one node): twenty
            # fresh ones take the web nodes in turn
            codes = [httpx.get(f"http://127.0.0.1:{port}{page}", timeout=30).status_code
                     for _ in range(20)]
            assert codes == [200] * 20, codes
            assert _nginx_served(uc, new, page) >= 5, f"{new}'s nginx answers its share"
            assert _nginx_served(uc, f"{name}-n2", page) >= 5, "and the first web node too"
        assert f"+ node {new} (web, placed by spread)" in up.stdout, up.stdout
        assert probe.failures == 0 and probe.ok > 0, (probe.outages, probe.kinds())
        route = run_cli(["edge", "show"], uc, check=True).stdout
        assert str(port) in route and name in route, route
        _scale_down(uc, tmp_path, name, port, page, orch,
                    f"- node {new} (web; leaves the URL's route and drains first)")

        run_cli(["delete", name, "--wait"], uc, check=True, timeout=300)
        # the URL's port closes with the OverCloud
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        orch.stop()
        lake.stop()
