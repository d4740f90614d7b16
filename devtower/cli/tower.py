"""`overcloud tower …`: run the DevTower and manage who may use it.

`tower token create` prints a token once (only its hash is kept); `list` shows ids, owners,
roles and states, never tokens; `revoke ID` ends one at once. `tower run` is the DevTower
process itself (`overcloud services up devtower` starts it in the background).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from devtower.cli.common import console, install_signal_handlers, settings, setup_logging
from overcloud.errors import UserError

app = typer.Typer(help="The DevTower: its API server and its tokens.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: create (printed once), list, revoke.",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    owner: Annotated[str, typer.Option("--owner", help="Who the token acts for, e.g. dev@example.com.")],
    role: Annotated[str, typer.Option("--role", help="developer | viewer | operator")] = "developer",
    expires: Annotated[str, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h (default: none).")] = "",
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from devtower.server import token_store
    from devtower.tokens import Role, parse_ttl

    try:
        r = Role(role)
    except ValueError:
        raise UserError(f"--role must be developer, viewer or operator (got {role[:40]!r})") from None
    ttl = parse_ttl(expires) if expires else None
    token, info = token_store(settings()).create(owner, r, ttl)
    sys.stdout.write(token + "\n")
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.expires)) if info.expires else "never"
    sys.stderr.write(f"token {info.token_id} for {info.owner} ({info.role.value}), expires {until}; "
                     "it is shown only now\n")


@token_app.command("list")
def list_() -> None:
    """Every token's id, owner, role and state (never the token itself)."""
    from devtower.server import token_store

    now = time.time()
    rows = token_store(settings()).list()
    t = Table(title="DevTower tokens", title_justify="left")
    for col in ("id", "owner", "role", "state", "created", "expires"):
        t.add_column(col)
    for i in rows:
        t.add_row(i.token_id, Text(i.owner), i.role.value, i.state(now),
                  time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.created)),
                  time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.expires)) if i.expires else "never")
    console.print(t if rows else "no tokens (create one: overcloud tower token create --owner …)")


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (see: tower token list).")]) -> None:
    """Revoke a token at once."""
    from devtower.server import token_store

    if not token_store(settings()).revoke(token_id):
        raise UserError(f"no active token with id {token_id[:40]!r} (see: overcloud tower token list)")
    console.print(Text(f"revoked {token_id}"))


@app.command("run")
def run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Serve the DevTower API until SIGTERM."""
    from devtower.server import serve

    s = settings()
    setup_logging(verbose)
    stop = threading.Event()
    install_signal_handlers(stop)

    def ready(url: str) -> None:
        # the banner is how `services up` sees it ready
        sys.stdout.write(f"devtower: {url} (API /v1, OpenAPI {url}/v1/openapi.json)\n")
        sys.stdout.flush()

    serve(s, stop, on_ready=ready)
