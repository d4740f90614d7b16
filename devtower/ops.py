"""What the DevTower can do, as plain functions over the parts it is given.

The HTTP API and the CLI call the same functions and render the same data, so a developer
gets the same answers locally and through `--tower`. Every function checks *who* asks
(`Identity`) before it reveals or changes anything: another tenant's OverCloud does not
exist for the caller (`NotFound`, never "forbidden"), a viewer may read but not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devtower.cli.request import summary as summary_of
from devtower.hooks import HookStore
from devtower.snapshot import Snapshot
from devtower.tokens import Identity
from orchestrator import views
from orchestrator.registry import OverCloudRecord, Registry
from orchestrator.request import OverCloudRequest, RequestInvalid, parse_request
from orchestrator.store import WorkflowStore
from orchestrator.update import UpdatePlan, plan_update
from orchestrator.views import summary, workflow_dict
from overcloud.bus import EventBus
from overcloud.errors import UserError
from overcloud.events import (
    BackupRequested,
    MigrationRequested,
    OverCloudDeleteRequested,
    OverCloudRequested,
    OverCloudUpdateRequested,
    PauseRequested,
    RestoreRequested,
    ResumeRequested,
)
from overcloud.problems import Problem
from overcloud.settings import Settings


class NotFound(UserError, LookupError):
    """No such OverCloud — or not one the caller may see (the same answer on purpose)."""


class Forbidden(UserError):
    """The caller sees it but their role may not do this (a viewer changing something)."""


class Conflict(UserError):
    """The name is taken, or the OverCloud is in a state that does not allow this."""


@dataclass
class Tower:
    """The parts the DevTower works with, built once by the process and handed down."""

    settings: Settings
    registry: Registry
    workflows: WorkflowStore
    bus: EventBus
    hooks: HookStore
    reads: Snapshot = field(init=False)
    """What requests read (records, workflows): `registry` and `workflows`, cached."""

    def __post_init__(self) -> None:
        self.reads = Snapshot(self.registry, self.workflows)


def visible(ident: Identity, rec: OverCloudRecord) -> bool:
    """Operators see everything; others only their own OverClouds with `devtower.api` on."""
    if ident.operator:
        return True
    api_on = bool((rec.spec.get("devtower") or {}).get("api", True))
    return rec.owner == ident.owner and api_on


def find(t: Tower, ident: Identity, name: str) -> OverCloudRecord:
    rec = t.reads.get(name) if len(name) <= 64 else None
    if rec is None or not visible(ident, rec):
        raise NotFound(f"no OverCloud named {name[:64]!r}")
    return rec


def writable(t: Tower, ident: Identity, name: str) -> OverCloudRecord:
    rec = find(t, ident, name)
    if not ident.can_write:
        raise Forbidden(f"the {ident.role.value} role can only read")
    return rec


def visible_records(t: Tower, ident: Identity) -> list[OverCloudRecord]:
    return [r for r in t.reads.all() if visible(ident, r)]


def list_overclouds(t: Tower, ident: Identity) -> list[dict[str, Any]]:
    return [summary(r) for r in t.reads.all() if visible(ident, r)]


def detail(t: Tower, ident: Identity, name: str) -> dict[str, Any]:
    rec = find(t, ident, name)
    out = summary(rec)
    out["nodes"] = views.nodes(rec)
    out["spec"] = rec.spec
    out["workflows"] = [workflow_dict(wf) for wf in t.reads.workflows_of(name)]
    return out


def summary_lines(req: OverCloudRequest) -> list[str]:
    """A few lines that say what the request would make (`request validate` prints them)."""
    return summary_of(req)


_OWNER_KEY = re.compile(r'\s*"?owner"?\s*:')


def _line_of_owner(text: str) -> int | None:
    """The line of the document's `owner:` (the page marks a problem at its line)."""
    return next((i for i, line in enumerate(text.splitlines(), 1) if _OWNER_KEY.match(line)),
                None)


def validate(ident: Identity, text: str, source: str = "request") -> OverCloudRequest:
    """Check a document as `submit` would, creating nothing."""
    req = parse_request(text, source)
    if req.owner != ident.owner and not ident.operator:
        raise RequestInvalid(source, [Problem(
            "owner", _line_of_owner(text),
            f"must be you ({ident.owner}): a token acts only for its owner")])
    return req


@dataclass(frozen=True)
class Submitted:
    request: OverCloudRequest
    event: OverCloudRequested | OverCloudUpdateRequested | None
    """What was published (None: a dry run, or an update that changes nothing)."""
    webhook_secret: str | None
    plan: UpdatePlan | None = None
    """For an OverCloud that exists: what applying the document changes."""


def submit(t: Tower, ident: Identity, text: str, source: str = "request",
           dry_run: bool = False) -> Submitted:
    """Validate a request document as the caller and publish `OverCloudRequested` — or, for
    one of the caller's OverClouds that exists, plan the difference and publish
    `OverCloudUpdateRequested` (nothing when the plan is empty or `dry_run`).

    Raises `RequestInvalid` (every problem at once; a change that cannot be made in place is
    a problem at its path), `Forbidden` (a viewer), `Conflict` (the name is another tenant's,
    or the OverCloud is busy)."""
    if not ident.can_write:
        raise Forbidden(f"the {ident.role.value} role cannot create or change OverClouds")
    req = validate(ident, text, source)
    rec = t.reads.get(req.name)
    if rec is not None:
        if not visible(ident, rec):
            raise Conflict(f"an OverCloud named {req.name!r} already exists; choose another name")
        return _update(t, req, rec, text, source, dry_run)
    if dry_run:
        return Submitted(req, None, None)
    secret = t.hooks.register(req.name, req.devtower.notify) if req.devtower.notify else None
    event = OverCloudRequested(name=req.name, owner=req.owner, spec=req.to_spec())
    t.bus.publish(event, key=req.name)
    return Submitted(req, event, secret)


