"""Hostile documents: one fault each, through both loaders, never a traceback (issue 9 §2).

Each file under `testcases/hostile/` holds one fault a user (or an attacker) could put in a
YAML document: numbers too large for Python (`1` and 5000 zeros; a memory size whose float
is `inf`), `.nan`/`.inf`, a trailing newline in every string a pattern validates, rich markup
and 5000-character values in every echoed string, unicode look-alikes (`２GiB`, `blög`, a
bidi override), duplicated keys, wrong types at every level, alias bombs, dates in month 13,
`!!int three`, lists nested 5000 deep, binary garbage, empty and non-mapping documents.
`request_*` files are requests with the fault, `rules_*` rule files with it, `any_*` fit
neither. Every file goes through the request loader (`overcloud request validate`) and the
rules loader (`overcloud alerts validate`), in-process and through the real CLI: exit 1, the
message in `CASES`, one line per problem, no line longer than a screenful.

`make_hostile_corpus.py` writes the corpus (the files are committed); a document's fault is
in its name, the table below says what each loader must answer.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from devlake.alerts.rules import RulesInvalid, check_template, load_rule_file, parse_query
from orchestrator.request import Capacity, OverCloudRequest, RequestInvalid, load_request, memory_bytes
from overcloud.events import OverCloudRequested
from overcloud.problems import DocumentLoader, echo
from overcloud.wire import decode_event, encode_event
from tests.helpers import run_cli

HOSTILE = Path(__file__).parent / "testcases" / "hostile"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIG = Capacity(cpu=64, memory_bytes=1024**4)
LONGEST_LINE = 700
"""A problem line never exceeds this (file path + path + a message with cut values)."""

NOT_RULES = "apiVersion: unknown key; expected one of: rules"  # a request given to the rules loader
NOT_REQUEST = "apiVersion: is required"                        # a rule file given to the request loader
DNS = "must be a DNS label"
FINITE = "must be a finite number, got"
HUGE = "the number 100000000000…0000 is too large (5001 digits)"
DATE = "'2001-13-45' looks like a date but is not one (month must be in 1..12)"
DEEP = "lists and mappings are nested more than 32 deep"
LONG = "… (5000 characters)"

#: file -> (what the request loader says, what the rules loader says)
CASES: dict[str, tuple[str, str]] = {
    # numbers Python cannot hold or that are not numbers
    "request_huge_int.yaml": (HUGE, HUGE),
    "request_long_int.yaml": ("cluster.nodes: must be at most 16, got 100000000000…0000 (100 digits)",
                              NOT_RULES),
    "request_memory_overflow.yaml": ("(404 characters) is more memory than any machine has", NOT_RULES),
    "request_cpu_float_inf.yaml": ("cluster.cpu: must be a whole number, got the text '1.0e999'",
                                   NOT_RULES),
    "request_cpu_nan.yaml": ("cluster.cpu: must be a whole number, got nan", NOT_RULES),
    "request_retention_huge.yaml": ("devlake.retention: ", NOT_RULES),
    "rules_huge_int.yaml": (HUGE, HUGE),
    "rules_float_inf.yaml": (NOT_REQUEST, f"rules[0].threshold: {FINITE} '1.0e999'"),
    "rules_inf.yaml": (NOT_REQUEST, f"rules[0].threshold: {FINITE} inf"),
    "rules_nan.yaml": (NOT_REQUEST, f"rules[0].threshold: {FINITE} nan"),
    "rules_recover_nan.yaml": (NOT_REQUEST, f"rules[0].recover: {FINITE} nan"),
    "rules_for_huge.yaml": (NOT_REQUEST, "rules[0].for: must be a duration such as 30s"),
    "any_huge_int.yaml": ("must be a mapping of keys", HUGE),
    # a trailing newline in every string a pattern validates
    "request_name_newline.yaml": (f"name: 'blog\\n' {DNS}", NOT_RULES),
    "request_retention_newline.yaml": ("devlake.retention: '30d\\n' is not an InfluxQL duration",
                                       NOT_RULES),
    "request_owner_newline.yaml": ("owner: 'dev@example.com\\nroot@example.com' must be one line",
                                   NOT_RULES),
    "request_path_newline.yaml": ("saas.expose.path_check: '/wp-admin/\\n' must be a URL path", NOT_RULES),
    "request_webhook_newline.yaml": ("devtower.notify[0]: 'https://hooks.example.com/x\\n' is not a "
                                     "webhook URL", NOT_RULES),
    "rules_name_newline.yaml": (NOT_REQUEST, "rules[0].name: 'web-slow\\n': lowercase letters"),
    "rules_measurement_newline.yaml": (NOT_REQUEST, "measurement 'service_http\\n' is not a measurement"),
    "rules_group_by_newline.yaml": (NOT_REQUEST, "rules[0].watch: 'node\\n': tag names are"),
    "rules_where_newline.yaml": (NOT_REQUEST, "tag value 'web-n1\\n': a tag value has no newline"),
    "rules_label_newline.yaml": (NOT_REQUEST, "label names 'team\\n' must be letters"),
    "rules_webhook_newline.yaml": (NOT_REQUEST, "got 'http://127.0.0.1:9000/x\\n'"),
    # one statement only
    "rules_two_statements.yaml": (NOT_REQUEST, "rules[0].watch: only one SELECT statement is allowed"),
    "rules_two_statements_where.yaml": (NOT_REQUEST, "rules[0].watch: only one SELECT statement is "
                                        "allowed"),
    # markup in echoed strings (printed as written, see test_cli_markup.py for the rest)
    "request_markup_name.yaml": (f"name: '[/x]' {DNS}", NOT_RULES),
    "request_markup_strategy.yaml": ("got the text '[bold]spread[/bold]'", NOT_RULES),
    "request_markup_key.yaml": ("[/x]: unknown key", NOT_RULES),
    "rules_markup_name.yaml": (NOT_REQUEST, "rules[0].name: '[/x]': lowercase letters"),
    "rules_markup_condition.yaml": (NOT_REQUEST, "got '[bold]>[/bold]'"),
    # unicode
    "request_unicode_name.yaml": (f"name: 'blög' {DNS}", NOT_RULES),
    "request_unicode_digits.yaml": ("cluster.memory: '２GiB' is not a memory size", NOT_RULES),
    "request_owner_bidi.yaml": ("owner: 'dev\\u202e@example.com' must be one line", NOT_RULES),
    "rules_unicode_name.yaml": (NOT_REQUEST, "rules[0].name: 'règle': lowercase letters"),
    "rules_unicode_digits.yaml": (NOT_REQUEST, "rules[0].for: must be a duration such as 30s, 5m or "
                                  "1h30m, got '３０s'"),
    # duplicated keys
    "request_duplicate_key.yaml": ("cluster.nodes: duplicate key 'nodes' (first at line 6)", NOT_RULES),
    "rules_duplicate_key.yaml": (NOT_REQUEST, "rules[0].watch.field: duplicate key 'field'"),
    # wrong types at every level
    "request_wrong_type_top.yaml": ("cluster: must be a mapping (key: value lines), got 3", NOT_RULES),
    "request_wrong_type_middle.yaml": ("saas.tiers: must be a mapping", NOT_RULES),
    "request_wrong_type_leaf.yaml": ("saas.expose.port: must be a port number", NOT_RULES),
    "request_wrong_type_key.yaml": ("cluster: key '1' must be text", NOT_RULES),
    "rules_wrong_type_top.yaml": (NOT_REQUEST, "rules: must be a list, got 5"),
    "rules_wrong_type_rule.yaml": (NOT_REQUEST, "rules[0]: must be a mapping, got 5"),
    "rules_wrong_type_middle.yaml": (NOT_REQUEST, "rules[0].watch: must be a mapping"),
    "rules_wrong_type_leaf.yaml": (NOT_REQUEST, "rules[0].watch.group_by: must be a list, got 'node'"),
    "rules_wrong_type_key.yaml": (NOT_REQUEST, "rules[0].labels: key 1 must be text"),
    # 5000-character values and keys: echoed cut
    "request_long_value.yaml": (f"name: 'aaaaaaaaaa{'a' * 50}'{LONG} {DNS}", NOT_RULES),
    "request_long_key.yaml": ("cluster.aaaaaaaaaa", NOT_RULES),
    "rules_long_value.yaml": (NOT_REQUEST, f"rules[0].threshold: must be a number, got 'aaaa{'a' * 56}'"
                              f"{LONG}"),
    "rules_long_name.yaml": (NOT_REQUEST, f"rules[0].name: 'aaaa{'a' * 56}'{LONG}"),
    "rules_expression_long.yaml": (NOT_REQUEST, "is too long for a field expression"),
    "any_long_line.yaml": ("got the value 'aaaa", "must be a mapping with a `rules:` list"),
    # templates that would crash or exhaust str.format
    "rules_template_attribute.yaml": (NOT_REQUEST, "placeholder 'rule.__class__'"),
    "rules_template_width.yaml": (NOT_REQUEST, "{value} has the format '>99999999999'"),
    # values YAML cannot construct
    "request_bad_date.yaml": (DATE, DATE),
    "rules_bad_date.yaml": (DATE, DATE),
    "request_bad_tag_value.yaml": ("'three' cannot be read as !!int", "'three' cannot be read as !!int"),
    "any_python_tag.yaml": ("the YAML tag !!python/object/apply:os.system is not allowed: a request",
                            "the YAML tag !!python/object/apply:os.system is not allowed: a rule file"),
    # alias bombs (billions of items once expanded): walked once, echoed a few items deep
    "request_alias_bomb_value.yaml": ("owner: must be text, got a list", NOT_RULES),
    "rules_alias_bomb_value.yaml": (NOT_REQUEST, "rules[0].threshold: must be a number, got [['x', "),
    "any_alias_bomb.yaml": ("a8: unknown key", "a8: unknown key"),
    "any_self_alias.yaml": ("a: unknown key", "a: unknown key"),
    # not a document of either kind
    "any_empty.yaml": ("is empty", "is empty"),
    "any_comments_only.yaml": ("is empty", "is empty"),
    "any_null.yaml": ("must be a mapping of keys", "must be a mapping with a `rules:` list"),
    "any_list.yaml": ("must be a mapping of keys (apiVersion, kind, name, owner, ...), got a list",
                      "must be a mapping with a `rules:` list"),
    "any_scalar.yaml": ("got the value 'just some text'", "must be a mapping with a `rules:` list"),
    "any_binary_garbage.yaml": ("is a binary file", "is a binary file"),
    "any_not_utf8.yaml": ("is not UTF-8 text", "is not UTF-8 text"),
    "any_control_char.yaml": ("the control character #x0007 is not allowed",
                              "the control character #x0007 is not allowed"),
    "any_deep_nesting.yaml": (DEEP, DEEP),
    "any_malformed.yaml": ("malformed YAML: while parsing a flow sequence",
                           "malformed YAML: while parsing a flow sequence"),
    "any_two_documents.yaml": ("expected a single document", "expected a single document"),
}


def test_every_hostile_file_has_expectations() -> None:
    assert sorted(p.name for p in HOSTILE.iterdir()) == sorted(CASES)


def _check_lines(lines: list[str], path: Path, fragment: str) -> None:
    assert any(fragment in line for line in lines), (fragment, lines)
    for line in lines:
        assert line.startswith(str(path)), line
        assert "\n" not in line and len(line) <= LONGEST_LINE, line


@pytest.mark.parametrize("name", sorted(CASES))
def test_request_loader(name: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        load_request(HOSTILE / name, BIG)
    _check_lines(info.value.lines(), HOSTILE / name, CASES[name][0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_rules_loader(name: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rule_file(HOSTILE / name)
    _check_lines(info.value.lines(), HOSTILE / name, CASES[name][1])


@pytest.mark.timeout(1800)  # 150 CLI runs of about a second of CPU each, on a shared machine
def test_every_document_through_both_commands(tmp_path: Path) -> None:
    """The real CLI, a subprocess per document and loader: exit 1, the message, no traceback."""
    env = {"OVERCLOUD_STATE_DIR": str(tmp_path / "state"), "OVERCLOUD_CONFIG": ""}
    runs = [(name, i, cmd) for name in sorted(CASES)
            for i, cmd in enumerate((["request", "validate"], ["alerts", "validate"]))]

    def run(item: tuple[str, int, list[str]]) -> str | None:
        name, i, cmd = item
        path = HOSTILE / name
        proc = run_cli([*cmd, str(path)], env, timeout=120)
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 1 or "Traceback" in proc.stderr or proc.stdout:
            return f"{' '.join(cmd)} {name}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        if not any(CASES[name][i] in line for line in lines):
            return f"{' '.join(cmd)} {name}: no {CASES[name][i]!r} in\n{proc.stderr[-2000:]}"
        if any(len(line) > LONGEST_LINE for line in lines):
            return f"{' '.join(cmd)} {name}: a line longer than {LONGEST_LINE}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(run, runs) if f]
    assert not failures, "\n\n".join(failures)
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.sqlite"))


# --- the event boundary: OverCloudRequested.spec is validated again by from_spec ------------


def _spec() -> dict[str, Any]:
    return load_request(EXAMPLES / "my-overcloud.yaml", BIG).to_spec()


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec = _spec()
    here = spec
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return spec


SPEC_FAULTS: dict[str, tuple[Any, str, str]] = {
    "name with a newline": (_with(("name",), "my-blog\n"), "name", DNS),
    "name with markup": (_with(("name",), "[/x]"), "name", DNS),
    "owner with a newline": (_with(("owner",), "dev\nroot"), "owner", "must be one line"),
    "retention with a newline": (_with(("devlake", "retention"), "30d\n"), "devlake.retention",
                                 "is not an InfluxQL duration"),
    "nodes of 5000 digits": (_with(("cluster", "nodes"), 10**5000), "cluster.nodes",
                             "must be at most 16, got a number of about 5000 digits"),
    "cpu nan": (_with(("cluster", "cpu"), math.nan), "cluster.cpu", "must be a whole number, got nan"),
    "memory overflowing a float": (_with(("cluster", "memory"), "1" + "0" * 400 + "GiB"), "cluster.memory",
                                   "is more memory than any machine has"),
    "5000-character owner": (_with(("owner",), "o" * 5000), "owner", "at most 254 characters"),
    "webhook with a newline": (_with(("devtower", "notify"), ["https://h.example.com/\n"]),
                               "devtower.notify[0]", "is not a webhook URL"),
    "a spec that is a list": ([], "", "must be a mapping, got a list"),
}


@pytest.mark.parametrize("fault", sorted(SPEC_FAULTS))
def test_from_spec_holds_the_same_line(fault: str) -> None:
    spec, path, fragment = SPEC_FAULTS[fault]
    with pytest.raises(RequestInvalid) as info:
        OverCloudRequest.from_spec(spec)
    assert any(p.path == path and fragment in p.message for p in info.value.problems), \
        info.value.problems
    assert all(len(line) <= LONGEST_LINE for line in info.value.lines())


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("request_")))
def test_corpus_through_the_event(name: str) -> None:
    """A request document that YAML can read, sent as an `OverCloudRequested` event (encoded
    and decoded as on the bus), is refused by `from_spec` with `RequestInvalid`."""
    if name == "request_duplicate_key.yaml":
        pytest.skip("a duplicate key exists only in the text: the spec, a dict, cannot carry it")
    try:
        data = yaml.load((HOSTILE / name).read_text(), Loader=DocumentLoader)
    except yaml.YAMLError:
        pytest.skip("YAML itself refuses this document: no spec can carry it")
    with pytest.raises(RequestInvalid):
        OverCloudRequest.from_spec(data)
    if "alias_bomb" in name:
        return  # as JSON it is billions of items: the CLI refuses it before anything is published
    try:
        raw = encode_event(OverCloudRequested(name="x", owner="y", spec=data))
        spec = decode_event(raw).spec  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return  # the wire itself refuses it (a non-text key, a number JSON cannot hold)
    with pytest.raises(RequestInvalid):
        OverCloudRequest.from_spec(spec)


# --- the helpers the fixes rest on ------------------------------------------------------------


def test_echo_cuts_and_never_raises() -> None:
    assert echo("short") == "'short'"
    assert echo("x" * 5000) == repr("x" * 60) + "… (5000 characters)"
    assert echo(10**400) == "100000000000…0000 (401 digits)"
    assert echo(10**5000) == "a number of about 5000 digits"  # repr() of it raises ValueError
    nested: list[Any] = []
    for _ in range(50):
        nested = [nested] * 10  # 10^50 leaves once expanded, like an alias bomb
    assert len(echo(nested)) <= 121
    assert len(echo({"k" * 5000: [10**5000]})) <= 121


def test_memory_is_exact_and_bounded() -> None:
    assert memory_bytes("1.5GiB") == 3 * 2**29
    assert memory_bytes("4.35MB") == 4_350_000  # through a float: int(4.35 * 10**6) == 4349999
    for bad in ("1" + "0" * 400 + "GiB", "1025TiB", "２GiB", "1GiB\nx", "1 \n GiB"):
        with pytest.raises(ValueError):
            memory_bytes(bad)


def test_one_statement_but_semicolons_in_quotes() -> None:
    assert parse_query("SELECT f FROM m WHERE host = 'a;b' GROUP BY host;") == (
        "m", "f", {"host": "a;b"}, ["host"])
    with pytest.raises(ValueError, match="only one SELECT statement"):
        parse_query("SELECT f FROM m; DROP DATABASE x")


def test_templates() -> None:
    check_template("{host} at {value:.1f}% (> {threshold:g}) {value:>8} {value:,.2f}")
    for bad in ("{rule.__class__}", "{value[0]}", "{value:>99999999999}", "{value:{w}}", "{0}",
                "{value!r}"):
        with pytest.raises(ValueError):
            check_template(bad)
