"""`overcloud alerts test FILE`: what the rules would have done over recent DevLake data.

The same evaluator as the stream, fed the recent points of every DevLake database in time
order (InfluxQL on `/query`, so any InfluxDB 1.x/2.x/3.x answers), then ticked at "now":
the transitions it produces are what would have fired or resolved, and its final states are
what would be firing now. Nothing is published or notified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devlake.alerts.evaluator import Evaluator, Transition
from devlake.alerts.rules import Rule, compile_expression
from devlake.sinks import InfluxQL
from overcloud import influxql
from overcloud.influxql import QL, compose


@dataclass(frozen=True)
class Backtest:
    transitions: list[Transition]
    states: list[dict[str, Any]]
    points: int
    databases: list[str]


def query(rule: Rule, since_s: float) -> QL:
    """The rule's watch as InfluxQL over the last `since_s` seconds, every name quoted."""
    w = rule.watch
    _, names = compile_expression(w.field)
    cols = influxql.idents(dict.fromkeys(names))
    q = compose("SELECT {} FROM {} WHERE time > now() - {}", cols, influxql.ident(w.measurement),
                influxql.seconds(since_s))
    if w.where:
        q = compose("{} AND {}", q, influxql.tag_equals(w.where.items()))
    # the `where` tags too: InfluxDB returns only the tags grouped by, and the evaluator checks
    # the scope on every point again (without them no scoped rule could ever fire here)
    tags = list(dict.fromkeys([*w.group_by, *w.where]))
    if tags:
        q = compose("{} GROUP BY {}", q, influxql.idents(tags))
    return q


def backtest(ql: InfluxQL, rules: list[Rule], since_s: float, prefix: str, now_ns: int) -> Backtest:
    dbs = sorted(d for d in ql.databases() if d.startswith(prefix))
    transitions: list[Transition] = []
    states: list[dict[str, Any]] = []
    total = 0
    # one evaluator per rule, fed only that rule's query: a point carries just the tags its
    # rule's query grouped by, and fed to another rule of the same measurement it would open
    # a group with empty tags (a phantom `host=` alert)
    for rule in rules:
        points: list[tuple[int, str, dict[str, str], dict[str, Any]]] = []
        for db in dbs:
            for series in ql.query(query(rule, since_s), db):
                cols = series.get("columns") or []
                tags = {k: v for k, v in (series.get("tags") or {}).items() if v}
                for row in series.get("values") or []:
                    fields = {c: v for c, v in zip(cols[1:], row[1:], strict=False) if v is not None}
                    if fields:
                        points.append((int(row[0]), series["name"], tags, fields))
        points.sort(key=lambda p: p[0])
        total += len(points)
        ev = Evaluator([rule])
        for ts, measurement, tags, fields in points:
            ev.feed(measurement, tags, fields, ts)
            transitions += ev.drain()
        ev.tick(now_ns)
        transitions += ev.drain()
        states += ev.snapshot()
    transitions.sort(key=lambda t: t.at_ns)  # stable: rules in file order at equal times
    return Backtest(transitions, states, total, dbs)
