"""Issue 3 end to end on real LXD + Docker + Kafka + InfluxDB, driven through the CLI.

Two LXD daemons are the two UnderCloud hosts (the session's `uc` fixture in conftest). The
node image comes from the shared cache (built on first use, several minutes cold). The
orchestrator and DevLake run as real processes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.hosts import OWNER_KEY, drivers
from overcloud.bus import events_topic
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


def _request(tmp: Path, name: str, nodes: int, port: int) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(REQUEST.format(name=name, nodes=nodes, port=port))
    return path


def _page(port: int) -> bool:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/wp-admin/install.php", timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and "WordPress" in r.text


def _ours(env: Env, name: str) -> dict[str, list[str]]:
    return {h: sorted(d.instances(name)) for h, d in drivers(env.settings()).items()}


def _nets(env: Env, name: str | None = None) -> dict[str, list[str]]:
    """Bridges on each host that carry our owner key (of `name`, or of any OverCloud)."""
    return {h: sorted(d.networks(name)) for h, d in drivers(env.settings()).items()}


def _processes(env: Env, logs: Path) -> tuple[Background, Background]:
    lake = Background(["devlake", "run"], env, logs / "devlake.log").start()
    orch = Background(["orchestrator", "run"], env, logs / "orchestrator.log").start()
    return lake, orch


def test_two_node_overcloud_end_to_end(uc: Env, tmp_path: Path) -> None:
    lake, orch = _processes(uc, tmp_path)
    name, port = "e2e-two", free_port()
    try:
        out = run_cli(["request", "apply", str(_request(tmp_path, name, 2, port)), "--wait"], uc,
                      timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        assert "is ready" in out.stdout and f"http://127.0.0.1:{port}/" in out.stdout
        assert _page(port), "the WordPress install page answers on the published port"
        placed = _ours(uc, name)
        assert sorted(len(v) for v in placed.values()) == [1, 1], placed  # spread: one per host
        nets = _nets(uc, name)
        assert sorted(len(v) for v in nets.values()) == [1, 1], nets  # its own bridge per host

        def samples() -> bool:
            res = run_cli(["metrics", "query",
                           "SELECT count(cpu_time_ns) FROM resource_instance GROUP BY node",
                           "--overcloud", name], uc)
            return res.returncode == 0 and f"{name}-n1" in res.stdout and f"{name}-n2" in res.stdout

        wait_until(samples, timeout=60, interval=0.5, what="resource samples of both nodes")

        # the same request event delivered again: still one OverCloud, no new container
        request_id = out.stdout.split("request id ")[1].split()[0]
        _redeliver(uc, request_id)
        wait_until(lambda: f"{request_id}: already handled" in orch.output(),
                   timeout=60, interval=0.2, what="the orchestrator to see the duplicate")
        assert _ours(uc, name) == placed

        shown = run_cli(["show", name], uc, check=True).stdout
        assert "lxd1" in shown and "lxd2" in shown and "healthy" in shown

        gone = run_cli(["delete", name, "--wait"], uc, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert _ours(uc, name) == {"lxd1": [], "lxd2": []}
        assert _nets(uc) == {"lxd1": [], "lxd2": []}, "its networks are gone with it"
        assert not any(d.instances() for d in drivers(uc.settings()).values())
        assert not list((Path(uc["OVERCLOUD_STATE_DIR"]) / "run").glob(f"agent-{name}-*"))
        assert not _agent_processes(name), "its agents stopped, not only their pid files gone"
        assert not (Path(uc["OVERCLOUD_STATE_DIR"]) / "secrets" / f"{name}.json").exists()
        dbs = run_cli(["metrics", "query", "SHOW DATABASES"], uc, check=True).stdout
        assert f"devlake_{name}" not in dbs
        assert not _page(port)
    finally:
        orch.stop()
        lake.stop()


def _redeliver(env: Env, request_id: str) -> None:
    """Find the OverCloudRequested message on the events topic and produce its bytes again."""
    from kafka import KafkaConsumer, KafkaProducer

    s = env.settings()
    c = KafkaConsumer(events_topic(s), bootstrap_servers=s.kafka.bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=5000)
    raw = next(m.value for m in c if orjson.loads(m.value).get("id") == request_id)
    c.close()
    p = KafkaProducer(bootstrap_servers=s.kafka.bootstrap)
    p.send(events_topic(s), value=raw).get(timeout=10)
    p.close()


def test_killed_orchestrator_resumes_and_overclouds_stay_apart(uc: Env, tmp_path: Path) -> None:
    lake, orch = _processes(uc, tmp_path)
    alpha, beta = "e2e-alpha", "e2e-beta"
    pa, pb = free_port(), free_port()
    try:
        out = run_cli(["request", "apply", str(_request(tmp_path, alpha, 1, pa))], uc,
                      check=True)
        assert "request id" in out.stdout
        # SIGKILL the orchestrator while it launches alpha's machine container
        wait_until(lambda: "launch:" in orch.output() or _ours(uc, alpha)["lxd1"]
                   + _ours(uc, alpha)["lxd2"], timeout=120, interval=0.1,
                   what="alpha's launch to begin")
        os.kill(orch.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        orch.proc.wait(10)  # type: ignore[union-attr]
        orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator-2.log").start()

        def ready(name: str) -> bool:
            listed = orjson.loads(run_cli(["list", "--json"], uc, check=True).stdout)
            return any(o["name"] == name and o["state"] == "ready" for o in listed)

        wait_until(lambda: ready(alpha), timeout=600, interval=0.5, what="alpha ready after resume")
        assert sum(len(v) for v in _ours(uc, alpha).values()) == 1, "exactly the requested node"
        assert _page(pa)

        out = run_cli(["request", "apply", str(_request(tmp_path, beta, 1, pb)), "--wait"], uc,
                      timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert _page(pa) and _page(pb)
        secrets = Path(uc["OVERCLOUD_STATE_DIR"]) / "secrets"
        sa, sb = (orjson.loads((secrets / f"{n}.json").read_bytes()) for n in (alpha, beta))
        assert sa["db_password"] != sb["db_password"] and oct((secrets / f"{alpha}.json")
                                                              .stat().st_mode)[-3:] == "600"
        assert set(_ours(uc, alpha)["lxd1"] + _ours(uc, alpha)["lxd2"]).isdisjoint(
            _ours(uc, beta)["lxd1"] + _ours(uc, beta)["lxd2"])
        net_a, net_b = ([b for v in _nets(uc, n).values() for b in v] for n in (alpha, beta))
        assert net_a and net_b and set(net_a).isdisjoint(net_b), (net_a, net_b)
        addr = {n: _addresses(uc, n) for n in (alpha, beta)}
        assert addr[alpha].isdisjoint(addr[beta]) and all(addr.values()), addr
        # separate networks, not only separate subnets: the host routes between its bridges,
        # so a node of one OverCloud must not get through to a node of another (both ways)
        a, b = _node(uc, alpha), _node(uc, beta)
        assert httpx.get(f"http://{b[2]}/", timeout=5).status_code, "beta's nginx answers the host"
        assert not _reaches(uc, a, b[2]), "alpha's node reached beta's nginx"
        assert not _reaches(uc, b, a[2]), "beta's node reached alpha's nginx"

        run_cli(["delete", beta, "--wait"], uc, check=True, timeout=300)
        assert _page(pa), "deleting beta leaves alpha serving"
        assert not _page(pb)
        run_cli(["delete", alpha, "--wait"], uc, check=True, timeout=300)
        assert not any(d.instances() for d in drivers(uc.settings()).values())
    finally:
        orch.stop()
        lake.stop()


def test_owner_key_marks_our_containers() -> None:
    assert OWNER_KEY.startswith("user.")


def _node(env: Env, name: str) -> tuple[str, str, str]:
    """(host, node, address) of the OverCloud's first node."""
    from orchestrator.registry import Registry

    rec = Registry(env.settings()).get(name)
    assert rec is not None and rec.nodes
    n = rec.nodes[0]
    return n.host, n.node, n.address


