"""Fuzzing both document loaders: whatever comes in, out comes a valid model or the loader's
`DocumentInvalid` (issue 9 §2), never another exception.

Three kinds of input: YAML-ish text (the characters YAML gives meaning to, numbers, markup,
newlines), random data structures dumped as YAML, and valid documents with a few random
subtrees replaced, which reach the deeper validators (cross-field rules, templates,
queries) that random structures seldom get to. The request's data also goes straight into
`OverCloudRequest.from_spec`, as an `OverCloudRequested` event's spec would.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devlake.alerts.rules import Rule, RulesInvalid, parse_rules
from orchestrator.request import Capacity, OverCloudRequest, RequestInvalid, load_request, parse_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIG = Capacity(cpu=64, memory_bytes=1024**4)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REQUEST = load_request(EXAMPLES / "my-overcloud.yaml", BIG).to_spec()
RULE: dict[str, Any] = {
    "name": "web-slow",
    "watch": {"measurement": "service_http", "field": "latency_ms", "where": {"node": "n1"},
              "group_by": ["node"]},
    "condition": ">", "threshold": 800, "recover": 500, "for": "1m",
    "no_data": {"policy": "keep", "after": "2m"}, "severity": "warning",
    "labels": {"team": "web"}, "annotations": {"summary": "{node} answers in {value:.0f} ms"},
    "actions": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}, {"type": "alertmanager"}],
}

# --- strategies ------------------------------------------------------------------------------

NASTY_TEXT = st.sampled_from([
    "", " ", "\n", "blog\n", "30d\n", "[/x]", "[bold]x[/bold]", ":smile:", "x" * 5000, "２GiB",
    "blög", "dev\u202e@example.com", "\x00", "\x1b[31m", "1e999", "nan", "-inf", "{value:>99999999}",
    "{rule.__class__}", "SELECT f FROM m; DROP DATABASE x", "SELECT f FROM m GROUP BY host",
    "1" + "0" * 400 + "GiB", "9" * 30 + "d", "INF", "auto", "wordpress", "http://h/x\n", "-",
])
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([0, -1, 1, 16, 17, 65535, 10**18, 10**99, -(10**99)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e308]),
    st.text(max_size=40), NASTY_TEXT,
)
KEYS = st.one_of(st.text(max_size=12), st.sampled_from(
    ["name", "owner", "cluster", "nodes", "memory", "rules", "watch", "query", "threshold", "for",
     "password", "[/x]", "x" * 300, "<<", "\n",
     # names pydantic itself puts in error locations (union members, validators)
     "int", "str", "webhook", "alertmanager", "event", "function-after", "literal['x']"]))
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
YAMLISH = st.text(alphabet=st.sampled_from([*"abz019 :-,[]{}&*!|>'\"#%@\n\t.~_/\\?", "\u202e", "é"]),
                  max_size=200)


def _paths(tree: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*here, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*here, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one to three subtrees replaced by random data (or removed)."""
    doc: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        value = draw(DATA)
        if not path:
            doc = value
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return doc


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --- the request loader ----------------------------------------------------------------------


def _request_text(text: str) -> None:
    try:
        assert isinstance(parse_request(text, capacity=BIG), OverCloudRequest)
    except RequestInvalid as exc:
        assert exc.problems and all("\n" not in line for line in exc.lines())


def _request_spec(data: Any) -> None:
    try:
        req = OverCloudRequest.from_spec(data)
    except RequestInvalid as exc:
        assert exc.problems
    else:  # a valid request prints and names things: no newline may hide in them
        assert all("\n" not in n for n in req.node_names()) and "\n" not in req.owner


@FUZZ
@given(YAMLISH)
def test_request_from_yamlish_text(text: str) -> None:
    _request_text(text)


@FUZZ
@given(DATA)
def test_request_from_random_data(data: Any) -> None:
    _request_text(_dump(data))
    _request_spec(data)


@FUZZ
@given(mutated(REQUEST))
def test_request_with_random_subtrees(data: Any) -> None:
    _request_text(_dump(data))
    _request_spec(data)


# --- the rules loader ------------------------------------------------------------------------


def _rules_text(text: str) -> None:
    try:
        rules = parse_rules(text)
    except RulesInvalid as exc:
        assert exc.problems and all("\n" not in line for line in exc.lines())
    else:
        assert all(isinstance(r, Rule) and math.isfinite(r.threshold) and "\n" not in r.name
                   for r in rules)


@FUZZ
@given(YAMLISH)
def test_rules_from_yamlish_text(text: str) -> None:
    _rules_text(text)


@FUZZ
@given(DATA)
def test_rules_from_random_data(data: Any) -> None:
    _rules_text(_dump(data))
    _rules_text(_dump({"rules": [data]}))


@FUZZ
@given(mutated({"rules": [RULE]}))
def test_rules_with_random_subtrees(data: Any) -> None:
    _rules_text(_dump(data))
