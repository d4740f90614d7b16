"""Grafana dashboards as code: the UnderCloud overview, the OverCloud dashboard, the alerts view.

Built with grafana-foundation-sdk (typed models, validated by a JSON round-trip in the tests),
on one InfluxDB data source in InfluxQL mode (the only query language InfluxDB 1.x, 2.x and
3.x all answer). Every measurement and field a panel reads is one of docs/METRICS.md.
`provisioning` writes the files Grafana loads at start; `push` upserts into a running Grafana.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import alerts, overcloud, undercloud
from dashboards.influxql import DATASOURCE_UID
from dashboards.templating import queries, variable_queries

__all__ = ["DATASOURCE_UID", "all_dashboards", "from_json", "queries", "to_json", "variable_queries"]


def all_dashboards() -> list[dm.Dashboard]:
    return [undercloud.build(), overcloud.build(), alerts.build()]


def to_json(d: dm.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what provisioning files and the API carry)."""
    data: dict[str, Any] = json.loads(json.dumps(d, cls=JSONEncoder))
    return data


def from_json(data: dict[str, Any]) -> dm.Dashboard:
    """Parse Grafana JSON back into the SDK's typed models (our InfluxQL targets included)."""
    return dm.Dashboard.from_json(data)
