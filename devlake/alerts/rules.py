"""The alert rule format: YAML, validated with pydantic, every problem reported at once.

A rule file is a mapping with one key, `rules`, a list of rules::

    rules:
      - name: web-slow
        watch: {measurement: service_http, field: latency_ms, group_by: [overcloud, node]}
        condition: ">"          # > >= < <= == !=
        threshold: 800
        recover: 500            # hysteresis: resolved only once below this (default: threshold)
        for: 1m                 # the condition must hold this long before it fires
        no_data: {policy: keep, after: 2m}   # keep | alert | resolve when a group goes silent
        severity: warning       # critical | warning | info
        labels: {team: web}
        annotations: {summary: "{node} answers in {value:.0f} ms"}
        actions: [{type: webhook, url: "http://127.0.0.1:9000/hook"}, {type: alertmanager}]

`watch` may instead be an InfluxQL expression, evaluated on the stream as a filter:
`query: "SELECT 100 * mem_usage / capacity_memory FROM resource_undercloud WHERE host = 'lxd1'
GROUP BY host"` (one field or arithmetic of fields, tag equalities joined by AND, GROUP BY tags).
The same statement runs against the DevLake in `overcloud alerts test`.

Built-in rules (`BUILTIN`) are always in force; a rule in the file with a built-in's name is
merged over it, so `- {name: node-overloaded, for: 5s}` only shortens its `for`, and
`enabled: false` turns it off. Why a format of our own and not Prometheus' or Grafana's:
neither has a recovery threshold (hysteresis) or a no-data policy per rule that a streaming
evaluator can honour, and Grafana's provisioning format is exported from this one (`grafana`).
"""

from __future__ import annotations

import ast
import copy
import difflib
import math
import operator
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from overcloud.problems import DocumentInvalid, DocumentLoader, Problem, dotted, echo, yaml_problem

Loc = tuple[int | str, ...]
MAX_FILE_BYTES = 1 << 20

# validating patterns are used with fullmatch: `$` also matches before a trailing newline
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DURATION = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)")
MAX_EXPRESSION = 500
"""Characters of a field expression or streaming query: a few fields and operators, not a
program (a 10000-term sum would also exhaust the recursion of the expression compiler)."""
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 366 * 86400.0
"""No `for` or no-data wait is longer than a year (and none is infinite)."""


