"""`overcloud images build|status`: the cached node image every LXD host launches from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from devtower.cli.common import console, settings, styled

if TYPE_CHECKING:  # imported in the commands: it pulls in kafka, seconds every other command paid
    from orchestrator.images import ImageStatus

app = typer.Typer(help="Build, cache and import the machine-container image.", no_args_is_help=True)


def _tables(st: ImageStatus) -> None:
    t = Table(title=f"image cache ({settings().undercloud.cache_dir})")
    for col in ("artifact", "key", "state", "seconds", "detail"):
        t.add_column(col, no_wrap=True)
    for a in st.artifacts:
        t.add_row(a.kind, a.key, a.action, f"{a.seconds:.1f}", a.detail[:40])
    console.print(t)
    h = Table(title="overcloud-node on the LXD hosts")
    for col in ("host", "fingerprint", "state", "seconds"):
        h.add_column(col, no_wrap=True)
    for r in st.hosts:
        h.add_row(r.host, (r.fingerprint or "-")[:12], r.action, f"{r.seconds:.1f}")
    console.print(h)
    console.print(f"{'ready' if st.ready else 'NOT ready'} in {st.seconds:.1f}s")


@app.command()
def build() -> None:
    """Build what is missing from the cache and import the node image into every LXD host."""
    from orchestrator.images import ensure_images

    _tables(ensure_images(settings(), say=lambda msg: console.print(styled("…", "dim"), msg)))


@app.command()
def status() -> None:
    """Show cached artifacts and which hosts have the current node image (changes nothing)."""
    from orchestrator.images import image_status

    st = image_status(settings())
    _tables(st)
    if not st.ready:
        raise typer.Exit(1)


@app.command()
def prune() -> None:
    """Delete cached artifacts the current recipes no longer use."""
    from orchestrator.images import prune_cache

    removed = prune_cache(settings())
    console.print(f"removed: {', '.join(p.name for p in removed) if removed else 'nothing'}")
