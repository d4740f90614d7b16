"""The same rules as Grafana alert-rule provisioning (`provisioning/alerting/*.yaml`).

Why export at all when the evaluator runs on the stream: teams that live in Grafana want the
rules next to their dashboards, and Grafana (11+) can express most of ours — a query on the
DevLake's InfluxDB datasource (InfluxQL), a reduce, a threshold with a recovery threshold
(`unloadEvaluator`), `for`, no-data handling, labels and annotations. Grafana evaluates by
polling the database every `interval`, so its detection is slower; the stream evaluator
stays the source of `NodeOverloaded`. `provisioning(rules)` is reused by the dashboards code.
"""

from __future__ import annotations

import ast
from typing import Any

from devlake.alerts.rules import Rule, compile_expression, format_duration
from overcloud import influxql
from overcloud.influxql import QL, compose

_GRAFANA_OP = {">": "gt", ">=": "gt", "<": "lt", "<=": "lt", "==": "within_range", "!=": "outside_range"}
_UNLOAD = {"gt": "lt", "lt": "gt"}
_NO_DATA = {"keep": "KeepLast", "alert": "Alerting", "resolve": "OK"}


_OPS: dict[type[ast.operator], QL] = {ast.Add: QL("+"), ast.Sub: QL("-"), ast.Mult: QL("*"),
                                      ast.Div: QL("/")}


def _mean_of(node: ast.AST) -> QL:
    """The field expression with every field as `mean("field")`, rebuilt from its syntax tree
    (names quoted, numbers as literals): no text of the rule is pasted into the query."""
    if isinstance(node, ast.Name):
        return compose("mean({})", influxql.ident(node.id))
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return influxql.number(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return compose("-({})", _mean_of(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return compose("({} {} {})", _mean_of(node.left), _OPS[type(node.op)], _mean_of(node.right))
    raise ValueError(f"unexpected {ast.dump(node)} in a field expression")


def expression(field: str) -> QL:
    compile_expression(field)  # validates: field names, numbers and + - * / only
    return _mean_of(ast.parse(field.strip().replace('"', ""), mode="eval").body)


def influxql_query(rule: Rule) -> QL:
    """A Grafana InfluxQL query of the rule's watch: aggregated per interval, per group."""
    w = rule.watch
    q = compose("SELECT {} FROM {} WHERE $timeFilter", expression(w.field),
                influxql.ident(w.measurement))
    if w.where:
        q = compose("{} AND {}", q, influxql.tag_equals(w.where.items()))
    q = compose("{} GROUP BY time($__interval)", q)
    if w.group_by:
        q = compose("{}, {}", q, influxql.idents(w.group_by))
    return compose("{} fill(none)", q)


def _threshold(rule: Rule) -> dict[str, Any]:
    op = _GRAFANA_OP[rule.condition]
    cond: dict[str, Any] = {"evaluator": {"type": op, "params": [rule.threshold]}}
    if op in ("within_range", "outside_range"):
        eps = 1e-9
        cond["evaluator"]["params"] = [rule.threshold - eps, rule.threshold + eps]
    elif rule.recover is not None:
        cond["unloadEvaluator"] = {"type": _UNLOAD[op], "params": [rule.recover]}
    return cond


def grafana_rule(rule: Rule, datasource_uid: str) -> dict[str, Any]:
    window = max(rule.for_ * 2, 300.0)
    return {
        "uid": f"oc-{rule.name}"[:40],
        "title": rule.name,
        "condition": "C",
        "data": [
            {"refId": "A", "datasourceUid": datasource_uid,
             "relativeTimeRange": {"from": int(window), "to": 0},
             "model": {"refId": "A", "rawQuery": True, "query": str(influxql_query(rule)),
                       "resultFormat": "time_series"}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [_threshold(rule)]}},
        ],
        "for": format_duration(rule.for_),
        "noDataState": _NO_DATA[rule.no_data.policy],
        "execErrState": "Error",
        "labels": {"severity": rule.severity, **rule.labels},
        "annotations": dict(rule.annotations),
        "isPaused": False,
    }


def provisioning(rules: list[Rule], datasource_uid: str = "devlake", folder: str = "OverCloud",
                 interval: str = "10s") -> dict[str, Any]:
    """A Grafana alerting provisioning document (apiVersion 1) holding every rule."""
    return {
        "apiVersion": 1,
        "groups": [{
            "orgId": 1,
            "name": "overcloud-alerts",
            "folder": folder,
            "interval": interval,
            "rules": [grafana_rule(r, datasource_uid) for r in rules],
        }],
    }
