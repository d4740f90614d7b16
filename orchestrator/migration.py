"""Moving an OverCloud's machine containers between UnderCloud hosts, as workflows.

Three ways in, one way through: an overloaded host (`NodeOverloaded` → the fewest moves that
bring it back under the rule's recovery threshold), a move by hand (`overcloud migrate`), and
a drain (every node off one host). Each becomes a list of `Move`s — decided once, recorded in
the workflow's spec — and a workflow that carries them out one after the other.

How a node moves (its name, tags and DevLake series stay the same):

- **stateless node** (app/web tiers) — make before break: a fresh node from the node image
  on the target (the stack images are inside it, nothing to copy), the stack deployed and
  healthy and serving, the edge's route switched to its address (new connections go there
  at once), the old node drained (its nginx finishes what it holds; the edge counts no
  connection left to it), then the old node removed (orchestrator/front.py).
- **database node** — by GTID replication (orchestrator/dbmove.py): the new database is
  seeded from a consistent snapshot of the old one, follows it as a replica while the site
  serves, and takes over after a short write freeze (the old one read-only until the new
  one has every write); the WordPress nodes switch at their next request; then the old node
  goes. Reads never pause. When that cannot be done — the node runs the web tier too (its
  database listens on the node's loopback only), the old database has no binary log, a
  WordPress node's image predates the switch file, or the request says `db_method: copy` —
  it moves by **stop → copy → start**: the new node's stack is created (not started) first;
  then the old database stops, its Docker volume travels as a tar stream from node to node,
  the new database starts, and the web nodes are pointed at its address. The downtime is
  that window. Either way the URL is probed every 100 ms during the move.

Copying the whole machine container (`lxc copy`) would carry ~2 GB of node image we already
have on every host: measured 18-22 s per copy here, incremental `--refresh` too; a new node
is a btrfs snapshot of the local image (~2-4 s).

Every step is safe to repeat after a crash or a failed attempt (a node that exists is reused,
`compose up` converges, a volume copy overwrites). If a move fails, the OverCloud is left
serving from the old node (its database restarted if it had been stopped), marked `degraded`
with the reason; a partial node on an unreachable target is reused by the next attempt.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import httpx

from orchestrator import dbmove
from orchestrator.downtime import DowntimeProbe
from orchestrator.front import drain, publish
from orchestrator.hosts import HostDriver, MovableHost, NodeSpec, pipe
from orchestrator.images import NODE_ALIAS
from orchestrator.pool import PoolHost, adopt_stack
from orchestrator.provision import (
    APP_PORT,
    STACK_DIR,
    Context,
    deploy,
    docker_ok,
    node_agent,
    node_role,
    push_stack,
    repoint_web,
    stack_env,
    wait_or_retry,
)
from orchestrator.request import OverCloudRequest
from orchestrator.stack.compose import PROJECT
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud.errors import PermanentError, TemporaryError
from overcloud.events import MigrationFinished, MigrationRequested, MigrationStarted, derived_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeLoad:
    """One of our nodes on a host, with the CPU it is using now (cores)."""

    overcloud: str
    node: str
    host: str
    tiers: tuple[str, ...]
    cpu_cores: float

    @property
    def stateful(self) -> bool:
        return "db" in self.tiers


DbMethod = Literal["replicate", "copy"]


@dataclass(frozen=True)
class Move:
    overcloud: str
    node: str
    source: str
    target: str
    db_method: DbMethod = "replicate"
    """How a database node moves (module docstring); a stateless node ignores it."""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


Chooser = Callable[[NodeLoad, frozenset[str]], str | None]
"""Picks a target host for a node, given hosts to avoid; None when no host can take it."""


def relief_moves(loads: Sequence[NodeLoad], capacity_cpus: float, recover_below: float,
                 choose: Chooser, other_cores: float = 0.0) -> list[Move]:
    """The fewest moves that bring a host under `recover_below` percent of its capacity.

    The host's use is our nodes' CPU plus `other_cores` (what else runs there). The biggest
    users go first — that reaches any target with the fewest moves — and on equal use a
    stateless node goes before a database (its move costs no downtime). Nodes using next to
    nothing are never moved: moving them would not help. Pure: same inputs, same plan.
    """
    total = sum(n.cpu_cores for n in loads) + other_cores
    excess = total - recover_below / 100.0 * capacity_cpus
    moves: list[Move] = []
    avoid = frozenset(n.host for n in loads)
    for n in sorted(loads, key=lambda n: (-round(n.cpu_cores, 3), n.stateful, n.overcloud,
                                          n.node)):
        if excess <= 0 or n.cpu_cores < 0.01:
            break
        target = choose(n, avoid)
        if target is None:
            continue
        moves.append(Move(n.overcloud, n.node, n.host, target))
        excess -= n.cpu_cores
    return moves


def migrate_spec(moves: Sequence[Move], reason: str, subject: str) -> WorkflowSpec:
    """One task per move, one after the other (each move's downtime stays its own)."""
    if not moves:
        raise ValueError("a migration needs at least one move")
    tasks: list[TaskSpec] = []
    prev: tuple[str, ...] = ()
    for m in moves:
        name = f"move:{m.node}"
        tasks.append(TaskSpec(name, "move_node", {**m.to_dict(), "reason": reason}, after=prev,
                              retries=1, backoff=2.0, timeout=600))
        prev = (name,)
    return WorkflowSpec(kind="migrate", subject=subject, tasks=tuple(tasks),
                        on_failure="migration_failed")


def verdict_spec(subject: str, reason: str, *, refused: bool) -> WorkflowSpec:
    """A one-task workflow that records a decision not to move anything (refused, or nothing
    to do), so whoever follows the request's workflow sees why."""
    action = "refuse_migration" if refused else "nothing_to_move"
    return WorkflowSpec(kind="migrate", subject=subject, tasks=(
        TaskSpec("decide", action, {"reason": reason}, after=(), retries=0, timeout=10),))


def _db_volume(overcloud: str) -> str:
    """Where the database's volume lives in a node (the same for every OverCloud)."""
    return f"/var/lib/docker/volumes/{PROJECT}_db-data/_data"


def register_migration_actions(actions: ActionRegistry, c: Context) -> None:
    """The move and failure actions, bound to the orchestrator's `Context`."""

    def movable(name: str) -> MovableHost:
        try:
            return cast(MovableHost, c.hosts[name])
        except KeyError:
            raise PermanentError(f"unknown UnderCloud host {name!r}") from None

    @actions.action("move_node")
    def move_node(ctx: TaskContext) -> dict[str, Any]:
        a = ctx.args
        oc, node, source, target = a["overcloud"], a["node"], a["source"], a["target"]
        rec = c.registry.get(oc)
        if rec is None:
            raise PermanentError(f"OverCloud {oc} no longer exists")
        req = OverCloudRequest.from_spec(rec.spec)
        tiers = req.tier_layout()[node]
        src, tgt = movable(source), movable(target)
        url = rec.url.rstrip("/") + req.saas.expose.path_check if rec.url else ""
        # a retried or resumed move is the same move: the same ids, so every consumer (the
        # DevTower's journal and webhooks) sees one Started and one Finished
        c.bus.publish(MigrationStarted(id=derived_id(ctx.workflow_id, node, "started"),
                                       overcloud=oc, node=node, source=source,
                                       target=target, reason=a.get("reason", "")), key=oc)
        c.registry.set_state(oc, "migrating")
        t0, started = time.monotonic(), time.time()
        steps: list[tuple[str, float]] = [("started", started)]

        def mark(step: str) -> None:
            steps.append((step, time.time()))
            if ctx.cancelled.is_set():  # timed out: the retry owns the move from here on
                raise TemporaryError(f"{node}: attempt {ctx.attempt} stopped after {step}")

        how, made = "", False
        with DowntimeProbe(url) as probe:
            if node in src.instances(oc):
                how = _make_and_break(c, ctx, req, node, tiers, src, tgt, mark,
                                      a.get("db_method") or "replicate")
                made = True
            # (a move that got this far recorded the node and restarted its agent already)
            _settle(c, req, node, tiers, source, target, made=made)
            mark("settled")
        seconds = time.monotonic() - t0
        c.registry.set_state(oc, "ready", error="")
        c.bus.publish(MigrationFinished(id=derived_id(ctx.workflow_id, node, "finished"),
                                        overcloud=oc, node=node, source=source, target=target,
                                        downtime_s=round(probe.downtime, 3),
                                        reason=a.get("reason", "")), key=oc)
        ctx.report(f"{node}: {source} → {target}{' ' + how if how else ''} in {seconds:.1f}s, "
                   "downtime "
                   f"{probe.downtime:.2f}s {probe.kinds() or ''} (steps: "
                   + ", ".join(f"{step} {t - started:.1f}s" for step, t in steps[1:]) + ")")
        return {"seconds": round(seconds, 3), "downtime_s": round(probe.downtime, 3),
                "how": how,
                "started": round(started, 3),
                "steps": [(step, round(t - started, 3)) for step, t in steps],
                "outages": [{**o.to_dict(), "start": round(o.start - started, 3)}
                            for o in probe.outages]}

    @actions.action("refuse_migration")
    def refuse_migration(ctx: TaskContext) -> None:
        raise PermanentError(str(ctx.args["reason"]))

    @actions.action("nothing_to_move")
    def nothing_to_move(ctx: TaskContext) -> str:
        ctx.report(str(ctx.args["reason"]))
        return str(ctx.args["reason"])

    @actions.action("migration_failed")
    def migration_failed(ctx: TaskContext) -> None:
        task = str(ctx.args.get("failed_task") or "")
        reason = str(ctx.args.get("error") or "unknown").removeprefix(f"{task}: ")
        spec = next((t for t in ctx.input.get("moves", []) if f"move:{t['node']}" == task), None)
        if spec is None:
            return
        oc, node, source = spec["overcloud"], spec["node"], spec["source"]
        rec = c.registry.get(oc)
        if rec is not None:
            _roll_back(c, OverCloudRequest.from_spec(rec.spec), node, movable(source),
                       movable(spec["target"]))
            c.registry.set_state(oc, "degraded", error=f"migration of {node}: {reason}")
        c.bus.publish(MigrationFinished(id=derived_id(ctx.workflow_id, node, "finished"),
                                        overcloud=oc, node=node, source=source,
                                        target=spec["target"], downtime_s=0.0, ok=False,
                                        reason=reason), key=oc)


def _make_and_break(c: Context, ctx: TaskContext, req: OverCloudRequest, node: str,
                    tiers: list[str], src: MovableHost, tgt: MovableHost,
                    mark: Callable[[str], None], db_method: str = "replicate") -> str:
    """Make the node on the target, then retire the one on the source (module docstring).
    `mark` records when each step ended (the move's timeline, beside the probe's outages).
    Returns how a database moved ('' for a stateless node)."""
    bridge, gateway = c.settings.overcloud_network(c.registry.allocate_network(req.name, tgt.name))
    tgt.ensure_network(bridge, gateway, req.name)
    mark("network")
    how, why_not = "", ""
    if "db" in tiers:
        why_not = _why_not_replicate(c, req, node, tiers, src, db_method)
        how = f"by stop → copy → start ({why_not})" if why_not else "by replication"
    # a ready node of the target's warm pool when there is one (not for the copy path, which
    # makes its stack around the copied volume): no launch, no Docker start, no first start
    # of a database; its secrets become the OverCloud's before it takes any part
    pooled = ("" if c.pool is None or not req.pool or ("db" in tiers and why_not)
              else c.pool.claim(tgt.name, req.name, node, req.cluster.cpu,
                                req.cluster.memory_bytes))
    seen = ""
    if pooled:
        assert isinstance(tgt, PoolHost)  # only a pool-capable host has pooled nodes
        seen = tgt.attach(node, bridge)  # (its size came with the claim: `adopt`)
    else:
        tgt.launch(NodeSpec(node, req.name, node, NODE_ALIAS, req.cluster.cpu,
                            req.cluster.memory_bytes, network=bridge))
    mark("launched")
    address = seen or wait_or_retry(lambda: tgt.address(node), 60,
                                    f"an address for {node} on {tgt.name}")
    rec = c.registry.get(req.name)
    assert rec is not None
    addresses = {n.node: n.address for n in rec.nodes} | {node: address}
    env = stack_env(c, req, node, addresses, pooled=bool(pooled))
    if pooled:
        assert isinstance(tgt, PoolHost)
        role, db_host, upstream = node_role(req, node, addresses)
        adopt_stack(tgt, node, role, env, c.registry.secrets(req.name), db_host, upstream)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="push") as pool:
            pushed = pool.submit(push_stack, tgt, node, env)  # while Docker starts in the node
            wait_or_retry(lambda: docker_ok(tgt, node), 120, f"Docker in {node} on {tgt.name}")
            pushed.result()
    mark("docker")
    ctx.report(f"{node}: new node on {tgt.name} at {address}"
               + (f" (pooled {pooled})" if pooled else ""))
    if "db" in tiers and not why_not:
        _replicate(c, req, node, tiers, src, tgt, address, env, mark, pooled)
    elif "db" in tiers:
        ctx.report(f"{node}: {how}")

        def repoint() -> None:
            for host, other in _web_nodes(c, req, node):
                deploy(host, other, stack_env(c, req, other, addresses))

        copied = f"{STACK_DIR}/.copied-from-{src.name}"
        with ThreadPoolExecutor(1, thread_name_prefix="repoint") as pool:
            if "yes" not in tgt.exec(node, "sh", "-c", f"test -e {copied} && echo yes || true"):
                deploy(tgt, node, env, start=False, push=False)
                mark("created")
                # break: the database stops here; the volume moves; the new one starts. The
                # marker keeps a resumed move from copying the old data over newer writes.
                src.exec(node, "docker", "compose", "--project-directory", STACK_DIR, "stop",
                         timeout=120)
                mark("db stopped")
                # the page is down from here on: the web nodes are re-pointed (WordPress
                # re-created with the new address) while the volume travels, not after it
                repointed = pool.submit(repoint)
                _copy_volume(src, tgt, node, _db_volume(req.name))
                tgt.exec(node, "touch", copied)
                mark("volume copied")
            else:
                repointed = pool.submit(repoint)
            deploy(tgt, node, env, push=False)
            mark("db up")
            repointed.result()
            mark("web re-pointed")
    else:
        if not pooled:  # a pooled stack is up already (`adopt_stack`)
            deploy(tgt, node, env, push=False)
        mark("stack up")
    path = req.saas.expose.path_check
    if "web" in tiers:
        # make before break: the new node serves the real page (its nginx → WordPress → the
        # database) before any traffic is switched to it; its first, cold answers (PHP's
        # opcode cache empty, a first connection to the database) happen here, not in users'
        # faces
        wait_or_retry(lambda: _serves(tgt, node, path), 120,
                      f"{path} served by {node} on {tgt.name}")
        mark("serves")
    if "app" in tiers and any(w != node for w in req.nodes_of("web")):
        # an app replica other web nodes send requests to: the new one serves, their nginx
        # switch to it (the old workers drain), only then is the old one deleted
        if "web" not in tiers:
            base = f"http://{address}:{APP_PORT}"
            wait_or_retry(lambda: _serves(tgt, node, path, base=base), 120,
                          f"{path} served by {node}'s WordPress on {tgt.name}")
        repoint_web(c, req, addresses, skip=node)
        mark("web re-pointed")
    if "web" in tiers:
        # the edge sends new connections to the new node at once; the old one finishes the
        # requests it holds (and closes idle keep-alive connections) before it is deleted
        publish(c, req, moved={node: address})
        mark("url re-routed")
        old = next((n.address for n in rec.nodes if n.node == node), "")
        if old:
            drain(c, src, node, old)
            mark("old drained")
    _verify(rec.url.rstrip("/") + path)
    mark("verified")
    # the agent follows the node while the old one is deleted (each takes seconds); the
    # record follows once the old one is gone
    with ThreadPoolExecutor(1, thread_name_prefix="agent") as pool:
        agent = pool.submit(_restart_agent, c, req, node, tgt.name, pooled)
        src.delete(node)
        mark("old deleted")
        c.registry.set_node(req.name, node, tgt.name, tiers, address, instance=pooled)
        agent.result()
    mark("agent moved")
    return how


