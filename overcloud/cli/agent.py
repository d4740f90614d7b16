"""`overcloud agent run`: collect on an interval and publish to Kafka."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from overcloud.cli.common import console, install_signal_handlers, settings, setup_logging
from overcloud.errors import UserError
from overcloud.settings import Settings

if TYPE_CHECKING:
    from collectors.base import Collector

app = typer.Typer(help="Metric agents.", no_args_is_help=True)

LAYER_COLLECTORS = {"resource": ["host"]}


@app.command()
def run(
    layer: Annotated[str, typer.Option(help="Which layer to collect: resource.")] = "resource",
    interval: Annotated[float | None, typer.Option(help="Seconds between collections (>= 1).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Collect once, deliver, exit.")] = False,
    overcloud: Annotated[str, typer.Option(help="OverCloud the samples belong to.")] = "",
    node: Annotated[str, typer.Option(help="Node name (default: this host's name).")] = "",
    cluster: Annotated[str, typer.Option(help="Logical cluster name.")] = "",
    instance: Annotated[str, typer.Option(
        help="Collect a machine container's resources from its LXD host instead of this host's."
    )] = "",
    lxd_host: Annotated[str, typer.Option(help="UnderCloud host (LXD daemon) of --instance.")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an agent for one layer until SIGTERM/SIGINT (or once with --once)."""
    from agents.publisher import Publisher
    from agents.runtime import Agent, default_identity, prime, spool_path
    from agents.spool import Spool
    from collectors.base import build
    from overcloud.samples import Layer

    if layer not in LAYER_COLLECTORS:
        raise UserError(f"unknown layer {layer!r}; available: {', '.join(LAYER_COLLECTORS)}")
    s = settings()
    every = s.agent.interval if interval is None else interval
    if every < 1:
        raise UserError(f"--interval must be at least 1 second, got {every:g}")
    if any(name and not _valid_name(name) for name in (overcloud, node, cluster, instance)):
        raise UserError("--overcloud and --node take names of letters, digits, '-' and '_'")
    setup_logging(verbose)
    identity = default_identity(overcloud, node, cluster)
    if instance:
        collectors = [_instance_collector(s, instance, lxd_host)]
    else:
        collectors = [build(name) for name in LAYER_COLLECTORS[layer]]
        if layer == "resource":
            collectors += _undercloud_collectors(s)
    spool = Spool(spool_path(s, identity, Layer(layer)), s.agent.spool_max_bytes)
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
        f"agent: layer={layer} node={identity.node} overcloud={overcloud or '-'} "
        f"every {every:g}s → {s.kafka.bootstrap}"
    )
    sys.stdout.flush()  # the banner is how `services up` sees it ready
    agent.run(every, stop)
    publisher.close(timeout=s.agent.send_timeout)


def _undercloud_collectors(s: Settings) -> list[Collector]:
    """The host agent also measures every configured UnderCloud host whose LXD API answers."""
    from collectors.resource.undercloud import Capacity, LxdHostSource, UnderCloudCollector
    from overcloud.services.lxd import api_answers

    cap = Capacity.of_this_machine(s.undercloud.host_cpus, s.undercloud.host_memory)
    return [UnderCloudCollector(LxdHostSource(h), h.name, cap)
            for h in s.lxd_hosts if api_answers(h)]


def _instance_collector(s: Settings, instance: str, lxd_host: str) -> Collector:
    from collectors.resource.instance import InstanceCollector, LxdApiSource

    hosts = {h.name: h for h in s.lxd_hosts}
    if lxd_host not in hosts:
        raise UserError(
            f"--lxd-host must name an UnderCloud host ({', '.join(hosts) or 'none configured'}), "
            f"got {lxd_host!r}"
        )
    return InstanceCollector(LxdApiSource(hosts[lxd_host], instance), lxd_host, instance)


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}", name) is not None
