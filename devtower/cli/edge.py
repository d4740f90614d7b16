"""`overcloud edge run|show`: the balancer in front of every OverCloud's web nodes."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Annotated

import typer
from rich.table import Table

from devtower.cli.common import console, settings, setup_logging

app = typer.Typer(help="The edge: each OverCloud's URL, balanced over its web nodes.",
                  no_args_is_help=True)


@app.command()
def run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Serve the route table the orchestrator writes until SIGTERM/SIGINT."""
    from edge.routes import routes_file, status_file
    from edge.server import Edge

    s = settings()
    setup_logging(verbose)
    edge = Edge(routes_file(s), status_file(s))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await edge.reload()
        edge.write_status()
        console.print(f"edge: {len(edge.routes)} routes from {routes_file(s)}", markup=False)
        sys.stdout.flush()  # the banner is how `services up` sees it ready
        await edge.run(stop)

    asyncio.run(main())
    console.print("edge stopped")


@app.command()
def show() -> None:
    """Each route: its port, OverCloud, web nodes and the connections open to each."""
    from edge.routes import read_routes, read_status, running

    s = settings()
    serial, routes = read_routes(s)
    st = read_status(s)
    t = Table(title=f"edge routes (table {serial}; the edge "
                    + (f"serves {st.serial})" if running(s) else "is not running)"),
              title_justify="left")
    for col in ("port", "overcloud", "web nodes (open connections)", "state"):
        t.add_column(col)
    for port, r in sorted(routes.items()):
        state = ("listening" if port in st.listening
                 else f"not listening: {st.errors[port]}" if port in st.errors else "-")
        t.add_row(str(port), r.overcloud,
                  ", ".join(f"{b} ({st.active.get(b, 0)})" for b in r.backends), state)
    console.print(t)
