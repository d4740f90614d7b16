"""`overcloud top` without the terminal: its queries, their parsing, and one rendered frame.

Pure: `top_queries` says what to ask the DevLake (six InfluxQL statements per refresh, each
returning every row of a table at once, with history in `GROUP BY time()` buckets for the
sparklines), `parse` turns InfluxQL series into `Line`s and `render` turns a `Frame` into a
rich renderable. The CLI (`devtower/cli/top.py`) only runs the queries and refreshes the
screen, so the tests render frames from canned query results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, LiteralString

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from overcloud import influxql
from overcloud.influxql import QL, compose

Scope = Literal["undercloud", "overcloud"]
BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class TopQuery:
    key: str
    scope: Scope
    text: QL


def top_queries(window: str = "10m", step: str = "20s") -> list[TopQuery]:
    """What one refresh asks: UnderCloud hosts and machines, then the OverCloud's layers.

    `window` and `step` are InfluxQL durations (validated: ValueError otherwise)."""
    since, every = influxql.duration(window), influxql.duration(step)

    def q(select: LiteralString, measurement: str, group: LiteralString) -> QL:
        return compose("SELECT {} FROM {} WHERE time > now() - {} GROUP BY time({}), {} fill(none)",
                       QL(select), influxql.ident(measurement), since, every, QL(group))

    return [
        TopQuery("hosts", "undercloud", q(
            'mean("cpu_percent") AS "cpu", last("mem_percent") AS "mem", '
            'last("running_instances") AS "running", last("instances") AS "containers", '
            'mean("net_bytes_per_s") AS "net"', "resource_undercloud", '"host"')),
        TopQuery("machines", "undercloud", q(
            'mean("cpu_percent") AS "cpu", mean("load1") AS "load1", last("mem_used_percent") AS "mem"',
            "resource_host", '"host"')),
        TopQuery("nodes", "overcloud", q(
            'mean("cpu_percent") AS "cpu", last("mem_usage") AS "mem", '
            'mean("net_bytes_received_per_s") AS "rx", mean("net_bytes_sent_per_s") AS "tx", '
            'last("running") AS "running"', "resource_instance",
            '"node", "host"')),
        TopQuery("flows", "overcloud", q(
            'mean("bytes_sent_per_s") AS "sent", mean("bytes_received_per_s") AS "received", '
            'last("connections") AS "connections"', "flow_peer", '"node", "peer"')),
        TopQuery("http", "overcloud", q(
            'last("status") AS "status", mean("latency_ms") AS "latency", last("up") AS "up", '
            'last("error") AS "error"', "service_http", '"target"')),
        TopQuery("containers", "overcloud", q(
            'last("state") AS "state", last("health") AS "health", last("restarts") AS "restarts", '
            'mean("cpu_percent") AS "cpu", last("mem_usage") AS "mem"', "service_container",
            '"node", "service"')),
    ]


@dataclass(frozen=True)
class Line:
    """One row of a table: its tags, the newest value of each column, and each column's history."""

    tags: Mapping[str, str]
    latest: Mapping[str, Any]
    history: Mapping[str, Sequence[float | None]]
    time_ns: int


def parse(series: Sequence[Mapping[str, Any]]) -> list[Line]:
    """InfluxQL series (one per tag group, rows = time buckets) → one `Line` per group."""
    out = []
    for s in series:
        columns = list(s.get("columns") or [])
        rows = list(s.get("values") or [])
        if not rows or "time" not in columns:
            continue
        ti = columns.index("time")
        latest: dict[str, Any] = {}
        history: dict[str, list[float | None]] = {}
        for i, c in enumerate(columns):
            if i == ti:
                continue
            col = [r[i] for r in rows]
            history[c] = [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
                          for v in col]
            latest[c] = next((v for v in reversed(col) if v is not None), None)
        last_t = max(int(r[ti]) for r in rows if any(v is not None for j, v in enumerate(r) if j != ti))
        out.append(Line(dict(s.get("tags") or {}), latest, history, last_t))
    return sorted(out, key=lambda ln: tuple(sorted(ln.tags.items())))


@dataclass(frozen=True)
class Frame:
    title: str
    at: datetime
    sections: Mapping[str, list[Line]]
    overclouds: Sequence[str] = ()
    errors: Sequence[str] = field(default_factory=tuple)


def sparkline(values: Sequence[float | None], width: int = 16) -> str:
    """Unicode bars of the last `width` values, scaled to their own min..max (gaps as spaces)."""
    tail = list(values)[-width:]
    nums = [v for v in tail if v is not None]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    span = hi - lo
    out = []
    for v in tail:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(BARS[0] if hi == 0 else BARS[3])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / span * (len(BARS) - 1) + 0.5))])
    return "".join(out)


def human_bytes(v: Any, rate: bool = False) -> str:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return "–"
    n = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            text = f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            return text + ("/s" if rate else "")
        n /= 1024
    return "–"


def num(v: Any, fmt: str = ".1f") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return format(v, fmt)
    return "–" if v is None else str(v)


def _age(line: Line, now: datetime) -> str:
    return f"{max(0.0, now.timestamp() - line.time_ns / 1e9):.0f}s"


