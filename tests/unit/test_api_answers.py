"""`api_answers`: a live LXD API that is slow (a loaded machine) still answers; a dead one or
one that never answers does not. Placement drops a host that does not answer, so a limit
shorter than a busy daemon's reply time moved every node onto the other host."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import lxdclient
from lxdclient import api_answers
from overcloud.settings import LxdHost


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the too-slow case) breaks the pipe: expected


def _serve(sock: Path, delay: float) -> _Server:
    class Handler(BaseHTTPRequestHandler):
        def address_string(self) -> str:  # a unix socket has no client address
            return "local"

        def do_GET(self) -> None:
            time.sleep(delay)
            body = json.dumps({"metadata": {"api_version": "1.0", "auth": "trusted"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(str(sock), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LxdHost]:
    yield LxdHost("lxd1", 1, tmp_path, "oct1", "10.0.0.1/24", 0)


def test_a_slow_but_live_api_answers(host: LxdHost) -> None:
    server = _serve(host.socket, delay=1.5)  # over the old 1 s limit, well under the new one
    try:
        assert api_answers(host)
    finally:
        server.shutdown()
        server.server_close()


def test_an_api_slower_than_the_limit_does_not(host: LxdHost,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lxdclient, "API_ANSWER_TIMEOUT", (0.3, 0.3))
    server = _serve(host.socket, delay=1.0)
    try:
        assert not api_answers(host)
    finally:
        server.shutdown()
        server.server_close()


def test_no_daemon_does_not_answer(host: LxdHost) -> None:
    assert not api_answers(host)  # no socket at all
    host.socket.touch()  # a stale socket file, nothing listening
    t = time.monotonic()
    assert not api_answers(host)
    assert time.monotonic() - t < 1.0, "a dead daemon is refused at once, not waited for"
