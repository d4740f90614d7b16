"""The v2 write path (`/api/v2/write` through influxdb-client), on a real server.

No InfluxDB 2.x can be installed on our machines; Debian's VictoriaMetrics accepts the same
write API, so the DevLake's v2 dialect is exercised end to end against it. Its queries are
PromQL, so the check reads points back through its export API. VictoriaMetrics keeps
millisecond timestamps and ignores the bucket (the OverCloud is still in the `overcloud`
tag), so the test's points are 1 ms apart and selected by that tag.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from overcloud.services import manager
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background
from tests.integration.pipeline_kit import Producer

pytestmark = pytest.mark.integration


def test_devlake_writes_through_the_v2_api(env: Env, logdir: Path) -> None:
    settings = env.settings()
    manager.up(settings, ["victoriametrics"])
    vm = f"http://127.0.0.1:{settings.influx.port + 1000}"
    oc = env["TEST_OVERCLOUD"]
    v2 = Env(env, OVERCLOUD_INFLUX_DIALECT="v2", OVERCLOUD_INFLUX_URL=vm,
             OVERCLOUD_INFLUX_CREATE_DATABASES="false")
    load = Producer(settings, oc, batches=20, size=50, step_ns=1_000_000)
    lake = Background(["devlake", "run"], v2, logdir / "devlake.log").start()
    try:
        load.run()
        load.run()  # the same points again: the store must not count them twice

        def stored() -> int:
            httpx.get(f"{vm}/internal/force_flush", timeout=5)
            resp = httpx.get(f"{vm}/api/v1/export",
                             params={"match[]": f'{{__name__="itest_seq",overcloud="{oc}"}}'},
                             timeout=10)
            return sum(len(orjson.loads(ln)["values"]) for ln in resp.text.splitlines() if ln)

        wait_until(lambda: stored() >= load.total, timeout=60, interval=0.5,
                   what="points in VictoriaMetrics")
        assert stored() == load.total
        assert lake.alive(), lake.output()
    finally:
        lake.stop()
        manager.down(settings, ["victoriametrics"])