def _placed(c: Context, req: OverCloudRequest, node: str) -> tuple[str, str]:
    """Where the record says `node` is: (host, address)."""
    rec = c.registry.get(req.name)
    found = next((n for n in rec.nodes if n.node == node), None) if rec else None
    if found is None:
        raise PermanentError(f"{req.name} has no node {node!r} in its record")
    return found.host, found.address


def _why_not_replicate(c: Context, req: OverCloudRequest, node: str, tiers: list[str],
                       src: MovableHost, db_method: str) -> str:
    """Why database node `node` cannot move by replication ('' when it can)."""
    if _placed(c, req, node)[0] != src.name:
        return ""  # promoted by an earlier attempt: only replication's last steps are left
    if db_method == "copy":
        return "asked for"
    if tiers != ["db"]:
        return "the node runs the web tier too: its database listens on the node only"
    if not dbmove.binlog_on(src, node):
        return "the old database has no binary log (made before it was switched on)"
    stale = [other for host, other in _web_nodes(c, req, node)
             if not dbmove.reads_db_host_file(host, other)]
    if stale:
        return f"WordPress on {', '.join(stale)} predates the database switch file"
    return ""


def _replicate(c: Context, req: OverCloudRequest, node: str, tiers: list[str],
               src: MovableHost, tgt: MovableHost, address: str, env: str,
               mark: Callable[[str], None], pooled: str = "") -> None:
    """Database node `node` to `tgt` by GTID replication (orchestrator/dbmove.py).
    `pooled`: the target is that pooled container, its database running already."""
    host, old = _placed(c, req, node)
    if host == src.name:  # not promoted yet: any earlier attempt's work is redone
        password = secrets.token_urlsafe(24)
        with ThreadPoolExecutor(1, thread_name_prefix="grant") as pool:
            granted = pool.submit(dbmove.grant, src, node, address, password)
            # an empty database with the OverCloud's own secrets; answering is all it takes
            # (Compose's --wait would add a health-check interval)
            if not pooled:
                deploy(tgt, node, env, wait=False, push=False)
            wait_or_retry(lambda: dbmove.answers(tgt, node), 120,
                          f"the new database in {node} on {tgt.name}")
            granted.result()
        mark("created")
        dbmove.seed(src, tgt, node)
        mark("seeded")
        dbmove.start_replica(tgt, node, old, password)
        dbmove.wait_caught_up(src, tgt, node)
        mark("caught up")
        dbmove.promote(src, tgt, node)
        # from here on only the new database has every write: the record follows it at
        # once, so neither a retry nor a roll-back ever returns to the old one
        c.registry.set_node(req.name, node, tgt.name, tiers, address, instance=pooled)
        mark("promoted")
    dbmove.point_all(_web_nodes(c, req, node), address)
    mark("web re-pointed")
    try:
        dbmove.drain(src, node, c.registry.secrets(req.name).db_user)
    except TemporaryError as exc:  # (an old database that does not answer holds no one)
        log.warning("draining %s on %s: %s", node, src.name, exc)
    mark("old db drained")  # read-only, and deleted with its node


