"""`overcloud --tower URL --token T …`: the CLI through the DevTower API prints what it prints
on the UnderCloud machine, sees only the caller's OverClouds, and fails in one line.

The API is the real one on loopback (the `api` fixture of test_devtower_api: a list as the
event bus, a recording DevLake reader); the CLI runs as a real subprocess. The local runs
read the same state directory the API serves; the remote runs get an empty one, so they can
only have learned what they print from the API.
"""

# ruff: noqa: F811 (`api` is the fixture imported from test_devtower_api)
from __future__ import annotations

import re
from pathlib import Path

from orchestrator.store import WorkflowStore
from orchestrator.workflow import TaskSpec, WorkflowSpec
from overcloud.events import OverCloudDeleteRequested, OverCloudRequested
from tests.helpers import run_cli
from tests.unit.test_devtower_api import DOC, Api, api  # noqa: F401 (the fixture)


def _local(api: Api, *args: str) -> tuple[int, str]:
    p = run_cli(list(args), {"OVERCLOUD_STATE_DIR": str(api.registry_dir), "OVERCLOUD_CONFIG": "",
                             "COLUMNS": "200"})
    return p.returncode, p.stdout + p.stderr


def _remote(api: Api, token: str, tmp: Path, *args: str) -> tuple[int, str]:
    p = run_cli(list(args), {"OVERCLOUD_STATE_DIR": str(tmp / "elsewhere"), "OVERCLOUD_CONFIG": "",
                             "OVERCLOUD_TOWER": api.url, "OVERCLOUD_TOKEN": token,
                             "COLUMNS": "200"})
    return p.returncode, p.stdout + p.stderr


def _no_age(text: str) -> str:
    return re.sub(r"\b\d+(\.\d+)?s\b", "<age>", text)


def _cells(line: str) -> list[str]:
    """A table row's cells, without the padding (column widths follow the other rows)."""
    return [c.strip() for c in re.split(r"[│┃|]", _no_age(line))]


def _seed(api: Api) -> None:
    api.admit("alpha", "a@example.com")
    api.admit("beta", "b@example.com")
    api.registry.set_node("alpha", "alpha-n1", "lxd1", ["web", "app", "db"], "10.1.0.2")
    api.registry.set_state("alpha", "ready", url="http://127.0.0.1:18001/")
    api.registry.set_node("beta", "beta-n1", "lxd2", ["web", "app", "db"], "10.2.0.2")
    store = WorkflowStore(api.registry_dir / "orchestrator" / "workflows.sqlite")
    store.create(WorkflowSpec("provision", "alpha", (TaskSpec("launch", "launch"),)),
                 workflow_id="req-alpha")
    store.close()


def test_list_and_show_print_the_same_as_on_the_undercloud(api: Api, tmp_path: Path) -> None:
    _seed(api)
    a = api.token("a@example.com")
    code, local = _local(api, "list")
    assert code == 0 and "alpha" in local and "beta" in local
    code, remote = _remote(api, a, tmp_path, "list")
    assert code == 0, remote
    assert "beta" not in remote  # B's OverCloud does not exist for A
    local_alpha = [ln for ln in local.splitlines() if "alpha" in ln]
    remote_alpha = [ln for ln in remote.splitlines() if "alpha" in ln]
    assert [_cells(ln) for ln in remote_alpha] == [_cells(ln) for ln in local_alpha]

    code, local = _local(api, "show", "alpha")
    assert code == 0, local
    code, remote = _remote(api, a, tmp_path, "show", "alpha")
    assert code == 0, remote
    for needle in ("alpha (a@example.com): ready  http://127.0.0.1:18001/", "alpha-n1",
                   "10.1.0.2", "web+app+db", "provision workflow req-alpha", "launch"):
        assert needle in local and needle in remote, needle
    # the tasks table is the same table
    assert [_cells(ln) for ln in remote[remote.index("provision workflow"):].splitlines()] == \
        [_cells(ln) for ln in local[local.index("provision workflow"):].splitlines()]

    code, out = _remote(api, a, tmp_path, "show", "beta")
    assert code == 1 and "no OverCloud" in out and "Traceback" not in out


