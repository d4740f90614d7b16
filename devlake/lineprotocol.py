"""The DevLake's side of line protocol: a metrics message → lines per OverCloud, checked.

Agents send `LineBatch` messages, rendered where they were measured; the DevLake checks
every line (`overcloud.lineprotocol.checked_lines`) and forwards the text unchanged, which is
why its hot path no longer renders. `SampleBatch` messages (older agents, tools, tests) are
rendered here: a row whose shape was fully validated once (by
`overcloud.wire.validate_sample`) is rendered without validating it again; any other row is
validated first, so it raises exactly what `decode_samples` raises.
"""

from __future__ import annotations

from typing import Any

from overcloud.lineprotocol import (
    CACHE_LIMIT,
    LINE_BATCH,
    checked_lines,
    plain_line,
    shape_template,
)
from overcloud.samples import Sample
from overcloud.wire import envelope, sample_rows_of, validate_sample

#: shape of a validated row -> (template or None, its `overcloud` tag or "", integer check)
_validated: dict[Any, tuple[str | None, str, int]] = {}
#: integer check of a shape: none (no integer fields), the largest value (only numbers), each
_NO_INTS, _MAX_INT, _EACH_INT = 0, 1, 2


def message_lines(raw: bytes) -> dict[str, list[str]]:
    """A metrics message as line protocol, grouped by the points' `overcloud` tag.

    A `LineBatch` (what agents send) is checked line by line and forwarded as it is
    (`overcloud.lineprotocol.checked_lines`); a `SampleBatch` (older agents, tools) is
    rendered here, validated like `overcloud.wire.decode_samples`. Either way one bad point
    rejects the whole message with a `DecodeError`. Non-finite floats cannot occur: the JSON
    decoder rejects them.
    """
    env = envelope(raw)
    if env["type"] == LINE_BATCH:
        return checked_lines(env)
    _when, rows = sample_rows_of(env)
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
        text = plain_line(Sample(measurement, tags, fields, ts)) if tpl is None else tpl % values
        lines = out.get(overcloud)
        if lines is None:
            lines = out[overcloud] = []
        lines.append(text)
    return out


def _learn(sample: Sample) -> tuple[str | None, str, int]:
    fields = sample.fields
    types = tuple(map(type, fields.values()))
    shape = (sample.measurement, tuple(sample.tags.items()), tuple(fields), types)
    if len(_validated) >= CACHE_LIMIT:
        _validated.clear()
    tpl = shape_template(sample.measurement, sample.tags, fields)
    ints = _NO_INTS if int not in types else _MAX_INT if tpl is not None else _EACH_INT
    hit = _validated[shape] = (tpl, sample.tags.get("overcloud", ""), ints)
    return hit
