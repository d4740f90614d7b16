"""Sites for the host-driver contract: the real LXD driver on the session's `uc` daemons, and
the OpenStack driver through openstacksdk against the loopback OpenStack-compatible API.

A `Site` bundles a driver with what the contract needs around it: an image that boots, a
driver for an endpoint nobody answers, and two out-of-band hooks (stop a node behind the
driver's back, ask whether it runs) that use the site's own tools, not the driver.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lxdclient import lxc
from orchestrator.drivers.openstack import OpenStackDriver, OpenStackSite
from orchestrator.hosts import HostDriver, LxdDriver
from orchestrator.images import NODE_ALIAS
from overcloud.settings import LxdHost
from tests.contract.fake_openstack import FakeOpenStack
from tests.helpers import free_port

BRIDGE_PREFIX = os.environ.get("OC_TEST_BRIDGE_PREFIX", "ocos")
SUBNET_PREFIX = os.environ.get("OC_TEST_SUBNET_PREFIX", "10.240")
BOOT_FAILURE = "no bootable device found on image broken-node"


@dataclass(frozen=True)
class Site:
    kind: str
    driver: HostDriver
    image: str
    unreachable: HostDriver
    stop: Callable[[str], None]
    """Stop a node out of band (the site's own tools)."""
    running: Callable[[str], bool]
    """Does the node run, by the site's own tools."""
    cloud: Any = None
    """The fake OpenStack API (OpenStack sites only)."""

    def network(self, slot: int) -> tuple[str, str]:
        """A network name (≤ 15 chars, an LXD bridge) and gateway/prefix unique to one test."""
        return f"{BRIDGE_PREFIX}n{uuid.uuid4().hex[:5]}", f"{SUBNET_PREFIX}.{200 + slot}.1/27"


@pytest.fixture(scope="module")
def fake_cloud() -> Iterator[tuple[FakeOpenStack, Path]]:
    """The loopback OpenStack API with a bootable node image, a broken image, a default
    network, and a clouds.yaml naming it (`fake`) and a dead endpoint (`gone`)."""
    api = FakeOpenStack().start()
    api.add_image(NODE_ALIAS)
    api.add_image("broken-node", boot_failure=BOOT_FAILURE)
    api.add_network("private", "10.0.0.0/24")
    folder = Path(tempfile.mkdtemp(prefix="oc-os-"))
    clouds = FakeOpenStack.write_clouds_yaml(folder / "clouds.yaml", {
        "fake": api.cloud_entry(),
        "gone": api.cloud_entry(url=f"http://127.0.0.1:{free_port()}"),
        "badpass": api.cloud_entry(password="wrong"),
    })
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        try:
            yield api, clouds
        finally:
            api.stop()
            clouds.unlink()
            folder.rmdir()


def _openstack_site(api: FakeOpenStack) -> Site:
    driver = OpenStackDriver(OpenStackSite(name="os1", cloud="fake", network="private", poll=0.1))
    conn = driver._conn  # the same authenticated connection, used out of band like `openstack` CLI

    def server(name: str) -> Any:
        return next(iter(conn.compute.servers(details=True, name=f"^{name}$")), None)

    def stop(name: str) -> None:
        conn.compute.stop_server(server(name))

    def running(name: str) -> bool:
        found = server(name)
        return found is not None and found.status == "ACTIVE"

    return Site("openstack", driver, NODE_ALIAS,
                OpenStackDriver(OpenStackSite(name="gone", cloud="gone", api_timeout=5)),
                stop, running, cloud=api)


def _lxd_site(uc: Any, tmp: Path) -> Site:
    settings = uc.settings()
    host = settings.lxd_hosts[0]
    # an endpoint nobody answers: a unix socket file whose listener is gone
    dead_dir = tmp / "dead-lxd"
    dead_dir.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(dead_dir / "unix.socket"))
    dead = LxdHost(name="gone", index=99, lxd_dir=dead_dir, bridge="", address="",
                   https_port=free_port())

    def stop(name: str) -> None:
        lxc(settings, host, "stop", "--force", name, timeout=120)

    def running(name: str) -> bool:
        out = lxc(settings, host, "list", f"^{name}$", "--format", "json", timeout=60).stdout
        items = json.loads(out or "[]")
        return bool(items) and items[0]["status"] == "Running"

    return Site("lxd", LxdDriver(settings, host), NODE_ALIAS, LxdDriver(settings, dead), stop, running)


@pytest.fixture(scope="module", params=["lxd", "openstack"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Site:
    if request.param == "lxd":
        return _lxd_site(request.getfixturevalue("uc"), tmp_path_factory.mktemp("lxd-site"))
    api, _ = request.getfixturevalue("fake_cloud")
    return _openstack_site(api)
