"""`overcloud services up|down|status`: the local broker and InfluxDB (and more later)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from devtower.cli.common import console, settings, styled

if TYPE_CHECKING:  # imported in the commands: it pulls in kafka, seconds every other command paid
    from overcloud.services.manager import ServiceStatus

app = typer.Typer(help="Install, start, stop and inspect the local services.", no_args_is_help=True)

Names = Annotated[list[str] | None, typer.Argument(help="Services (default: all default ones).")]


def _table(rows: list[ServiceStatus]) -> Table:
    t = Table(title="OverCloud services")
    for col in ("service", "state", "pid", "address", "health"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        health = styled("ok", "green") if r.healthy else (styled("down", "red") if r.pid else "-")
        t.add_row(r.name, r.state, str(r.pid or "-"), r.address, health)
    if rows:
        t.caption = f"logs: {Path(rows[0].log).parent}"
    return t


@app.command()
def up(names: Names = None) -> None:
    """Install what is missing, start, and wait until each service answers."""
    from overcloud.services import manager

    console.print(_table(manager.up(settings(), names)))


@app.command()
def down(names: Names = None) -> None:
    """Stop the services this state directory started (only by their recorded pids)."""
    from overcloud.services import manager

    stopped = manager.down(settings(), names)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(names: Names = None) -> None:
    """Show each service, its pid, address and health."""
    from overcloud.services import manager

    console.print(_table(manager.status(settings(), names)))