def _table(title: str, columns: Sequence[str], rows: list[list[str | Text]]) -> Table:
    t = Table(title=title, title_justify="left", expand=False, pad_edge=False, box=None,
              header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        # cells hold tag values and error texts from the DevLake: a plain str would be read
        # as rich markup by the console (`[/x]` crashes it), a Text is printed as it is
        t.add_row(*(Text(c) if isinstance(c, str) else c for c in r))
    if not rows:
        t.add_row(Text("(no samples in this window)", style="dim"), *[""] * (len(columns) - 1))
    return t


def _spark(line: Line, col: str, style: str = "cyan") -> Text:
    return Text(sparkline(line.history.get(col, [])), style=style)


def render(frame: Frame) -> RenderableType:
    now = frame.at
    s = frame.sections
    parts: list[RenderableType] = [Text.assemble(
        (frame.title, "bold"), "  ", (now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "dim"))]
    for e in frame.errors:
        parts.append(Text(f"! {e}", style="red"))
    parts.append(_table("UnderCloud hosts (LXD: machine containers' load)",
                        ["host", "cpu %", "", "mem %", "containers", "net", "age"],
                        [[ln.tags.get("host", "?"), num(ln.latest.get("cpu")), _spark(ln, "cpu"),
                          num(ln.latest.get("mem")),
                          f"{num(ln.latest.get('running'), '.0f')}/{num(ln.latest.get('containers'), '.0f')}",
                          human_bytes(ln.latest.get("net"), rate=True), _age(ln, now)]
                         for ln in s.get("hosts", [])]))
    parts.append(_table("Machines", ["host", "cpu %", "", "load1", "mem %", "age"],
                        [[ln.tags.get("host", "?"), num(ln.latest.get("cpu")), _spark(ln, "cpu"),
                          num(ln.latest.get("load1"), ".2f"), num(ln.latest.get("mem")), _age(ln, now)]
                         for ln in s.get("machines", [])]))
    if "nodes" in s:
        parts.append(_table("Nodes (resource)",
                            ["node", "host", "up", "cpu %", "", "memory", "rx", "tx", "", "age"],
                            [[ln.tags.get("node", "?"), ln.tags.get("host", ""),
                              num(ln.latest.get("running")),
                              num(ln.latest.get("cpu")), _spark(ln, "cpu"), human_bytes(ln.latest.get("mem")),
                              human_bytes(ln.latest.get("rx"), True), human_bytes(ln.latest.get("tx"), True),
                              _spark(ln, "tx", "green"), _age(ln, now)]
                             for ln in s["nodes"]]))
        parts.append(_table("Flows (node → peer)", ["flow", "sent", "", "received", "connections", "age"],
                            [[f"{ln.tags.get('node', '?')} → {ln.tags.get('peer', '?')}",
                              human_bytes(ln.latest.get("sent"), True), _spark(ln, "sent", "green"),
                              human_bytes(ln.latest.get("received"), True),
                              num(ln.latest.get("connections"), ".0f"), _age(ln, now)]
                             for ln in s.get("flows", [])]))
        parts.append(_table("Services (HTTP)", ["target", "up", "status", "latency ms", "", "error", "age"],
                            [[ln.tags.get("target", "?"), _updown(ln.latest.get("up")),
                              num(ln.latest.get("status"), ".0f"), num(ln.latest.get("latency")),
                              _spark(ln, "latency", "yellow"), str(ln.latest.get("error") or ""),
                              _age(ln, now)]
                             for ln in s.get("http", [])]))
        parts.append(_table("Stack containers", ["container", "state", "health", "restarts", "cpu %", "",
                                                 "memory", "age"],
                            [[f"{ln.tags.get('node', '?')}/{ln.tags.get('service', '?')}",
                              str(ln.latest.get("state") or "–"), _health(ln.latest.get("health")),
                              num(ln.latest.get("restarts"), ".0f"), num(ln.latest.get("cpu")),
                              _spark(ln, "cpu"), human_bytes(ln.latest.get("mem")), _age(ln, now)]
                             for ln in s.get("containers", [])]))
    elif frame.overclouds:
        parts.append(Text("OverClouds: " + ", ".join(frame.overclouds)
                          + "   (overcloud top --overcloud NAME)", style="dim"))
    return Group(*parts)


def _updown(v: Any) -> Text:
    if v is None:
        return Text("–")
    return Text("up", style="green") if v else Text("DOWN", style="bold red")


def _health(v: Any) -> Text:
    text = str(v or "–")
    style = {"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}.get(text, "")
    return Text(text, style=style)


def duration_seconds(window: str) -> int:
    """Seconds in a window like 10m, 1h or 90s; raises ValueError for anything else (the
    window goes into InfluxQL as a duration)."""
    m = re.fullmatch(r"([0-9]{1,6})([smhd])", window)
    if not m:
        raise ValueError(f"the window must look like 10m, 1h or 90s, got {window[:40]!r}")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def window_step(window: str, buckets: int = 30) -> str:
    """The step of a `top` window (~`buckets` buckets: 30 for a sparkline)."""
    return f"{max(1, duration_seconds(window) // buckets)}s"
