"""`overcloud dashboards push` against a small recording HTTP server.

No Grafana server can be installed here (RUNTIME.md), so `GrafanaStandIn` plays the few
endpoints of Grafana's HTTP API that `push` calls, records every request and keeps what was
stored: a stand-in for an HTTP API, not a mock of a broker, database, LXD or Docker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import dashboards
from dashboards.push import push
from overcloud.errors import UserError
from overcloud.settings import load_settings


class GrafanaStandIn(ThreadingHTTPServer):
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: GrafanaStandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else {}
        s = self.server
        s.calls.append((method, self.path, body))
        if self.headers.get("Authorization") != f"Bearer {s.token}":
            return self._reply(401, {"message": "invalid API key"})
        p = self.path
        if method == "GET" and p.startswith("/api/datasources/uid/"):
            uid = p.rsplit("/", 1)[1]
            return self._reply(200, s.datasources[uid]) if uid in s.datasources else \
                self._reply(404, {"message": "Data source not found"})
        if method == "POST" and p == "/api/datasources":
            s.datasources[body["uid"]] = body
            return self._reply(200, {"message": "Datasource added", "datasource": body})
        if method == "PUT" and p.startswith("/api/datasources/uid/"):
            s.datasources[p.rsplit("/", 1)[1]] = body
            return self._reply(200, {"message": "Datasource updated"})
        if method == "GET" and p.startswith("/api/folders/"):
            uid = p.rsplit("/", 1)[1]
            return self._reply(200, s.folders[uid]) if uid in s.folders else \
                self._reply(404, {"message": "folder not found"})
        if method == "POST" and p == "/api/folders":
            s.folders[body["uid"]] = body
            return self._reply(200, body)
        if method == "POST" and p == "/api/dashboards/db":
            d = body["dashboard"]
            s.dashboards[d["uid"]] = body
            return self._reply(200, {"status": "success", "uid": d["uid"], "url": f"/d/{d['uid']}/x"})
        return self._reply(404, {"message": f"no route {method} {p}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    server = GrafanaStandIn(token="glsa_test")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url(server: GrafanaStandIn) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_push_creates_then_updates_idempotently(grafana: GrafanaStandIn) -> None:
    influx = load_settings(env={"OVERCLOUD_CONFIG": ""}).influx
    first = push(url(grafana), "glsa_test", influx, dashboards.all_dashboards())
    assert first.datasource == "created" and first.folder == "created"
    assert first.dashboards == [f"/d/{uid}/x" for uid in
                                ("overcloud-undercloud", "overcloud-overcloud", "overcloud-alerts")]
    ds = grafana.datasources["overcloud-devlake"]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    for body in grafana.dashboards.values():
        assert body["overwrite"] is True and body["folderUid"] == "overcloud"
        assert body["dashboard"]["id"] is None
        dashboards.from_json(body["dashboard"])  # what Grafana received parses back into the SDK models

    stored = json.dumps(grafana.dashboards, sort_keys=True)
    second = push(url(grafana), "glsa_test", influx, dashboards.all_dashboards())
    assert second.datasource == "updated" and second.folder == "exists"
    assert json.dumps(grafana.dashboards, sort_keys=True) == stored
    methods = [(m, p) for m, p, _ in grafana.calls]
    assert ("PUT", "/api/datasources/uid/overcloud-devlake") in methods
    assert methods.count(("POST", "/api/folders")) == 1


def test_push_errors_are_user_errors(grafana: GrafanaStandIn) -> None:
    influx = load_settings(env={"OVERCLOUD_CONFIG": ""}).influx
    with pytest.raises(UserError, match="refused the token"):
        push(url(grafana), "wrong", influx, dashboards.all_dashboards())
    with pytest.raises(UserError, match="unreachable"):
        push("http://127.0.0.1:1", "glsa_test", influx, dashboards.all_dashboards(), timeout=2)
