"""up / down / status over the service catalog; the CLI is a thin layer over these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from daemons.install import ensure_packages
from devtower.services.catalog import CATALOG, ServiceSpec
from overcloud.errors import UserError
from overcloud.settings import Settings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | stopped
    pid: int | None
    address: str
    healthy: bool
    log: str


def select(names: Iterable[str] | None, *, everything: bool = False) -> list[ServiceSpec]:
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in CATALOG]
    if unknown:
        raise UserError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(CATALOG)}"
        )
    if wanted:
        return [CATALOG[n] for n in wanted]
    return [s for s in CATALOG.values() if s.default or everything]


def up(settings: Settings, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    specs = select(names)
    ensure_packages(sorted({p for s in specs for p in s.packages}))
    for spec in specs:
        spec.daemon(settings).start()
        spec.after_start(settings)
    return [status_of(settings, s) for s in specs]


def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop in reverse order; returns the names of services that were running."""
    stopped = []
    for spec in reversed(select(names, everything=True)):
        if spec.daemon(settings).stop():
            stopped.append(spec.name)
    return stopped


def status_of(settings: Settings, spec: ServiceSpec) -> ServiceStatus:
    d = spec.daemon(settings)
    pid = d.pid()
    return ServiceStatus(
        name=spec.name,
        state="running" if pid else "stopped",
        pid=pid,
        address=d.address,
        healthy=bool(pid) and d.ready(),
        log=str(d.log_file),
    )


def status(settings: Settings, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    return [status_of(settings, s) for s in select(names, everything=True)]