def _web_nodes(c: Context, req: OverCloudRequest, db: str) -> list[tuple[HostDriver, str]]:
    """The nodes whose WordPress talks to the database node `db`, each with its host."""
    rec = c.registry.get(req.name)
    assert rec is not None
    placed = {n.node: n.host for n in rec.nodes}
    return [(c.hosts[placed[other]], other) for other in req.node_names()
            if other != db and {"web", "app"} & set(req.tier_layout()[other])]


def _restart_agent(c: Context, req: OverCloudRequest, node: str, host: str = "",
                   instance: str = "") -> None:
    """`node`'s agent, stopped, then started for `host` (default: where the record says),
    where `node` is in container `instance` (a pooled one) or its own."""
    from dataclasses import replace

    rec = c.registry.get(req.name)
    assert rec is not None
    if host:
        rec = replace(rec, nodes=[replace(n, host=host, instance=instance) if n.node == node
                                  else n for n in rec.nodes])
    node_agent(c.settings, req, rec, node).stop()
    node_agent(c.settings, req, rec, node).start()


def _settle(c: Context, req: OverCloudRequest, node: str, tiers: list[str], source: str,
            target: str, made: bool = False) -> None:
    """Bookkeeping after the source node is gone: record, agent (unless `made`: the move
    that just made the node did both), the source's network."""
    if not made:
        tgt = c.hosts[target]
        if node not in tgt.instances(req.name):
            raise PermanentError(f"{node} is on neither {source} nor {target}")
        address = tgt.address(node) or ""
        inst = tgt.container(node) if isinstance(tgt, PoolHost) else node
        c.registry.set_node(req.name, node, target, tiers, address,
                            instance="" if inst == node else inst)
        _restart_agent(c, req, node)
    rec = c.registry.get(req.name)
    assert rec is not None
    if not any(n.host == source for n in rec.nodes):
        src = c.hosts[source]
        for bridge in src.networks(req.name):
            src.delete_network(bridge)
        c.registry.release_network(req.name, source)


