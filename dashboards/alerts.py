"""The alerts view: every alert state change, for the UnderCloud and for one OverCloud.

The alert evaluator writes each state change into the DevLake as measurement `alerts`
(tags `rule`, `severity` and the group's `host`/`overcloud`/`node`; fields `firing`, `value`):
UnderCloud-scoped alerts land in `devlake_undercloud`, an OverCloud's in its own database.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_UID,
    HALF,
    OVERCLOUD_UID,
    UNDERCLOUD_UID,
    dashboard_link,
    overcloud_variable,
    series,
    states,
    table,
)


def build() -> dm.Dashboard:
    d = (
        db.Dashboard("Alerts").uid(ALERTS_UID).tags(["overcloud", "alerts"]).refresh("10s")
        .time("now-6h", "now").timezone("browser").editable()
        .with_variable(overcloud_variable(multi=False))
        .link(dashboard_link("UnderCloud overview", UNDERCLOUD_UID, "undercloud-overview"))
        .link(dashboard_link("OverCloud", OVERCLOUD_UID, "overcloud", "var-overcloud=$overcloud"))
        .with_row(db.Row("UnderCloud"))
        .with_panel(states("Alert state (UnderCloud)",
                           'SELECT last("firing") FROM "alerts" WHERE $timeFilter '
                           'GROUP BY time($__interval), "rule", "host" fill(previous)',
                           alias="$tag_rule $tag_host"))
        .with_panel(table("State changes (UnderCloud)",
                          'SELECT "firing", "value", "rule", "severity", "host" FROM "alerts" '
                          "WHERE $timeFilter ORDER BY time DESC LIMIT 500", width=HALF, height=10))
        .with_panel(series("Watched value at each change (UnderCloud)",
                           'SELECT last("value") FROM "alerts" WHERE $timeFilter '
                           'GROUP BY time($__interval), "rule", "host" fill(none)',
                           alias="$tag_rule $tag_host", width=HALF, height=10))
        .with_row(db.Row("OverCloud $overcloud"))
        .with_panel(states("Alert state ($overcloud)",
                           'SELECT last("firing") FROM "$overcloud".."alerts" WHERE $timeFilter '
                           'GROUP BY time($__interval), "rule", "node" fill(previous)',
                           alias="$tag_rule $tag_node"))
        .with_panel(table("State changes ($overcloud)",
                          'SELECT "firing", "value", "rule", "severity", "node" FROM "$overcloud".."alerts" '
                          "WHERE $timeFilter ORDER BY time DESC LIMIT 500", width=HALF, height=10))
        .with_panel(series("Watched value at each change ($overcloud)",
                           'SELECT last("value") FROM "$overcloud".."alerts" WHERE $timeFilter '
                           'GROUP BY time($__interval), "rule", "node" fill(none)',
                           alias="$tag_rule $tag_node", width=HALF, height=10))
    )
    return d.build()
