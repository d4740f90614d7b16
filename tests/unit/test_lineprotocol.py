"""Line protocol rendering: escaping, field types, and the DevLake's fast path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devlake.lineprotocol import message_lines
from overcloud.errors import DecodeError
from overcloud.lineprotocol import line
from overcloud.samples import Sample
from overcloud.wire import encode_samples


def test_escaping_and_types() -> None:
    s = Sample("cpu load", {"host": "a b,c=d", "overcloud": "shop"},
               {"f 1": 1.5, "n": 3, "ok": True, "msg": 'say "hi"\\'}, 1_000)
    assert line(s) == (
        r'cpu\ load,host=a\ b\,c\=d,overcloud=shop f\ 1=1.5,n=3i,ok=true,msg="say \"hi\"\\" 1000'
    )


def test_field_keys_escape_quotes_and_strings_keep_newlines() -> None:
    """InfluxDB 1.x unescapes \" in field keys, and a newline inside a quoted string value is
    part of the value (escaping it as \\n would store a backslash and an n)."""
    s = Sample("m", {"t": 'a"b\\c'}, {'f"x': 1.0, "s": "one\ntwo"}, 7)
    assert line(s) == 'm,t=a"b\\c f\\"x=1.0,s="one\ntwo" 7'


def _message(*rows: list[object]) -> bytes:
    import orjson

    return orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                         "time": "2026-11-25T10:00:00Z", "payload": {"samples": list(rows)}})


@pytest.mark.parametrize(("bad", "reason"), [
    (["m", {"node": "n"}, {"v": 2**63, "w": 1.5}, 2], "64-bit integers"),
    (["m", {"node": "n"}, {"v": 1, "w": 1.5}, 2**63 - 1], "beyond InfluxDB's range"),
    (["m", {"node": "n"}, {"v": 2**64 - 1, "s": "x"}, 2], "64-bit integers"),
])
def test_values_outside_influx_ranges_are_refused_also_for_known_shapes(
        bad: list[object], reason: str) -> None:
    """The fast path skips validation for shapes it has seen: values still must fit."""
    good = [bad[0], bad[1], {k: (1 if isinstance(v, int) else v) for k, v in bad[2].items()}, 1]
    assert message_lines(_message(good))  # the shape is now cached
    with pytest.raises(DecodeError, match=reason):
        message_lines(_message(good, bad))


def test_tags_are_sorted_and_empty_tags_dropped() -> None:
    s = Sample("m", {"z": "1", "a": "2", "empty": ""}, {"v": 0.0}, 5)
    assert line(s) == "m,a=2,z=1 v=0.0 5"


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-(2**62), 2**62), st.booleans(), st.text(max_size=8))
tags = st.fixed_dictionaries({}, optional={
    "node": st.text("ab ,=c\"", min_size=1, max_size=5),
    "host": st.text("ab ,=c", min_size=1, max_size=5),
    "overcloud": st.sampled_from(["shop", "my-blog", "x1"]),
    "cpu": st.text("ab ,=c", min_size=1, max_size=5),
})
samples = st.builds(
    Sample, names, tags,
    st.dictionaries(names.filter(lambda n: n not in ("time", "node", "host", "cpu")), values,
                    min_size=1, max_size=4), st.integers(1, 2**62),
)


@settings(max_examples=200)
@given(st.lists(samples, min_size=1, max_size=10))
def test_fast_path_equals_plain_rendering(batch: list[Sample]) -> None:
    """The DevLake's cached per-shape templates must render exactly what `line` renders."""
    raw = encode_samples(batch)
    for _ in range(2):  # second pass goes through the cached templates
        got = message_lines(raw)
        want: dict[str, list[str]] = {}
        for s in batch:
            want.setdefault(s.tags.get("overcloud", ""), []).append(line(s))
        assert got == want
