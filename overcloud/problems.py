"""Problems in a user's document (a request, a rule file): every one at once, each with its
place, and one error that carries them all.

Shared by the request loader (`orchestrator/request.py`) and the alert rules loader
(`devlake/alerts/rules.py`), so both print `FILE:LINE: path: message` the same way, quote
the user's values the same way (`echo`: cut, so a 5000-character line or a 4000-digit number
never floods the terminal) and read YAML the same way (`DocumentLoader`: a value YAML
cannot turn into data — a date in month 13, `!!int abc`, a number of thousands of digits,
lists nested thousands deep — is a `BadValue` with its line, never a Python exception).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

import yaml

from overcloud.errors import UserError

ECHO_CHARS = 60
"""How much of a user's value a message quotes; the rest is counted, not shown."""
MAX_MESSAGE = 400
"""A message longer than this is cut when printed (a safety net; `echo` keeps them short)."""
MAX_DIGITS = 100
"""Longer integers are refused while reading YAML: no setting takes such a number, and
Python cannot even print one of more than 4300 digits."""
MAX_DEPTH = 32
"""Lists and mappings nested deeper are refused: a request or rule file is a few levels
deep, and PyYAML's composer recurses once per level (thousands deep is a RecursionError)."""


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """`value` as a message quotes it: its repr, cut to about `limit` characters.

    Long text keeps its start and says how long it was; huge numbers keep their first and
    last digits; lists and mappings are shown a few items and levels deep (an alias bomb
    expands to billions of items, a full repr would never finish).
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        return _number(value, limit)
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxdict, shown.maxtuple = 2, 4, 4, 4
    shown.maxstring = shown.maxother = shown.maxlong = limit
    try:
        text = shown.repr(value)
    except ValueError:  # an int inside that is too long to print
        text = f"a {type(value).__name__}"
    return text if len(text) <= 2 * limit else text[: 2 * limit] + "…"


def _number(value: int, limit: int) -> str:
    if value.bit_length() > 14_000:  # more than 4300 digits: repr() raises
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:12]}…{text[-4:]} ({len(text.lstrip('-'))} digits)"


def dotted(loc: tuple[int | str, ...]) -> str:
    """`("saas", "tiers", 0)` → `saas.tiers[0]`; a key as long as a paragraph is cut, one
    with a newline or another control character is quoted (`'a\\n'`), so a problem stays
    one line."""
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
            continue
        key = str(p)
        if not key.isprintable():
            key = echo(key)
        elif len(key) > ECHO_CHARS:
            key = f"{key[:ECHO_CHARS]}…"
        out += f".{key}" if out else key
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (dotted path, 1-based line) and what to do."""

    path: str
    line: int | None
    message: str

    def format(self, source: str) -> str:
        """`FILE:LINE: path: message` (line and path left out when unknown)."""
        where = f"{source}:{self.line}" if self.line else source
        message = self.message if len(self.message) <= MAX_MESSAGE else self.message[:MAX_MESSAGE] + "…"
        return f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}"


class DocumentInvalid(UserError):
    """A document has problems; `problems` lists all of them, in document order."""

    what = ""
    """Said after the count, e.g. " in the OverCloud request:"."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        super().__init__(f"{source}: {n} problem{'s' * (n != 1)}{self.what}\n"
                         + "\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.problems]


# --- reading YAML ----------------------------------------------------------------------------


class BadValue(yaml.MarkedYAMLError):
    """A value YAML parsed but cannot turn into data; `problem` says why, for the user."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class DocumentLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but every failure is a `yaml.MarkedYAMLError` with a line.

    The safe constructors raise ValueError (`2001-13-45`, `!!int abc`, an integer of
    5000 digits), KeyError (`!!bool maybe`) or AttributeError (`!!timestamp x`), and the
    composer recurses once per nesting level; a loader must turn all of them into a
    message about the document.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise BadValue(f"lists and mappings are nested more than {MAX_DEPTH} deep; "
                               "this document is a few levels deep",
                               self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise BadValue(_unreadable(node, exc), node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "").lstrip("+-")
        if len(text) > MAX_DIGITS:
            size = f"{len(text)} digits" if text.isdigit() else f"{len(text)} characters"
            raise BadValue(f"the number {_digits(text)} is too large ({size})", node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value).bit_length() > MAX_DIGITS * 3.33:  # sexagesimal 1:2:3:… grows fast
            raise BadValue(f"the number {echo(node.value)} is too large", node.start_mark)
        return value


DocumentLoader.add_constructor("tag:yaml.org,2002:int", DocumentLoader.construct_yaml_int)


def yaml_problem(exc: yaml.YAMLError, text: str, kind: str) -> Problem:
    """What PyYAML refused, as one line with its line number; `kind` names the document
    ("a request", "a rule file") in the message about tags."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        return Problem("", text[: exc.position].count("\n") + 1,
                       f"is not valid YAML: the control character #x{exc.character:04x} is not allowed")
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem("", None, f"is not valid YAML: {str(exc).splitlines()[0][:MAX_MESSAGE]}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    if isinstance(exc, BadValue):  # a value YAML cannot turn into data, said in its own words
        return Problem("", line, str(exc.problem))
    problem = exc.problem or ""
    if isinstance(exc, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        tag = problem.split()[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        tag = tag if len(tag) <= ECHO_CHARS else tag[:ECHO_CHARS] + "…"
        return Problem("", line, f"the YAML tag {tag} is not allowed: {kind} is plain data "
                       "(text, numbers, true/false, lists and mappings)")
    what = " ".join(x for x in (exc.context, problem) if x)
    if exc.context_mark and mark and exc.context_mark.line != mark.line:
        what += f" (it started at line {exc.context_mark.line + 1})"
    return Problem("", line, f"malformed YAML: {what}")


def _digits(text: str) -> str:
    return f"{text[:12]}…{text[-4:]}" if len(text) > ECHO_CHARS else text


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    what = echo(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
    reason = str(exc)[:ECHO_CHARS] or type(exc).__name__
    if tag == "!!timestamp":
        if isinstance(exc, AttributeError):  # the resolver's pattern did not match at all
            reason = "a date is written YYYY-MM-DD"
        return f"{what} looks like a date but is not one ({reason}); quote it if it is text"
    return f"{what} cannot be read as {tag} ({reason})"
