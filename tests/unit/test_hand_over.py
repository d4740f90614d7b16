"""The URL's hand-over between two hosts (orchestrator/migration.py `_hand_over`).

Both LXD daemons' proxies listen on this machine's loopback, so the new proxy can bind only
once the old one let go of the port. The hand-over's claim: the new device is already being
added (its proxy retrying its bind) while the old one is removed, so the port is taken again
within LXD's 0.5 s bind retry instead of after the `lxc` runs of a remove-then-add. Checked
here with hosts that record the calls; the real daemons are in tests/integration."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from orchestrator.migration import _hand_over


class Host:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.adding = threading.Event()
        self.add_failures = 0

    def add_proxy(self, node: str, device: str, listen: str, connect: str) -> None:
        self.log.append(f"{self.name} add {device} {listen}")
        self.adding.set()
        if self.add_failures:
            self.add_failures -= 1
            raise RuntimeError("bind: address already in use")  # gave up before the port freed

    def remove_device(self, node: str, device: str) -> None:
        self.log.append(f"{self.name} remove {device}")


def _pair(log: list[str]) -> tuple[Host, Host]:
    return Host("lxd1", log), Host("lxd2", log)


def test_the_new_device_is_being_added_while_the_old_one_is_removed() -> None:
    log: list[str] = []
    src, tgt = _pair(log)
    removing_saw_adding: list[bool] = []

    def remove(node: str, device: str) -> None:
        # the old device goes only once the new one is on its way (bounded: a remove-then-add
        # would wait here for nothing)
        removing_saw_adding.append(tgt.adding.wait(5))
        Host.remove_device(src, node, device)

    src.remove_device = remove  # type: ignore[method-assign]
    _hand_over(cast(Any, src), cast(Any, tgt), "n2", "tcp:127.0.0.1:8080")
    assert removing_saw_adding == [True], log
    assert sorted(log) == ["lxd1 remove web", "lxd2 add web tcp:127.0.0.1:8080"]


def test_an_add_that_gave_up_before_the_port_came_free_runs_once_more() -> None:
    log: list[str] = []
    src, tgt = _pair(log)
    tgt.add_failures = 1
    _hand_over(cast(Any, src), cast(Any, tgt), "n2", "tcp:127.0.0.1:8080")
    assert log.count("lxd2 add web tcp:127.0.0.1:8080") == 2 and "lxd1 remove web" in log


def test_a_second_failed_add_is_the_moves_error() -> None:
    log: list[str] = []
    src, tgt = _pair(log)
    tgt.add_failures = 2
    with pytest.raises(RuntimeError, match="already in use"):
        _hand_over(cast(Any, src), cast(Any, tgt), "n2", "tcp:127.0.0.1:8080")