def test_request_validate_and_apply_through_the_tower(api: Api, tmp_path: Path) -> None:
    a = api.token("a@example.com")
    doc = tmp_path / "req.yaml"
    doc.write_text(DOC.format(name="gamma", owner="a@example.com", api="true"))
    code, local = _local(api, "request", "validate", str(doc))
    code2, remote = _remote(api, a, tmp_path, "request", "validate", str(doc))
    assert code == code2 == 0 and remote == local

    bad = tmp_path / "bad.yaml"
    bad.write_text(DOC.format(name="Gamma_1", owner="a@example.com", api="maybe"))
    code, local = _local(api, "request", "validate", str(bad))
    code2, remote = _remote(api, a, tmp_path, "request", "validate", str(bad))
    assert code == code2 == 1 and "Traceback" not in remote
    lines = [ln for ln in local.splitlines() if ln.startswith(str(bad) + ":")]
    assert lines and all(ln in remote for ln in lines[:-1]), (local, remote)

    other = tmp_path / "other.yaml"
    other.write_text(DOC.format(name="delta", owner="b@example.com", api="true"))
    code, remote = _remote(api, a, tmp_path, "request", "apply", str(other))
    assert code == 1 and "must be you" in remote and not api.bus.events

    code, out = _remote(api, a, tmp_path, "request", "apply", str(doc))
    assert code == 0, out
    assert [type(e) for e in api.bus.events] == [OverCloudRequested]
    assert f"request id {api.bus.events[0].id}" in out
    # a dry run through the DevTower: the request's summary (placement reads the UnderCloud's
    # live load, which only its machine sees), nothing published
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(DOC.format(name="epsilon", owner="a@example.com", api="true"))
    code, out = _remote(api, a, tmp_path, "request", "apply", "--dry-run", str(fresh))
    assert code == 0 and "epsilon: a valid OverCloud request" in out and "dry run" in out, out
    assert len(api.bus.events) == 1


def test_delete_metrics_and_top_through_the_tower(api: Api, tmp_path: Path) -> None:
    _seed(api)
    a = api.token("a@example.com")
    code, out = _remote(api, a, tmp_path, "delete", "beta")
    assert code == 1 and "no OverCloud" in out and not api.bus.events
    code, out = _remote(api, a, tmp_path, "delete", "alpha", "--keep-data")
    assert code == 0, out
    (ev,) = api.bus.events
    assert isinstance(ev, OverCloudDeleteRequested) and ev.keep_data and f"id {ev.id}" in out

    code, out = _remote(api, a, tmp_path, "metrics", "query", "SELECT * FROM m",
                        "--overcloud", "alpha")
    assert code == 0 and "devlake_alpha" in out and "1.0" not in out.split("devlake_alpha")[0]
    assert ("alpha", "SELECT * FROM m") in api.reader.asked
    code, out = _remote(api, a, tmp_path, "metrics", "query", "SELECT * FROM m",
                        "--database", "devlake_beta")
    assert code == 1 and "--database" in out
    code, out = _remote(api, a, tmp_path, "metrics", "query", "DROP DATABASE devlake_beta",
                        "--overcloud", "alpha")
    assert code == 1 and "Traceback" not in out and "DevTower" in out

    code, out = _remote(api, a, tmp_path, "top", "--once", "--overcloud", "alpha",
                        "--window", "30m")
    assert code == 0, out
    assert ("alpha", "top 30m 60s") in api.reader.asked
    code, out = _remote(api, a, tmp_path, "top", "--once")
    assert code == 1 and "--overcloud" in out


def test_a_bad_or_missing_token_is_one_line(api: Api, tmp_path: Path) -> None:
    code, out = _remote(api, "oct_000000000000_" + "x" * 43, tmp_path, "list")
    assert code == 1 and "401" not in out and "token" in out and "Traceback" not in out
    code, out = _remote(api, "", tmp_path, "list")
    assert code == 1 and "needs a token" in out
    p = run_cli(["--tower", "ftp://x", "list"], {"OVERCLOUD_TOKEN": "t"})
    assert p.returncode == 1 and "http://" in p.stdout + p.stderr


