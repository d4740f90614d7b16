"""The warm pool's decisions (pure): what the refill does next, what a cold launch evicts,
and the claim's bookkeeping (registry: a node's pooled container, kept until it moves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.dbmove import SECRET, password_sql
from orchestrator.pool import POOL_CPU, POOL_MEMORY, HostPool, decide, evictions, pool_env
from orchestrator.registry import Registry
from orchestrator.request import RequestInvalid, parse_request
from overcloud.errors import PermanentError
from overcloud.settings import load_settings

GiB = 1024**3


def roomy(host: str, target: int, *, ready: tuple[str, ...] = (), warming: tuple[str, ...] = (),
          stale: tuple[str, ...] = (), schedulable: bool = True) -> HostPool:
    return HostPool(host, target, ready, warming, stale, free_cpu=8.0, free_memory=16 * GiB,
                    schedulable=schedulable)


def test_a_short_host_with_room_gets_one_launch_the_one_missing_most() -> None:
    pools = [roomy("h1", 2, ready=("a",)), roomy("h2", 2)]
    assert decide(pools, busy=False).kind == "launch"
    assert decide(pools, busy=False).host == "h2"


def test_no_launch_while_a_workflow_runs_nor_without_room() -> None:
    assert decide([roomy("h1", 1)], busy=True).kind == "none"
    tight = HostPool("h1", 1, free_cpu=POOL_CPU - 0.5, free_memory=16 * GiB)
    assert decide([tight], busy=False).kind == "none"
    small = HostPool("h1", 1, free_cpu=8.0, free_memory=POOL_MEMORY - 1)
    assert decide([small], busy=False).kind == "none"


def test_full_pools_and_warming_nodes_count_as_held() -> None:
    assert decide([roomy("h1", 2, ready=("a",), warming=("b",))],
                  busy=False).kind == "none"
    assert decide([roomy("h1", 0)], busy=False).kind == "none"


def test_cleanup_comes_first_even_while_busy() -> None:
    stale = decide([roomy("h1", 1, stale=("old",))], busy=True)
    assert (stale.kind, stale.node) == ("delete", "old")
    over = decide([roomy("h1", 1, ready=("a", "b"))], busy=True)
    assert (over.kind, over.node) == ("delete", "b")  # the newest goes
    drained = decide([roomy("h1", 2, ready=("a",), schedulable=False)], busy=False)
    assert (drained.kind, drained.node) == ("delete", "a")


def test_a_draining_host_gets_no_pool_node() -> None:
    assert decide([roomy("h1", 2, schedulable=False)], busy=False).kind == "none"


def test_a_cold_node_evicts_just_enough_pool_nodes() -> None:
    pool = HostPool("h1", 3, ready=("a", "b", "c"), free_cpu=0.0, free_memory=0)
    assert evictions(pool, 2, 2 * GiB) == ["c", "b"]
    assert evictions(HostPool("h1", 3, ready=("a",), free_cpu=4.0, free_memory=8 * GiB),
                     2, 2 * GiB) == []  # fits already
    # cannot fit even with the whole pool gone: evicting would only lose ready nodes
    assert evictions(HostPool("h1", 1, ready=("a",), free_cpu=0.0, free_memory=0), 4, GiB) == []


def test_every_pooled_stack_has_secrets_of_its_own() -> None:
    envs = [dict(ln.split("=", 1) for ln in pool_env().splitlines()) for _ in range(20)]
    for key in ("DB_PASSWORD", "DB_ROOT_PASSWORD", "WP_AUTH_KEY"):
        values = [e[key] for e in envs]
        assert len(set(values)) == len(values)
        assert all(SECRET.match(v) for v in values)
    assert {e["DB_BIND"] for e in envs} == {"0.0.0.0"} and {e["STACK_NAME"] for e in envs} == {"oc"}


@pytest.mark.parametrize("value", ["db'; DROP USER root;--", "short", "a" * 200, "spa ce" * 5,
                                   "x" * 20 + "\n"])
def test_a_secret_of_another_form_never_reaches_sql(value: str) -> None:
    with pytest.raises(PermanentError, match="unexpected characters"):
        password_sql("wordpress", value, "r" * 24)
    with pytest.raises(PermanentError, match="unexpected characters"):
        password_sql("wordpress", "p" * 24, value)
    assert "IDENTIFIED BY 'pppppppppppppppppppppppp'" in password_sql("wordpress", "p" * 24,
                                                                      "r" * 24)


def test_the_registry_keeps_a_pooled_container_until_the_node_moves(tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_CONFIG": ""})
    reg = Registry(s)
    reg.admit("blog", "a@b.c", {}, "r1")
    reg.set_node("blog", "blog-n1", "lxd1", ["db"], instance="ocpool-1a2b3c4d")
    reg.set_node("blog", "blog-n1", "lxd1", ["db"], "10.0.0.2")  # launch records the address
    rec = reg.get("blog")
    assert rec is not None and rec.nodes[0].container == "ocpool-1a2b3c4d"
    assert rec.nodes[0].address == "10.0.0.2"
    reg.set_node("blog", "blog-n1", "lxd2", ["db"], "10.0.1.2")  # moved: a cold container
    rec = reg.get("blog")
    assert rec is not None and rec.nodes[0].container == "blog-n1"


def test_pool_false_is_a_boolean_and_defaults_to_true() -> None:
    doc = "apiVersion: overcloud/v1\nkind: OverCloud\nname: blog\nowner: a@b.c\nsaas: {stack: wordpress}\n"
    assert parse_request(doc).pool is True
    assert parse_request(doc + "pool: false\n").pool is False
    with pytest.raises(RequestInvalid, match="pool"):
        parse_request(doc + "pool: 'no'\n")
