"""`overcloud services`: idempotent, stale-state tolerant, stops only what it started."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from devtower.services.catalog import CATALOG
from tests.helpers import free_port, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def own_env(tmp_path: Path) -> dict[str, str]:
    return {"OVERCLOUD_STATE_DIR": str(tmp_path / "state"), "OVERCLOUD_CONFIG": "",
            "OVERCLOUD_KAFKA_PORT": str(free_port()), "OVERCLOUD_INFLUX_PORT": str(free_port())}


def _pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")}


def test_up_is_idempotent_status_and_down(own_env: dict[str, str]) -> None:
    state = Path(own_env["OVERCLOUD_STATE_DIR"])
    bystander = subprocess.Popen(["sleep", "600"])  # a stranger process that must survive
    try:
        first = run_cli(["services", "up"], own_env, check=True)
        pids = _pids(state)
        assert set(pids) == {"kafka", "influxdb"}
        assert run_cli(["services", "up"], own_env, check=True).returncode == 0
        assert _pids(state) == pids, "a second `up` must not start twins"
        status = run_cli(["services", "status"], own_env, check=True).stdout
        for name, pid in pids.items():
            assert name in status and str(pid) in status
        assert status.count("ok") >= 2
        assert own_env["OVERCLOUD_KAFKA_PORT"] in first.stdout
        down = run_cli(["services", "down"], own_env, check=True).stdout
        assert "kafka" in down and "influxdb" in down
        assert not any(Path(f"/proc/{p}").exists() and _not_zombie(p) for p in pids.values())
        assert bystander.poll() is None, "down must stop only the pids it recorded"
        assert "nothing was running" in run_cli(["services", "down"], own_env).stdout
    finally:
        run_cli(["services", "down"], own_env)
        bystander.kill()


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stale_pid_files_are_ignored_not_killed(own_env: dict[str, str]) -> None:
    state = Path(own_env["OVERCLOUD_STATE_DIR"])
    (state / "run").mkdir(parents=True)
    # a pid that is alive but not ours (this test process), and one that does not exist
    (state / "run" / "kafka.pid").write_text(f"{os.getpid()}\n")
    (state / "run" / "influxdb.pid").write_text("999999\n")
    try:
        status = run_cli(["services", "status"], own_env, check=True).stdout
        assert "stopped" in status and str(os.getpid()) not in status
        run_cli(["services", "up"], own_env, check=True)
        pids = _pids(state)
        assert os.getpid() not in pids.values() and 999999 not in pids.values()
    finally:
        run_cli(["services", "down"], own_env)


def test_port_taken_by_a_stranger_is_reported(own_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(own_env["OVERCLOUD_KAFKA_PORT"])))
        s.listen()
        proc = run_cli(["services", "up", "kafka"], own_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "already used by another process" in proc.stderr


def test_catalog_knows_the_default_services() -> None:
    assert {"kafka", "influxdb"} <= {n for n, s in CATALOG.items() if s.default}
