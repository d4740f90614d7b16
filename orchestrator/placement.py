"""Placement: which UnderCloud host each node of an OverCloud goes to. Pure: decide only.

Why a pure function: the same decision is needed by `place` (provisioning), by
`request apply --dry-run` (show it, create nothing) and by migration (`choose_target`), and
the rules must hold for *every* input (checked with generated inputs). Everything it needs
comes in as values: the nodes' demands (`NodeDemand`) and a snapshot of the hosts
(`HostView`: capacity, what our nodes already hold there, live load from the DevLake).
The inventory builds the snapshot; this module never talks to a host or a database.

Rules, in this order:
1. never a host that is not `ready` (an operator's `draining`, an observed `unreachable`);
2. never over capacity: a host's allocation (the cpu/memory limits of the nodes on it, ours
   already there plus the ones this plan adds) stays within its capacity;
3. with `separate_tiers`, nodes running different tiers of one OverCloud (the db node and the
   app/web nodes) go to different hosts when the hosts allow it; otherwise the plan says so
   in `notes` and mixes them rather than failing;
4. among the hosts left, the strategy ranks them (ties by host name):
   - `spread`: the fewest of this OverCloud's nodes, then the least allocated (share of capacity);
   - `pack`: the most of this OverCloud's nodes, then the most allocated that still fits
     (as few hosts as possible);
   - `least-loaded`: the lowest live utilisation (max of CPU and memory, mean over a recent
     window) plus what this plan already put there; hosts without load data count their
     allocation instead;
   - `network-aware`: the least traffic on the host's links (`net_bytes_per_s`), then as
     `least-loaded`. `network_heavy` with another strategy uses traffic as its first
     tie-break (spread/pack: between hosts holding as many of this OverCloud's nodes).

Deterministic: hosts are taken in name order and nodes largest first then by name, so the
same inputs (in any order) give the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from overcloud.errors import PermanentError, UserError

Strategy = Literal["spread", "pack", "least-loaded", "network-aware"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
HostState = Literal["ready", "draining", "unreachable"]


class PlacementError(PermanentError, UserError):
    """No valid plan exists; the message says why (retrying the same inputs cannot help)."""


@dataclass(frozen=True)
class NodeDemand:
    """One node to place: its name, the tiers it runs, and its cpu/memory limits."""

    node: str
    tiers: tuple[str, ...]
    cpu: float
    memory: int


@dataclass(frozen=True)
class HostView:
    """What placement knows of one UnderCloud host at one moment."""

    name: str
    site: str = "local"
    state: HostState = "ready"
    capacity_cpu: float = 0.0
    capacity_memory: int = 0
    allocated_cpu: float = 0.0
    """Sum of the cpu limits of OverCloud nodes already on the host."""
    allocated_memory: int = 0
    cpu_util: float | None = None
    """Live CPU use, percent of capacity (mean over a recent window); None: no data."""
    mem_util: float | None = None
    net_bytes_per_s: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def free_cpu(self) -> float:
        return self.capacity_cpu - self.allocated_cpu

    @property
    def free_memory(self) -> int:
        return self.capacity_memory - self.allocated_memory


@dataclass(frozen=True)
class Plan:
    strategy: str
    assignments: dict[str, str]
    """node → host, in placement order."""
    scores: dict[str, float]
    """host → its score under the strategy before this plan (0-100, higher is preferred)."""
    excluded: dict[str, str]
    """host → why it can take none of these nodes."""
    notes: tuple[str, ...] = ()


@dataclass
class _Tally:
    cpu: float
    memory: int
    ours: int = 0
    tiers: set[frozenset[str]] = field(default_factory=set)


def plan(nodes: Sequence[NodeDemand], hosts: Sequence[HostView], strategy: str = "spread", *,
         separate_tiers: bool = False, network_heavy: bool = False,
         fixed: Mapping[str, str] | None = None) -> Plan:
    """Assign every node in `nodes` to a host; raises `PlacementError` when impossible.

    `fixed`: nodes (by name, may be among `nodes`) whose host is already decided and whose
    demand is already counted in that host's `allocated_*` (they exist); they keep their host
    and count for tier separation and for spread/pack, never for capacity again.
    """
    if strategy not in STRATEGIES:
        raise PlacementError(f"unknown placement strategy {strategy!r}: use one of "
                             f"{', '.join(STRATEGIES)}")
    fixed = dict(fixed or {})
    by_name = {h.name: h for h in sorted(hosts, key=lambda h: h.name)}
    if len(by_name) != len(hosts):
        raise PlacementError("two hosts with the same name in the placement input")
    demands = {n.node: n for n in nodes}
    to_place = sorted((n for n in nodes if n.node not in fixed),
                      key=lambda n: (-n.cpu, -n.memory, n.node))
    excluded: dict[str, str] = {}
    tally: dict[str, _Tally] = {}
    smallest = min(to_place, key=lambda n: (n.cpu, n.memory, n.node), default=None)
    for h in by_name.values():
        if h.state != "ready":
            excluded[h.name] = ("draining: an operator marked it unschedulable"
                                if h.state == "draining" else "unreachable: its API does not answer")
        elif smallest is not None and not _fits(smallest, h.free_cpu, h.free_memory):
            excluded[h.name] = (f"full: {_cpu(h.free_cpu)} cpu / {_mem(h.free_memory)} free of "
                                f"{_cpu(h.capacity_cpu)} / {_mem(h.capacity_memory)}, a node needs "
                                f"{_cpu(smallest.cpu)} / {_mem(smallest.memory)}")
        else:
            tally[h.name] = _Tally(h.free_cpu, h.free_memory)
    for name, host in fixed.items():
        t = tally.get(host)
        if t is not None:
            t.ours += 1
            d = demands.get(name)
            if d is not None:
                t.tiers.add(frozenset(d.tiers))
    scores = {h: round(_score(strategy, by_name[h], tally[h]), 3) for h in tally}
    assignments = {n: h for n, h in sorted(fixed.items()) if n in demands}
    notes: list[str] = []
    for node in to_place:
        fits = [h for h in tally if _fits(node, tally[h].cpu, tally[h].memory)]
        if not fits:
            raise PlacementError(_no_room(node, by_name, tally, excluded))
        candidates = fits
        if separate_tiers:
            mine = frozenset(node.tiers)
            apart = [h for h in fits if not (tally[h].tiers - {mine})]
            if apart:
                candidates = apart
            else:
                notes.append(f"{node.node} ({'+'.join(node.tiers)}) shares a host with other "
                             "tiers: no host with room runs none of them")
        best = min(candidates, key=lambda h: _rank(strategy, by_name[h], tally[h], node,
                                                   network_heavy))
        t = tally[best]
        t.cpu -= node.cpu
        t.memory -= node.memory
        t.ours += 1
        t.tiers.add(frozenset(node.tiers))
        assignments[node.node] = best
    return Plan(strategy, assignments, scores, excluded, tuple(notes))


def choose_target(node: NodeDemand, hosts: Sequence[HostView], exclude: set[str] | frozenset[str],
                  strategy: str = "least-loaded", *, network_heavy: bool = False,
                  separate_tiers: bool = False,
                  siblings: Sequence[tuple[NodeDemand, str]] = ()) -> str:
    """The host one node should move to, under the same rules as `plan`.

    `exclude`: hosts it must not go to (e.g. the one it is leaving). `siblings`: the other
    nodes of its OverCloud with their hosts (for tier separation and spread/pack).
    """
    views = [h for h in hosts if h.name not in exclude]
    if not views:
        raise PlacementError(f"no host left for {node.node}: every host is excluded "
                             f"({', '.join(sorted(exclude))})")
    p = plan([node, *(s for s, _ in siblings)], views, strategy, network_heavy=network_heavy,
             separate_tiers=separate_tiers,
             fixed={s.node: h for s, h in siblings if h not in exclude})
    return p.assignments[node.node]


def describe(p: Plan, hosts: Sequence[HostView]) -> list[str]:
    """Human lines for a plan: where each node goes, each host's score, why hosts were left out."""
    by_name = {h.name: h for h in hosts}
    lines = [f"placement ({p.strategy}):"]
    width = max((len(n) for n in p.assignments), default=0)
    for node, host in p.assignments.items():
        site = by_name[host].site if host in by_name else "?"
        lines.append(f"  {node:<{width}}  → {host} (site {site})")
    lines.append("hosts (score: higher is preferred):")
    for name in sorted(by_name):
        h = by_name[name]
        load = ("no load data" if h.cpu_util is None else
                f"cpu {h.cpu_util:.1f}%, mem {(h.mem_util or 0):.1f}%")
        net = "" if h.net_bytes_per_s is None else f", net {_rate(h.net_bytes_per_s)}"
        alloc = (f"allocated {_cpu(h.allocated_cpu)}/{_cpu(h.capacity_cpu)} cpu, "
                 f"{_mem(h.allocated_memory)}/{_mem(h.capacity_memory)}")
        if name in p.excluded:
            lines.append(f"  {name:<10} excluded: {p.excluded[name]}")
        else:
            got = sum(1 for x in p.assignments.values() if x == name)
            lines.append(f"  {name:<10} score {p.scores.get(name, 0):7.2f}  {alloc}; {load}{net}; "
                         f"gets {got} node{'s' * (got != 1)}")
    lines += [f"note: {n}" for n in p.notes]
    return lines