COPY_SKIPS = ("./ibtmp1",)
"""InnoDB's temporary tablespace: MariaDB makes it anew at every start, so it never travels."""


def _copy_volume(src: MovableHost, tgt: MovableHost, node: str, path: str) -> None:
    """The database's files, node to node, as one gzip'd tar stream (replaces what the target
    has). Compressed because the stream is the site's downtime: through two `lxc exec`
    websockets it moved 125 MB of a fresh WordPress database (96 MB of it InnoDB's redo log,
    mostly zeros) in 16 s on a loaded machine. `pipefail`: a tar that fails mid-stream must
    fail the copy, not end a valid gzip stream of half the files."""
    quoted = shlex.quote(path)
    tgt.exec(node, "sh", "-c", f"mkdir -p {quoted} && find {quoted} -mindepth 1 -delete",
             timeout=120)
    skips = " ".join(f"--exclude={shlex.quote(p)}" for p in COPY_SKIPS)
    pipe(src, tgt, node,
         ("bash", "-o", "pipefail", "-c",
          f"tar --numeric-owner -C {quoted} {skips} -cf - . | gzip -1"),
         ("bash", "-o", "pipefail", "-c", f"gzip -dc | tar --numeric-owner -C {quoted} -xf -"),
         f"copying {path} from {src.name} to {tgt.name}")


