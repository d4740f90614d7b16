"""Issue 9: hostile names through every InfluxQL builder stay one statement, quoted.

Each builder runs twice: with a benign name and with a hostile one. The InfluxQL scanner
model (`tests/influxql_lexer.py`) must see the same statement both times — same tokens
outside quotes, one statement, no scan error — and the hostile text only inside quoted
tokens, where it reads back exactly. Builders that validate (database names, durations)
may refuse a hostile value with ValueError instead; they must not pass it through.
`tests/integration/test_influxql_hostile.py` sends the same queries to a real InfluxDB.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import dashboards
from dashboards import overcloud as overcloud_dashboard
from dashboards.panels import tag_variable
from dashboards.templating import queries, raw_targets
from dashboards.terminal import top_queries
from devlake import sinks
from devlake.alerts.backtest import query as backtest_query
from devlake.alerts.grafana import influxql_query as grafana_query
from devlake.alerts.rules import Rule, parse_rules
from devtower.cli.metrics import latest_query
from orchestrator.inventory import load_query
from overcloud import influxql
from overcloud.influxql import QL, compose
from tests.influxql_lexer import ScanError, Token, statements, tokens

BENIGN = "benign"
HOSTILE = [
    'x"; DROP DATABASE "devlake_other',
    "x'; DROP DATABASE devlake_undercloud; SELECT 'y",
    "x'; DROP DATABASE devlake_other; SELECT * FROM \"m\" WHERE \"node\" = 'y",
    "ends with a backslash\\",
    'back\\"slash and \\\' quote',
    "new\nline; DROP DATABASE x",
    "semi;colon",
    "sl/ash /.*/ $overcloud",
    "ünïcødé 名前 ☃",
    "\\n not a newline",
    ") OR 1=1 --",
]


def _rule(**watch: object) -> Rule:
    """A rule whose watch carries hostile text even where validation would refuse it
    (model_copy skips validation: the builder alone must keep the query safe)."""
    rule = next(r for r in parse_rules("rules:\n  - {name: r, watch: {measurement: m, field: v}, "
                                       "condition: '>', threshold: 1}\n") if r.name == "r")
    return rule.model_copy(update={"watch": rule.watch.model_copy(update=watch)})


#: name → builder(text) for every place that puts outside text into InfluxQL
QUOTING: dict[str, Callable[[str], str]] = {
    "influxql.ident": lambda x: compose("SELECT * FROM {}", influxql.ident(x)),
    "influxql.string": lambda x: compose('SELECT * FROM "m" WHERE "t" = {}', influxql.string(x)),
    "influxql.tag_equals": lambda x: compose('SELECT * FROM "m" WHERE {}',
                                             influxql.tag_equals([("t", x), (x, "v")])),
    "backtest: where value": lambda x: backtest_query(_rule(where={"node": x}), 60),
    "backtest: where tag, group, measurement, field": lambda x: backtest_query(
        _rule(where={x: "v"}, group_by=[x, "host"], measurement=x, field="v"), 60),
    "grafana export: where value": lambda x: grafana_query(_rule(where={"node": x})),
    "grafana export: where tag, group, measurement": lambda x: grafana_query(
        _rule(where={x: "v"}, group_by=[x], measurement=x)),
    "dashboards: series query": lambda x: overcloud_dashboard._ts(
        x, 'mean("v")', '"node" =~ /^$node$/', '"node"'),
    "dashboards: tag variable": lambda x: str(tag_variable("v", "V", x, x).build().query),
    "metrics latest": latest_query,
}
#: builders that validate and must refuse hostile text rather than quote it: (builder, a
#: value it accepts)
VALIDATING: dict[str, tuple[Callable[[str], str], str]] = {
    "sink: CREATE DATABASE": (sinks.create_database, "devlake_shop"),
    "sink: DROP DATABASE": (sinks.drop_database, "devlake_shop"),
    "sink: CREATE RETENTION POLICY (name)": (lambda x: sinks.create_retention_policy(x, "30d"),
                                             "devlake_shop"),
    "sink: CREATE RETENTION POLICY (duration)": (
        lambda x: sinks.create_retention_policy("db", x), "30d"),
    "sink: ALTER RETENTION POLICY (duration)": (
        lambda x: sinks.alter_retention_policy("db", x), "INF"),
    "top: window": (lambda x: top_queries(x)[0].text, "10m"),
    "top: step": (lambda x: top_queries("10m", x)[0].text, "20s"),
    "placement load: window": (load_query, "5m"),
    "backtest: since": (lambda x: backtest_query(_rule(), x), 60),  # type: ignore[arg-type, return-value]
}


def _same_statement(build: Callable[[str], str], hostile: str) -> None:
    good = tokens(build(BENIGN))
    bad = tokens(build(hostile))
    assert len(statements(build(hostile))) == 1
    assert len(bad) == len(good), (build(hostile), bad)
    seen = False
    for g, b in zip(good, bad, strict=True):
        assert (g.kind, g.quoted) == (b.kind, b.quoted), (g, b)
        if not b.quoted:
            assert g.text == b.text, f"hostile text outside quotes: {b.text!r}"
        else:
            want = g.text.replace(BENIGN, hostile if b.kind != "regex" else _re(hostile))
            assert b.text == want, (g, b)
            seen = seen or hostile in b.text or _re(hostile) in b.text
    assert seen, "the hostile text never reached the query: the test tests nothing"


def _re(text: str) -> str:
    return influxql.regex_escape(text).replace("\\/", "/")


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("builder", sorted(QUOTING))
def test_hostile_text_is_quoted_by_every_builder(builder: str, hostile: str) -> None:
    _same_statement(QUOTING[builder], hostile)


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("builder", sorted(VALIDATING))
def test_hostile_text_is_refused_by_validating_builders(builder: str, hostile: str) -> None:
    build, accepted = VALIDATING[builder]
    assert len(statements(build(accepted))) == 1
    with pytest.raises(ValueError):
        build(hostile)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_dashboard_variables_with_hostile_values_stay_quoted(hostile: str) -> None:
    """Every panel and variable query of every dashboard, the variables set to hostile values
    the way `overcloud dashboards check` and Grafana set them (database names, tag values)."""
    for d in dashboards.all_dashboards():
        def panel_queries(value: str, d: object = d) -> list[str]:
            return [q for _, q in queries(d, {"overcloud": value, "node": [value, "n2"],  # type: ignore[arg-type]
                                              "tier": [value]})]

        for good, bad in zip(panel_queries(BENIGN), panel_queries(hostile), strict=True):
            if good != bad:
                _same_statement(lambda x, good=good, bad=bad: bad if x == hostile else good, hostile)
            else:
                assert len(statements(good)) == 1


def test_every_dashboard_query_is_one_statement() -> None:
    for d in dashboards.all_dashboards():
        for title, q in raw_targets(d):
            assert len(statements(q)) == 1, (title, q)


def test_the_attacks_of_the_issue_read_back_as_names() -> None:
    name = 'x"; DROP DATABASE "devlake_other'
    q = compose("SELECT * FROM {}", influxql.ident(name))
    assert [t.text for t in tokens(q) if t.quoted] == [name]
    value = "x'; DROP DATABASE devlake_undercloud; SELECT 'y"
    q = backtest_query(_rule(where={"node": value}), 60)
    assert Token("string", value) in tokens(q)
    assert len(statements(q)) == 1


@pytest.mark.parametrize(("fn", "bad"), [
    (influxql.ident, ""), (influxql.ident, 5), (influxql.database, "a b"),
    (influxql.database, "x" * 129), (influxql.duration, "10"), (influxql.duration, "1h; DROP"),
    (influxql.duration, "10m\n"), (influxql.retention, "forever"), (influxql.seconds, -1),
    (influxql.seconds, float("nan")), (influxql.integer, 1.5), (influxql.integer, True),
    (influxql.number, float("inf")), (influxql.string, None),
])
def test_validation_refuses(fn: Callable[[object], QL], bad: object) -> None:
    with pytest.raises(ValueError):
        fn(bad)


def test_escapes_are_influxdbs() -> None:
    assert influxql.ident('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert influxql.string("it's \\ \n") == "'it\\'s \\\\ \\n'"
    assert influxql.regex_escape("a.b/c(d)\n") == "a\\.b\\/c\\(d\\)\\n"
    assert influxql.retention("inf") == "INF" and influxql.retention("30d") == "30d"
    assert influxql.duration("1h30m") == "1h30m" and influxql.seconds(90.7) == "90s"


def test_compose_takes_only_quoted_parts() -> None:
    with pytest.raises(TypeError):
        compose("SELECT * FROM {}", "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        influxql.join([QL("a"), "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        compose("SELECT {} FROM {}", QL("*"))
    assert compose("SELECT {} FROM {}", QL("*"), influxql.ident("m")) == 'SELECT * FROM "m"'


def test_the_lexer_refuses_what_influxdb_refuses() -> None:
    for text in ('"a\nb"', "'a\\qb'", '"open', "/a\nb/"):
        with pytest.raises(ScanError):
            tokens(text if not text.startswith("/") else "SELECT * FROM " + text)
