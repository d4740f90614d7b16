r"""InfluxDB line protocol: rendering samples, and checking lines that arrive already rendered.

Rendering is the hot path of whoever renders (an agent, or the DevLake for `SampleBatch`
messages). An agent sends the same few hundred series with the same fields every cycle, so
each *shape* (measurement, tags, field names and field types) gets a cached `%`-format
template: the escaped `measurement,tag=value,...` prefix, the escaped field keys with `%r`
(float, as `repr`) or `%di` (integer) slots, and a `%d` slot for the timestamp. Rendering a
point is then one C-level `%` operation. Shapes with string or boolean fields use the plain
formatter. Integers get the `i` suffix and floats stay floats, so a field keeps one type.

Escaping follows what InfluxDB 1.x's parser undoes (`models/points.go`): `,` `=` and space in
tag keys, tag values and field keys, also `"` in field keys; `\` and `"` in string values
(a newline inside a quoted string value is carried as it is). A backslash in a name is never
escaped (1.x keeps `\\` as two characters). So `overcloud.wire.validate_sample` refuses what
no escaping carries through: a backslash that would read as an escape (before one of those
characters, or at the end), control characters in names, keys named `time`.

`LineBatch` messages (`encode_lines`) carry points already rendered, the way Telegraf's Kafka
output does, inside our versioned envelope::

    {"type": "LineBatch", "version": 1, "id": "…", "time": "…Z", "payload": {"lines": ["…", …]}}

A line is a hostile input like any other, so `checked_lines` holds each to exactly what this
module renders from a valid sample: its series key (measurement and tags) must parse into
names that `validate_sample` accepts *and* render back to the same text (one canonical form:
tags sorted, empty ones left out), so the `overcloud` tag that picks the database is the one
InfluxDB will store; its fields and timestamp must match the rendered grammar (no `time`
key, finite numbers, int64 integers, escaped strings, a positive timestamp in range). A key is
checked once and cached. A field shape (keys and value types) that passed the full check twice
for a series becomes one compiled pattern, so a repeated line costs a dictionary lookup and
one match; any other line gets the full check, which parses every field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from overcloud.errors import DecodeError
from overcloud.events import new_id
from overcloud.samples import FieldValue, Sample
from overcloud.wire import (
    MAX_INT,
    MAX_TIME_NS,
    NAME,
    check_tags,
    envelope,
    field_key_problem,
    sample_rows_of,
)

# A newline cannot be carried in a name: checks refuse it. For a caller of `line` that did
# not check (the alert outbox writes labels it was given) it becomes DEL (\x7f) rather than
# a broken line: one character that every check refuses too, so a line an agent renders
# from such a sample is refused by the DevLake as the sample would be.
_TAG_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": "\x7f"})
_FIELD_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r'\"', "\n": "\x7f"})
_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": "\x7f"})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\"})
_STR_UNESCAPE = re.compile(r'\\(["\\])')

_series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_field_key_cache: dict[str, str] = {}
CACHE_LIMIT = 200_000
#: shape -> template (None: not templatable, use the plain formatter)
_templates: dict[Any, str | None] = {}


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    key = (measurement, tuple(sorted(tags.items())))
    prefix = _series_cache.get(key)
    if prefix is None:
        parts = [measurement.translate(_MEAS_ESC)]
        parts.extend(
            f"{k.translate(_TAG_ESC)}={v.translate(_TAG_ESC)}" for k, v in key[1] if v != ""
        )
        prefix = ",".join(parts)
        if len(_series_cache) >= CACHE_LIMIT:
            _series_cache.clear()
        _series_cache[key] = prefix
    return prefix


def _field_key(name: str) -> str:
    esc = _field_key_cache.get(name)
    if esc is None:
        esc = _field_key_cache[name] = name.translate(_FIELD_KEY_ESC)
    return esc


def _value(v: FieldValue) -> str:
    t = type(v)
    if t is float:
        return repr(v)
    if t is int:
        return f"{v}i"
    if t is bool:
        return "true" if v else "false"
    return '"' + str(v).translate(_STR_ESC) + '"'


def plain_line(sample: Sample) -> str:
    fields = ",".join(f"{_field_key(k)}={_value(v)}" for k, v in sample.fields.items())
    return f"{series_key(sample.measurement, sample.tags)} {fields} {sample.time_ns}"


def shape_template(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any]) -> str | None:
    slots = []
    for k, v in fields.items():
        t = type(v)
        if t is float:
            slots.append(f"{_field_key(k).replace('%', '%%')}=%r")
        elif t is int:
            slots.append(f"{_field_key(k).replace('%', '%%')}=%di")
        else:
            return None
    return f"{series_key(measurement, tags).replace('%', '%%')} {','.join(slots)} %d"


def line(sample: Sample) -> str:
    fields = sample.fields
    shape = (sample.measurement, tuple(sample.tags.items()), tuple(fields),
             tuple(map(type, fields.values())))
    try:
        tpl = _templates[shape]
    except KeyError:
        if len(_templates) >= CACHE_LIMIT:
            _templates.clear()
        tpl = _templates[shape] = shape_template(sample.measurement, sample.tags, fields)
    if tpl is None:
        return plain_line(sample)
    return tpl % (*fields.values(), sample.time_ns)


def encode(samples: Iterable[Sample]) -> bytes:
    return "\n".join(line(s) for s in samples).encode()




# --- LineBatch: points that arrive rendered -------------------------------------------------

LINE_BATCH = "LineBatch"
LINE_BATCH_VERSION = 1


def encode_lines(samples: Iterable[Sample], batch_id: str | None = None) -> bytes:
    """A `LineBatch` message of `samples`, rendered here (by the agent) once."""
    return orjson.dumps(
        {"type": LINE_BATCH, "version": LINE_BATCH_VERSION, "id": batch_id or new_id(),
         "time": datetime.now(UTC), "payload": {"lines": [line(s) for s in samples]}},
        option=orjson.OPT_UTC_Z)


# a field key as `_field_key` renders a valid one: plain characters, the escapes \, \= \  \"
# and a backslash that escapes nothing (`time` is refused by name, to say so); values as
# `_value` renders them
_FKEY = r'(?:[^\\,= "\x00-\x1f\x7f]|\\[,= "]|\\(?=[^,= "])){1,256}'
_FVALUE = (r'(?:-?\d{1,19}i'                                    # int64
           r'|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?'  # float (repr: finite)
           r'|"(?:[^"\\]|\\["\\])*"'                          # string
           r'|true|false)')
_FIELD = re.compile(rf"({_FKEY})=({_FVALUE})", re.S)
_MAX_TS = str(MAX_TIME_NS)
#: value patterns of the fast path by type, each a strict subset of what the full check
#: accepts: integers of up to 18 digits (always int64), floats with exponents of up to two
#: digits (always finite); anything else (a longer integer, `1e300`) goes to the full check
_SHAPE_VALUE = {
    "int": r"-?\d{1,18}+i",
    "float": r"-?\d++(?:\.\d*+)?(?:e[-+]?\d{1,2}+)?",
    "bool": r"(?:true|false)",
    "str": r'"(?:[^"\\]|\\["\\])*+"',
}
SHAPES_PER_SERIES = 4
"""Field shapes remembered per series (a series whose lines alternate between a few field
sets stays on the fast path)."""


@dataclass(slots=True)
class _Series:
    """A series key that passed the full check, and the field shapes learned for it."""

    measurement: str
    tags: dict[str, str]
    overcloud: str
    shapes: list[re.Pattern[str]] = field(default_factory=list)
    seen: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)


#: series key text -> what it is; a bad key -> its problem
_keys: dict[str, _Series | str] = {}


def checked_lines(env: Mapping[str, Any]) -> dict[str, list[str]]:
    """A decoded `LineBatch` envelope's lines, grouped by their `overcloud` tag ("" none).

    One bad line rejects the whole message with a `DecodeError` saying which and why (as one
    bad sample rejects a `SampleBatch`). The fast path: the series key was checked before and
    the fields match a shape (the same field keys with values of the same types) that a line
    of that series passed the full check with twice; its values are matched by pattern, and
    its time compared with the maximum. Every other line gets the full check."""
    lines = _lines_of(env)
    out: dict[str, list[str]] = {}
    keys = _keys
    for i, ln in enumerate(lines):
        try:
            # `_key_end`, inlined: this loop runs for every point
            sp = ln.find(" ")
            while sp > 0 and ln[sp - 1] == "\\":  # an escaped space is part of the key
                sp = ln.find(" ", sp + 1)
            known = keys[ln[:sp]]
            for shape in known.shapes:  # type: ignore[union-attr]
                if shape.fullmatch(ln, sp + 1):
                    break
            else:
                raise ValueError
            if ln[-19:] > _MAX_TS:
                raise ValueError
            overcloud = known.overcloud  # type: ignore[union-attr]
        except Exception:  # unknown key, or anything else: the full check decides (and says)
            overcloud = _check_line(i, ln)[0].overcloud
        group = out.get(overcloud)
        if group is None:
            group = out[overcloud] = []
        group.append(ln)
    return out


def rows_of_lines(env: Mapping[str, Any], measurements: Container[str]
                  ) -> Iterator[list[Any]]:
    """A decoded `LineBatch`'s points of the given measurements as `[measurement, tags,
    fields, time_ns]` rows (what the alert evaluator reads); other lines are not parsed past
    their (cached) key, and a line that does not check out is skipped (DevLake dead-letters
    the message). A payload that is not a list of lines raises `DecodeError` here."""
    return _rows(_lines_of(env), measurements)


def _rows(lines: list[Any], measurements: Container[str]) -> Iterator[list[Any]]:
    for ln in lines:
        try:
            sp = _key_end(ln)
            known = _keys.get(ln[:sp])
            if known is None:  # a new key: the full check learns it
                series, fields, ts = _check_line(0, ln)
            elif isinstance(known, _Series) and known.measurement in measurements:
                series, (fields, ts) = known, _fields(0, ln, sp + 1, known.tags)
            else:
                continue
        except (DecodeError, ValueError, TypeError, AttributeError, IndexError):
            continue
        if series.measurement in measurements:
            yield [series.measurement, series.tags, fields, ts]


def decode_lines(raw: bytes) -> tuple[Sample, ...]:
    """A `LineBatch` message back to samples, every line fully checked (tools and tests; the
    DevLake forwards lines without parsing them into samples)."""
    env = envelope(raw)
    if env["type"] != LINE_BATCH:
        raise DecodeError(f"expected {LINE_BATCH}, got {env['type']!r}")
    out = []
    for i, ln in enumerate(_lines_of(env)):
        series, fields, ts = _check_line(i, ln)
        out.append(Sample(series.measurement, dict(series.tags), fields, ts))
    return tuple(out)


def metric_rows(raw: bytes, measurements: Container[str]) -> Iterable[list[Any]]:
    """The rows of a metrics message of either kind, for readers that want values rather than
    lines (the alert evaluator): a `LineBatch`'s lines of `measurements`, parsed; a
    `SampleBatch`'s rows as they are (the reader skips malformed ones). Raises `DecodeError`
    for a message that is neither."""
    env = envelope(raw)
    if env["type"] == LINE_BATCH:
        return rows_of_lines(env, measurements)
    return sample_rows_of(env)[1]


def _key_end(ln: str) -> int:
    """Where the series key of `ln` ends: its first space that no backslash escapes."""
    sp = ln.find(" ")
    while sp > 0 and ln[sp - 1] == "\\":
        sp = ln.find(" ", sp + 1)
    return sp


def _lines_of(env: Mapping[str, Any]) -> list[Any]:
    """The lines of a decoded `LineBatch` envelope (its version checked)."""
    if env["version"] != LINE_BATCH_VERSION:
        raise DecodeError(f"{LINE_BATCH} version {env['version']} is not supported")
    payload = env["payload"]
    lines = payload.get("lines") if isinstance(payload, dict) else None
    if not isinstance(lines, list):
        raise DecodeError("payload.lines must be a list of lines")
    return lines


def _check_line(i: int, ln: Any) -> tuple[_Series, dict[str, Any], int]:
    """The full check of one line: its series (cached), fields and time, or a `DecodeError`.
    A field shape that passed twice for a series is learned for the fast path (twice: a
    stream of lines whose field names are all new costs no pattern compilation)."""
    if type(ln) is not str or not ln:
        raise DecodeError(f"lines[{i}] must be a non-empty string")
    sp = _key_end(ln)
    if sp <= 0:
        raise DecodeError(f"lines[{i}]: no fields after the series key: {ln[:80]!r}")
    text = ln[:sp]
    known = _keys.get(text)
    if known is None:
        known = _parse_key(text)
        if len(_keys) >= CACHE_LIMIT:
            _keys.clear()
        _keys[text] = known
    if type(known) is str:
        raise DecodeError(f"lines[{i}]: {known}")
    assert isinstance(known, _Series)
    shape: list[tuple[str, str]] = []
    fields, ts = _fields(i, ln, sp + 1, known.tags, shape)
    sig = tuple(shape)
    count = known.seen.get(sig, 0) + 1
    if count == 2:
        if len(known.shapes) >= SHAPES_PER_SERIES:
            known.shapes.pop(0)
        known.shapes.append(re.compile(
            ",".join(f"{re.escape(k)}={_SHAPE_VALUE[t]}" for k, t in shape)
            + r" [1-9]\d{18}", re.S))
    if len(known.seen) < 64:
        known.seen[sig] = count
    return known, fields, ts


def _fields(i: int, ln: str, start: int, tags: Mapping[str, str] | None = None,
            shape: list[tuple[str, str]] | None = None) -> tuple[dict[str, Any], int]:
    """The fields and timestamp of `ln` from `start`, parsed and checked (against `tags`:
    a field may not be named like one); `shape` collects (raw key, value type)."""
    pos = start
    fields: dict[str, Any] = {}
    while True:
        m = _FIELD.match(ln, pos)
        if m is None:
            raise DecodeError(f"lines[{i}]: fields do not parse at {ln[pos:pos + 40]!r} "
                              "(key=value pairs as line protocol renders them, then a time)")
        key, raw = _unescape(m.group(1), ',= "'), m.group(2)
        problem = field_key_problem(key)
        if not problem and key in fields:
            problem = f"field {key!r} appears twice"
        if not problem and tags and key in tags:
            problem = f"{key!r} is both a tag and a field"
        if problem:
            raise DecodeError(f"lines[{i}]: {problem}")
        value = fields[key] = _field_value(i, key, raw)
        if shape is not None:
            shape.append((m.group(1), type(value).__name__))
        pos = m.end()
        after = ln[pos:pos + 1]
        if after == ",":
            pos += 1
            continue
        if not after:
            raise DecodeError(f"lines[{i}]: no time after the fields (points without one "
                              "would be stamped on arrival, and not overwrite themselves)")
        if after != " ":
            raise DecodeError(f"lines[{i}]: fields do not parse at {ln[m.start():pos + 40]!r} "
                              "(key=value pairs as line protocol renders them, then a time)")
        ts = ln[pos + 1:]
        if not ts.isdigit() or ts.startswith("0") or not 0 < int(ts) <= MAX_TIME_NS:
            raise DecodeError(f"lines[{i}]: the time must be a positive integer of nanoseconds "
                              f"up to {MAX_TIME_NS}, not {ts[:40]!r}")
        return fields, int(ts)


def _field_value(i: int, key: str, raw: str) -> Any:
    if raw.startswith('"'):
        return _STR_UNESCAPE.sub(r"\1", raw[1:-1])
    if raw in ("true", "false"):
        return raw == "true"
    if raw.endswith("i"):
        v = int(raw[:-1])
        if not -MAX_INT - 1 <= v <= MAX_INT:
            raise DecodeError(f"lines[{i}]: field {key!r} is outside InfluxDB's 64-bit "
                              f"integers: {raw}")
        return v
    f = float(raw)
    if not math.isfinite(f):
        raise DecodeError(f"lines[{i}]: field {key!r} is not finite: {raw}")
    return f


def _parse_key(text: str) -> _Series | str:
    """`measurement,tag=value,…` → (measurement, tags, overcloud), or what is wrong with it."""
    parts = _split(text, ",")
    measurement = _unescape(parts[0], ", ")
    if not NAME.fullmatch(measurement):
        return f"bad measurement name {measurement[:80]!r}"
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _split(part, "=")
        if len(kv) != 2:
            return f"tag {part[:80]!r} is not key=value"
        k, v = _unescape(kv[0], ',= '), _unescape(kv[1], ',= ')
        if not k or not v:
            return f"tag {part[:80]!r} has an empty key or value"
        if k in tags:
            return f"tag {k!r} appears twice"
        tags[k] = v
    try:
        check_tags(0, measurement, tags)
    except DecodeError as exc:
        return str(exc).removeprefix("samples[0]: ")
    if series_key(measurement, tags) != text:
        return (f"series key {text[:80]!r} is not in canonical form (tags sorted by key, "
                "empty ones left out, escaped as line protocol renders them)")
    return _Series(measurement, tags, tags.get("overcloud", ""))


def _split(text: str, sep: str) -> list[str]:
    """`text` split at each `sep` that no backslash escapes."""
    out, cur, k = [], [], 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text) and text[k + 1] in ',= "':
            cur.append(text[k:k + 2])
            k += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        k += 1
    out.append("".join(cur))
    return out


def _unescape(text: str, special: str) -> str:
    out, k = [], 0
    while k < len(text):
        if text[k] == "\\" and k + 1 < len(text) and text[k + 1] in special:
            out.append(text[k + 1])
            k += 2
        else:
            out.append(text[k])
            k += 1
    return "".join(out)
