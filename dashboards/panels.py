"""Small panel factories shared by the dashboards, so each dashboard reads as a list of queries.

Every panel here has exactly one InfluxQL target on the DevLake data source; queries use
Grafana's `$timeFilter` and `$__interval` macros so the same text runs in Grafana and, after
`dashboards.queries` substitutes them, directly against InfluxDB in our tests.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline, timeseries
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.influxql import DATASOURCE, InfluxQL
from overcloud import influxql
from overcloud.influxql import compose

#: dashboard uids (stable: links and `push` upserts rely on them)
UNDERCLOUD_UID = "overcloud-undercloud"
OVERCLOUD_UID = "overcloud-overcloud"
ALERTS_UID = "overcloud-alerts"

WIDE, HALF, THIRD = 24, 12, 8


def series(title: str, query: str, *, unit: str = "short", alias: str | None = None,
           width: int = HALF, height: int = 8, description: str = "") -> timeseries.Panel:
    target = InfluxQL(query)
    if alias:
        target = target.alias(alias)
    return (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(target).unit(unit).span(width).height(height).fill_opacity(10)
            .line_width(1))


def table(title: str, query: str, *, width: int = WIDE, height: int = 8, description: str = "",
          links: list[db.DashboardLink] | None = None) -> table_b.Panel:
    panel = (table_b.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(InfluxQL(query).table()).span(width).height(height))
    if links:
        panel = panel.data_links(list(links))
    return panel


def stat(title: str, query: str, *, unit: str = "short", width: int = THIRD, height: int = 4,
         description: str = "") -> stat_b.Panel:
    return (stat_b.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(InfluxQL(query)).unit(unit).span(width).height(height))


def states(title: str, query: str, *, alias: str | None = None, width: int = WIDE,
           height: int = 6) -> statetimeline.Panel:
    target = InfluxQL(query)
    if alias:
        target = target.alias(alias)
    return (statetimeline.Panel().title(title).datasource(DATASOURCE).with_target(target)
            .span(width).height(height))


def link(title: str, url: str) -> db.DashboardLink:
    """A data link (panel cell → URL) or a dashboard link (top bar), Grafana uses both."""
    return db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url).keep_time(True)


def dashboard_link(title: str, uid: str, slug: str, params: str = "") -> db.DashboardLink:
    url = f"/d/{uid}/{slug}" + (f"?{params}" if params else "")
    return (db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url).keep_time(True)
            .include_vars(False).icon("dashboard"))


def overcloud_variable(*, multi: bool) -> db.QueryVariable:
    """`overcloud`: the DevLake database of one OverCloud (every `devlake_*` but the UnderCloud's)."""
    v = (db.QueryVariable("overcloud").label("OverCloud (DevLake database)").datasource(DATASOURCE)
         .query("SHOW DATABASES").regex("/^devlake_(?!undercloud$).+$/")
         .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True)
    return v


def tag_variable(name: str, label: str, measurement: str, key: str) -> db.QueryVariable:
    """A multi-valued tag filter read from the selected OverCloud's database."""
    return (db.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(compose('SHOW TAG VALUES ON "$overcloud" FROM {} WITH KEY = {}',
                           influxql.ident(measurement), influxql.ident(key)))
            .multi(True).include_all(True).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC))