# --- ranking -------------------------------------------------------------------------------


def _fits(node: NodeDemand, cpu: float, memory: int) -> bool:
    return node.cpu <= cpu + 1e-9 and node.memory <= memory


def _allocated_share(h: HostView, t: _Tally) -> float:
    """Share (0-1) of the host's capacity allocated, counting this plan's nodes."""
    cpu = 1 - t.cpu / h.capacity_cpu if h.capacity_cpu > 0 else 1.0
    mem = 1 - t.memory / h.capacity_memory if h.capacity_memory > 0 else 1.0
    return max(cpu, mem)


def _load(h: HostView, t: _Tally) -> float:
    """Projected utilisation in percent: live load plus what this plan adds to the host."""
    if h.cpu_util is None and h.mem_util is None:
        return 100 * _allocated_share(h, t)
    added_cpu = (h.free_cpu - t.cpu) / h.capacity_cpu if h.capacity_cpu > 0 else 0.0
    added_mem = (h.free_memory - t.memory) / h.capacity_memory if h.capacity_memory > 0 else 0.0
    return max((h.cpu_util or 0.0) + 100 * added_cpu, (h.mem_util or 0.0) + 100 * added_mem)


def _net(h: HostView) -> float:
    return h.net_bytes_per_s or 0.0


def _score(strategy: str, h: HostView, t: _Tally) -> float:
    if strategy == "spread":
        return 100 * (1 - _allocated_share(h, t))
    if strategy == "pack":
        return 100 * _allocated_share(h, t)
    if strategy == "least-loaded":
        return max(0.0, 100 - _load(h, t))
    return 100 / (1 + _net(h) / 1e6)  # network-aware: 100 when idle, 50 at 1 MB/s


