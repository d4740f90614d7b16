"""`HostDriver`: what the orchestrator needs from an UnderCloud host, and the LXD one.

Every action is idempotent, because workflow tasks are re-run after a crash: launching a
node that already exists only makes sure it runs; adding a device that is there is a no-op;
deleting what is gone succeeds. Machine containers carry `user.overcloud` and
`user.overcloud.node` config keys, so a host can always say which OverCloud owns what
(`delete` and orphan checks rely on it, not on our own bookkeeping alone).

Callers name a node by its node name (`blog-n1`). The container usually has that name; a node
taken from the warm pool keeps the name it was launched with (LXD renames no running
container), and the driver finds it by its `user.overcloud.node` key (`container`).

The LXD driver drives the `lxc` client against the host's own socket: it is the same client
an operator would use to look at what we did, and it waits on LXD operations for us.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lxdclient import api_answers, lxc, lxc_env
from orchestrator.isolation import Isolation
from overcloud.errors import PermanentError, ServiceError, TemporaryError
from overcloud.settings import LxdHost, Settings

OWNER_KEY = "user.overcloud"
NODE_KEY = "user.overcloud.node"
POOL_KEY = "user.overcloud.pool"
"""On a pooled node (orchestrator/pool.py): `warming` while it is made ready, then `ready`;
`claimed` once an OverCloud took it (then it carries the two keys above as well)."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    """Container name, unique on the host (the OverCloud's name is in it)."""
    overcloud: str
    node: str
    image: str
    cpu: int
    memory_bytes: int
    network: str = ""
    """The OverCloud's own bridge on this host (eth0 joins it); empty: the host's default."""


class HostDriver(Protocol):
    name: str

    def reachable(self) -> bool: ...
    def launch(self, spec: NodeSpec) -> None: ...
    def address(self, name: str) -> str | None: ...
    def exec(self, name: str, *cmd: str, timeout: float = 300) -> str: ...
    def push(self, name: str, local: Path, remote: str, mode: str = "0644") -> None: ...
    def delete(self, name: str) -> None: ...
    def instances(self, overcloud: str | None = None) -> dict[str, str]: ...
    def ensure_network(self, bridge: str, address: str, overcloud: str) -> None: ...
    def delete_network(self, bridge: str) -> None: ...
    def networks(self, overcloud: str | None = None) -> dict[str, str]: ...


class MovableHost(HostDriver, Protocol):
    """What migration needs on top: CPU accounting, and a byte stream out of / into a node
    (a database volume travels as a tar stream between two nodes)."""

    def cpu_usage_ns(self) -> dict[str, int]: ...
    def exec_stream(self, name: str, *cmd: str, stdin: Any = None,
                    stdout: Any = None) -> subprocess.Popen[bytes]: ...


def pipe(src: MovableHost, tgt: MovableHost, node: str, send: tuple[str, ...],
         receive: tuple[str, ...], what: str, timeout: float = 600) -> None:
    """`send`'s output in `node` on `src` streamed into `receive` in `node` on `tgt` (a
    database moving node to node). Either side failing, or the stream outlasting `timeout`
    (both are killed then), is a TemporaryError naming `what`, with both sides' errors."""
    sender = src.exec_stream(node, *send, stdout=subprocess.PIPE)
    receiver = tgt.exec_stream(node, *receive, stdin=sender.stdout)
    assert sender.stdout is not None
    sender.stdout.close()  # the receiver holds it now; the sender sees EPIPE if it dies
    try:
        _, rerr = receiver.communicate(timeout=timeout)
        _, serr = sender.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        for p in (sender, receiver):
            p.kill()
            p.wait(10)
        raise TemporaryError(f"{what} took over {timeout:g}s") from None
    if sender.returncode or receiver.returncode:
        raise TemporaryError(f"{what} failed: {(serr or b'').decode(errors='replace')[-200:]} "
                             f"{(rerr or b'').decode(errors='replace')[-200:]}")


class LxdDriver:
    def __init__(self, settings: Settings, host: LxdHost) -> None:
        self._s = settings
        self.host = host
        self.name = host.name
        self._net_lock = threading.Lock()  # parallel launches on this host share its bridge
        self._isolated: set[str] = set()  # bridges this driver made (or found) and isolated
        self._names: dict[str, str] = {}  # node name → container name, for pooled nodes
        self._names_lock = threading.Lock()

    def _lxc(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        try:
            return lxc(self._s, self.host, *args, timeout=timeout, check=check).stdout
        except ServiceError as exc:
            raise TemporaryError(str(exc), delay=1.0) from None

    def _list(self) -> list[dict[str, Any]]:
        return list(json.loads(self._lxc("list", "--format", "json", timeout=60) or "[]"))

    def container(self, node: str) -> str:
        """The container of `node`: the one carrying it as `user.overcloud.node` when that
        is not a container of the node's own name (a claimed pooled node), else `node`.
        Remembered once seen, with every other container of the same listing (one `lxc
        list` for all the nodes of a host): a node's container changes only by a claim
        (`adopt`) or by a move to another host, whose driver is another."""
        with self._names_lock:
            if node in self._names:
                return self._names[node]
        listed = self._list()
        with self._names_lock:
            for inst in listed:  # a container of the node's own name wins over a pooled one
                self._names.setdefault(_listed(inst), str(inst["name"]))
                self._names[str(inst["name"])] = str(inst["name"])
            return self._names.setdefault(node, node)

    def _forget(self, node: str) -> None:
        with self._names_lock:
            self._names.pop(node, None)

    def reachable(self) -> bool:
        return api_answers(self.host)

    def instances(self, overcloud: str | None = None) -> dict[str, str]:
        """Our containers on this host: name → OverCloud (only those of `overcloud` if given).
        A claimed pooled container is listed by the node name it took (`_listed`)."""
        found = {}
        for inst in self._list():
            owner = (inst.get("config") or {}).get(OWNER_KEY)
            if owner and (overcloud is None or owner == overcloud):
                found[_listed(inst)] = owner
        return found

    def _state(self, name: str) -> str | None:
        out = self._lxc("list", f"^{self.container(name)}$", "--format", "json", timeout=60)
        items = json.loads(out or "[]")
        return str(items[0]["status"]) if items else None

    def launch(self, spec: NodeSpec) -> None:
        state = self._state(spec.name)
        if state is None:
            try:
                lxc(self._s, self.host,
                    "launch", spec.image, spec.name,
                    *(("--network", spec.network) if spec.network else ()),
                    "-c", "security.nesting=true",
                    "-c", f"limits.cpu={spec.cpu}",
                    "-c", f"limits.memory={spec.memory_bytes}",
                    "-c", f"{OWNER_KEY}={spec.overcloud}",
                    "-c", f"{NODE_KEY}={spec.node}")
            except ServiceError as exc:
                if "Image not found" in str(exc):  # retrying cannot make it appear
                    self.delete(spec.name)
                    raise PermanentError(str(exc)) from None
                raise TemporaryError(str(exc), delay=1.0) from None
        elif state != "Running":
            self._lxc("start", self.container(spec.name))

    def set_limits(self, name: str, cpu: int, memory_bytes: int) -> None:
        """Change a running node's cores and memory in place: LXD writes the cgroup limits of
        the live container (no restart; its uptime goes on)."""
        self._lxc("config", "set", self.container(name), f"limits.cpu={int(cpu)}",
                  f"limits.memory={int(memory_bytes)}", timeout=60)

    def address(self, name: str) -> str | None:
        out = self._lxc("list", f"^{self.container(name)}$", "--format", "json", timeout=60)
        for inst in json.loads(out or "[]"):
            nets = ((inst.get("state") or {}).get("network") or {})
            for addr in (nets.get("eth0") or {}).get("addresses", []):
                if addr.get("family") == "inet" and addr.get("scope") == "global":
                    return str(addr["address"])
        return None

    def exec(self, name: str, *cmd: str, timeout: float = 300) -> str:
        return self._lxc("exec", self.container(name), "--", *cmd, timeout=timeout)

    def push(self, name: str, local: Path, remote: str, mode: str = "0644") -> None:
        self._lxc("file", "push", "-p", "--mode", mode, str(local),
                  f"{self.container(name)}{remote}")

    def delete(self, name: str) -> None:
        if self._state(name) is not None:
            self._lxc("delete", "--force", self.container(name))
        self._forget(name)

    def stop(self, name: str) -> None:
        """Shut a node down cleanly (its init stops Docker, which stops the stack; 60 s, then
        forced); its disk stays. A stopped or missing node is left as it is."""
        if self._state(name) == "Running":
            self._lxc("stop", "--timeout", "60", self.container(name), timeout=120, check=False)
            if self._state(name) == "Running":
                self._lxc("stop", "--force", self.container(name), timeout=60)

    def cpu_usage_ns(self) -> dict[str, int]:
        """CPU time used so far by each of our running nodes, by node name (LXD's cgroup
        accounting)."""
        usage = {}
        for inst in self._list():
            config = inst.get("config") or {}
            if config.get(OWNER_KEY) and inst.get("status") == "Running":
                usage[_listed(inst)] = int(
                    ((inst.get("state") or {}).get("cpu") or {}).get("usage", 0))
        return usage

    def exec_stream(self, name: str, *cmd: str, stdin: Any = None,
                    stdout: Any = None) -> subprocess.Popen[bytes]:
        """`lxc exec NAME -- CMD` with its stdin/stdout wired to the given pipes or files."""
        return subprocess.Popen(["lxc", "exec", self.container(name), "--", *cmd],
                                env=lxc_env(self._s, self.host),
                                stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)

    # --- the warm pool (orchestrator/pool.py) ---------------------------------------------

    def pool_nodes(self) -> dict[str, tuple[str, str]]:
        """Pooled containers not claimed yet: name → (state, created as LXD says it)."""
        return {str(i["name"]): (str(i["config"][POOL_KEY]), str(i.get("created_at") or ""))
                for i in self._list()
                if (i.get("config") or {}).get(POOL_KEY) in ("warming", "ready")}

    def launch_pool(self, name: str, image: str, cpu: int, memory_bytes: int) -> None:
        """A pooled container: no network at all until claimed (`attach`), the lowest CPU
        priority (a refill never competes with the OverClouds' own nodes), `warming`."""
        try:
            lxc(self._s, self.host, "launch", image, name, "--no-profiles", "-s", "default",
                "-c", "security.nesting=true", "-c", f"limits.cpu={cpu}",
                "-c", f"limits.memory={memory_bytes}", "-c", "limits.cpu.priority=0",
                "-c", f"{POOL_KEY}=warming")
        except ServiceError as exc:
            raise TemporaryError(str(exc), delay=1.0) from None

    def mark_pool(self, name: str, state: str) -> None:
        self._lxc("config", "set", name, f"{POOL_KEY}={state}", timeout=60)

    def adopt(self, container: str, overcloud: str, node: str, cpu: int,
              memory_bytes: int) -> None:
        """Claim pooled `container` as `node` of `overcloud` with its size (one LXD config
        change: the keys every ownership check reads, the limits, the normal CPU priority;
        LXD refuses two changes of one instance at once); from now on `node` names it."""
        self._lxc("config", "set", container, f"{POOL_KEY}=claimed", f"{OWNER_KEY}={overcloud}",
                  f"{NODE_KEY}={node}", "limits.cpu.priority=10", f"limits.cpu={int(cpu)}",
                  f"limits.memory={int(memory_bytes)}", timeout=60)
        with self._names_lock:
            self._names[node] = container

    def attach(self, node: str, bridge: str) -> str:
        """Give claimed `node` its eth0 on `bridge` (hot-plugged) and its DHCP lease; its
        address as the node sees it ("" if none yet). Safe to repeat: an eth0 already there
        is left as it is."""
        inst = self.container(node)
        try:
            self._lxc("config", "device", "add", inst, "eth0", "nic", f"network={bridge}",
                      "name=eth0", timeout=60)
        except TemporaryError as exc:
            if "already exists" not in str(exc):
                raise
        # ifupdown's `auto eth0` found no device at boot; a second ifup of an up eth0 is a
        # no-op; the address in the same call (one `lxc exec` instead of a list after it)
        out = self._lxc("exec", inst, "--", "sh", "-c", "ifup eth0 >/dev/null 2>&1; "
                        "ip -4 -o addr show dev eth0 scope global", timeout=60)
        for word in out.split():
            with contextlib.suppress(ValueError):
                return str(ipaddress.IPv4Interface(word).ip)
        return ""

    # --- OverCloud networks ---------------------------------------------------------------

    def networks(self, overcloud: str | None = None) -> dict[str, str]:
        """Our bridges on this host: name → OverCloud (only those of `overcloud` if given)."""
        return {b: owner for b, (owner, _) in self.overcloud_networks().items()
                if overcloud is None or owner == overcloud}

    def overcloud_networks(self) -> dict[str, tuple[str, str]]:
        """Our bridges on this host: name → (OverCloud, subnet CIDR)."""
        out = self._lxc("network", "list", "--format", "json", timeout=60)
        found = {}
        for net in json.loads(out or "[]"):
            config = net.get("config") or {}
            owner = config.get(OWNER_KEY)
            if owner and net.get("managed"):
                try:
                    cidr = str(ipaddress.ip_interface(config.get("ipv4.address", "")).network)
                except ValueError:
                    cidr = ""  # not ours to judge; no subnet to allow then
                found[net["name"]] = (owner, cidr)
        return found

    def ensure_network(self, bridge: str, address: str, overcloud: str) -> None:
        """The OverCloud's bridge with its explicit subnet; no NAT: nodes talk to each other
        and to the host (proxy devices), never out. Safe to repeat and to race."""
        with self._net_lock:
            if bridge in self._isolated:  # made and isolated by this driver already
                return
            if bridge not in self.networks():
                try:
                    lxc(self._s, self.host, "network", "create", bridge,
                        f"ipv4.address={address}", "ipv4.nat=false", "ipv6.address=none",
                        f"{OWNER_KEY}={overcloud}", timeout=120)
                except ServiceError as exc:
                    if bridge not in self.networks():  # another process got there first: fine
                        raise TemporaryError(str(exc), delay=1.0) from None
        self.isolate()  # also when it existed: a crash may have come between create and this
        with self._net_lock:
            self._isolated.add(bridge)

    def delete_network(self, bridge: str) -> None:
        with self._net_lock:
            self._isolated.discard(bridge)
        if bridge in self.networks():
            self._lxc("network", "delete", bridge, timeout=120)
        self.isolate()

    def isolate(self) -> None:
        """Keep this machine's OverCloud networks apart (orchestrator/isolation.py), from what
        every host reports: a remote host's bridges may share our kernel (a second daemon on
        this machine), and elsewhere their subnets say what traffic between machines is ours."""
        hosts = {**drivers(self._s), self.name: self}
        Isolation(self._s.undercloud.bridge_prefix, self._s.state_dir / "run",
                  {name: d._answering_networks for name, d in hosts.items()}).sync()

    def _answering_networks(self) -> dict[str, tuple[str, str]]:
        """`overcloud_networks`, or at once `TemporaryError` if the daemon does not answer
        (rather than after an lxc call's long timeout)."""
        if not self.reachable():
            raise TemporaryError(f"{self.name} does not answer")
        return self.overcloud_networks()


def _listed(inst: dict[str, Any]) -> str:
    """The name a container goes by: a claimed pooled one by its node's, else its own."""
    config = inst.get("config") or {}
    if config.get(POOL_KEY) == "claimed" and config.get(NODE_KEY):
        return str(config[NODE_KEY])
    return str(inst["name"])


def drivers(settings: Settings) -> dict[str, LxdDriver]:
    """One driver per UnderCloud host, by host name: the configured ones, then the HTTPS
    remotes an operator added (`overcloud undercloud add`, kept in the inventory)."""
    from orchestrator.inventory import added_lxd_hosts

    hosts = [*settings.lxd_hosts, *added_lxd_hosts(settings)]
    return {h.name: LxdDriver(settings, h) for h in hosts}
