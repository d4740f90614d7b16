"""The `HostDriver` contract, one set of tests run against every kind of UnderCloud site.

- **LXD**: the real `LxdDriver` on the session's LXD daemon `lxd1` (the `uc` fixture), with
  the cached node image (`orchestrator.images.NODE_ALIAS`).
- **OpenStack**: the real `OpenStackDriver`, i.e. unmodified openstacksdk over HTTP, against
  `tests/contract/fake_openstack.py`, an OpenStack-compatible API on 127.0.0.1. No real
  OpenStack fits our machines: Debian's keystone and nova pull 200-300 packages each and
  nova needs a hypervisor we do not have (no KVM, no nova-lxd), so the stand-in speaks
  Keystone v3, Nova, Glance and Neutron with their real shapes and rules but runs no VMs.

The part of the contract both drivers implement: launch waits until the node runs, is
idempotent (a second launch reuses; a stopped node is started again), address, the
ownership filter of `instances`, delete (a second delete is a no-op, nothing left), OverCloud
networks (ensure twice, a node on it gets an address inside it, delete twice), an impossible
image (a `PermanentError` naming it, nothing left behind) and an endpoint nobody answers
(`reachable()` is False, quickly). exec/push are LXD-only (see the OpenStack
driver's docstring); `test_openstack_driver.py` holds the OpenStack-only cases.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Iterator

import pytest

from orchestrator.hosts import NodeSpec
from overcloud.errors import OverCloudError, PermanentError
from overcloud.waiting import wait_until
from tests.contract.conftest import Site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MiB = 1024 * 1024


@pytest.fixture
def oc(site: Site) -> Iterator[str]:
    """An OverCloud name private to one test; whatever it left on the site is removed after."""
    name = f"oc{uuid.uuid4().hex[:8]}"
    yield name
    for node in site.driver.instances(name):
        site.driver.delete(node)
    for net in site.driver.networks(name):
        wait_until(lambda net=net: _deleted_network(site, net), 60, 0.5, f"network {net} deleted")


def _deleted_network(site: Site, net: str) -> bool:
    try:
        site.driver.delete_network(net)
    except Exception:
        return False
    return True


def spec(oc: str, node: str, image: str, network: str = "") -> NodeSpec:
    return NodeSpec(name=f"{oc}-{node}", overcloud=oc, node=node, image=image, cpu=1,
                    memory_bytes=256 * MiB, network=network)


def test_reachable_and_an_endpoint_nobody_answers(site: Site) -> None:
    assert site.driver.reachable()
    t0 = time.monotonic()
    assert not site.unreachable.reachable()
    assert time.monotonic() - t0 < 10, "an unreachable endpoint must be told quickly"


def test_launch_waits_until_running_and_is_idempotent(site: Site, oc: str) -> None:
    node = spec(oc, "n1", site.image)
    site.driver.launch(node)
    assert site.running(node.name), "launch returned before the node runs"
    addr = wait_until(lambda: site.driver.address(node.name), 60, 0.2, "an address")
    assert ipaddress.ip_address(addr).version == 4

    site.driver.launch(node)  # again: the same node, not a twin
    assert site.driver.instances(oc) == {node.name: oc}

    site.stop(node.name)  # stopped behind the driver's back (a crash, an operator)
    wait_until(lambda: not site.running(node.name), 60, 0.2, "the node stopped")
    site.driver.launch(node)
    assert site.running(node.name), "launch of a stopped node must start it"
    assert site.driver.instances(oc) == {node.name: oc}


def test_instances_are_filtered_by_owner(site: Site, oc: str) -> None:
    other = f"{oc}b"
    try:
        site.driver.launch(spec(oc, "n1", site.image))
        site.driver.launch(spec(other, "n1", site.image))
        assert site.driver.instances(oc) == {f"{oc}-n1": oc}
        assert site.driver.instances(other) == {f"{other}-n1": other}
        everything = site.driver.instances()
        assert everything[f"{oc}-n1"] == oc and everything[f"{other}-n1"] == other
        assert site.driver.instances(f"{oc}-nobody") == {}
    finally:
        site.driver.delete(f"{other}-n1")


def test_delete_is_idempotent_and_leaves_nothing(site: Site, oc: str) -> None:
    node = spec(oc, "n1", site.image)
    site.driver.launch(node)
    site.driver.delete(node.name)
    assert node.name not in site.driver.instances()
    assert site.driver.address(node.name) is None
    assert not site.running(node.name)
    site.driver.delete(node.name)  # a second delete is a no-op
    site.driver.delete(f"{oc}-never-existed")
    assert site.driver.instances(oc) == {}


def test_networks_ensure_use_and_delete(site: Site, oc: str) -> None:
    net, gateway = site.network(0)
    site.driver.ensure_network(net, gateway, oc)
    site.driver.ensure_network(net, gateway, oc)  # again: no twin, no error
    assert site.driver.networks(oc) == {net: oc}
    assert site.driver.networks()[net] == oc
    assert site.driver.networks(f"{oc}-nobody") == {}

    node = spec(oc, "n1", site.image, network=net)
    site.driver.launch(node)
    addr = wait_until(lambda: site.driver.address(node.name), 60, 0.2, "an address on the network")
    assert ipaddress.ip_address(addr) in ipaddress.ip_interface(gateway).network

    site.driver.delete(node.name)
    site.driver.delete_network(net)
    site.driver.delete_network(net)  # a second delete is a no-op
    assert net not in site.driver.networks()


def test_an_impossible_image_is_a_clear_error_and_leaves_nothing(
        site: Site, oc: str, request: pytest.FixtureRequest) -> None:
    node = spec(oc, "n1", f"no-such-image-{uuid.uuid4().hex[:6]}")
    with pytest.raises(OverCloudError) as err:
        site.driver.launch(node)
    assert node.image in str(err.value)
    assert "\n" not in str(err.value).strip(), "one line, please"
    assert site.driver.instances(oc) == {}
    assert not site.running(node.name)
    assert isinstance(err.value, PermanentError), f"retrying cannot help, yet: {err.value!r}"
