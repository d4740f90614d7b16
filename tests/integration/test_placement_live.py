"""Placement on live load: `resource_undercloud` samples in the real DevLake (InfluxDB) steer
`least-loaded`, and `request apply --dry-run` prints the plan and creates nothing.

Real services only: the session's InfluxDB and tansu broker, and two real LXD daemons started
by the project's own `LxdHostService` — bare ones (a `dir` pool, no image, no container), as
placement only needs them to answer their API; the load is what the DevLake says. Samples go
in through the DevLake's own sink (line protocol on `/write`), as the consumer writes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from daemons.lxd import LxdHostService
from devlake.sinks import InfluxQL, make_sink
from orchestrator.inventory import read_load
from orchestrator.registry import Registry
from overcloud.bus import events_topic
from overcloud.lineprotocol import encode
from overcloud.samples import Sample, now_ns
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GiB = 1024**3


@pytest.fixture
def bare_hosts(env: Env) -> Iterator[Env]:
    """Two real LXD daemons `pl1`/`pl2` (no image, empty `dir` pool), stopped by pid after."""
    state = Path(tempfile.mkdtemp(prefix="oc-pl-", dir="/tmp"))
    state.chmod(0o711)
    hosts = Env(env, OVERCLOUD_STATE_DIR=str(state), OVERCLOUD_UNDERCLOUD_HOSTS="pl1,pl2",
                OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX=os.environ.get("OC_TEST_BRIDGE_PREFIX", "ocpl"),
                OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX=os.environ.get("OC_TEST_SUBNET_PREFIX", "10.239"),
                OVERCLOUD_UNDERCLOUD_STORAGE_DRIVER="dir",
                OVERCLOUD_UNDERCLOUD_HTTPS_PORT=str(free_port()),
                # the size of each host, as the samples below report it (placement reads the
                # settings or the inventory, not what an agent reported)
                OVERCLOUD_UNDERCLOUD_HOST_CPUS="8",
                OVERCLOUD_UNDERCLOUD_HOST_MEMORY=str(16 * GiB))
    s = hosts.settings()
    started = []
    try:
        for h in s.local_lxd_hosts:
            svc = LxdHostService(s, h)
            svc.start()
            started.append(svc)
        yield hosts
    finally:
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(state, ignore_errors=True)


def _write_load(env: Env) -> None:
    """A minute of host-agent samples: pl1 busy (80 % CPU, 5 MB/s), pl2 quiet (5 %)."""
    s = env.settings()
    now = now_ns()
    samples = []
    for i in range(6):
        t = now - i * 10 * 10**9
        for host, cores, mem, inst, net in (("pl1", 6.4, 8 * GiB, 3, 5e6),
                                             ("pl2", 0.4, 1 * GiB, 1, 1e3)):
            samples.append(Sample("resource_undercloud", {"host": host, "node": host,
                                                          "layer": "resource"}, {
                "cpu_percent": round(100 * cores / 8, 3), "cpu_cores_used": cores,
                "capacity_cpus": 8.0, "mem_usage": mem, "mem_percent": 100 * mem / (16 * GiB),
                "capacity_memory": 16 * GiB, "instances": inst, "running_instances": inst,
                "net_bytes_per_s": net}, t))
    sink = make_sink(s.influx)
    try:
        sink.ensure_database(s.influx.default_database)
        sink.write(s.influx.default_database, encode(samples))
    finally:
        sink.close()


def _request(tmp_path: Path, name: str, strategy: str) -> Path:
    path = tmp_path / f"{name}-{strategy}.yaml"
    path.write_text(f"""apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.com
