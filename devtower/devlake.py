"""Reading one OverCloud's DevLake for its developer: `/latest`, `/query`, `/top`.

Every read names the OverCloud's own database and nothing else; a developer's own InfluxQL
first passes `readonly.check_read_query` (one SELECT or SHOW, confined to that database), and
then runs signed in as that OverCloud's read-only InfluxDB user (overcloud.influxauth), so a
statement our checks missed still cannot read or change another DevLake.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from dashboards.terminal import parse, top_queries
from devlake.sinks import InfluxQL
from devtower.ops import NotFound
from devtower.readonly import check_read_query
from orchestrator.registry import Registry
from overcloud import influxauth
from overcloud.errors import PermanentError, UserError
from overcloud.settings import Settings

LATEST = "SELECT * FROM /.*/ GROUP BY * ORDER BY time DESC LIMIT 1"


class InfluxReader:
    def __init__(self, s: Settings, registry: Registry) -> None:
        self._s = s
        self._registry = registry
        self._ql = InfluxQL(s.influx, timeout=10.0)  # only when InfluxDB has no accounts
        self._lock = threading.Lock()
        self._readers: dict[tuple[str, str], InfluxQL] = {}

    def database(self, overcloud: str) -> str:
        return f"{self._s.influx.database_prefix}{overcloud}"

    def _account(self, overcloud: str) -> influxauth.Account | None:
        rec = self._registry.get(overcloud)
        if rec is None:
            raise NotFound(f"no OverCloud named {overcloud}")
        return influxauth.reader(self._s.influx.credentials, overcloud, rec.request_id)

    def _client(self, overcloud: str) -> InfluxQL:
        acct = self._account(overcloud)
        if acct is None:
            return self._ql
        key = (overcloud, acct.password)
        with self._lock:  # one client per OverCloud incarnation, built once
            ql = self._readers.get(key)
            if ql is None:
                for old in [k for k in self._readers if k[0] == overcloud]:
                    self._readers.pop(old).close()
                ql = self._readers[key] = InfluxQL(self._s.influx, timeout=10.0, who=acct)
            return ql

    def _run(self, overcloud: str, q: str) -> list[dict[str, Any]]:
        try:
            return self._client(overcloud).query(q, self.database(overcloud))
        except PermanentError as exc:  # InfluxDB refused the statement: the caller's to fix
            raise UserError(str(exc)) from None

    def query(self, overcloud: str, q: str) -> list[dict[str, Any]]:
        return self._run(overcloud, check_read_query(q, self.database(overcloud)))

    def latest(self, overcloud: str) -> list[dict[str, Any]]:
        return self._run(overcloud, LATEST)

    def top(self, overcloud: str, window: str = "10m", step: str = "20s") -> dict[str, Any]:
        sections: dict[str, Any] = {}
        for q in top_queries(window, step):
            if q.scope != "overcloud":
                continue
            sections[q.key] = [asdict(line) for line in parse(self._run(overcloud, q.text))]
        return {"overcloud": overcloud, "window": window, "step": step, "sections": sections}

    def charts(self, overcloud: str, window: str = "10m", step: str = "20s") -> dict[str, Any]:
        """The page's charts: the same statements as `top`, as time series (times in seconds)
        per tag group, for the three layers (nodes, flows, http, containers)."""
        wanted = [q for q in top_queries(window, step) if q.scope == "overcloud"]
        try:
            answers = self._client(overcloud).query_each([q.text for q in wanted],
                                                         self.database(overcloud))
        except PermanentError as exc:
            raise UserError(str(exc)) from None
        sections = {q.key: [_timed(s) for s in series] for q, series in zip(wanted, answers,
                                                                            strict=True)}
        return {"overcloud": overcloud, "window": window, "step": step, "sections": sections}

    def credentials(self, overcloud: str) -> dict[str, str]:
        """What a developer's own Grafana needs to read this DevLake, and nothing more."""
        acct = self._account(overcloud)
        if acct is None:
            raise UserError("this DevTower has no read-only DevLake accounts (InfluxDB runs "
                            "without authentication)")
        return {"url": self._s.influx.base_url, "database": self.database(overcloud),
                "username": acct.username, "password": acct.password}

    def close(self) -> None:
        self._ql.close()
        with self._lock:
            for ql in self._readers.values():
                ql.close()
            self._readers.clear()


def _timed(series: dict[str, Any]) -> dict[str, Any]:
    """One InfluxQL series with its epoch-ns times as seconds (what a browser can hold)."""
    columns = [str(c) for c in series.get("columns") or []]
    ti = columns.index("time") if "time" in columns else -1
    rows = []
    for row in series.get("values") or []:
        r = list(row)
        if ti >= 0 and isinstance(r[ti], int):
            r[ti] = r[ti] / 1e9
        rows.append(r)
    return {"tags": dict(series.get("tags") or {}), "columns": columns, "values": rows}
