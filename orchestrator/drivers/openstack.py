"""`OpenStackDriver`: an OpenStack cloud (a `clouds.yaml` entry) as an UnderCloud site.

Issue 5's federation: an OpenStack project is one more place where an OverCloud's nodes
can live, behind the same `HostDriver` interface as an LXD daemon, so placement and the
workflow need not know which kind of site they drive. This is the only module that imports
`openstacksdk` (an import-linter contract keeps it so).

What maps to what:
- a node is a Nova server (a VM) named like the LXD container; its flavor is the one named
  in the site, else the smallest with at least the node's vCPUs and memory; its image is the
  Glance image named in the site for the node image (`NodeSpec.image == NODE_ALIAS`), else
  the image named `NodeSpec.image`; it joins the OverCloud's network (or the site's).
- ownership: server metadata `overcloud` / `overcloud-node` (LXD's `user.overcloud` /
  `user.overcloud.node`); networks carry the Neutron tag `overcloud:<name>`. Servers and
  networks without them are never touched: the project may hold other people's VMs.
- an OverCloud network is a Neutron network plus one IPv4 subnet with the given CIDR, the
  given address as its gateway.

Every action is idempotent, as the workflow re-runs tasks after a crash: `launch` reuses a
server of that name (starts it if it is shut off, waits if it is building, replaces it if it
is in ERROR); `delete` of what is gone succeeds and otherwise waits until Nova has really
removed the server; `ensure_network` completes a half-made network. A server that goes to
ERROR while booting is deleted and reported as a `PermanentError` carrying Nova's fault
message; one still building at the deadline is a `TemporaryError` (a retry finds and reuses it).

Not supported, on purpose (each raises `PermanentError("not supported on OpenStack sites: ...")`):
`exec` and `push`. A VM is reached over SSH through a floating IP and a security group,
not through a local daemon's exec API; doing that needs keypairs, floating-IP pools and
routing this project cannot set up or test here. So an OpenStack site can hold an
OverCloud's nodes (launch, address, inventory, networks, delete) but the 3-tier stack
cannot yet be deployed onto them.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

from orchestrator.hosts import NodeSpec
from overcloud.errors import PermanentError, TemporaryError

OWNER_META = "overcloud"
NODE_META = "overcloud-node"
TAG_PREFIX = "overcloud:"
NODE_IMAGE_ALIAS = "overcloud-node"
"""`orchestrator.images.NODE_ALIAS`, repeated: that module builds LXD images and is heavy."""

_CLOUD_ERRORS = (os_exc.SDKException, ks_exc.ClientException)


@dataclass(frozen=True)
class OpenStackSite:
    name: str
    """The site's name in the UnderCloud (what `HostDriver.name` reports)."""
    cloud: str
    """The entry in clouds.yaml (found the usual way: `OS_CLIENT_CONFIG_FILE`, ./clouds.yaml,
    ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)."""
    flavor: str = ""
    """Flavor for every node; empty: the smallest that fits the node's cpu and memory."""
    image: str = ""
    """Glance image that stands for the node image; empty: the image named in the NodeSpec."""
    network: str = ""
    """Network for nodes whose spec names none; empty: Nova's default for the project."""
    boot_timeout: float = 600.0
    """Seconds a server may stay in BUILD before `launch` gives up (TemporaryError)."""
    delete_timeout: float = 300.0
    """Seconds `delete` waits for Nova to remove a server."""
    api_timeout: float = 30.0
    """Seconds for one HTTP request to the cloud."""
    poll: float = 0.5
    """Seconds between status polls."""


def connect(site: OpenStackSite) -> Any:
    """An openstacksdk connection for the site (lazy: nothing is sent before the first call)."""
    return openstack.connect(cloud=site.cloud, api_timeout=site.api_timeout)


