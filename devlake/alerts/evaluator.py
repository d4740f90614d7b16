"""The streaming rule evaluator: a state machine per (rule, group), fed samples and ticks.

States: inactive (no entry) → pending (condition holds, waiting out `for`) → firing →
resolved (back to inactive). Pending → firing happens on the first sample or clock tick at
least `for` after the condition started to hold; firing → resolved only once the value is on
the far side of the recovery threshold (hysteresis), so a value hovering at the threshold
does not flap. A group that stops sending for `no_data.after` is handled by its policy:
`keep` (firing stays firing, pending is dropped), `alert` (it fires), `resolve` (it resolves).

Pure: no I/O, time comes from sample timestamps and `tick(now_ns)`; state changes are
appended to `transitions` for the runner to deliver. Every transition carries a stable
`key` (rule, group, the episode's start time, state) so that deliveries are de-duplicated
even when the evaluator restarts and re-reads samples: samples at or before a group's last
seen time are skipped, so a replay does not change the state twice.

Hot path (≥ 100k samples/s with 100 rules): rules are indexed by measurement, rules that
watch the same field share one value computation, and a sample that does not breach a rule
with no active groups costs one comparison — no key, no allocation.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from devlake.alerts.rules import Rule, compile_expression, render

PENDING = "pending"
FIRING = "firing"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
#: for a firing alert: is the value past the recovery threshold?
_RECOVERED: dict[str, Callable[[float, float], bool]] = {
    ">": operator.lt, ">=": operator.lt, "<": operator.gt, "<=": operator.gt,
    "==": operator.ne, "!=": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change to deliver: an alert started firing or was resolved."""

    rule: Rule
    state: Literal["firing", "resolved"]
    group: dict[str, str]
    """The group-by tags' values (e.g. host=lxd1)."""
    value: float
    since_ns: int
    """When the condition started to hold (the episode's identity)."""
    at_ns: int
    reason: str
    """threshold | recovered | no_data"""
    key: str
    """Stable id of this state change: the same after a restart or a redelivery."""

    @property
    def labels(self) -> dict[str, str]:
        """Alert identity for Alertmanager and events: alertname, severity, rule labels, group."""
        return {"alertname": self.rule.name, "severity": self.rule.severity,
                **self.rule.labels, **self.group}

    def annotations(self) -> dict[str, str]:
        values: dict[str, Any] = {**self.group, "value": self.value, "threshold": self.rule.threshold,
                                  "recover": self.rule.recover_at, "rule": self.rule.name,
                                  "for": f"{self.rule.for_:g}s"}
        out = {k: render(v, values) for k, v in self.rule.annotations.items()}
        if self.reason == "no_data":
            out["no_data"] = f"no samples for {self.rule.no_data.after:g}s"
        return out


_NODE = re.compile(r"(.+)-n[0-9]+")


def _of(group: Mapping[str, str], overclouds: frozenset[str]) -> bool:
    """Whether an alert group belongs to one of `overclouds`: by its `overcloud` tag, or by
    a `node` tag `<overcloud>-n<i>` (names are DNS labels, so the match is unambiguous)."""
    if not overclouds:
        return False
    if group.get("overcloud") in overclouds:
        return True
    m = _NODE.fullmatch(group.get("node", ""))
    return m is not None and m.group(1) in overclouds


def transition_key(rule: str, group: Mapping[str, str], since_ns: int, state: str) -> str:
    text = "\x1f".join([rule, *(f"{k}={v}" for k, v in sorted(group.items())), str(since_ns), state])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class GroupState:
    __slots__ = ("last_ns", "since_ns", "status", "value")

    def __init__(self, status: str, since_ns: int, value: float, last_ns: int) -> None:
        self.status = status
        self.since_ns = since_ns
        self.value = value
        self.last_ns = last_ns


