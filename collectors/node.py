"""Where an OverCloud's nodes are and what they look like, from their LXD hosts' APIs.

Flow and service collectors run on the UnderCloud host (like `resource_instance`) and look
*into* a machine container: its network namespace, its Docker socket, its cgroups. All of
that hangs off the container's init pid, which the host's LXD API reports in the instance
state. `NodeState` reads that state once per collection cycle and shares it between the
collectors of one agent (a state call costs ~5-10 ms on a node running Docker).

Peers are named from the same API: every instance labelled `user.overcloud=<name>` on every
configured host, with the addresses of its LXD NICs. Collectors must not import the
orchestrator, so the two config keys are repeated here (`orchestrator/hosts.py` sets them).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from collectors.resource.instance import InstanceReading, InstanceSource
from lxdclient import LocalApi
from overcloud.errors import ServiceError
from overcloud.samples import now_ns
from overcloud.settings import LxdHost

OWNER_KEY = "user.overcloud"
NODE_KEY = "user.overcloud.node"


@dataclass(frozen=True)
class StateReading:
    time_ns: int
    state: dict[str, Any] | None
    """The `metadata` of `GET /1.0/instances/<name>/state`; None when the node is not there."""
    local: bool = True
    """The node runs on this machine, so its init pid is one of ours to look into."""

    @property
    def pid(self) -> int | None:
        """The node's init pid on this machine; None when it is stopped, gone or remote."""
        pid = (self.state or {}).get("pid")
        running = (self.state or {}).get("status") == "Running"
        return int(pid) if pid and running and self.local else None


class Apis:
    """Long-lived LXD API clients, one per host. A client costs ~10 ms of CPU to build (httpx
    sets up TLS even for a unix socket), more than the call itself: agents keep them, and drop
    one only when its connection failed."""

    def __init__(self) -> None:
        self._clients: dict[str, LocalApi] = {}
        self._lock = threading.Lock()

    def get(self, host: LxdHost, path: str) -> Any:
        with self._lock:
            api = self._clients.get(host.name)
            if api is None:
                api = self._clients[host.name] = LocalApi(host, timeout=5.0)
        try:
            return api.get(path)
        except (OSError, httpx.TransportError):
            with self._lock:
                self._clients.pop(host.name, None)
            api.__exit__()
            raise


def read_instance_state(apis: Apis, host: LxdHost, instance: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = apis.get(host, f"/1.0/instances/{instance}/state")
    except (ServiceError, OSError, ValueError, httpx.HTTPError):
        return None  # the host is away or the node is not (or no longer) there
    return state


class NodeState:
    """One node's LXD state, read at most once per `max_age` seconds (one read per cycle)."""

    def __init__(self, read: Callable[[], dict[str, Any] | None], max_age: float = 0.5,
                 local: bool = True) -> None:
        self._read = read
        self._max_age = max_age
        self._local = local
        self._lock = threading.Lock()
        self._last: StateReading | None = None
        self._at = 0.0

    @classmethod
    def from_lxd(cls, host: LxdHost, instance: str, apis: Apis | None = None) -> NodeState:
        # a remote host's API reports pids of *its* machine: only its addresses and counters
        # are usable from here (flow_iface); conntrack and Docker need an agent on that host
        pool = apis or Apis()
        return cls(lambda: read_instance_state(pool, host, instance), local=not host.remote)

    def read(self) -> StateReading:
        with self._lock:
            if self._last is None or time.monotonic() - self._at > self._max_age:
                self._last = StateReading(now_ns(), self._read(), self._local)
                self._at = time.monotonic()
            return self._last


# --- addresses -----------------------------------------------------------------------------

DOCKER_IFACES = ("docker", "br-", "veth")


def is_lxd_nic(name: str) -> bool:
    """Interfaces LXD gives the node (eth0, eth1…), not the ones Docker makes inside it."""
    return name != "lo" and not name.startswith(DOCKER_IFACES)


def nic_addresses(state: dict[str, Any]) -> list[str]:
    """Global IPv4/IPv6 addresses of the node's LXD NICs: how other nodes reach it."""
    out = []
    for name, iface in (state.get("network") or {}).items():
        if not is_lxd_nic(name):
            continue
        for a in iface.get("addresses") or []:
            if a.get("scope") == "global":
                out.append(str(a["address"]))
    return out


@dataclass(frozen=True)
class LocalNets:
    """What counts as *inside* a node: its own addresses, loopback, and Docker's subnets."""

    own: frozenset[str]
    inner: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def of(cls, state: dict[str, Any]) -> LocalNets:
        own: set[str] = set()
        inner = []
        for name, iface in (state.get("network") or {}).items():
            for a in iface.get("addresses") or []:
                own.add(str(a["address"]))
                if not is_lxd_nic(name) and a.get("scope") == "global":
                    inner.append(ipaddress.ip_network(f"{a['address']}/{a['netmask']}",
                                                      strict=False))
        return cls(frozenset(own), tuple(inner))

    def contains(self, address: str) -> bool:
        if address in self.own:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            return True
        return any(ip in net for net in self.inner)


@dataclass(frozen=True)
class Peer:
    node: str
    host: str


def overcloud_nodes(apis: Apis, hosts: Sequence[LxdHost], overcloud: str) -> dict[str, Peer]:
    """address → node, for every node of `overcloud` on every reachable host."""
    found: dict[str, Peer] = {}
    for host in hosts:
        try:
            for inst in apis.get(host, "/1.0/instances?recursion=1"):
                config = inst.get("config") or {}
                if config.get(OWNER_KEY) != overcloud:
                    continue
                state = apis.get(host, f"/1.0/instances/{inst['name']}/state")
                peer = Peer(str(config.get(NODE_KEY) or inst["name"]), host.name)
                for address in nic_addresses(state or {}):
                    found[address] = peer
        except (ServiceError, OSError, ValueError, httpx.HTTPError):
            continue  # a host that is away names no peers this time
    return found


class PeerDirectory:
    """Cached `overcloud_nodes`: refreshed every `ttl` s, or sooner (≤ once per `min_gap` s)
    when an address shows up that it does not know (a node launched or moved)."""

    def __init__(self, lookup: Callable[[], dict[str, Peer]], ttl: float = 60.0,
                 min_gap: float = 15.0) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._min_gap = min_gap
        self._map: dict[str, Peer] = {}
        self._at = -1e9

    def resolve(self, addresses: set[str]) -> dict[str, Peer]:
        age = time.monotonic() - self._at
        if age > self._ttl or (not addresses <= self._map.keys() and age > self._min_gap):
            self._map = self._lookup()
            self._at = time.monotonic()
        return {a: self._map[a] for a in addresses if a in self._map}


class _SharedInstanceSource:
    def __init__(self, node: NodeState) -> None:
        self._node = node

    def read(self) -> InstanceReading:
        r = self._node.read()
        return InstanceReading(r.time_ns, r.state)


def shared_instance_source(node: NodeState) -> InstanceSource:
    """`resource_instance` from the same per-cycle state read as the flow/service collectors."""
    return _SharedInstanceSource(node)
