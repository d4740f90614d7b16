"""The evaluator's state machine on a fake clock: for, hysteresis, no-data, group-by, where,
expressions, replay safety and stable keys (what de-duplication relies on)."""

from __future__ import annotations

from typing import Any

from devlake.alerts.evaluator import Evaluator, Transition
from devlake.alerts.rules import Rule, builtin_rules, parse_rules

S = 1_000_000_000


def rule(**over: Any) -> Rule:
    doc: dict[str, Any] = {
        "name": "cpu", "watch": {"measurement": "resource_undercloud", "field": "cpu_percent",
                                 "group_by": ["host"]},
        "condition": ">", "threshold": 85, "recover": 70, "for": "5s",
    }
    doc.update(over)
    return Rule.model_validate(doc)


def feed(ev: Evaluator, t: int, value: float, host: str = "lxd1") -> list[Transition]:
    ev.feed("resource_undercloud", {"host": host}, {"cpu_percent": value}, t * S)
    return ev.drain()


def test_fires_only_after_for_and_once() -> None:
    ev = Evaluator([rule()])
    assert feed(ev, 0, 90) == []            # pending
    assert feed(ev, 4, 95) == []            # 4 s < for
    (t,) = feed(ev, 5, 96)
    assert (t.state, t.group, t.value, t.since_ns) == ("firing", {"host": "lxd1"}, 96, 0)
    assert t.reason == "threshold"
    assert feed(ev, 6, 99) == [] and feed(ev, 7, 99) == []   # no storm while firing


def test_pending_is_cancelled_when_the_condition_stops() -> None:
    ev = Evaluator([rule()])
    feed(ev, 0, 90)
    feed(ev, 3, 50)                         # back below: pending dropped
    assert feed(ev, 6, 90) == []            # a new episode starts at 6 s
    (t,) = feed(ev, 11, 90)
    assert t.since_ns == 6 * S


def test_hysteresis_resolves_only_below_recover() -> None:
    ev = Evaluator([rule(**{"for": 0})])
    (f,) = feed(ev, 0, 90)
    assert f.state == "firing"
    assert feed(ev, 1, 80) == [] and feed(ev, 2, 70) == []   # between: still firing
    (r,) = feed(ev, 3, 69.9)
    assert (r.state, r.reason, r.since_ns) == ("resolved", "recovered", 0)
    assert feed(ev, 4, 80) == []            # below threshold: nothing new


def test_tick_fires_a_pending_group_without_a_new_sample() -> None:
    ev = Evaluator([rule()])
    feed(ev, 0, 90)
    ev.tick(4 * S)
    assert ev.drain() == []
    ev.tick(5 * S)
    (t,) = ev.drain()
    assert t.state == "firing" and t.at_ns == 5 * S


def test_groups_are_independent() -> None:
    ev = Evaluator([rule(**{"for": 0})])
    (a,) = feed(ev, 0, 90, "lxd1")
    assert feed(ev, 0, 10, "lxd2") == []
    (b,) = feed(ev, 1, 99, "lxd2")
    assert a.group == {"host": "lxd1"} and b.group == {"host": "lxd2"} and a.key != b.key
    (r,) = feed(ev, 2, 1, "lxd1")
    assert r.group == {"host": "lxd1"} and len(ev.snapshot()) == 1


def test_no_data_policies() -> None:
    nd = {"after": "10s"}
    keep, alert, resolve = (
        Evaluator([rule(**{"for": 0, "no_data": {**nd, "policy": p}})]) for p in ("keep", "alert", "resolve"))
    for ev in (keep, alert, resolve):
        feed(ev, 0, 90)
        ev.tick(30 * S)
    assert keep.drain() == [] and alert.drain() == []     # already firing: stays firing
    (r,) = resolve.drain()
    assert (r.state, r.reason) == ("resolved", "no_data")
    quiet = Evaluator([rule(name="quiet", no_data={"after": "10s", "policy": "alert"})])
    assert feed(quiet, 0, 10) == []                       # seen, fine
    quiet.tick(9 * S)
    assert quiet.drain() == []
    quiet.tick(10 * S)
    (f,) = quiet.drain()
    assert (f.state, f.reason, f.group) == ("firing", "no_data", {"host": "lxd1"})
    (back,) = feed(quiet, 11, 10)                          # data again, below recover → resolved
    assert back.state == "resolved"


def test_keep_drops_a_pending_group_that_went_silent() -> None:
    ev = Evaluator([rule(no_data={"after": "3s"})])
    feed(ev, 0, 90)
    ev.tick(3 * S)
    assert ev.drain() == [] and ev.snapshot() == []


