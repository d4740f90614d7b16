"""OpenStack-only behaviour of `OpenStackDriver`, through openstacksdk over HTTP against the
loopback OpenStack-compatible API (`fake_openstack.py`; no real OpenStack fits our machines,
see `test_host_contract.py`): boot failures with Nova's fault, a boot deadline and its retry,
flavor choice, servers and networks that are not ours, credentials, and what VMs do not
support here.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.drivers.openstack import NODE_META, OWNER_META, OpenStackDriver, OpenStackSite
from orchestrator.hosts import NodeSpec
from orchestrator.images import NODE_ALIAS
from overcloud.errors import PermanentError, TemporaryError
from tests.contract.conftest import BOOT_FAILURE
from tests.contract.fake_openstack import FakeOpenStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GiB = 1024**3


@pytest.fixture
def cloud(fake_cloud: tuple[FakeOpenStack, Path]) -> FakeOpenStack:
    return fake_cloud[0]


@pytest.fixture
def driver(cloud: FakeOpenStack) -> OpenStackDriver:
    return OpenStackDriver(OpenStackSite(name="os1", cloud="fake", network="private", poll=0.05))


@pytest.fixture
def oc(driver: OpenStackDriver) -> Any:
    name = f"oc{uuid.uuid4().hex[:8]}"
    yield name
    for node in driver.instances(name):
        driver.delete(node)
    for net in driver.networks(name):
        driver.delete_network(net)


def node(oc: str, n: str = "n1", image: str = NODE_ALIAS, cpu: int = 1, memory: int = GiB // 4) -> NodeSpec:
    return NodeSpec(name=f"{oc}-{n}", overcloud=oc, node=n, image=image, cpu=cpu, memory_bytes=memory)


def servers_named(cloud: FakeOpenStack, name: str) -> list[Any]:
    return [s for s in cloud.servers.values() if s.name == name and s.deleting_at is None]


def test_boot_failure_carries_novas_fault_and_the_server_is_removed(
        cloud: FakeOpenStack, driver: OpenStackDriver, oc: str) -> None:
    spec = node(oc, image="broken-node")
    with pytest.raises(PermanentError, match=BOOT_FAILURE) as err:
        driver.launch(spec)
    assert "ERROR" in str(err.value) and spec.name in str(err.value)
    assert driver.instances(oc) == {}
    assert servers_named(cloud, spec.name) == []
    assert any(m == "DELETE" and "/servers/" in p for m, p, _ in cloud.requests)


def test_ownership_metadata_and_smallest_fitting_flavor(
        cloud: FakeOpenStack, driver: OpenStackDriver, oc: str) -> None:
    spec = node(oc, cpu=2, memory=3 * GiB)
    driver.launch(spec)
    (server,) = servers_named(cloud, spec.name)
    assert server.metadata == {OWNER_META: oc, NODE_META: "n1"}
    assert server.flavor["original_name"] == "m1.medium"  # 2 vCPUs, 4096 MiB: the smallest fit


def test_no_flavor_fits_is_permanent_and_creates_nothing(
        cloud: FakeOpenStack, driver: OpenStackDriver, oc: str) -> None:
    spec = node(oc, cpu=64)
    with pytest.raises(PermanentError, match="no flavor with 64 vCPUs"):
        driver.launch(spec)
    assert servers_named(cloud, spec.name) == []


def test_boot_deadline_is_temporary_and_a_retry_reuses_the_server(
        cloud: FakeOpenStack, driver: OpenStackDriver, oc: str) -> None:
    impatient = OpenStackDriver(OpenStackSite(name="os1", cloud="fake", network="private",
                                              boot_timeout=0.05, poll=0.01))
    spec = node(oc)
    with pytest.raises(TemporaryError, match="still BUILD"):
        impatient.launch(spec)
    (first,) = servers_named(cloud, spec.name)
    driver.launch(spec)  # the workflow's retry
    (again,) = servers_named(cloud, spec.name)
    assert again.id == first.id
    assert driver.address(spec.name) is not None


def test_servers_and_networks_that_are_not_ours_are_never_touched(
        cloud: FakeOpenStack, driver: OpenStackDriver, oc: str) -> None:
    conn = driver._conn
    name = f"{oc}-n1"
    image = next(iter(conn.image.images(name=NODE_ALIAS)))
    private = next(iter(conn.network.networks(name="private")))
    foreign = conn.compute.create_server(name=name, image_id=image.id, flavor_id="1",
                                         networks=[{"uuid": private.id}])
    try:
        assert name not in driver.instances()
        with pytest.raises(PermanentError, match="not an OverCloud node"):
            driver.launch(node(oc))
        with pytest.raises(PermanentError, match="not an OverCloud node"):
            driver.delete(name)
        assert [s.id for s in servers_named(cloud, name)] == [foreign.id]
        # a network of somebody else: not listed, not deleted
        driver.delete_network("private")
        assert "private" not in driver.networks()
        assert any(n.name == "private" for n in cloud.networks.values())
    finally:
        conn.compute.delete_server(foreign)


def test_a_network_in_use_is_not_deleted_until_its_nodes_are(
        driver: OpenStackDriver, oc: str) -> None:
    net = f"ocosn{uuid.uuid4().hex[:5]}"
    driver.ensure_network(net, "10.240.210.1/27", oc)
    spec = NodeSpec(name=f"{oc}-n1", overcloud=oc, node="n1", image=NODE_ALIAS, cpu=1,
                    memory_bytes=GiB // 4, network=net)
    driver.launch(spec)
    assert driver.address(spec.name) == "10.240.210.2"
    with pytest.raises(TemporaryError, match="still in use"):
        driver.delete_network(net)
    driver.delete(spec.name)
    driver.delete_network(net)
    assert net not in driver.networks()


def test_wrong_credentials_are_unreachable(fake_cloud: tuple[FakeOpenStack, Path]) -> None:
    assert not OpenStackDriver(OpenStackSite(name="bad", cloud="badpass")).reachable()


@pytest.mark.parametrize("call", [
    lambda d: d.exec("n1", "true"),
    lambda d: d.push("n1", Path("/etc/hostname"), "/tmp/x"),
], ids=["exec", "push"])
def test_what_vms_do_not_support_here_says_so(driver: OpenStackDriver, call: Any) -> None:
    with pytest.raises(PermanentError, match="not supported on OpenStack sites"):
        call(driver)