def parse_duration(v: Any) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `500ms` or a plain number of seconds."""
    if isinstance(v, bool):
        raise ValueError(f"must be a duration such as 30s or 5m, got {str(v).lower()}")
    if isinstance(v, int | float):
        seconds = float(v) if not isinstance(v, int) or abs(v) < 10**20 else math.inf
    elif isinstance(v, str) and v.strip() and _DURATION.sub("", v.strip()) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(v.strip()))
    else:
        raise ValueError(f"must be a duration such as 30s, 5m or 1h30m, got {echo(v)}")
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION:
        raise ValueError(f"must be a duration from 0 s to a year, got {echo(v)}")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


# --- field expressions ---------------------------------------------------------------------

_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def compile_expression(text: str) -> tuple[Callable[[Mapping[str, Any]], float | None], list[str]]:
    """A field name or arithmetic of fields (`100 * mem_usage / capacity_memory`) as a function.

    Returns (function of a sample's fields → value or None when a field is missing or the
    arithmetic is undefined, the field names it reads). Raises ValueError for anything else.
    """
    text = text.strip()
    if _IDENT.fullmatch(text):  # the common case: one field, no arithmetic
        return _single(text), [text]
    if len(text) > MAX_EXPRESSION:
        raise ValueError(f"{echo(text)} is too long for a field expression (at most "
                         f"{MAX_EXPRESSION} characters)")
    try:
        tree = ast.parse(text.replace('"', ""), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL, a 5000-digit literal
        raise ValueError(f"{echo(text)} is not a field name or arithmetic of fields (+ - * /)") from None
    names: list[str] = []

    def build(node: ast.AST) -> Callable[[Mapping[str, Any]], float]:
        if isinstance(node, ast.Name) and _IDENT.fullmatch(node.id):
            names.append(node.id)
            key = node.id
            return lambda f: _num(f[key])
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
                and not isinstance(node.value, bool) and math.isfinite(c := float(node.value)):
            return lambda f: c
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = build(node.operand)
            return lambda f: -inner(f)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op, a, b = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda f: op(a(f), b(f))
        raise ValueError(f"{echo(text)}: only field names, numbers and + - * / are allowed")

    try:
        fn = build(tree)
    except RecursionError:  # within MAX_EXPRESSION only by nesting hundreds of brackets
        raise ValueError(f"{echo(text)} nests too deeply") from None

    def evaluate(fields: Mapping[str, Any]) -> float | None:
        try:
            return fn(fields)
        except (KeyError, ZeroDivisionError, TypeError):
            return None

    return evaluate, names


def _num(v: Any) -> float:
    if type(v) is str:
        raise TypeError
    return float(v)


def _single(name: str) -> Callable[[Mapping[str, Any]], float | None]:
    def value(fields: Mapping[str, Any]) -> float | None:
        v = fields.get(name)
        if v is None or type(v) is str:
            return None
        return float(v)

    return value


_QUERY = re.compile(
    r"\s*SELECT\s+(?P<expr>.+?)\s+FROM\s+(?P<m>\"[^\"]+\"|[A-Za-z_][\w.]*)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+GROUP\s+BY\s+(?P<group>.+?))?\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_COND = re.compile(r"\s*\"?([A-Za-z_]\w*)\"?\s*=\s*'([^']*)'\s*")


def _statements(q: str) -> int:
    """How many statements `q` holds: `;` outside quotes ends one (a trailing `;` is fine)."""
    count, quote = 1, ""
    for i, c in enumerate(q):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == ";" and q[i + 1:].strip():
            count += 1
    return count


def parse_query(q: str) -> tuple[str, str, dict[str, str], list[str]]:
    """(measurement, field expression, tag equalities, group-by tags) of a streaming query."""
    if len(q) > MAX_EXPRESSION:
        raise ValueError(f"is {len(q)} characters long; a streaming query is one short "
                         f"statement (at most {MAX_EXPRESSION} characters)")
    if _statements(q) > 1:
        raise ValueError("only one SELECT statement is allowed: remove what follows the ';'")
    m = _QUERY.fullmatch(q)
    if not m:
        raise ValueError("must look like SELECT <field or arithmetic> FROM <measurement> "
                         "[WHERE tag = 'value' AND ...] [GROUP BY tag, ...]")
    where: dict[str, str] = {}
    if m["where"]:
        for part in re.split(r"\s+AND\s+", m["where"], flags=re.IGNORECASE):
            c = _COND.fullmatch(part)
            if not c:
                raise ValueError(f"WHERE: {echo(part.strip())} is not tag = 'value' (only equalities "
                                 "joined by AND are evaluated on the stream; no time conditions)")
            where[c[1]] = c[2]
    group = [g.strip().strip('"') for g in m["group"].split(",")] if m["group"] else []
    if any(not _IDENT.fullmatch(g) for g in group):
        raise ValueError("GROUP BY takes tag names separated by commas (no time(), no *)")
    return m["m"].strip('"'), m["expr"].strip(), where, group


# --- the model -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Watch(_Model):
    measurement: str = ""
    field: str = ""
    """A field name, or arithmetic of fields of the same sample."""
    where: dict[str, str] = Field(default_factory=dict)
    """Tag scope: only samples whose tags have these values."""
    group_by: list[str] = Field(default_factory=list)
    """One alert per distinct value of these tags (e.g. host); none: one alert for all."""
    query: str = ""
    """Instead of the above: an InfluxQL SELECT, see the module docstring."""

    @model_validator(mode="after")
    def _resolve(self) -> Watch:
        if self.query:
            if self.measurement or self.field or self.where or self.group_by:
                raise ValueError("give either query or measurement/field/where/group_by, not both")
            m, expr, where, group = parse_query(self.query)
            object.__setattr__(self, "measurement", m)
            object.__setattr__(self, "field", expr)
            object.__setattr__(self, "where", where)
            object.__setattr__(self, "group_by", group)
        if not self.measurement or not self.field:
            raise ValueError("needs measurement and field (or a query)")
        if not _IDENT.fullmatch(self.measurement):
            raise ValueError(f"measurement {echo(self.measurement)} is not a measurement name")
        compile_expression(self.field)
        bad = [t for t in [*self.where, *self.group_by] if not _IDENT.fullmatch(t)]
        if bad:
            raise ValueError(f"{_some(bad)}: tag names are letters, digits and _")
        bad = [v for v in self.where.values() if not v.isprintable()]
        if bad:
            raise ValueError(f"tag value {_some(bad)}: a tag value has no newline, tab or "
                             "control character (line protocol cannot carry one)")
        return self


class NoData(_Model):
    policy: Literal["keep", "alert", "resolve"] = "keep"
    """What a group that stopped sending does: keep its state, fire, or resolve and be forgotten."""
    after: Duration = 120.0
    """How long without a sample counts as no data."""

    @model_validator(mode="after")
    def _positive(self) -> NoData:
        if self.after <= 0:
            raise ValueError("after must be longer than 0 s")
        return self


class WebhookAction(_Model):
    type: Literal["webhook"]
    url: str = ""
    """Where to POST; empty: the `alerts.webhook_url` setting."""

    @model_validator(mode="after")
    def _http(self) -> WebhookAction:
        if self.url and (not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", self.url)
                         or not self.url.isprintable()):
            raise ValueError("url must start with http:// or https:// and contain no spaces or "
                             f"control characters, got {echo(self.url)}")
        return self


class AlertmanagerAction(_Model):
    type: Literal["alertmanager"]


class EventAction(_Model):
    type: Literal["event"]
    event: Literal["node_overloaded"]
    """node_overloaded: publish NodeOverloaded / NodeRecovered (needs group_by to include host)."""


Action = Annotated[WebhookAction | AlertmanagerAction | EventAction, Field(discriminator="type")]
Condition = Literal[">", ">=", "<", "<=", "==", "!="]


class Rule(_Model):
    name: str
    enabled: bool = True
    watch: Watch
    condition: Condition
    threshold: float = Field(allow_inf_nan=False)
    """Finite: a rule with a threshold of NaN or infinity could never fire."""
    recover: float | None = Field(default=None, allow_inf_nan=False)
    """Recovery threshold: a firing alert resolves only on the far side of it (hysteresis)."""
    for_: Duration = Field(default=0.0, alias="for")
    no_data: NoData = Field(default_factory=NoData)
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    """Templates: `{host}`, `{value:.1f}` (tag names, value, threshold, rule; short formats)."""
    actions: list[Action] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _bools(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("threshold", "recover"):
                if isinstance(data.get(key), bool):
                    data = {**data, key: float(data[key])}  # up == false → 0
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"{echo(v)}: lowercase letters, digits, '-' and '_' (at most 63)")
        return v

    @model_validator(mode="after")
    def _cross(self) -> Rule:
        r, t = self.recover, self.threshold
        if r is not None:
            if self.condition in ("==", "!="):
                raise ValueError(f"recover does not apply to condition {self.condition!r}: remove it")
            if self.condition in (">", ">=") and r > t:
                raise ValueError(f"recover ({r:g}) must be at or below threshold ({t:g}) for "
                                 f"condition {self.condition!r}: it resolves once the value falls below it")
            if self.condition in ("<", "<=") and r < t:
                raise ValueError(f"recover ({r:g}) must be at or above threshold ({t:g}) for "
                                 f"condition {self.condition!r}: it resolves once the value rises above it")
        bad = [k for k in self.labels if not _IDENT.fullmatch(k)]
        if bad:
            raise ValueError(f"label names {_some(bad)} must be letters, digits and _ "
                             "(Alertmanager's rule)")
        if any(isinstance(a, EventAction) for a in self.actions) and "host" not in self.watch.group_by:
            raise ValueError("the node_overloaded event names a host: watch.group_by must include host")
        for key, text in self.annotations.items():
            try:
                check_template(text)
                render(text, {"value": 1.0, "threshold": 1.0, "rule": self.name})
            except (ValueError, IndexError) as exc:
                raise ValueError(f"annotation {echo(key)} is not a valid template: {exc}") from None
        return self

    @property
    def recover_at(self) -> float:
        return self.threshold if self.recover is None else self.recover


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_SPEC = re.compile(r"(?:.?[<>^=])?[+\- ]?#?0?[0-9]{0,2}[,_]?(?:\.[0-9]{1,2})?[bcdeEfFgGnosxX%]?")


def check_template(template: str) -> None:
    """ValueError unless every `{…}` is a plain name with a short format spec.

    `str.format` would also follow `{rule.__class__}` or `{value[0]}` (AttributeError,
    TypeError) and pad to `{value:>99999999999}` (a MemoryError): none of that in a rule.
    """
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not _IDENT.fullmatch(name):
            raise ValueError(f"placeholder {echo(name)}: a placeholder is a name such as {{host}} "
                             "or {value:.1f}")
        if conversion or (spec and not _SPEC.fullmatch(spec)):
            raise ValueError(f"{{{name}}} has the format {echo(spec)}; a format is short, "
                             "e.g. .1f or >8")


def render(template: str, values: Mapping[str, Any]) -> str:
    """`{host} at {value:.0f}%`: unknown names stay as written."""
    return template.format_map(_SafeDict(values))


class RuleFile(_Model):
    rules: list[dict[str, Any]] = Field(default_factory=list)


BUILTIN: list[dict[str, Any]] = [
    {
        "name": "node-overloaded",
        "watch": {"measurement": "resource_undercloud", "field": "cpu_percent", "group_by": ["host"]},
        "condition": ">",
        "threshold": 85,
        "recover": 70,
        "for": "30s",
        "no_data": {"policy": "keep", "after": "2m"},
        "severity": "critical",
        "labels": {"layer": "undercloud"},
        "annotations": {
            "summary": "UnderCloud host {host}: CPU {value:.0f}% of capacity (> {threshold:g}%)",
            "description": "Machine containers on {host} use more CPU than the host has to spare; "
                           "the orchestrator may migrate some to a quieter host.",
        },
        "actions": [{"type": "event", "event": "node_overloaded"}, {"type": "alertmanager"},
                    {"type": "webhook"}],
    },
]


# --- loading with line numbers -------------------------------------------------------------


def _some(values: list[str]) -> str:
    """The first few of `values`, each quoted and cut, and how many more."""
    shown = ", ".join(echo(v) for v in values[:3])
    return shown + (f" and {len(values) - 3} more" if len(values) > 3 else "")


class RulesInvalid(DocumentInvalid):
    """The rule file has problems; `problems` lists all of them."""


@dataclass
class _Lines:
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set)

    def walk(self, node: yaml.Node, loc: Loc) -> None:
        if id(node) in self._seen:  # an alias: walked once already (an alias bomb stays small)
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*loc, i)] = item.start_mark.line + 1
                self.walk(item, (*loc, i))
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                line = k.start_mark.line + 1
                key = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                if key in seen:
                    self.problems.append(Problem(dotted((*loc, key)), line, f"duplicate key {echo(key)} "
                                                 f"(first at line {seen[key]}); write it once"))
                    continue
                seen[key] = line
                self.lines[(*loc, key)] = line
                self.walk(v, (*loc, key))


def load_rule_file(path: Path) -> list[Rule]:
    """Built-ins merged with the rules of `path`; raises `RulesInvalid` listing every problem."""
    source = str(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise RulesInvalid(source, [Problem("", None, "is a directory, not a rule file")]) from None
    except OSError as exc:
        raise RulesInvalid(source, [Problem("", None, f"cannot read it: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RulesInvalid(source, [Problem("", None, f"is {len(data)} bytes; a rule file is small YAML")])
    if b"\0" in data:
        raise RulesInvalid(source, [Problem("", None, "is a binary file, not YAML rules")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RulesInvalid(source, [Problem("", line, "is not UTF-8 text")]) from None
    return parse_rules(text, source)


def parse_rules(text: str, source: str = "<string>") -> list[Rule]:
    try:
        node = yaml.compose(text, Loader=DocumentLoader)
    except yaml.YAMLError as exc:
        raise RulesInvalid(source, [yaml_problem(exc, text, "a rule file")]) from None
    if node is None:
        raise RulesInvalid(source, [Problem("", None, "is empty: write `rules:` and a list of rules")])
    tree = _Lines()
    tree.walk(node, ())
    try:
        data = DocumentLoader(text).get_single_data()
    except yaml.YAMLError as exc:  # a tag such as !!python/object, a date in month 13
        raise RulesInvalid(source, _sorted([*tree.problems, yaml_problem(exc, text, "a rule file")])
                           ) from None
    if not isinstance(data, dict):
        raise RulesInvalid(source, [Problem("", node.start_mark.line + 1,
                                            "must be a mapping with a `rules:` list")])
    problems = list(tree.problems)
    try:
        doc = RuleFile.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, (), tree.lines, RuleFile)
        raise RulesInvalid(source, _sorted(problems)) from None
    rules, more = merge_with_builtins(doc.rules, tree.lines)
    problems += more
    if problems:
        raise RulesInvalid(source, _sorted(problems))
    return rules


def builtin_rules() -> list[Rule]:
    return [Rule.model_validate(copy.deepcopy(r)) for r in BUILTIN]


def merge_with_builtins(raw_rules: list[dict[str, Any]],
                        lines: Mapping[Loc, int] | None = None) -> tuple[list[Rule], list[Problem]]:
    """Built-ins (overridden by same-named file rules) followed by the file's other rules."""
    lines = lines or {}
    builtins = {r["name"]: r for r in BUILTIN}
    merged: dict[str, dict[str, Any]] = {n: copy.deepcopy(r) for n, r in builtins.items()}
    where: dict[str, int] = {}
    problems: list[Problem] = []
    for i, raw in enumerate(raw_rules):
        loc: Loc = ("rules", i)
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and name in where:
            problems.append(Problem(dotted((*loc, "name")), lines.get((*loc, "name")),
                                    f"rule {echo(name)} is defined twice (first as rules[{where[name]}])"))
            continue
        if isinstance(name, str):
            where[name] = i
        doc = _deep_merge(builtins[name], raw) if isinstance(name, str) and name in builtins else raw
        try:
            Rule.model_validate(doc)
        except ValidationError as exc:
            problems += _problems(exc, loc, lines, Rule)
            continue
        merged[str(name)] = doc
    rules = [Rule.model_validate(d) for d in merged.values()] if not problems else []
    return [r for r in rules if r.enabled], problems


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


