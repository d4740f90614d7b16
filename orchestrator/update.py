"""Changing a running OverCloud: compare the applied document with what runs, plan, act.

Declarative, as `kubectl apply` or a Heat stack-update: the developer applies the whole
document again and the plan is the difference, printed terraform-style before anything
happens (`~ my-blog-n1 memory 1GiB → 2GiB`, `~ retention 30d → 90d`, `+ webhook URL`).
The same document applied twice plans nothing and runs nothing.

What changes in place, without a restart or a moment of downtime:
- cores and memory of every node (LXD applies `limits.cpu` / `limits.memory` to a running
  container; a node's uptime does not reset);
- the DevLake's retention (`ALTER RETENTION POLICY`), whether it is kept on delete;
- the webhooks (the DevTower re-reads them from `OverCloudUpdated`), `devtower.api`;
- placement hints and the page `verify` checks (they matter the next time a node is placed).

What is refused, with the reason, changing nothing: the owner (tokens, the DevLake's
read-only user and the webhook secret are theirs), the stack, the exposed port (the URL is
the OverCloud's identity for its users), and — not built yet — the number of nodes or tier
replicas. The orchestrator plans again from the registry when it runs the update (the
document may have been checked against an older state), so a refusal there fails the
update's workflow with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from orchestrator.provision import Context
from orchestrator.registry import OverCloudRecord
from orchestrator.request import OverCloudRequest, RequestInvalid, human_bytes, line_of
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud.errors import PermanentError
from overcloud.events import OverCloudUpdated, derived_id
from overcloud.problems import Problem


@runtime_checkable
class ResizableHost(Protocol):
    """A host that changes a running node's cores and memory without restarting it."""

    def set_limits(self, name: str, cpu: int, memory_bytes: int) -> None: ...


@dataclass(frozen=True)
class Change:
    op: Literal["+", "-", "~"]
    what: str
    old: str = ""
    new: str = ""

    def line(self) -> str:
        if self.op == "~":
            return f"~ {self.what} {self.old} → {self.new}"
        return f"{self.op} {self.what}"


@dataclass(frozen=True)
class UpdatePlan:
    name: str
    changes: tuple[Change, ...]
    refused: tuple[tuple[str, str], ...]
    """(document path, reason) of every change that cannot be made in place."""
    resize: bool
    """Every node gets the request's cpu/memory limits."""
    retention: str | None
    """The DevLake's new retention, when it changes."""

    @property
    def empty(self) -> bool:
        return not self.changes and not self.refused

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes]

    def refusal(self, text: str, source: str) -> RequestInvalid:
        """The refused changes as problems of the applied document, each at its line."""
        return RequestInvalid(source, [Problem(path, line_of(text, path),
                                               f"cannot change in place: {why}")
                                       for path, why in self.refused])


def _limits(req: OverCloudRequest) -> tuple[int, int]:
    return req.cluster.cpu, req.cluster.memory_bytes


