"""`overcloud backup NAME`, `overcloud backup list NAME`, `overcloud restore NAME --from ID`.

Like `migrate`, the commands only ask: they check what they can (the name, the backup id,
the state) for a one-line answer, publish `BackupRequested` / `RestoreRequested`, and with
`--wait` follow the orchestrator's workflow live. `backup list` reads the backups kept under
the state directory (orchestrator/backup.py says what one is).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from devtower.cli.common import console, settings, styled, tower
from orchestrator.views import workflow_dict
from overcloud.errors import UserError

if TYPE_CHECKING:
    from orchestrator.registry import OverCloudRecord


def backup(
    args: Annotated[list[str], typer.Argument(help="NAME (back it up now), or: list NAME.",
                                              metavar="NAME | list NAME")],
    keep: Annotated[int, typer.Option(help="Keep the newest KEEP backups of NAME.")] = 7,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the backup until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Back up NAME's database now (a consistent dump, kept under the state dir), or list them."""
    if len(args) == 2 and args[0] == "list":
        _list(args[1])
        return
    if len(args) != 1:
        raise UserError("say which OverCloud: overcloud backup NAME, or overcloud backup list NAME")
    from devtower.cli.overclouds import _follow, _follow_remote, publish
    from overcloud.events import BackupRequested

    name = args[0]
    if not 1 <= keep <= 1000:
        raise UserError(f"--keep must be 1..1000 backups, got {keep}")
    remote = tower()
    if remote is not None:
        sub = remote.backup(name, keep)
        console.print(f"backup of {name} requested: id {sub['id']}", markup=False)
        if wait:
            _done(name, "backup", _follow_remote(remote, name, str(sub["id"]), "backup", timeout))
        return
    s = settings()
    _ready(name)
    event = BackupRequested(name=name, keep=keep)
    publish(s, event, name)
    console.print(f"backup of {name} requested: id {event.id}", markup=False)
    if wait:
        _done(name, "backup", workflow_dict(_follow(event.id, "backup", timeout)))


