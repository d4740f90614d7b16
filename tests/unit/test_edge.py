"""The edge (edge/server.py) on real loopback sockets: round robin over a route's backends,
a refusing backend skipped, a route change atomic for new connections while an open one
finishes on its old backend (and is counted until then: the drain the orchestrator waits
for), a port held by someone else reported and taken once free, hostile table entries left
out."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.routes import (
    drop_route,
    parse_routes,
    read_routes,
    read_status,
    routes_file,
    set_route,
    status_file,
    wait_applied,
    wait_drained,
)
from edge.server import Edge
from overcloud.errors import PermanentError, TemporaryError
from overcloud.settings import Settings, load_settings
from overcloud.waiting import wait_until
from tests.helpers import free_port


class Backend:
    """A TCP server answering each line with `<name>:<line>`; holds connections open."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                f.write(f"{self.name}:".encode() + line)
                f.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path)})


@pytest.fixture
def edge(s: Settings) -> Iterator[Edge]:
    e = Edge(routes_file(s), status_file(s))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    t = threading.Thread(target=loop.run_until_complete, args=(e.run(stop),), daemon=True)
    t.start()
    try:
        yield e
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def _ask(port: int, text: str = "hi") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c, c.makefile("rwb") as f:
        f.write(text.encode() + b"\n")
        f.flush()
        return f.readline().decode().strip()


def test_connections_take_the_backends_in_turn_and_skip_one_that_refuses(
        s: Settings, edge: Edge) -> None:
    a, b = Backend("a"), Backend("b")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    wait_applied(s, set_route(s, port, "blog", [a.addr, b.addr, dead]), port)
    answers = [_ask(port) for _ in range(9)]
    assert sorted(set(answers)) == ["a:hi", "b:hi"], answers
    # in turn; the dead one's turn goes to the next in line (and it is tried last for 5 s)
    assert answers.count("b:hi") >= 3 and answers.count("a:hi") >= 3, answers
    wait_drained(s, [a.addr, b.addr], timeout=5)  # every connection closed, counted out
    assert read_status(s).active == {}


def test_a_route_change_is_for_new_connections_an_open_one_drains(s: Settings,
                                                                 edge: Edge) -> None:
    a, b = Backend("a"), Backend("b")
    port = free_port()
    wait_applied(s, set_route(s, port, "blog", [a.addr]), port)
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = held.makefile("rwb")
    f.write(b"first\n")
    f.flush()
    assert f.readline() == b"a:first\n"
    wait_applied(s, set_route(s, port, "blog", [b.addr]), port)
    assert [_ask(port) for _ in range(3)] == ["b:hi"] * 3, "new connections: the new route"
    f.write(b"second\n")
    f.flush()
    assert f.readline() == b"a:second\n", "the open connection stays on its backend"
    assert read_status(s).active.get(a.addr) == 1
    with pytest.raises(TemporaryError, match="still open"):
        wait_drained(s, [a.addr], timeout=0.3)
    f.close()
    held.close()
    wait_drained(s, [a.addr], timeout=5)
    assert read_status(s).active.get(a.addr, 0) == 0


def test_a_dropped_route_closes_its_port(s: Settings, edge: Edge) -> None:
    a = Backend("a")
    port = free_port()
    wait_applied(s, set_route(s, port, "blog", [a.addr]), port)
    assert _ask(port) == "a:hi"
    wait_applied(s, drop_route(s, port))
    assert port not in read_status(s).listening
    with pytest.raises(OSError):
        _ask(port)
    assert read_routes(s)[1] == {}


def test_a_port_held_by_another_process_is_reported_then_taken_once_free(
        s: Settings, edge: Edge) -> None:
    a = Backend("a")
    squatter = socket.create_server(("127.0.0.1", 0))
    port = squatter.getsockname()[1]
    serial = set_route(s, port, "blog", [a.addr])
    with pytest.raises(PermanentError, match=f"port {port} is taken by another process"):
        wait_applied(s, serial, port, timeout=5)
    squatter.close()  # the edge keeps trying: it listens once the port is free
    wait_until(lambda: port in read_status(s).listening, timeout=5, interval=0.05,
               what="the edge to take the freed port")
    assert _ask(port) == "a:hi"


def test_hostile_route_entries_are_left_out_and_refused_when_written(s: Settings) -> None:
    serial, routes, problems = parse_routes({"serial": 3, "routes": {
        "8080": {"overcloud": "ok", "backends": ["10.0.0.1:80"]},
        "0": {"overcloud": "zero", "backends": ["10.0.0.1:80"]},
        "99999": {"overcloud": "big", "backends": ["10.0.0.1:80"]},
        "x": {"overcloud": "nan", "backends": ["10.0.0.1:80"]},
        "8081": {"overcloud": "../etc", "backends": ["10.0.0.1:80"]},
        "8082": {"overcloud": "dns", "backends": ["example.com:80"]},
        "8083": {"overcloud": "two", "backends": ["10.0.0.1:80:81"]},
        "8084": {"overcloud": "neg", "backends": ["10.0.0.1:-1"]},
        "8085": "not an object"}})
    assert serial == 3 and list(routes) == [8080] and len(problems) == 8, problems
    assert parse_routes([1, 2])[1] == {} and parse_routes({"serial": True})[0] == -1
    with pytest.raises(PermanentError):
        set_route(s, 8080, "blog", ["example.com:80"])
    with pytest.raises(PermanentError):
        set_route(s, 8080, "Blog;rm", ["10.0.0.1:80"])
    with pytest.raises(PermanentError):
        set_route(s, 8080, "blog", [])
    routes_file(s).parent.mkdir(parents=True)
    routes_file(s).write_text(json.dumps({"serial": 1, "routes": {}}))
    assert set_route(s, 8080, "blog", ["10.0.0.1:80"]) == 2


def test_waiting_on_an_edge_that_is_not_running_says_so(s: Settings) -> None:
    with pytest.raises(TemporaryError, match="not running: overcloud services up edge"):
        wait_applied(s, set_route(s, free_port(), "blog", ["10.0.0.1:80"]), timeout=0.2)
