"""The DevTower app over real HTTP for fast tests: a real registry, token store and journal
in a temporary dir, a list for the event bus and a stand-in DevLake reader (both interfaces
the app is given). The same routes run on real services in tests/integration."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from devtower.api import make_app
from devtower.hooks import HookStore
from devtower.journal import Journal
from devtower.ops import Tower
from devtower.tokens import Role, TokenStore
from orchestrator.registry import Registry
from orchestrator.store import WorkflowStore
from overcloud.events import Event
from overcloud.settings import load_settings
from tests.helpers import free_port


class ListBus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event, key: str | None = None) -> None:
        self.events.append(event)


class FakeReader:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.nodes: dict[str, list[str]] = {}
        """OverCloud → node names whose made-up series `charts` answers."""

    def query(self, overcloud: str, q: str) -> list[dict[str, Any]]:
        from devtower.readonly import check_read_query

        check_read_query(q, f"devlake_{overcloud}")
        self.asked.append((overcloud, q))
        return [{"name": "m", "columns": ["time", "v"], "values": [[1, 1.0]]}]

    def latest(self, overcloud: str) -> list[dict[str, Any]]:
        self.asked.append((overcloud, "latest"))
        return []

    def charts(self, overcloud: str, window: str = "15m", step: str = "10s") -> dict[str, Any]:
        """A minute of made-up samples for each node of the record (the page test draws them)."""
        self.asked.append((overcloud, f"charts {window} {step}"))
        now = time.time()
        nodes = self.nodes.get(overcloud, [])

        def rows(f: Callable[[int], list[Any]]) -> list[list[Any]]:
            return [[now - 60 + 10 * i, *f(i)] for i in range(7)]

        return {"overcloud": overcloud, "window": window, "step": step, "sections": {
            "nodes": [{"tags": {"node": n, "host": "lxd1"},
                       "columns": ["time", "cpu", "mem", "rx", "tx", "running"],
                       "values": rows(lambda i, k=k: [10.0 + 5 * k + i, 2e8 + 1e6 * i, 1, 1, 1])}
                      for k, n in enumerate(nodes)],
            "flows": [{"tags": {"node": nodes[0], "peer": "client"},
                       "columns": ["time", "sent", "received", "connections"],
                       "values": rows(lambda i: [3000.0, 500.0, 2])}] if nodes else [],
            "http": [{"tags": {"target": "site"}, "columns": ["time", "status", "latency", "up", "error"],
                      "values": rows(lambda i: [200, 40.0 + i, 1, ""])}],
            "containers": [{"tags": {"node": n, "service": "web"},
                            "columns": ["time", "state", "health", "restarts", "cpu", "mem"],
                            "values": rows(lambda i: ["running", "healthy", 0, 1.0, 1e7])}
                           for n in nodes]}}

    def top(self, overcloud: str, window: str = "10m", step: str = "20s") -> dict[str, Any]:
        self.asked.append((overcloud, f"top {window} {step}"))
        return {"overcloud": overcloud, "sections": {}}

    def credentials(self, overcloud: str) -> dict[str, str]:
        return {"database": f"devlake_{overcloud}", "username": f"ro_{overcloud}"}


class NoOperator:
    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []

    def undercloud(self) -> dict[str, Any]:
        """Two hosts as `undercloud_report` describes them (lxd2 draining once drained)."""
        drained = {h for what, h in self.done if what == "drain"} - {
            h for what, h in self.done if what == "undrain"}
        return {"hosts": [
            {"site": "local", "host": h, "kind": "lxd-local",
             "state": "draining" if h in drained else "ready", "reachable": True, "url": "",
             "labels": {}, "capacity": {"cpu": 2, "memory": 8 << 30},
             "allocated": {"cpu": 1, "memory": 1 << 30, "nodes": [f"alpha-n{i}"]},
             "load": {"cpu_percent": 12.5 * i, "mem_percent": 30.0, "net_bytes_per_s": 1e4},
             "instances": 1} for i, h in enumerate(["lxd1", "lxd2"], 1)],
            "sites": [{"site": "local", "kind": "local", "cloud": ""}], "load_error": None}

    def hosts(self) -> tuple[set[str], set[str], set[str]]:
        return {"lxd1", "lxd2"}, {"local"}, set()

    def drain(self, host: str, evacuate: bool) -> dict[str, Any]:
        self.done.append(("drain", host))
        return {"host": host}

    def undrain(self, host: str) -> dict[str, Any]:
        self.done.append(("undrain", host))
        return {"host": host}


class Api:
    def __init__(self, url: str, bus: ListBus, registry: Registry, tokens: TokenStore,
                 journal: Journal, reader: FakeReader, tower: Tower, operator: NoOperator
                 ) -> None:
        self.url, self.bus, self.registry, self.tokens = url, bus, registry, tokens
        self.journal, self.reader = journal, reader
        self.workflows: WorkflowStore = tower.workflows
        self.hooks: HookStore = tower.hooks
        self.operator: NoOperator = operator
        self.registry_dir = registry.secrets_dir.parent  # the state dir the API serves
        self.tower_settings = load_settings(env={"OVERCLOUD_STATE_DIR": str(self.registry_dir),
                                                 "OVERCLOUD_CONFIG": ""})

    def token(self, owner: str, role: Role = Role.DEVELOPER, ttl: float | None = None) -> str:
        return self.tokens.create(owner, role, ttl)[0]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def admit(self, name: str, owner: str, api: bool = True) -> None:
        """What the orchestrator does when it consumes the request."""
        spec = {"devtower": {"api": api, "notify": []}, "cluster": {"cpu": 1, "memory": "1GiB"}}
        assert self.registry.admit(name, owner, spec, f"req-{name}")


@contextmanager
def serve_api(tmp_path: Path, operator: NoOperator | None = None) -> Iterator[Api]:
    """The DevTower app on a free loopback port, over a registry in `tmp_path`, a list for a
    bus and the stand-in reader; stopped on exit."""
    s = load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_CONFIG": ""})
    bus, reader = ListBus(), FakeReader()
    registry = Registry(s)
    tokens = TokenStore(tmp_path / "devtower" / "tokens.sqlite")
    journal = Journal(tmp_path / "devtower" / "journal.sqlite")
    tower = Tower(settings=s, registry=registry,
                  workflows=WorkflowStore(tmp_path / "orchestrator" / "workflows.sqlite"),
                  bus=bus, hooks=HookStore(tmp_path / "devtower" / "hooks.sqlite"))
    operator = operator or NoOperator()
    app = make_app(tower, tokens, journal, reader, operator)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    from overcloud.waiting import wait_until

    wait_until(lambda: server.started, timeout=20, interval=0.02, what="uvicorn")
    try:
        yield Api(f"http://127.0.0.1:{port}", bus, registry, tokens, journal, reader, tower,
                  operator)
    finally:
        server.should_exit = True
        thread.join(10)
