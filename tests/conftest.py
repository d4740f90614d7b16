"""Fixtures: real services (tansu, InfluxDB) started by the project's own code, per session.

Every run uses its own state directory and free loopback ports, so tests never touch a
user's services and clean up only the pids they started.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from daemons.lxd import release_state_dir
from daemons.process import Daemon
from devtower.services import manager
from overcloud.settings import Settings, load_settings
from tests.helpers import free_port


class Env(dict[str, str]):
    """Environment variables that point the CLI and the library at the test services."""

    def settings(self) -> Settings:
        return load_settings(env=dict(self))


@pytest.fixture(scope="session")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    state = tmp_path_factory.mktemp("state")
    return Env(
        OVERCLOUD_STATE_DIR=str(state),
        # InfluxDB's accounts stay with the InfluxDB this session starts, also for the
        # fixtures that give LXD or a test a state dir of its own (Env(services, ...))
        OVERCLOUD_INFLUX_CREDENTIALS=str(state / "secrets" / "influxdb.json"),
        OVERCLOUD_KAFKA_PORT=str(free_port()),
        OVERCLOUD_INFLUX_PORT=str(free_port()),
        OVERCLOUD_AGENT_SEND_TIMEOUT="2",
        OVERCLOUD_CONFIG="",
    )


@pytest.fixture(scope="session")
def services(service_env: Env) -> Iterator[Env]:
    """Broker + InfluxDB, up for the whole session, stopped (by pid) at the end."""
    settings = service_env.settings()
    manager.up(settings, ["kafka", "influxdb"])
    try:
        yield service_env
    finally:
        manager.down(settings)


@pytest.fixture
def settings(services: Env) -> Settings:
    return services.settings()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def env(services: Env, request: pytest.FixtureRequest) -> Env:
    """The session's services, with topics, consumer group and OverCloud private to one test."""
    import uuid

    from devlake.sinks import InfluxV1Sink

    tag = uuid.uuid4().hex[:8]
    env = Env(
        services,
        OVERCLOUD_KAFKA_TOPIC_PREFIX=f"t{tag}",
        OVERCLOUD_DEVLAKE_GROUP=f"g{tag}",
        OVERCLOUD_DEVLAKE_LINGER="0.1",
        TEST_OVERCLOUD=f"oc{tag}",
    )
    # the test's OverCloud exists: its DevLake database is there, as the orchestrator's
    # `devlake` task makes it (DevLake stores samples only for OverClouds that exist)
    settings = env.settings()
    sink = InfluxV1Sink(settings.influx)
    try:
        sink.ensure_database(settings.influx.database_prefix + env["TEST_OVERCLOUD"])
    finally:
        sink.close()
    return env


@pytest.fixture(scope="session")
def uc(services: Env) -> Iterator[Env]:
    """Two real LXD daemons as the UnderCloud hosts `lxd1`/`lxd2`, shared by the session.

    Own state dir under /tmp (0711: unprivileged containers traverse it to their rootfs),
    bridges `octe1/2` on 10.235.{1,2}.0/24 and a free HTTPS port pair. Two test sessions on one
    machine at once pick other names with OC_TEST_BRIDGE_PREFIX / OC_TEST_SUBNET_PREFIX.
    Every test gives its OverClouds unique names and deletes them; the fixture stops the
    daemons (and their containers) by pid at the end.
    """
    import os
    import tempfile

    _sweep_dead_sessions()
    state = Path(tempfile.mkdtemp(prefix="oc-e2e-", dir="/tmp"))
    state.chmod(0o711)
    lock = _hold(state)
    env = Env(
        services,
        OVERCLOUD_STATE_DIR=str(state),
        OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX=os.environ.get("OC_TEST_BRIDGE_PREFIX", "octe"),
        OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX=os.environ.get("OC_TEST_SUBNET_PREFIX", "10.235"),
        OVERCLOUD_UNDERCLOUD_HTTPS_PORT=str(free_port()),
        OVERCLOUD_AGENT_INTERVAL="2",
        OVERCLOUD_KAFKA_TOPIC_PREFIX="e2e",
    )
    settings = env.settings()
    # the session's broker and InfluxDB (same ports); our own LXD hosts and node images
    manager.up(settings, ["lxd"])
    try:
        yield env
    finally:
        # node agents an orchestrator started for OverClouds a failed test did not delete
        for pid_file in (state / "run").glob("agent-*.pid"):
            Daemon(name=pid_file.stem, argv=[], state_dir=state, ready=lambda: False,
                   address="-").stop()  # only if the recorded command line still runs
        manager.down(settings, ["edge", "orchestrator", "devlake", "agent", "lxd", "dockerd"])
        # the network filter of whatever OverClouds a failed test left (orchestrator/isolation)
        from orchestrator.isolation import apply, render

        apply(render(settings.undercloud.bridge_prefix, {}))
        # the hosts' pools (loop files with the imported node image) are gigabytes: drop
        # the state dir unless something is still mounted from it
        import shutil

        release_state_dir(state)
        if str(state) not in Path("/proc/mounts").read_text():
            shutil.rmtree(state, ignore_errors=True)
        lock.close()


def _hold(state: Path) -> IO[bytes]:
    """Lock `state` for this session: `_sweep_dead_sessions` of another one leaves it alone."""
    f = (state / ".session.lock").open("wb")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return f


def _sweep_dead_sessions() -> None:
    """Free what killed test sessions left: the state dirs nobody holds any more.

    A session ended with -9 (CI runners reap everything) skips its teardown: its LXD pools
    stay mounted on loop devices, gigabytes each, and its dir stays in /tmp. A session still
    running holds its dir's lock. A dir whose daemons still run (the session alone was
    killed) is left alone too: removing it would take their sockets and pid files, and
    nothing could stop them any more.
    """
    import shutil

    for state in Path("/tmp").glob("oc-e2e-*"):
        lock_file = state / ".session.lock"
        if lock_file.exists():
            with lock_file.open("rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live session's
        if any(_recorded_pid_alive(p) for p in state.glob("run/*.pid")):
            continue
        elif time.time() - state.stat().st_mtime < 600:
            continue  # just made by a session that has not locked it yet
        release_state_dir(state)
        if str(state) + "/" not in Path("/proc/mounts").read_text():
            shutil.rmtree(state, ignore_errors=True)


def _recorded_pid_alive(pid_file: Path) -> bool:
    daemon = Daemon(name=pid_file.stem, argv=[], state_dir=pid_file.parent.parent,
                    ready=lambda: False, address="-")
    return daemon.pid() is not None  # the recorded command line still runs under that pid


@pytest.fixture(autouse=True)
def _no_overcloud_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete, through a real orchestrator, any OverCloud a test on the `uc` hosts left.

    Every such test deletes its OverClouds at its end; one that fails before that would
    otherwise leave containers, capacity and ports taken, and the next tests fail for it."""
    env = request.getfixturevalue("uc") if "uc" in request.fixturenames else None
    yield
    if not isinstance(env, Env):
        return
    from orchestrator.registry import Registry
    from tests.helpers import Background, run_cli

    left = [r.name for r in Registry(env.settings()).all()]
    if not left:
        return
    log = Path(env["OVERCLOUD_STATE_DIR"]) / "log" / f"cleanup-{request.node.name[:60]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    orch = Background(["orchestrator", "run"], env, log).start()
    try:
        for name in left:
            run_cli(["delete", name, "--wait"], env, timeout=300)
    finally:
        orch.stop()
