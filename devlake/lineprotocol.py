r"""Samples → InfluxDB line protocol, fast (this is the DevLake's hot path).

An agent sends the same few hundred series with the same fields every cycle, so each *shape*
(measurement, tags, field names and field types) gets a cached `%`-format template: the
escaped `measurement,tag=value,...` prefix, the escaped field keys with `%r` (float, as
`repr`) or `%di` (integer) slots, and a `%d` slot for the timestamp. Rendering a point is then
one C-level `%` operation. Shapes with string or boolean fields use the plain formatter.
Integers get the `i` suffix and floats stay floats, so a field keeps one type in InfluxDB.

Escaping follows what InfluxDB 1.x's parser undoes (`models/points.go`): `,` `=` and space in
tag keys, tag values and field keys, also `"` in field keys; `\` and `"` in string values
(a newline inside a quoted string value is carried as it is). A backslash in a name is never
escaped (1.x keeps `\\` as two characters). So `overcloud.wire.validate_sample` refuses what
no escaping carries through: a backslash that would read as an escape (before one of those
characters, or at the end), control characters in names, keys named `time`. Every line
rendered from a decoded message is one InfluxDB accepts and reads back unchanged
(tests/integration/test_lineprotocol_influx.py checks that with generated names).

`message_lines` goes straight from a `SampleBatch` message to lines: a row whose shape was
fully validated once (by `overcloud.wire.validate_sample`) is rendered without validating it
again; any other row is validated first, so it raises exactly what `decode_samples` raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from overcloud.samples import FieldValue, Sample
from overcloud.wire import MAX_INT, MAX_TIME_NS, sample_rows, validate_sample

assert MAX_INT == 9223372036854775807 and MAX_TIME_NS == 9223372036854775806  # inlined below

# (a newline cannot be carried in a name: decoding refuses it; for direct callers of `line`
# it becomes the two characters \n rather than a broken line)
_TAG_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_FIELD_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r'\"', "\n": r"\n"})
_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\"})

_series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_field_key_cache: dict[str, str] = {}
_CACHE_LIMIT = 200_000
#: shape -> template (None: not templatable, use the plain formatter)
_templates: dict[Any, str | None] = {}
#: shape of a validated row -> (template or None, its `overcloud` tag or "", integer check)
_validated: dict[Any, tuple[str | None, str, int]] = {}
#: integer check of a shape: none (no integer fields), the largest value (only numbers), each
_NO_INTS, _MAX_INT, _EACH_INT = 0, 1, 2


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    key = (measurement, tuple(sorted(tags.items())))
    prefix = _series_cache.get(key)
    if prefix is None:
        parts = [measurement.translate(_MEAS_ESC)]
        parts.extend(
            f"{k.translate(_TAG_ESC)}={v.translate(_TAG_ESC)}" for k, v in key[1] if v != ""
        )
        prefix = ",".join(parts)
        if len(_series_cache) >= _CACHE_LIMIT:
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


def _plain_line(sample: Sample) -> str:
    fields = ",".join(f"{_field_key(k)}={_value(v)}" for k, v in sample.fields.items())
    return f"{series_key(sample.measurement, sample.tags)} {fields} {sample.time_ns}"


def _template(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any]) -> str | None:
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
        if len(_templates) >= _CACHE_LIMIT:
            _templates.clear()
        tpl = _templates[shape] = _template(sample.measurement, sample.tags, fields)
    if tpl is None:
        return _plain_line(sample)
    return tpl % (*fields.values(), sample.time_ns)


def encode(samples: Iterable[Sample]) -> bytes:
    return "\n".join(line(s) for s in samples).encode()


def message_lines(raw: bytes) -> dict[str, list[str]]:
    """A `SampleBatch` message as line protocol, grouped by the samples' `overcloud` tag.

    Validates like `overcloud.wire.decode_samples` (one bad sample rejects the whole message
    with a `DecodeError`). Non-finite floats cannot occur: the JSON decoder rejects them.
    """
    _env, _when, rows = sample_rows(raw)
    out: dict[str, list[str]] = {}
    validated = _validated
    for i, row in enumerate(rows):
        try:
            measurement, tags, fields, ts = row
            tpl, overcloud, ints = validated[
                (measurement, tuple(tags.items()), tuple(fields), tuple(map(type, fields.values())))
            ]
            values = (*fields.values(), ts)
            if type(row) is not list or type(ts) is not int or not 0 < ts <= 9223372036854775806:
                raise ValueError
            # values are not part of the shape: integers must still fit InfluxDB's int64
            # (JSON yields up to 2^64-1; below -2^63 it yields floats). Literals, not names:
            # this runs for every sample
            if ints and (max(values) > 9223372036854775807 if ints == 1 else
                         any(type(v) is int and v > 9223372036854775807 for v in values)):
                raise ValueError
        except Exception:  # unknown shape or malformed: the full check decides (and raises)
            sample = validate_sample(i, row)
            tpl, overcloud, _ = _learn(sample)
            measurement, tags, fields, ts = row
            values = (*fields.values(), ts)
        text = _plain_line(Sample(measurement, tags, fields, ts)) if tpl is None else tpl % values
        lines = out.get(overcloud)
        if lines is None:
            lines = out[overcloud] = []
        lines.append(text)
    return out


def _learn(sample: Sample) -> tuple[str | None, str, int]:
    fields = sample.fields
    types = tuple(map(type, fields.values()))
    shape = (sample.measurement, tuple(sample.tags.items()), tuple(fields), types)
    if len(_validated) >= _CACHE_LIMIT:
        _validated.clear()
    tpl = _template(sample.measurement, sample.tags, fields)
    ints = _NO_INTS if int not in types else _MAX_INT if tpl is not None else _EACH_INT
    hit = _validated[shape] = (tpl, sample.tags.get("overcloud", ""), ints)
    return hit
