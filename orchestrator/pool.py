"""The warm pool: ready nodes on every UnderCloud host, claimed by `apply`.

A cold node costs a launch, Docker's start and the stack's first start (the database
initialising its files) before the page answers: ~9 s of the ~12 s of an apply here. A pooled
node has done all that already, with secrets of its own that nothing ever uses:

- **warming → ready.** Launched from the node image with *no network at all* and the lowest
  CPU priority, Docker up, the whole stack (`Role.ALL`) started and healthy with throw-away
  secrets made for this node; then marked `ready` (LXD config key `user.overcloud.pool`).
- **claim** (`place`; a move's target too, orchestrator/migration.py): the oldest ready node
  on the host placement chose becomes the node (`adopt`: the OverCloud's keys on the
  container, the request's limits, normal CPU priority, in one LXD change).
- **join** (`launch`): eth0 hot-plugged into the OverCloud's bridge, DHCP. Before that the
  node has no network: nothing reaches it unclaimed.
- **make it the OverCloud's** (`deploy`, `adopt_stack`): the OverCloud's own secrets (made
  for it by the registry on first need, never a pool's) replace the node's in place — the
  database's passwords by `ALTER USER`, the containers' by a secrets file they read before
  their environment (stack/compose.py `SECRETS_FILE`), the `.env` for any later
  re-creation — and the stack
  becomes the node's role: what the role does not run is removed, a web or app node's
  WordPress is pointed at the database node, a web node's nginx at the app replicas. Only
  then is the node exposed (`expose`): it never serves with any secret but its OverCloud's.

A pooled stack publishes MariaDB and the app port on every address of the node (0.0.0.0),
since its role and address are not known when it starts and Compose cannot re-publish a
running container. Those addresses are the node's own bridge, which only its OverCloud's
nodes and the host reach (orchestrator/isolation.py keeps other OverClouds out).

**Refill** (`Pool.run`, a thread of the orchestrator): one node at a time, only while no
workflow is running (placement and moves go first), and only while the host has room:
capacity − what OverCloud nodes hold − the pool's own nodes ≥ one pool node. A cold launch
that needs the room the pool holds evicts pool nodes first (`make_room`). Stale state is
cleaned: a `warming` node this process is not building (a crash mid-way) is deleted, and so
are ready nodes beyond the host's target or on a draining host.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from orchestrator import dbmove
from orchestrator.hosts import HostDriver, MovableHost
from orchestrator.images import NODE_ALIAS
from orchestrator.provision import STACK_DIR, docker_ok, push_stack, reload_nginx, wait_or_retry
from orchestrator.registry import Registry
from orchestrator.stack.compose import (
    PROJECT,
    SECRETS_FILE,
    WP_KEYS,
    Role,
    StackSecrets,
    container,
    env_file,
)
from overcloud.errors import PermanentError, TemporaryError
from overcloud.settings import Settings

log = logging.getLogger(__name__)

POOL_PREFIX = "ocpool-"
POOL_CPU = 1
POOL_MEMORY = 1 << 30
"""What a pooled node holds until claimed (LXD limits); the claim sets the request's."""
ROTATE_SH = 'IFS= read -r MYSQL_PWD; export MYSQL_PWD; exec mariadb -uroot -N -B'
"""Root's password on the first line of stdin, the statements after it (never in argv)."""
WRITE_SH = (f'umask 027; mkdir -p /etc/overcloud && chmod 0755 /etc/overcloud && '
            f'cat > {SECRETS_FILE}.new && '
            f'chgrp "$1" {SECRETS_FILE}.new && mv {SECRETS_FILE}.new {SECRETS_FILE}')


@runtime_checkable
class PoolHost(MovableHost, Protocol):
    """What the pool needs of a host on top of a `HostDriver` (the LXD driver has it)."""

    def pool_nodes(self) -> dict[str, tuple[str, str]]: ...
    def launch_pool(self, name: str, image: str, cpu: int, memory_bytes: int) -> None: ...
    def mark_pool(self, name: str, state: str) -> None: ...
    def adopt(self, container: str, overcloud: str, node: str, cpu: int,
              memory_bytes: int) -> None: ...
    def attach(self, node: str, bridge: str) -> str: ...
    def container(self, node: str) -> str: ...