class _Compiled:
    """One rule, ready for the hot path."""

    __slots__ = ("breach", "for_ns", "group_by", "keyfn", "nodata_ns", "policy", "recover",
                 "recovered", "rule", "seen", "states", "threshold", "where")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.where = tuple(rule.watch.where.items())
        self.group_by = tuple(rule.watch.group_by)
        self.breach = _OPS[rule.condition]
        self.recovered = _RECOVERED[rule.condition]
        self.threshold = rule.threshold
        self.recover = rule.recover_at
        self.for_ns = int(rule.for_ * 1e9)
        self.nodata_ns = int(rule.no_data.after * 1e9)
        self.policy = rule.no_data.policy
        self.states: dict[Any, GroupState] = {}
        self.seen: dict[Any, int] = {}
        """Last sample time of every group (only for the `alert` no-data policy)."""
        g = self.group_by
        if not g:
            self.keyfn: Callable[[Mapping[str, str]], Any] = lambda tags: ""
        elif len(g) == 1:
            tag = g[0]
            self.keyfn = lambda tags: tags.get(tag, "")
        else:
            self.keyfn = lambda tags: tuple([tags.get(t, "") for t in g])

    def group(self, key: Any) -> dict[str, str]:
        values = key if isinstance(key, tuple) else (key,) if self.group_by else ()
        return dict(zip(self.group_by, values, strict=True))

    def key_of(self, group: Mapping[str, str]) -> Any:
        return self.keyfn(group)


class _Watch:
    """The rules of one measurement that read the same field expression."""

    __slots__ = ("rules", "value")

    def __init__(self, value: Callable[[Mapping[str, Any]], float | None]) -> None:
        self.value = value
        self.rules: list[_Compiled] = []