def _update(t: Tower, req: OverCloudRequest, rec: OverCloudRecord, text: str, source: str,
            dry_run: bool) -> Submitted:
    try:
        plan = plan_update(rec, req)
    except RequestInvalid:
        raise Conflict(f"the request {req.name} runs cannot be read back, so no change can be "
                       "planned against it; ask an operator") from None
    if plan.refused:
        raise plan.refusal(text, source)
    if dry_run or plan.empty:
        return Submitted(req, None, None, plan)
    if rec.state not in ("ready", "degraded"):
        raise Conflict(f"{req.name} is {rec.state}; apply changes once it is ready")
    # the first webhook of an OverCloud that had none gets its secret now, shown once to
    # the owner; the URLs change when the update is carried out (`OverCloudUpdated`)
    secret = t.hooks.register(req.name, t.hooks.urls(req.name)) if req.devtower.notify else None
    event = OverCloudUpdateRequested(name=req.name, owner=rec.owner, spec=req.to_spec())
    t.bus.publish(event, key=req.name)
    return Submitted(req, event, secret, plan)


def backups(t: Tower, ident: Identity, name: str) -> list[dict[str, Any]]:
    """The backups of this incarnation of the OverCloud, oldest first."""
    from orchestrator.backup import list_backups

    rec = find(t, ident, name)
    return [{k: v for k, v in b.to_dict().items() if k != "request_id"}
            for b in list_backups(t.settings, name, rec.request_id)]


def _changeable(t: Tower, ident: Identity, name: str,
                states: tuple[str, ...] = ("ready", "degraded")) -> OverCloudRecord:
    rec = writable(t, ident, name)
    if rec.state not in states:
        if rec.state == "paused":
            raise Conflict(f"{name} is paused; resume it first")
        raise Conflict(f"{name} is {rec.state}; try again once it is {' or '.join(states)}")
    return rec


def pause(t: Tower, ident: Identity, name: str) -> PauseRequested:
    _changeable(t, ident, name)
    event = PauseRequested(name=name)
    t.bus.publish(event, key=name)
    return event


def resume(t: Tower, ident: Identity, name: str) -> ResumeRequested:
    _changeable(t, ident, name, states=("paused", "degraded"))
    event = ResumeRequested(name=name)
    t.bus.publish(event, key=name)
    return event


def backup(t: Tower, ident: Identity, name: str, keep: int) -> BackupRequested:
    _changeable(t, ident, name)
    if not 1 <= keep <= 1000:
        raise UserError(f"keep must be 1..1000 backups, got {keep}")
    event = BackupRequested(name=name, keep=keep)
    t.bus.publish(event, key=name)
    return event


def restore(t: Tower, ident: Identity, name: str, backup_id: str,
            source: str = "") -> RestoreRequested:
    """Restore a backup of `name` — or of `source`, another OverCloud of the caller (a clone
    to staging) — into `name`."""
    from orchestrator.backup import find_backup
    from overcloud.errors import PermanentError

    rec = _changeable(t, ident, name)
    of = writable(t, ident, source) if source and source != name else rec
    if of.owner != rec.owner:
        raise Conflict(f"{of.name} and {name} have different owners")
    try:
        b = find_backup(t.settings, of.name, backup_id, of.request_id)
    except PermanentError as exc:
        raise NotFound(str(exc)) from None
    event = RestoreRequested(name=name, backup=b.id, source="" if of is rec else of.name)
    t.bus.publish(event, key=name)
    return event


def delete(t: Tower, ident: Identity, name: str, keep_data: bool) -> OverCloudDeleteRequested:
    writable(t, ident, name)
    event = OverCloudDeleteRequested(name=name, keep_data=keep_data)
    t.bus.publish(event, key=name)
    return event


def migrate(t: Tower, ident: Identity, name: str, node: str, to: str, site: str,
            hosts: set[str], sites: set[str], draining: set[str],
            db_method: str = "replicate") -> MigrationRequested:
    """An operator's move of one node or a whole OverCloud (checks as `overcloud migrate`)."""
    if not ident.operator:
        raise Forbidden("only operators move OverClouds between hosts")
    rec = find(t, ident, name)
    if bool(to) == bool(site):
        raise UserError("say where to: exactly one of 'to' (a host) or 'site'")
    if db_method not in ("replicate", "copy"):
        raise UserError(f"db_method is replicate or copy, not {db_method[:40]!r}")
    if node and site:
        raise UserError("a site move is for a whole OverCloud; for one node name a host")
    nodes = {n.node: n.host for n in rec.nodes}
    if node and node not in nodes:
        raise UserError(f"{name} has no node {node[:64]!r}; its nodes: {', '.join(nodes)}")
    if to and to not in hosts:
        raise UserError(f"no UnderCloud host named {to[:64]!r} (known: {', '.join(sorted(hosts))})")
    if to and to in draining:
        raise Conflict(f"{to} is draining: it takes no new nodes")
    if site and site not in sites:
        raise UserError(f"no site named {site[:64]!r} (known: {', '.join(sorted(sites))})")
    if rec.state not in ("ready", "degraded"):
        raise Conflict(f"{name} is {rec.state}; only a ready (or degraded) OverCloud moves")
    event = MigrationRequested(overcloud=name, node=node, target=to, site=site, reason="by hand",
                               db_method="copy" if db_method == "copy" else "replicate")
    t.bus.publish(event, key=name)
    return event