# --- deciding (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPool:
    """One host as the refill sees it."""

    host: str
    target: int
    ready: tuple[str, ...] = ()
    """Ready pooled nodes, oldest first."""
    warming: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    """`warming` nodes nobody is building (left by a crash)."""
    free_cpu: float = 0.0
    """Capacity − OverCloud nodes' limits − the pool's own nodes."""
    free_memory: int = 0
    schedulable: bool = True
    """Reachable and not draining."""


@dataclass(frozen=True)
class Step:
    kind: str  # "launch" | "delete" | "none"
    host: str = ""
    node: str = ""
    why: str = ""


def decide(pools: list[HostPool], busy: bool) -> Step:
    """The pool's next step, one at a time: clean up first (stale builds, nodes beyond the
    target or on a host that takes no new nodes), then — only when no workflow runs — one
    launch on the host missing the most, if it has room for a pool node."""
    for p in pools:
        if p.stale:
            return Step("delete", p.host, p.stale[0], "left warming by an earlier run")
        if not p.schedulable and p.ready:
            return Step("delete", p.host, p.ready[-1], "its host takes no new nodes")
        if len(p.ready) + len(p.warming) > p.target and p.ready:
            return Step("delete", p.host, p.ready[-1], f"beyond the target of {p.target}")
    if not any(p.target for p in pools):
        return Step("none", why="no pool")
    if busy:
        return Step("none", why="a workflow is running")
    short = [p for p in pools if p.schedulable and len(p.ready) + len(p.warming) < p.target]
    roomy = [p for p in short if p.free_cpu >= POOL_CPU and p.free_memory >= POOL_MEMORY]
    if not roomy:
        return Step("none", why="full" if not short else "no room on the hosts short of nodes")
    p = max(roomy, key=lambda p: (p.target - len(p.ready) - len(p.warming), p.free_cpu))
    return Step("launch", p.host, why=f"{len(p.ready)} ready of {p.target}")


def evictions(pool: HostPool, cpu: float, memory: int) -> list[str]:
    """The ready pooled nodes to delete (newest first) so that a node of `cpu`/`memory` fits
    on the host without exceeding its capacity; none when it fits already or cannot."""
    out: list[str] = []
    free_cpu, free_mem = pool.free_cpu, pool.free_memory
    for name in reversed(pool.ready):
        if free_cpu >= cpu and free_mem >= memory:
            break
        out.append(name)
        free_cpu += POOL_CPU
        free_mem += POOL_MEMORY
    return out if free_cpu >= cpu and free_mem >= memory else []


# --- making a node ready, and making it an OverCloud's -----------------------------------------


def pool_env() -> str:
    """The `.env` of a pooled stack: every tier, throw-away secrets of its own, published on
    every address of the node (its role and address come at claim)."""
    return env_file(PROJECT, StackSecrets.generate(), Role.ALL, db_bind="0.0.0.0",
                    app_bind="0.0.0.0")


def prepare(host: PoolHost, name: str) -> None:
    """Docker up and the whole stack healthy in pooled `name`, WordPress's PHP compiled (one
    page rendered: the first PHP request of an Apache fills its opcode cache, ~1.5 s here,
    which a claimed node's first page would otherwise pay), then `ready`."""
    wait_or_retry(lambda: docker_ok(host, name), 180, f"Docker in {name}")
    push_stack(host, name, pool_env())
    host.exec(name, "docker", "compose", "--project-directory", str(STACK_DIR), "up", "-d",
              "--wait", "--wait-timeout", "240", timeout=280)
    host.exec(name, "docker", "exec", container("wordpress"), "curl", "-fsS", "-o", "/dev/null",
              "http://127.0.0.1/wp-admin/install.php", timeout=120)
    host.mark_pool(name, "ready")


