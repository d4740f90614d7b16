"""The UnderCloud inventory: what operators change survives a new process, drivers see added
remotes, the views join records/observations/load as placement expects; and every operator
mistake on `overcloud undercloud …` is one clear line, with nothing already recorded lost.

Real SQLite files in a temp state dir; the CLI runs as a subprocess (no services needed:
these commands never touch a host, and a closed InfluxDB port only hides the load).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.hosts import drivers
from orchestrator.inventory import (
    Allocation,
    HostLoad,
    HostRecord,
    Inventory,
    allocations,
    host_views,
    parse_labels,
    read_load,
)
from orchestrator.registry import Registry
from overcloud.errors import UserError
from overcloud.settings import Settings, load_settings
from tests.helpers import free_port, run_cli

GiB = 1024**3


def _env(tmp_path: Path) -> dict[str, str]:
    return {"OVERCLOUD_STATE_DIR": str(tmp_path / "state"), "OVERCLOUD_KAFKA_PORT": str(free_port()),
            "OVERCLOUD_INFLUX_PORT": str(free_port()), "OVERCLOUD_CONFIG": "",
            "OVERCLOUD_UNDERCLOUD_HOSTS": "lxd1,lxd2"}


def _settings(tmp_path: Path) -> Settings:
    return load_settings(env=_env(tmp_path))


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    path = tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(path), "-days", "1", "-subj", "/CN=far"],
                   check=True, capture_output=True)
    return path


def test_operator_changes_survive_a_new_process(tmp_path: Path, cert: Path) -> None:
    s = _settings(tmp_path)
    inv = Inventory(s)
    inv.add_remote("far", "https://127.0.0.1:8443", cert, site="edge", labels={"zone": "b"},
                   cpus=4, memory=8 * GiB)
    inv.set_draining("lxd1", True)
    inv.update("lxd2", labels={"ssd": "true"}, cpus=16)
    inv.update("lxd2", pool=3)
    inv.add_site("os1", openstack_cloud="mycloud")
    inv.close()

    again = Inventory(_settings(tmp_path))
    hosts = {h.name: h for h in again.hosts()}
    assert list(hosts) == ["lxd1", "lxd2", "far"]
    assert hosts["lxd1"].draining and hosts["lxd1"].site == "local" and not hosts["lxd1"].added
    assert hosts["lxd2"].labels == {"ssd": "true"} and hosts["lxd2"].cpus == 16
    assert hosts["lxd2"].pool == 3 and hosts["lxd1"].pool is None  # the warm pool's target
    far = hosts["far"]
    assert far.added and far.site == "edge" and far.labels == {"zone": "b"}
    assert far.cpus == 4 and far.memory == 8 * GiB
    # the pinned certificate is a copy in the state dir, not the operator's file
    assert far.server_cert is not None and far.server_cert.read_bytes() == cert.read_bytes()
    assert far.server_cert.is_relative_to(s.state_dir)
    sites = {x.name: x for x in again.sites()}
    assert sites["os1"].kind == "openstack" and sites["os1"].cloud == "mycloud"
    assert sites["edge"].kind == "lxd" and "local" in sites
    # a capacity override can be dropped again (labels and site stay)
    cleared = again.clear_capacity("lxd2")
    assert cleared.cpus is None and cleared.memory is None and cleared.labels == {"ssd": "true"}
    assert Inventory(_settings(tmp_path)).host("lxd2").cpus is None
    # undrain is persisted too, and is idempotent
    again.set_draining("lxd1", False)
    again.set_draining("lxd1", False)
    assert not Inventory(_settings(tmp_path)).host("lxd1").draining


def test_added_remote_becomes_a_driver(tmp_path: Path, cert: Path) -> None:
    s = _settings(tmp_path)
    assert sorted(drivers(s)) == ["lxd1", "lxd2"]  # no inventory yet: the settings' hosts
    Inventory(s).add_remote("far", "https://127.0.0.1:8443", cert)
    d = drivers(s)
    assert sorted(d) == ["far", "lxd1", "lxd2"]
    host = d["far"].host
    assert host.remote and host.url == "https://127.0.0.1:8443"
    assert host.tls is not None
    assert host.tls[0] == s.state_dir / "lxd" / "client" / "client.crt"
    assert host.tls[2] == s.state_dir / "orchestrator" / "certs" / "far.crt"
    Inventory(s).remove("far", ())
    assert sorted(drivers(s)) == ["lxd1", "lxd2"]
    assert not (s.state_dir / "orchestrator" / "certs" / "far.crt").exists()


def test_remove_refuses_while_nodes_are_there(tmp_path: Path, cert: Path) -> None:
    s = _settings(tmp_path)
    inv = Inventory(s)
    inv.add_remote("far", "https://127.0.0.1:8443", cert)
    reg = Registry(s)
    reg.admit("blog", "me", {"cluster": {"cpu": 2, "memory": "2GiB"}}, "r1")
    reg.set_node("blog", "blog-n1", "far", ["db"])
    held = allocations(reg)["far"]
    assert held == Allocation(2.0, 2 * GiB, ("blog-n1",))
    with pytest.raises(UserError, match=r"far still holds 1 OverCloud node \(blog-n1\)"):
        inv.remove("far", held.nodes)
    assert inv.host("far").added  # nothing lost


def test_views_join_records_observations_and_load() -> None:
    records = [HostRecord("a"), HostRecord("b", draining=True), HostRecord("c", cpus=4),
               HostRecord("d")]
    load = {"a": HostLoad(cpu_percent=50.0, cpu_cores_used=1.0, mem_percent=10.0,
                          capacity_cpus=8.0, capacity_memory=16 * GiB, net_bytes_per_s=7.0),
            "c": HostLoad(cpu_cores_used=2.0, capacity_cpus=8.0)}
    views = {v.name: v for v in host_views(
        records, reachable={"a": True, "b": True, "c": True, "d": False},
        allocated={"a": Allocation(2.0, GiB, ("x-n1",))}, load=load, capacity=(2.0, 4 * GiB))}
    # capacity: the override, else the settings' size; never what an agent reported (8)
    assert views["a"].state == "ready" and views["a"].capacity_cpu == 2.0
    assert views["a"].capacity_memory == 4 * GiB
    assert views["a"].cpu_util == pytest.approx(50.0)  # 1 core of the 2
    assert views["a"].allocated_cpu == 2.0 and views["a"].net_bytes_per_s == 7.0
    assert views["b"].state == "draining"
    assert views["c"].capacity_cpu == 4.0 and views["c"].cpu_util == pytest.approx(50.0)  # override
    assert views["d"].state == "unreachable" and views["d"].cpu_util is None
    assert views["d"].capacity_cpu == 2.0 and views["d"].capacity_memory == 4 * GiB


def test_read_load_parses_influxql_series() -> None:
    class Canned:  # an InfluxQL answer as /query returns it (pure parsing under test)
        def query(self, q: str, database: str = "", *, post: bool = False) -> list[dict[str, object]]:
            assert "resource_undercloud" in q and database == "devlake_undercloud"
            cols = ["time", "cpu_percent", "cpu_cores_used", "mem_percent", "mem_usage",
                    "net_bytes_per_s", "instances", "capacity_cpus", "capacity_memory"]
            return [{"name": "resource_undercloud", "tags": {"host": "lxd1"}, "columns": cols,
                     "values": [[0, 80.0, 1.6, 20.0, 4e9, 1e5, 3, 2.0, 2e10]]},
                    {"name": "resource_undercloud", "tags": {"host": "lxd2"}, "columns": cols,
                     "values": [[0, None, None, 1.0, 1e8, None, 0, 2.0, 2e10]]}]

    load = read_load(Canned(), "devlake_undercloud")
    assert load["lxd1"].cpu_percent == 80.0 and load["lxd1"].instances == 3
    assert load["lxd2"].cpu_percent is None and load["lxd2"].capacity_memory == 20_000_000_000


def test_parse_labels() -> None:
    assert parse_labels(["zone=a", "example.com/tier=gold", "empty="]) == {
        "zone": "a", "example.com/tier": "gold", "empty": ""}
    for bad in ("zone", "=a", "zone=a b", "zone=a=b"):
        with pytest.raises(UserError, match="bad label"):
            parse_labels([bad])


# --- the CLI: one clear line per mistake -------------------------------------------------------


def _one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and message in lines[0], lines[0]


def test_cli_errors(tmp_path: Path, cert: Path) -> None:
    env = _env(tmp_path)
    notcert = tmp_path / "notes.txt"
    notcert.write_text("hello\n")
    cases = [
        (["undercloud", "show", "nope"], "no UnderCloud host named 'nope' (known: lxd1, lxd2"),
        (["undercloud", "drain", "nope"], "no UnderCloud host named 'nope'"),
        (["undercloud", "undrain", "nope"], "no UnderCloud host named 'nope'"),
        (["undercloud", "remove", "nope"], "no UnderCloud host named 'nope'"),
        (["undercloud", "add", "far", "--url", "http://10.0.0.1:8443", "--server-cert", str(cert)],
         "bad URL 'http://10.0.0.1:8443'"),
        (["undercloud", "add", "far", "--url", "https://10.0.0.1", "--server-cert", str(cert)],
         "explicit port"),
        (["undercloud", "add", "far", "--url", "https://10.0.0.1:8443", "--server-cert",
          str(tmp_path / "missing.crt")], "missing.crt does not exist"),
        (["undercloud", "add", "far", "--url", "https://10.0.0.1:8443", "--server-cert",
          str(notcert)], "is not a PEM certificate"),
        (["undercloud", "add", "far", "--url", "https://10.0.0.1:8443", "--server-cert", str(cert),
          "--label", "zone"], "bad label 'zone'"),
        (["undercloud", "add", "far", "--url", "https://10.0.0.1:8443", "--server-cert", str(cert),
          "--memory", "lots"], "bad memory size 'lots'"),
        (["undercloud", "add", "Far!", "--url", "https://10.0.0.1:8443", "--server-cert", str(cert)],
         "bad host name 'Far!'"),
        (["undercloud", "add", "lxd1", "--url", "https://10.0.0.1:8443", "--server-cert", str(cert)],
         "'lxd1' already exists"),
        (["undercloud", "remove", "lxd1"], "comes from the settings"),
        (["undercloud", "set", "lxd1"], "nothing to change"),
        (["undercloud", "set", "lxd1", "--cpus", "2", "--default-capacity"],
         "--default-capacity drops the override"),
        (["undercloud", "add-site", "local"], "site named 'local' already exists"),
        (["undercloud", "set", "lxd1", "--pool", "-1"], "--pool must be 0..16"),
        (["undercloud", "set", "lxd1", "--pool", "17"], "--pool must be 0..16"),
    ]
    for args, message in cases:
        _one_line_error(run_cli(args, env, timeout=60), message)
    # none of those mistakes recorded anything
    listed = run_cli(["undercloud", "list", "--json"], env, timeout=60, check=True)
    doc = json.loads(listed.stdout)
    assert [h["host"] for h in doc["hosts"]] == ["lxd1", "lxd2"]
    assert not any(h["state"] == "draining" for h in doc["hosts"])


def test_cli_remove_while_in_use_keeps_the_host(tmp_path: Path, cert: Path) -> None:
    env = _env(tmp_path)
    run_cli(["undercloud", "add", "far", "--url", "https://127.0.0.1:8443", "--server-cert",
             str(cert), "--site", "edge", "--label", "zone=b", "--cpus", "4", "--memory", "8GiB"],
            env, timeout=60, check=True)
    reg = Registry(load_settings(env=env))
    reg.admit("blog", "me", {"cluster": {"cpu": 1, "memory": "1GiB"}}, "r1")
    reg.set_node("blog", "blog-n2", "far", ["app", "web"])
    _one_line_error(run_cli(["undercloud", "remove", "far"], env, timeout=60),
                    "far still holds 1 OverCloud node (blog-n2)")
    # the OpenStack site that shares nothing with LXD remotes
    run_cli(["undercloud", "add-site", "os1", "--openstack", "mycloud"], env, timeout=60, check=True)
    _one_line_error(run_cli(["undercloud", "add", "far2", "--url", "https://127.0.0.1:8444",
                             "--server-cert", str(cert), "--site", "os1"], env, timeout=60),
                    "is an OpenStack site")
    doc = json.loads(run_cli(["undercloud", "list", "--json"], env, timeout=60, check=True).stdout)
    far = next(h for h in doc["hosts"] if h["host"] == "far")
    assert far["site"] == "edge" and far["labels"] == {"zone": "b"}
    assert far["capacity"] == {"cpu": 4.0, "memory": 8 * GiB}
    assert far["allocated"]["nodes"] == ["blog-n2"] and far["allocated"]["cpu"] == 1.0
    assert far["state"] == "unreachable"  # nothing answers on that port
    assert {"site": "os1", "kind": "openstack", "cloud": "mycloud"} in doc["sites"]
    drained = run_cli(["undercloud", "drain", "far", "--no-evacuate"], env, timeout=60,
                      check=True)
    assert "far is draining" in drained.stdout
    doc = json.loads(run_cli(["undercloud", "list", "--json"], env, timeout=60, check=True).stdout)
    assert next(h for h in doc["hosts"] if h["host"] == "far")["state"] == "draining"


@pytest.mark.parametrize("cpus", [float("nan"), float("inf"), -1.0, 0.0, 5000.0])
def test_declared_cores_must_be_a_real_count(tmp_path: Path, cert: Path, cpus: float) -> None:
    """`undercloud set --cpus nan` was accepted and did nothing, `--cpus inf` made a host of
    infinite capacity; both paths into the store refuse them now, and change nothing."""
    from overcloud.errors import UserError

    inv = Inventory(_settings(tmp_path))
    with pytest.raises(UserError, match="--cpus must be"):
        inv.update("lxd1", cpus=cpus)
    with pytest.raises(UserError, match="--cpus must be"):
        inv.add_remote("far", "https://127.0.0.1:8443", cert, cpus=cpus)
    assert inv.host("lxd1").cpus is None
    assert "far" not in [h.name for h in inv.hosts()]


def test_a_bad_memory_size_is_echoed_cut() -> None:
    from orchestrator.inventory import parse_memory
    from overcloud.errors import UserError

    with pytest.raises(UserError) as err:
        parse_memory("9" * 5000 + "GiB")
    assert len(str(err.value)) < 300 and "5003" in str(err.value)