def _reaches(env: Env, src: tuple[str, str, str], address: str) -> bool:
    """Whether node `src` opens a TCP connection to port 80 at `address` (within 3 s)."""
    host, node, _ = src
    out = drivers(env.settings())[host].exec(
        node, "sh", "-c", f"curl -s -o /dev/null --connect-timeout 3 http://{address}/ "
        "&& echo open || echo closed", timeout=30)
    return out.strip().endswith("open")


def _addresses(env: Env, name: str) -> set[str]:
    import ipaddress

    from orchestrator.registry import Registry

    rec = Registry(env.settings()).get(name)
    assert rec is not None
    # the /27 subnet each node sits in (every OverCloud network is one /27)
    return {str(ipaddress.ip_network(f"{n.address}/27", strict=False)) for n in rec.nodes}


def test_failed_workflow_reports_the_task_and_delete_cleans_up(uc: Env, tmp_path: Path) -> None:
    """The exposure port is taken after placement: `expose` fails (mid-workflow, with its
    containers running and the stack deployed) → OverCloudFailed names the task and the
    reason, the OverCloud is marked failed, and `delete` leaves nothing on either host."""
    import socket

    from orchestrator.registry import Registry

    lake, orch = _processes(uc, tmp_path)
    name, port = "e2e-fail", free_port()
    blocker = socket.socket()
    try:
        apply = Background(["request", "apply", str(_request(tmp_path, name, 1, port)), "--wait"],
                           uc, tmp_path / "apply.log").start()
        reg = Registry(uc.settings())

        def placed() -> bool:
            rec = reg.get(name)
            return rec is not None and rec.port == port and bool(rec.nodes)

        wait_until(placed, timeout=120, interval=0.05, what="placement to record the port")
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        assert apply.proc is not None
        assert apply.proc.wait(600) == 1, apply.output()
        assert "failed" in apply.output() and "expose" in apply.output(), apply.output()
        rec = reg.get(name)
        assert rec is not None and rec.state == "failed" and rec.error.startswith("expose: ")
        assert "taken" in rec.error, rec.error
        failed = _events(uc, "OverCloudFailed", name)
        assert [e["payload"]["task"] for e in failed] == ["expose"], failed
        assert sum(len(v) for v in _ours(uc, name).values()) == 1  # half-made: a node is there
        blocker.close()

        gone = run_cli(["delete", name, "--wait"], uc, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert _ours(uc, name) == {"lxd1": [], "lxd2": []}
        assert _nets(uc, name) == {"lxd1": [], "lxd2": []}
        assert reg.get(name) is None
        assert not (Path(uc["OVERCLOUD_STATE_DIR"]) / "secrets" / f"{name}.json").exists()
    finally:
        blocker.close()
        orch.stop()
        lake.stop()


def _events(env: Env, kind: str, name: str) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer

    s = env.settings()
    c = KafkaConsumer(events_topic(s), bootstrap_servers=s.kafka.bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=3000)
    out = [e for e in (orjson.loads(m.value) for m in c)
           if e.get("type") == kind and e.get("payload", {}).get("name") == name]
    c.close()
    return out


def _agent_processes(name: str) -> list[int]:
    """Pids of agent processes of OverCloud `name` on this machine (from /proc).

    A child an agent has just forked to run `lxc` shows the agent's command line until it
    execs: counted once, as its parent."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"agent" in argv and b"--overcloud" in argv and name.encode() in argv:
            found[int(proc.name)] = ppid
    return sorted(pid for pid, ppid in found.items() if ppid not in found)