def _secret(value: str) -> str:
    """`value` if it looks like our generated secrets (`secrets.token_urlsafe`), checked
    before it is written into a file a shell or PHP reads."""
    if not dbmove.SECRET.match(value):
        raise TemporaryError("a generated secret has an unexpected form; not written")
    return value


def _write_secrets(host: MovableHost, node: str, service: str, group: str,
                   values: Mapping[str, str]) -> None:
    """`values` as `SECRETS_FILE` in `service`'s container of `node` (on stdin, by rename)."""
    body = "".join(f"{k}={_secret(v)}\n" for k, v in values.items())
    dbmove.feed(host, node, service, WRITE_SH, body, group,
                what=f"secrets not written in {service}")


def rotate_database(host: MovableHost, node: str, new: StackSecrets) -> None:
    """The database's passwords become `new`'s (`ALTER USER`, not binary-logged), as root
    with the password the container has (its environment: the pool's) — or with the new
    one, when an earlier attempt changed them but did not get to the file (a retry is
    safe) — then its secrets file, which its next start and every root command read."""
    try:
        statements = dbmove.password_sql(new.db_user, new.db_password, new.db_root_password)
    except PermanentError as exc:
        raise TemporaryError(f"{node}: {exc}; not written") from None
    try:
        dbmove.sql(host, node, statements)
    except TemporaryError as first:
        try:
            dbmove.feed(host, node, "db", ROTATE_SH, f"{new.db_root_password}\n{statements}",
                        what="as root with the new password")
        except TemporaryError as second:
            raise TemporaryError(f"{node}: the database's passwords were not changed: "
                                 f"{first}; {second}") from None
    _write_secrets(host, node, "db", "root", {"DB_PASSWORD": new.db_password,
                                              "DB_ROOT_PASSWORD": new.db_root_password})


def wordpress_secrets(new: StackSecrets) -> dict[str, str]:
    return {"DB_PASSWORD": new.db_password, **{k: new.wp_keys[k] for k in WP_KEYS}}


def adopt_stack(host: MovableHost, node: str, role: Role, env: str, new: StackSecrets,
                db_host: str = "", upstream: str = "") -> None:
    """Make the pooled stack of claimed `node` its OverCloud's, as `role` (module docstring).
    `env`: the node's `.env` as a cold deploy writes it; `db_host`: the database node's
    address (web, app); `upstream`: the app replicas for a web node's nginx. Safe to repeat.

    The steps touch different containers and files, so they run side by side: each is one
    or two `lxc exec`, and one after the other they took 3.4-4.7 s on a loaded machine."""
    drop = {Role.ALL: [], Role.DB: ["wordpress", "nginx"], Role.WEB: ["db"],
            Role.APP: ["db", "nginx"]}[role]

    def dropped() -> None:
        if drop:
            host.exec(node, "docker", "rm", "-f", *(container(s) for s in drop), timeout=60)
        if role not in (Role.ALL, Role.DB):
            host.exec(node, "docker", "volume", "rm", "-f", f"{PROJECT}_db-data", timeout=60)

    def wordpress() -> None:
        _write_secrets(host, node, "wordpress", "www-data", wordpress_secrets(new))
        if db_host:  # the file WordPress reads per request; the .env has DB_HOST already
            dbmove.write_db_host(host, node, db_host)

    steps: list[Callable[[], object]] = [dropped, lambda: push_stack(host, node, env)]
    if role in (Role.ALL, Role.DB):
        steps.append(lambda: rotate_database(host, node, new))
    if role is not Role.DB:
        steps.append(wordpress)
    if role is Role.WEB and upstream:  # the .env has APP_UPSTREAM already
        steps.append(lambda: reload_nginx(host, node, upstream))
    with ThreadPoolExecutor(len(steps), thread_name_prefix="adopt") as pool:
        for f in [pool.submit(step) for step in steps]:
            f.result()


