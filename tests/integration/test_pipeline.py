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
from tests.integration.pipeline_kit import InfluxTap, Producer, batch, deadletters, stored

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
    """SIGKILL after a batch is stored and before its offsets are committed: the restarted
    DevLake writes that batch again, as the very same points, so nothing is lost and InfluxDB
    (one point per series and timestamp) still holds each sample once.

    A count of stored points alone cannot show this: a double write does not raise it. The
    tap between DevLake and InfluxDB sees every write, and holds the answer to one of them
    while the DevLake is killed, so the replay is certain, not a matter of timing."""
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    tap = InfluxTap(settings.influx.base_url)
    # small writes, so the held one is a small part of the stream
    via_tap = Env(env, OVERCLOUD_INFLUX_URL=tap.url, OVERCLOUD_DEVLAKE_BATCH_POINTS="500")
    load = Producer(settings, oc, batches=500, size=60, pace=0.02)  # >= 10 s of load
    lake = devlake(via_tap, logdir / "devlake-1.log")
    try:
        # the DevLake has joined its group and writes before the load starts
        warmup = make_producer(settings)
        warmup.send(metrics_topic(settings, Layer.RESOURCE), key=b"w",
                    value=encode_samples(batch(oc, 0, 10, measurement="warmup")))
        warmup.close()
        wait_until(lambda: stored(settings, oc, "warmup") == 10, timeout=60, interval=0.1,
                   what="the DevLake's first write")
        load.start()
        wait_until(lambda: stored(settings, oc) >= 1000, timeout=60, interval=0.05,
                   what="DevLake to store the first points")
        tap.hold_next_write()
        assert tap.holding.wait(30), "a write whose answer the tap holds"
        lake.kill()  # SIGKILL: the batch is in InfluxDB, its offsets are not committed
        tap.release()
        held, writes_before = set(tap.held), len(tap.writes)
        assert held and not load.done.is_set(), "the kill must land mid-stream"
        lake = devlake(via_tap, logdir / "devlake-2.log")
        assert load.done.wait(120)
        wait_until(lambda: stored(settings, oc) >= load.total, timeout=90, interval=0.3,
                   what=f"all {load.total} points")
        # a replay happened: the held batch was written again by the second DevLake
        replayed = {ln for w in tap.writes[writes_before:] for ln in w}
        assert held <= replayed, "the uncommitted batch was not replayed"
        lines = [ln for ln in tap.lines() if ln.startswith(b"itest,")]
        assert len(lines) > load.total
        # ...as identical points: every sample gave one distinct line, however often written
        assert len(set(lines)) == load.total, f"{len(set(lines)) - load.total} lines differ"
        # and the store holds each sample once (same series + timestamp overwrote)
        assert stored(settings, oc) == load.total
        assert lake.stop() == 0, lake.output()
    finally:
        tap.close()
        lake.stop()


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
