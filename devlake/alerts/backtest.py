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


@dataclass(frozen=True)
class Backtest:
    transitions: list[Transition]
    states: list[dict[str, Any]]
    points: int
    databases: list[str]


def _query(rule: Rule, since_s: float) -> str:
    w = rule.watch
    _, names = compile_expression(w.field)
    cols = ", ".join(f'"{n}"' for n in dict.fromkeys(names))
    where = "".join(f" AND \"{k}\" = '{v}'" for k, v in w.where.items())
    # the `where` tags too: InfluxDB returns only the tags grouped by, and the evaluator checks
    # the scope on every point again (without them no scoped rule could ever fire here)
    tags = list(dict.fromkeys([*w.group_by, *w.where]))
    group = f" GROUP BY {', '.join(chr(34) + g + chr(34) for g in tags)}" if tags else ""
    return f'SELECT {cols} FROM "{w.measurement}" WHERE time > now() - {int(since_s)}s{where}{group}'


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
            for series in ql.query(_query(rule, since_s), db):
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
