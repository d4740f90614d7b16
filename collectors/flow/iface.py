"""Per-interface traffic of one node (measurement `flow_iface`), from its LXD host's API.

LXD reports every interface inside the machine container with kernel counters (bytes,
packets, errors, drops). We keep the node's LXD NICs (`eth0`) and Docker's bridges
(`docker0`, `br-<network>`: traffic between the stack's containers on that node), and leave
out `lo` and Docker's per-container `veth*` (their names change with every container start,
which would make the `iface` tag unbounded).
"""

from __future__ import annotations

from typing import Any

from collectors.base import register
from collectors.node import NodeState, StateReading
from overcloud.samples import FieldValue, Layer, Sample

COUNTERS = {
    "bytes_received": "bytes_received",
    "bytes_sent": "bytes_sent",
    "packets_received": "packets_received",
    "packets_sent": "packets_sent",
    "errors_received": "errors_received",
    "errors_sent": "errors_sent",
    "drops_received": "packets_dropped_inbound",
    "drops_sent": "packets_dropped_outbound",
}
RATES = ("bytes_received", "bytes_sent", "packets_received", "packets_sent")


def _counters(state: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    out = {}
    for name, iface in ((state or {}).get("network") or {}).items():
        if name == "lo" or name.startswith("veth"):
            continue
        c = iface.get("counters") or {}
        out[name] = {ours: int(c.get(theirs, 0)) for ours, theirs in COUNTERS.items()}
    return out


def iface_samples_between(prev: StateReading | None, cur: StateReading) -> list[Sample]:
    """One sample per interface; per-second rates when `prev` has the same interface."""
    now = _counters(cur.state)
    before = _counters(prev.state) if prev is not None else {}
    seconds = (cur.time_ns - prev.time_ns) / 1e9 if prev is not None else 0.0
    out = []
    for name, c in sorted(now.items()):
        fields: dict[str, FieldValue] = dict(c)
        b = before.get(name)
        if b is not None and seconds > 0:
            for key in RATES:
                # a counter that went down was reset (interface recreated): no rate this time
                if c[key] >= b[key]:
                    fields[f"{key}_per_s"] = round((c[key] - b[key]) / seconds, 3)
        out.append(Sample("flow_iface", {"iface": name}, fields, cur.time_ns))
    return out


@register("flow_iface")
class IfaceCollector:
    """Traffic per interface of one node (tag `iface`)."""

    name = "flow_iface"
    layer = Layer.FLOW

    def __init__(self, node: NodeState) -> None:
        self._node = node
        self._prev: StateReading | None = None

    def collect(self) -> list[Sample]:
        cur = self._node.read()
        if cur.state is None:
            return []
        out = iface_samples_between(self._prev, cur)
        self._prev = cur
        return out
