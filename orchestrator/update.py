"""Changing a running OverCloud: compare the applied document with what runs, plan, act.

Declarative, as `kubectl apply` or a Heat stack-update: the developer applies the whole
document again and the plan is the difference, printed terraform-style before anything
happens (`~ my-blog-n1 memory 1GiB → 2GiB`, `~ retention 30d → 90d`, `+ webhook URL`).
The same document applied twice plans nothing and runs nothing.

What changes in place, without a restart or a moment of downtime:
- cores and memory of every node (LXD applies `limits.cpu` / `limits.memory` to a running
  container; a node's uptime does not reset);
- the DevLake's retention (`ALTER RETENTION POLICY`), whether it is kept on delete;
- the webhooks (the DevTower re-reads them from `OverCloudUpdated`), `devtower.api`, the
  backup schedule (the orchestrator reads it from the recorded request);
- placement hints and the page `verify` checks (they matter the next time a node is placed).

App and web replicas are added and removed live (`+ node my-blog-n3 (app)`): a new node is
placed by the request's strategy, launched and deployed, and serves the page itself before
any request is sent its way — an app replica then joins the web nodes' nginx upstreams (a
graceful reload), a web replica the edge's route for the URL (orchestrator/front.py). A node
that goes leaves the upstreams or the route first, and is deleted only once the requests it
was serving are done (old nginx workers exited; the edge counts no connection to it). No
request fails on the way (tests/integration/test_update.py).

What is refused, with the reason, changing nothing: the owner (tokens, the DevLake's
read-only user and the webhook secret are theirs), the stack, the exposed port (the URL is
the OverCloud's identity for its users), a node's tiers, and growing a 1-node OverCloud
(its one node runs every tier). The
orchestrator plans again from the registry when it runs the update (the document may have
been checked against an older state), so a refusal there fails the update's workflow with
the same words.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from orchestrator.front import WEB_PORT, drain, publish
from orchestrator.provision import APP_PORT, Context, node_agent, repoint_web, wait_or_retry
from orchestrator.registry import OverCloudRecord
from orchestrator.request import OverCloudRequest, RequestInvalid, human_bytes, line_of
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud.errors import PermanentError, TemporaryError
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
    added: tuple[str, ...] = ()
    """App or web replicas' nodes to make: placed, launched, deployed, serving, then in the
    upstreams (app) or the URL's route (web)."""
    removed: tuple[str, ...] = ()
    """App or web replicas' nodes to retire: out of the route and the upstreams, drained,
    then deleted."""

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
    added, removed = _scaling(old, new, refused)

    for node in added:
        changes.append(Change("+", f"node {node} ({new.tier_layout()[node][0]}, placed by "
                                   f"{new.placement.strategy})"))
    for node in removed:
        tier = old.tier_layout()[node][0]
        changes.append(Change("-", f"node {node} ({tier}; leaves the "
                                   + ("upstream" if tier == "app" else "URL's route")
                                   + " and drains first)"))
    resize = _limits(new) != _limits(old)
    if resize:
        for node in sorted(n.node for n in rec.nodes if n.node not in removed) or \
                old.node_names():
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
            ("saas.expose.path_check", old.saas.expose.path_check, new.saas.expose.path_check),
            ("backup.every", old.backup.every or "never", new.backup.every or "never"),
            ("backup.keep", old.backup.keep, new.backup.keep)):
        if before != after:
            changes.append(Change("~", what, _text(before), _text(after)))
    for url in new.devtower.notify:
        if url not in old.devtower.notify:
            changes.append(Change("+", f"webhook {url}"))
    for url in old.devtower.notify:
        if url not in new.devtower.notify:
            changes.append(Change("-", f"webhook {url}"))
    return UpdatePlan(rec.name, tuple(changes), tuple(refused), resize, retention,
                      added, removed)


