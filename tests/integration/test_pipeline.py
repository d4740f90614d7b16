"""Issue 2, end to end on the real broker (tansu) and InfluxDB started by our own scripts."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from overcloud.bus import ensure_topics, make_producer, metrics_topic
from overcloud.samples import Layer
from overcloud.services import manager
from overcloud.waiting import wait_until
from overcloud.wire import encode_samples
from tests.conftest import Env
from tests.helpers import Background, run_cli
from tests.integration.pipeline_kit import Producer, batch, deadletters, stored

pytestmark = pytest.mark.integration


def devlake(env: Env, log: Path) -> Background:
    return Background(["devlake", "run"], env, log).start()


def test_agent_sample_is_queryable(env: Env, logdir: Path) -> None:
    oc = env["TEST_OVERCLOUD"]
    lake = devlake(env, logdir / "devlake.log")
    try:
        out = run_cli(["agent", "run", "--once", "--overcloud", oc, "--node", "web-1"], env,
                      check=True)
        assert "delivered" in out.stdout
        settings = env.settings()

        def host_sample() -> bool:
            res = run_cli(["metrics", "query",
                           "SELECT cpu_percent, mem_used_percent FROM resource_host GROUP BY node",
                           "--overcloud", oc], env)
            return res.returncode == 0 and "web-1" in res.stdout

        wait_until(host_sample, timeout=30, interval=0.3, what="the agent's sample in InfluxDB")
        latest = run_cli(["metrics", "latest", "--overcloud", oc], env, check=True).stdout
        for m in ("resource_host", "resource_host_cpu", "resource_host_net", "agent_spool"):
            assert m in latest
        assert f"devlake_{oc}" in latest
        assert settings.influx.database_prefix + oc in _databases(env)
    finally:
        assert lake.stop() == 0, lake.output()


def _databases(env: Env) -> str:
    return run_cli(["metrics", "query", "SHOW DATABASES"], env, check=True).stdout


def test_devlake_sigkill_mid_stream_stores_everything_once(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    load = Producer(settings, oc, batches=500, size=60, pace=0.02)  # >= 10 s of load
    lake = devlake(env, logdir / "devlake-1.log")
    load.start()
    wait_until(lambda: stored(settings, oc) >= 1000, timeout=60, interval=0.05,
               what="DevLake to store the first points")
    lake.kill()  # SIGKILL: no flush, no commit, no goodbye
    before = stored(settings, oc)
    assert before < load.total, "the kill must land mid-stream for this test to mean anything"
    lake = devlake(env, logdir / "devlake-2.log")
    try:
        assert load.done.wait(120)
        wait_until(lambda: stored(settings, oc) >= load.total, timeout=90, interval=0.3,
                   what=f"all {load.total} points")
        # exactly once: distinct timestamps per series, so any duplicate would raise the count
        assert stored(settings, oc) == load.total
    finally:
        assert lake.stop() == 0, lake.output()


def test_influxdb_down_30s_under_load_loses_nothing(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    load = Producer(settings, oc, batches=400, size=50, pace=0.1)  # ~40 s of load
    lake = devlake(env, logdir / "devlake.log")
    try:
        load.start()
        wait_until(lambda: stored(settings, oc) > 0, timeout=60, interval=0.1,
                   what="first points")
        manager.down(settings, ["influxdb"])
        outage = threading.Event()
        outage.wait(30)  # the outage itself: InfluxDB stays down for 30 s while load goes on
        assert lake.alive(), lake.output()
        manager.up(settings, ["influxdb"])
        assert load.done.wait(120)
        wait_until(lambda: stored(settings, oc) >= load.total, timeout=120, interval=0.5,
                   what=f"all {load.total} points after the outage")
        assert stored(settings, oc) == load.total
        assert "retrying with backoff" in lake.output()
    finally:
        manager.up(settings, ["influxdb"])
        assert lake.stop() == 0, lake.output()


def test_malformed_messages_are_deadlettered_and_good_ones_stored(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    ensure_topics(settings)
    producer = make_producer(settings)
    topic = metrics_topic(settings, Layer.RESOURCE)
    bad_kinds = [
        b"not json at all",
        b"\xff\xfe\x00binary",
        b"[]",
        b'{"type": "SampleBatch"}',
        b'{"type": "Nope", "version": 1, "id": "x", "time": "2026-01-01T00:00:00Z", "payload": {}}',
        orjson.dumps({"type": "SampleBatch", "version": 9, "id": "x",
                      "time": "2026-01-01T00:00:00Z", "payload": {"samples": []}}),
        orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                      "time": "2026-01-01T00:00:00Z",
                      "payload": {"samples": [["bad measurement!", {}, {"v": 1}, 1]]}}),
        orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                      "time": "2026-01-01T00:00:00Z",
                      "payload": {"samples": [["m", {"a": 1}, {"v": 1}, 1]]}}),
        orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                      "time": "2026-01-01T00:00:00Z",
                      "payload": {"samples": [["m", {}, {}, 1]]}}),
        orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                      "time": "2026-01-01T00:00:00Z",
                      "payload": {"samples": [["m", {}, {"v": 1}, -5]]}}),
    ]
    good = 0
    for i in range(1000):
        producer.send(topic, key=b"k", value=bad_kinds[i % len(bad_kinds)])
        if i % 4 == 0:
            samples = batch(oc, good, 10)
            producer.send(topic, key=b"k", value=encode_samples(samples))
            good += len(samples)
    producer.flush(30)
    lake = devlake(env, logdir / "devlake.log")
    try:
        wait_until(lambda: stored(settings, oc) >= good, timeout=90, interval=0.3,
                   what="every good point")
        assert stored(settings, oc) == good
        dead = deadletters(settings, 1000)
        assert len(dead) == 1000
        records = [orjson.loads(d) for d in dead]
        assert all(r["reason"] and r["source"]["topic"] == topic for r in records)
        reasons = {r["reason"].split(":")[0] for r in records}
        assert len(reasons) >= 5, reasons
        assert lake.alive(), lake.output()
        # and it keeps consuming after all that
        producer.send(topic, key=b"k", value=encode_samples(batch(oc, good, 5)))
        producer.flush(10)
        wait_until(lambda: stored(settings, oc) == good + 5, timeout=30, interval=0.2,
                   what="points sent after the bad ones")
    finally:
        producer.close()
        assert lake.stop() == 0, lake.output()