# --- the pool of this orchestrator -------------------------------------------------------------


class Pool:
    """Claims and refills (module docstring). One per orchestrator process: claims of
    parallel workflows are serialised per host (`_claiming`), LXD's keys are the record."""

    def __init__(self, settings: Settings, hosts: Mapping[str, HostDriver], registry: Registry,
                 busy: Callable[[], bool] = lambda: False, interval: float = 2.0,
                 idle: float = 10.0) -> None:
        self._s = settings
        self._hosts = hosts
        self._registry = registry
        self._busy = busy
        self._interval = interval
        self._idle = idle
        self._lock = threading.Lock()  # guards `_building` and `_host_locks`
        self._building: set[str] = set()
        self._host_locks: dict[str, threading.Lock] = {}
        self.wake = threading.Event()

    def _claiming(self, host: str) -> threading.Lock:
        """Held while a host's pooled nodes are claimed or one is deleted: never both."""
        with self._lock:
            return self._host_locks.setdefault(host, threading.Lock())

    def _host(self, name: str) -> PoolHost | None:
        h = self._hosts.get(name)
        return h if isinstance(h, PoolHost) else None

    def targets(self) -> dict[str, tuple[int, bool]]:
        """Per host: the pool size its operator set (`undercloud set HOST --pool N`) and
        whether it takes new nodes (not draining)."""
        from orchestrator.inventory import Inventory

        inv = Inventory(self._s)
        try:
            return {r.name: (r.pool or 0, not r.draining) for r in inv.hosts()}
        finally:
            inv.close()

    def view(self) -> list[HostPool]:
        """Every pool-capable host as the refill sees it (asks each host; one LXD list)."""
        from orchestrator.inventory import Inventory, allocations, snapshot

        inv = Inventory(self._s)
        try:
            snap = snapshot(self._s, inv, {n: h.reachable for n, h in self._hosts.items()},
                            self._registry, load=({}, ""))
        finally:
            inv.close()
        targets = {r.name: (r.pool or 0, not r.draining) for r in snap.records}
        alloc = allocations(self._registry)
        out = []
        for v in snap.views:
            host = self._host(v.name)
            if host is None or not snap.reachable.get(v.name):
                continue
            nodes = host.pool_nodes()
            ready = tuple(n for n, _ in sorted(((n, c) for n, (st, c) in nodes.items()
                                                if st == "ready"), key=lambda x: (x[1], x[0])))
            warming = tuple(n for n, (st, _) in nodes.items() if st == "warming")
            with self._lock:
                stale = tuple(n for n in warming if n not in self._building)
            held = len(ready) + len(warming)
            a = alloc.get(v.name)
            target, open_ = targets.get(v.name, (0, True))
            out.append(HostPool(
                v.name, target, ready, tuple(n for n in warming if n not in stale), stale,
                free_cpu=v.capacity_cpu - (a.cpu if a else 0.0) - held * POOL_CPU,
                free_memory=v.capacity_memory - (a.memory if a else 0) - held * POOL_MEMORY,
                schedulable=open_ and v.state == "ready"))
        return out

    def step(self) -> Step:
        """Decide and carry out one step; what it was."""
        s = decide(self.view(), self._busy())
        host = self._host(s.host) if s.host else None
        if s.kind == "delete" and host is not None:
            with self._claiming(s.host):  # not one a claim took meanwhile
                if host.pool_nodes().get(s.node, ("",))[0] not in ("ready", "warming"):
                    return Step("none", why=f"{s.node} was claimed")
                log.info("pool: deleting %s on %s (%s)", s.node, s.host, s.why)
                host.delete(s.node)
        elif s.kind == "launch" and host is not None:
            name = POOL_PREFIX + secrets.token_hex(4)
            with self._lock:
                self._building.add(name)
            try:
                log.info("pool: launching %s on %s (%s)", name, s.host, s.why)
                host.launch_pool(name, NODE_ALIAS, POOL_CPU, POOL_MEMORY)
                prepare(host, name)
            except Exception:
                log.exception("pool: %s on %s did not become ready; deleting it", name, s.host)
                host.delete(name)
                raise
            finally:
                with self._lock:
                    self._building.discard(name)
            return Step("launch", s.host, name, s.why)
        return s

    def run(self, stop: threading.Event) -> None:
        """Refill until `stop`: a step, then the next at once after a launch or deletion,
        else after `interval` or a claim (`wake`)."""
        while not stop.is_set():
            try:
                step = self.step()
            except Exception as exc:  # a host away, LXD busy: the next round tries again
                log.warning("pool: %s", exc)
                step = Step("none")
            if step.kind == "none":
                # no pool wanted anywhere: look again now and then (a target set with
                # `undercloud set --pool` is seen within `idle`), not every `interval`
                self.wake.wait(self._idle if step.why == "no pool" else self._interval)
                self.wake.clear()

    def claim(self, host_name: str, overcloud: str, node: str, cpu: int,
              memory_bytes: int) -> str:
        """A ready pooled container on `host_name` made `node` of `overcloud` (oldest first),
        or "" when the host has none (`claim_all` for one node)."""
        return self.claim_all(overcloud, {node: host_name}, cpu, memory_bytes).get(node, "")

    def claim_all(self, overcloud: str, placed: Mapping[str, str], cpu: int,
                  memory_bytes: int) -> dict[str, str]:
        """For each node of `placed` (node → host), a ready pooled container of its host made
        that node of `overcloud` with `cpu` cores and `memory_bytes` (its LXD limits),
        oldest first, while the host has some: node → container
        (nodes without one are left out). The hosts are asked side by side, each once. Safe
        to repeat: a node that has a container on its host already keeps it (a pooled one is
        returned again; one of its own name means no claim)."""
        by_host: dict[str, list[str]] = {}
        for node, host_name in placed.items():
            by_host.setdefault(host_name, []).append(node)

        def on(host_name: str, nodes: list[str]) -> dict[str, str]:
            host = self._host(host_name)
            if host is None:
                return {}
            out: dict[str, str] = {}
            with self._claiming(host_name):
                there = host.instances(overcloud)
                ready = [n for _, n in sorted((c, n) for n, (st, c) in host.pool_nodes().items()
                                              if st == "ready")]
                for node in nodes:
                    if node in there:  # a retry, a resumed move
                        mine = host.container(node)
                        if mine != node:
                            out[node] = mine
                    elif ready:
                        out[node] = ready.pop(0)
                        host.adopt(out[node], overcloud, node, cpu, memory_bytes)
            return out

        with ThreadPoolExecutor(max(1, len(by_host)), thread_name_prefix="claim") as pool:
            found = [pool.submit(on, h, ns) for h, ns in by_host.items()]
            claimed = {k: v for f in found for k, v in f.result().items()}
        if claimed:
            self.wake.set()
        return claimed

    def make_room(self, host_name: str, cpu: float, memory: int) -> list[str]:
        """Delete ready pooled nodes on `host_name` until a node of `cpu`/`memory` fits in
        its capacity (a cold launch never waits behind the pool); the names deleted."""
        host = self._host(host_name)
        if host is None or not self.targets().get(host_name, (0, True))[0]:
            return []  # no pool kept there (the refill deletes any left): nothing to look at
        pool = next((p for p in self.view() if p.host == host_name), None)
        if pool is None:
            return []
        gone = evictions(pool, cpu, memory)
        for name in gone:
            host.delete(name)
        return gone


def pool_report(hosts: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Per host: its pooled nodes by state (what `undercloud show` lists)."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, h in hosts.items():
        if isinstance(h, PoolHost):
            try:
                nodes = h.pool_nodes()
            except TemporaryError:
                continue
            out[name] = {st: sorted(n for n, (s, _) in nodes.items() if s == st)
                         for st in ("ready", "warming")}
    return out
