"""The one place that encodes and decodes what travels on Kafka.

Every message is a JSON envelope::

    {"type": "NodeOverloaded", "version": 1, "id": "…", "time": "2026-…Z", "payload": {…}}

Domain events (`overcloud.events`) are validated with pydantic against their dataclass.
Metric batches use the type `SampleBatch`; their payload is compact because it is the hot
path (hundreds of thousands of points per second)::

    {"samples": [[measurement, {tag: value}, {field: value}, time_ns], …]}

Anything malformed or of an unknown type raises `DecodeError` with a reason that a consumer
puts into its dead-letter record; nothing here ever raises anything else for bad bytes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pydantic

from overcloud.errors import DecodeError
from overcloud.events import EVENT_TYPES, Event, new_id
from overcloud.names import RULE as OVERCLOUD_NAME_RULE
from overcloud.names import is_overcloud_name
from overcloud.samples import Sample

SAMPLE_BATCH = "SampleBatch"
SAMPLE_BATCH_VERSION = 1
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """A batch of samples as decoded from one message (`id` identifies the batch)."""

    id: str
    time: datetime
    samples: tuple[Sample, ...]


# --- events --------------------------------------------------------------------------------


def encode_event(event: Event) -> bytes:
    payload = {
        f.name: getattr(event, f.name)
        for f in dataclasses.fields(event)
        if f.name not in ("id", "time")
    }
    return orjson.dumps(
        {
            "type": event.TYPE,
            "version": event.VERSION,
            "id": event.id,
            "time": event.time,
            "payload": payload,
        },
        option=orjson.OPT_UTC_Z,
    )


_ADAPTERS: dict[str, pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type[Event]) -> pydantic.TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls.TYPE)
    if adapter is None:
        adapter = _ADAPTERS[cls.TYPE] = pydantic.TypeAdapter(cls)
    return adapter


def decode_event(raw: bytes) -> Event:
    """Decode an event envelope; raises `DecodeError` for anything that is not a known event."""
    env = envelope(raw)
    type_name = env["type"]
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise DecodeError(f"unknown event type {type_name!r}")
    if env["version"] != cls.VERSION:
        raise DecodeError(
            f"{type_name} version {env['version']} is not supported (expected {cls.VERSION})"
        )
    payload = env["payload"]
    if not isinstance(payload, dict):
        raise DecodeError(f"{type_name}: payload must be an object")
    if "id" in payload or "time" in payload:
        raise DecodeError(f"{type_name}: 'id' and 'time' belong to the envelope, not the payload")
    try:
        event: Event = _adapter(cls).validate_python(
            {**payload, "id": env["id"], "time": env["time"]}
        )
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in exc.errors()
        )
        raise DecodeError(f"{type_name}: {problems}") from None
    return event


def envelope(raw: bytes) -> dict[str, Any]:
    try:
        env = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(env, dict):
        raise DecodeError("envelope must be a JSON object")
    missing = [k for k in ("type", "version", "id", "time", "payload") if k not in env]
    if missing:
        raise DecodeError(f"envelope lacks {', '.join(missing)}")
    if not isinstance(env["type"], str) or not isinstance(env["version"], int):
        raise DecodeError("envelope 'type' must be a string and 'version' an integer")
    if not isinstance(env["id"], str) or not env["id"]:
        raise DecodeError("envelope 'id' must be a non-empty string")
    return env


# --- sample batches ------------------------------------------------------------------------


def encode_samples(samples: Iterable[Sample], batch_id: str | None = None) -> bytes:
    rows = [[s.measurement, s.tags, s.fields, s.time_ns] for s in samples]
    return orjson.dumps(
        {
            "type": SAMPLE_BATCH,
            "version": SAMPLE_BATCH_VERSION,
            "id": batch_id or new_id(),
            "time": datetime.now(UTC),
            "payload": {"samples": rows},
        },
        option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS,
    )


def decode_samples(raw: bytes) -> SampleBatch:
    """Decode and validate a `SampleBatch`; one bad sample rejects the whole message."""
    env, when, rows = sample_rows(raw)
    return SampleBatch(env["id"], when, tuple(_sample(i, row) for i, row in enumerate(rows)))


def sample_rows(raw: bytes) -> tuple[dict[str, Any], datetime, list[Any]]:
    """The envelope checks of `decode_samples`: (envelope, its time, the raw sample rows).

    The rows are NOT validated yet: a caller validates each with `validate_sample` (or
    renders them through a cache of shapes it validated that way before, as DevLake does).
    """
    env = envelope(raw)
    when, rows = sample_rows_of(env)
    return env, when, rows


def sample_rows_of(env: dict[str, Any]) -> tuple[datetime, list[Any]]:
    """`sample_rows` of an envelope already decoded (`envelope`)."""
    if env["type"] != SAMPLE_BATCH:
        raise DecodeError(f"expected {SAMPLE_BATCH}, got {env['type']!r}")
    if env["version"] != SAMPLE_BATCH_VERSION:
        raise DecodeError(f"{SAMPLE_BATCH} version {env['version']} is not supported")
    payload = env["payload"]
    rows = payload.get("samples") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise DecodeError("payload.samples must be a list")
    try:
        when = datetime.fromisoformat(env["time"])
    except (TypeError, ValueError):
        raise DecodeError("envelope 'time' must be an ISO 8601 timestamp") from None
    return when, rows


def validate_sample(index: int, row: Any) -> Sample:
    """Validate one `[measurement, tags, fields, time_ns]` row; raises `DecodeError`."""
    return _sample(index, row)


#: measurement names already validated (a bounded set: names are few and bounded by design)
_valid_names: set[str] = set()
_FIELD_TYPES = frozenset({int, float, str, bool})
#: what InfluxDB accepts (1.x `models/points.go`): int64 integers, timestamps within ±(2^63-2)
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
MAX_TIME_NS = 2**63 - 2
#: InfluxDB refuses a line whose series key (measurement and tags, escaped) is longer
MAX_SERIES_KEY = 65_535
MAX_KEY = 256
#: a control character (newline ends the line; InfluxDB skips tab and NUL as whitespace at
#: the start of a field), or a backslash that line protocol would read as an escape (before
#: , = space " or at the end): no escaping carries these through InfluxDB 1.x unchanged
_LP_UNSAFE = re.compile(r'[\x00-\x1f\x7f]|\\(?=[,= "]|\Z)')
_LP_SPECIAL = re.compile(r'[,= "]')
#: InfluxDB refuses (tag) or silently drops (field) a key named `time`
_RESERVED = "time"


def _key_problem(what: str, name: str) -> str:
    if len(name) > MAX_KEY:
        return f"{what} {name[:40]!r}... is longer than {MAX_KEY} characters"
    if name == _RESERVED:
        return f"{what} 'time' is reserved by InfluxDB"
    return _lp_problem(what, name)


def field_key_problem(name: str) -> str:
    """What is wrong with `name` as a field key ("" when nothing)."""
    return _key_problem("field", name)


def _lp_problem(what: str, text: str) -> str:
    m = _LP_UNSAFE.search(text)
    if m is None:
        return ""
    if m.group(0) != "\\":
        return (f"{what} {text[:80]!r} contains the control character {m.group(0)!r} "
                "(line protocol cannot carry it)")
    return (f"{what} {text[:80]!r} has a backslash before , = space \" or at its end "
            "(line protocol would read it as an escape)")


def check_tags(index: int, measurement: str, tags: dict[str, str]) -> None:
    overcloud = tags.get("overcloud")
    if overcloud and not is_overcloud_name(overcloud):
        raise DecodeError(f"samples[{index}]: overcloud tag {overcloud[:80]!r} is not an "
                          f"OverCloud name ({OVERCLOUD_NAME_RULE})")
    size = len(measurement)
    for k, v in tags.items():
        if not v:
            continue  # an empty tag is no tag: line protocol leaves it out
        problem = _key_problem("tag key", k) or _lp_problem(f"tag {k!r} value", v)
        if problem:
            raise DecodeError(f"samples[{index}]: {problem}")
        size += 2 + len(k.encode()) + len(v.encode()) + len(_LP_SPECIAL.findall(k + v))
    if size > MAX_SERIES_KEY:
        raise DecodeError(f"samples[{index}]: measurement and tags are {size} bytes, more than "
                          f"InfluxDB's series key limit of {MAX_SERIES_KEY}")


def _sample(index: int, row: Any) -> Sample:
    # hot path: exact type checks (JSON only yields these types) and a cache of valid names;
    # orjson.loads never yields NaN/Infinity, but the finiteness check stays for direct callers
    if type(row) is not list or len(row) != 4:
        raise DecodeError(f"samples[{index}] must be [measurement, tags, fields, time_ns]")
    measurement, tags, fields, ts = row
    if type(measurement) is not str or measurement not in _valid_names:
        if not isinstance(measurement, str) or not NAME.fullmatch(measurement):
            raise DecodeError(f"samples[{index}]: bad measurement name {measurement!r}")
        if len(_valid_names) < 10_000:
            _valid_names.add(measurement)
    if type(tags) is not dict or "" in tags or not all(
        type(v) is str for v in tags.values()
    ) or not all(isinstance(k, str) for k in tags):
        raise DecodeError(f"samples[{index}]: tags must map names to strings")
    check_tags(index, measurement, tags)
    if type(fields) is not dict or not fields or "" in fields:
        if type(fields) is dict and fields:
            raise DecodeError(f"samples[{index}]: field '' has unsupported value {fields['']!r}")
        raise DecodeError(f"samples[{index}]: fields must be a non-empty object")
    for k, v in fields.items():
        problem = _key_problem("field", k)
        if problem:
            raise DecodeError(f"samples[{index}]: {problem}")
        if tags.get(k):  # an empty tag is no tag: line protocol leaves it out
            raise DecodeError(f"samples[{index}]: {k!r} is both a tag and a field")
        t = type(v)
        if t is float:
            if not math.isfinite(v):
                raise DecodeError(f"samples[{index}]: field {k!r} is not finite")
        elif t is int:
            if not MIN_INT <= v <= MAX_INT:
                raise DecodeError(f"samples[{index}]: field {k!r} is outside InfluxDB's "
                                  f"64-bit integers: {v}")
        elif t not in _FIELD_TYPES and not isinstance(v, int | float | str):
            raise DecodeError(f"samples[{index}]: field {k!r} has unsupported value {v!r}")
    if type(ts) is not int or ts <= 0:
        raise DecodeError(f"samples[{index}]: time_ns must be a positive integer")
    if ts > MAX_TIME_NS:
        raise DecodeError(f"samples[{index}]: time_ns {ts} is beyond InfluxDB's range")
    return Sample(measurement, tags, fields, ts)


def describe(raw: bytes, limit: int = 200) -> str:
    """A short printable prefix of a message, for dead-letter records and logs."""
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")

