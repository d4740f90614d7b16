"""Grafana's template interpolation for InfluxQL, so panel queries can run without Grafana.

`queries(dashboard, values)` returns every panel's query with `$timeFilter`, `$__interval`
and the dashboard variables replaced the way Grafana's InfluxDB data source does it
(multi-valued or "All"-able variables become regex-escaped `(a|b)` groups, single-valued
ones are inserted raw). That text is what the tests, and `overcloud dashboards check`, send to
the real InfluxDB: if a panel would be empty in Grafana, it is empty there too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.influxql import InfluxQLQuery

Value = str | Sequence[str]

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
#: Grafana's own variables that must survive (data links are not queries, but be safe)
_BUILTIN = {"timeFilter", "__interval", "__interval_ms", "__url_time_range", "__data", "__value"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    query: str


def _escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _render(variable: dm.VariableModel | None, value: Value) -> str:
    if isinstance(value, str):
        if variable is not None and (variable.multi or variable.include_all):
            return _escape(value)
        return value
    return "(" + "|".join(_escape(v) for v in value) + ")"


def interpolate(text: str, variables: Mapping[str, dm.VariableModel], values: Mapping[str, Value],
                *, time_range: str = "1h", interval: str = "10s") -> str:
    text = text.replace("$timeFilter", f"time > now() - {time_range}")
    text = text.replace("$__interval", interval)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in _BUILTIN:
            return m.group(0)
        if name not in values:
            raise KeyError(f"no value given for template variable ${name}")
        return _render(variables.get(name), values[name])

    return _VAR.sub(sub, text)


def _panels(d: dm.Dashboard) -> Iterator[dm.Panel]:
    for p in d.panels or []:
        if isinstance(p, dm.RowPanel):
            yield from (q for q in p.panels if isinstance(q, dm.Panel))
        elif isinstance(p, dm.Panel):
            yield p


def raw_targets(d: dm.Dashboard) -> list[tuple[str, str]]:
    """(panel title, InfluxQL as written) for every target of every panel, rows included."""
    out = []
    for p in _panels(d):
        for t in p.targets or []:
            if not isinstance(t, InfluxQLQuery):
                raise TypeError(f"panel {p.title!r}: target is not an InfluxQL query: {t!r}")
            out.append((p.title or "", t.query))
    return out


def variables_of(d: dm.Dashboard) -> dict[str, dm.VariableModel]:
    return {v.name: v for v in (d.templating.list_val or [])} if d.templating else {}


def queries(d: dm.Dashboard, values: Mapping[str, Value] | None = None, *, time_range: str = "1h",
            interval: str = "10s") -> list[tuple[str, str]]:
    """(panel title, runnable InfluxQL) for every panel, template variables substituted."""
    variables = variables_of(d)
    vals = dict(values or {})
    return [(interpolate(title, variables, vals), interpolate(q, variables, vals, time_range=time_range,
                                                             interval=interval))
            for title, q in raw_targets(d)]


def variable_queries(d: dm.Dashboard, values: Mapping[str, Value] | None = None) -> list[tuple[str, str]]:
    """(variable name, its InfluxQL) for the query variables, with earlier variables substituted."""
    variables = variables_of(d)
    out = []
    for name, v in variables.items():
        query: Any = v.query
        if v.type_val == dm.VariableType.QUERY and isinstance(query, str):
            out.append((name, interpolate(query, variables, dict(values or {}))))
    return out