def _serves(host: MovableHost, node: str, path: str, expect: str = "WordPress",
            base: str = "http://127.0.0.1") -> bool:
    """The page at `path`, asked inside `node` of its own nginx (or of `base`), answers 200
    with `expect`."""
    try:
        out = host.exec(node, "curl", "-sS", "-m", "10", "-w", "\n%{http_code}",
                        f"{base}{path}", timeout=30)
    except (TemporaryError, PermanentError, subprocess.TimeoutExpired):
        return False
    body, _, code = out.rpartition("\n")
    return code.strip() == "200" and expect in body


def _verify(url: str) -> None:
    def ok() -> bool:
        try:
            r = httpx.get(url, timeout=5, follow_redirects=True)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "WordPress" in r.text

    wait_or_retry(ok, 120, f"{url} to answer again")


def _roll_back(c: Context, req: OverCloudRequest, node: str, src: MovableHost,
               tgt: MovableHost) -> None:
    """After a failed move: the old node serves again if it still exists; a partial new node
    is removed when its host answers (else the next attempt reuses it). A database promoted
    on the target (the record moved with it) is never rolled back: it holds writes the old
    one lacks; the WordPress nodes go to it and the old node goes."""
    rec = c.registry.get(req.name)
    assert rec is not None
    placed = {n.node: (n.host, n.address) for n in rec.nodes}
    if "db" in req.tier_layout()[node] and placed.get(node, ("", ""))[0] == tgt.name:
        try:
            dbmove.point_all(_web_nodes(c, req, node), placed[node][1])
            if src.reachable() and node in src.instances(req.name):
                src.delete(node)
            _settle(c, req, node, req.tier_layout()[node], src.name, tgt.name)
        except (TemporaryError, PermanentError) as exc:
            log.warning("finishing %s's promotion on %s: %s", node, tgt.name, exc)
        return
    if not src.reachable() or node not in src.instances(req.name):
        return
    try:
        src.exec(node, "docker", "compose", "--project-directory", STACK_DIR, "up", "-d",
                 "--wait", "--wait-timeout", "120", timeout=150)
        if "db" in req.tier_layout()[node]:
            if req.tier_layout()[node] == ["db"] and dbmove.binlog_on(src, node):
                dbmove.thaw(src, node)  # writable again, no replication user left
            # the web nodes may have been pointed at the new database already: back to the
            # old one (the record keeps its address until a move succeeds)
            addresses = {n.node: n.address for n in rec.nodes}
            for host, other in _web_nodes(c, req, node):
                deploy(host, other, stack_env(c, req, other, addresses))
        if "app" in req.tier_layout()[node]:  # the other web nodes back to the old replica
            repoint_web(c, req, {n.node: n.address for n in rec.nodes}, skip=node)
        if "web" in req.tier_layout()[node] and rec.port:
            publish(c, req)  # the URL back to the old node (the record keeps its address)
        if tgt.reachable() and node in tgt.instances(req.name):
            tgt.delete(node)
    except (TemporaryError, PermanentError) as exc:
        log.warning("rolling back %s on %s: %s", node, src.name, exc)


