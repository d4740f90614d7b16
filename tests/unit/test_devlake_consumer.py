"""The DevLake consumer's decisions, above the MetricSink interface (in-memory doubles).

What is checked here with a fake sink is checked on the real broker and InfluxDB in
`tests/integration/test_devlake_hardening.py`; these tests pin the logic: a partly refused
write dead-letters exactly the refused points, databases are never created for OverClouds,
and a flood of unknown names reads `SHOW DATABASES` at a bounded rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka.structs import TopicPartition

from devlake.consumer import Databases, DevLake
from devlake.sinks import DatabaseMissing, PointsRefused
from overcloud.samples import Sample
from overcloud.settings import load_settings
from overcloud.wire import encode_samples


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class FakeConsumer:
    batches: list[list[Record]]
    commits: list[dict[TopicPartition, Any]] = field(default_factory=list)

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[TopicPartition, list[Record]]:
        if not self.batches:
            return {}
        out: dict[TopicPartition, list[Record]] = {}
        for r in self.batches.pop(0):
            out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return out

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


@dataclass
class FakeSink:
    """Stores lines per database; refuses lines for which `refuse(line)` gives a reason,
    like InfluxDB 1.x: the others of the same write are stored, the answer is 400."""

    existing: set[str] = field(default_factory=set)
    refuse: Callable[[str], str] = lambda line: ""
    stored: dict[str, set[str]] = field(default_factory=dict)
    writes: int = 0
    listings: int = 0
    created: list[str] = field(default_factory=list)

    def ensure_database(self, name: str, retention: str | None = None) -> None:
        self.created.append(name)
        self.existing.add(name)

    def set_retention(self, name: str, retention: str) -> None:
        raise AssertionError("the DevLake never changes a retention")

    def databases(self) -> set[str] | None:
        self.listings += 1
        return set(self.existing)

    def write(self, database: str, lines: bytes) -> None:
        self.writes += 1
        if database not in self.existing:
            raise DatabaseMissing(f"database not found: {database}")
        refused = []
        for line in lines.decode().split("\n"):
            reason = self.refuse(line)
            if reason:
                refused.append(reason)
            else:
                self.stored.setdefault(database, set()).add(line)
        if refused:
            raise PointsRefused(f"partial write: {refused[0]} dropped={len(refused)}",
                                dropped=len(refused))

    def drop_database(self, name: str) -> None:
        self.existing.discard(name)

    def close(self) -> None:
        pass


@dataclass
class FakeDeadLetters:
    sent: list[tuple[str, Record, Mapping[str, Any]]] = field(default_factory=list)

    def send(self, reason: str, record: Any, detail: Mapping[str, Any] | None = None) -> None:
        self.sent.append((reason, record, detail or {}))

    def flush(self) -> None:
        pass


SETTINGS = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_DEVLAKE_LINGER": "0.001"})


def message(overcloud: str, n: int, offset: int, **fields: Any) -> Record:
    samples = [Sample("m", {"overcloud": overcloud, "node": f"n{i}"} if overcloud else {"node": f"n{i}"},
                      {"v": float(i), **fields}, 1_000 + offset * 1000 + i) for i in range(n)]
    return Record("t", offset % 2, offset, b"k", encode_samples(samples))


def run(lake: DevLake, steps: int = 5) -> None:
    stop = threading.Event()
    for _ in range(steps):
        lake.step(stop)
    lake.flush(stop)


@pytest.fixture
def dead() -> FakeDeadLetters:
    return FakeDeadLetters()


def make(sink: FakeSink, dead: FakeDeadLetters, batches: list[list[Record]],
         refresh: float = 0.0) -> tuple[DevLake, FakeConsumer]:
    consumer = FakeConsumer(batches)
    return DevLake(SETTINGS, consumer, sink, dead, refresh_interval=refresh), consumer  # type: ignore[arg-type]


def test_a_partly_refused_write_dead_letters_exactly_the_refused_points(dead: FakeDeadLetters) -> None:
    sink = FakeSink({"devlake_shop"}, refuse=lambda ln: "field type conflict" if "v=13.0" in ln
                    or "v=40.0" in ln else "")
    msgs = [message("shop", 50, o) for o in range(4)]
    lake, consumer = make(sink, dead, [msgs])
    run(lake)
    stored = sink.stored["devlake_shop"]
    assert len(stored) == 4 * 50 - 8  # v=13 and v=40 in every message
    assert lake.stats.refused_points == 8
    # one record per source message, each naming its refused lines and InfluxDB's reason
    assert sorted(r.offset for _, r, _ in dead.sent) == [0, 1, 2, 3]
    for reason, record, detail in dead.sent:
        assert "field type conflict" in reason and record in msgs
        assert detail["refused_points"] == 2
        assert all(("v=13.0" in x["line"] or "v=40.0" in x["line"]) for x in detail["refused"])
    # bisecting costs at most two writes per refused point and halving, not one per point
    assert sink.writes <= 1 + 2 * 8 * 8 < 200
    assert consumer.commits, "the batch is done: committed"


def test_a_write_refused_whole_is_not_split(dead: FakeDeadLetters) -> None:
    sink = FakeSink({"devlake_shop"}, refuse=lambda ln: "beyond retention policy")
    lake, _ = make(sink, dead, [[message("shop", 64, 0)]])
    run(lake)
    assert sink.writes == 1 and lake.stats.refused_points == 64
    assert len(dead.sent) == 1 and dead.sent[0][2]["refused_points"] == 64


def test_overcloud_databases_are_never_created(dead: FakeDeadLetters) -> None:
    sink = FakeSink({"devlake_shop"})
    msgs = [message("shop", 3, 0), message("madeup", 3, 1), message("", 3, 2),
            message("other", 2, 3)]
    lake, consumer = make(sink, dead, [msgs])
    run(lake)
    assert sink.created == [SETTINGS.influx.default_database]  # the UnderCloud's own only
    assert set(sink.stored) == {"devlake_shop", SETTINGS.influx.default_database}
    assert sorted((r.offset, "unknown OverCloud" in reason) for reason, r, _ in dead.sent) == \
        [(1, True), (3, True)]
    assert consumer.commits


def test_a_database_created_later_is_found(dead: FakeDeadLetters) -> None:
    sink = FakeSink(set())
    lake, _ = make(sink, dead, [[message("shop", 2, 0)], [], [message("shop", 2, 1)]])
    run(lake, steps=1)
    assert len(dead.sent) == 1
    sink.existing.add("devlake_shop")  # the orchestrator's `devlake` task ran
    run(lake, steps=3)
    assert len(sink.stored["devlake_shop"]) == 2 and len(dead.sent) == 1


def test_a_flood_of_made_up_names_reads_the_database_list_at_a_bounded_rate(
        dead: FakeDeadLetters) -> None:
    now = [0.0]
    sink = FakeSink({"devlake_shop"})
    lake, _ = make(sink, dead, [[message(f"fake-{i}", 1, i)] for i in range(200)])
    lake._databases = Databases(sink, refresh_interval=1.0, clock=lambda: now[0])
    stop = threading.Event()
    for _ in range(200):
        lake.step(stop)
        lake.flush(stop)
        now[0] += 0.01  # 200 flushes in 2 s...
    assert len(dead.sent) == 200 and not sink.created
    # ...and one listing per second, however many names miss; nobody waited for it
    assert sink.listings <= 3, sink.listings


def test_a_dropped_database_dead_letters_late_points(dead: FakeDeadLetters) -> None:
    sink = FakeSink({"devlake_shop"})
    lake, _ = make(sink, dead, [[message("shop", 2, 0)], [message("shop", 2, 1)]])
    run(lake, steps=1)
    sink.existing.discard("devlake_shop")  # `overcloud delete`
    run(lake, steps=1)
    assert [r.offset for _, r, _ in dead.sent] == [1]
    assert "does not exist" in dead.sent[0][0] or "unknown OverCloud" in dead.sent[0][0]


def test_decode_errors_carry_the_record(dead: FakeDeadLetters) -> None:
    bad = Record("t", 3, 77, b"k", b'{"not": "a batch"}')
    lake, _ = make(FakeSink(), dead, [[bad]])
    run(lake)
    assert dead.sent[0][1] is bad and "envelope" in dead.sent[0][0]
