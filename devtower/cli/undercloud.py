"""`overcloud undercloud …`: the UnderCloud's hosts and sites, as operators see and change them.

`list`/`show` join the inventory (sites, labels, capacity, drain flags), what is observed now
(is the host's API reachable, which OverCloud nodes the registry put there) and the load the
DevLake holds (`resource_undercloud`, mean over the last few minutes). The changes (`add`,
`remove`, `drain`, `undrain`, `set`, `add-site`, `remove-site`) go to the inventory only: they
never touch a host, so they are instant and safe to repeat.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from devtower.cli.common import console, settings, styled

if TYPE_CHECKING:
    from orchestrator.inventory import Inventory, Snapshot

app = typer.Typer(help="UnderCloud hosts and sites: list, add, remove, drain.", no_args_is_help=True)

HostArg = Annotated[str, typer.Argument(help="UnderCloud host name (see: overcloud undercloud list).")]
Labels = Annotated[list[str] | None, typer.Option("--label", help="key=value; repeat for more.")]
Cpus = Annotated[float | None, typer.Option("--cpus", help="Capacity override: cores.")]
Memory = Annotated[str | None, typer.Option("--memory", help="Capacity override, e.g. 16GiB.")]


def _inventory() -> Inventory:
    from orchestrator.inventory import Inventory

    return Inventory(settings())


def _snapshot(inv: Inventory) -> Snapshot:
    from orchestrator.hosts import drivers
    from orchestrator.inventory import snapshot
    from orchestrator.registry import Registry

    s = settings()
    hosts = drivers(s)
    return snapshot(s, inv, {n: d.reachable for n, d in hosts.items()}, Registry(s))


def _mem(n: float | int | None) -> str:
    from orchestrator.request import human_bytes

    return "-" if n is None else human_bytes(int(n))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


STATE_STYLE = {"ready": "green", "draining": "yellow", "unreachable": "red"}


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
          ) -> None:
    """Every site and host: kind, state, capacity, what our nodes hold, current load."""
    from orchestrator.hosts import drivers
    from orchestrator.inventory import undercloud_report
    from orchestrator.registry import Registry

    s = settings()
    report = undercloud_report(s, _inventory(), {n: d.reachable for n, d in drivers(s).items()},
                               Registry(s))
    rows, sites = report["hosts"], report["sites"]
    if json_out:
        import orjson

        console.print_json(orjson.dumps(report).decode())
        return
    t = Table(title="UnderCloud", title_justify="left")
    for col in ("site", "host", "kind", "state", "capacity", "allocated", "cpu", "mem",
                "instances", "labels"):
        t.add_column(col, justify="right" if col in ("cpu", "mem", "instances") else "left")
    for row in rows:
        cap, al = row["capacity"], row["allocated"]
        t.add_row(row["site"], row["host"], row["kind"],
                  styled(row["state"], STATE_STYLE.get(row["state"], "white")),
                  f"{cap['cpu']:g} cpu, {_mem(cap['memory'])}",
                  f"{al['cpu']:g} cpu, {_mem(al['memory'])} ({len(al['nodes'])} nodes)",
                  _pct(row["load"]["cpu_percent"]), _pct(row["load"]["mem_percent"]),
                  "-" if row["instances"] is None else str(row["instances"]),
                  ",".join(f"{k}={v}" for k, v in sorted(row["labels"].items())))
    hosted = {row["site"] for row in rows}
    for s in sites:
        if s["kind"] == "openstack" or s["site"] not in hosted:
            t.add_row(s["site"], "-", s["kind"] + (f" (cloud {s['cloud']})" if s["cloud"] else ""),
                      "-", "", "", "", "", "", "")
    console.print(t)
    if report["load_error"]:
        console.print(styled(f"load: the DevLake could not be read ({report['load_error']})",
                             "dim"))


@app.command()
def show(host: HostArg) -> None:
    """One host: site, kind, state, capacity, labels, load and the OverCloud nodes on it."""
    inv = _inventory()
    rec = inv.host(host)
    snap = _snapshot(inv)
    v = next(x for x in snap.views if x.name == host)
    a = snap.allocated.get(host)
    ld = snap.load.get(host)
    lines = [
        f"{rec.name}: {v.state} (site {rec.site}, {'added remote' if rec.added else rec.kind})",
        f"  url        {rec.url or 'local socket'}",
        f"  cert       {rec.server_cert or '-'}",
        f"  capacity   {v.capacity_cpu:g} cpu, {_mem(v.capacity_memory)}"
        + (" (override)" if rec.cpus or rec.memory else ""),
        f"  allocated  {v.allocated_cpu:g} cpu, {_mem(v.allocated_memory)}",
        f"  load       cpu {_pct(v.cpu_util)}, mem {_pct(v.mem_util)}, net "
        + ("-" if v.net_bytes_per_s is None else f"{v.net_bytes_per_s:.0f} B/s")
        + (f", {ld.instances} instances" if ld and ld.instances is not None else ""),
        f"  labels     {', '.join(f'{k}={x}' for k, x in sorted(rec.labels.items())) or '-'}",
        f"  nodes      {', '.join(a.nodes) if a else '-'}",
        _pool_line(host, rec.pool or 0),
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if snap.load_error:
        console.print(f"  (the DevLake could not be read: {snap.load_error})", markup=False)


def _pool_line(host: str, target: int) -> str:
    """The warm pool on `host`, as LXD has it: ready and warming nodes against the target."""
    from orchestrator.hosts import drivers
    from orchestrator.pool import pool_report

    s = settings()
    d = drivers(s).get(host)
    found = pool_report({host: d} if d is not None else {}).get(host)
    if found is None:
        return f"  pool       target {target}" + ("" if d is None else ", host not answering")
    ready, warming = found["ready"], found["warming"]
    return (f"  pool       {len(ready)} ready of {target}"
            + (f", {len(warming)} warming" if warming else "")
            + (f": {', '.join(ready + warming)}" if ready or warming else ""))


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Name of the new host.")],
    url: Annotated[str, typer.Option("--url", help="https://address:port of its LXD API.")],
    server_cert: Annotated[Path, typer.Option("--server-cert",
                                              help="Its server certificate (PEM), pinned.")],
    site: Annotated[str, typer.Option("--site", help="Site it belongs to.")] = "local",
    label: Labels = None,
    cpus: Cpus = None,
    memory: Memory = None,
) -> None:
    """Add an HTTPS LXD remote as an UnderCloud host (it must trust our client certificate)."""
    from orchestrator.inventory import parse_labels, parse_memory

    labels = parse_labels(label or [])
    mem = parse_memory(memory) if memory is not None else None
    rec = _inventory().add_remote(name, url, server_cert, site=site, labels=labels, cpus=cpus,
                                  memory=mem)
    crt = settings().state_dir / "lxd" / "client" / "client.crt"
    console.print(f"added {rec.name} ({rec.url}) to site {rec.site}; it must trust our client "
                  f"certificate: on it run `lxc config trust add {crt}`", markup=False)


@app.command()
def remove(name: HostArg) -> None:
    """Forget an added host; refused while it holds OverCloud nodes."""
    from orchestrator.inventory import allocations
    from orchestrator.registry import Registry

    inv = _inventory()
    inv.host(name)  # unknown host: its own clear error first
    held = allocations(Registry(settings())).get(name)
    inv.remove(name, held.nodes if held else ())
    console.print(f"removed {name}", markup=False)


@app.command()
def drain(
    host: HostArg,
    evacuate: Annotated[bool, typer.Option(
        "--evacuate/--no-evacuate", help="Move every OverCloud node off HOST (default).")] = True,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the evacuation until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Mark HOST unschedulable and move its nodes elsewhere (like `lxc cluster evacuate`)."""
    from devtower.cli.overclouds import _follow, publish
    from orchestrator.inventory import allocations
    from orchestrator.registry import Registry
    from overcloud.errors import UserError
    from overcloud.events import MigrationRequested

    rec = _inventory().set_draining(host, True)
    console.print(f"{rec.name} is draining: no new node goes there", markup=False)
    s = settings()
    nodes = allocations(Registry(s)).get(host)
    if not evacuate or nodes is None or not nodes.nodes:
        if evacuate:
            console.print(f"no OverCloud node on {host}: nothing to move", markup=False)
        return
    # the flag is set first, so nothing new lands on the host while its nodes move
    event = MigrationRequested(source=host, reason=f"drain {host}")
    publish(s, event, host)
    console.print(f"evacuating {len(nodes.nodes)} node(s) from {host}: id {event.id}",
                  markup=False)
    if wait:
        wf = _follow(event.id, "evacuation", timeout)
        if str(wf.state) != "succeeded":
            raise UserError(f"evacuating {host} failed: {wf.error}")
        console.print(styled(f"{host} is empty", "green"))


