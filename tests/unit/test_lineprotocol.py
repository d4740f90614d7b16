"""Line protocol rendering: escaping, field types, and the DevLake's fast path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from devlake.lineprotocol import line, message_lines
from overcloud.samples import Sample
from overcloud.wire import encode_samples


def test_escaping_and_types() -> None:
    s = Sample("cpu load", {"host": "a b,c=d", "overcloud": "shop"},
               {"f 1": 1.5, "n": 3, "ok": True, "msg": 'say "hi"\\'}, 1_000)
    assert line(s) == (
        r'cpu\ load,host=a\ b\,c\=d,overcloud=shop f\ 1=1.5,n=3i,ok=true,msg="say \"hi\"\\" 1000'
    )


def test_tags_are_sorted_and_empty_tags_dropped() -> None:
    s = Sample("m", {"z": "1", "a": "2", "empty": ""}, {"v": 0.0}, 5)
    assert line(s) == "m,a=2,z=1 v=0.0 5"


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-(2**62), 2**62), st.booleans(), st.text(max_size=8))
samples = st.builds(
    Sample, names,
    st.dictionaries(st.sampled_from(["node", "host", "overcloud", "cpu"]),
                    st.text("ab ,=c", min_size=1, max_size=5), max_size=3),
    st.dictionaries(names, values, min_size=1, max_size=4), st.integers(1, 2**62),
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