cluster: {{nodes: 2, cpu: 1, memory: 1GiB}}
placement: {{strategy: {strategy}}}
saas: {{stack: wordpress}}
""")
    return path


def _plan(out: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    nodes = dict(re.findall(r"^\s+(\S+-n\d+)\s+→ (\S+)", out, re.M))
    scores = {h: float(v) for h, v in re.findall(r"^\s+(\S+)\s+score\s+([\d.]+)", out, re.M)}
    excluded = dict(re.findall(r"^\s+(\S+)\s+excluded: (.*)$", out, re.M))
    return nodes, scores, excluded


def test_least_loaded_follows_devlake_load_and_dry_run_creates_nothing(
        bare_hosts: Env, tmp_path: Path) -> None:
    env = bare_hosts
    s = env.settings()
    _write_load(env)
    ql = InfluxQL(s.influx)
    try:
        load = wait_until(lambda: (lambda ld: ld if {"pl1", "pl2"} <= set(ld) else None)(
            read_load(ql, s.influx.default_database)), timeout=20, interval=0.2,
            what="both hosts' load in the DevLake")
    finally:
        ql.close()
    assert load["pl1"].cpu_percent == pytest.approx(80.0)
    assert load["pl2"].cpu_percent == pytest.approx(5.0)

    name = env["TEST_OVERCLOUD"]
    # least-loaded: both nodes to the quiet host (5 % + 2 × 12.5 % stays under pl1's 80 %)
    proc = run_cli(["request", "apply", str(_request(tmp_path, name, "least-loaded")),
                    "--dry-run"], env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes, scores, excluded = _plan(proc.stdout)
    assert nodes == {f"{name}-n1": "pl2", f"{name}-n2": "pl2"}, proc.stdout
    # score = 100 - max(cpu %, mem %): pl2 100 - 6.25 (1 of 16 GiB), pl1 100 - 80
    assert scores == {"pl1": pytest.approx(20.0), "pl2": pytest.approx(93.75)}, proc.stdout
    assert not excluded
    assert "cpu 80.0%" in proc.stdout and "cpu 5.0%" in proc.stdout
    assert "dry run: nothing was created, no event was published" in proc.stdout

    # spread on the same hosts ignores the load: one node per host
    spread = run_cli(["request", "apply", str(_request(tmp_path, name, "spread")), "--dry-run"],
                     env, timeout=120)
    assert spread.returncode == 0, spread.stderr
    assert sorted(_plan(spread.stdout)[0].values()) == ["pl1", "pl2"]

    # a drained host is never chosen, and the plan says why it was left out
    run_cli(["undercloud", "drain", "pl2"], env, timeout=60, check=True)
    drained = run_cli(["request", "apply", str(_request(tmp_path, name, "least-loaded")),
                       "--dry-run"], env, timeout=120)
    assert drained.returncode == 0, drained.stderr
    nodes, _, excluded = _plan(drained.stdout)
    assert set(nodes.values()) == {"pl1"}
    assert excluded["pl2"].startswith("draining")
    listed = json.loads(run_cli(["undercloud", "list", "--json"], env, timeout=60,
                                check=True).stdout)
    by_host = {h["host"]: h for h in listed["hosts"]}
    assert by_host["pl2"]["state"] == "draining" and by_host["pl1"]["state"] == "ready"
    assert by_host["pl1"]["load"]["cpu_percent"] == pytest.approx(80.0)
    assert by_host["pl1"]["instances"] == 3 and by_host["pl1"]["capacity"]["cpu"] == 8.0

    # nothing was created: no OverCloud record, no events topic (nothing was ever published)
    assert Registry(s).get(name) is None
    consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap)
    try:
        assert events_topic(s) not in consumer.topics()
    finally:
        consumer.close()


def test_place_action_records_the_least_loaded_plan_once(bare_hosts: Env, tmp_path: Path) -> None:
    """The orchestrator's `place` task on the same live inputs: it records the plan in the
    registry (where `launch` reads it) and keeps it when re-run after a crash."""
    import threading

    from orchestrator.hosts import drivers
    from orchestrator.provision import Context, register_actions
    from orchestrator.request import load_request
    from orchestrator.workflow import ActionRegistry, TaskContext
    from overcloud.bus import KafkaEventBus

    env = bare_hosts
    s = env.settings()
    _write_load(env)
    req = load_request(_request(tmp_path, env["TEST_OVERCLOUD"] + "p", "least-loaded"))
    registry = Registry(s)
    registry.admit(req.name, req.owner, req.to_spec(), "request-1")
    bus = KafkaEventBus(s)
    sink = make_sink(s.influx)
    actions = ActionRegistry()
    register_actions(actions, Context(settings=s, hosts=dict(drivers(s)), registry=registry,
                                      bus=bus, database_admin=sink))
    reports: list[str] = []

    def run_place() -> object:
        return actions.get("place")(TaskContext(
            workflow_id="wf-1", task="place", args={}, results={}, input={"spec": req.to_spec()},
            attempt=1, cancelled=threading.Event(), _report=reports.append))

    try:
        ql = InfluxQL(s.influx)
        wait_until(lambda: {"pl1", "pl2"} <= set(read_load(ql, s.influx.default_database)),
                   timeout=20, interval=0.2, what="load in the DevLake")
        ql.close()
        decision = run_place()
        assert decision == {f"{req.name}-n1": "pl2", f"{req.name}-n2": "pl2"}
        rec = registry.get(req.name)
        assert rec is not None and {n.node: n.host for n in rec.nodes} == decision
        assert rec.port is not None and set(registry.network_slots(req.name)) == {"pl2"}
        assert "least-loaded; scores pl1 20.0, pl2 93.8" in reports[-1], reports
        # a re-run (after a crash) keeps the recorded decision, even if the hosts changed since
        run_cli(["undercloud", "drain", "pl2"], env, timeout=60, check=True)
        assert run_place() == decision
    finally:
        registry.forget(req.name)
        bus.close()
        sink.close()