def _scaling(old: OverCloudRequest, new: OverCloudRequest,
             refused: list[tuple[str, str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The app-only or web-only nodes `new` adds or removes (`refused` gets why when that is
    not all).

    In place means: every node both documents have keeps its tiers, and every node added or
    removed is an app replica alone (WordPress behind the web nodes' nginx) or a web replica
    alone (nginx behind the edge). A 1-node OverCloud keeps its one node (it runs every
    tier; a second node would take the app and web tiers off it)."""
    if (old.cluster.nodes, old.saas.tiers.app.replicas, old.saas.tiers.web.replicas) == (
            new.cluster.nodes, new.saas.tiers.app.replicas, new.saas.tiers.web.replicas):
        return (), ()
    if old.cluster.nodes == 1 or new.cluster.nodes == 1:
        refused.append(("cluster.nodes", f"{old.cluster.nodes} → {new.cluster.nodes}: a 1-node "
                                         "OverCloud runs every tier on its one node, and more "
                                         "nodes would move the app and web tiers off it; "
                                         "create a new OverCloud and restore a backup into it"))
        return (), ()
    was, now = old.tier_layout(), new.tier_layout()
    for node in sorted(set(was) & set(now)):
        if was[node] != now[node]:
            refused.append(("saas.tiers.app.replicas",
                            f"{node} would run {', '.join(now[node])} instead of "
                            f"{', '.join(was[node])}: a running node keeps its tiers"))
            return (), ()
    added = tuple(n for n in now if n not in was)
    removed = tuple(n for n in was if n not in now)
    for node in (*added, *removed):
        tiers = now.get(node) or was[node]
        if tiers not in (["app"], ["web"]):
            refused.append(("cluster.nodes", f"{node} runs {', '.join(tiers)}: only a node "
                                             "of one tier, app or web, is added or removed "
                                             "in place"))
            return (), ()
    return added, removed


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def update_spec(plan: UpdatePlan, nodes: list[str]) -> WorkflowSpec:
    """The update as a workflow. Nodes are resized in parallel and the retention altered;
    new app replicas are placed, launched and deployed, and serve, before the web nodes'
    nginx take them in; retired ones leave the upstreams (and drain) before they stop. The
    new request is recorded and `OverCloudUpdated` published last, so a failed step leaves
    the old request recorded and the same document can be applied again (every step is
    idempotent: a placed node keeps its host, a launched one is reused)."""
    tasks: list[TaskSpec] = []
    if plan.resize:
        tasks += [TaskSpec(f"resize:{n}", "resize_node", {"node": n}, after=(), retries=2,
                           timeout=60) for n in nodes if n not in plan.removed]
    if plan.retention is not None:
        tasks.append(TaskSpec("retention", "set_retention", {"retention": plan.retention},
                              after=(), retries=5, timeout=60))
    if plan.added:
        tasks.append(TaskSpec("place", "place_added", {"nodes": list(plan.added)}, after=(),
                              retries=2, timeout=60))
        for n in plan.added:
            tasks += [
                TaskSpec(f"launch:{n}", "launch_node", {"node": n}, after=("place",),
                         retries=3, timeout=240),
                TaskSpec(f"docker:{n}", "wait_docker", {"node": n}, after=(f"launch:{n}",),
                         retries=2, timeout=180),
                TaskSpec(f"deploy:{n}", "deploy_stack", {"node": n}, after=(f"docker:{n}",),
                         retries=2, timeout=300),
                TaskSpec(f"serves:{n}", "node_serves", {"node": n}, after=(f"deploy:{n}",),
                         retries=2, timeout=150),
            ]
        tasks += [
            TaskSpec("upstreams", "repoint_upstreams", {},
                     after=tuple(f"serves:{n}" for n in plan.added), retries=2, timeout=180),
            TaskSpec("route", "route_url", {}, after=("upstreams",), retries=2, timeout=60),
            TaskSpec("agents", "agents", {}, after=("route",), retries=2,
                     timeout=180 * len(plan.added) + 30),
        ]
    if plan.removed:
        tasks += [
            TaskSpec("route", "route_url", {}, after=(), retries=2, timeout=60),
            TaskSpec("upstreams", "repoint_upstreams", {}, after=("route",), retries=2,
                     timeout=180),
        ]
        tasks += [TaskSpec(f"retire:{n}", "retire_node", {"node": n}, after=("upstreams",),
                           retries=3, timeout=300) for n in plan.removed]
        # the other nodes' agents name their peers from the node list: restarted with the
        # new one (an agent whose command line is unchanged is left running)
        tasks.append(TaskSpec("agents", "agents", {},
                              after=tuple(f"retire:{n}" for n in plan.removed), retries=2,
                              timeout=180 * max(1, len(nodes) - len(plan.removed)) + 30))
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

    @actions.action("place_added")
    def place_added(ctx: TaskContext) -> dict[str, str]:
        req = request(ctx)
        wanted = [str(n) for n in ctx.args["nodes"]]
        rec = c.registry.get(req.name)
        placed = {n.node: n.host for n in rec.nodes} if rec else {}
        if all(n in placed for n in wanted):  # decided before a crash: keep that decision
            return {n: placed[n] for n in wanted}
        from orchestrator.inventory import plan_request

        chosen, _ = plan_request(c.settings, {h: c.hosts[h].reachable for h in c.hosts},
                                 c.registry, req, nodes=wanted)
        layout = req.tier_layout()
        decision = {n: placed.get(n) or chosen.assignments[n] for n in wanted}
        for node, host in decision.items():
            c.registry.set_node(req.name, node, host, layout[node])
            c.registry.allocate_network(req.name, host)
        ctx.report(", ".join(f"{n}→{h}" for n, h in decision.items())
                   + f" ({chosen.strategy})")
        return decision

    @actions.action("node_serves")
    def node_serves(ctx: TaskContext) -> str:
        """The new replica answers the page itself (an app replica's WordPress, a web
        replica's nginx, through the database), before any request is sent its way; its
        first, cold answer happens here."""
        req, node = request(ctx), str(ctx.args["node"])
        rec = c.registry.get(req.name)
        where = next((n for n in rec.nodes if n.node == node), None) if rec else None
        if where is None or where.host not in c.hosts or not where.address:
            raise PermanentError(f"{node} has no known host or address")
        port = WEB_PORT if "web" in req.tier_layout()[node] else APP_PORT
        url = f"http://{where.address}:{port}{req.saas.expose.path_check}"
        host = c.hosts[where.host]

        def serves() -> bool:
            try:
                out = host.exec(node, "curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url,
                                timeout=30)
            except (TemporaryError, PermanentError, subprocess.TimeoutExpired):
                return False
            body, _, code = out.rpartition("\n")
            return code.strip() == "200" and "WordPress" in body

        wait_or_retry(serves, 120, f"{url} served by {node}")
        ctx.report(f"{url} → 200")
        return url

    @actions.action("repoint_upstreams")
    def repoint_upstreams(ctx: TaskContext) -> list[str]:
        req = request(ctx)
        rec = c.registry.get(req.name)
        assert rec is not None
        done = repoint_web(c, req, {n.node: n.address for n in rec.nodes})
        ctx.report("; ".join(done))
        return done

    @actions.action("route_url")
    def route_url(ctx: TaskContext) -> list[str]:
        """The URL's route to the web nodes of the new request (added ones in, retired
        ones out)."""
        found = publish(c, request(ctx))
        ctx.report("URL → " + ", ".join(found))
        return found

    @actions.action("retire_node")
    def retire_node(ctx: TaskContext) -> None:
        req, node = request(ctx), str(ctx.args["node"])
        rec = c.registry.get(req.name)
        where = next((n for n in rec.nodes if n.node == node), None) if rec else None
        if where is None:
            return  # retired before a crash
        assert rec is not None
        host = c.hosts.get(where.host)
        if host is None:
            raise PermanentError(f"{node} is on unknown host {where.host}")
        if "web" in where.tiers and where.address and node in host.instances(req.name):
            drain(c, host, node, where.address)  # out of the route already (`route_url`)
        node_agent(c.settings, req, rec, node).stop()
        if node in host.instances(req.name):
            host.delete(node)
        c.registry.remove_node(req.name, node)
        if not any(n.host == where.host for n in rec.nodes if n.node != node):
            for bridge in host.networks(req.name):
                host.delete_network(bridge)
            c.registry.release_network(req.name, where.host)
        ctx.report(f"{node} deleted from {where.host}")

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