def _rank(strategy: str, h: HostView, t: _Tally, node: NodeDemand,
          network_heavy: bool) -> tuple[float | str, ...]:
    net = _net(h) if network_heavy else 0.0
    if strategy == "spread":
        return (t.ours, net, _allocated_share(h, t), h.name)
    if strategy == "pack":
        return (-t.ours, net, -_allocated_share(h, t), h.name)
    if strategy == "least-loaded":
        return (_load(h, t), net, t.ours, h.name)
    return (_net(h), _load(h, t), t.ours, h.name)


def _no_room(node: NodeDemand, hosts: Mapping[str, HostView], tally: Mapping[str, _Tally],
             excluded: Mapping[str, str]) -> str:
    parts = [f"{n}: {why}" for n, why in sorted(excluded.items())]
    parts += [f"{n}: {_cpu(t.cpu)} cpu / {_mem(t.memory)} left" for n, t in sorted(tally.items())]
    if not hosts:
        parts = ["there are no UnderCloud hosts"]
    return (f"no UnderCloud host can take {node.node} ({_cpu(node.cpu)} cpu, {_mem(node.memory)}): "
            + "; ".join(parts))


def _cpu(v: float) -> str:
    return f"{v:g}"


def _mem(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n}B"


def _rate(v: float) -> str:
    for unit, size in (("MB/s", 1e6), ("kB/s", 1e3)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.0f} B/s"
