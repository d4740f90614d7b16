"""The DevTower process (`overcloud devtower run`, `services up devtower`).

It builds every client once and hands them down (STYLE: no part makes its own): the
registry and workflow store of the orchestrator (read), a Kafka event bus (publish), the
journal and webhook store (its own SQLite files under `<state>/devtower/`), the token store,
and the DevLake reader. Three threads feed and drain it — the event feed, the workflow
history feed and the webhook dispatcher. The API runs in `devtower.workers` processes that
share one listening socket (each builds its own clients; Python serves one request at a
time per process, so one per core), or in this process when that is 1. SIGTERM stops the
workers gracefully, then the threads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from devtower.api import make_app
from devtower.devlake import InfluxReader
from devtower.feeds import EventFeed, TaskFeed
from devtower.hooks import Dispatcher, HookStore
from devtower.journal import Journal
from devtower.ops import Tower
from devtower.tokens import TokenStore
from orchestrator.registry import Registry
from orchestrator.store import WorkflowStore
from overcloud.bus import EventBus, KafkaEventBus, ensure_topics, events_topic, make_consumer
from overcloud.errors import OverCloudError, TemporaryError
from overcloud.events import Event
from overcloud.settings import Settings

log = logging.getLogger(__name__)


def devtower_dir(s: Settings) -> Path:
    return s.state_dir / "devtower"


def token_store(s: Settings) -> TokenStore:
    return TokenStore(devtower_dir(s) / "tokens.sqlite")


def workflow_store(s: Settings) -> WorkflowStore:
    path = s.state_dir / "orchestrator" / "workflows.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return WorkflowStore(path)


def hook_store(s: Settings) -> HookStore:
    return HookStore(devtower_dir(s) / "hooks.sqlite")


class UnderCloudOps:
    """The operator's side of the API, over the orchestrator's inventory."""

    def __init__(self, s: Settings, registry: Registry, bus: EventBus) -> None:
        self._s = s
        self._registry = registry
        self._bus = bus

    def _reachable(self) -> dict[str, Callable[[], bool]]:
        from orchestrator.hosts import drivers

        return {n: d.reachable for n, d in drivers(self._s).items()}

    def undercloud(self) -> dict[str, Any]:
        from orchestrator.inventory import Inventory, undercloud_report

        inv = Inventory(self._s)
        try:
            return undercloud_report(self._s, inv, self._reachable(), self._registry)
        finally:
            inv.close()

    def hosts(self) -> tuple[set[str], set[str], set[str]]:
        from orchestrator.hosts import drivers
        from orchestrator.inventory import Inventory

        inv = Inventory(self._s)
        try:
            records = inv.hosts()
        finally:
            inv.close()
        return (set(drivers(self._s)), {r.site for r in records},
                {r.name for r in records if r.draining})

    def drain(self, host: str, evacuate: bool) -> dict[str, Any]:
        from orchestrator.inventory import Inventory, allocations
        from overcloud.events import MigrationRequested

        inv = Inventory(self._s)
        try:
            inv.set_draining(host, True)
        finally:
            inv.close()
        held = allocations(self._registry).get(host)
        if not evacuate or held is None or not held.nodes:
            return {"host": host, "draining": True, "moving": []}
        event = MigrationRequested(source=host, reason=f"drain {host}")
        self._bus.publish(event, key=host)
        return {"host": host, "draining": True, "moving": list(held.nodes), "id": event.id}

    def undrain(self, host: str) -> dict[str, Any]:
        from orchestrator.inventory import Inventory

        inv = Inventory(self._s)
        try:
            inv.set_draining(host, False)
        finally:
            inv.close()
        return {"host": host, "draining": False}


class LazyBus:
    """A Kafka event bus made on first use and remade after an outage: the DevTower starts
    and serves reads while the broker is away; a publish then answers 503 (TemporaryError)."""

    def __init__(self, s: Settings) -> None:
        self._s = s
        self._bus: KafkaEventBus | None = None
        self._lock = threading.Lock()

    def publish(self, event: Event, key: str | None = None) -> None:
        with self._lock:
            if self._bus is None:
                ensure_topics(self._s)
                self._bus = KafkaEventBus(self._s)
            try:
                self._bus.publish(event, key=key)
            except TemporaryError:
                self._bus.close()
                self._bus = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._bus is not None:
                self._bus.close()
                self._bus = None


def _loop(name: str, stop: threading.Event, step: Callable[[], object], idle: float) -> None:
    """Run `step` until stopped; an outage is logged once and retried with backoff."""
    delay = idle
    failing = False
    while not stop.is_set():
        try:
            step()
            if failing:
                log.info("%s: working again", name)
            failing, delay = False, idle
        except (OverCloudError, OSError) as exc:
            if not failing:
                log.warning("%s: %s; retrying", name, exc)
            failing = True
            delay = min(delay * 2, 5.0)
            stop.wait(delay)
            continue
        stop.wait(idle)


class EventFeedRunner(threading.Thread):
    """Keeps an `EventFeed` consuming; (re)builds its consumer while the broker is away."""

    def __init__(self, s: Settings, journal: Journal, hooks: HookStore,
                 stop: threading.Event) -> None:
        super().__init__(name="event-feed", daemon=True)
        self._s, self._journal, self._hooks, self._halt = s, journal, hooks, stop
        self.feed: EventFeed | None = None

    def step(self) -> None:
        if self.feed is None:
            try:
                ensure_topics(self._s)
                consumer = make_consumer(self._s, [events_topic(self._s)],
                                         f"{self._s.kafka.topic_prefix}-{self._s.devtower.group}")
            except TemporaryError:
                raise
            self.feed = EventFeed(consumer, self._journal, self._hooks)
        self.feed.step()

    def run(self) -> None:
        _loop("event feed", self._halt, self.step, 0.0)


def _api(s: Settings) -> tuple[Any, Callable[[], None]]:
    """The API app with every client it needs, built once; and how to close them."""
    registry = Registry(s)
    workflows = workflow_store(s)
    bus = LazyBus(s)
    hooks = hook_store(s)
    journal = Journal(devtower_dir(s) / "journal.sqlite")
    tower = Tower(settings=s, registry=registry, workflows=workflows, bus=bus, hooks=hooks)
    reader = InfluxReader(s, registry)
    app = make_app(tower, token_store(s), journal, reader, UnderCloudOps(s, registry, bus))

    def close() -> None:
        reader.close()
        bus.close()
    return app, close


def _uvicorn(s: Settings, app: Any) -> uvicorn.Server:
    d = s.devtower
    tls = {"ssl_certfile": d.tls_cert, "ssl_keyfile": d.tls_key} if d.tls_cert else {}
    config = uvicorn.Config(app, host=d.host, port=d.port, log_level="warning",
                            access_log=False, lifespan="off", http="httptools", loop="uvloop",
                            **tls)  # type: ignore[arg-type]
    return uvicorn.Server(config)


def _stop_with(server: uvicorn.Server, stop: threading.Event) -> None:
    def watch() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()


def serve_worker(s: Settings, fd: int, stop: threading.Event) -> None:
    """One HTTP worker on the listening socket its parent (`serve`) handed down. It ends
    with its parent, also when that was killed (-9): no orphan keeps the port."""
    parent = os.getppid()

    def orphaned() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()
    threading.Thread(target=orphaned, name="parent-watch", daemon=True).start()
    app, close = _api(s)
    server = _uvicorn(s, app)
    _stop_with(server, stop)
    sock = socket.socket(fileno=fd)
    try:
        server.run(sockets=[sock])
    finally:
        close()


def _spawn_workers(s: Settings, sock: socket.socket, config: str) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "devtower.cli.main", *(["--config", config] if config else []),
            "tower", "http-worker", "--fd", str(sock.fileno())]
    return [subprocess.Popen(argv, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL)
            for _ in range(s.devtower.workers)]


def serve(s: Settings, stop: threading.Event, *, on_ready: Callable[[str], None] | None = None,
          config: str = "") -> None:
    """Run the DevTower until `stop` is set: the feeds and the dispatcher here, the API in
    this process (`devtower.workers` = 1) or in worker processes sharing one socket."""
    workflows = workflow_store(s)
    hooks = hook_store(s)
    journal = Journal(devtower_dir(s) / "journal.sqlite")
    events = EventFeedRunner(s, journal, hooks, stop)
    tasks = TaskFeed(workflows, journal)
    history = threading.Thread(target=_loop, args=("task feed", stop, tasks.step, 0.25),
                               name="task-feed", daemon=True)
    dispatcher = Dispatcher(hooks, stop)
    for t in (events, history, dispatcher):
        t.start()
    d = s.devtower
    try:
        if d.workers == 1:
            _serve_here(s, stop, on_ready)
        else:
            _serve_workers(s, stop, on_ready, config)
    finally:
        stop.set()
        for t in (events, history, dispatcher):
            t.join(timeout=10)


def _serve_here(s: Settings, stop: threading.Event, on_ready: Callable[[str], None] | None
                ) -> None:
    app, close = _api(s)
    server = _uvicorn(s, app)
    _stop_with(server, stop)
    if on_ready is not None:
        def announce() -> None:
            from overcloud.waiting import WaitTimeout, wait_until

            try:
                wait_until(lambda: server.started or stop.is_set(), timeout=60, interval=0.05,
                           what="the DevTower to listen")
            except WaitTimeout:
                return
            if server.started:
                on_ready(s.devtower.url)
        threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        server.run()
    finally:
        close()


def _serve_workers(s: Settings, stop: threading.Event,
                   on_ready: Callable[[str], None] | None, config: str) -> None:
    """Bind once, hand the socket to `workers` processes, keep them running until `stop`."""
    from overcloud.waiting import WaitTimeout, wait_until

    d = s.devtower
    sock = socket.create_server((d.host, d.port), backlog=2048)
    sock.set_inheritable(True)
    procs = _spawn_workers(s, sock, config)
    try:
        def answering() -> bool:
            try:
                r = httpx.get(f"{d.url}/v1/openapi.json", timeout=2, verify=False)
            except httpx.HTTPError:
                return False
            return r.status_code == 200
        try:
            wait_until(lambda: stop.is_set() or answering(), timeout=150, interval=0.1,
                       what="the DevTower's workers to answer")
        except WaitTimeout:
            raise OverCloudError("the DevTower's HTTP workers did not start (see the log)") from None
        if on_ready is not None and not stop.is_set():
            on_ready(d.url)
        while not stop.wait(1.0):
            for i, p in enumerate(procs):
                if p.poll() is not None:  # a worker died: the others serve meanwhile
                    log.warning("devtower: HTTP worker %d exited with %s; starting another",
                                p.pid, p.returncode)
                    procs[i] = _spawn_workers(
                        dataclasses.replace(s, devtower=dataclasses.replace(d, workers=1)),
                        sock, config)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        sock.close()
