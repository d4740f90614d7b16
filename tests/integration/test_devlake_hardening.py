"""Issue 9 end to end on the real broker (tansu) and InfluxDB, with `overcloud devlake run`.

- The drill: 1,000 malformed messages of many kinds (`SampleBatch` and `LineBatch`) with 100
  valid batches of both kinds among them →
  every valid point stored, every bad message dead-lettered once with its reason, source
  partition and offset and its original bytes, the DevLake still consuming, and no database
  created or dropped (the attack `x"; DROP DATABASE "devlake_other` among them).
- A partial write: InfluxDB refuses a type conflict and a point beyond the retention
  policy in the middle of a batch → exactly those points dead-lettered with InfluxDB's
  reasons, every other point stored.
- Only OverClouds that exist: a made-up `overcloud` tag creates nothing and is dead-lettered;
  a DevLake database created while the DevLake runs is written to.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from devlake.sinks import InfluxQL, InfluxV1Sink
from overcloud import influxql
from overcloud.bus import ensure_topics, make_producer, metrics_topic
from overcloud.influxql import compose
from overcloud.lineprotocol import encode_lines
from overcloud.samples import Layer, Sample
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import encode_samples
from tests.conftest import Env
from tests.helpers import Background
from tests.integration.pipeline_kit import BASE_NS, batch, deadletters, stored

pytestmark = pytest.mark.integration

VICTIM = "devlake_other"


def _env(t: str = "2026-11-25T10:00:00Z", **payload: Any) -> bytes:
    return orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x", "time": t,
                         "payload": payload})


def _lines(*lines: object, version: int = 1) -> bytes:
    return orjson.dumps({"type": "LineBatch", "version": version, "id": "x",
                         "time": "2026-11-25T10:00:00Z", "payload": {"lines": list(lines)}})


def _row(tags: dict[str, Any] | None = None, fields: dict[str, Any] | None = None,
         t: Any = None, m: Any = "m") -> bytes:
    return _env(samples=[[m, {"node": "n1"} if tags is None else tags,
                          {"v": 1.0} if fields is None else fields, BASE_NS if t is None else t]])


#: (kind, the start of the reason the dead-letter record must carry, the message)
BAD: list[tuple[str, str, bytes]] = [
    ("not JSON", "not JSON", b"not json at all"),
    ("binary", "not JSON", b"\xff\xfe\x00binary"),
    ("NaN", "not JSON", b'{"type":"SampleBatch","version":1,"id":"x","time":"2026-11-25T10:00:00Z",'
                        b'"payload":{"samples":[["m",{},{"v":NaN},1]]}}'),
    ("infinity", "not JSON", _env().replace(b"{}", b'{"samples":[["m",{},{"v":1e999},1]]}')),
    ("JSON array", "envelope must be a JSON object", b"[1, 2]"),
    ("wrong envelope", "envelope lacks", b'{"type": "SampleBatch"}'),
    ("event type", "expected SampleBatch",
     b'{"type":"Nope","version":1,"id":"x","time":"2026-11-25T10:00:00Z","payload":{}}'),
    ("version", "SampleBatch version 9", orjson.dumps(
        {"type": "SampleBatch", "version": 9, "id": "x", "time": "2026-11-25T10:00:00Z",
         "payload": {"samples": []}})),
    ("bad time", "envelope 'time'", _env(t="yesterday", samples=[])),
    ("samples not a list", "payload.samples must be a list", _env(samples={"a": 1})),
    ("measurement", "samples[0]: bad measurement name", _row(m="bad measurement!")),
    ("tag type", "samples[0]: tags must map names to strings", _row(tags={"a": 1})),
    ("no fields", "samples[0]: fields must be a non-empty object", _row(fields={})),
    ("field type", "samples[0]: field 'v' has unsupported value", _row(fields={"v": [1]})),
    ("negative time", "samples[0]: time_ns must be a positive integer", _row(t=-5)),
    ("time beyond range", "samples[0]: time_ns", _row(t=2**63 - 1)),
    ("int beyond int64", "samples[0]: field 'v' is outside", _row(fields={"v": 2**64 - 1})),
    ("attack", "samples[0]: overcloud tag", _row(tags={"overcloud": 'x"; DROP DATABASE "devlake_other'})),
    ("uppercase overcloud", "samples[0]: overcloud tag", _row(tags={"overcloud": "Shop"})),
    ("tag key time", "samples[0]: tag key 'time' is reserved", _row(tags={"time": "x"})),
    ("field time", "samples[0]: field 'time' is reserved", _row(fields={"time": 1.0})),
    ("trailing backslash value", "samples[0]: tag 'node' value", _row(tags={"node": "n1\\"})),
    ("trailing backslash key", "samples[0]: tag key", _row(tags={"node\\": "n1"})),
    ("trailing backslash field", "samples[0]: field", _row(fields={"v\\": 1.0})),
    ("newline in tag", "samples[0]: tag 'node' value", _row(tags={"node": "a\nb"})),
    ("tag and field", "samples[0]: 'v' is both a tag and a field", _row(tags={"v": "x"})),
    ("one bad row of many", "samples[4999]: tags must map",
     _env(samples=[["m", {"node": "n1"}, {"v": 1.0}, BASE_NS + i] for i in range(4999)]
          + [["m", {"node": 5}, {"v": 1.0}, BASE_NS]])),
    ("line batch version", "LineBatch version 9 is not supported", _lines(version=9)),
    ("lines not a list", "payload.lines must be a list", orjson.dumps(
        {"type": "LineBatch", "version": 1, "id": "x", "time": "2026-11-25T10:00:00Z",
         "payload": {"lines": "m v=1.0 1"}})),
    ("line not text", "lines[0] must be a non-empty string", _lines(5)),
    ("line injection", "lines[0]: the time must be",
     _lines(f"m,node=n1 v=1.0 {BASE_NS}\nm,overcloud=other v=1.0 {BASE_NS}")),
    ("line attack", "lines[0]: overcloud tag",
     _lines(f'm,overcloud=x";\\ DROP\\ DATABASE\\ "devlake_other v=1.0 {BASE_NS}')),
    ("line key unsorted", "lines[0]: series key", _lines(f"m,z=1,node=n1 v=1.0 {BASE_NS}")),
    ("line field time", "lines[0]: field 'time' is reserved",
     _lines(f"m,node=n1 v=1.0,time=2.0 {BASE_NS}")),
    ("line NaN", "lines[0]: fields do not parse", _lines(f"m,node=n1 v=NaN {BASE_NS}")),
    ("line no time", "lines[0]: no time after the fields", _lines("m,node=n1 v=1.0")),
    ("line time beyond", "lines[0]: the time", _lines("m,node=n1 v=1.0 9223372036854775807")),
    ("huge garbage", "not JSON", b"{" * (3 << 20)),
    ("huge string", "samples[0]: tag 'node' value", _row(tags={"node": "x" * (2 << 20) + "\\"})),
]
#: kinds that are expensive (MBs): sent a few times only
HUGE = {"huge garbage", "huge string", "one bad row of many"}


def unknown(i: int) -> tuple[str, str, bytes]:
    """A well-formed sample for an OverCloud that does not exist (a new name each time)."""
    return ("unknown OverCloud", f"unknown OverCloud 'ghost-{i}'",
            encode_samples([Sample("m", {"overcloud": f"ghost-{i}", "node": "n1"}, {"v": 1.0},
                                   BASE_NS + i)]))


@pytest.fixture
def victim(env: Env) -> Iterator[InfluxQL]:
    """Another OverCloud's DevLake, with one point: it must be untouched at the end."""
    s = env.settings()
    sink, ql = InfluxV1Sink(s.influx), InfluxQL(s.influx)
    sink.ensure_database(VICTIM)
    sink.write(VICTIM, b"m,node=n1 v=1.0 %d" % BASE_NS)
    try:
        yield ql
    finally:
        sink.drop_database(VICTIM)
        sink.close()
        ql.close()


