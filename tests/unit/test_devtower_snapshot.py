"""The DevTower's read snapshot: served from memory until another process commits, and then
never stale. The writer here is a second connection to the same SQLite files, as the
orchestrator's process is in production."""

from __future__ import annotations

from pathlib import Path

from devtower.snapshot import Snapshot
from orchestrator.provision import provision_spec
from orchestrator.registry import Registry
from orchestrator.request import parse_request
from orchestrator.store import WorkflowStore
from overcloud.settings import load_settings

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: a@example.com
cluster: {{nodes: 1, cpu: 1, memory: 1GiB}}
saas: {{stack: wordpress}}
"""


def test_a_commit_by_another_connection_is_seen_and_no_commit_costs_no_read(
        tmp_path: Path) -> None:
    s = load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_CONFIG": ""})
    wf_path = tmp_path / "orchestrator" / "workflows.sqlite"
    mine, theirs = Registry(s), Registry(s)  # the DevTower's connection, the orchestrator's
    my_wfs, their_wfs = WorkflowStore(wf_path), WorkflowStore(wf_path)
    snap = Snapshot(mine, my_wfs)
    assert snap.all() == [] and not snap.ready("a1") and snap.ready()
    rebuilds = snap.rebuilds

    req = parse_request(DOC.format(name="a1"), capacity=None)
    theirs.admit("a1", req.owner, req.to_spec(), "wf1")
    assert not snap.ready()
    assert [r.name for r in snap.all()] == ["a1"] and snap.get("a1") is not None
    assert snap.rebuilds == rebuilds + 1
    for _ in range(5):  # nothing committed since: from memory
        assert snap.get("a1") is not None and snap.ready()
    assert snap.rebuilds == rebuilds + 1

    theirs.set_node("a1", "a1-n1", "lxd1", ["db"], "10.0.0.2")
    theirs.set_state("a1", "ready", url="http://127.0.0.1:20080/")
    rec = snap.get("a1")
    assert rec is not None and rec.state == "ready" and [n.host for n in rec.nodes] == ["lxd1"]

    assert snap.workflows_of("a1") == [] and snap.ready("a1")
    their_wfs.create(provision_spec(req), {"name": "a1"}, workflow_id="wf1")
    assert not snap.ready("a1")
    assert [w.id for w in snap.workflows_of("a1")] == ["wf1"] and snap.ready("a1")
    their_wfs.task_started("wf1", their_wfs.get("wf1").tasks[0].name)
    assert str(snap.workflows_of("a1")[0].tasks[0].state) == "running"

    theirs.forget("a1")
    assert snap.get("a1") is None and snap.all() == []
    mine.admit("a2", req.owner, req.to_spec(), "wf2")  # this connection's own commit, too
    assert snap.get("a2") is not None
