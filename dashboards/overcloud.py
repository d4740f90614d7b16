"""One OverCloud, by the seed's three levels of visibility: rows Resource, Flow and Service.

`overcloud` picks the OverCloud's DevLake database (every query names it: `"$overcloud"..m`,
so one data source serves all OverClouds); `node` and `tier` narrow the rows. The "Nodes"
table links each node back to this dashboard with `node` set: the drill-down from an
OverCloud to one node's rows.
"""

from __future__ import annotations

from typing import LiteralString

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_UID,
    HALF,
    OVERCLOUD_UID,
    THIRD,
    UNDERCLOUD_UID,
    dashboard_link,
    link,
    overcloud_variable,
    series,
    table,
    tag_variable,
)
from overcloud import influxql
from overcloud.influxql import QL, compose

NODE: LiteralString = '"node" =~ /^$node$/'
TIER: LiteralString = '"tier" =~ /^$tier$/'
NODE_AND_TIER: LiteralString = '"node" =~ /^$node$/ AND "tier" =~ /^$tier$/'
TO_NODE = (f"/d/{OVERCLOUD_UID}/overcloud?var-overcloud=$overcloud&var-node=${{__data.fields.node}}"
           "&var-tier=All&${__url_time_range}")


def _ts(measurement: str, select: LiteralString, where: LiteralString, group: LiteralString) -> QL:
    """A time series of the selected OverCloud's `measurement` (select/where/group: constants)."""
    cond = compose("{} AND $timeFilter", QL(where)) if where else QL("$timeFilter")
    return compose('SELECT {} FROM "$overcloud"..{} WHERE {} GROUP BY time($__interval), {} fill(none)',
                   QL(select), influxql.ident(measurement), cond, QL(group))


