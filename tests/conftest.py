"""Fixtures: real services (tansu, InfluxDB) started by the project's own code, per session.

Every run uses its own state directory and free loopback ports, so tests never touch a
user's services and clean up only the pids they started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from overcloud.services import manager
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

    tag = uuid.uuid4().hex[:8]
    return Env(
        services,
        OVERCLOUD_KAFKA_TOPIC_PREFIX=f"t{tag}",
        OVERCLOUD_DEVLAKE_GROUP=f"g{tag}",
        OVERCLOUD_DEVLAKE_LINGER="0.1",
        TEST_OVERCLOUD=f"oc{tag}",
    )