def test_backups_through_the_tower(api: Api, tmp_path: Path) -> None:
    """`backup list` prints the same table both ways; `backup NAME` and `restore` ask through
    the API (which publishes the events); another tenant's OverCloud has no backups to them."""
    import json

    from orchestrator.backup import Backup, backup_dir
    from overcloud.events import BackupRequested, RestoreRequested

    _seed(api)
    folder = backup_dir(api.tower_settings, "alpha")
    folder.mkdir(parents=True)
    b = Backup("20261130T060100Z-000000", "alpha", 1000.0, 12345, "0" * 64, "alpha-n1", "lxd1",
               "req-alpha")
    (folder / f"{b.id}.json").write_text(json.dumps(b.to_dict()))
    a = api.token("a@example.com")
    code, local = _local(api, "backup", "list", "alpha")
    code2, remote = _remote(api, a, tmp_path, "backup", "list", "alpha")
    assert code == code2 == 0 and b.id in remote and "12,345 B" in remote, remote
    assert [_cells(ln) for ln in remote.splitlines() if b.id in ln] == [
        _cells(ln) for ln in local.splitlines() if b.id in ln]
    code, out = _remote(api, a, tmp_path, "backup", "alpha", "--keep", "2")
    assert code == 0 and "backup of alpha requested" in out, out
    code, out = _remote(api, a, tmp_path, "restore", "alpha", "--from", b.id)
    assert code == 0 and f"from {b.id} requested" in out, out
    assert [type(e) for e in api.bus.events] == [BackupRequested, RestoreRequested]
    code, out = _remote(api, a, tmp_path, "backup", "list", "beta")
    assert code == 1 and "no OverCloud named 'beta'" in out, out


def test_pause_resume_and_a_clone_through_the_tower(api: Api, tmp_path: Path) -> None:
    """`pause`/`resume` ask through the API; `restore --as` of an existing OverCloud of the
    caller's asks for a restore into it with the backup's OverCloud as its source."""
    import json

    from orchestrator.backup import Backup, backup_dir
    from overcloud.events import PauseRequested, RestoreRequested, ResumeRequested

    _seed(api)
    a = api.token("a@example.com")
    code, out = _remote(api, a, tmp_path, "pause", "alpha")
    assert code == 0 and "pause of alpha requested" in out, out
    api.registry.set_state("alpha", "paused")
    code, out = _remote(api, a, tmp_path, "pause", "alpha")
    assert code == 1 and "resume it first" in out, out
    code, out = _remote(api, a, tmp_path, "resume", "alpha")
    assert code == 0 and "resume of alpha requested" in out, out
    assert [type(e) for e in api.bus.events] == [PauseRequested, ResumeRequested]

    api.registry.set_state("alpha", "ready")
    api.admit("alpha2", "a@example.com")
    api.registry.set_state("alpha2", "ready")
    folder = backup_dir(api.tower_settings, "alpha")
    folder.mkdir(parents=True)
    b = Backup("20261130T060100Z-000000", "alpha", 1000.0, 5, "0" * 64, "alpha-n1", "lxd1",
               "req-alpha")
    (folder / f"{b.id}.json").write_text(json.dumps(b.to_dict()))
    code, out = _remote(api, a, tmp_path, "restore", "alpha", "--from", b.id, "--as", "alpha2")
    assert code == 0 and "restore of alpha2" in out, out
    ev = api.bus.events[-1]
    assert isinstance(ev, RestoreRequested) and (ev.name, ev.source) == ("alpha2", "alpha")
    code, out = _remote(api, a, tmp_path, "restore", "alpha", "--from", b.id, "--as", "beta")
    assert code == 1, out  # another tenant's name: it does not exist for A, and cannot be made
