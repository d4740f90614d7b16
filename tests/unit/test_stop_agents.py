"""Deleting an OverCloud stops its node agents and no one else's, even when another
OverCloud's name starts with its name ("blog" and "blog-x": the pid files of both match the
glob `agent-blog-*`)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from daemons.process import Daemon
from orchestrator.provision import Context, register_actions
from orchestrator.workflow import ActionRegistry, TaskContext
from overcloud.settings import load_settings


class _NoRecords:
    def get(self, name: str) -> None:
        return None


def _agent(state: Path, overcloud: str, node: str) -> Daemon:
    return Daemon(name=f"agent-{overcloud}-{node}",
                  argv=[sys.executable, "-c", "import time; time.sleep(60)", str(state), node],
                  state_dir=state, ready=lambda: True, address="-")


def test_delete_stops_only_its_own_agents(tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path)})
    actions = ActionRegistry()
    register_actions(actions, Context(s, {}, _NoRecords(), None, None))  # type: ignore[arg-type]
    mine = [_agent(tmp_path, "blog", f"blog-n{i}") for i in (1, 2)]
    theirs = [_agent(tmp_path, "blog-x", "blog-x-n1"), _agent(tmp_path, "blog-n1", "blog-n1-n1")]
    for d in mine + theirs:
        d.start()
    try:
        ctx = TaskContext("wf", "agents", {}, {}, {"name": "blog"}, 1, threading.Event(),
                          lambda _: None)
        actions.get("stop_agents")(ctx)
        assert [d.pid() for d in mine] == [None, None]
        alive: list[Any] = [d.pid() for d in theirs]
        assert all(alive), "another OverCloud's agent was stopped"
    finally:
        for d in mine + theirs:
            d.stop()
