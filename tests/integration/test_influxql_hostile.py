"""Issue 9 on a real InfluxDB: hostile names through every query builder touch no database.

Every builder of `tests/unit/test_influxql.py` runs with every hostile name, and each query
goes to InfluxDB as a POST (the method that lets `/query` run DROP and CREATE, so the worst
case). Afterwards the same databases exist, with their points. A control first shows that
the way the code used to build these queries really does drop a database here, so the
check can see one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from devlake.alerts.backtest import backtest
from devlake.sinks import InfluxQL, InfluxV1Sink
from overcloud import influxql
from overcloud.errors import PermanentError
from overcloud.settings import Settings
from tests.conftest import Env
from tests.unit.test_influxql import HOSTILE, QUOTING, VALIDATING, _rule

pytestmark = pytest.mark.integration

VICTIMS = ["devlake_other", "devlake_victim", "devlake_control"]


@pytest.fixture
def influx(services: Env) -> Iterator[tuple[Settings, InfluxV1Sink, InfluxQL]]:
    s = services.settings()
    sink, ql = InfluxV1Sink(s.influx), InfluxQL(s.influx)
    for db in VICTIMS:
        sink.ensure_database(db)
        sink.write(db, b"m,node=n1 v=1.0 %d" % (time.time_ns() - 3600 * 10**9))
    try:
        yield s, sink, ql
    finally:
        for db in VICTIMS:
            sink.drop_database(db)
        sink.close()
        ql.close()


def _points(ql: InfluxQL, db: str) -> int:
    series = ql.query(influxql.QL('SELECT count("v") FROM "m"'), db)
    return int(series[0]["values"][0][1]) if series else 0


def test_the_old_way_drops_a_database_here(influx: tuple[Settings, InfluxV1Sink, InfluxQL]) -> None:
    """Control: the backtest's former f-string with a `where` value like the issue's (its own
    `SELECT 'y` does not parse in 1.6, and then InfluxDB runs none of the statements)."""
    _, _, ql = influx
    value = "x'; DROP DATABASE devlake_control; SELECT * FROM \"m\" WHERE \"node\" = 'y"
    old = f"SELECT \"v\" FROM \"m\" WHERE time > now() - 60s AND \"node\" = '{value}'"
    ql.query(old, "devlake_victim", post=True)
    assert "devlake_control" not in ql.databases()


def test_hostile_queries_touch_no_database(influx: tuple[Settings, InfluxV1Sink, InfluxQL]) -> None:
    s, sink, ql = influx
    before = set(ql.databases())
    sent = refused = 0
    for build in QUOTING.values():
        for hostile in HOSTILE:
            q = build(hostile)
            with contextlib.suppress(PermanentError):  # an error answer does no harm
                ql.query(q, "devlake_victim", post=True)
            sent += 1
    assert set(ql.databases()) == before, "a query dropped or created a database"
    for build, _ok in VALIDATING.values():
        for hostile in HOSTILE:
            with pytest.raises(ValueError):
                build(hostile)
            refused += 1
    for hostile in HOSTILE:  # the sink itself, as the orchestrator and DevLake call it
        for db in (hostile, s.influx.database_prefix + hostile):
            with pytest.raises(PermanentError):
                sink.ensure_database(db)
            with pytest.raises(PermanentError):
                sink.drop_database(db)
    # `overcloud alerts test` over the real DevLake, the rule among them
    rules = [_rule(where={"node": h}) for h in HOSTILE] + [_rule(where={"node": "n1"})]
    result = backtest(ql, rules, 3 * 3600, "devlake_", time.time_ns())
    assert result.points >= 1  # the victims' own point, found by the benign rule
    assert sent == len(QUOTING) * len(HOSTILE) and refused == len(VALIDATING) * len(HOSTILE)
    assert set(ql.databases()) == before
    for db in VICTIMS:
        assert _points(ql, db) == 1, db
