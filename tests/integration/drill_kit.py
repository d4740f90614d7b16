"""Tools of the kill -9 drills: freeze, kill and restart real processes; count what arrived.

- `kill9` stops one of our services with SIGKILL (no clean shutdown: what a crash does);
  `freeze`/`thaw` (SIGSTOP/SIGCONT) hold a consumer still, which is how a drill makes sure
  the broker dies holding records it acknowledged and nobody had read yet.
- `empty_buckets` counts, in InfluxDB, every `step` interval of a series without a sample:
  the drills' figure of loss (a late cycle would show as a gap too, so the agents measure on
  interval boundaries).
- `events_on_topic` reads the whole events topic back, to count events and their copies.
- `Figures` collects each drill's numbers; with OC_DRILL_REPORT=FILE they are written there
  as JSON lines (bench/drills.py prints them as the table of RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from devlake.sinks import client
from devtower.services.catalog import CATALOG
from overcloud.bus import events_topic
from overcloud.errors import DecodeError
from overcloud.events import Event
from overcloud.settings import Settings
from overcloud.wire import decode_event
from tests.helpers import Background

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _pid(proc: Background | int) -> int:
    if isinstance(proc, int):
        return proc
    assert proc.proc is not None
    return proc.proc.pid


def freeze(proc: Background | int) -> None:
    os.kill(_pid(proc), signal.SIGSTOP)


def thaw(proc: Background | int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: the test says so elsewhere
        os.kill(_pid(proc), signal.SIGCONT)


def kill9(settings: Settings, service: str) -> float:
    """SIGKILL one of our services (by its recorded pid); returns the time it died."""
    d = CATALOG[service].daemon(settings)
    assert d.pid() is not None, f"{service} is not running"
    assert d.stop(timeout=10, sig=signal.SIGKILL)
    return time.time()


def wait_clock(seconds_after: float, t0: float) -> None:
    """The drill's outage: a condition on the clock (t0 + seconds), not a sleep of a guess."""
    from overcloud.waiting import wait_until

    wait_until(lambda: time.time() - t0 >= seconds_after, timeout=seconds_after + 30,
               interval=0.1, what=f"{seconds_after:g} s after the kill")


def _series(settings: Settings, db: str, query: str) -> list[dict[str, Any]]:
    # signed in as the admin when InfluxDB has accounts (`services up influxdb` makes them)
    with client(settings.influx, 30) as http:
        r = http.get("/query", params={"db": db, "q": query, "epoch": "ns"})
    if r.status_code != 200:
        return []
    out: list[dict[str, Any]] = []
    for result in r.json().get("results", []):
        out.extend(result.get("series", []))
    return out


def first_sample_s(settings: Settings, db: str, measurement: str, field_: str,
                   where: dict[str, str]) -> int | None:
    """The second of the series' first sample (where a gap count may start), None if none."""
    for name in (db, measurement, field_, *where, *where.values()):
        assert _NAME.fullmatch(name), name
    cond = " AND ".join(f"\"{k}\" = '{v}'" for k, v in sorted(where.items()))
    q = f'SELECT first("{field_}") FROM "{measurement}"' + (f" WHERE {cond}" if cond else "")
    for s in _series(settings, db, q):
        return int(s["values"][0][0]) // 10**9
    return None


@dataclass
class Buckets:
    """One series, bucketed: how many intervals, how many empty, which ones, samples."""

    series: str
    intervals: int
    empty: list[int]
    samples: int
    tags: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    """Runs the agent itself reports it skipped for this series' collector (a busy machine)."""

    @property
    def unexplained(self) -> int:
        """Empty intervals the agent did not report as skipped: samples lost after measuring."""
        return max(0, len(self.empty) - self.skipped)


def empty_buckets(settings: Settings, db: str, measurement: str, field_: str,
                  where: dict[str, str], start_s: int, end_s: int, step: int = 1,
                  group_by: tuple[str, ...] = ()) -> list[Buckets]:
    """Per series (`group_by` tags), the `step`-second buckets in [start_s, end_s) with no
    sample. Names are checked against a plain pattern: no outside text reaches the query."""
    for name in (db, measurement, field_, *where, *where.values(), *group_by):
        assert _NAME.fullmatch(name), name
    cond = "".join(f" AND \"{k}\" = '{v}'" for k, v in sorted(where.items()))
    groups = "".join(f', "{g}"' for g in group_by)
    q = (f'SELECT count("{field_}") FROM "{measurement}" WHERE time >= {start_s * 10**9}'
         f" AND time < {end_s * 10**9}{cond} GROUP BY time({step}s){groups} fill(0)")
    out = []
    for s in _series(settings, db, q):
        values = s["values"]
        tags = ",".join(f"{k}={v}" for k, v in sorted((s.get("tags") or {}).items()))
        name = f"{measurement}{{{','.join(f'{k}={v}' for k, v in sorted(where.items()))}" \
               f"{',' if tags and where else ''}{tags}}}"
        out.append(Buckets(name, len(values), [int(t) // 10**9 for t, n in values if not n],
                           sum(int(n or 0) for _, n in values),
                           {**where, **(s.get("tags") or {})}))
    return out


def skipped_runs(settings: Settings, db: str, node: str, collector: str, start_s: int,
                 end_s: int) -> int:
    """Runs of `collector` that `node`'s agent reported skipped (`agent_skipped`) in the
    window, widened by a second each side (a late run lands in the next interval)."""
    for name in (db, node, collector):
        assert _NAME.fullmatch(name), name
    q = (f'SELECT count("runs") FROM "agent_skipped" WHERE "node" = \'{node}\' AND '
         f"\"collector\" = '{collector}' AND time >= {(start_s - 1) * 10**9} AND "
         f"time < {(end_s + 1) * 10**9}")
    for s in _series(settings, db, q):
        return int(s["values"][0][1] or 0)
    return 0


def events_on_topic(settings: Settings, timeout: float = 60) -> list[Event]:
    """Every decodable event on the events topic, in log order (copies included): read from
    the beginning up to the end offsets asked for first (not "until idle": on a busy machine
    a fetch can take longer than any idle timeout)."""
    topic = events_topic(settings)
    c = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None,
                      enable_auto_commit=False, allow_auto_create_topics=False)
    out: list[Event] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps:
            return out
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in c.poll(timeout_ms=500).values():
                for msg in records:
                    with contextlib.suppress(DecodeError):
                        out.append(decode_event(msg.value))
    finally:
        c.close()
    return out


def copies(events: list[Event]) -> tuple[int, int]:
    """(distinct event ids, records beyond the first of each id: replayed copies)."""
    n = Counter(e.id for e in events)
    return len(n), sum(v - 1 for v in n.values())


@dataclass
class Figures:
    """A drill's figures, printed by the test and written for bench/drills.py."""

    drill: str
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, **values: Any) -> None:
        self.values.update(values)

    def write(self) -> None:
        line = json.dumps({"drill": self.drill, **self.values}, sort_keys=False, default=str)
        print(f"DRILL {line}")
        path = os.environ.get("OC_DRILL_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")
