"""Samples → InfluxDB line protocol, fast (this is the DevLake's hot path).

The escaped `measurement,tag=value,...` prefix of a series is cached, since an agent sends
the same few hundred series every cycle; fields and the timestamp are formatted per point.
Integers get the `i` suffix and floats stay floats, so a field keeps one type in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from overcloud.samples import FieldValue, Sample

_TAG_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})

_series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_field_key_cache: dict[str, str] = {}
_CACHE_LIMIT = 200_000


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
        esc = _field_key_cache[name] = name.translate(_TAG_ESC)
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


def line(sample: Sample) -> str:
    fields = ",".join(f"{_field_key(k)}={_value(v)}" for k, v in sample.fields.items())
    return f"{series_key(sample.measurement, sample.tags)} {fields} {sample.time_ns}"


def encode(samples: Iterable[Sample]) -> bytes:
    return "\n".join(line(s) for s in samples).encode()
