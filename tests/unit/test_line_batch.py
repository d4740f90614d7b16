"""`LineBatch`: points that agents render, that the DevLake checks and forwards unchanged.

The contract: a line is accepted exactly when the full check accepts it, whether it takes the
fast path (a cached key and one regular-expression match) or not; what is accepted is what
`line` renders from a valid sample, so it stores and reads back as that sample. Lines that
InfluxDB itself would refuse are refused here, with the line's index and the reason.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from devlake.lineprotocol import message_lines
from overcloud import lineprotocol
from overcloud.errors import DecodeError
from overcloud.lineprotocol import decode_lines, encode_lines, line, metric_rows
from overcloud.samples import Sample
from overcloud.wire import encode_samples

TS = 1_764_000_000_000_000_000


def batch_of(*lines: object, version: int = 1) -> bytes:
    return orjson.dumps({"type": "LineBatch", "version": version, "id": "x",
                         "time": "2026-11-30T10:00:00Z", "payload": {"lines": list(lines)}})


names = st.from_regex(r"[a-z_][a-z0-9_.\-]{0,8}", fullmatch=True)
# names with everything line protocol must escape or cannot carry (a backslash before an
# escaped character or at the end, `time`), and beyond ASCII
odd = st.one_of(st.text(st.sampled_from(list("ab ,=\"é€_-.\\x\n\t")), min_size=1, max_size=6),
                st.just("time"), st.just("\\\\x"))
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-(2**63), 2**63 - 1), st.booleans(),
                   st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    tags = draw(st.fixed_dictionaries({}, optional={
        "node": odd, "overcloud": st.sampled_from(["shop", "my-blog", "x1", "Bad"]),
        "cpu": st.sampled_from(["", "0", "cpu 1"])}))
    tags.update(draw(st.dictionaries(odd, st.one_of(odd, st.just("")), max_size=2)))
    fields = draw(st.dictionaries(st.one_of(names, odd, st.just("node")), values, min_size=1,
                                  max_size=4))
    return Sample(draw(names), tags, fields, draw(st.integers(1, 2**63 - 1)))


@settings(max_examples=400)
@given(st.lists(samples(), min_size=1, max_size=6))
def test_lines_are_accepted_exactly_when_their_samples_are(batch: list[Sample]) -> None:
    """What an agent renders is what the DevLake would have rendered from the same samples,
    and forwarded unchanged; what no rendering can carry is refused either way."""
    raw = encode_lines(batch)
    try:
        want = message_lines(encode_samples(batch))
    except DecodeError:
        event("refused")
        for _ in range(2):
            with pytest.raises(DecodeError):
                message_lines(raw)
        return
    event("accepted")
    for _ in range(3):  # from the third pass on, the fast path for every line
        assert message_lines(raw) == want
    back = decode_lines(raw)
    assert [(s.measurement, s.time_ns) for s in back] == [(s.measurement, s.time_ns)
                                                          for s in batch]
    for got, sent in zip(back, batch, strict=True):
        assert got.tags == {k: v for k, v in sent.tags.items() if v != ""}
        assert got.fields == sent.fields
        assert [type(v) for v in got.fields.values()] == [type(v) for v in sent.fields.values()]


GOOD = f"m,node=n1,overcloud=shop v=1.5,n=3i {TS}"
"""A line whose shape (v a float, n an integer) is learned first: a hostile line of the same
shape tries the fast path before the full check."""

#: (a hostile line, the start of the reason) — each after its key is cached, and before
HOSTILE: list[tuple[object, str | None]] = [
    (f"m,node=n1,overcloud=shop v=1.5 {TS}\nm,overcloud=victim v=6.0 {TS}", "lines[1]: the time"),
    (f"m,node=n1,overcloud=shop v=1.5,time=2.0 {TS}", "lines[1]: field 'time' is reserved"),
    (f"m,node=n1,overcloud=shop time=2.0 {TS}", "lines[1]: field 'time' is reserved"),
    ("m,node=n1,overcloud=shop v=1.5,n=3i 9223372036854775807", "lines[1]: the time"),
    ("m,node=n1,overcloud=shop v=1.5 0", "lines[1]: the time"),
    ("m,node=n1,overcloud=shop v=1.5", "lines[1]: no time after the fields"),
    (f"m,node=n1,overcloud=shop v=NaN,n=3i {TS}", "lines[1]: fields do not parse"),
    (f"m,node=n1,overcloud=shop v=1e999,n=3i {TS}", "lines[1]: field 'v' is not finite"),
    (f"m,node=n1,overcloud=shop v=1.5,n=9223372036854775808i {TS}",
     "lines[1]: field 'n' is outside"),
    (f"m,node=n1,overcloud=shop v=1.5,n=3 {TS}", None),  # n is a float here: accepted
    (f"m,node=n1,overcloud=shop v=5u {TS}", "lines[1]: fields do not parse"),
    (f'm,node=n1,overcloud=shop s="open {TS}', "lines[1]: fields do not parse"),
    (f"m,node=n1,overcloud=shop  {TS}", "lines[1]: fields do not parse"),
    (f"m,overcloud=shop,node=n1 v=1.5 {TS}", "lines[1]: series key"),  # not sorted
    (f"m,node=n1,overcloud=Shop v=1.5 {TS}", "lines[1]: overcloud tag 'Shop'"),
    (f'm,overcloud=x";\\ DROP\\ DATABASE\\ "devlake_other v=1.5 {TS}', "lines[1]: overcloud tag"),
    (f"m,node=n\x01 v=1.5 {TS}", "lines[1]: tag 'node' value"),
    (f"m,node=n\\\\ v=1.5 {TS}", "lines[1]: tag"),
    (f"m,time=x v=1.5 {TS}", "lines[1]: tag key 'time'"),
    (f"m,node v=1.5 {TS}", "lines[1]: tag 'node' is not key=value"),
    (f"m,=x v=1.5 {TS}", "lines[1]: tag '=x' has an empty key"),
    (f"m,node= v=1.5 {TS}", "lines[1]: tag 'node=' has an empty key or value"),
    (f"1m,node=n1 v=1.5 {TS}", "lines[1]: bad measurement name"),
    (f"m,node=n1,overcloud=shop v=1.5,node=2.0 {TS}", "lines[1]: 'node' is both a tag"),
    (f"m,node=n1,overcloud=shop v=1.5,v=2.0 {TS}", "lines[1]: field 'v' appears twice"),
    ("", "lines[1] must be a non-empty string"),
    (5, "lines[1] must be a non-empty string"),
    ("m,node=n1,overcloud=shop", "lines[1]: no fields"),
]


@pytest.mark.parametrize(("bad", "reason"), HOSTILE)
def test_a_hostile_line_rejects_its_message_with_the_reason(bad: object, reason: str | None
                                                           ) -> None:
    lineprotocol._keys.clear()
    message_lines(batch_of(GOOD, GOOD))  # GOOD's shape is learned: its next lines go fast
    for _ in range(2):  # the bad line's key cold, then cached
        if reason is None:
            assert message_lines(batch_of(GOOD, bad)) == {"shop": [GOOD, bad]}
            continue
        with pytest.raises(DecodeError) as err:
            message_lines(batch_of(GOOD, bad))
        assert str(err.value).startswith(reason), err.value


@pytest.mark.parametrize(("raw", "reason"), [
    (batch_of(GOOD, version=2), "LineBatch version 2 is not supported"),
    (orjson.dumps({"type": "LineBatch", "version": 1, "id": "x", "time": "2026-11-30T10:00:00Z",
                   "payload": {"lines": GOOD}}), "payload.lines must be a list"),
    (orjson.dumps({"type": "LineBatch", "version": 1, "id": "x", "time": "2026-11-30T10:00:00Z",
                   "payload": [GOOD]}), "payload.lines must be a list"),
])
def test_a_bad_envelope_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        message_lines(raw)


def test_lines_go_to_their_overclouds_database_group() -> None:
    raw = batch_of(f"m,overcloud=shop v=1.0 {TS}", f"m,node=h v=2.0 {TS}",
                   f"m,overcloud=blog v=3.0 {TS}", f"m,overcloud=shop v=4.0 {TS + 1}")
    assert message_lines(raw) == {
        "shop": [f"m,overcloud=shop v=1.0 {TS}", f"m,overcloud=shop v=4.0 {TS + 1}"],
        "": [f"m,node=h v=2.0 {TS}"], "blog": [f"m,overcloud=blog v=3.0 {TS}"]}


def test_the_alert_evaluator_reads_rows_of_the_measurements_it_watches() -> None:
    raw = encode_lines([
        Sample("resource_host", {"overcloud": "shop", "node": "n1"},
               {"cpu": 81.5, "n": 3, "ok": True, "s": 'a "b"'}, TS),
        Sample("flow_peer", {"overcloud": "shop"}, {"bytes": 10}, TS)])
    rows = list(metric_rows(raw, {"resource_host"}))
    assert rows == [["resource_host", {"node": "n1", "overcloud": "shop"},
                     {"cpu": 81.5, "n": 3, "ok": True, "s": 'a "b"'}, TS]]
    # a SampleBatch gives its rows as they are; a bad line is skipped, not raised
    assert list(metric_rows(encode_samples([Sample("m", {}, {"v": 1.0}, TS)]), {"m"})) == [
        ["m", {}, {"v": 1.0}, TS]]
    assert list(metric_rows(batch_of(f"m v=NaN {TS}", f"m v=2.0 {TS}"), {"m"})) == [
        ["m", {}, {"v": 2.0}, TS]]
    with pytest.raises(DecodeError):
        metric_rows(batch_of(version=3), {"m"})


def test_agents_render_as_the_devlake_did() -> None:
    s = Sample("cpu load", {"host": "a b,c=d", "overcloud": "shop"},
               {"f 1": 1.5, "n": 3, "ok": True, "msg": 'say "hi"\\'}, 1_000)
    assert orjson.loads(encode_lines([s]))["payload"]["lines"] == [line(s)]
