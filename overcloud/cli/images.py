"""`overcloud images build|status`: the cached node image every LXD host launches from."""

from __future__ import annotations

import typer
from rich.table import Table

from orchestrator.images import ImageStatus, ensure_images, image_status, prune_cache
from overcloud.cli.common import console, settings

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
    _tables(ensure_images(settings(), say=lambda msg: console.print(f"[dim]…[/] {msg}")))


@app.command()
def status() -> None:
    """Show cached artifacts and which hosts have the current node image (changes nothing)."""
    st = image_status(settings())
    _tables(st)
    if not st.ready:
        raise typer.Exit(1)


@app.command()
def prune() -> None:
    """Delete cached artifacts the current recipes no longer use."""
    removed = prune_cache(settings())
    console.print(f"removed: {', '.join(p.name for p in removed) if removed else 'nothing'}")
