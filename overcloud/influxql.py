r"""InfluxQL text is built here and only here: every name and value validated, then quoted.

Why: InfluxDB's `/query` runs *every* statement of its `q` parameter, separated by `;`. One
quote in a name pasted into a query turns a read into `DROP DATABASE` — a sample whose
`overcloud` tag was `x"; DROP DATABASE "devlake_other` once dropped another OverCloud's
DevLake. So, after psycopg's `sql` module: query text is `QL`, a `str` that is safe by
construction. It is either a constant written in our code, or made by `compose` from a
constant template whose `{}` slots take only `QL` parts, and those come from the quoting
functions below (`ident`, `string`, `duration`, ...). A plain `str` in a slot is a
`TypeError`, so outside text cannot reach a query unquoted by accident.
`tests/unit/test_influxql_static.py` scans the packages for f-strings, `%`, `.format()` and
`+` that build InfluxQL anywhere else, so a regression fails the tests.

Escapes follow InfluxDB 1.x's scanner (`influxql/scanner.go`): inside `"…"` and `'…'` the
only escapes are `\\`, `\"`, `\'` and `\n`, and a raw newline ends the token in error;
inside `/…/` only `\/` is unescaped, everything else goes to the RE2 engine as written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import LiteralString

MAX_NAME = 65_535
"""InfluxDB's limit on a series key; no name we quote can be longer."""

_QUOTED_ESC = {"\\": "\\\\", "\n": "\\n"}
_IDENT_ESC = str.maketrans({**_QUOTED_ESC, '"': '\\"'})
_STRING_ESC = str.maketrans({**_QUOTED_ESC, "'": "\\'"})
_REGEX_META = re.compile(r"[\\.+*?()|\[\]{}^$/]")
_DURATION = re.compile(r"(?:[0-9]+(?:ns|u|µ|ms|s|m|h|d|w))+")
_DATABASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


class QL(str):
    """InfluxQL text that is safe to send: a constant of our code, or built by this module."""

    __slots__ = ()


def _name(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{kind} must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{kind} must not be empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"{kind} is longer than {MAX_NAME} characters")
    return name


def ident(name: str) -> QL:
    """A double-quoted identifier (database, measurement, tag, field, retention policy)."""
    return QL('"' + _name("an identifier", name).translate(_IDENT_ESC) + '"')


def database(name: str) -> QL:
    """A database name as an identifier, validated: letters, digits, `_ . -` (DevLake names
    are `<prefix><OverCloud name>`, so anything else is a mistake or an attack)."""
    if not isinstance(name, str) or not _DATABASE.fullmatch(name):
        raise ValueError(f"{name!r} is not a database name (letters, digits, '_', '.', '-'; "
                         "at most 128)")
    return ident(name)


def string(value: str) -> QL:
    """A single-quoted string literal (tag values in WHERE)."""
    if not isinstance(value, str):
        raise ValueError(f"a string literal must be a string, got {type(value).__name__}")
    return QL("'" + value.translate(_STRING_ESC) + "'")


def regex_escape(value: str) -> QL:
    """`value` as literal text inside a `/…/` regex (RE2 metacharacters and `/` escaped)."""
    if not isinstance(value, str):
        raise ValueError(f"a regex part must be a string, got {type(value).__name__}")
    return QL(_REGEX_META.sub(lambda m: "\\" + m.group(0), value).replace("\n", "\\n"))


def duration(text: str) -> QL:
    """A duration literal such as `30d`, `90s` or `1h30m` (validated, never quoted)."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not an InfluxQL duration (e.g. 90s, 10m, 1h30m, 30d)")
    return QL(text)


def retention(text: str) -> QL:
    """A retention policy duration: a duration literal, or `INF` (keep forever)."""
    if isinstance(text, str) and text.upper() == "INF":
        return QL("INF")
    return duration(text)


def seconds(value: float) -> QL:
    """Whole seconds as a duration literal (`300s`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{value!r} is not a number of seconds")
    return QL(f"{int(value)}s")


def integer(value: int) -> QL:
    """An integer literal (e.g. a timestamp in nanoseconds for `time >= …`)."""
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return QL(str(value))


def number(value: float) -> QL:
    """A finite number literal (constants in arithmetic of fields)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return QL(repr(value))


def compose(template: LiteralString, *parts: QL) -> QL:
    """`template` with each `{}` replaced by the next part; every part must be `QL`.

    The template is a constant of our code (the static check insists on a literal).
    """
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise ValueError(f"template has {len(pieces) - 1} slots for {len(parts)} parts")
    out = [pieces[0]]
    for part, piece in zip(parts, pieces[1:], strict=True):
        if not isinstance(part, QL):
            raise TypeError(f"InfluxQL parts must be quoted by overcloud.influxql, got {part!r}")
        out += (part, piece)
    return QL("".join(out))


def join(parts: Iterable[QL], sep: LiteralString = ", ") -> QL:
    """Parts joined by a constant separator (`, ` for lists, ` AND ` for conditions)."""
    items = list(parts)
    for part in items:
        if not isinstance(part, QL):
            raise TypeError(f"InfluxQL parts must be quoted by overcloud.influxql, got {part!r}")
    return QL(sep.join(items))


def idents(names: Iterable[str]) -> QL:
    """`"a", "b"`: a list of identifiers (columns, GROUP BY tags)."""
    return join(ident(n) for n in names)


def tag_equals(tags: Iterable[tuple[str, str]]) -> QL:
    """`"k" = 'v' AND …`: tag equalities, every key and value quoted."""
    return join((compose("{} = {}", ident(k), string(v)) for k, v in tags), " AND ")


# --- statements that manage databases ------------------------------------------------------


def create_database(name: str) -> QL:
    return compose("CREATE DATABASE {}", database(name))


def create_retention_policy(name: str, duration: str) -> QL:
    return compose('CREATE RETENTION POLICY "devlake" ON {} DURATION {} REPLICATION 1 DEFAULT',
                   database(name), retention(duration))


def alter_retention_policy(name: str, duration: str) -> QL:
    return compose('ALTER RETENTION POLICY "devlake" ON {} DURATION {} DEFAULT',
                   database(name), retention(duration))


def show_retention_policies(name: str) -> QL:
    return compose("SHOW RETENTION POLICIES ON {}", database(name))


def drop_database(name: str) -> QL:
    return compose("DROP DATABASE {}", database(name))
