"""The per-container collector's arithmetic, on LXD state documents shaped like the API's."""

from __future__ import annotations

from typing import Any

from collectors.resource.instance import InstanceCollector, InstanceReading, samples_between


def _state(cpu_ns: int, rx: int, tx: int, status: str = "Running") -> dict[str, Any]:
    return {
        "status": status, "processes": 12,
        "cpu": {"usage": cpu_ns},
        "memory": {"usage": 200 << 20, "usage_peak": 300 << 20},
        "disk": {"root": {"usage": 1 << 30}},
        "network": {
            "eth0": {"counters": {"bytes_received": rx, "bytes_sent": tx,
                                  "packets_received": 10, "packets_sent": 5}},
            "lo": {"counters": {"bytes_received": 999, "bytes_sent": 999}},
        },
    }


def test_rates_between_two_readings() -> None:
    a = InstanceReading(1_000_000_000, _state(5_000_000_000, 1000, 500))
    b = InstanceReading(3_000_000_000, _state(6_500_000_000, 5000, 900))
    (s,) = samples_between(a, b)
    assert s.measurement == "resource_instance"
    assert s.fields["cpu_percent"] == 75.0  # 1.5 s of CPU in 2 s of wall time
    assert s.fields["net_bytes_received_per_s"] == 2000.0  # lo is not counted
    assert s.fields["net_bytes_sent"] == 900 and s.fields["running"] is True
    assert s.fields["mem_usage"] == 200 << 20 and s.fields["disk_usage"] == 1 << 30


def test_missing_instance_says_not_running() -> None:
    (s,) = samples_between(None, InstanceReading(5, None))
    assert s.fields == {"running": False}


class _Recorded:
    def __init__(self, readings: list[InstanceReading]) -> None:
        self._readings = readings

    def read(self) -> InstanceReading:
        return self._readings.pop(0)


def test_collector_tags_host_and_instance() -> None:
    c = InstanceCollector(_Recorded([InstanceReading(1, _state(0, 0, 0)),
                                     InstanceReading(2, _state(1, 0, 0))]), "lxd2", "shop-n1")
    first, second = c.collect()[0], c.collect()[0]
    assert first.tags == {"host": "lxd2", "instance": "shop-n1"}
    assert "cpu_percent" not in first.fields and "cpu_percent" in second.fields
