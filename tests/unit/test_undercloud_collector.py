"""Golden-file test of the UnderCloud host load collector: recorded LXD instance states in,
expected line protocol out, plus the arithmetic by hand so the golden file is not merely the
code agreeing with itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collectors.base import REGISTRY
from collectors.resource.undercloud import (
    Capacity,
    HostReading,
    UnderCloudCollector,
    samples_between,
)
from overcloud.lineprotocol import line

CASES = Path(__file__).parent / "testcases" / "undercloud"


def _case() -> tuple[HostReading, HostReading, Capacity]:
    data: dict[str, Any] = json.loads((CASES / "input.json").read_text())
    cap = Capacity(**data["capacity"])
    return (HostReading(**data["previous"]), HostReading(**data["current"]), cap)


def test_golden_line_protocol() -> None:
    prev, cur, cap = _case()
    got = "\n".join(line(s.with_tags({"host": "lxd1"})) for s in samples_between(prev, cur, cap))
    assert got + "\n" == (CASES / "expected.lp").read_text()


def test_sums_by_hand() -> None:
    prev, cur, cap = _case()
    (s,) = samples_between(prev, cur, cap)
    # n1 used 2.5 s of CPU in 2 s; n2's counter went down (restart) → 0; "new" has no previous
    assert s.fields["cpu_cores_used"] == 1.25
    assert s.fields["cpu_percent"] == 62.5  # 1.25 of 2 cores
    assert s.fields["mem_usage"] == 536870912 + 134217728 + 1048576  # running only
    assert s.fields["instances"] == 4 and s.fields["running_instances"] == 3
    # n1 eth0 +4000 +1000, n2 +200, lo never counted; per second over 2 s
    assert s.fields["net_bytes_per_s"] == 2600.0


def test_first_reading_has_no_rates_and_silence_is_no_data() -> None:
    _, cur, cap = _case()
    (s,) = samples_between(None, cur, cap)
    assert "cpu_percent" not in s.fields and s.fields["capacity_cpus"] == 2.0
    assert samples_between(cur, HostReading(cur.time_ns + 1, None), cap) == []


class _Recorded:
    def __init__(self, readings: list[HostReading]) -> None:
        self._readings = readings

    def read(self) -> HostReading:
        return self._readings.pop(0)


def test_collector_tags_host_and_is_registered() -> None:
    prev, cur, cap = _case()
    c = UnderCloudCollector(_Recorded([prev, cur]), "lxd2", cap)
    first, second = c.collect()[0], c.collect()[0]
    assert first.tags == {"host": "lxd2"} and second.fields["cpu_percent"] == 62.5
    assert REGISTRY["undercloud"] is UnderCloudCollector
