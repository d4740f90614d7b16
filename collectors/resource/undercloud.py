"""Load of one UnderCloud host, summed over its machine containers (`resource_undercloud`).

Why a host-level measurement of its own: placement and the node-overloaded alert ask "is this
LXD host busy?", and the honest answer is what its containers use against what the host has.
`resource_host` measures the machine the agent runs on, which on our test machines hosts
*several* LXD daemons; `resource_instance` is per container and would make a rule sum series
at evaluation time. One LXD call (`GET /1.0/instances?recursion=2` returns every instance
with its state) gives all counters at once, so the cost does not grow with calls per container.

Capacity is configured (`undercloud.host_cpus`, `undercloud.host_memory`; 0 = this machine),
because a host's share of a shared machine is a policy, not something LXD can tell us.

Split as elsewhere: `UnderCloudSource` fetches raw state (the LXD API, or recorded JSON in the
golden test) and the pure `samples_between` computes rates between two readings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import psutil

from collectors.base import register
from overcloud.errors import ServiceError
from overcloud.samples import FieldValue, Layer, Sample, now_ns


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory: int

    @classmethod
    def of_this_machine(cls, cpus: float = 0, memory: int = 0) -> Capacity:
        """Configured values, with 0 meaning this machine's cores / memory."""
        return cls(cpus or float(os.cpu_count() or 1), memory or int(psutil.virtual_memory().total))


@dataclass(frozen=True)
class HostReading:
    time_ns: int
    instances: dict[str, dict[str, Any]] | None
    """instance name -> its `state` document; None when the host's API did not answer."""


class UnderCloudSource(Protocol):
    def read(self) -> HostReading: ...


class LxdHostSource:
    """All instances of one LXD host with their state, in one API call over its unix socket."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def read(self) -> HostReading:
        from lxdclient import LocalApi

        try:
            with LocalApi(self._host, timeout=5.0) as api:
                items = api.get("/1.0/instances?recursion=2")
        except (ServiceError, httpx.HTTPError, OSError, ValueError):
            return HostReading(now_ns(), None)
        return HostReading(
            now_ns(), {str(i["name"]): i.get("state") or {} for i in items or []}
        )


def _cpu_ns(state: dict[str, Any]) -> int:
    return int((state.get("cpu") or {}).get("usage", 0))


def _net_bytes(state: dict[str, Any]) -> int:
    total = 0
    for name, iface in (state.get("network") or {}).items():
        if name != "lo":
            c = iface.get("counters") or {}
            total += int(c.get("bytes_received", 0)) + int(c.get("bytes_sent", 0))
    return total


def samples_between(prev: HostReading | None, cur: HostReading, cap: Capacity) -> list[Sample]:
    """One `resource_undercloud` sample; rates only for instances seen in both readings.

    A container that appeared since the last reading contributes from the next one on (its
    counters started before we saw them); a counter that went down (restart) counts as 0.
    No sample at all when the host did not answer: that is no data, not zero load.
    """
    if cur.instances is None:
        return []
    running = {n: st for n, st in cur.instances.items() if st.get("status") == "Running"}
    mem = sum(int((st.get("memory") or {}).get("usage", 0)) for st in running.values())
    fields: dict[str, FieldValue] = {
        "instances": len(cur.instances),
        "running_instances": len(running),
        "capacity_cpus": float(cap.cpus),
        "capacity_memory": cap.memory,
        "mem_usage": mem,
        "mem_percent": round(100 * mem / cap.memory, 3) if cap.memory else 0.0,
    }
    if prev is not None and prev.instances is not None:
        seconds = (cur.time_ns - prev.time_ns) / 1e9
        if seconds > 0:
            cpu = net = 0
            for name, st in cur.instances.items():
                before = prev.instances.get(name)
                if before is None:
                    continue
                cpu += max(_cpu_ns(st) - _cpu_ns(before), 0)
                net += max(_net_bytes(st) - _net_bytes(before), 0)
            cores = cpu / 1e9 / seconds
            fields["cpu_cores_used"] = round(cores, 4)
            fields["cpu_percent"] = round(100 * cores / cap.cpus, 3) if cap.cpus else 0.0
            fields["net_bytes_per_s"] = round(net / seconds, 3)
    return [Sample("resource_undercloud", {}, fields, cur.time_ns)]


@register("undercloud")
class UnderCloudCollector:
    """The load of one UnderCloud (LXD) host against its capacity (tag `host`)."""

    name = "undercloud"
    layer = Layer.RESOURCE

    def __init__(self, source: UnderCloudSource, host: str, capacity: Capacity) -> None:
        self._source = source
        self._capacity = capacity
        self._prev: HostReading | None = None
        self._tags = {"host": host}

    def collect(self) -> list[Sample]:
        cur = self._source.read()
        out = [s.with_tags(self._tags) for s in samples_between(self._prev, cur, self._capacity)]
        self._prev = cur
        return out
