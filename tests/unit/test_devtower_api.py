"""The DevTower API over real HTTP (uvicorn on loopback): identity, tenancy, bad input.

The event bus is a list (what was published is what we check) and the DevLake reader a
stand-in that records what it was asked; both are interfaces the API is given. The same
routes run against the real broker, InfluxDB and LXD in tests/integration/test_devtower.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtower.tokens import Role
from overcloud.events import OverCloudDeleteRequested, OverCloudRequested
from tests.devtower_kit import Api, serve_api

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: {owner}
cluster: {{nodes: 1, cpu: 1, memory: 1GiB}}
devtower: {{api: {api}, notify: [http://127.0.0.1:9/hook]}}
saas: {{stack: wordpress}}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serve_api(tmp_path) as a:
        yield a


def _post(c: httpx.Client, name: str, owner: str, api: str = "true") -> httpx.Response:
    return c.post("/v1/overclouds", content=DOC.format(name=name, owner=owner, api=api),
                  headers={"Content-Type": "application/yaml"})


def test_a_developer_creates_lists_and_deletes_only_their_own(api: Api) -> None:
    a, b = api.token("a@example.com"), api.token("b@example.com")
    with api.client(a) as ca, api.client(b) as cb:
        r = _post(ca, "alpha", "a@example.com")
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["name"] == "alpha" and body["webhook_secret"]
        ev = api.bus.events[-1]
        assert isinstance(ev, OverCloudRequested) and ev.id == body["id"] and ev.owner == "a@example.com"
        api.admit("alpha", "a@example.com")
        api.admit("beta", "b@example.com")
        assert [o["name"] for o in ca.get("/v1/overclouds").json()["overclouds"]] == ["alpha"]
        assert [o["name"] for o in cb.get("/v1/overclouds").json()["overclouds"]] == ["beta"]
        assert ca.get("/v1/overclouds/alpha").json()["owner"] == "a@example.com"
        for method, path in [("GET", "/v1/overclouds/beta"), ("DELETE", "/v1/overclouds/beta"),
                             ("GET", "/v1/overclouds/beta/events"),
                             ("GET", "/v1/overclouds/beta/query?q=SELECT%20*%20FROM%20m"),
                             ("GET", "/v1/overclouds/beta/latest"), ("GET", "/v1/overclouds/beta/top"),
                             ("GET", "/v1/overclouds/beta/webhooks"),
                             ("GET", "/v1/overclouds/nonexistent")]:
            r = ca.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["message"] in ("no OverCloud named 'beta'",
                                                    "no OverCloud named 'nonexistent'")
        assert not any(o == "beta" for o, _ in api.reader.asked)
        n = len(api.bus.events)
        r = ca.delete("/v1/overclouds/alpha", params={"keep_data": "true"})
        assert r.status_code == 202
        ev = api.bus.events[n]
        assert isinstance(ev, OverCloudDeleteRequested) and ev.name == "alpha" and ev.keep_data


def test_a_document_for_someone_else_is_refused_at_its_path(api: Api) -> None:
    with api.client(api.token("a@example.com")) as c:
        r = _post(c, "alpha", "b@example.com")
    assert r.status_code == 422
    assert any(p["path"] == "owner" and "a@example.com" in p["message"] for p in r.json()["problems"])
    assert api.bus.events == []


def test_problems_come_all_at_once_with_lines(api: Api) -> None:
    doc = "apiVersion: overcloud/v1\nkind: OverCloud\nname: Bad_Name\nowner: a@example.com\n" \
          "cluster: {nodes: 0}\nsaas: {stack: nope}\n"
    with api.client(api.token("a@example.com")) as c:
        r = c.post("/v1/overclouds", content=doc, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422
    problems = r.json()["problems"]
    assert {p["path"] for p in problems} >= {"name", "cluster.nodes", "saas.stack"}
    assert {p["line"] for p in problems if p["path"] == "name"} == {3}
    assert api.bus.events == []


def test_applying_a_changed_document_plans_and_requests_an_update(api: Api) -> None:
    from orchestrator.request import parse_request
    from overcloud.events import OverCloudUpdateRequested

    doc = DOC.format(name="alpha", owner="a@example.com", api="true")
    api.registry.admit("alpha", "a@example.com", parse_request(doc).to_spec(), "req-alpha")
    api.registry.set_state("alpha", "ready", url="http://127.0.0.1:20100/")
    changed = doc.replace("memory: 1GiB", "memory: 2GiB").replace(
        "notify: [http://127.0.0.1:9/hook]", "notify: [http://127.0.0.1:9/hook, http://h.test/b]")
    yaml = {"Content-Type": "application/yaml"}
    with api.client(api.token("a@example.com")) as c:
        same = c.post("/v1/overclouds", content=doc, headers=yaml)
        assert same.status_code == 200 and same.json()["state"] == "unchanged", same.text
        assert same.json()["changes"] == []
        dry = c.post("/v1/overclouds", params={"dry_run": "true"}, content=changed, headers=yaml)
        assert dry.status_code == 200 and dry.json()["state"] == "planned", dry.text
        plan = ["~ alpha-n1 memory 1GiB → 2GiB", "+ webhook http://h.test/b"]
        assert dry.json()["changes"] == plan
        assert api.bus.events == [], "the same document and a dry run publish nothing"
        r = c.post("/v1/overclouds", content=changed, headers=yaml)
        assert r.status_code == 202 and r.json()["update"] and r.json()["changes"] == plan
        # its first webhooks: the signing secret is made now and shown once, to the owner
        assert r.json()["webhook_secret"] and "webhook_secret" not in dry.json()
        (ev,) = api.bus.events
        assert isinstance(ev, OverCloudUpdateRequested) and ev.id == r.json()["id"]
        assert ev.spec["cluster"]["memory"] == "2GiB" and ev.owner == "a@example.com"
        # a change that cannot be made in place: a problem at its path, nothing published
        moved = c.post("/v1/overclouds", content=doc.replace("saas: {stack: wordpress}",
                       "saas: {stack: wordpress, expose: {port: 20999}}"), headers=yaml)
        assert moved.status_code == 422, moved.text
        assert [(p["path"], p["line"]) for p in moved.json()["problems"]] == [
            ("saas.expose.port", 7)]
        assert "cannot change in place" in moved.json()["problems"][0]["message"]
    with api.client(api.token("b@example.com")) as c:  # another tenant's name: taken, no plan
        other = c.post("/v1/overclouds", content=changed.replace("a@example.com", "b@example.com"),
                       headers=yaml)
        assert other.status_code == 409 and "changes" not in other.text
    assert len(api.bus.events) == 1


def test_backups_are_the_owners_and_of_this_incarnation_only(api: Api) -> None:
    import json as _json

    from orchestrator.backup import Backup, backup_dir
    from overcloud.events import BackupRequested, RestoreRequested

    api.admit("alpha", "a@example.com")
    api.registry.set_state("alpha", "ready")
    s = api.tower_settings
    folder = backup_dir(s, "alpha")
    folder.mkdir(parents=True)
    for i, rid in enumerate(("req-alpha", "req-earlier")):  # the second: a deleted namesake's
        b = Backup(f"20261130T06010{i}Z-00000{i}", "alpha", 1000.0 + i, 5, "0" * 64, "alpha-n1",
                   "lxd1", rid)
        (folder / f"{b.id}.json").write_text(_json.dumps(b.to_dict()))
    mine, other = "20261130T060100Z-000000", "20261130T060101Z-000001"
    with api.client(api.token("a@example.com")) as c:
        listed = c.get("/v1/overclouds/alpha/backups").json()["backups"]
        assert [b["id"] for b in listed] == [mine] and "request_id" not in listed[0]
        r = c.post("/v1/overclouds/alpha/backups", params={"keep": 3})
        assert r.status_code == 202, r.text
        assert c.post("/v1/overclouds/alpha/backups", params={"keep": 0}).status_code == 400
        assert c.post("/v1/overclouds/alpha/restore", params={"backup": other}).status_code == 404
        assert c.post("/v1/overclouds/alpha/restore",
                      params={"backup": "../../x"}).status_code == 404
        r = c.post("/v1/overclouds/alpha/restore", params={"backup": mine})
        assert r.status_code == 202 and r.json()["backup"] == mine
    with api.client(api.token("b@example.com")) as c:
        for method, path in [("GET", "/v1/overclouds/alpha/backups"),
                             ("POST", "/v1/overclouds/alpha/backups"),
                             ("POST", f"/v1/overclouds/alpha/restore?backup={mine}")]:
            assert c.request(method, path).status_code == 404, path
    with api.client(api.token("a@example.com", Role.VIEWER)) as c:
        assert c.get("/v1/overclouds/alpha/backups").status_code == 200
        assert c.post("/v1/overclouds/alpha/backups").status_code == 403
    assert [type(e) for e in api.bus.events] == [BackupRequested, RestoreRequested]
    ev = api.bus.events[0]
    assert isinstance(ev, BackupRequested) and ev.keep == 3 and ev.name == "alpha"


def test_pause_and_resume_are_the_owners_and_follow_the_state(api: Api) -> None:
    from overcloud.events import PauseRequested, ResumeRequested

    api.admit("alpha", "a@example.com")
    api.registry.set_state("alpha", "ready")
    with api.client(api.token("b@example.com")) as c:  # another tenant's: it does not exist
        assert c.post("/v1/overclouds/alpha/pause").status_code == 404
    with api.client(api.token("a@example.com", Role.VIEWER)) as c:
        assert c.post("/v1/overclouds/alpha/pause").status_code == 403
    with api.client(api.token("a@example.com")) as c:
        r = c.post("/v1/overclouds/alpha/resume")
        assert r.status_code == 409 and "ready" in r.json()["error"]["message"], r.text
        r = c.post("/v1/overclouds/alpha/pause")
        assert r.status_code == 202 and r.json()["state"] == "pause requested", r.text
        api.registry.set_state("alpha", "paused")
        r = c.post("/v1/overclouds/alpha/pause")
        assert r.status_code == 409 and "resume it first" in r.json()["error"]["message"]
        assert c.post("/v1/overclouds/alpha/resume").status_code == 202
    assert [type(e) for e in api.bus.events] == [PauseRequested, ResumeRequested]
    assert all(e.name == "alpha" for e in api.bus.events)  # type: ignore[attr-defined]


def test_roles(api: Api) -> None:
    api.admit("alpha", "a@example.com")
    api.admit("beta", "b@example.com")
    viewer = api.token("a@example.com", Role.VIEWER)
    with api.client(viewer) as c:
        assert c.get("/v1/overclouds/alpha").status_code == 200
        assert _post(c, "gamma", "a@example.com").status_code == 403
        assert c.delete("/v1/overclouds/alpha").status_code == 403
        assert c.get("/v1/undercloud").status_code == 403
    with api.client(api.token("ops@example.com", Role.OPERATOR)) as c:
        names = [o["name"] for o in c.get("/v1/overclouds").json()["overclouds"]]
        assert names == ["alpha", "beta"]
        assert c.get("/v1/undercloud").status_code == 200
    assert api.bus.events == []


def test_api_false_hides_it_from_its_owner_but_not_from_operators(api: Api) -> None:
    api.admit("hidden", "a@example.com", api=False)
    with api.client(api.token("a@example.com")) as c:
        assert c.get("/v1/overclouds").json()["overclouds"] == []
        assert c.get("/v1/overclouds/hidden").status_code == 404
    with api.client(api.token("ops@example.com", Role.OPERATOR)) as c:
        assert c.get("/v1/overclouds/hidden").status_code == 200


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer nope", "Basic abc",
                                    "Bearer oct_000000000000_" + "A" * 43, "Bearer " + "x" * 5000])
def test_missing_or_bad_tokens_get_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = httpx.get(api.url + "/v1/overclouds", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["status"] == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_expired_and_revoked_tokens_get_401(api: Api) -> None:
    token, info = api.tokens.create("a@example.com", Role.DEVELOPER)
    with api.client(token) as c:
        assert c.get("/v1/overclouds").status_code == 200
        api.tokens.revoke(info.token_id)
        assert c.get("/v1/overclouds").status_code == 401


@pytest.mark.parametrize(("ctype", "body", "status"), [
    ("application/yaml", b"x" * (1024 * 1024 + 1), 413),
    ("application/json", b"{not json", 422),
    ("application/xml", b"<a/>", 415),
    (None, b"name: x", 415),
    ("application/yaml", b"\xff\xfe\x00binary", 400),
    ("application/yaml", b"- just\n- a list\n", 422),
    ("application/yaml", b"a: [/bold]\n", 422),
])
def test_bad_bodies_get_a_clear_json_error_and_create_nothing(api: Api, ctype: str | None,
                                                              body: bytes, status: int) -> None:
    headers = {"Authorization": f"Bearer {api.token('a@example.com')}"}
    if ctype:
        headers["Content-Type"] = ctype
    r = httpx.post(api.url + "/v1/overclouds", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert api.bus.events == []


def test_a_chunked_body_over_the_limit_is_cut_off(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    r = httpx.post(api.url + "/v1/overclouds", content=chunks(),
                   headers={"Authorization": f"Bearer {api.token('a@example.com')}",
                            "Content-Type": "application/yaml"})
    assert r.status_code == 413
    assert api.bus.events == []


def test_query_is_checked_before_it_reaches_the_devlake(api: Api) -> None:
    api.admit("alpha", "a@example.com")
    with api.client(api.token("a@example.com")) as c:
        ok = c.get("/v1/overclouds/alpha/query", params={"q": "SELECT * FROM m"})
        assert ok.status_code == 200 and ok.json()["series"][0]["name"] == "m"
        bad = c.get("/v1/overclouds/alpha/query",
                    params={"q": "SELECT * FROM m; DROP DATABASE devlake_beta"})
        assert bad.status_code == 400 and "one statement" in bad.json()["error"]["message"]
    assert api.reader.asked == [("alpha", "SELECT * FROM m")]


def test_events_stream_resumes_after_last_event_id(api: Api) -> None:
    api.admit("alpha", "a@example.com")
    for i in range(3):
        api.journal.add(f"event:x{i}", "alpha", "event", "OverCloudReady", 1.0, {"i": i})
    api.journal.add("event:other", "beta", "event", "OverCloudReady", 1.0, {"i": 99})
    # the first entry of this incarnation is its request (ids below it belong to a predecessor)
    api.journal.add("event:req-alpha", "alpha", "event", "OverCloudRequested", 1.0, {"i": -1})
    for i in range(3, 6):
        api.journal.add(f"event:x{i}", "alpha", "event", "OverCloudReady", 1.0, {"i": i})
    token = api.token("a@example.com")

    def read(n: int, last: str | None) -> list[tuple[int, dict[str, Any]]]:
        headers = {"Authorization": f"Bearer {token}"}
        if last:
            headers["Last-Event-ID"] = last
        got: list[tuple[int, dict[str, Any]]] = []
        with httpx.stream("GET", api.url + "/v1/overclouds/alpha/events", headers=headers,
                          timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            ident = 0
            for line in r.iter_lines():
                if line.startswith("id: "):
                    ident = int(line[4:])
                if line.startswith("data: "):
                    import json

                    got.append((ident, json.loads(line[6:])["data"]))
                    if len(got) == n:
                        break
        return got

    first = read(2, None)
    assert [d["i"] for _, d in first] == [-1, 3]  # not the predecessor's, not beta's
    rest = read(2, str(first[-1][0]))
    assert [d["i"] for _, d in rest] == [4, 5]
    assert [i for i, _ in first + rest] == sorted({i for i, _ in first + rest})  # no gap, no repeat


def test_the_stream_of_all_mine_holds_only_my_incarnations(api: Api) -> None:
    """`/v1/events`: every OverCloud of the caller's in one stream, each from its own request
    on; a predecessor of the same name (another tenant's) and others' OverClouds stay out."""
    import json

    api.journal.add("event:old-zeta", "zeta", "event", "OverCloudReady", 1.0, {"i": "b's old"})
    api.admit("zeta", "a@example.com")  # the name, taken again by A
    api.admit("alpha", "a@example.com")
    api.admit("beta", "b@example.com")
    api.journal.add("event:req-zeta", "zeta", "event", "OverCloudRequested", 1.0, {"i": "z1"})
    api.journal.add("event:b1", "beta", "event", "OverCloudReady", 1.0, {"i": "b1"})
    api.journal.add("event:req-alpha", "alpha", "event", "OverCloudRequested", 1.0, {"i": "a1"})
    api.journal.add("event:z2", "zeta", "event", "OverCloudReady", 1.0, {"i": "z2"})
    got: list[tuple[str, str]] = []
    headers = {"Authorization": f"Bearer {api.token('a@example.com')}"}
    with httpx.stream("GET", api.url + "/v1/events?after=0", headers=headers, timeout=10) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and "overcloud" in line:
                e = json.loads(line[6:])
                got.append((e["overcloud"], e["data"]["i"]))
                if len(got) == 3:
                    break
    assert got == [("zeta", "z1"), ("alpha", "a1"), ("zeta", "z2")]


def test_chart_markers_are_of_this_incarnation_only(api: Api) -> None:
    """A name taken again: the earlier OverCloud's moves (another tenant's) never show."""
    now = time.time()
    move = {"overcloud": "zeta", "node": "zeta-n1", "source": "lxd1", "target": "lxd2"}
    api.journal.add("event:b-move", "zeta", "event", "MigrationStarted", now - 60,
                    {**move, "reason": "b's"})
    api.admit("zeta", "a@example.com")
    with api.client(api.token("a@example.com")) as c:
        assert c.get("/v1/overclouds/zeta/charts").json()["markers"] == []
        api.journal.add("event:req-zeta", "zeta", "event", "OverCloudRequested", now - 30, {})
        api.journal.add("event:a-move", "zeta", "event", "MigrationStarted", now - 20,
                        {**move, "reason": "a's"})
        marks = c.get("/v1/overclouds/zeta/charts").json()["markers"]
        assert [m["data"]["reason"] for m in marks] == ["a's"]
        r = c.get("/v1/overclouds/zeta/charts", params={"window": "1w; DROP"})
        assert r.status_code == 400 and "window" in r.json()["error"]["message"]


def test_openapi_is_served(api: Api) -> None:
    spec = httpx.get(api.url + "/v1/openapi.json").json()
    assert "/v1/overclouds" in spec["paths"] and "/v1/overclouds/{name}/events" in spec["paths"]


class _Sse:
    """A stream's data frames, read in a thread: (overcloud, type, data.i) each."""

    def __init__(self, url: str, token: str, last: tuple[str, str, Any] | None = None) -> None:
        """`last`: the frame after which to hang up (else the server ends the stream)."""
        import json
        import threading

        self.got: list[tuple[str, str, Any]] = []
        self.ended = False
        self.hello = threading.Event()

        def read() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.stream("GET", url, headers=headers, timeout=20) as r:
                for line in r.iter_lines():
                    if line.startswith(("event: hello", "retry:")):
                        self.hello.set()
                    if line.startswith("data: ") and '"type"' in line:
                        e = json.loads(line[6:])
                        self.got.append((e.get("overcloud", ""), e["type"], e["data"].get("i")))
                        if self.got[-1] == last:
                            return  # hung up: the server's loop sees the disconnect and ends
            self.ended = True

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()
        assert self.hello.wait(10), "the stream's first frame"


