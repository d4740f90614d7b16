"""The relief plan for an overloaded host: the fewest moves under the recovery threshold."""

from __future__ import annotations

from orchestrator.migration import Move, NodeLoad, relief_moves, verdict_spec


def _n(node: str, cores: float, tiers: tuple[str, ...] = ("app", "web"), oc: str = "a") -> NodeLoad:
    return NodeLoad(oc, node, "h1", tiers, cores)


def _to(target: str = "h2"):  # type: ignore[no-untyped-def]
    return lambda node, avoid: target


def test_the_biggest_user_alone_when_it_is_enough() -> None:
    loads = [_n("n1", 0.1, ("db",)), _n("n2", 0.05), _n("n3", 1.0)]
    # 1.15 cores used of 1.0: under 70 % needs 0.45 fewer cores; n3 alone does it
    assert relief_moves(loads, 1.0, 70, _to()) == [Move("a", "n3", "h1", "h2")]


def test_several_moves_when_one_is_not_enough_biggest_first() -> None:
    loads = [_n("n1", 0.3), _n("n2", 0.5), _n("n3", 0.4)]
    moves = relief_moves(loads, 1.0, 50, _to())
    assert [m.node for m in moves] == ["n2", "n3"]  # 1.2 → 0.7 → 0.3 (< 0.5)


def test_on_a_tie_the_stateless_node_moves_not_the_database() -> None:
    loads = [_n("db1", 0.6, ("db",)), _n("web1", 0.6)]
    assert [m.node for m in relief_moves(loads, 1.0, 70, _to())] == ["web1"]


def test_nothing_moves_under_the_threshold_or_for_idle_nodes() -> None:
    assert relief_moves([_n("n1", 0.2)], 1.0, 70, _to()) == []
    # over the threshold only because of something that is not ours: moving idle nodes
    # would not help, so nothing moves
    assert relief_moves([_n("n1", 0.001)], 1.0, 70, _to(), other_cores=0.9) == []


def test_a_node_without_a_target_is_skipped_and_the_next_one_tried() -> None:
    loads = [_n("big", 0.9), _n("small", 0.4)]

    def choose(node: NodeLoad, avoid: frozenset[str]) -> str | None:
        assert avoid == frozenset({"h1"})  # never back onto the overloaded host
        return None if node.node == "big" else "h2"

    assert relief_moves(loads, 1.0, 90, choose) == [Move("a", "small", "h1", "h2")]


def test_same_inputs_same_plan_in_any_order() -> None:
    loads = [_n("n1", 0.5), _n("n2", 0.5), _n("n3", 0.5, ("db",))]
    first = relief_moves(loads, 1.0, 60, _to())
    assert relief_moves(list(reversed(loads)), 1.0, 60, _to()) == first


def test_a_refusal_is_a_one_task_workflow_that_fails_with_the_reason() -> None:
    spec = verdict_spec("shop", "no host can take shop-n1", refused=True)
    assert [t.action for t in spec.tasks] == ["refuse_migration"]
    assert spec.tasks[0].args["reason"] == "no host can take shop-n1"


def test_a_target_that_the_move_would_overload_is_not_used() -> None:
    from orchestrator.migration import relief_fits

    # h2: 1.0 of 2 cores used; a 0.5-core node would take it to 75 % (threshold 60)
    fits = relief_fits({"h2": (1.0, 2.0), "h3": (0.1, 8.0)}, 60.0)
    hot = _n("hot", 0.5)
    assert not fits(hot, "h2")
    assert fits(hot, "h3")  # and books it:
    assert fits(_n("second", 4.0), "h3")  # 0.1 + 0.5 + 4.0 = 4.6 of 8 → 57.5 % < 60
    assert not fits(_n("third", 0.3), "h3")  # 4.9 of 8 → 61 %
    assert fits(hot, "unmeasured")  # no measurement: placement's capacity rule decides
