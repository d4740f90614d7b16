"""Host resources via psutil: CPU (total and per core), load, memory, swap, disk, network.

Split like Telegraf's `PS` interface: a `HostSource` takes a raw `HostSnapshot` (psutil in
production, recorded JSON in golden tests) and the pure function `samples_between` turns two
snapshots into samples. Counters are emitted as integers (cumulative) and rates as floats
computed between consecutive snapshots; the first snapshot yields no rates.

Measurements:
- `resource_host`       cpu_percent/user/system/iowait, load1/5/15, mem_*, swap_*
- `resource_host_cpu`   per core (tag `cpu`): cpu_percent, user, system, iowait
- `resource_host_disk`  per mount (tag `mount`): total, used, free, used_percent
- `resource_host_diskio` per device (tag `device`): read/write bytes+ops counters and rates
- `resource_host_net`   per interface (tag `interface`): bytes/packets/errors/drops and rates
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from collectors.base import register
from overcloud.samples import FieldValue, Layer, Sample, now_ns

_SKIP_FS = {"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2", "overlay",
            "squashfs", "nsfs", "mqueue", "debugfs", "tracefs", "securityfs", "pstore",
            "bpf", "autofs", "hugetlbfs", "fusectl", "configfs", "binfmt_misc", "rpc_pipefs"}
_CPU_KEYS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class HostSnapshot:
    """Raw readings at one instant, as plain data (JSON-serialisable for golden files)."""

    time_ns: int
    cpu_total: dict[str, float]
    cpu_per_core: list[dict[str, float]]
    load: tuple[float, float, float]
    memory: dict[str, int]
    swap: dict[str, int]
    disks: dict[str, dict[str, int]] = field(default_factory=dict)
    """mount -> total/used/free"""
    disk_io: dict[str, dict[str, int]] = field(default_factory=dict)
    net_io: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostSnapshot:
        return cls(**{**data, "load": tuple(data["load"])})


class HostSource(Protocol):
    def snapshot(self) -> HostSnapshot: ...


class PsutilSource:
    """Reads the live host through psutil; disk partitions are listed once (they rarely change)."""

    def __init__(self) -> None:
        self._mounts = [
            p.mountpoint
            for p in psutil.disk_partitions(all=False)
            if p.fstype not in _SKIP_FS
        ] or ["/"]

    def snapshot(self) -> HostSnapshot:
        def times(t: Any) -> dict[str, float]:
            return {k: getattr(t, k, 0.0) for k in _CPU_KEYS}

        disks = {}
        for mount in self._mounts:
            try:
                u = psutil.disk_usage(mount)
            except OSError:
                continue
            disks[mount] = {"total": u.total, "used": u.used, "free": u.free}
        disk_io = {
            dev: {"read_bytes": c.read_bytes, "write_bytes": c.write_bytes,
                  "read_count": c.read_count, "write_count": c.write_count}
            for dev, c in (psutil.disk_io_counters(perdisk=True, nowrap=True) or {}).items()
            if not dev.startswith(("loop", "ram"))
        }
        net_io = {
            nic: {"bytes_sent": c.bytes_sent, "bytes_recv": c.bytes_recv,
                  "packets_sent": c.packets_sent, "packets_recv": c.packets_recv,
                  "errin": c.errin, "errout": c.errout, "dropin": c.dropin, "dropout": c.dropout}
            for nic, c in psutil.net_io_counters(pernic=True, nowrap=True).items()
        }
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        return HostSnapshot(
            time_ns=now_ns(),
            cpu_total=times(psutil.cpu_times()),
            cpu_per_core=[times(t) for t in psutil.cpu_times(percpu=True)],
            load=os.getloadavg(),
            memory={"total": vm.total, "available": vm.available, "used": vm.used},
            swap={"total": sw.total, "used": sw.used},
            disks=disks,
            disk_io=disk_io,
            net_io=net_io,
        )


def _cpu_fields(prev: dict[str, float], cur: dict[str, float]) -> dict[str, FieldValue]:
    deltas = {k: max(cur.get(k, 0.0) - prev.get(k, 0.0), 0.0) for k in _CPU_KEYS}
    total = sum(deltas.values())
    if total <= 0:
        return {}
    busy = total - deltas["idle"] - deltas["iowait"]
    return {
        "cpu_percent": round(100.0 * busy / total, 3),
        "user": round(100.0 * (deltas["user"] + deltas["nice"]) / total, 3),
        "system": round(100.0 * (deltas["system"] + deltas["irq"] + deltas["softirq"]) / total, 3),
        "iowait": round(100.0 * deltas["iowait"] / total, 3),
    }


def _rates(prev: dict[str, int] | None, cur: dict[str, int], seconds: float) -> dict[str, FieldValue]:
    if not prev or seconds <= 0:
        return {}
    return {f"{k}_per_s": round(max(v - prev.get(k, v), 0) / seconds, 3) for k, v in cur.items()}


def samples_between(prev: HostSnapshot | None, cur: HostSnapshot) -> list[Sample]:
    """Samples for `cur`; CPU percentages and rates need `prev` (absent on the first call)."""
    ts = cur.time_ns
    out: list[Sample] = []
    host: dict[str, FieldValue] = {
        "load1": cur.load[0], "load5": cur.load[1], "load15": cur.load[2],
        "mem_total": cur.memory["total"], "mem_used": cur.memory["used"],
        "mem_available": cur.memory["available"],
        "mem_used_percent": round(
            100.0 * (cur.memory["total"] - cur.memory["available"]) / cur.memory["total"], 3
        ) if cur.memory["total"] else 0.0,
        "swap_total": cur.swap["total"], "swap_used": cur.swap["used"],
        "swap_used_percent": round(100.0 * cur.swap["used"] / cur.swap["total"], 3)
        if cur.swap["total"] else 0.0,
        "ncpu": len(cur.cpu_per_core),
    }
    seconds = (cur.time_ns - prev.time_ns) / 1e9 if prev else 0.0
    if prev:
        host.update(_cpu_fields(prev.cpu_total, cur.cpu_total))
        for i, (p, c) in enumerate(zip(prev.cpu_per_core, cur.cpu_per_core, strict=False)):
            fields = _cpu_fields(p, c)
            if fields:
                out.append(Sample("resource_host_cpu", {"cpu": f"cpu{i}"}, fields, ts))
    out.insert(0, Sample("resource_host", {}, host, ts))
    for mount, d in cur.disks.items():
        used_pct = round(100.0 * d["used"] / (d["used"] + d["free"]), 3) if d["used"] + d["free"] else 0.0
        out.append(Sample("resource_host_disk", {"mount": mount},
                          {**d, "used_percent": used_pct}, ts))
    for dev, io in cur.disk_io.items():
        prev_io = prev.disk_io.get(dev) if prev else None
        out.append(Sample("resource_host_diskio", {"device": dev},
                          {**io, **_rates(prev_io, io, seconds)}, ts))
    for nic, io in cur.net_io.items():
        prev_io = prev.net_io.get(nic) if prev else None
        out.append(Sample("resource_host_net", {"interface": nic},
                          {**io, **_rates(prev_io, io, seconds)}, ts))
    return out


@register("host")
class HostCollector:
    """Resource collector for the machine the agent runs on (tag `host` = its hostname)."""

    name = "host"
    layer = Layer.RESOURCE

    def __init__(self, source: HostSource | None = None, hostname: str | None = None) -> None:
        self._source = source or PsutilSource()
        self._prev: HostSnapshot | None = None
        self.hostname = hostname or socket.gethostname()

    def collect(self) -> list[Sample]:
        cur = self._source.snapshot()
        samples = samples_between(self._prev, cur)
        self._prev = cur
        return samples
