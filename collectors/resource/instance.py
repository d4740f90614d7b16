"""Per-machine-container resources from the LXD API (measurement `resource_instance`).

An UnderCloud host's LXD daemon already accounts every container's CPU time, memory, root
disk and network counters (`GET /1.0/instances/<name>/state`), so the node agent reads them
there instead of running inside the container: nothing to install in the node image, and a
stopped or moved container simply yields nothing (the sample says `running=false`).

Like the host collector, the work is split: `InstanceSource` fetches the raw state (the LXD
API in production, recorded JSON in tests) and `samples_between` computes rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from collectors.base import register
from overcloud.errors import ServiceError
from overcloud.samples import FieldValue, Layer, Sample, now_ns


@dataclass(frozen=True)
class InstanceReading:
    time_ns: int
    state: dict[str, Any] | None
    """The `metadata` of the LXD state call; None when the instance does not exist here."""


class InstanceSource(Protocol):
    def read(self) -> InstanceReading: ...


class LxdApiSource:
    """Reads one instance's state over the host's LXD unix socket."""

    def __init__(self, host: Any, instance: str) -> None:
        self._host = host
        self._instance = instance

    def read(self) -> InstanceReading:
        from lxdclient import LocalApi

        try:
            with LocalApi(self._host, timeout=5.0) as api:
                state = api.get(f"/1.0/instances/{self._instance}/state")
        except ServiceError:
            state = None
        return InstanceReading(now_ns(), state)


def _net(state: dict[str, Any]) -> dict[str, dict[str, int]]:
    out = {}
    for name, iface in (state.get("network") or {}).items():
        if name == "lo":
            continue
        c = iface.get("counters") or {}
        out[name] = {k: int(c.get(k, 0)) for k in
                     ("bytes_received", "bytes_sent", "packets_received", "packets_sent")}
    return out


def samples_between(prev: InstanceReading | None, cur: InstanceReading) -> list[Sample]:
    st = cur.state
    if st is None:
        return [Sample("resource_instance", {}, {"running": False}, cur.time_ns)]
    running = st.get("status") == "Running"
    cpu_ns = int((st.get("cpu") or {}).get("usage", 0))
    mem = st.get("memory") or {}
    disk = (st.get("disk") or {}).get("root") or {}
    fields: dict[str, FieldValue] = {
        "running": running,
        "processes": int(st.get("processes", 0)),
        "cpu_time_ns": cpu_ns,
        "mem_usage": int(mem.get("usage", 0)),
        "mem_usage_peak": int(mem.get("usage_peak", 0)),
        "disk_usage": int(disk.get("usage", 0)),
    }
    net = _net(st)
    fields["net_bytes_received"] = sum(n["bytes_received"] for n in net.values())
    fields["net_bytes_sent"] = sum(n["bytes_sent"] for n in net.values())
    if prev is not None and prev.state is not None:
        seconds = (cur.time_ns - prev.time_ns) / 1e9
        if seconds > 0:
            prev_cpu = int((prev.state.get("cpu") or {}).get("usage", 0))
            # CPU time per wall second, in percent of one core (200 = two cores busy)
            fields["cpu_percent"] = round(max(cpu_ns - prev_cpu, 0) / 1e9 / seconds * 100, 3)
            pnet = _net(prev.state)
            for key in ("bytes_received", "bytes_sent"):
                before = sum(n[key] for n in pnet.values())
                now = sum(n[key] for n in net.values())
                fields[f"net_{key}_per_s"] = round(max(now - before, 0) / seconds, 3)
    return [Sample("resource_instance", {}, fields, cur.time_ns)]


@register("instance")
class InstanceCollector:
    """Resources of one machine container on one UnderCloud host (tags `host`, `instance`)."""

    name = "instance"
    layer = Layer.RESOURCE

    def __init__(self, source: InstanceSource, host: str, instance: str) -> None:
        self._source = source
        self._prev: InstanceReading | None = None
        self._tags = {"host": host, "instance": instance}

    def collect(self) -> list[Sample]:
        cur = self._source.read()
        out = [s.with_tags(self._tags) for s in samples_between(self._prev, cur)]
        self._prev = cur
        return out
