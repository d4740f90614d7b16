"""Placement properties over generated inputs (hypothesis), plus a few worked examples.

`plan` is pure, so every rule is checked on thousands of generated host snapshots and
requests: capacity never over-committed, no draining/unreachable host, tiers apart when the
hosts allow, same inputs → same plan, and the order of the host list does not matter.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.placement import (
    STRATEGIES,
    HostView,
    NodeDemand,
    PlacementError,
    choose_target,
    describe,
    plan,
)

GiB = 1024**3


@st.composite
def host_views(draw: st.DrawFn, min_size: int = 1) -> list[HostView]:
    names = draw(st.lists(st.sampled_from([f"h{i}" for i in range(8)]), min_size=min_size,
                          max_size=6, unique=True))
    hosts = []
    for name in names:
        cap_cpu = draw(st.integers(1, 32))
        cap_mem = draw(st.integers(1, 64)) * GiB
        util = draw(st.one_of(st.none(), st.floats(0, 100)))
        hosts.append(HostView(
            name=name,
            site=draw(st.sampled_from(["local", "far"])),
            state=draw(st.sampled_from(["ready", "ready", "ready", "draining", "unreachable"])),
            capacity_cpu=float(cap_cpu),
            capacity_memory=cap_mem,
            allocated_cpu=float(draw(st.integers(0, cap_cpu))),
            allocated_memory=draw(st.integers(0, cap_mem // GiB)) * GiB,
            cpu_util=util,
            mem_util=None if util is None else draw(st.floats(0, 100)),
            net_bytes_per_s=draw(st.one_of(st.none(), st.floats(0, 1e9))),
        ))
    return hosts


@st.composite
def requests(draw: st.DrawFn) -> list[NodeDemand]:
    """An OverCloud's nodes laid out as the request model does: db on n1, app+web after."""
    n = draw(st.integers(1, 6))
    cpu = float(draw(st.integers(1, 8)))
    mem = draw(st.sampled_from([GiB // 2, GiB, 2 * GiB, 4 * GiB]))
    if n == 1:
        return [NodeDemand("oc-n1", ("db", "app", "web"), cpu, mem)]
    return [NodeDemand("oc-n1", ("db",), cpu, mem)] + [
        NodeDemand(f"oc-n{i}", ("app", "web"), cpu, mem) for i in range(2, n + 1)]


def _used(p: dict[str, str], nodes: list[NodeDemand], host: str) -> tuple[float, int]:
    mine = [n for n in nodes if p.get(n.node) == host]
    return sum(n.cpu for n in mine), sum(n.memory for n in mine)


@settings(max_examples=400, deadline=None)
@given(requests(), host_views(), st.sampled_from(STRATEGIES), st.booleans(), st.booleans())
def test_never_over_capacity_nor_on_a_host_that_is_not_ready(
        nodes: list[NodeDemand], hosts: list[HostView], strategy: str, separate: bool,
        heavy: bool) -> None:
    try:
        p = plan(nodes, hosts, strategy, separate_tiers=separate, network_heavy=heavy)
    except PlacementError as exc:
        assert "no UnderCloud host can take" in str(exc)
        # it fails only when a greedy fill of the ready hosts really runs out of room
        room = sum(min(int(h.free_cpu // nodes[0].cpu), h.free_memory // nodes[0].memory)
                   for h in hosts if h.state == "ready")
        assert room < len(nodes)
        return
    assert set(p.assignments) == {n.node for n in nodes}
    by_name = {h.name: h for h in hosts}
    for name, h in by_name.items():
        cpu, mem = _used(p.assignments, nodes, name)
        assert h.allocated_cpu + cpu <= h.capacity_cpu + 1e-9
        assert h.allocated_memory + mem <= h.capacity_memory
        if h.state != "ready":
            assert name not in p.assignments.values()
            assert name in p.excluded


@settings(max_examples=300, deadline=None)
@given(requests(), host_views(min_size=2), st.sampled_from(STRATEGIES))
def test_tiers_apart_when_hosts_allow(nodes: list[NodeDemand], hosts: list[HostView],
                                      strategy: str) -> None:
    # make the hosts allow it: two or more ready hosts, each with room for the whole request
    need_cpu = sum(n.cpu for n in nodes)
    need_mem = sum(n.memory for n in nodes)
    roomy = [HostView(h.name, h.site, "ready", h.allocated_cpu + need_cpu,
                      h.allocated_memory + need_mem, h.allocated_cpu, h.allocated_memory,
                      h.cpu_util, h.mem_util, h.net_bytes_per_s) for h in hosts]
    p = plan(nodes, roomy, strategy, separate_tiers=True)
    assert not p.notes
    tiers_on: dict[str, set[tuple[str, ...]]] = {}
    for n in nodes:
        tiers_on.setdefault(p.assignments[n.node], set()).add(n.tiers)
    assert all(len(t) == 1 for t in tiers_on.values()), tiers_on


@settings(max_examples=300, deadline=None)
@given(requests(), host_views(), st.sampled_from(STRATEGIES), st.booleans(), st.booleans(),
       st.randoms(use_true_random=False))
def test_same_inputs_same_plan_in_any_host_order(
        nodes: list[NodeDemand], hosts: list[HostView], strategy: str, separate: bool,
        heavy: bool, rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)

    def run(hs: list[HostView], ns: list[NodeDemand]) -> object:
        try:
            return plan(ns, hs, strategy, separate_tiers=separate, network_heavy=heavy)
        except PlacementError as exc:
            return str(exc)

    first = run(hosts, nodes)
    assert run(list(hosts), list(nodes)) == first
    shuffled_h, shuffled_n = list(hosts), list(nodes)
    rnd.shuffle(shuffled_h)
    rnd.shuffle(shuffled_n)
    again = run(shuffled_h, shuffled_n)
    if isinstance(first, str):
        assert again == first
    else:
        assert not isinstance(again, str)
        assert dict(sorted(again.assignments.items())) == dict(sorted(first.assignments.items()))
        assert again.scores == first.scores and again.excluded == first.excluded


@settings(max_examples=200, deadline=None)
@given(requests(), host_views(min_size=2))
def test_choose_target_obeys_the_same_rules(nodes: list[NodeDemand], hosts: list[HostView]) -> None:
    node = nodes[0]
    leaving = sorted(h.name for h in hosts)[0]
    try:
        target = choose_target(node, hosts, {leaving})
    except PlacementError:
        assert not any(h.state == "ready" and h.name != leaving and h.free_cpu >= node.cpu
                       and h.free_memory >= node.memory for h in hosts)
        return
    h = next(h for h in hosts if h.name == target)
    assert target != leaving and h.state == "ready"
    assert h.free_cpu >= node.cpu and h.free_memory >= node.memory


# --- worked examples ---------------------------------------------------------------------------


def _hosts(**util: float) -> list[HostView]:
    return [HostView(n, capacity_cpu=8, capacity_memory=16 * GiB, cpu_util=u, mem_util=10.0,
                     net_bytes_per_s=1000.0 * i) for i, (n, u) in enumerate(sorted(util.items()))]


NODES = [NodeDemand("b-n1", ("db",), 2, 2 * GiB), NodeDemand("b-n2", ("app", "web"), 2, 2 * GiB)]


def test_least_loaded_picks_the_quieter_host() -> None:
    p = plan(NODES[:1], _hosts(lxd1=80.0, lxd2=5.0), "least-loaded")
    assert p.assignments == {"b-n1": "lxd2"}
    assert p.scores["lxd2"] > p.scores["lxd1"]


def test_least_loaded_spreads_once_the_plan_adds_up() -> None:
    # both idle: the plan's own nodes count, so the second node goes to the other host
    p = plan(NODES, _hosts(lxd1=0.0, lxd2=0.0), "least-loaded")
    assert sorted(p.assignments.values()) == ["lxd1", "lxd2"]


def test_pack_fills_one_host_spread_uses_both() -> None:
    assert set(plan(NODES, _hosts(a=0.0, b=0.0), "pack").assignments.values()) == {"a"}
    assert set(plan(NODES, _hosts(a=0.0, b=0.0), "spread").assignments.values()) == {"a", "b"}


def test_network_aware_prefers_idle_links() -> None:
    hosts = [HostView("busy", capacity_cpu=8, capacity_memory=16 * GiB, net_bytes_per_s=5e7),
             HostView("idle", capacity_cpu=8, capacity_memory=16 * GiB, net_bytes_per_s=10.0)]
    assert plan(NODES[:1], hosts, "network-aware").assignments == {"b-n1": "idle"}


def test_no_plan_says_why() -> None:
    hosts = [HostView("a", state="draining", capacity_cpu=8, capacity_memory=16 * GiB),
             HostView("b", capacity_cpu=1, capacity_memory=16 * GiB)]
    with pytest.raises(PlacementError) as exc:
        plan(NODES, hosts, "spread")
    msg = str(exc.value)
    assert "a: draining" in msg and "b: full" in msg


def test_unknown_strategy_is_a_placement_error() -> None:
    with pytest.raises(PlacementError, match="unknown placement strategy 'random'"):
        plan(NODES, _hosts(a=0.0), "random")


def test_describe_names_every_host() -> None:
    hosts = [*_hosts(a=10.0), HostView("d", state="draining", capacity_cpu=8,
                                        capacity_memory=GiB)]
    text = "\n".join(describe(plan(NODES, hosts, "least-loaded"), hosts))
    assert "b-n1" in text and "→ a" in text and "d          excluded: draining" in text


def test_fixed_nodes_stay_and_count_for_separation() -> None:
    hosts = _hosts(a=0.0, b=0.0)
    p = plan(NODES, hosts, "pack", separate_tiers=True, fixed={"b-n1": "a"})
    assert p.assignments == {"b-n1": "a", "b-n2": "b"}
