"""`overcloud pause NAME` and `overcloud resume NAME` (orchestrator/pause.py says what they do).

Like `backup`, the commands only ask: they check the name and the state for a one-line
answer, publish `PauseRequested` / `ResumeRequested` (locally or through the DevTower with
`--tower`), and with `--wait` follow the orchestrator's workflow live.
"""

from __future__ import annotations

from typing import Annotated

import typer

from devtower.cli.common import console, settings, styled, tower
from orchestrator.views import workflow_dict
from overcloud.errors import UserError


def pause(
    name: Annotated[str, typer.Argument(help="OverCloud name.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the pause until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Stop NAME's nodes and agents, keep its data, DevLake and URL; give its capacity back."""
    _ask(name, "pause", ("ready", "degraded"), wait, timeout)


def resume(
    name: Annotated[str, typer.Argument(help="OverCloud name.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the resume until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Start a paused NAME again with the same URL (nodes whose host is full move)."""
    _ask(name, "resume", ("paused", "degraded"), wait, timeout)


def _ask(name: str, what: str, states: tuple[str, ...], wait: bool, timeout: float) -> None:
    from devtower.cli.overclouds import _follow, _follow_remote, publish
    from orchestrator.registry import Registry
    from overcloud.events import Event, PauseRequested, ResumeRequested

    remote = tower()
    if remote is not None:
        sub = remote.pause(name) if what == "pause" else remote.resume(name)
        console.print(f"{what} of {name} requested: id {sub['id']}", markup=False)
        if wait:
            _done(name, what, _follow_remote(remote, name, str(sub["id"]), what, timeout))
        return
    s = settings()
    rec = Registry(s).get(name)
    if rec is None:
        raise UserError(f"no OverCloud named {name[:64]!r} (see: overcloud list)")
    if rec.state not in states:
        raise UserError(f"{name} is {rec.state}; it can be {what}d when it is "
                        f"{' or '.join(states)}")
    event: Event = PauseRequested(name=name) if what == "pause" else ResumeRequested(name=name)
    publish(s, event, name)
    console.print(f"{what} of {name} requested: id {event.id}", markup=False)
    if wait:
        _done(name, what, workflow_dict(_follow(event.id, what, timeout)))


def _done(name: str, what: str, wf: dict[str, object] | None) -> None:
    if wf is None or wf["state"] != "succeeded":
        raise UserError(f"the {what} of {name} failed: {(wf or {}).get('error') or 'gone'}")
    console.print(styled(f"{name} is {what}d", "green"), markup=False)
