"""Scheduled backups: what is due (pure), and the orchestrator asking for each once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backup import Backup, backup_dir
from orchestrator.provision import Context
from orchestrator.registry import OverCloudRecord, Registry
from orchestrator.request import RequestInvalid, parse_request
from orchestrator.schedule import due_backups
from orchestrator.service import Orchestrator
from orchestrator.store import WorkflowStore
from orchestrator.workflow import ActionRegistry, Engine
from overcloud.events import BackupRequested
from overcloud.settings import load_settings

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: dev@example.com
{backup}
saas: {{stack: wordpress}}
"""


def spec(name: str, backup: str = "") -> dict[str, Any]:
    return parse_request(DOC.format(name=name, backup=backup)).to_spec()


def rec(name: str, state: str = "ready", backup: str = "backup: {every: 1h, keep: 3}"
        ) -> OverCloudRecord:
    return OverCloudRecord(name, "dev@example.com", state, spec(name, backup), f"req-{name}",
                           None, "", "", 0.0, 0.0, [])


def test_what_is_due() -> None:
    hour = 3600.0
    recs = [rec("fresh"), rec("recent"), rec("old"), rec("asked"), rec("manual", backup=""),
            rec("paused", "paused"), rec("failed", "failed")]
    newest = {"recent": 10 * hour - 60, "old": 8 * hour, "asked": 8 * hour}
    asked = {"asked": 10 * hour - 60}
    due = due_backups(recs, lambda r: newest.get(r.name, 0.0), asked.get, 10 * hour)
    assert [(d.name, d.keep) for d in due] == [("fresh", 3), ("old", 3)]


def test_a_schedule_is_a_duration_of_at_least_five_minutes() -> None:
    assert parse_request(DOC.format(name="blog", backup="backup: {every: 1d12h}")).backup.every \
        == "1d12h"
    for bad, why in (("2m", "too often"), ("daily", "not a duration"),
                     ("9" * 40 + "d", "not a duration")):
        with pytest.raises(RequestInvalid, match=why):
            parse_request(DOC.format(name="blog", backup=f"backup: {{every: {bad}}}"))
    with pytest.raises(RequestInvalid, match=r"backup\.keep"):
        parse_request(DOC.format(name="blog", backup="backup: {every: 1d, keep: 0}"))


class ListBus:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any, key: str | None = None) -> None:
        self.events.append(event)


def test_the_orchestrator_asks_once_per_period(tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path)})
    reg, bus = Registry(s), ListBus()
    store = WorkflowStore(tmp_path / "wf.sqlite")
    orch = Orchestrator(Context(s, {}, reg, bus, None), Engine(store, ActionRegistry()), store,
                        deadletters=None)
    reg.admit("blog", "dev@example.com", spec("blog", "backup: {every: 1h, keep: 3}"), "req-1")
    reg.set_state("blog", "ready")
    reg.admit("shop", "dev@example.com", spec("shop"), "req-2")  # no schedule
    reg.set_state("shop", "ready")
    assert orch.schedule_backups(now=1000.0) == ["blog"]
    assert isinstance(bus.events[0], BackupRequested) and bus.events[0].keep == 3
    assert orch.schedule_backups(now=1000.0 + 3000) == [], "asked already, not an hour ago"
    # a backup made meanwhile (by hand) restarts the period
    folder = backup_dir(s, "blog")
    folder.mkdir(parents=True)
    b = Backup("20261130T060100Z-000000", "blog", 1000.0 + 3500, 5, "0" * 64, "blog-n1",
               "lxd1", "req-1")
    (folder / f"{b.id}.json").write_text(json.dumps(b.to_dict()))
    assert orch.schedule_backups(now=1000.0 + 3700) == []
    assert orch.schedule_backups(now=1000.0 + 3500 + 3600) == ["blog"]
    assert len(bus.events) == 2
