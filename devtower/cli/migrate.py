"""`overcloud migrate`: move an OverCloud's nodes by hand (one node, or all of it to a site).

The command only asks: it checks what it can (names, hosts, sites) so that mistakes get a
one-line answer, publishes `MigrationRequested`, and with `--wait` follows the orchestrator's
migration workflow live. Where nodes go, when no host is named, is the orchestrator's
placement decision, the same as for a new OverCloud.
"""

from __future__ import annotations

from typing import Annotated

import typer

from devtower.cli.common import console, settings, styled
from overcloud.errors import UserError


def migrate(
    name: Annotated[str, typer.Argument(help="OverCloud name.")],
    node: Annotated[str, typer.Option(help="Move only this node (e.g. shop-n2).")] = "",
    to: Annotated[str, typer.Option("--to", help="Target UnderCloud host.")] = "",
    to_site: Annotated[str, typer.Option("--to-site", help="Move to hosts of this site.")] = "",
    db_method: Annotated[str, typer.Option(
        "--db-method", help="How a database node moves: replicate (GTID replica, then a short "
        "write freeze) or copy (stop, copy the volume, start: the site is down meanwhile)."
    )] = "replicate",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the migration until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Move NAME's nodes to another host (--to) or site (--to-site), keeping names and URL."""
    from devtower.cli.overclouds import _follow, publish
    from orchestrator.hosts import drivers
    from orchestrator.inventory import Inventory
    from orchestrator.registry import Registry
    from overcloud.events import MigrationRequested

    if db_method not in ("replicate", "copy"):
        raise UserError(f"--db-method is replicate or copy, not {db_method[:40]!r}")
    if bool(to) == bool(to_site):
        raise UserError("say where to: exactly one of --to HOST or --to-site SITE")
    if node and to_site:
        raise UserError("--to-site moves a whole OverCloud; for one node use --to HOST")
    s = settings()
    rec = Registry(s).get(name)
    if rec is None:
        raise UserError(f"no OverCloud named {name!r} (see: overcloud list)")
    nodes = {n.node: n.host for n in rec.nodes}
    if node and node not in nodes:
        raise UserError(f"{name} has no node {node!r}; its nodes: {', '.join(nodes)}")
    inv = Inventory(s)
    try:
        records = inv.hosts()
    finally:
        inv.close()
    hosts = set(drivers(s))
    if to and to not in hosts:
        raise UserError(f"no UnderCloud host named {to!r} (known: {', '.join(sorted(hosts))})")
    if to and any(r.name == to and r.draining for r in records):
        raise UserError(f"{to} is draining: it takes no new nodes (overcloud undercloud undrain)")
    sites = {r.site for r in records}
    if to_site and to_site not in sites:
        raise UserError(f"no site named {to_site!r} (known: {', '.join(sorted(sites))})")
    if node and nodes[node] == to:
        console.print(f"{node} already runs on {to}: nothing to move")
        return
    if rec.state not in ("ready", "degraded"):
        raise UserError(f"{name} is {rec.state}; only a ready (or degraded) OverCloud moves")
    event = MigrationRequested(overcloud=name, node=node, target=to, site=to_site,
                               reason="by hand",
                               db_method="copy" if db_method == "copy" else "replicate")
    publish(s, event, name)
    where = to or f"site {to_site}"
    console.print(f"migration of {node or name} to {where} requested: id {event.id}")
    if wait:
        wf = _follow(event.id, "migration", timeout)
        if str(wf.state) != "succeeded":
            raise UserError(f"migration of {node or name} failed: {wf.error}")
        console.print(styled(f"{node or name} moved to {where}", "green"))