def _problems(exc: ValidationError, prefix: Loc, lines: Mapping[Loc, int],
              model: type[BaseModel]) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        # union members and validators add their names to the location; the last part of an
        # unknown key's location is the user's key, which may well be called `webhook`
        keep = err["loc"][-1:] if err["type"] == "extra_forbidden" else ()
        raw_loc = tuple(p for p in err["loc"][: len(err["loc"]) - len(keep)] if not (isinstance(p, str) and (
            p.startswith(("function-", "literal[")) or p in ("webhook", "alertmanager", "event")))) + keep
        loc: Loc = (*prefix, *raw_loc)
        if raw_loc and raw_loc[-1] == "[key]":  # a mapping key that is not text, e.g. `1: web`
            loc = loc[:-2]
            out.append(Problem(dotted(loc), _line(lines, loc), f"key {echo(raw_loc[-2])} must be text"))
            continue
        look = loc[:-1] if err["type"] == "missing" else loc
        out.append(Problem(dotted(loc), _line(lines, look), _message(err, raw_loc, model)))
    return out


def _line(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of the nearest enclosing key that has one."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _message(err: Any, loc: Loc, model: type[BaseModel]) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _allowed(model, loc[:-1])
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if not allowed:  # e.g. inside an action, whose keys depend on its type
            return "unknown key"
        return (f"unknown key{f' (did you mean {near[0]!r}?)' if near else ''}; "
                f"expected one of: {', '.join(allowed)}")
    if kind == "literal_error":
        return f"must be {err['ctx']['expected']}, got {echo(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {echo(value)}: with NaN or infinity the rule never fires"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {echo(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {echo(value)}"
    if kind == "list_type":
        return f"must be a list, got {echo(value)}"
    if kind == "union_tag_invalid":
        return f"type must be one of webhook, alertmanager, event; got {echo(value.get('type'))}" \
            if isinstance(value, dict) else "must be a mapping with a type"
    if kind == "union_tag_not_found":
        return "needs a type: webhook, alertmanager or event"
    if kind == "string_type":
        return f"must be text, got {echo(value)}"
    return str(err["msg"]).removeprefix("Value error, ")


def _allowed(model: type[BaseModel], loc: Loc) -> list[str]:
    current: Any = model
    for p in loc:
        if isinstance(p, int):
            continue
        info = current.model_fields.get(p) if isinstance(current, type) and issubclass(
            current, BaseModel) else None
        current = info.annotation if info else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def rules_in_force(path: Path | str | None) -> list[Rule]:
    """Built-ins, plus and overridden by the rule file when one is given."""
    return load_rule_file(Path(path)) if path else [r for r in builtin_rules() if r.enabled]
