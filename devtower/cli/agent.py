"""`overcloud agent run`: collect on an interval and publish to Kafka."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from devtower.cli.common import console, install_signal_handlers, settings, setup_logging
from overcloud.errors import UserError
from overcloud.settings import Settings

if TYPE_CHECKING:
    from collectors.base import Collector

app = typer.Typer(help="Metric agents.", no_args_is_help=True)

LAYER_COLLECTORS = {"resource": ["host"]}


@app.command()
def run(
    layer: Annotated[str, typer.Option(
        help="Layers to collect, comma-separated: resource, flow, service."
    )] = "resource",
    interval: Annotated[float | None, typer.Option(help="Seconds between collections (>= 1).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Collect once, deliver, exit.")] = False,
    overcloud: Annotated[str, typer.Option(help="OverCloud the samples belong to.")] = "",
    node: Annotated[str, typer.Option(help="Node name (default: this host's name).")] = "",
    cluster: Annotated[str, typer.Option(help="Logical cluster name.")] = "",
    instance: Annotated[str, typer.Option(
        help="Collect a machine container's resources from its LXD host instead of this host's."
    )] = "",
    lxd_host: Annotated[str, typer.Option(help="UnderCloud host (LXD daemon) of --instance.")] = "",
    tiers: Annotated[str, typer.Option(
        help="Tiers of the OverCloud's nodes for flow_peer tags, e.g. 'web-n1=db,web-n2=app+web'."
    )] = "",
    url: Annotated[str, typer.Option(help="Service layer: probe this URL (service_http).")] = "",
    expect: Annotated[str, typer.Option(help="Text the probed page must contain.")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an agent for one layer until SIGTERM/SIGINT (or once with --once)."""
    from agents.publisher import Publisher
    from agents.runtime import Agent, default_identity, open_spool, prime
    from collectors.base import build
    from overcloud.samples import Layer

    layers = _layers(layer)
    tier_map = _tiers(tiers)
    s = settings()
    every = s.agent.interval if interval is None else interval
    if every < 1:
        raise UserError(f"--interval must be at least 1 second, got {every:g}")
    if any(name and not _valid_name(name) for name in (overcloud, node, cluster, instance)):
        raise UserError("--overcloud and --node take names of letters, digits, '-' and '_'")
    setup_logging(verbose)
    identity = default_identity(overcloud, node, cluster)
    if url and not url.startswith(("http://", "https://")):
        raise UserError(f"--url must be an http:// or https:// URL, got {url!r}")
    collectors: list[Collector] = []
    if instance:
        collectors = _node_collectors(s, layers, instance, lxd_host, overcloud, every,
                                      node or instance, tier_map, url, expect)
    else:
        if "flow" in layers:
            raise UserError("the flow layer measures a machine container: give --instance and "
                            "--lxd-host")
        if "service" in layers and not url:
            raise UserError("the service layer needs --url (and --instance for containers)")
        if "resource" in layers:
            collectors = [build(name) for name in LAYER_COLLECTORS["resource"]]
            collectors += _undercloud_collectors(s)
        if "service" in layers:
            collectors.append(_http_collector(url, expect, every))
    spool = open_spool(s, identity, *(Layer(x) for x in layers))
    publisher = Publisher(s, spool)
    agent = Agent(s, identity, collectors, publisher)
    if once:
        prime(collectors, min(every, 1.0))
        n = agent.cycle()
        if publisher.close(timeout=s.agent.send_timeout):
            console.print(f"collected {n} samples from node {identity.node}: delivered")
            return
        console.print(
            f"collected {n} samples from node {identity.node}: broker {s.kafka.bootstrap} "
            f"unreachable, kept in the spool {spool.path} for the next run"
        )
        raise typer.Exit(3)
    stop = threading.Event()
    install_signal_handlers(stop)
    console.print(
        f"agent: layer={','.join(layers)} node={identity.node} overcloud={overcloud or '-'} "
        f"every {every:g}s → {s.kafka.bootstrap}"
    )
    sys.stdout.flush()  # the banner is how `services up` sees it ready
    agent.run(every, stop)
    publisher.close(timeout=s.agent.send_timeout)


