"""Run every panel's query against a real DevLake, the way Grafana would, and report emptiness.

Used by the integration tests after real traffic, and by `overcloud dashboards check` after an
end-to-end OverCloud run. Template variables are resolved like Grafana does with "All"
selected: the variable's own query runs first and its values are substituted; a variable
without values is itself a failure (its panels would show nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.templating import Value, queries, variable_queries


class QueryRunner(Protocol):
    def query(self, q: str, database: str = "") -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class PanelCheck:
    dashboard: str
    panel: str
    query: str
    rows: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rows > 0 and not self.error


def _rows(series: list[dict[str, Any]]) -> int:
    return sum(len(s.get("values") or []) for s in series)


def check(runner: QueryRunner, dashboards: Sequence[dm.Dashboard], overcloud_db: str,
          default_db: str, *, time_range: str = "1h", interval: str = "10s") -> list[PanelCheck]:
    """One `PanelCheck` per panel target and per query variable of every dashboard."""
    out: list[PanelCheck] = []
    for d in dashboards:
        title = d.title or d.uid or "?"
        values: dict[str, Value] = {"overcloud": overcloud_db}
        for name, q in variable_queries(d, values):
            if name == "overcloud":
                continue  # SHOW DATABASES; the database is given
            found: list[str] = []
            err = ""
            try:
                found = [str(row[-1]) for s in runner.query(q, default_db) for row in s.get("values") or []]
            except Exception as exc:  # reported, not raised: one bad query must not hide the rest
                err = str(exc)
            out.append(PanelCheck(title, f"${name}", q, len(found), err))
            values[name] = sorted(set(found)) or ["(none)"]
        for panel, q in queries(d, values, time_range=time_range, interval=interval):
            try:
                out.append(PanelCheck(title, panel, q, _rows(runner.query(q, default_db))))
            except Exception as exc:
                out.append(PanelCheck(title, panel, q, 0, str(exc)))
    return out