def build() -> dm.Dashboard:
    d = (
        db.Dashboard("OverCloud").uid(OVERCLOUD_UID).tags(["overcloud"]).refresh("10s")
        .time("now-1h", "now").timezone("browser").editable()
        .with_variable(overcloud_variable(multi=False))
        .with_variable(tag_variable("node", "Node", "resource_instance", "node"))
        .with_variable(tag_variable("tier", "Tier", "flow_peer", "tier"))
        .link(dashboard_link("UnderCloud overview", UNDERCLOUD_UID, "undercloud-overview"))
        .link(dashboard_link("Alerts", ALERTS_UID, "alerts", "var-overcloud=$overcloud"))
        .with_panel(table(
            "Nodes",
            'SELECT last("running") AS "running", last("cpu_percent") AS "cpu %", '
            'last("mem_usage") AS "memory", last("processes") AS "processes", '
            'last("net_bytes_received_per_s") AS "rx B/s", '
            'last("net_bytes_sent_per_s") AS "tx B/s" FROM "$overcloud".."resource_instance" '
            'WHERE "node" =~ /^$node$/ AND $timeFilter GROUP BY "node", "host", "instance"',
            height=6, description="Click a node to show only its rows.",
            links=[link("Show this node", TO_NODE)]))
        # --- Resource: the machine containers, from the LXD API -----------------------------
        .with_row(db.Row("Resource"))
        .with_panel(series("CPU per node (100 = one core)",
                           _ts("resource_instance", 'mean("cpu_percent")', NODE, '"node"'),
                           unit="percent", alias="$tag_node", width=THIRD))
        .with_panel(series("Memory per node",
                           _ts("resource_instance", 'mean("mem_usage")', NODE, '"node"'),
                           unit="bytes", alias="$tag_node", width=THIRD))
        .with_panel(series("Root disk per node",
                           _ts("resource_instance", 'mean("disk_usage")', NODE, '"node"'),
                           unit="bytes", alias="$tag_node", width=THIRD))
        .with_panel(series("Network per node",
                           _ts("resource_instance", 'mean("net_bytes_received_per_s") AS "rx", '
                               'mean("net_bytes_sent_per_s") AS "tx"', NODE, '"node"'),
                           unit="Bps", alias="$tag_node $col", width=HALF))
        .with_panel(series("Processes per node",
                           _ts("resource_instance", 'mean("processes")', NODE, '"node"'),
                           alias="$tag_node", width=HALF))
        # --- Flow: interfaces and who talks to whom -----------------------------------------
        .with_row(db.Row("Flow"))
        .with_panel(series("Interface traffic",
                           _ts("flow_iface",
                               'mean("bytes_received_per_s") AS "rx", mean("bytes_sent_per_s") AS "tx"',
                               NODE, '"node", "iface"'),
                           unit="Bps", alias="$tag_node/$tag_iface $col", width=HALF))
        .with_panel(series("Interface packets",
                           _ts("flow_iface", 'mean("packets_received_per_s") AS "rx", '
                               'mean("packets_sent_per_s") AS "tx"', NODE, '"node", "iface"'),
                           unit="pps", alias="$tag_node/$tag_iface $col", width=HALF))
        .with_panel(table(
            "Interface errors and drops",
            'SELECT last("errors_received") AS "rx errors", last("errors_sent") AS "tx errors", '
            'last("drops_received") AS "rx drops", last("drops_sent") AS "tx drops", '
            'last("bytes_received") AS "rx bytes", last("bytes_sent") AS "tx bytes" '
            'FROM "$overcloud".."flow_iface" WHERE "node" =~ /^$node$/ AND $timeFilter '
            'GROUP BY "node", "iface"',
            width=HALF, height=6))
        .with_panel(table(
            "Who talks to whom",
            'SELECT last("bytes_sent_per_s") AS "sent B/s", last("bytes_received_per_s") AS "received B/s", '
            'last("connections") AS "connections", last("bytes_sent") AS "sent", '
            'last("bytes_received") AS "received", last("packets_sent") AS "packets sent", '
            'last("packets_received") AS "packets received" FROM "$overcloud".."flow_peer" '
            'WHERE "node" =~ /^$node$/ AND "tier" =~ /^$tier$/ AND $timeFilter '
            'GROUP BY "node", "tier", "peer", "peer_tier"',
            width=HALF, height=6))
        .with_panel(series("Traffic to peers (sent)",
                           _ts("flow_peer", 'mean("bytes_sent_per_s")', NODE_AND_TIER,
                               '"node", "peer"'),
                           unit="Bps", alias="$tag_node → $tag_peer", width=HALF))
        .with_panel(series("Traffic from peers (received)",
                           _ts("flow_peer", 'mean("bytes_received_per_s")', NODE_AND_TIER,
                               '"node", "peer"'),
                           unit="Bps", alias="$tag_node ← $tag_peer", width=HALF))
        # --- Service: the SaaS from outside (HTTP) and its containers -------------------------
        .with_row(db.Row("Service"))
        .with_panel(table(
            "HTTP checks",
            'SELECT last("up") AS "up", last("status") AS "status", last("latency_ms") AS "latency ms", '
            'last("body_ok") AS "body ok", last("error") AS "error" FROM "$overcloud".."service_http" '
            'WHERE $timeFilter GROUP BY "target"', width=HALF, height=6))
        .with_panel(series("HTTP latency", _ts("service_http", 'mean("latency_ms")', "", '"target"'),
                           unit="ms", alias="$tag_target", width=HALF, height=6))
        .with_panel(series("HTTP status", _ts("service_http", 'last("status")', "", '"target"'),
                           alias="$tag_target", width=HALF, height=6))
        .with_panel(table(
            "Stack containers",
            'SELECT last("state") AS "state", last("health") AS "health", last("healthy") AS "healthy", '
            'last("running") AS "running", last("restarts") AS "restarts", last("cpu_percent") AS "cpu %", '
            'last("mem_usage") AS "memory" FROM "$overcloud".."service_container" '
            'WHERE "node" =~ /^$node$/ AND $timeFilter GROUP BY "node", "service"', width=HALF,
            height=6))
        .with_panel(series("Container CPU",
                           _ts("service_container", 'mean("cpu_percent")', NODE, '"node", "service"'),
                           unit="percent", alias="$tag_node/$tag_service", width=THIRD))
        .with_panel(series("Container memory",
                           _ts("service_container", 'mean("mem_usage")', NODE, '"node", "service"'),
                           unit="bytes", alias="$tag_node/$tag_service", width=THIRD))
        .with_panel(series("Container restarts",
                           _ts("service_container", 'max("restarts")', NODE, '"node", "service"'),
                           alias="$tag_node/$tag_service", width=THIRD))
    )
    return d.build()