@app.command()
def undrain(host: HostArg) -> None:
    """Make HOST schedulable again."""
    rec = _inventory().set_draining(host, False)
    console.print(f"{rec.name} is ready for new nodes again", markup=False)


@app.command("set")
def set_(host: HostArg,
         site: Annotated[str | None, typer.Option("--site", help="Move it to this site.")] = None,
         label: Labels = None, cpus: Cpus = None, memory: Memory = None,
         pool: Annotated[int | None, typer.Option(
             "--pool", help="Ready nodes the warm pool keeps on this host (0: none); the "
             "orchestrator refills them in the background.")] = None,
         default_capacity: Annotated[bool, typer.Option(
             "--default-capacity", help="Drop the capacity override (cpus and memory): the "
             "host counts with the settings' size again.")] = False) -> None:
    """Change a host's site, add labels, or override its capacity (kept across restarts)."""
    from orchestrator.inventory import parse_labels, parse_memory
    from overcloud.errors import UserError

    labels = parse_labels(label or [])
    mem = parse_memory(memory) if memory is not None else None
    if default_capacity and (cpus is not None or mem is not None):
        raise UserError("--default-capacity drops the override: give it without --cpus/--memory")
    if (site is None and not labels and cpus is None and mem is None and pool is None
            and not default_capacity):
        raise UserError("nothing to change: give --site, --label, --cpus, --memory, --pool or "
                        "--default-capacity")
    inventory = _inventory()
    if default_capacity:
        inventory.clear_capacity(host)
    rec = inventory.update(host, site=site, labels=labels, cpus=cpus, memory=mem, pool=pool)
    console.print(f"{rec.name}: site {rec.site}, labels "
                  f"{','.join(f'{k}={v}' for k, v in sorted(rec.labels.items())) or '-'}, capacity "
                  f"{rec.cpus if rec.cpus is not None else 'default'} cpu, "
                  f"{_mem(rec.memory) if rec.memory else 'default'}, pool {rec.pool or 0}",
                  markup=False)


@app.command("add-site")
def add_site(
    name: Annotated[str, typer.Argument(help="Site name.")],
    openstack: Annotated[str, typer.Option("--openstack", metavar="CLOUD",
                                           help="An OpenStack site: its clouds.yaml entry.")] = "",
) -> None:
    """Record a site; with --openstack CLOUD, an OpenStack cloud whose nodes are VMs."""
    site = _inventory().add_site(name, openstack_cloud=openstack)
    console.print(f"added {site.kind} site {site.name}"
                  + (f" (clouds.yaml entry {site.cloud})" if site.cloud else ""), markup=False)


@app.command("remove-site")
def remove_site(name: Annotated[str, typer.Argument(help="Site name.")]) -> None:
    """Forget a site that has no hosts."""
    _inventory().remove_site(name)
    console.print(f"removed site {name}", markup=False)