def test_where_scope_expression_and_bool_threshold() -> None:
    mem = rule(name="mem", watch={"query": "SELECT 100 * mem_usage / capacity_memory FROM "
                                  "resource_undercloud WHERE host = 'lxd2' GROUP BY host"},
               threshold=50, recover=None, **{"for": 0})
    down = Rule.model_validate({"name": "down", "watch": {"measurement": "service_http", "field": "up"},
                                "condition": "==", "threshold": False})
    ev = Evaluator([mem, down])
    ev.feed("resource_undercloud", {"host": "lxd1"}, {"mem_usage": 9, "capacity_memory": 10}, S)
    assert ev.drain() == []                                # out of scope
    ev.feed("resource_undercloud", {"host": "lxd2"}, {"mem_usage": 6, "capacity_memory": 10}, S)
    ev.feed("resource_undercloud", {"host": "lxd2"}, {"mem_usage": 6, "capacity_memory": 0}, 2 * S)
    ev.feed("service_http", {}, {"up": False}, S)
    got = ev.drain()
    assert [(t.rule.name, t.value) for t in got] == [("mem", 60.0), ("down", 0.0)]


def test_replay_after_restart_changes_nothing_and_keys_are_stable() -> None:
    first = Evaluator([rule()])
    feed(first, 0, 90)
    (fired,) = feed(first, 5, 90)
    saved = first.snapshot()
    again = Evaluator([rule()])
    again.restore(saved)
    assert feed(again, 0, 90) == [] and feed(again, 5, 90) == []   # redelivered samples
    (r,) = feed(again, 6, 10)
    assert r.state == "resolved" and r.since_ns == fired.since_ns
    # the same episode computed twice gives the same key
    other = Evaluator([rule()])
    feed(other, 0, 91)
    (same,) = feed(other, 5, 92)
    assert same.key == fired.key and r.key != fired.key


def test_builtin_node_overloaded_and_index() -> None:
    (b,) = builtin_rules()
    assert (b.name, b.threshold, b.recover, b.for_) == ("node-overloaded", 85, 70, 30)
    (short,) = parse_rules("rules:\n  - {name: node-overloaded, for: 5s}\n")
    assert short.for_ == 5 and short.threshold == 85 and short.actions == b.actions
    assert parse_rules("rules:\n  - {name: node-overloaded, enabled: false}\n") == []
    ev = Evaluator([b])
    ev.feed("resource_host", {"host": "lxd1"}, {"cpu_percent": 100}, S)   # other measurement
    assert ev.drain() == [] and ev.measurements == {"resource_undercloud"}


def test_malformed_rows_are_skipped() -> None:
    ev = Evaluator([rule(**{"for": 0})])
    ev.feed_rows([["resource_undercloud"], None, ["resource_undercloud", [], {}, 1],
                  ["resource_undercloud", {"host": "h"}, {"cpu_percent": "x"}, S],
                  ["resource_undercloud", {"host": "h"}, {"cpu_percent": 99}, S]])
    (t,) = ev.drain()
    assert t.group == {"host": "h"} and ev.samples == 5


def test_a_paused_overcloud_is_silenced_and_heard_again_after_resume() -> None:
    """Groups of a muted OverCloud (by its tag, or its nodes' names) are forgotten without a
    transition; its samples are skipped, so no "no data" alert for agents stopped on
    purpose; another OverCloud whose name shares a prefix is not touched."""
    by_oc = rule(name="oc", **{"for": 0}, watch={"measurement": "service_http",
                                                 "field": "latency_ms", "group_by": ["overcloud"]},
                 no_data={"after": "10s", "policy": "alert"}, threshold=100, recover=50)
    by_node = rule(name="node", **{"for": 0}, watch={"measurement": "service_http",
                                                     "field": "latency_ms", "group_by": ["node"]},
                   threshold=100, recover=50)
    ev = Evaluator([by_oc, by_node])

    def sample(oc: str, node: str, t: int, v: float) -> list[Transition]:
        ev.feed_rows([["service_http", {"overcloud": oc, "node": node}, {"latency_ms": v},
                       t * S]])
        return ev.drain()

    assert len(sample("blog", "blog-n1", 0, 500)) == 2          # both rules fire for blog
    assert len(sample("blog-n1", "blog-n1-n2", 0, 500)) == 2    # and for "blog-n1"
    ev.mute({"blog"})
    assert ev.drain() == [], "silenced without a transition"
    firing = {(t.rule.name, tuple(t.group.values())) for t in ev.firing(1 * S)}
    assert firing == {("oc", ("blog-n1",)), ("node", ("blog-n1-n2",))}
    assert sample("blog", "blog-n1", 2, 500) == []              # its samples are skipped
    ev.tick(60 * S)
    assert [t.group for t in ev.drain() if t.group == {"overcloud": "blog"}] == []
    ev.mute(set())                                              # resumed: heard again
    (again, _) = sample("blog", "blog-n1", 61, 500)
    assert again.state == "firing" and again.since_ns == 61 * S
