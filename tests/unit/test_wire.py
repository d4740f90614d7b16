"""The wire format: one place that encodes/decodes; malformed input raises DecodeError."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overcloud import events
from overcloud.errors import DecodeError
from overcloud.samples import Sample
from overcloud.wire import decode_event, decode_samples, encode_event, encode_samples

EXAMPLES: list[events.Event] = [
    events.OverCloudRequested(name="shop", owner="dev@example.org", spec={"nodes": 2}),
    events.OverCloudReady(name="shop", url="http://127.0.0.1:8080/", nodes={"n1": "lxd1"}),
    events.OverCloudFailed(name="shop", task="launch", reason="no capacity"),
    events.OverCloudDeleteRequested(name="shop", keep_data=True),
    events.OverCloudDeleted(name="shop"),
    events.OverCloudUpdateRequested(name="shop", owner="dev@example.org", spec={"nodes": 2}),
    events.OverCloudUpdated(name="shop", spec={"nodes": 2}, changes=["~ retention 30d → 90d"]),
    events.BackupRequested(name="shop", keep=3),
    events.RestoreRequested(name="shop", backup="20261130T060102Z-4f1c2a"),
    events.PauseRequested(name="shop"),
    events.OverCloudPaused(name="shop"),
    events.ResumeRequested(name="shop"),
    events.OverCloudResumed(name="shop", url="http://127.0.0.1:8080/", nodes={"n1": "lxd2"}),
    events.NodeOverloaded(host="lxd1", rule="node-overloaded", value=93.0, threshold=85.0,
                          recovery=70.0),
    events.NodeRecovered(host="lxd1", rule="node-overloaded", value=40.0),
    events.MigrationRequested(overcloud="shop", node="shop-n1", target="lxd2"),
    events.MigrationStarted(overcloud="shop", node="n1", source="lxd1", target="lxd2"),
    events.MigrationFinished(overcloud="shop", node="n1", source="lxd1", target="lxd2",
                             downtime_s=1.5),
    events.AlertFiring(rule="r", severity="critical", labels={"host": "a"}, value=1.0),
    events.AlertResolved(rule="r", labels={"host": "a"}, value=0.0),
]


def test_every_event_type_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(events.EVENT_TYPES.values())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.TYPE)
def test_event_round_trip(event: events.Event) -> None:
    raw = encode_event(event)
    env = orjson.loads(raw)
    assert set(env) == {"type", "version", "id", "time", "payload"}
    assert env["type"] == event.TYPE and env["version"] == event.VERSION
    assert decode_event(raw) == event


def test_events_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXAMPLES[0].name = "other"  # type: ignore[misc]


def _env(**over: object) -> bytes:
    doc: dict[str, object] = {"type": "OverCloudDeleted", "version": 1, "id": "abc",
                              "time": "2026-11-25T10:00:00Z", "payload": {"name": "x"}}
    doc.update(over)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"\x00\xff", "not JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b'{"type": "OverCloudDeleted"}', "lacks version, id, time, payload"),
        (_env(type="Bogus"), "unknown event type 'Bogus'"),
        (_env(version=7), "version 7 is not supported"),
        (_env(payload={}), "name: Field required"),
        (_env(payload={"name": 5}), "name: Input should be a valid string"),
        (_env(payload=[1]), "payload must be an object"),
        (_env(id=""), "'id' must be a non-empty string"),
        (_env(time="yesterday"), "time"),
        (_env(payload={"name": "x", "id": "y"}), "belong to the envelope"),
    ],
)
def test_malformed_events_raise_decode_error(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=None) as info:
        decode_event(raw)
    assert reason in str(info.value)


names = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**62), 2**62),
    st.booleans(), st.text(max_size=20),
)
tag_keys = names.map(lambda n: "t" + n)  # never `time`, `overcloud` or a field's name
field_keys = names.map(lambda n: "f" + n)
# a backslash or a control character in a tag value may be refused (test_malformed_...)
tag_values = st.text(st.characters(blacklist_characters="\\", blacklist_categories=("Cs", "Cc")),
                     min_size=1, max_size=10)
samples = st.builds(
    Sample, names, st.dictionaries(tag_keys, tag_values, max_size=4),
    st.dictionaries(field_keys, values, min_size=1, max_size=5), st.integers(1, 2**62),
)


@settings(suppress_health_check=[HealthCheck.too_slow])  # a shared, loaded machine
@given(st.lists(samples, max_size=20))
def test_sample_batch_round_trip(batch: list[Sample]) -> None:
    decoded = decode_samples(encode_samples(batch, batch_id="b1"))
    assert decoded.id == "b1"
    assert list(decoded.samples) == batch
    assert decoded.time <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"samples": "x"}, "payload.samples must be a list"),
        ({"samples": [["m", {}, {"v": 1}]]}, "must be [measurement, tags, fields, time_ns]"),
        ({"samples": [["bad name", {}, {"v": 1}, 1]]}, "bad measurement name"),
        ({"samples": [["m", {"t": 1}, {"v": 1}, 1]]}, "tags must map names to strings"),
        ({"samples": [["m", {}, {}, 1]]}, "fields must be a non-empty object"),
        ({"samples": [["m", {}, {"v": [1]}, 1]]}, "unsupported value"),
        ({"samples": [["m", {}, {"v": None}, 1]]}, "unsupported value"),
        ({"samples": [["m", {}, {"v": 1}, 0]]}, "time_ns must be a positive integer"),
        ({"samples": [["m", {}, {"v": 1}, 1.5]]}, "time_ns must be a positive integer"),
        ({"samples": [["m", {}, {"v": 1}, 2**63 - 1]]}, "beyond InfluxDB's range"),
        ({"samples": [["m", {}, {"v": 2**63}, 1]]}, "outside InfluxDB's 64-bit integers"),
        ({"samples": [["m", {"time": "x"}, {"v": 1}, 1]]}, "tag key 'time' is reserved"),
        ({"samples": [["m", {}, {"time": 1}, 1]]}, "field 'time' is reserved"),
        ({"samples": [["m", {"a": "x"}, {"a": 1}, 1]]}, "'a' is both a tag and a field"),
        ({"samples": [["m", {"a": "x\\"}, {"v": 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {"a\\": "x"}, {"v": 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {}, {"v\\": 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {"a": "x\\,y"}, {"v": 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {"a": "x\\ y"}, {"v": 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {}, {'v\\"': 1}, 1]]}, "has a backslash"),
        ({"samples": [["m", {"a": "x\ny"}, {"v": 1}, 1]]}, "control character"),
        ({"samples": [["m", {}, {"x\ny": 1}, 1]]}, "control character"),
        ({"samples": [["m", {}, {"\tx": 1}, 1]]}, "control character"),
        ({"samples": [["m", {"a": "x\x00"}, {"v": 1}, 1]]}, "control character"),
        ({"samples": [["m", {"a" * 300: "x"}, {"v": 1}, 1]]}, "longer than 256"),
        ({"samples": [["m", {"a": "x" * 70_000}, {"v": 1}, 1]]}, "series key limit"),
        ({"samples": [["m", {"overcloud": 'x"; DROP DATABASE "devlake_other'}, {"v": 1}, 1]]},
         "is not an OverCloud name"),
        ({"samples": [["m", {"overcloud": "Shop"}, {"v": 1}, 1]]}, "is not an OverCloud name"),
        ({"samples": [["m", {"overcloud": "shop\n"}, {"v": 1}, 1]]}, "not an OverCloud name"),
        ({"samples": [["m\n", {}, {"v": 1}, 1]]}, "bad measurement name"),
    ],
)
def test_malformed_sample_batches(payload: object, reason: str) -> None:
    raw = orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                        "time": "2026-11-25T10:00:00Z", "payload": payload})
    with pytest.raises(DecodeError) as info:
        decode_samples(raw)
    assert reason in str(info.value)


def test_names_line_protocol_can_carry_are_accepted() -> None:
    """A backslash elsewhere, quotes, unicode: fine (escaped or carried as they are)."""
    row = ["m", {"a": 'x\\y "q" é z', "overcloud": "shop-1", "b": "a,b=c d"},
           {'f"x': 1, "g h": "multi\nline \\ string\\", "k": 2**63 - 1}, 2**63 - 2]
    raw = orjson.dumps({"type": "SampleBatch", "version": 1, "id": "x",
                        "time": "2026-11-25T10:00:00Z", "payload": {"samples": [row]}})
    assert decode_samples(raw).samples[0].tags["overcloud"] == "shop-1"


def test_an_event_is_not_a_sample_batch() -> None:
    with pytest.raises(DecodeError, match="expected SampleBatch"):
        decode_samples(encode_event(EXAMPLES[0]))
