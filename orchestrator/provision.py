"""Provisioning and deletion of an OverCloud, as workflows of idempotent actions.

The provisioning graph (N nodes; `launch`, `docker` and `deploy` run per node in parallel):

    admit → place → launch:<node> … → docker:<node> … → deploy:<node> … (web nodes start
          as soon as the DB node has an address) → expose → verify → devlake → agents → ready
          (on failure: `failed`)

Decide, then act: `place` decides every node's host once and records it; the acting tasks
only carry that decision out, and each is safe to repeat after a crash (a node that exists
is only started, a device that is there is left alone, `compose up` converges).

Every OverCloud has networks of its own: on each host it uses, a bridge with a /27 from the
UnderCloud's OverCloud pool (`launch` creates it before the node joins it; delete removes
it after the nodes). Nodes of one OverCloud on two hosts reach each other through the hosts'
routing; other OverClouds' nodes sit on other bridges and subnets.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from daemons.process import Daemon
from orchestrator.hosts import HostDriver, NodeSpec
from orchestrator.images import NODE_ALIAS
from orchestrator.registry import OverCloudRecord, Registry
from orchestrator.request import OverCloudRequest
from orchestrator.stack.compose import COMPOSE_FILE, PROJECT, Role, container, env_file
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud import influxauth
from overcloud.bus import EventBus
from overcloud.errors import PermanentError, TemporaryError
from overcloud.events import OverCloudDeleted, OverCloudFailed, OverCloudReady, derived_id
from overcloud.settings import Settings

STACK_DIR = "/srv/stack"
AGENT_START_TIMEOUT = 180
"""Seconds a node agent gets to show its banner: a Python start on a busy 2-core host has
taken ~30 s, and over 60 s with the machine's load average above 100 (a move then failed
only because its agent was slow to start)."""


@dataclass
class Context:
    """Everything the actions use, passed in (no globals): settings, hosts, store, bus."""

    settings: Settings
    hosts: dict[str, HostDriver]
    registry: Registry
    bus: EventBus
    database_admin: Any  # devlake.sinks.MetricSink-like: ensure_database / drop_database
    pool: Any = None
    """orchestrator.pool.Pool: ready nodes to claim (None: every node is launched cold)."""


def provision_spec(request: OverCloudRequest) -> WorkflowSpec:
    nodes = request.node_names()
    layout = request.tier_layout()
    db_node = request.nodes_of("db")[0]
    web_nodes = [n for n in nodes if "web" in layout[n] or "app" in layout[n]]
    tasks = [
        TaskSpec("place", "place", {}, after=(), retries=2, timeout=60),
    ]
    for n in nodes:
        tasks.append(TaskSpec(f"launch:{n}", "launch_node", {"node": n}, after=("place",),
                              retries=3, timeout=240))
        tasks.append(TaskSpec(f"docker:{n}", "wait_docker", {"node": n}, after=(f"launch:{n}",),
                              retries=2, timeout=180))
    tasks.append(TaskSpec(f"deploy:{db_node}", "deploy_stack", {"node": db_node},
                          after=(f"docker:{db_node}",), retries=2, timeout=300))
    for n in web_nodes:
        if n != db_node:
            # needs only the DB node's address (known after its launch), not a healthy DB:
            # WordPress connects per request, and `verify` polls until the page answers; a
            # web node's nginx also needs the app replicas' addresses
            launched = dict.fromkeys([db_node, *(request.nodes_of("app")
                                                 if "web" in layout[n] else [])])
            tasks.append(TaskSpec(f"deploy:{n}", "deploy_stack", {"node": n},
                                  after=(f"docker:{n}", *(f"launch:{m}" for m in launched
                                                          if m != n)),
                                  retries=2, timeout=300))
    tasks += [
        TaskSpec("expose", "expose", {},
                 after=tuple(f"deploy:{n}" for n in dict.fromkeys([db_node, *web_nodes])),
                 retries=2, timeout=60),
        TaskSpec("verify", "verify", {}, after=("expose",), retries=30, backoff=1.0,
                 timeout=30),
        TaskSpec("devlake", "devlake", {}, after=("verify",), retries=5, timeout=60),
        # longer than the agents' own start timeouts, one after the other: an attempt that
        # timed out first went on starting agents while the next attempt started them again
        TaskSpec("agents", "agents", {}, after=("devlake",), retries=2,
                 timeout=AGENT_START_TIMEOUT * len(nodes) + 30),
        TaskSpec("ready", "ready", {}, after=("agents",), retries=5, timeout=30),
    ]
    return WorkflowSpec(kind="provision", subject=request.name, tasks=tuple(tasks),
                        on_failure="failed")


def delete_spec(name: str, keep_data: bool) -> WorkflowSpec:
    tasks = (
        TaskSpec("agents", "stop_agents", {}, after=(), retries=2, timeout=60),
        TaskSpec("nodes", "delete_nodes", {}, after=("agents",), retries=3, timeout=300),
        TaskSpec("networks", "delete_networks", {}, after=("nodes",), retries=3, timeout=120),
        TaskSpec("devlake", "drop_devlake", {"keep_data": keep_data}, after=("networks",),
                 retries=5, timeout=60),
        TaskSpec("forget", "forget", {}, after=("devlake",), retries=3, timeout=30),
    )
    return WorkflowSpec(kind="delete", subject=name, tasks=tasks)


def _request(ctx: TaskContext) -> OverCloudRequest:
    return OverCloudRequest.from_spec(ctx.input["spec"])


def register_actions(actions: ActionRegistry, c: Context) -> None:
    """Bind the actions to one `Context` (the orchestrator's), by name."""

    def host_of(name: str, node: str) -> HostDriver:
        rec = c.registry.get(name)
        placed = {n.node: n.host for n in rec.nodes} if rec else {}
        if node not in placed:
            raise PermanentError(f"node {node} has no host: placement did not run")
        try:
            return c.hosts[placed[node]]
        except KeyError:
            raise PermanentError(f"{node} is placed on unknown host {placed[node]}") from None

    @actions.action("place")
    def place(ctx: TaskContext) -> dict[str, str]:
        req = _request(ctx)
        rec = c.registry.get(req.name)
        if rec is not None and rec.nodes:  # decided before a crash: keep that decision
            decided = {n.node: n.host for n in rec.nodes}
            claim_pooled(req, decided)
            return decided
        # decide (orchestrator/placement.py: pure) on a snapshot of the hosts: inventory
        # (sites, drain flags, capacity), reachability, our allocations, DevLake load
        from orchestrator.inventory import plan_request

        # (no valid plan: PlacementError, or TemporaryError while a host is unreachable)
        # live load only where the plan reads it (spread and pack rank by what is allocated):
        # one DevLake query less on the way to the page
        needs_load = (req.placement.strategy in ("least-loaded", "network-aware")
                      or req.placement.network_heavy)
        chosen, snap = plan_request(c.settings, {h: c.hosts[h].reachable for h in c.hosts},
                                    c.registry, req, load=None if needs_load else ({}, ""))
        layout = req.tier_layout()
        decision = {n: chosen.assignments[n] for n in req.node_names()}
        for node, host in decision.items():
            c.registry.set_node(req.name, node, host, layout[node])
        for host in sorted(set(decision.values())):
            c.registry.allocate_network(req.name, host)
        c.registry.allocate_port(req.name, _wanted_port(req))
        pooled = claim_pooled(req, decision)
        scores = ", ".join(f"{h} {v:.1f}" for h, v in sorted(chosen.scores.items()))
        ctx.report(", ".join(f"{n}→{h}" + (" (pool)" if n in pooled else "")
                             for n, h in decision.items())
                   + f" ({chosen.strategy}; scores {scores})"
                   + (f"; no load data: {snap.load_error}" if snap.load_error else ""))
        return decision

    def claim_pooled(req: OverCloudRequest, decision: dict[str, str]) -> list[str]:
        """Take a ready pooled node for each node of `decision` whose host has one (unless
        the request says `pool: false`); the nodes that got one. Recorded at once: a retry
        claims nothing twice (`Pool.claim` is idempotent too)."""
        if c.pool is None or not req.pool:
            return []
        rec = c.registry.get(req.name)
        have = {n.node: n.instance for n in rec.nodes if n.instance} if rec else {}
        layout = req.tier_layout()
        claimed = have | c.pool.claim_all(req.name, {n: h for n, h in decision.items()
                                                     if n not in have},
                                          req.cluster.cpu, req.cluster.memory_bytes)
        for node, inst in claimed.items():
            c.registry.set_node(req.name, node, decision[node], layout[node], instance=inst)
        return list(claimed)

    @actions.action("launch_node")
    def launch_node(ctx: TaskContext) -> dict[str, str]:
        req = _request(ctx)
        node = ctx.args["node"]
        host = host_of(req.name, node)
        bridge, gateway = c.settings.overcloud_network(
            c.registry.allocate_network(req.name, host.name))
        host.ensure_network(bridge, gateway, req.name)
        pooled = _instance(c, req.name, node)
        seen = ""
        if pooled:  # claimed in `place`: it joins the OverCloud's bridge and gets its size
            from orchestrator.pool import PoolHost

            assert isinstance(host, PoolHost)  # only a pool-capable host has pooled nodes
            seen = host.attach(node, bridge)  # (its size came with the claim: `adopt`)
        else:
            if c.pool is not None:  # the pool never keeps a cold node off its host
                c.pool.make_room(host.name, req.cluster.cpu, req.cluster.memory_bytes)
            host.launch(NodeSpec(node, req.name, node, NODE_ALIAS, req.cluster.cpu,
                                 req.cluster.memory_bytes, network=bridge))
        address = seen or wait_or_retry(lambda: host.address(node), 60, f"an address for {node}")
        c.registry.set_node(req.name, node, host.name, req.tier_layout()[node], address)
        ctx.report(f"{node} on {host.name} at {address}"
                   + (f" (pooled {pooled})" if pooled else ""))
        return {"host": host.name, "address": address, "instance": pooled}

    @actions.action("wait_docker")
    def wait_docker(ctx: TaskContext) -> None:
        req = _request(ctx)
        node = ctx.args["node"]
        host = host_of(req.name, node)
        if _instance(c, req.name, node):
            return  # a pooled node: its stack has been up since it became ready
        wait_or_retry(lambda: docker_ok(host, node), 120, f"Docker in {node}")

    @actions.action("deploy_stack")
    def deploy_stack(ctx: TaskContext) -> dict[str, str]:
        req = _request(ctx)
        node = ctx.args["node"]
        tiers = req.tier_layout()[node]
        rec = c.registry.get(req.name)
        assert rec is not None
        addresses = {n.node: n.address for n in rec.nodes}
        pooled = _instance(c, req.name, node)
        env = stack_env(c, req, node, addresses, pooled=bool(pooled))
        if pooled:
            from orchestrator.pool import PoolHost, adopt_stack

            role, db_host, upstream = node_role(req, node, addresses)
            host = host_of(req.name, node)
            assert isinstance(host, PoolHost)  # only a pool-capable host has pooled nodes
            adopt_stack(host, node, role, env, c.registry.secrets(req.name), db_host, upstream)
            ctx.report(f"{node}: {', '.join(tiers)} (the pooled stack, its secrets rotated)")
        else:
            deploy(host_of(req.name, node), node, env)
            ctx.report(f"{node}: {', '.join(tiers)} up")
        return {"tiers": ",".join(tiers)}

    @actions.action("expose")
    def expose(ctx: TaskContext) -> dict[str, str]:
        """The URL: the edge's route from the OverCloud's port to every web node."""
        from orchestrator.front import publish

        req = _request(ctx)
        rec = c.registry.get(req.name)
        assert rec is not None and rec.port is not None
        found = publish(c, req)
        url = f"http://127.0.0.1:{rec.port}/"
        c.registry.set_state(req.name, "provisioning", url=url)
        ctx.report(f"{url} → {', '.join(found)}")
        return {"url": url}

    @actions.action("verify")
    def verify(ctx: TaskContext) -> dict[str, Any]:
        req = _request(ctx)
        rec = c.registry.get(req.name)
        assert rec is not None
        url = rec.url.rstrip("/") + req.saas.expose.path_check
        try:
            r = httpx.get(url, timeout=10, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{url}: {exc}") from None
        if r.status_code != 200 or "WordPress" not in r.text or "install" not in r.text:
            raise TemporaryError(f"{url} answered {r.status_code}, not the WordPress install page")
        ctx.report(f"{url} → 200, WordPress installation page")
        return {"url": url, "status": r.status_code}

    @actions.action("devlake")
    def devlake(ctx: TaskContext) -> dict[str, str]:
        req = _request(ctx)
        db = f"{c.settings.influx.database_prefix}{req.name}"
        c.database_admin.ensure_database(db, req.devlake.retention)
        rec = c.registry.get(req.name)
        assert rec is not None
        # the developer's own key to this DevLake only (InfluxDB enforces it)
        reader = influxauth.reader(c.settings.influx.credentials, req.name, rec.request_id)
        if reader is not None:
            c.database_admin.ensure_reader(db, reader)
        return {"database": db, "reader": reader.username if reader else ""}

    @actions.action("agents")
    def agents(ctx: TaskContext) -> list[str]:
        req = _request(ctx)
        rec = c.registry.get(req.name)
        assert rec is not None
        for n in rec.nodes:
            node_agent(c.settings, req, rec, n.node).start()
        return [n.node for n in rec.nodes]

    @actions.action("ready")
    def ready(ctx: TaskContext) -> dict[str, str]:
        req = _request(ctx)
        rec = c.registry.get(req.name)
        assert rec is not None
        c.registry.set_state(req.name, "ready", error="")
        c.bus.publish(OverCloudReady(id=derived_id(ctx.workflow_id, "ready"), name=req.name,
                                     url=rec.url,
                                     nodes={n.node: n.host for n in rec.nodes}), key=req.name)
        return {"url": rec.url}

    @actions.action("failed")
    def failed(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        task = str(ctx.args.get("failed_task") or "?")
        reason = str(ctx.args.get("error") or "unknown").removeprefix(f"{task}: ")
        c.registry.set_state(name, "failed", error=f"{task}: {reason}")
        c.bus.publish(OverCloudFailed(id=derived_id(ctx.workflow_id, "failed"), name=name,
                                      task=task, reason=reason), key=name)

    # --- delete ---------------------------------------------------------------------------

    @actions.action("stop_agents")
    def stop_agents(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        for pid_file in (c.settings.state_dir / "run").glob(f"agent-{name}-*.pid"):
            node = pid_file.stem.removeprefix(f"agent-{name}-")
            if not _is_node_of(name, node):  # another OverCloud's: "blog" vs "blog-x"'s agents
                continue
            rec = c.registry.get(name)
            host = next((n.host for n in rec.nodes if n.node == node), "") if rec else ""
            agent_daemon(c.settings, name, node, host).stop()
            pid_file.unlink(missing_ok=True)

    @actions.action("delete_nodes")
    def delete_nodes(ctx: TaskContext) -> None:
        from orchestrator.front import unpublish

        name = ctx.input["name"]
        unpublish(c, name)  # the URL closes first: no request reaches a node being deleted
        for host in c.hosts.values():
            if not host.reachable():
                raise TemporaryError(f"host {host.name} unreachable: cannot check for nodes")
            for inst in host.instances(name):
                host.delete(inst)

    @actions.action("delete_networks")
    def delete_networks(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        for host in c.hosts.values():  # what the hosts say is ours, not only our records
            for bridge in host.networks(name):
                host.delete_network(bridge)

    @actions.action("drop_devlake")
    def drop_devlake(ctx: TaskContext) -> None:
        if not ctx.args.get("keep_data"):
            name = ctx.input["name"]
            c.database_admin.drop_database(f"{c.settings.influx.database_prefix}{name}")
            c.database_admin.drop_reader(influxauth.reader_name(name))

    @actions.action("forget")
    def forget(ctx: TaskContext) -> None:
        name = ctx.input["name"]
        c.registry.forget(name)
        c.bus.publish(OverCloudDeleted(id=derived_id(ctx.workflow_id, "deleted"), name=name),
                      key=name)


APP_PORT = 8080
"""Where an app replica publishes WordPress on its node's address, for the web nodes' nginx."""


def upstreams(req: OverCloudRequest, node: str, addresses: dict[str, str]) -> str:
    """The app replicas web node `node`'s nginx spreads requests over, as `APP_UPSTREAM`:
    its own WordPress as `wordpress:80`, every other app node at `<address>:8080`."""
    out = []
    for app in req.nodes_of("app"):
        if app == node:
            out.append("wordpress:80")
        elif addresses.get(app):
            out.append(f"{addresses[app]}:{APP_PORT}")
        else:
            raise TemporaryError(f"{app} has no address yet: {node}'s nginx cannot reach it")
    return ",".join(out)


def node_role(req: OverCloudRequest, node: str, addresses: dict[str, str]
              ) -> tuple[Role, str, str]:
    """What `node` runs (from the tier layout), the DB node's address for app and web nodes,
    and the app replicas for a web node's nginx ("" where the role has none)."""
    tiers = req.tier_layout()[node]
    db_node = req.nodes_of("db")[0]
    if node == db_node:
        return (Role.ALL if len(tiers) == 3 else Role.DB), "", ""
    if "web" not in tiers:  # an app replica only: WordPress, published for the web nodes
        return Role.APP, addresses[db_node], ""
    return Role.WEB, addresses[db_node], upstreams(req, node, addresses)


def stack_env(c: Context, req: OverCloudRequest, node: str, addresses: dict[str, str], *,
              pooled: bool = False) -> str:
    """The Compose .env of one node: its role from the tier layout, the DB node's address for
    app and web nodes, the app replicas for a web node's nginx, the generated credentials.
    `pooled`: the node came from the warm pool, whose stack publishes on every address of
    the node (orchestrator/pool.py): the .env says so, so a later `up` changes nothing."""
    role, db_host, upstream = node_role(req, node, addresses)
    creds = c.registry.secrets(req.name)
    if role is Role.ALL:
        return env_file(PROJECT, creds, Role.ALL, http_port=80,
                        **({"db_bind": "0.0.0.0", "app_bind": "0.0.0.0"} if pooled else {}))
    own = "0.0.0.0" if pooled else addresses[node]
    if role is Role.DB:
        return env_file(PROJECT, creds, Role.DB, db_bind=own)
    if role is Role.APP:
        return env_file(PROJECT, creds, Role.APP, db_host=db_host, app_bind=own)
    return env_file(PROJECT, creds, Role.WEB, db_host=db_host, app_bind=own,
                    app_upstream=upstream)


def _instance(c: Context, name: str, node: str) -> str:
    """`node`'s pooled container, "" for a node in a container of its own name."""
    rec = c.registry.get(name)
    return next((n.instance for n in rec.nodes if n.node == node), "") if rec else ""


def repoint_web(c: Context, req: OverCloudRequest, addresses: dict[str, str],
                skip: str = "") -> list[str]:
    """Point every web node's nginx (but `skip`: a node being replaced) at `req`'s app
    replicas at `addresses` (`repoint`)."""
    rec = c.registry.get(req.name)
    placed = {n.node: n.host for n in rec.nodes} if rec else {}
    done = []
    for web in req.nodes_of("web"):
        if web == skip:
            continue
        if web not in placed or placed[web] not in c.hosts:
            raise PermanentError(f"web node {web} has no known host")
        done.append(f"{web}: " + repoint(c.hosts[placed[web]], web,
                                         upstreams(req, web, addresses)))
    return done


def repoint(host: HostDriver, node: str, upstream: str) -> str:
    """Point `node`'s nginx at `upstream` without a dropped request: a graceful reload that
    returns once the old workers have finished (drained), and the .env updated so a restart
    of the stack keeps the list. Returns what nginx reported."""
    set_env(host, node, "APP_UPSTREAM", upstream)
    return reload_nginx(host, node, upstream)


def reload_nginx(host: HostDriver, node: str, upstream: str) -> str:
    """`node`'s nginx proxies for `upstream` from now on (graceful; the .env is the
    caller's business); what nginx reported."""
    try:
        return host.exec(node, "docker", "exec", container("nginx"), "oc-nginx", "reload",
                         upstream, timeout=90).strip()
    except TemporaryError as exc:
        raise TemporaryError(f"{node}: nginx did not reload: {exc}") from None


def set_env(host: HostDriver, node: str, key: str, value: str) -> None:
    """Set one variable in `node`'s stack `.env` (what a re-created container starts with),
    keeping the others. `value` must be one line: it is our own (an address, an upstream
    list), never outside text."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"{key}: a .env value is one line")
    env = host.exec(node, "cat", f"{STACK_DIR}/.env", timeout=30)
    lines = [ln for ln in env.splitlines() if not ln.startswith(f"{key}=")]
    with tempfile.TemporaryDirectory() as tmp:
        env_path = Path(tmp) / "stack.env"
        env_path.write_text("".join(f"{ln}\n" for ln in lines) + f"{key}={value}\n")
        env_path.chmod(0o600)
        host.push(node, env_path, f"{STACK_DIR}/.env", mode="0600")


def push_stack(host: HostDriver, node: str, env: str) -> None:
    """The compose file and `env` into `node` (needs only its filesystem, not Docker)."""
    with tempfile.TemporaryDirectory() as tmp:
        env_path = Path(tmp) / "stack.env"
        env_path.write_text(env)
        env_path.chmod(0o600)
        host.push(node, COMPOSE_FILE, f"{STACK_DIR}/compose.yml")
        host.push(node, env_path, f"{STACK_DIR}/.env", mode="0600")


def deploy(host: HostDriver, node: str, env: str, *, start: bool = True,
           wait: bool = True, push: bool = True) -> None:
    """Push the compose file and `env` (`push=False`: the caller did, `push_stack`), then
    converge (`up --wait`; `wait=False`: `up -d`, the caller checks what it needs);
    `start=False` only creates the containers and volumes (a migration target waiting for
    its data)."""
    if push:
        push_stack(host, node, env)
    up = (("up", "-d", "--wait", "--wait-timeout", "240") if start and wait
          else ("up", "-d") if start else ("up", "--no-start"))
    host.exec(node, "docker", "compose", "--project-directory", STACK_DIR, *up, timeout=280)


def node_agent(settings: Settings, req: OverCloudRequest, rec: OverCloudRecord,
               node: str) -> Daemon:
    """The agent of `node` as the OverCloud is now (its host, the tiers of every node; the
    node serving the URL also probes it: one probe per OverCloud)."""
    layout = req.tier_layout()
    front = next((n for n in req.node_names() if "web" in layout[n]), req.node_names()[0])
    probe = rec.url.rstrip("/") + req.saas.expose.path_check if rec.url else ""
    host = next(n.host for n in rec.nodes if n.node == node)
    inst = next((n.container for n in rec.nodes if n.node == node), node)
    return agent_daemon(settings, req.name, node, host, instance=inst,
                        tiers={n.node: "+".join(n.tiers) for n in rec.nodes},
                        url=probe if node == front else "",
                        expect="WordPress" if req.saas.stack == "wordpress" else "")


def agent_daemon(settings: Settings, overcloud: str, node: str, host: str, *,
                 instance: str = "", tiers: dict[str, str] | None = None, url: str = "",
                 expect: str = "") -> Daemon:
    """The agent of one node, seen from its UnderCloud host: resources (LXD API), flows
    (interfaces; conntrack per peer node, `tiers` naming each node's tiers) and services (its
    stack containers; and the HTTP probe of `url` when this node serves the OverCloud's URL).
    Stopping needs only the name: the other arguments matter when it starts."""
    from daemons.cli import cli_daemon

    args = ["agent", "run", "--layer", "resource,flow,service", "--overcloud", overcloud,
            "--node", node, "--instance", instance or node, "--lxd-host", host]
    if tiers:
        args += ["--tiers", ",".join(f"{n}={t}" for n, t in sorted(tiers.items()))]
    if url:
        args += ["--url", url]
    if expect:
        args += ["--expect", expect]
    d = cli_daemon(settings, f"agent-{overcloud}-{node}", args, f"{node}@{host}", "agent:")
    d.start_timeout = AGENT_START_TIMEOUT
    return d


def _is_node_of(overcloud: str, node: str) -> bool:
    """`node` is one of `overcloud`'s node names (`<name>-n<i>`, as `node_names` makes them)."""
    rest = node.removeprefix(f"{overcloud}-n")
    return rest != node and rest.isascii() and rest.isdigit()


def _wanted_port(req: OverCloudRequest) -> int | None:
    port = req.saas.expose.port
    return None if port == "auto" else int(port)


def docker_ok(host: HostDriver, node: str) -> bool:
    """Docker answers in `node` (not yet: False, also when `docker info` is slower than 30 s,
    as it has been on a machine loaded far beyond its cores; the caller's deadline decides)."""
    try:
        host.exec(node, "docker", "info", "--format", "{{.Driver}}", timeout=30)
    except (TemporaryError, subprocess.TimeoutExpired):
        return False
    return True


def wait_or_retry(predicate: Any, timeout: float, what: str) -> Any:
    """Wait for `predicate`; on timeout a TemporaryError, so the task is retried."""
    from overcloud.waiting import WaitTimeout, wait_until

    try:
        return wait_until(predicate, timeout=timeout, interval=0.2, what=what)
    except WaitTimeout as exc:
        raise TemporaryError(str(exc)) from None