# --- deciding: which nodes, which targets --------------------------------------------------


def node_loads(c: Context, host: str, seconds: float = 1.0) -> tuple[list[NodeLoad], float]:
    """Our nodes on `host` with their CPU use now (two readings of LXD's accounting
    `seconds` apart), and the CPU used by other containers there."""
    driver = cast(MovableHost, c.hosts[host])
    first, t0 = driver.cpu_usage_ns(), time.monotonic()
    time.sleep(seconds)
    second, dt = driver.cpu_usage_ns(), time.monotonic() - t0
    rates = {n: max(second[n] - first.get(n, second[n]), 0) / 1e9 / dt for n in second}
    owners = {n.node: (rec.name, tuple(n.tiers)) for rec in c.registry.all() for n in rec.nodes
              if n.host == host}
    loads = [NodeLoad(owners[n][0], n, host, owners[n][1], round(r, 4))
             for n, r in sorted(rates.items()) if n in owners]
    other = sum(r for n, r in rates.items() if n not in owners)
    return loads, other


def placement_chooser(c: Context, site: str = "",
                      fits: Callable[[NodeLoad, str], bool] | None = None) -> Chooser:
    """Targets as placement decides them (`placement.choose_target`, least-loaded): never a
    draining or unreachable host, never over capacity, tiers apart when the request asks;
    optionally only hosts of `site`, and only targets `fits` accepts (a relief must not
    overload the host it moves load to). Each choice books the node's demand on its target,
    so one plan never overfills a host."""
    from dataclasses import replace

    from orchestrator.inventory import Inventory, snapshot
    from orchestrator.placement import NodeDemand, PlacementError, choose_target

    inv = Inventory(c.settings)
    try:
        snap = snapshot(c.settings, inv, {h: c.hosts[h].reachable for h in c.hosts}, c.registry)
    finally:
        inv.close()
    views = {v.name: v for v in snap.views if v.name in c.hosts and (not site or v.site == site)}
    placed: dict[str, str] = {}

    def choose(n: NodeLoad, avoid: frozenset[str]) -> str | None:
        rec = c.registry.get(n.overcloud)
        if rec is None:
            return None
        req = OverCloudRequest.from_spec(rec.spec)
        demand = NodeDemand(n.node, n.tiers, float(req.cluster.cpu), req.cluster.memory_bytes)
        siblings = [(NodeDemand(o.node, tuple(o.tiers), demand.cpu, demand.memory),
                     placed.get(o.node, o.host)) for o in rec.nodes if o.node != n.node]
        rejected: set[str] = set()
        while True:
            try:
                target = choose_target(demand, list(views.values()), set(avoid) | rejected,
                                       separate_tiers=req.placement.separate_tiers,
                                       siblings=siblings)
            except PlacementError as exc:
                log.info("no target for %s: %s", n.node, exc)
                return None
            if fits is None or fits(n, target):
                break
            rejected.add(target)
        v = views[target]
        views[target] = replace(v, allocated_cpu=v.allocated_cpu + demand.cpu,
                                allocated_memory=v.allocated_memory + demand.memory)
        placed[n.node] = target
        return target

    return choose