def plan_update(rec: OverCloudRecord, new: OverCloudRequest) -> UpdatePlan:
    """What applying `new` to the OverCloud recorded as `rec` would change (pure)."""
    old = OverCloudRequest.from_spec(rec.spec)
    changes: list[Change] = []
    refused: list[tuple[str, str]] = []

    if new.owner != old.owner:
        refused.append(("owner", f"is {old.owner}, not {new.owner}: an OverCloud keeps its "
                                 "owner (its tokens, read-only DevLake user and webhook secret "
                                 "are theirs); create a new OverCloud instead"))
    if new.saas.stack != old.saas.stack:
        refused.append(("saas.stack", f"{old.saas.stack} runs; another stack is another "
                                      "OverCloud: create a new one"))
    if new.saas.expose.port != old.saas.expose.port and new.saas.expose.port != rec.port:
        refused.append(("saas.expose.port", f"the OverCloud answers on {rec.url or 'its port'}"
                                            " and keeps that URL for its users: a new port "
                                            "means a new OverCloud"))
    for path, was, now in (
            ("cluster.nodes", old.cluster.nodes, new.cluster.nodes),
            ("saas.tiers.app.replicas", old.saas.tiers.app.replicas, new.saas.tiers.app.replicas),
            ("saas.tiers.web.replicas", old.saas.tiers.web.replicas, new.saas.tiers.web.replicas)):
        if was != now:
            refused.append((path, f"{was} → {now}: adding or removing nodes and replicas of a "
                                  "running OverCloud is not built yet; apply the other changes "
                                  "with the current count"))

    resize = _limits(new) != _limits(old)
    if resize:
        for node in sorted(n.node for n in rec.nodes) or old.node_names():
            if new.cluster.cpu != old.cluster.cpu:
                changes.append(Change("~", f"{node} cpu", str(old.cluster.cpu),
                                      str(new.cluster.cpu)))
            if new.cluster.memory_bytes != old.cluster.memory_bytes:
                changes.append(Change("~", f"{node} memory", human_bytes(old.cluster.memory_bytes),
                                      human_bytes(new.cluster.memory_bytes)))
    retention = None
    if new.devlake.retention != old.devlake.retention:
        retention = new.devlake.retention
        changes.append(Change("~", "retention", old.devlake.retention, retention))
    for what, before, after in (
            ("devlake.keep_on_delete", old.devlake.keep_on_delete, new.devlake.keep_on_delete),
            ("devtower.api", old.devtower.api, new.devtower.api),
            ("placement.strategy", old.placement.strategy, new.placement.strategy),
            ("placement.network_heavy", old.placement.network_heavy,
             new.placement.network_heavy),
            ("placement.separate_tiers", old.placement.separate_tiers,
             new.placement.separate_tiers),
            ("saas.expose.path_check", old.saas.expose.path_check, new.saas.expose.path_check)):
        if before != after:
            changes.append(Change("~", what, _text(before), _text(after)))
    for url in new.devtower.notify:
        if url not in old.devtower.notify:
            changes.append(Change("+", f"webhook {url}"))
    for url in old.devtower.notify:
        if url not in new.devtower.notify:
            changes.append(Change("-", f"webhook {url}"))
    return UpdatePlan(rec.name, tuple(changes), tuple(refused), resize, retention)


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def update_spec(plan: UpdatePlan, nodes: list[str]) -> WorkflowSpec:
    """The update as a workflow: each node resized (in parallel), the retention altered, then
    the new request recorded and `OverCloudUpdated` published (last, so a failed resize
    leaves the old request recorded and the update can be applied again)."""
    tasks: list[TaskSpec] = []
    if plan.resize:
        tasks += [TaskSpec(f"resize:{n}", "resize_node", {"node": n}, after=(), retries=2,
                           timeout=60) for n in nodes]
    if plan.retention is not None:
        tasks.append(TaskSpec("retention", "set_retention", {"retention": plan.retention},
                              after=(), retries=5, timeout=60))
    tasks.append(TaskSpec("record", "record_update", {}, after=tuple(t.name for t in tasks),
                          retries=5, timeout=30))
    return WorkflowSpec(kind="update", subject=plan.name, tasks=tuple(tasks))


def unchanged_spec(name: str) -> WorkflowSpec:
    """An update whose plan is empty (the same document again): a workflow that says so."""
    return WorkflowSpec(kind="update", subject=name, tasks=(
        TaskSpec("plan", "nothing_to_change", {}, after=(), retries=0, timeout=10),))


def refusal_spec(name: str, reason: str) -> WorkflowSpec:
    """An update the orchestrator refused, kept as a workflow that fails with the reason (what
    `request apply --wait` and the events stream show)."""
    return WorkflowSpec(kind="update", subject=name, tasks=(
        TaskSpec("refuse", "refuse_update", {"reason": reason}, after=(), retries=0,
                 timeout=10),))


def register_update_actions(actions: ActionRegistry, c: Context) -> None:
    """The update's actions, bound to the orchestrator's `Context`."""

    def request(ctx: TaskContext) -> OverCloudRequest:
        return OverCloudRequest.from_spec(ctx.input["spec"])

    @actions.action("resize_node")
    def resize_node(ctx: TaskContext) -> dict[str, Any]:
        req, node = request(ctx), str(ctx.args["node"])
        rec = c.registry.get(req.name)
        host = next((n.host for n in rec.nodes if n.node == node), None) if rec else None
        if host is None or host not in c.hosts:
            raise PermanentError(f"{node} has no known host: nothing to resize")
        driver = c.hosts[host]
        if not isinstance(driver, ResizableHost):
            raise PermanentError(f"{host} cannot change a running node's limits (a live "
                                 "resize needs an LXD host)")
        driver.set_limits(node, req.cluster.cpu, req.cluster.memory_bytes)
        ctx.report(f"{node} on {host}: {req.cluster.cpu} cpu, {req.cluster.memory}")
        return {"node": node, "host": host}

    @actions.action("set_retention")
    def set_retention(ctx: TaskContext) -> str:
        req = request(ctx)
        db = f"{c.settings.influx.database_prefix}{req.name}"
        c.database_admin.set_retention(db, str(ctx.args["retention"]))
        return db

    @actions.action("record_update")
    def record_update(ctx: TaskContext) -> None:
        req = request(ctx)
        c.registry.update_spec(req.name, req.to_spec())
        c.bus.publish(OverCloudUpdated(id=derived_id(ctx.workflow_id, "updated"), name=req.name,
                                       spec=req.to_spec(),
                                       changes=list(ctx.input.get("changes") or [])),
                      key=req.name)

    @actions.action("nothing_to_change")
    def nothing_to_change(ctx: TaskContext) -> str:
        ctx.report("the OverCloud already runs this document: nothing to change")
        return "unchanged"

    @actions.action("refuse_update")
    def refuse_update(ctx: TaskContext) -> None:
        raise PermanentError(str(ctx.args["reason"]))
