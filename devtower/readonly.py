"""Which InfluxQL a developer may run on their DevLake: exactly one read statement.

This is the first of two locks. The second is InfluxDB's own: `/query` runs as the
OverCloud's read-only user, which has READ on that one database and nothing else, so a
statement these checks wrongly let through still cannot write, drop, or read another
DevLake. The checks here make the answer a clear message instead of an InfluxDB error,
and refuse what a read-only user could still do that we do not want (list every database).

A small scanner splits the text into tokens the way InfluxQL's own scanner does (quoted
identifiers, string literals, regex literals, `--` and `/* */` comments), so a `;` or a
keyword hidden in a comment or a string is seen for what it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from overcloud.errors import UserError

MAX_QUERY = 4096

_SHOW_ALLOWED = (
    ("MEASUREMENTS",), ("TAG", "KEYS"), ("TAG", "VALUES"), ("FIELD", "KEYS"), ("SERIES",),
    ("RETENTION", "POLICIES"), ("MEASUREMENT", "CARDINALITY"), ("SERIES", "CARDINALITY"),
    ("TAG", "KEY", "CARDINALITY"), ("TAG", "VALUES", "CARDINALITY"),
    ("FIELD", "KEY", "CARDINALITY"),
)
_REGEX_AFTER = {"FROM", "=~", "!~", ",", "BY", "ON", "("}


class QueryRefused(UserError):
    """The statement is not a single read of the caller's own DevLake."""


@dataclass(frozen=True)
class Token:
    kind: str  # word | ident | string | regex | number | op | punct
    text: str


def tokens(q: str) -> list[Token]:
    """InfluxQL tokens, comments dropped; raises QueryRefused on an unterminated literal."""
    out: list[Token] = []
    i, n = 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif q.startswith("--", i):
            j = q.find("\n", i)
            i = n if j < 0 else j + 1
        elif q.startswith("/*", i):
            j = q.find("*/", i + 2)
            if j < 0:
                raise QueryRefused("unterminated /* comment")
            i = j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and q[j] != c:
                j += 2 if q[j] == "\\" else 1
            if j >= n:
                raise QueryRefused("unterminated " + ("identifier" if c == '"' else "string"))
            out.append(Token("ident" if c == '"' else "string", q[i + 1:j]))
            i = j + 1
        elif c == "/" and (not out or out[-1].text.upper() in _REGEX_AFTER):
            j = i + 1
            while j < n and q[j] != "/":
                j += 2 if q[j] == "\\" else 1
            if j >= n:
                raise QueryRefused("unterminated regular expression")
            out.append(Token("regex", q[i + 1:j]))
            i = j + 1
        elif c.isalpha() or c == "_":
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(q, i)
            assert m is not None
            out.append(Token("word", m[0]))
            i = m.end()
        elif c.isdigit():
            m = re.compile(r"[0-9]+(\.[0-9]+)?[a-zµ]*").match(q, i)
            assert m is not None
            out.append(Token("number", m[0]))
            i = m.end()
        elif q.startswith(("=~", "!~", "!=", "<>", ">=", "<=", "::"), i):
            out.append(Token("op", q[i:i + 2]))
            i += 2
        elif c in "(),.;=<>+-*/%&|^:$":
            out.append(Token("punct", c))
            i += 1
        else:
            raise QueryRefused(f"unexpected character {c!r} at {i}")
    return out


def check_read_query(q: str, database: str) -> str:
    """The statement if it is one SELECT or SHOW confined to `database`, else QueryRefused."""
    if len(q) > MAX_QUERY:
        raise QueryRefused(f"query too long ({len(q)} characters, at most {MAX_QUERY})")
    if not q.strip():
        raise QueryRefused("empty query")
    toks = tokens(q)
    while toks and toks[-1].text == ";":
        toks.pop()
    if any(t.kind == "punct" and t.text == ";" for t in toks):
        raise QueryRefused("only one statement is allowed (found ';' between statements)")
    if not toks or toks[0].kind != "word":
        raise QueryRefused("a query must start with SELECT or SHOW")
    words = [t.text.upper() if t.kind == "word" else None for t in toks]
    first = words[0]
    if first == "SELECT":
        _check_select(toks, words, database)
    elif first == "SHOW":
        _check_show(toks, words, database)
    else:
        raise QueryRefused(f"{toks[0].text[:20]!r} is not allowed: a query is one select or show")
    return q


def _check_select(toks: list[Token], words: list[str | None], database: str) -> None:
    if "INTO" in words:
        raise QueryRefused("SELECT … INTO writes data: not allowed")
    for i, w in enumerate(words):
        if w == "FROM":
            _check_sources(toks, i + 1, database)


def _check_sources(toks: list[Token], i: int, database: str) -> None:
    """FROM a, "b", /re/, db.rp.m, (subquery): a qualified source must name `database`."""
    depth = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            if depth == 0:
                return
            depth -= 1
        elif depth == 0 and t.kind == "word" and t.text.upper() in (
                "WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET", "FILL", "TZ"):
            return
        elif depth == 0 and t.text == ".":
            # qualified: the first part of the dotted name is a database
            j = i - 1
            while j > 0 and toks[j - 1].text == ".":
                j -= 2
            start = toks[j]
            dotted_db = start.text if start.text != "." else ""
            if start.kind == "regex":
                raise QueryRefused("a regular expression over databases is not allowed")
            if dotted_db and dotted_db != database:
                raise QueryRefused(f"only your own DevLake ({database}) can be read")
        i += 1


def _check_show(toks: list[Token], words: list[str | None], database: str) -> None:
    rest = tuple(w or "" for w in words[1:5])
    if not any(rest[:len(a)] == a for a in _SHOW_ALLOWED):
        what = " ".join(w for w in rest[:2] if w)
        raise QueryRefused(f"show {what.lower() or '…'!r} is not allowed; these are: measurements, "
                           "tag keys, tag values, field keys, series, retention policies")
    for i, w in enumerate(words):
        if w == "ON":
            target = toks[i + 1] if i + 1 < len(toks) else None
            if target is None or target.kind == "regex" or target.text != database:
                raise QueryRefused(f"only your own DevLake ({database}) can be read")
        if w == "FROM":
            _check_sources(toks, i + 1, database)
