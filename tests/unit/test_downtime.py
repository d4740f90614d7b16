"""The downtime probe (orchestrator/downtime.py) against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from orchestrator.downtime import DowntimeProbe
from overcloud.waiting import wait_until


class Page(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    body: ClassVar[bytes] = b"<title>WordPress</title>"

    def do_GET(self) -> None:
        self.send_response(Page.status)
        self.send_header("Content-Length", str(len(Page.body)))
        self.end_headers()
        self.wfile.write(Page.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Page.status, Page.body = 200, b"<title>WordPress</title>"
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/wp-admin/install.php"


def test_an_outage_still_running_at_the_stop_counts(server: ThreadingHTTPServer) -> None:
    with DowntimeProbe(_url(server), every=0.02) as probe:
        wait_until(lambda: probe.ok >= 3, timeout=10, what="good probes")
        server.shutdown()
        server.server_close()  # nothing listens on the port any more
        wait_until(lambda: probe.failures >= 5, timeout=10, what="failed probes")
    assert probe.downtime > 0.05, probe.downtime
    (outage,) = probe.outages
    assert outage.ongoing and outage.seconds == probe.downtime
    # (a probe caught between the server's last accept and its close sees a reset)
    assert set(outage.kinds) <= {"refused", "reset"} and outage.kinds["refused"] >= 4
    assert probe.kinds() == dict(outage.kinds)


def test_each_outage_says_what_failed(server: ThreadingHTTPServer) -> None:
    with DowntimeProbe(_url(server), every=0.02, trace=True) as probe:
        wait_until(lambda: probe.ok >= 2, timeout=10, what="good probes")
        Page.status = 502
        wait_until(lambda: probe.failures >= 2, timeout=10, what="502s")
        Page.status, Page.body = 200, b"It works!"
        wait_until(lambda: probe.kinds().get("no marker", 0) >= 2, timeout=10,
                   what="pages without the marker")
        Page.body = b"<title>WordPress</title>"
        n = probe.ok
        wait_until(lambda: probe.ok >= n + 2, timeout=10, what="good probes again")
    (outage,) = probe.outages
    assert not outage.ongoing and set(outage.kinds) == {"http 502", "no marker"}
    assert 0 < probe.downtime < 10
    # the stricter reading counts slow answers as failures too: never less downtime
    assert probe.downtime_if_slower_than(0.0) >= probe.downtime
    assert probe.downtime_if_slower_than(60.0) == pytest.approx(probe.downtime, abs=0.05)


def test_an_outage_counts_up_to_the_stop_not_to_its_last_failed_probe(
        server: ThreadingHTTPServer) -> None:
    """Probes 2 s apart: the page fails once, and the probe stops 0.5 s later, before the next
    probe. The outage lasted (at least) those 0.5 s, not the few ms of the failed request."""
    import time

    server.shutdown()
    server.server_close()  # down from the start
    with DowntimeProbe(_url(server), every=2.0) as probe:
        wait_until(lambda: probe.failures >= 1, timeout=10, interval=0.01, what="a failed probe")
        failed_at = time.monotonic()
        wait_until(lambda: time.monotonic() - failed_at >= 0.5, timeout=5, interval=0.05,
                   what="0.5 s")
    (outage,) = probe.outages
    assert outage.ongoing and probe.failures == 1 and probe.ok == 0
    assert probe.downtime >= 0.5, probe.downtime
