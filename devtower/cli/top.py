"""`overcloud top`: a live terminal view of the UnderCloud and one OverCloud, read from the DevLake.

Like `lxc top` / `docker stats`: redraws in place every `--interval` seconds; `--once` prints
one frame and exits. Six InfluxQL queries per refresh (see `dashboards.terminal`), never one
per cell. An outage during a live view is shown in the frame and retried at the next refresh;
at start an unreachable DevLake or an unknown OverCloud is a one-line error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devtower.cli.common import console, install_signal_handlers, settings, tower
from overcloud.errors import PermanentError, TemporaryError, UserError
from overcloud.names import devlake_database

if TYPE_CHECKING:
    from dashboards.terminal import Frame


def top(
    overcloud: Annotated[str, typer.Option(help="Also show this OverCloud's nodes, flows, services.")] = "",
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5)] = 5.0,
    window: Annotated[str, typer.Option(help="History shown in sparklines (InfluxQL duration).")] = "10m",
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
) -> None:
    """Live view of hosts, nodes, flows and services with current values and sparklines."""
    from dashboards.terminal import Frame, Line, parse, render, top_queries, window_step
    from devlake.sinks import InfluxQL

    s = settings().influx
    try:
        step = window_step(window)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from None
    remote = tower()
    if remote is not None:
        if not overcloud:
            raise UserError("through --tower, `top` shows your OverCloud: --overcloud NAME")
        title = f"overcloud top — {overcloud}   ({remote.url}, every {interval:g}s, {window})"

        def remote_frame() -> Frame:
            got = remote.top(overcloud, window)
            sections = {k: [Line(**line) for line in v] for k, v in got["sections"].items()}
            return Frame(title, datetime.now(UTC), sections, [overcloud], ())

        _show(remote_frame, render, once, interval)
        return
    try:
        db = devlake_database(s.database_prefix, overcloud) if overcloud else ""
    except ValueError as exc:
        raise UserError(f"--overcloud: {exc}") from None
    ql = InfluxQL(s, timeout=5.0)
    try:
        try:
            databases = ql.databases()
        except (TemporaryError, PermanentError) as exc:
            raise UserError(f"DevLake unreachable: {exc} (try: overcloud services status)") from None
        if overcloud and db not in databases:
            raise UserError(f"unknown OverCloud {overcloud!r}: no DevLake database {db} "
                            "(see `overcloud list`)")
        overclouds = sorted(d[len(s.database_prefix):] for d in databases
                            if d.startswith(s.database_prefix) and d != s.default_database)
        queries = [q for q in top_queries(window, step) if overcloud or q.scope == "undercloud"]
        title = f"overcloud top — {overcloud or 'UnderCloud'}   ({s.base_url}, every {interval:g}s, {window})"

        def frame() -> Frame:
            sections: dict[str, list[Line]] = {}
            errors: list[str] = []
            for q in queries:
                try:
                    where = db if q.scope == "overcloud" else s.default_database
                    sections[q.key] = parse(ql.query(q.text, where))
                except (TemporaryError, PermanentError) as exc:
                    sections[q.key] = []
                    if str(exc) not in errors:
                        errors.append(str(exc))
            return Frame(title, datetime.now(UTC), sections, overclouds, tuple(errors))

        _show(frame, render, once, interval)
    finally:
        ql.close()


def _show(frame: Callable[[], Frame], render: Callable[[Frame], Any], once: bool,
          interval: float) -> None:
    if once:
        console.print(render(frame()))
        return
    from rich.live import Live

    stop = threading.Event()
    install_signal_handlers(stop)
    with Live(render(frame()), console=console, screen=False, auto_refresh=False) as live:
        while not stop.wait(interval):
            live.update(render(frame()), refresh=True)
