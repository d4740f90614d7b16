r"""A model of InfluxDB 1.x's InfluxQL scanner (`influxql/scanner.go`), for tests.

It splits a statement into tokens the way InfluxDB does — quoted identifiers and strings
with only the escapes `\\ \" \' \n`, a raw newline ending them in error, `/…/` regexes with
only `\/` unescaped — so a test can check that a query built from hostile names is still
one statement with the hostile text confined to quoted tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPES = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[a-zµ]+)?")
_PUNCT = ("=~", "!~", "!=", "<>", "<=", ">=", "::", "..", "=", "<", ">", "(", ")", ",", ".",
          "+", "-", "*", "%", "/", ";", ":")
#: after these a `/` starts a regex (as the parser asks the scanner for one)
_REGEX_AFTER = {"=~", "!~", "FROM", ",", "BY", "MEASUREMENT", "MEASUREMENTS"}


class ScanError(ValueError):
    """InfluxDB would refuse this text (bad string, bad escape, unterminated token)."""


@dataclass(frozen=True)
class Token:
    kind: str  # word, ident (quoted), string, regex, number, punct
    text: str  # the value: unescaped for ident/string/regex, as written otherwise

    @property
    def quoted(self) -> bool:
        return self.kind in ("ident", "string", "regex")


def _quoted(q: str, i: int) -> tuple[str, int]:
    end = q[i]
    out = []
    i += 1
    while i < len(q):
        c = q[i]
        if c == end:
            return "".join(out), i + 1
        if c == "\n":
            raise ScanError(f"newline inside {end}…{end} at {i}")
        if c == "\\":
            nxt = q[i + 1] if i + 1 < len(q) else ""
            if nxt not in _ESCAPES:
                raise ScanError(f"bad escape \\{nxt} at {i}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    raise ScanError(f"unterminated {end}…{end}")


def _regex(q: str, i: int) -> tuple[str, int]:
    out = []
    i += 1
    while i < len(q):
        c = q[i]
        if c == "/":
            return "".join(out), i + 1
        if c == "\n":
            raise ScanError(f"newline inside a regex at {i}")
        if c == "\\" and i + 1 < len(q) and q[i + 1] == "/":
            out.append("/")
            i += 2
            continue
        out.append(c)
        i += 1
    raise ScanError("unterminated regex")


def tokens(q: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(q):
        c = q[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            text, i = _quoted(q, i)
            out.append(Token("ident" if c == '"' else "string", text))
            continue
        prev = out[-1].text.upper() if out and not out[-1].quoted else ""
        if c == "/" and prev in _REGEX_AFTER:
            text, i = _regex(q, i)
            out.append(Token("regex", text))
            continue
        m = _WORD.match(q, i) or _NUMBER.match(q, i)
        if m:
            out.append(Token("word" if m.re is _WORD else "number", m.group(0)))
            i = m.end()
            continue
        p = next((p for p in _PUNCT if q.startswith(p, i)), None)
        if p is None:
            raise ScanError(f"unexpected {c!r} at {i}")
        out.append(Token("punct", p))
        i += len(p)
    return out


def statements(q: str) -> list[list[Token]]:
    """The statements of `q` (split at `;` outside quotes)."""
    out: list[list[Token]] = [[]]
    for t in tokens(q):
        if t.kind == "punct" and t.text == ";":
            out.append([])
        else:
            out[-1].append(t)
    return [s for s in out if s]
