"""Entry point: `overcloud …`. User mistakes print one line and exit non-zero, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from devtower.cli import common
from devtower.cli.agent import app as agent_app
from devtower.cli.alerts import app as alerts_app
from devtower.cli.backup import backup, restore
from devtower.cli.dashboards import app as dashboards_app
from devtower.cli.devlake import app as devlake_app
from devtower.cli.edge import app as edge_app
from devtower.cli.images import app as images_app
from devtower.cli.metrics import app as metrics_app
from devtower.cli.migrate import migrate
from devtower.cli.overclouds import delete, list_, orchestrator_app, show
from devtower.cli.pause import pause, resume
from devtower.cli.request import app as request_app
from devtower.cli.services import app as services_app
from devtower.cli.top import top
from devtower.cli.tower import app as tower_app
from devtower.cli.undercloud import app as undercloud_app
from overcloud.errors import OverCloudError

app = typer.Typer(
    name="overcloud",
    help="OverClouds for SaaS developers: provisioning, telemetry and alerting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(services_app, name="services")
app.add_typer(agent_app, name="agent")
app.add_typer(devlake_app, name="devlake")
app.add_typer(edge_app, name="edge")
app.add_typer(metrics_app, name="metrics")
app.add_typer(images_app, name="images")
app.add_typer(request_app, name="request")
app.add_typer(orchestrator_app, name="orchestrator")
app.add_typer(alerts_app, name="alerts")
app.command("list")(list_)
app.command("show")(show)
app.command("delete")(delete)
app.command("migrate")(migrate)
app.command("backup")(backup)
app.command("restore")(restore)
app.command("pause")(pause)
app.command("resume")(resume)
app.add_typer(dashboards_app, name="dashboards")
app.command("top")(top)
app.add_typer(undercloud_app, name="undercloud")
app.add_typer(tower_app, name="tower")


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (else $OVERCLOUD_CONFIG, ./overcloud.toml)."),
    ] = None,
    tower: Annotated[str, typer.Option(
        "--tower", envvar="OVERCLOUD_TOWER", show_envvar=True,
        help="A DevTower's URL: run request, list, show, delete, metrics and top through "
             "its API (no access to the UnderCloud machine needed).")] = "",
    token: Annotated[str, typer.Option(
        "--token", envvar="OVERCLOUD_TOKEN", show_envvar=False,
        help="Your DevTower token (better: $OVERCLOUD_TOKEN, kept out of the shell history).")] = "",
) -> None:
    common.set_config(config)
    common.set_tower(tower, token)  # no --tower: a token alone changes nothing


def main() -> None:
    try:
        app()
    except OverCloudError as exc:
        # the message quotes the user's input: a Text, never markup (`[/x]` would crash rich)
        common.err.print(Text.assemble(("error:", "red"), " ", str(exc)), soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