def restore(
    name: Annotated[str, typer.Argument(help="OverCloud name (whose backup).")],
    from_: Annotated[str, typer.Option("--from", help="The backup id (overcloud backup list NAME).")],
    as_: Annotated[str, typer.Option("--as", help="Restore into another OverCloud of yours, made "
                                     "from NAME's request when it does not exist (a clone to "
                                     "staging, on a port of its own).")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the restore until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Put NAME's database back as it was at a backup (tables made since are dropped), or
    load it into another OverCloud (--as NEW)."""
    from devtower.cli.overclouds import _follow, _follow_remote, publish
    from orchestrator.backup import find_backup
    from orchestrator.request import NAME_RE
    from overcloud.errors import PermanentError
    from overcloud.events import RestoreRequested

    target = as_ or name
    if as_ and not NAME_RE.fullmatch(as_):
        raise UserError(f"--as {as_[:64]!r}: an OverCloud name is a DNS label (a-z, 0-9, '-')")
    remote = tower()
    if remote is not None:
        if as_ and as_ != name:
            _clone_remote(remote, name, as_, timeout)
        sub = remote.restore(target, from_, name if target != name else "")
        console.print(f"restore of {target} from {sub['backup']} requested: id {sub['id']}",
                      markup=False)
        if wait:
            _done(target, "restore", _follow_remote(remote, target, str(sub["id"]), "restore",
                                                    timeout))
        return
    s = settings()
    rec = _ready(name)
    try:
        b = find_backup(s, name, from_, rec.request_id)
    except PermanentError as exc:
        raise UserError(str(exc)) from None
    if target != name:
        _clone(rec, target, timeout)
    event = RestoreRequested(name=target, backup=b.id, source=name if target != name else "")
    publish(s, event, target)
    console.print(f"restore of {target} from {b.id} requested: id {event.id}", markup=False)
    if wait:
        _done(target, "restore", workflow_dict(_follow(event.id, "restore", timeout)))


def clone_spec(spec: dict[str, Any], new: str) -> dict[str, Any]:
    """NAME's request for a clone `new`: the same, but its own name and a free port."""
    import copy

    out = copy.deepcopy(spec)
    out["name"] = new
    out.setdefault("saas", {}).setdefault("expose", {})["port"] = "auto"
    return out


def _clone(rec: OverCloudRecord, new: str, timeout: float) -> None:
    """Make `new` from `rec`'s request unless it exists (then it must be ready and the same
    owner's), and wait until it is ready: a restore needs its database."""
    from devtower.cli.overclouds import _follow, publish
    from orchestrator.registry import Registry
    from orchestrator.request import OverCloudRequest, RequestInvalid
    from overcloud.events import OverCloudRequested

    s = settings()
    existing = Registry(s).get(new)
    if existing is not None:
        if existing.owner != rec.owner:
            raise UserError(f"{new} is not {rec.owner}'s: restore into your own OverClouds only")
        _ready(new)
        return
    try:
        req = OverCloudRequest.from_spec(clone_spec(rec.spec, new))
    except RequestInvalid as exc:
        raise UserError("; ".join(exc.lines())) from None
    event = OverCloudRequested(name=new, owner=req.owner, spec=req.to_spec())
    publish(s, event, new)
    console.print(f"requested OverCloud {new} (a clone of {rec.name}): request id {event.id}",
                  markup=False)
    wf = _follow(event.id, "request", timeout)
    made = Registry(s).get(new)
    if str(wf.state) != "succeeded" or made is None:
        raise UserError(f"OverCloud {new} failed: {wf.error or (made.error if made else '?')}")
    console.print(styled(f"OverCloud {new} is ready: {made.url}", "green"))


def _clone_remote(remote: Any, name: str, new: str, timeout: float) -> None:
    """`_clone` through the DevTower: GET NAME's request, POST it as `new`, follow it."""
    import yaml

    from devtower.cli.overclouds import _follow_remote
    from devtower.client import TowerError

    try:
        existing = remote.show(new)
    except TowerError as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None:
        if existing.get("state") not in ("ready", "degraded"):
            raise UserError(f"{new} is {existing.get('state')}; try again once it is ready")
        return
    spec = clone_spec(remote.show(name)["spec"], new)
    sub = remote.submit(yaml.safe_dump(spec, sort_keys=False), f"{name} as {new}")
    console.print(f"requested OverCloud {new} (a clone of {name}): request id {sub['id']}",
                  markup=False)
    wf = _follow_remote(remote, new, str(sub["id"]), "request", timeout)
    if wf is None or wf["state"] != "succeeded":
        raise UserError(f"OverCloud {new} failed: {(wf or {}).get('error') or 'gone'}")


def _done(name: str, what: str, wf: dict[str, Any] | None) -> None:
    """The end of a followed backup or restore: its last task's report, or why it failed."""
    if wf is None or wf["state"] != "succeeded":
        raise UserError(f"the {what} of {name} failed: {(wf or {}).get('error') or 'gone'}")
    console.print(styled(str(wf["tasks"][0]["progress"]), "green"))


def _ready(name: str) -> OverCloudRecord:
    from orchestrator.registry import Registry

    rec = Registry(settings()).get(name)
    if rec is None:
        raise UserError(f"no OverCloud named {name[:64]!r} (see: overcloud list)")
    if rec.state not in ("ready", "degraded"):
        raise UserError(f"{name} is {rec.state}; try again once it is ready")
    return rec


def _list(name: str) -> None:
    from orchestrator.backup import Backup, list_backups
    from orchestrator.registry import Registry
    from overcloud.errors import PermanentError

    remote = tower()
    if remote is not None:
        found = [Backup(**b) for b in remote.backups(name)]
    else:
        rec = Registry(settings()).get(name) if len(name) <= 64 else None
        try:  # of the OverCloud that runs now; all of them for one deleted since
            found = list_backups(settings(), name, rec.request_id if rec else None)
        except PermanentError as exc:
            raise UserError(str(exc)) from None
    if not found:
        console.print(f"{name[:64]} has no backups", markup=False)
        return
    t = Table(title=f"backups of {name}", title_justify="left")
    for col in ("id", "made (UTC)", "database", "uploads", "from"):
        t.add_column(col)
    for b in found:
        t.add_row(b.id, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(b.time)),
                  f"{b.bytes:,} B", f"{b.uploads_bytes:,} B" if b.uploads_sha256 else "-",
                  f"{b.node} on {b.host}")
    console.print(t)
