"""The stack's containers inside a node (measurement `service_container`), seen from the host.

State, health and restart count come from the Docker API of the node's own dockerd, reached
from the UnderCloud host through the node's filesystem: `/proc/<init pid>/root/run/docker.sock`
(no `lxc exec`, no agent inside the node; a call costs ~1-2 ms). Docker's stats endpoint is of
no use here: nested in an LXD container on cgroup v1 it returns empty memory and CPU figures
and takes a second per container. So usage is read where the kernel keeps it: memory from the
container's memory cgroup (`memory.usage_in_bytes`), CPU as the user+system time of the
processes in that cgroup (`/proc/<pid>/stat`; the `cpuacct` controller is not delegated into
the node, so there is no per-container CPU counter to read).

`parse_containers` and `container_samples` are pure (golden tests feed them recorded API
JSON); `DockerSource` does the I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from collectors.base import register
from collectors.node import NodeState
from overcloud.samples import FieldValue, Layer, Sample, now_ns

SERVICE_LABEL = "com.docker.compose.service"
TIERS = {"db": "db", "wordpress": "app", "nginx": "web"}
"""Compose service → tier of the 3-tier stack (`orchestrator/stack/compose.yml`)."""


@dataclass(frozen=True)
class ContainerInfo:
    service: str
    id: str
    state: str
    health: str
    restarts: int
    cpu_ns: int | None
    mem_usage: int | None


@dataclass(frozen=True)
class ContainerReading:
    time_ns: int
    containers: tuple[ContainerInfo, ...] | None
    """None when the node or its Docker cannot be reached."""


def parse_containers(listing: list[dict[str, Any]], inspects: Mapping[str, dict[str, Any]],
                     usage: Mapping[str, tuple[int, int]]) -> tuple[ContainerInfo, ...]:
    """Compose containers from `GET /containers/json?all=1`, their inspect documents and
    (cpu_ns, mem_bytes) usage by container id."""
    out = []
    for c in listing:
        service = (c.get("Labels") or {}).get(SERVICE_LABEL)
        if not service:
            continue
        cid = str(c["Id"])
        ins = inspects.get(cid) or {}
        st = ins.get("State") or {}
        health = (st.get("Health") or {}).get("Status") or "none"
        cpu, mem = usage.get(cid, (None, None))
        out.append(ContainerInfo(
            service=str(service), id=cid, state=str(st.get("Status") or c.get("State") or "unknown"),
            health=str(health), restarts=int(ins.get("RestartCount") or 0), cpu_ns=cpu,
            mem_usage=mem,
        ))
    return tuple(sorted(out, key=lambda i: (i.service, i.id)))


def container_samples(prev: ContainerReading | None, cur: ContainerReading) -> list[Sample]:
    if cur.containers is None:
        return []
    before = {c.id: c for c in (prev.containers or ())} if prev is not None else {}
    seconds = (cur.time_ns - prev.time_ns) / 1e9 if prev is not None else 0.0
    out = []
    for c in cur.containers:
        running = c.state == "running"
        fields: dict[str, FieldValue] = {
            "running": running,
            "state": c.state,
            "health": c.health,
            "healthy": running and c.health in ("healthy", "none"),
            "restarts": c.restarts,
        }
        if running and c.mem_usage is not None:
            fields["mem_usage"] = c.mem_usage
        p = before.get(c.id)
        if running and p is not None and p.cpu_ns is not None and c.cpu_ns is not None \
                and seconds > 0 and c.cpu_ns >= p.cpu_ns:
            fields["cpu_percent"] = round((c.cpu_ns - p.cpu_ns) / 1e9 / seconds * 100, 3)
        tags = {"service": c.service, "tier": TIERS.get(c.service, c.service)}
        out.append(Sample("service_container", tags, fields, cur.time_ns))
    return out


class ContainerSource(Protocol):
    def read(self) -> ContainerReading: ...


CGROUP_DIRS = ("sys/fs/cgroup/memory/docker/{id}", "sys/fs/cgroup/memory/system.slice/docker-{id}.scope")
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def cgroup_usage(root: Path, cid: str, proc: Path) -> tuple[int, int] | None:
    """(cpu_ns, memory bytes) of one container from its memory cgroup, read via the node's root."""
    for pattern in CGROUP_DIRS:
        d = root / pattern.format(id=cid)
        try:
            mem = int((d / "memory.usage_in_bytes").read_text())
            pids = (d / "cgroup.procs").read_text().split()
        except (OSError, ValueError):
            continue
        ticks = 0
        for pid in pids:
            try:
                stat = (proc / pid / "stat").read_text()
            except OSError:
                continue  # exited between the two reads
            fields = stat.rsplit(")", 1)[1].split()
            # utime stime cutime cstime are fields 14-17 of /proc/<pid>/stat (1-based)
            ticks += sum(int(x) for x in fields[11:15])
        return ticks * TICK_NS, mem
    return None


class DockerSource:
    """The node's dockerd over its socket, reached through `/proc/<init pid>/root`."""

    def __init__(self, node: NodeState, proc: Path = Path("/proc"), timeout: float = 5.0) -> None:
        self._node = node
        self._proc = proc
        self._timeout = timeout
        self._client: tuple[int, httpx.Client] | None = None

    def _docker(self, pid: int, root: Path) -> httpx.Client:
        """One client per node init pid (a restarted node has a new socket path); building
        one costs more CPU than the calls themselves."""
        if self._client is None or self._client[0] != pid:
            if self._client is not None:
                self._client[1].close()
            transport = httpx.HTTPTransport(uds=str(root / "run/docker.sock"))
            self._client = (pid, httpx.Client(transport=transport,
                                              base_url="http://docker/v1.41",
                                              timeout=self._timeout))
        return self._client[1]

    def read(self) -> ContainerReading:
        at = now_ns()
        pid = self._node.read().pid
        if pid is None:
            return ContainerReading(at, None)
        root = self._proc / str(pid) / "root"
        c = self._docker(pid, root)
        try:
            listing = c.get("/containers/json", params={"all": "1"}).raise_for_status().json()
            inspects = {
                x["Id"]: c.get(f"/containers/{x['Id']}/json").raise_for_status().json()
                for x in listing if (x.get("Labels") or {}).get(SERVICE_LABEL)
            }
        except (httpx.HTTPError, OSError, ValueError):
            return ContainerReading(at, None)
        usage = {
            cid: u for cid, ins in inspects.items()
            if (ins.get("State") or {}).get("Running")
            and (u := cgroup_usage(root, cid, self._proc)) is not None
        }
        return ContainerReading(at, parse_containers(listing, inspects, usage))


@register("service_container")
class ContainerCollector:
    """Each stack container of one node (tags `service`, `tier`)."""

    name = "service_container"
    layer = Layer.SERVICE

    def __init__(self, source: ContainerSource) -> None:
        self._source = source
        self._prev: ContainerReading | None = None

    def collect(self) -> list[Sample]:
        cur = self._source.read()
        out = container_samples(self._prev, cur)
        if cur.containers is not None:
            self._prev = cur
        return out
