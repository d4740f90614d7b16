"""The UnderCloud overview: what an operator opens first.

Hosts and their load (`resource_undercloud`: the machine containers' share of each LXD host;
`resource_host`: the machines themselves), the machine containers of every OverCloud per host
(`resource_instance`, one repeated row per OverCloud database, each cell linking to that
OverCloud's dashboard) and the alerts firing now (`alerts`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_UID,
    HALF,
    OVERCLOUD_UID,
    THIRD,
    dashboard_link,
    link,
    overcloud_variable,
    series,
    stat,
    table,
)

TO_OVERCLOUD = (f"/d/{OVERCLOUD_UID}/overcloud?var-overcloud=$overcloud"
                "&var-node=${__data.fields.node}&${__url_time_range}")

#: keep only the groups whose latest state is firing (the query returns every group)
FIRING_ONLY = dm.DataTransformerConfig(
    id_val="filterByValue",
    options={"type": "include", "match": "any",
             "filters": [{"fieldName": "firing", "config": {"id": "equal", "options": {"value": True}}}]},
)


def build() -> dm.Dashboard:
    d = (
        db.Dashboard("UnderCloud overview").uid("overcloud-undercloud").tags(["overcloud", "undercloud"])
        .refresh("10s").time("now-1h", "now").timezone("browser").editable()
        .with_variable(overcloud_variable(multi=True))
        .link(dashboard_link("OverCloud", OVERCLOUD_UID, "overcloud"))
        .link(dashboard_link("Alerts", ALERTS_UID, "alerts"))
        .with_row(db.Row("Hosts"))
        .with_panel(stat("UnderCloud hosts", 'SELECT count("cpu_percent") FROM (SELECT last("cpu_percent") '
                         'AS "cpu_percent" FROM "resource_undercloud" WHERE $timeFilter GROUP BY "host")'))
        .with_panel(stat("Running machine containers",
                         'SELECT sum("running_instances") FROM (SELECT last("running_instances") '
                         'AS "running_instances" '
                         'FROM "resource_undercloud" WHERE $timeFilter GROUP BY "host")'))
        .with_panel(stat("Machines reporting", 'SELECT count("cpu_percent") FROM (SELECT last("cpu_percent") '
                         'AS "cpu_percent" FROM "resource_host" WHERE $timeFilter GROUP BY "host")'))
        .with_panel(table(
            "Hosts",
            'SELECT last("cpu_percent") AS "cpu %", last("cpu_cores_used") AS "cores used", '
            'last("capacity_cpus") AS "cpus", last("mem_percent") AS "mem %", '
            'last("running_instances") AS "running", last("instances") AS "containers", '
            'last("net_bytes_per_s") AS "net B/s" FROM "resource_undercloud" WHERE $timeFilter '
            'GROUP BY "host"',
            height=6, description="Load of each UnderCloud (LXD) host, summed over its machine containers."))
        .with_panel(series("Host load (machine containers, % of host)",
                           'SELECT mean("cpu_percent") FROM "resource_undercloud" WHERE $timeFilter '
                           'GROUP BY time($__interval), "host" fill(none)', unit="percent",
                           alias="$tag_host"))
        .with_panel(series("Machine containers per host",
                           'SELECT last("running_instances") FROM "resource_undercloud" WHERE $timeFilter '
                           'GROUP BY time($__interval), "host" fill(previous)', alias="$tag_host"))
        .with_panel(series("Host memory (machine containers)",
                           'SELECT mean("mem_usage") FROM "resource_undercloud" WHERE $timeFilter '
                           'GROUP BY time($__interval), "host" fill(none)', unit="bytes", alias="$tag_host",
                           width=THIRD))
        .with_panel(series("Machine CPU", 'SELECT mean("cpu_percent") FROM "resource_host" WHERE $timeFilter '
                           'GROUP BY time($__interval), "host" fill(none)', unit="percent", alias="$tag_host",
                           width=THIRD))
        .with_panel(series("Machine load (1 min)", 'SELECT mean("load1") FROM "resource_host" WHERE '
                           '$timeFilter GROUP BY time($__interval), "host" fill(none)', alias="$tag_host",
                           width=THIRD))
        .with_row(db.Row("Alerts firing"))
        .with_panel(table(
            "Firing alerts (UnderCloud)",
            'SELECT last("firing") AS "firing", last("value") AS "value" FROM "alerts" WHERE $timeFilter '
            'GROUP BY "rule", "severity", "host"', height=6,
            links=[link("Alert history", f"/d/{ALERTS_UID}/alerts?${{__url_time_range}}")])
            .with_transformation(FIRING_ONLY))
        .with_row(db.Row("OverCloud $overcloud").repeat("overcloud"))
        .with_panel(table(
            "Machine containers of $overcloud",
            'SELECT last("running") AS "running", last("cpu_percent") AS "cpu %", '
            'last("mem_usage") AS "memory", last("disk_usage") AS "disk" '
            'FROM "$overcloud".."resource_instance" WHERE $timeFilter '
            'GROUP BY "host", "node", "instance"', width=HALF, height=6,
            description="Per UnderCloud host; click a node to open its OverCloud dashboard.",
            links=[link("Open this node's OverCloud", TO_OVERCLOUD)]))
        .with_panel(table(
            "Firing alerts of $overcloud",
            'SELECT last("firing") AS "firing", last("value") AS "value" FROM "$overcloud".."alerts" '
            'WHERE $timeFilter GROUP BY "rule", "severity", "node"', width=HALF, height=6,
            links=[link("Alert history",
                        f"/d/{ALERTS_UID}/alerts?var-overcloud=$overcloud&${{__url_time_range}}")])
            .with_transformation(FIRING_ONLY))
    )
    return d.build()
