"""The evaluator process asks which OverClouds are paused before it reads samples: a paused
one's breaching samples raise nothing, another one's do (the runner above a consumer double;
the same runner runs against the real broker in tests/integration/test_alerts.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from devlake.alerts.outbox import Outbox
from devlake.alerts.rules import Rule
from devlake.alerts.runner import AlertRunner
from overcloud.samples import Sample
from overcloud.settings import load_settings
from overcloud.wire import encode_samples


class Consumer:
    """What the runner uses of a KafkaConsumer: one batch of messages, then nothing."""

    def __init__(self, values: list[bytes]) -> None:
        self.batches = [{"tp": [SimpleNamespace(value=v, offset=i)
                                for i, v in enumerate(values)]}]

    def subscription(self) -> set[str]:
        return set()

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[str]:
        return set()

    def commit(self, offsets: Any) -> None:
        pass


def test_a_paused_overclouds_samples_raise_no_alert(tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path)})
    rule = Rule.model_validate({
        "name": "slow", "watch": {"measurement": "service_http", "field": "latency_ms",
                                  "group_by": ["overcloud"]},
        "condition": ">", "threshold": 100, "recover": 50, "for": 0})
    samples = [Sample("service_http", {"overcloud": oc, "node": f"{oc}-n1"},
                      {"latency_ms": 900.0}, 1_000_000_000) for oc in ("blog", "shop")]
    asked: list[int] = []

    def paused() -> frozenset[str]:
        asked.append(1)
        return frozenset({"blog"})

    runner = AlertRunner(s, [rule], Consumer([encode_samples(samples)]),  # type: ignore[arg-type]
                         Outbox(tmp_path / "outbox.db"), SimpleNamespace(),  # type: ignore[arg-type]
                         clock=lambda: 2_000_000_000, muted=paused)
    runner.step()
    assert asked, "the runner asked which OverClouds are paused"
    assert [g["group"] for g in runner.evaluator.snapshot()] == [{"overcloud": "shop"}]
    assert runner.transitions == 1