def _undercloud_collectors(s: Settings) -> list[Collector]:
    """The host agent also measures every UnderCloud host whose LXD API answers (configured
    or added with `undercloud add`), each against its capacity as placement sees it: the
    operator's override from the inventory, else the settings' host size — one notion of a
    host's size for placement, the overload rule and relief plans."""
    from collectors.resource.undercloud import Capacity, LxdHostSource, UnderCloudCollector
    from lxdclient import api_answers
    from orchestrator.inventory import Inventory

    default = Capacity.of_this_machine(s.undercloud.host_cpus, s.undercloud.host_memory)
    inv = Inventory(s)
    try:
        records = {r.name: r for r in inv.hosts()}
        hosts = [*s.lxd_hosts, *inv.lxd_hosts()]
    finally:
        inv.close()

    def capacity(name: str) -> Capacity:
        r = records.get(name)
        return Capacity(float(r.cpus) if r and r.cpus else default.cpus,
                        int(r.memory) if r and r.memory else default.memory)

    return [UnderCloudCollector(LxdHostSource(h), h.name, capacity(h.name))
            for h in hosts if api_answers(h)]


LAYERS = ("resource", "flow", "service")


def _layers(value: str) -> list[str]:
    layers = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in layers if x not in LAYERS]
    if unknown or not layers:
        raise UserError(f"unknown layer {(','.join(unknown) or value)!r}; available: "
                        f"{', '.join(LAYERS)} (comma-separated)")
    return list(dict.fromkeys(layers))


def _tiers(value: str) -> dict[str, str]:
    """`n1=db,n2=app+web` → {n1: db, n2: app+web}."""
    out = {}
    for item in (x.strip() for x in value.split(",") if x.strip()):
        name, sep, tier = item.partition("=")
        if not sep or not _valid_name(name.strip()) or not tier.strip():
            raise UserError(f"--tiers takes NODE=TIERS pairs separated by commas, got {item!r}")
        out[name.strip()] = tier.strip()
    return out


def _http_collector(url: str, expect: str, every: float) -> Collector:
    from collectors.service.http import HttpProbeCollector

    # a probe that hangs (nginx waiting on a stopped upstream) holds up the agent's cycle:
    # give up within half an interval, so that the cycle ends before the next one is due
    # (a late cycle leaves an interval without samples) and an outage is reported in it
    return HttpProbeCollector(url, expect, timeout=min(5.0, max(0.5, every / 2)))


def _node_collectors(s: Settings, layers: list[str], instance: str, lxd_host: str,
                     overcloud: str, every: float, node: str, tiers: dict[str, str], url: str,
                     expect: str) -> list[Collector]:
    """One machine container seen from its UnderCloud host: one LXD state read per cycle,
    shared by the resource, flow and service collectors."""
    from collectors.flow.iface import IfaceCollector
    from collectors.flow.peer import PeerCollector
    from collectors.node import (
        Apis,
        NodeState,
        PeerDirectory,
        overcloud_nodes,
        shared_instance_source,
    )
    from collectors.resource.instance import InstanceCollector
    from collectors.service.container import ContainerCollector, DockerSource

    hosts = {h.name: h for h in s.lxd_hosts}
    if lxd_host not in hosts:
        raise UserError(
            f"--lxd-host must name an UnderCloud host ({', '.join(hosts) or 'none configured'}), "
            f"got {lxd_host!r}"
        )
    apis = Apis()
    state = NodeState.from_lxd(hosts[lxd_host], instance, apis)
    out: list[Collector] = []
    if "resource" in layers:
        out.append(InstanceCollector(shared_instance_source(state), lxd_host, instance))
    if "flow" in layers:
        if not overcloud:
            raise UserError("the flow layer names peers among an OverCloud's nodes: give --overcloud")
        host_list = s.lxd_hosts
        directory = PeerDirectory(lambda: overcloud_nodes(apis, host_list, overcloud))
        out += [IfaceCollector(state), PeerCollector(state, directory, tiers, node)]
    if "service" in layers:
        out.append(ContainerCollector(DockerSource(state)))
        if url:
            out.append(_http_collector(url, expect, every))
    return out


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}", name) is not None
