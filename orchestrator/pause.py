"""Pausing and resuming an OverCloud, as workflows (vcluster pause/resume, a stopped VM).

**Pause** stops the node agents, then every node (`lxc stop`: the node's init stops Docker,
which stops the stack cleanly; the node's disk — the database volume, WordPress's files —
stays), and marks the OverCloud `paused`. What it keeps: its record and request, secrets,
URL port, DevLake, webhooks and backups. What it gives back: its nodes stop counting
against their hosts' capacity (`inventory.allocations` skips paused OverClouds), so
placement can hand that room to another request. Its alerts are silenced: the evaluator
drops its groups and ignores its samples while it is paused (no "no data" alert for agents
that were stopped on purpose). The URL refuses connections while paused (the edge closes
its port first).

**Resume** is decided first (`resume_moves`, on what the hosts hold now): a node stays on
its host when the host is ready and still has room for it, otherwise placement picks a
target as it would for a migration. The workflow then starts every node where it is (the
database node first), converges each node's stack (an address may have changed), checks
the URL, starts the agents, and only then moves the nodes whose host is full — a migration
of a running node (make before break, or stop-copy-start for the database), so the URL is
the same and the move's downtime is measured as any other. Until those moves finish the
host runs over its allocation; on a host that is physically full the start itself fails
and the OverCloud is marked `degraded` with the reason (apply `resume` again once there is
room, or delete it).

Every step is safe to repeat: a stopped node is left stopped, a started one started, the
stack converges, a move that already happened is settled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, cast, runtime_checkable

from orchestrator.front import publish, unpublish
from orchestrator.hosts import MovableHost
from orchestrator.migration import Move, _roll_back, _verify, migrate_spec
from orchestrator.provision import Context
from orchestrator.registry import OverCloudRecord
from orchestrator.request import OverCloudRequest
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud.errors import PermanentError
from overcloud.events import OverCloudPaused, OverCloudResumed, derived_id


@runtime_checkable
class StoppableHost(Protocol):
    """A host that stops a node and keeps its disk (LXD: `lxc stop`)."""

    def stop(self, name: str) -> None: ...


def pause_spec(name: str) -> WorkflowSpec:
    return WorkflowSpec(kind="pause", subject=name, tasks=(
        TaskSpec("agents", "stop_agents", {}, after=(), retries=2, timeout=60),
        TaskSpec("nodes", "stop_nodes", {}, after=("agents",), retries=3, timeout=300),
        TaskSpec("paused", "paused", {}, after=("nodes",), retries=5, timeout=30),
    ))


def resume_spec(rec: OverCloudRecord, moves: list[Move]) -> WorkflowSpec:
    """Start where they are (db first), converge, verify, agents; then the moves, in order."""
    req = OverCloudRequest.from_spec(rec.spec)
    db = req.nodes_of("db")[0]
    nodes = [n.node for n in rec.nodes]
    tasks: list[TaskSpec] = []
    for n in nodes:
        after = () if n == db else (f"start:{db}",)
        tasks += [
            TaskSpec(f"start:{n}", "launch_node", {"node": n}, after=after, retries=3,
                     timeout=240),
            TaskSpec(f"docker:{n}", "wait_docker", {"node": n}, after=(f"start:{n}",),
                     retries=2, timeout=180),
        ]
    tasks.append(TaskSpec(f"stack:{db}", "deploy_stack", {"node": db}, after=(f"docker:{db}",),
                          retries=2, timeout=300))
    tasks += [TaskSpec(f"stack:{n}", "deploy_stack", {"node": n},
                       after=(f"docker:{n}", f"stack:{db}"), retries=2, timeout=300)
              for n in nodes if n != db]
    tasks += [
        TaskSpec("verify", "verify_url", {}, after=tuple(f"stack:{n}" for n in nodes),
                 retries=2, timeout=150),
        TaskSpec("agents", "agents", {}, after=("verify",), retries=2,
                 timeout=180 * len(nodes) + 30),
    ]
    prev: tuple[str, ...] = ("agents",)
    if moves:
        for t in migrate_spec(moves, "resume: its host has no room for it now", rec.name).tasks:
            tasks.append(replace(t, after=prev))
            prev = (t.name,)
    tasks.append(TaskSpec("resumed", "resumed", {}, after=prev, retries=5, timeout=30))
    return WorkflowSpec(kind="resume", subject=rec.name, tasks=tuple(tasks),
                        on_failure="resume_failed")


def resume_moves(c: Context, rec: OverCloudRecord) -> list[Move]:
    """Which of a paused OverCloud's nodes cannot start where they are, and where they go.

    Decided on a snapshot of the hosts (the paused OverCloud counts on none of them): each
    node stays when its host is ready and has room for it (booked as it goes), otherwise
    `placement.choose_target` picks a host with room, under the request's tier rules.
    Stateless nodes are considered first, as for any move. Raises `PermanentError` when a
    node fits nowhere."""
    from orchestrator.inventory import Inventory, snapshot
    from orchestrator.placement import NodeDemand, PlacementError, choose_target

    req = OverCloudRequest.from_spec(rec.spec)
    inv = Inventory(c.settings)
    try:
        snap = snapshot(c.settings, inv, {h: c.hosts[h].reachable for h in c.hosts},
                        c.registry)
    finally:
        inv.close()
    views = {v.name: v for v in snap.views if v.name in c.hosts}
    layout = req.tier_layout()
    where = {n.node: n.host for n in rec.nodes}
    moves: list[Move] = []
    for n in sorted(rec.nodes, key=lambda n: ("db" in layout[n.node], n.node)):
        demand = NodeDemand(n.node, tuple(layout[n.node]), float(req.cluster.cpu),
                            req.cluster.memory_bytes)
        v = views.get(n.host)
        if v is not None and v.state == "ready" and demand.cpu <= v.free_cpu + 1e-9 \
                and demand.memory <= v.free_memory:
            target = n.host
        else:
            siblings = [(NodeDemand(o, tuple(layout[o]), demand.cpu, demand.memory), h)
                        for o, h in where.items() if o != n.node]
            try:
                target = choose_target(demand, list(views.values()), {n.host},
                                       separate_tiers=req.placement.separate_tiers,
                                       siblings=siblings)
            except PlacementError as exc:
                raise PermanentError(f"{n.node} cannot start: {n.host} has no room for it and "
                                     f"no other host can take it ({exc})") from None
            moves.append(Move(rec.name, n.node, n.host, target))
            where[n.node] = target
        t = views[target]
        views[target] = replace(t, allocated_cpu=t.allocated_cpu + demand.cpu,
                                allocated_memory=t.allocated_memory + demand.memory)
    return moves


def register_pause_actions(actions: ActionRegistry, c: Context) -> None:
    """The pause and resume actions (resume also uses provisioning's and migration's)."""

    @actions.action("stop_nodes")
    def stop_nodes(ctx: TaskContext) -> list[str]:
        name = ctx.input["name"]
        rec = c.registry.get(name)
        if rec is None:
            raise PermanentError(f"OverCloud {name} no longer exists")
        unpublish(c, name)  # the URL closes first: no request reaches a stopping node
        stopped = []
        for n in rec.nodes:
            host = c.hosts.get(n.host)
            if host is None:
                raise PermanentError(f"{n.node} is on unknown host {n.host}")
            if not isinstance(host, StoppableHost):
                raise PermanentError(f"{n.host} cannot stop a node and keep it (pausing needs "
                                     "LXD hosts)")
            host.stop(n.node)
            stopped.append(f"{n.node}@{n.host}")
        ctx.report("stopped " + ", ".join(stopped))
        return stopped

    @actions.action("paused")
    def paused(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        c.registry.set_state(name, "paused", error="")
        c.bus.publish(OverCloudPaused(id=derived_id(ctx.workflow_id, "paused"), name=name),
                      key=name)

    @actions.action("verify_url")
    def verify_url(ctx: TaskContext) -> str:
        name = ctx.input["name"]
        rec = c.registry.get(name)
        if rec is None or not rec.url:
            raise PermanentError(f"OverCloud {name} has no URL")
        req = OverCloudRequest.from_spec(rec.spec)
        publish(c, req)  # where the web nodes run now (a restart may change an address)
        url = rec.url.rstrip("/") + req.saas.expose.path_check
        _verify(url)
        ctx.report(f"{url} answers")
        return url

    @actions.action("resumed")
    def resumed(ctx: TaskContext) -> dict[str, str]:
        name = ctx.input["name"]
        rec = c.registry.get(name)
        if rec is None:
            raise PermanentError(f"OverCloud {name} no longer exists")
        c.registry.set_state(name, "ready", error="")
        nodes = {n.node: n.host for n in rec.nodes}
        c.bus.publish(OverCloudResumed(id=derived_id(ctx.workflow_id, "resumed"), name=name,
                                       url=rec.url, nodes=nodes), key=name)
        return nodes

    @actions.action("resume_failed")
    def resume_failed(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        task = str(ctx.args.get("failed_task") or "?")
        reason = str(ctx.args.get("error") or "unknown").removeprefix(f"{task}: ")
        rec = c.registry.get(name)
        if rec is None:
            return
        move = next((m for m in ctx.input.get("moves", []) if f"move:{m['node']}" == task), None)
        if move is not None:  # as a failed migration: the old node serves again
            src, tgt = c.hosts.get(move["source"]), c.hosts.get(move["target"])
            if src is not None and tgt is not None:
                _roll_back(c, OverCloudRequest.from_spec(rec.spec), move["node"],
                           cast(MovableHost, src), cast(MovableHost, tgt))
        c.registry.set_state(name, "degraded", error=f"resume, {task}: {reason}")
