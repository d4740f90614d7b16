"""Grafana's template interpolation for InfluxQL, so panel queries can run without Grafana.

`queries(dashboard, values)` returns every panel's query with `$timeFilter`, `$__interval`
and the dashboard variables replaced the way Grafana's InfluxDB data source does it
(multi-valued or "All"-able variables become regex-escaped `(a|b)` groups, single-valued
ones are inserted raw). That text is what the tests, and `overcloud dashboards check`, send to
the real InfluxDB: if a panel would be empty in Grafana, it is empty there too.

Values come from the DevLake (tag values, database names), so they are escaped for where
they land: a regex group by `overcloud.influxql.regex_escape`, a single value inside our
`"$overcloud"` identifiers by `overcloud.influxql.ident` (Grafana inserts it raw; every query
of ours quotes the variable, so a database name with a quote cannot end the identifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.influxql import InfluxQLQuery
from overcloud import influxql

Value = str | Sequence[str]

_BARE = re.compile(r"[A-Za-z0-9_.\-]+")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
#: Grafana's own variables that must survive (data links are not queries, but be safe)
_BUILTIN = {"timeFilter", "__interval", "__interval_ms", "__url_time_range", "__data", "__value"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    query: str


def _escape(value: str) -> str:
    return influxql.regex_escape(value)


def _render(variable: dm.VariableModel | None, value: Value, quoted: bool, query: bool) -> str:
    if not query:  # a title: plain text
        return value if isinstance(value, str) else ", ".join(value)
    if isinstance(value, str):
        if quoted:  # inside "…" (how our queries use a database variable): an identifier's body
            return influxql.ident(value)[1:-1]
        if variable is not None and (variable.multi or variable.include_all):
            return _escape(value)
        if not _BARE.fullmatch(value):
            raise ValueError(f"value {value!r} of a variable used outside quotes must be a "
                             "bare word (letters, digits, _ . -)")
        return value
    group = "(" + "|".join(_escape(v) for v in value) + ")"
    return influxql.ident(group)[1:-1] if quoted else group


def interpolate(text: str, variables: Mapping[str, dm.VariableModel], values: Mapping[str, Value],
                *, time_range: str = "1h", interval: str = "10s", query: bool = True) -> str:
    """`text` with Grafana's macros and the variables' values; `time_range` and `interval`
    are InfluxQL durations (ValueError otherwise). `query=False`: a title, values as text."""
    text = text.replace("$timeFilter", "time > now() - " + influxql.duration(time_range))
    text = text.replace("$__interval", influxql.duration(interval))

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in _BUILTIN:
            return m.group(0)
        if name not in values:
            raise KeyError(f"no value given for template variable ${name}")
        quoted = m.start() > 0 and text[m.start() - 1] == '"' and text[m.end():m.end() + 1] == '"'
        return _render(variables.get(name), values[name], quoted, query)

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
    return [(interpolate(title, variables, vals, query=False),
             interpolate(q, variables, vals, time_range=time_range, interval=interval))
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
