"""The v2 write path (`/api/v2/write` through influxdb-client), on a real server.

No InfluxDB 2.x can be installed on our machines; Debian's VictoriaMetrics accepts the same
write API, so the DevLake's v2 dialect is exercised end to end against it. Its queries are
PromQL, so the check reads points back through its export API. VictoriaMetrics keeps
millisecond timestamps and ignores the bucket (the OverCloud is still in the `overcloud`
tag), so the test's points are 1 ms apart and selected by that tag.

What is the DevLake's and what the store's: VictoriaMetrics runs without de-duplication
(overcloud/services/catalog.py), so it keeps one raw sample per point *written*, even two with
the same series and timestamp. The test can therefore see every write the DevLake made: each
point written exactly once per delivery of its sample, and a redelivered sample written as the
very same point (series, timestamp, value) — which InfluxDB 2.x, keyed by series and
timestamp, overwrites instead of counting twice. That last step is the store's promise; what
the DevLake must do for it, and what this test checks, is write identical points.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from overcloud.services import manager
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background
from tests.integration.pipeline_kit import BASE_NS, Producer

pytestmark = pytest.mark.integration

Point = tuple[str, str, int, float]
"""(field, node tag, timestamp in ms, value) of one stored raw sample."""


def _expected(total: int) -> Counter[Point]:
    """One point per field for each sample the `Producer` sends (pipeline_kit.batch)."""
    out: Counter[Point] = Counter()
    for seq in range(total):
        ms = (BASE_NS + seq * 1_000_000) // 1_000_000
        for field in ("itest_v", "itest_seq"):
            out[(field, f"n{seq % 7}", ms, float(seq))] += 1
    return out


def test_devlake_writes_through_the_v2_api(env: Env, logdir: Path) -> None:
    settings = env.settings()
    manager.up(settings, ["victoriametrics"])
    vm = f"http://127.0.0.1:{settings.influx.port + 1000}"
    oc = env["TEST_OVERCLOUD"]
    v2 = Env(env, OVERCLOUD_INFLUX_DIALECT="v2", OVERCLOUD_INFLUX_URL=vm,
             OVERCLOUD_INFLUX_CREATE_DATABASES="false")
    load = Producer(settings, oc, batches=20, size=50, step_ns=1_000_000)
    lake = Background(["devlake", "run"], v2, logdir / "devlake.log").start()

    def stored() -> Counter[Point]:
        """Every raw sample VictoriaMetrics holds for this OverCloud, with its multiplicity."""
        httpx.get(f"{vm}/internal/force_flush", timeout=5)
        resp = httpx.get(f"{vm}/api/v1/export",
                         params={"match[]": f'{{__name__=~"itest_.*",overcloud="{oc}"}}'},
                         timeout=10)
        out: Counter[Point] = Counter()
        for ln in resp.text.splitlines():
            if ln:
                series = orjson.loads(ln)
                name, node = series["metric"]["__name__"], series["metric"]["node"]
                for ts, value in zip(series["timestamps"], series["values"], strict=True):
                    out[(name, node, ts, float(value))] += 1
        return out

    def at_least(n: int) -> Counter[Point] | None:
        got = stored()
        return got if got.total() >= n else None

    once = _expected(load.total)
    try:
        load.run()
        first = wait_until(lambda: at_least(once.total()), timeout=60, interval=0.5,
                           what="the first delivery's points in VictoriaMetrics")
        # every point written once, at the sample's own time, with its tags and value
        assert first == once, sorted((first - once).items())[:5] or sorted((once - first)
                                                                          .items())[:5]

        load.run()  # the same samples delivered again, as after a crash or a rebalance
        second = wait_until(lambda: at_least(2 * once.total()), timeout=60, interval=0.5,
                            what="the redelivered points in VictoriaMetrics")
        # each one written again as the identical point (same series, timestamp, value):
        # what a store keyed by series + timestamp (InfluxDB 2.x) keeps as one point
        assert second == once + once, sorted((second - once - once).items())[:5]
        assert lake.alive(), lake.output()
    finally:
        lake.stop()
        manager.down(settings, ["victoriametrics"])
