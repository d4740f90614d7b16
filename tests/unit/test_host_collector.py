"""Golden-file test of the host collector (Telegraf's testcases idea): recorded psutil
readings in, expected line protocol out. Plus hand-computed checks of the formulas, so the
golden file is not merely the code agreeing with itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collectors.base import build
from collectors.resource.host import HostCollector, HostSnapshot, samples_between
from overcloud.lineprotocol import line
from overcloud.samples import Layer
from overcloud.waiting import wait_until

CASES = Path(__file__).parent / "testcases" / "host"


def _snapshots() -> tuple[HostSnapshot, HostSnapshot]:
    data = json.loads((CASES / "input.json").read_text())
    return HostSnapshot.from_json(data["previous"]), HostSnapshot.from_json(data["current"])


def test_golden_line_protocol() -> None:
    prev, cur = _snapshots()
    got = "\n".join(line(s) for s in samples_between(prev, cur)) + "\n"
    assert got == (CASES / "expected.lp").read_text()


def test_cpu_percent_and_rates_by_hand() -> None:
    prev, cur = _snapshots()
    samples = {(s.measurement, tuple(s.tags.items())): s for s in samples_between(prev, cur)}
    d = {k: cur.cpu_total[k] - prev.cpu_total[k] for k in cur.cpu_total}
    busy = sum(d.values()) - d["idle"] - d["iowait"]
    host = samples[("resource_host", ())]
    assert host.fields["cpu_percent"] == round(100 * busy / sum(d.values()), 3)
    seconds = (cur.time_ns - prev.time_ns) / 1e9
    lo = samples[("resource_host_net", (("interface", "lo"),))]
    want = (cur.net_io["lo"]["bytes_recv"] - prev.net_io["lo"]["bytes_recv"]) / seconds
    assert lo.fields["bytes_recv_per_s"] == round(want, 3)
    assert host.fields["ncpu"] == len(cur.cpu_per_core)


def test_first_snapshot_has_no_rates() -> None:
    _, cur = _snapshots()
    samples = samples_between(None, cur)
    assert all("cpu_percent" not in s.fields for s in samples)
    assert all(not any(k.endswith("_per_s") for k in s.fields) for s in samples)
    assert samples[0].measurement == "resource_host"


def test_live_collector_from_registry() -> None:
    c = build("host")
    assert isinstance(c, HostCollector) and c.layer is Layer.RESOURCE
    c.collect()
    # percentages need CPU time to pass between two readings, for the total as for each core
    # (read a moment apart: a tick can land between them, so wait for both)
    def with_cpu() -> list[Any] | None:
        out = c.collect()
        total = any(x.measurement == "resource_host" and "cpu_percent" in x.fields for x in out)
        cores = any(x.measurement == "resource_host_cpu" for x in out)
        return out if total and cores else None

    second = wait_until(with_cpu, timeout=10, interval=0.05, what="a reading with CPU percentages")
    measurements = {s.measurement for s in second}
    assert {"resource_host", "resource_host_cpu", "resource_host_net"} <= measurements
    host = next(s for s in second if s.measurement == "resource_host")
    assert 0.0 <= float(host.fields["cpu_percent"]) <= 100.0