def _delete_then_retake(api: Api, retaken_first: bool = False) -> None:
    """A's `gone` is deleted as the orchestrator does it (the record forgotten, then its
    `OverCloudDeleted`), and B takes the name: B's request and first task. `retaken_first`:
    B's request reaches the journal before A's deletion does (the name is free between the
    two)."""
    api.registry.forget("gone")
    spec = {"devtower": {"api": True, "notify": []}, "cluster": {"cpu": 1, "memory": "1GiB"}}
    assert api.registry.admit("gone", "b@example.com", spec, "req-gone-b")
    if not retaken_first:
        api.journal.add("event:del-gone", "gone", "event", "OverCloudDeleted", 2.0,
                        {"i": "a-end"})
    api.journal.add("event:req-gone-b", "gone", "event", "OverCloudRequested", 3.0,
                    {"i": "b-req"})
    if retaken_first:
        api.journal.add("event:del-gone", "gone", "event", "OverCloudDeleted", 2.0,
                        {"i": "a-end"})
    api.journal.add("task:b1", "gone", "task", "task", 3.0,
                    {"i": "b-task", "workflow": "req-gone-b", "kind": "provision"})


@pytest.mark.parametrize("retaken_first", [False, True])
def test_the_stream_of_all_mine_sends_a_deletion_and_nothing_of_the_next_owner(
        api: Api, retaken_first: bool) -> None:
    """The orchestrator forgets the record before it announces `OverCloudDeleted`: the
    stream still sends that last entry (a live list drops the row on it), and nothing of
    the next OverCloud of that name (B's). When B's request came in first, A's stream ends
    there with a bare `OverCloudGone` (A's list redraws): what follows is not A's to see."""
    api.admit("gone", "a@example.com")
    api.admit("stay", "a@example.com")
    api.journal.add("event:req-gone", "gone", "event", "OverCloudRequested", 1.0, {"i": "a-req"})
    sse = _Sse(api.url + "/v1/events", api.token("a@example.com"),
               last=("stay", "OverCloudReady", "last"))
    api.journal.add("task:a1", "gone", "task", "workflow", 1.5,
                    {"i": "a-task", "workflow": "req-gone", "kind": "delete"})
    from overcloud.waiting import wait_until

    wait_until(lambda: len(sse.got) == 1, timeout=10, interval=0.05, what="a-task")
    _delete_then_retake(api, retaken_first)
    api.journal.add("event:stay", "stay", "event", "OverCloudReady", 4.0, {"i": "last"})
    wait_until(lambda: ("stay", "OverCloudReady", "last") in sse.got, timeout=10,
               interval=0.05, what="the last entry")
    # B's request first: A hears only that its OverCloud is gone, nothing of B's
    end = [("gone", "OverCloudGone", None)] if retaken_first else [
        ("gone", "OverCloudDeleted", "a-end")]
    assert sse.got == [("gone", "workflow", "a-task"), *end, ("stay", "OverCloudReady", "last")]


def test_the_stream_of_one_overcloud_ends_with_its_deletion(api: Api) -> None:
    """`/v1/overclouds/NAME/events` sends this OverCloud's entries up to its deletion and
    then ends: never what comes under the name after (another tenant's)."""
    api.admit("gone", "a@example.com")
    api.journal.add("event:req-gone", "gone", "event", "OverCloudRequested", 1.0, {"i": "a-req"})
    sse = _Sse(api.url + "/v1/overclouds/gone/events?after=0", api.token("a@example.com"))
    _delete_then_retake(api)
    sse.thread.join(15)
    assert sse.ended, "the stream is still open after the deletion"
    assert [(t, i) for _, t, i in sse.got] == [("OverCloudRequested", "a-req"),
                                              ("OverCloudDeleted", "a-end")]