def _count(ql: InfluxQL, db: str, measurement: str = "m", fld: str = "v") -> int:
    series = ql.query(compose("SELECT count({}) FROM {}", influxql.ident(fld),
                              influxql.ident(measurement)), db)
    return int(series[0]["values"][0][1]) if series else 0


def produce(settings: Settings, values: list[bytes]) -> list[tuple[int, int]]:
    """Send in order; (partition, offset) of each, from the broker's acknowledgements."""
    ensure_topics(settings)
    producer = make_producer(settings, max_request_size=32 << 20)
    topic = metrics_topic(settings, Layer.RESOURCE)
    futures = [producer.send(topic, key=f"k{i % 7}".encode(), value=v) for i, v in enumerate(values)]
    producer.flush(60)
    where = [(f.get(30).partition, f.get(30).offset) for f in futures]
    producer.close()
    return where


def records(settings: Settings, expect: int, timeout: float = 120) -> dict[tuple[int, int], dict[str, Any]]:
    """The dead-letter records, by the source (partition, offset) they name."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for raw in deadletters(settings, expect, timeout):
        r = orjson.loads(raw)
        key = (r["source"]["partition"], r["source"]["offset"])
        assert key not in out, f"dead-lettered twice: {key}"
        out[key] = r
    return out


def test_the_drill(env: Env, logdir: Path, victim: InfluxQL) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    ql = victim
    before = set(ql.databases())
    # 1,000 bad messages (a new unknown OverCloud every 10th) and 100 valid batches among them
    bad_kinds = [k for k in BAD if k[0] not in HUGE]
    sent: list[tuple[str, str, bytes]] = []  # (kind, reason, bytes); kind "" = valid
    good = 0
    huge = [k for k in BAD if k[0] in HUGE]
    for i in range(1000):
        if i % 10 == 0:  # as agents send them (rendered), and as samples
            samples = batch(oc, good, 10)
            sent.append(("", "", (encode_lines if i % 20 else encode_samples)(samples)))
            good += len(samples)
        if i % 10 == 5:
            sent.append(unknown(i))
        elif i in (333, 666, 999):
            sent.append(huge[(i // 333) - 1])
        else:
            sent.append(bad_kinds[i % len(bad_kinds)])
    assert len(sent) == 1100 and good == 1000
    where = produce(settings, [v for _, _, v in sent])
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        wait_until(lambda: stored(settings, oc) >= good, timeout=120, interval=0.3,
                   what="every valid point")
        dead = records(settings, 1000)
        assert stored(settings, oc) == good
        missing = Counter(k for (k, _, _), w in zip(sent, where, strict=True) if k and w not in dead)
        assert len(dead) == 1000, (missing, lake.output()[-3000:])
        topic = metrics_topic(settings, Layer.RESOURCE)
        kinds: Counter[str] = Counter()
        for (kind, reason, value), (partition, offset) in zip(sent, where, strict=True):
            r = dead.get((partition, offset))
            if not kind:
                assert r is None, f"a valid batch was dead-lettered: {r}"
                continue
            assert r is not None, f"{kind} at {partition}/{offset} not dead-lettered"
            kinds[kind] += 1
            assert r["reason"].startswith(reason), (kind, r["reason"])
            assert r["source"]["topic"] == topic
            assert r["type"] == "DeadLetter" and "truncated" not in r
            assert base64.b64decode(r["value_b64"]) == value, f"{kind}: not the original bytes"
        assert len(kinds) == len(BAD) + 1, kinds
        assert lake.alive(), lake.output()
        # nothing created (no ghost-*, no attack), nothing dropped, the victim's point there
        assert set(ql.databases()) == before
        assert _count(ql, VICTIM) == 1
        # and it keeps consuming after all that
        produce(settings, [encode_samples(batch(oc, good, 5))])
        wait_until(lambda: stored(settings, oc) == good + 5, timeout=30, interval=0.2,
                   what="points sent after the bad ones")
    finally:
        assert lake.stop() == 0, lake.output()


def test_a_partial_write_dead_letters_exactly_the_refused_points(env: Env, logdir: Path) -> None:
    settings = env.settings()
    oc = env["TEST_OVERCLOUD"]
    db = settings.influx.database_prefix + oc
    ql = InfluxQL(settings.influx)
    sink = InfluxV1Sink(settings.influx)
    sink.write(db, b"pw,node=seed v=0.5 %d" % BASE_NS)  # `v` is a float from now on
    sink.close()

    def points(node: str, n: int, t0: int) -> list[Sample]:
        return [Sample("pw", {"overcloud": oc, "node": node}, {"v": float(i)}, BASE_NS + t0 + i)
                for i in range(n)]

    a = points("a", 20, 1000)
    b = [*points("b", 5, 2000), Sample("pw", {"overcloud": oc, "node": "b"}, {"v": "oops"},
                                       BASE_NS + 2100), *points("b2", 5, 2200)]
    c = [*points("c", 10, 3000),
         Sample("pw", {"overcloud": oc, "node": "c"}, {"v": 1.0}, 978_307_200 * 10**9),  # 2001
         Sample("pw", {"overcloud": oc, "node": "c"}, {"v": True}, BASE_NS + 3100)]
    values = [encode_samples(x) for x in (a, b, c)]
    where = produce(settings, values)
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        dead = records(settings, 2)
        wait_until(lambda: _count(ql, db, "pw") >= 41, timeout=60, interval=0.3,
                   what="the valid points")
        assert _count(ql, db, "pw") == 1 + 20 + 10 + 10  # the seed and every valid point
        assert set(dead) == {where[1], where[2]}  # a's message had nothing refused
        rb, rc = dead[where[1]], dead[where[2]]
        assert rb["refused_points"] == 1 and "field type conflict" in rb["reason"]
        assert '"oops"' in rb["refused"][0]["line"]
        assert rc["refused_points"] == 2
        assert {r["reason"].split(":")[1].strip() for r in rc["refused"]} >= {"field type conflict"}
        assert any("beyond retention" in r["reason"] for r in rc["refused"])
        assert base64.b64decode(rb["value_b64"]) == values[1]
        assert base64.b64decode(rc["value_b64"]) == values[2]
        assert len(deadletters(settings, 3, timeout=5)) == 2, "only the two messages"
        assert lake.alive(), lake.output()
    finally:
        ql.close()
        assert lake.stop() == 0, lake.output()


def test_only_overclouds_that_exist_are_written(env: Env, logdir: Path) -> None:
    settings = env.settings()
    late = f"late-{env['TEST_OVERCLOUD']}"
    db = settings.influx.database_prefix + late
    ql = InfluxQL(settings.influx)
    sink = InfluxV1Sink(settings.influx)
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        flood = [unknown(10_000 + i)[2] for i in range(300)]
        first = encode_samples([Sample("m", {"overcloud": late, "node": "n1"}, {"v": 1.0}, BASE_NS)])
        produce(settings, [*flood, first])
        dead = records(settings, 301)
        assert len(dead) == 301
        assert not [d for d in ql.databases() if d.startswith(settings.influx.database_prefix + "ghost")
                    or d == db]
        sink.ensure_database(db)  # the orchestrator's `devlake` task for a new OverCloud
        sent = [0]

        def agent_cycle_stored() -> bool:  # an agent sends every cycle: one of them lands
            sent[0] += 1
            produce(settings, [encode_samples([Sample("m", {"overcloud": late, "node": "n1"},
                                                      {"v": 2.0}, BASE_NS + sent[0])])])
            return _count(ql, db) >= 1

        wait_until(agent_cycle_stored, timeout=30, interval=0.5,
                   what="the points of an OverCloud created while the DevLake runs")
        assert sent[0] <= 3, "found within about one refresh interval"
        assert lake.alive(), lake.output()
    finally:
        sink.drop_database(db)
        sink.close()
        ql.close()
        assert lake.stop() == 0, lake.output()


def test_the_attack_of_the_issue_drops_nothing(env: Env, logdir: Path, victim: InfluxQL) -> None:
    """`x"; DROP DATABASE "devlake_other` as an `overcloud` tag, alone in its message."""
    settings = env.settings()
    raw = encode_samples([Sample("m", {"overcloud": 'x"; DROP DATABASE "devlake_other', "node": "n"},
                                 {"v": 1.0}, time.time_ns())])
    where = produce(settings, [raw])
    lake = Background(["devlake", "run"], env, logdir / "devlake.log").start()
    try:
        dead = records(settings, 1)
        assert "is not an OverCloud name" in dead[where[0]]["reason"]
        assert VICTIM in victim.databases() and _count(victim, VICTIM) == 1
    finally:
        assert lake.stop() == 0, lake.output()
