"""Reading one OverCloud's DevLake for its developer: `/latest`, `/query`, `/top`.

Every read names the OverCloud's own database and nothing else; a developer's own InfluxQL
first passes `readonly.check_read_query` (one SELECT or SHOW, confined to that database).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dashboards.terminal import parse, top_queries
from devlake.sinks import InfluxQL
from devtower.readonly import check_read_query
from orchestrator.registry import Registry
from overcloud.errors import PermanentError, UserError
from overcloud.settings import Settings

LATEST = "SELECT * FROM /.*/ GROUP BY * ORDER BY time DESC LIMIT 1"


class InfluxReader:
    def __init__(self, s: Settings, registry: Registry) -> None:
        self._s = s
        self._registry = registry
        self._ql = InfluxQL(s.influx, timeout=10.0)

    def database(self, overcloud: str) -> str:
        return f"{self._s.influx.database_prefix}{overcloud}"

    def _run(self, overcloud: str, q: str) -> list[dict[str, Any]]:
        try:
            return self._ql.query(q, self.database(overcloud))
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

    def credentials(self, overcloud: str) -> dict[str, str]:
        raise UserError("this DevTower has no read-only DevLake accounts (InfluxDB auth is off)")

    def close(self) -> None:
        self._ql.close()
