"""Metric samples: what collectors measure and DevLake stores.

A sample is one InfluxDB point: a measurement, grouping tags, value fields and a timestamp in
nanoseconds taken where it was measured. The timestamp travels with the sample so that a
replayed sample overwrites itself in InfluxDB (same series + time) instead of duplicating.

Measurements follow ARCHITECTURE.md: `resource_host`, `resource_instance`, `flow_iface`,
`flow_peer`, `service_http`, `service_container`, plus the agents' own `agent_*` health.
Tags are for grouping only and must stay bounded (no ids, no timestamps, no raw URLs).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

FieldValue = float | int | bool | str


class Layer(StrEnum):
    """The seed's three levels of visibility; each has its own Kafka topic."""

    RESOURCE = "resource"
    FLOW = "flow"
    SERVICE = "service"


#: tag keys samples may carry; anything else is a programming error caught in tests
TAG_KEYS = frozenset(
    {"overcloud", "cluster", "node", "host", "layer", "service", "cpu", "device", "interface",
     "path", "instance", "peer", "tier", "direction", "container", "rule", "agent", "proto",
     "port", "mount", "state", "src", "dst", "src_tier", "dst_tier", "iface", "peer_tier",
     "target"}
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One point. `fields` must not be empty; `time_ns` is Unix time in nanoseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def with_tags(self, extra: Mapping[str, str]) -> Sample:
        """A copy with `extra` tags added; tags already set on the sample win."""
        return Sample(self.measurement, {**extra, **self.tags}, self.fields, self.time_ns)


def now_ns() -> int:
    return time.time_ns()