def manual_moves(c: Context, event: MigrationRequested) -> list[Move]:
    """The moves a `MigrationRequested` asks for (decide only; nothing happens here).

    One node (`overcloud` + `node`), a whole OverCloud (`overcloud`), or everything on a
    host (`source`: a drain); to `target`, to hosts of `site`, or where placement says.
    Stateless nodes first: when the database moves last, the web nodes are where they end
    up and are re-pointed once. Raises `PermanentError` for what cannot be done.
    """
    if event.target and event.target not in c.hosts:
        raise PermanentError(f"unknown target host {event.target!r}")
    if event.target and not c.hosts[event.target].reachable():
        raise PermanentError(f"target host {event.target} is unreachable")
    records = [r for r in c.registry.all() if not event.overcloud or r.name == event.overcloud]
    if event.overcloud and not records:
        raise PermanentError(f"no OverCloud named {event.overcloud!r}")
    if event.overcloud and records[0].state == "paused":
        raise PermanentError(f"{event.overcloud} is paused: its nodes move when it resumes, "
                             "if their hosts have no room for them then")
    records = [r for r in records if r.state != "paused"]  # a drain leaves them for resume
    wanted = [
        NodeLoad(r.name, n.node, n.host, tuple(n.tiers), 0.0)
        for r in records for n in r.nodes
        if (not event.node or n.node == event.node) and (not event.source or n.host == event.source)
    ]
    if event.node and not wanted:
        raise PermanentError(f"{event.overcloud} has no node {event.node!r}")
    choose = None if event.target else placement_chooser(c, event.site)
    site_hosts = _site_hosts(c, event.site) if event.site else None
    if site_hosts is not None and not site_hosts:
        raise PermanentError(f"site {event.site!r} has no host we drive")
    moves = []
    for n in sorted(wanted, key=lambda n: (n.stateful, n.overcloud, n.node)):
        if n.host == event.target or (site_hosts is not None and n.host in site_hosts):
            continue  # already where it is asked to be
        target = event.target or (choose(n, frozenset({n.host, event.source} - {""}))
                                  if choose else None)
        if not target:
            raise PermanentError(f"no host can take {n.node} (capacity, drain or reachability)")
        moves.append(Move(n.overcloud, n.node, n.host, target, event.db_method))
    return moves


def _site_hosts(c: Context, site: str) -> set[str]:
    from orchestrator.inventory import Inventory

    inv = Inventory(c.settings)
    try:
        return {h.name for h in inv.hosts() if h.site == site and h.name in c.hosts}
    finally:
        inv.close()


def relief_fits(latest: dict[str, tuple[float, float]], limit_percent: float
                ) -> Callable[[NodeLoad, str], bool]:
    """A target fits when it stays under `limit_percent` (the rule's firing threshold) with
    the node's current CPU added to what it uses now, in the units the rule measured in
    (`latest`: host → (cores used, capacity) from `resource_undercloud`). A host we have no
    measurement of fits (placement's capacity rule still applies). Books what it accepts."""
    added: dict[str, float] = {}

    def fits(n: NodeLoad, host: str) -> bool:
        if host in latest:
            used, cap = latest[host]
            if (used + added.get(host, 0.0) + n.cpu_cores) / cap * 100 >= limit_percent:
                return False
        added[host] = added.get(host, 0.0) + n.cpu_cores
        return True

    return fits