class Evaluator:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [_Compiled(r) for r in rules if r.enabled]
        self._index: dict[str, list[_Watch]] = {}
        by_field: dict[tuple[str, str], _Watch] = {}
        for c in self.rules:
            w = c.rule.watch
            watch = by_field.get((w.measurement, w.field))
            if watch is None:
                watch = by_field[(w.measurement, w.field)] = _Watch(compile_expression(w.field)[0])
                self._index.setdefault(w.measurement, []).append(watch)
            watch.rules.append(c)
        self.transitions: list[Transition] = []
        self.samples = 0
        self._muted: frozenset[str] = frozenset()

    @property
    def measurements(self) -> set[str]:
        return set(self._index)

    # --- silenced OverClouds ----------------------------------------------------------------

    def mute(self, overclouds: Iterable[str]) -> None:
        """Silence these OverClouds (paused ones): their groups are forgotten without a
        transition — no "resolved" for an alert nobody will hear the end of, no "no data"
        for agents stopped on purpose — and their samples are skipped until unmuted."""
        muted = frozenset(overclouds)
        if muted == self._muted:
            return
        self._muted = muted
        for c in self.rules:
            for table in (c.states, c.seen):
                for key in [k for k in table if _of(c.group(k), muted)]:
                    del table[key]

    # --- the hot path ----------------------------------------------------------------------

    def feed_rows(self, rows: Iterable[Any]) -> None:
        """Rows as they come off the wire: `[measurement, tags, fields, time_ns]`.

        Malformed rows are skipped here (DevLake dead-letters them already)."""
        index = self._index
        muted = self._muted
        n = 0
        for row in rows:
            n += 1
            try:
                measurement, tags, fields, ts = row
            except (TypeError, ValueError):
                continue
            watches = index.get(measurement) if type(measurement) is str else None
            if watches is None or type(tags) is not dict or type(fields) is not dict \
                    or type(ts) is not int:
                continue
            if muted and tags.get("overcloud") in muted:
                continue
            self._sample(watches, tags, fields, ts)
        self.samples += n

    def feed(self, measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any],
             time_ns: int) -> None:
        self.samples += 1
        watches = self._index.get(measurement)
        if watches is not None and not (self._muted and tags.get("overcloud") in self._muted):
            self._sample(watches, tags, fields, time_ns)

    def _sample(self, watches: list[_Watch], tags: Mapping[str, str],
                fields: Mapping[str, Any], ts: int) -> None:
        for watch in watches:
            v = watch.value(fields)
            if v is None:
                continue
            for c in watch.rules:
                if c.where:
                    for k, want in c.where:
                        if tags.get(k) != want:
                            break
                    else:
                        self._apply(c, tags, v, ts)
                    continue
                self._apply(c, tags, v, ts)

    def _apply(self, c: _Compiled, tags: Mapping[str, str], v: float, ts: int) -> None:
        breach = c.breach(v, c.threshold)
        if not c.states:
            if c.policy == "alert":
                c.seen[c.keyfn(tags)] = ts
            if not breach:
                return
        key = c.keyfn(tags)
        if c.policy == "alert":
            c.seen[key] = ts
        st = c.states.get(key)
        if st is None:
            if breach:
                st = c.states[key] = GroupState(PENDING, ts, v, ts)
                if c.for_ns == 0:
                    self._fire(c, key, st, ts, "threshold")
            return
        if ts <= st.last_ns:
            return  # a redelivered or out-of-order sample: already accounted for
        st.last_ns = ts
        st.value = v
        if st.status == PENDING:
            if not breach:
                del c.states[key]
            elif ts - st.since_ns >= c.for_ns:
                self._fire(c, key, st, ts, "threshold")
        elif c.recovered(v, c.recover):
            self._resolve(c, key, st, ts, "recovered")

    def _fire(self, c: _Compiled, key: Any, st: GroupState, at_ns: int, reason: str) -> None:
        st.status = FIRING
        group = c.group(key)
        self.transitions.append(Transition(
            c.rule, "firing", group, st.value, st.since_ns, at_ns, reason,
            transition_key(c.rule.name, group, st.since_ns, "firing")))

    def _resolve(self, c: _Compiled, key: Any, st: GroupState, at_ns: int, reason: str) -> None:
        del c.states[key]
        group = c.group(key)
        self.transitions.append(Transition(
            c.rule, "resolved", group, st.value, st.since_ns, at_ns, reason,
            transition_key(c.rule.name, group, st.since_ns, "resolved")))

    # --- the clock -------------------------------------------------------------------------

    def tick(self, now_ns: int) -> None:
        """Pending groups whose `for` has passed fire; silent groups meet their no-data policy."""
        for c in self.rules:
            if c.states:
                for key, st in list(c.states.items()):
                    silent = now_ns - st.last_ns >= c.nodata_ns
                    if st.status == PENDING:
                        if silent:
                            if c.policy == "alert":
                                self._fire(c, key, st, now_ns, "no_data")
                            else:
                                del c.states[key]
                        elif now_ns - st.since_ns >= c.for_ns:
                            self._fire(c, key, st, now_ns, "threshold")
                    elif silent and c.policy == "resolve":
                        self._resolve(c, key, st, now_ns, "no_data")
            if c.policy == "alert":
                for key, last in c.seen.items():
                    if now_ns - last >= c.nodata_ns and key not in c.states:
                        st = c.states[key] = GroupState(PENDING, last, float("nan"), last)
                        self._fire(c, key, st, now_ns, "no_data")

    def firing(self, now_ns: int) -> list[Transition]:
        """Every firing alert as it stands (for re-sending to Alertmanager)."""
        return [Transition(c.rule, "firing", c.group(key), st.value, st.since_ns, now_ns, "threshold",
                           transition_key(c.rule.name, c.group(key), st.since_ns, "firing"))
                for c in self.rules for key, st in c.states.items() if st.status == FIRING]

    def drain(self) -> list[Transition]:
        out, self.transitions = self.transitions, []
        return out

    # --- persistence -----------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Active groups (pending and firing) as plain data, for the state file and `alerts list`."""
        out = []
        for c in self.rules:
            for key, st in c.states.items():
                out.append({"rule": c.rule.name, "group": c.group(key), "status": st.status,
                            "since_ns": st.since_ns, "last_ns": st.last_ns,
                            "value": None if st.value != st.value else st.value})
            for key, last in c.seen.items():
                if key not in c.states:
                    out.append({"rule": c.rule.name, "group": c.group(key), "status": "seen",
                                "since_ns": last, "last_ns": last, "value": None})
        return out

    def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> None:
        """Take back the states of a previous run (rules that no longer exist are ignored)."""
        by_name = {c.rule.name: c for c in self.rules}
        for item in snapshot:
            c = by_name.get(str(item.get("rule")))
            group = item.get("group")
            if c is None or not isinstance(group, dict) or set(group) != set(c.group_by):
                continue
            key = c.key_of(group)
            value = item.get("value")
            status = item.get("status")
            last = int(item.get("last_ns", 0))
            if status == "seen":
                if c.policy == "alert":
                    c.seen[key] = last
                continue
            if status in (PENDING, FIRING):
                c.states[key] = GroupState(str(status), int(item.get("since_ns", 0)),
                                           float("nan") if value is None else float(value), last)
                if c.policy == "alert":
                    c.seen[key] = last