def _wait(predicate: Callable[[], bool], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


class OpenStackDriver:
    """One OpenStack cloud (project) as an UnderCloud site; see the module docstring."""

    def __init__(self, site: OpenStackSite, conn: Any | None = None) -> None:
        self.site = site
        self.name = site.name
        self._conn = conn if conn is not None else connect(site)
        self._lock = threading.Lock()  # parallel launches must not both create a network

    @classmethod
    def from_cloud(cls, name: str, cloud: str, **options: Any) -> OpenStackDriver:
        return cls(OpenStackSite(name=name, cloud=cloud, **options))

    def _fail(self, what: str, exc: Exception) -> TemporaryError:
        return TemporaryError(f"{self.name}: {what}: {exc}", delay=2.0)

    # --- site ---------------------------------------------------------------------------

    def reachable(self) -> bool:
        """Keystone issues a token and Nova answers a request with it."""
        try:
            self._conn.authorize()
            next(iter(self._conn.compute.flavors(details=False)), None)
        except (*_CLOUD_ERRORS, OSError):
            return False
        return True

    # --- nodes --------------------------------------------------------------------------

    def _servers(self, name: str | None = None) -> list[Any]:
        query = {"name": f"^{re.escape(name)}$"} if name else {}
        try:
            found = list(self._conn.compute.servers(details=True, **query))
        except _CLOUD_ERRORS as exc:
            raise self._fail("listing servers", exc) from None
        return [s for s in found if (name is None or s.name == name) and s.status != "DELETED"]

    def _ours(self, name: str) -> list[Any]:
        servers = self._servers(name)
        foreign = [s for s in servers if OWNER_META not in (s.metadata or {})]
        if foreign:
            raise PermanentError(
                f"{self.name}: a server named {name} exists that is not an OverCloud node "
                f"(no '{OWNER_META}' metadata): rename it or pick another site")
        return servers

    def instances(self, overcloud: str | None = None) -> dict[str, str]:
        """Our servers in the project: name → OverCloud (only those of `overcloud` if given)."""
        found = {}
        for server in self._servers():
            owner = (server.metadata or {}).get(OWNER_META)
            if owner and (overcloud is None or owner == overcloud):
                found[server.name] = owner
        return found

    def launch(self, spec: NodeSpec) -> None:
        for server in self._ours(spec.name):
            if server.status == "ERROR":  # a failed earlier attempt: build it afresh
                self._delete_server(server)
                continue
            if server.status in ("SHUTOFF", "STOPPED", "SUSPENDED"):
                try:
                    self._conn.compute.start_server(server)
                except os_exc.ConflictException:
                    pass  # already starting
                except _CLOUD_ERRORS as exc:
                    raise self._fail(f"starting {spec.name}", exc) from None
            self._wait_active(server.id, spec.name)
            return
        image = self._image_id(spec.image)
        flavor = self._flavor_id(spec.cpu, spec.memory_bytes)
        attrs: dict[str, Any] = {
            "name": spec.name, "image_id": image, "flavor_id": flavor,
            "metadata": {OWNER_META: spec.overcloud, NODE_META: spec.node},
        }
        network = spec.network or self.site.network
        attrs["networks"] = [{"uuid": self._network_id(network)}] if network else "auto"
        try:
            server = self._conn.compute.create_server(**attrs)
        except os_exc.BadRequestException as exc:
            raise PermanentError(f"{self.name}: Nova refused server {spec.name}: {exc}") from None
        except _CLOUD_ERRORS as exc:
            raise self._fail(f"creating server {spec.name}", exc) from None
        self._wait_active(server.id, spec.name)

    def _wait_active(self, server_id: str, name: str) -> None:
        last: dict[str, Any] = {}

        def settled() -> bool:
            try:
                server = self._conn.compute.get_server(server_id)
            except os_exc.NotFoundException:
                raise TemporaryError(f"{self.name}: server {name} vanished while booting") from None
            except _CLOUD_ERRORS:
                return False  # a hiccup of the API: ask again
            last["server"] = server
            return server.status in ("ACTIVE", "ERROR")

        if not _wait(settled, self.site.boot_timeout, self.site.poll):
            status = getattr(last.get("server"), "status", "unknown")
            raise TemporaryError(
                f"{self.name}: server {name} still {status} after {self.site.boot_timeout:g}s",
                delay=10.0)
        server = last["server"]
        if server.status == "ERROR":
            fault = (server.fault or {}).get("message") or "no fault message from Nova"
            self._delete_server(server)
            raise PermanentError(f"{self.name}: server {name} failed to boot (ERROR): {fault}")

    def _image_id(self, image: str) -> str:
        wanted = self.site.image if (self.site.image and image == NODE_IMAGE_ALIAS) else image
        try:
            found = [i for i in self._conn.image.images(name=wanted) if i.name == wanted]
        except _CLOUD_ERRORS as exc:
            raise self._fail(f"looking up image {wanted}", exc) from None
        if not found:
            raise PermanentError(f"{self.name}: no image named {wanted!r} in cloud {self.site.cloud}")
        return str(found[0].id)

    def _flavor_id(self, cpu: int, memory_bytes: int) -> str:
        try:
            flavors = list(self._conn.compute.flavors(details=True))
        except _CLOUD_ERRORS as exc:
            raise self._fail("listing flavors", exc) from None
        if self.site.flavor:
            named = [f for f in flavors if self.site.flavor in (f.name, f.id)]
            if not named:
                raise PermanentError(f"{self.name}: no flavor named {self.site.flavor!r}")
            return str(named[0].id)
        mib = -(-memory_bytes // (1024 * 1024))
        fits = [f for f in flavors if f.vcpus >= cpu and f.ram >= mib]
        if not fits:
            raise PermanentError(
                f"{self.name}: no flavor with {cpu} vCPUs and {mib} MiB in cloud {self.site.cloud}")
        return str(min(fits, key=lambda f: (f.vcpus, f.ram, f.disk or 0)).id)

    def address(self, name: str) -> str | None:
        """The server's first fixed IPv4 address (None while it has none)."""
        for server in self._servers(name):
            for addrs in (server.addresses or {}).values():
                for addr in addrs:
                    if addr.get("version") == 4 and addr.get("OS-EXT-IPS:type", "fixed") == "fixed":
                        return str(addr["addr"])
        return None

    def delete(self, name: str) -> None:
        for server in self._ours(name):
            self._delete_server(server)

    def _delete_server(self, server: Any) -> None:
        try:
            self._conn.compute.delete_server(server, ignore_missing=True)
        except _CLOUD_ERRORS as exc:
            raise self._fail(f"deleting server {server.name}", exc) from None

        def gone() -> bool:
            try:
                return bool(self._conn.compute.get_server(server.id).status == "DELETED")
            except os_exc.NotFoundException:
                return True
            except _CLOUD_ERRORS:
                return False

        if not _wait(gone, self.site.delete_timeout, self.site.poll):
            raise TemporaryError(f"{self.name}: server {server.name} not gone after "
                                 f"{self.site.delete_timeout:g}s", delay=10.0)

    def exec(self, name: str, *cmd: str, timeout: float = 300) -> str:
        raise PermanentError("not supported on OpenStack sites: exec (a VM is reached over SSH "
                             "through a floating IP, which this driver does not set up)")

    def push(self, name: str, local: Path, remote: str, mode: str = "0644") -> None:
        raise PermanentError("not supported on OpenStack sites: push (no file API into a VM)")

    # --- OverCloud networks ---------------------------------------------------------------

    def _networks(self, name: str | None = None) -> list[Any]:
        try:
            return list(self._conn.network.networks(**({"name": name} if name else {})))
        except _CLOUD_ERRORS as exc:
            raise self._fail("listing networks", exc) from None

    @staticmethod
    def _owner(net: Any) -> str | None:
        for tag in net.tags or []:
            if tag.startswith(TAG_PREFIX):
                return str(tag[len(TAG_PREFIX):])
        return None

    def _network_id(self, name: str) -> str:
        found = self._networks(name)
        if not found:
            raise PermanentError(f"{self.name}: no network named {name!r} in cloud {self.site.cloud}")
        return str(found[0].id)

    def networks(self, overcloud: str | None = None) -> dict[str, str]:
        """Our networks in the project: name → OverCloud (only those of `overcloud` if given)."""
        found = {}
        for net in self._networks():
            owner = self._owner(net)
            if owner and (overcloud is None or owner == overcloud):
                found[net.name] = owner
        return found

    def ensure_network(self, bridge: str, address: str, overcloud: str) -> None:
        """Network `bridge` with one IPv4 subnet: CIDR of `address` (gateway/prefix), gateway
        `address`. Completes a network that a crash left without its tag or subnet."""
        iface = ipaddress.ip_interface(address)
        net_api = self._conn.network
        with self._lock:
            try:
                found = self._networks(bridge)
                if found:
                    net = found[0]
                    owner = self._owner(net)
                    if owner not in (None, overcloud):
                        raise PermanentError(f"{self.name}: network {bridge} belongs to OverCloud {owner}")
                else:
                    net = net_api.create_network(name=bridge, description=f"OverCloud {overcloud}")
                    owner = None
                if owner is None:
                    net_api.set_tags(net, [*(net.tags or []), f"{TAG_PREFIX}{overcloud}"])
                cidr = str(iface.network)
                if not any(s.cidr == cidr for s in net_api.subnets(network_id=net.id)):
                    net_api.create_subnet(network_id=net.id, name=bridge, ip_version=4, cidr=cidr,
                                          gateway_ip=str(iface.ip))
            except _CLOUD_ERRORS as exc:
                raise self._fail(f"making network {bridge}", exc) from None

    def delete_network(self, bridge: str) -> None:
        for net in self._networks(bridge):
            if self._owner(net) is None:
                continue  # not ours: never touched
            try:
                self._conn.network.delete_network(net, ignore_missing=True)
            except os_exc.ConflictException as exc:
                raise TemporaryError(f"{self.name}: network {bridge} still in use: {exc}",
                                     delay=2.0) from None
            except _CLOUD_ERRORS as exc:
                raise self._fail(f"deleting network {bridge}", exc) from None
