"""Issue 9: whatever the encoder emits, the real InfluxDB accepts and reads back unchanged.

Hypothesis makes samples with hostile names — backslashes (trailing ones too), quotes,
commas, equals signs, spaces, newlines, tabs, NUL, unicode, `time` — and values at the edges
of InfluxDB's ranges. Each goes through the DevLake's own path (`message_lines` on the
encoded message), both as a `SampleBatch` and as the `LineBatch` an agent renders, which
must be refused alike or forwarded as exactly the same lines. Either decoding refuses it
(`DecodeError`, which the DevLake dead-letters with that reason), or InfluxDB stores every
line (HTTP 204, nothing refused) and a query reads back exactly the tags, fields and time
that were sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devlake.lineprotocol import message_lines
from devlake.sinks import InfluxQL, InfluxV1Sink
from overcloud import influxql
from overcloud.errors import DecodeError
from overcloud.influxql import compose
from overcloud.lineprotocol import encode_lines
from overcloud.samples import Sample
from overcloud.settings import Settings
from overcloud.wire import MAX_TIME_NS, encode_samples
from tests.conftest import Env

pytestmark = pytest.mark.integration

DB = "lp_roundtrip"
#: what line protocol escapes or InfluxQL quotes (a backslash before a letter is kept as it is)
TRICKY = ['"', "'", ",", "=", " ", "/", ";", "é", "名", "☃", "#", "$", "{", "%", "%s", "a\\b",
          "\\\\x", "\u2028"]
#: what no escaping carries, so decoding must refuse it
REFUSED = ["\n", "\t", "\r", "\x00", "\x7f", "\\", "\\,", "\\ ", "\\=", '\\"']
printable = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\")
safe_text = st.lists(st.one_of(st.sampled_from(TRICKY), printable), min_size=1,
                     max_size=8).map("".join)
any_text = st.lists(st.one_of(st.sampled_from(TRICKY + REFUSED), printable), min_size=1,
                    max_size=8).map("".join)
# mostly names InfluxDB must store; now and then one that decoding must refuse
text = st.one_of(safe_text, safe_text, safe_text, any_text)
tag_keys = st.one_of(text, text, text, st.sampled_from(["time", "node", "_measurement", "v"]))
field_keys = st.one_of(text, text, text, st.sampled_from(["time", "v", "_field"]))
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.lists(st.one_of(st.sampled_from(TRICKY + REFUSED), printable), max_size=12).map("".join),
)
samples = st.builds(
    lambda tags, fields, t: (tags, fields, t),
    st.dictionaries(tag_keys, st.one_of(text, st.just("")), max_size=4),
    st.dictionaries(field_keys, values, min_size=1, max_size=4),
    st.one_of(st.integers(1, 2**62), st.integers(MAX_TIME_NS - 10, MAX_TIME_NS + 10)),
)
_measurements = itertools.count()
OUTCOMES: dict[str, int] = {}


@pytest.fixture(scope="module")
def influx(services: Env) -> Iterator[tuple[InfluxV1Sink, InfluxQL]]:
    s: Settings = services.settings()
    # no retention policy: points of every era must be storable
    sink = InfluxV1Sink(s.influx)
    ql = InfluxQL(s.influx)
    ql.query(compose("DROP DATABASE {}", influxql.database(DB)), post=True)
    ql.query(compose("CREATE DATABASE {}", influxql.database(DB)), post=True)
    try:
        yield sink, ql
    finally:
        ql.query(compose("DROP DATABASE {}", influxql.database(DB)), post=True)
        sink.close()
        ql.close()


def _read_back(ql: InfluxQL, measurement: str) -> list[tuple[dict[str, str], dict[str, Any], int]]:
    out = []
    for s in ql.query(compose("SELECT * FROM {} GROUP BY *", influxql.ident(measurement)), DB):
        for row in s.get("values") or []:
            fields = {c: v for c, v in zip(s["columns"][1:], row[1:], strict=True) if v is not None}
            out.append(({k: v for k, v in (s.get("tags") or {}).items() if v}, fields, row[0]))
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=samples)
def test_encoded_lines_are_accepted_and_read_back_equal(
        influx: tuple[InfluxV1Sink, InfluxQL], sample: tuple[dict[str, str], dict[str, Any], int]
) -> None:
    sink, ql = influx
    tags, fields, t = sample
    measurement = f"m{next(_measurements)}"  # its own: no type conflicts between examples
    raw = encode_samples([Sample(measurement, tags, fields, t)])
    agents = encode_lines([Sample(measurement, tags, fields, t)])  # what agents publish
    try:
        lines = message_lines(raw)
    except DecodeError as exc:
        with pytest.raises(DecodeError):
            message_lines(agents)  # refused alike
        why = next((w for w in ("control character", "backslash", "reserved", "both a tag",
                                "64-bit", "time_ns", "longer", "series key") if w in str(exc)), "")
        event(f"refused at decode: {why or exc}")
        OUTCOMES["refused"] = OUTCOMES.get("refused", 0) + 1
        return  # refused at decode: dead-lettered with its reason, never sent
    assert message_lines(agents) == lines  # forwarded as the DevLake would render it
    event("written")
    OUTCOMES["written"] = OUTCOMES.get("written", 0) + 1
    body = "\n".join(ln for batch in lines.values() for ln in batch).encode()
    sink.write(DB, body)  # raises PointsRefused if InfluxDB refused anything
    got = _read_back(ql, measurement)
    want_fields = {k: v for k, v in fields.items()}
    assert len(got) == 1, (body, got)
    got_tags, got_fields, got_t = got[0]
    assert got_t == t
    assert got_tags == {k: v for k, v in tags.items() if v}, body
    assert got_fields.keys() == want_fields.keys(), body
    for k, v in want_fields.items():
        assert (got_fields[k] == v and type(got_fields[k]) is type(v)) or (
            isinstance(v, float) and float(got_fields[k]) == v), (k, v, got_fields[k], body)


def test_the_generator_reached_influxdb_often() -> None:
    """(runs after the test above) Many names must really travel, not be refused early
    (about a quarter of the 600 random examples are written: 141-200 seen; 60 leaves room)."""
    assert OUTCOMES.get("written", 0) >= 60 and OUTCOMES.get("refused", 0) >= 50, OUTCOMES
