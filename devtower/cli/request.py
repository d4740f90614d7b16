"""`overcloud request validate FILE`: check an OverCloud request document, create nothing.

The request model lives in `orchestrator.request`; it is imported inside the commands so
that `overcloud --help` and the other commands do not pay for pydantic.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devtower.cli.common import console, tower
from overcloud.errors import UserError

if TYPE_CHECKING:
    from orchestrator.request import OverCloudRequest, RequestInvalid
    from overcloud.problems import DocumentInvalid

app = typer.Typer(help="OverCloud request documents (YAML).", no_args_is_help=True)

File = Annotated[Path, typer.Argument(help="The request document (YAML), e.g. examples/my-overcloud.yaml.")]


def print_problems(exc: RequestInvalid | DocumentInvalid,
                   outcome: str = "nothing was created") -> None:
    """Every problem on its own line, `FILE:LINE: path: message`, on stderr."""
    for line in exc.lines():
        sys.stderr.write(line + "\n")
    n = len(exc.problems)
    sys.stderr.write(f"{exc.source}: {n} problem{'s' * (n != 1)}, {outcome}\n")


def summary(req: OverCloudRequest) -> list[str]:
    """A few lines that say what the request would make."""
    c, s = req.cluster, req.saas
    layout = "; ".join(f"{node}: {' + '.join(tiers)}" for node, tiers in req.tier_layout().items())
    port = s.expose.port
    url = f"http://127.0.0.1:{port}/" if port != "auto" else "http://127.0.0.1:<free port>/"
    nodes = f"{c.nodes} node{'s' * (c.nodes != 1)}"
    hooks = len(req.devtower.notify)
    return [
        f"{req.name}: a valid OverCloud request from {req.owner}",
        f"  cluster   {nodes} × {c.cpu} cpu, {c.memory}; placement {req.placement.strategy}"
        + (", network-heavy" if req.placement.network_heavy else ""),
        f"  stack     {s.stack}: web ×{s.tiers.web.replicas} → app ×{s.tiers.app.replicas} "
        f"→ db ×{s.tiers.db.replicas}",
        f"  layout    {layout}",
        f"  exposed   {url} (checked at {s.expose.path_check})",
        f"  devlake   retention {req.devlake.retention}, "
        + ("kept" if req.devlake.keep_on_delete else "dropped") + " on delete",
        f"  devtower  api {'on' if req.devtower.api else 'off'}, "
        f"{hooks} notify webhook{'s' * (hooks != 1)}",
        f"  backups   every {req.backup.every}, the newest {req.backup.keep} kept"
        if req.backup.every else "  backups   on demand only (overcloud backup NAME)",
    ]


@app.command()
def validate(file: File) -> None:
    """Check a request: print a summary, or every problem with its line (exit 1)."""
    from orchestrator.request import RequestInvalid, load_request
    from overcloud.problems import DocumentInvalid

    remote = tower()
    try:
        if remote is not None:  # the DevTower checks it (and that the owner is you)
            lines = remote.validate(read_document(file), str(file))["summary"]
        else:
            lines = summary(load_request(file))
    except (RequestInvalid, DocumentInvalid) as exc:
        print_problems(exc)
        raise typer.Exit(1) from None
    for line in lines:
        console.print(str(line), markup=False, highlight=False, soft_wrap=True)


def read_document(file: Path) -> str:
    """The document's text for the DevTower (which parses and checks it itself)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from None
    if len(data) > 1 << 20:
        raise UserError(f"{file} is larger than 1 MiB: not a request document")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{file} is not UTF-8 text") from None
