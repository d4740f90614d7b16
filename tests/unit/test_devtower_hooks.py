"""Webhooks: signed, once per change, retried, and a slow endpoint delays only itself.

Receivers are real HTTP servers on loopback (http.server in threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtower.hooks import SIGNATURE_HEADER, Dispatcher, HookStore, sign, verify
from overcloud.waiting import wait_until


class Receiver:
    def __init__(self, delay: float = 0.0, fail_first: int = 0) -> None:
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self.delay, self.fail_first = delay, fail_first
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay)  # a slow endpoint (the server side of the test)
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(500)
                else:
                    outer.got.append((time.monotonic(), dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def test_signature_roundtrip_and_tampering() -> None:
    body = b'{"a": 1}'
    header = sign("s3cret", body, int(time.time()))
    assert verify("s3cret", header, body)
    assert not verify("other", header, body)
    assert not verify("s3cret", header, body + b" ")
    assert not verify("s3cret", sign("s3cret", body, int(time.time()) - 3600), body)
    assert not verify("s3cret", "garbage", body)


def test_each_change_once_signed_and_slow_endpoints_isolated(tmp_path: Path,
                                                             receivers: list[Receiver]) -> None:
    slow, fast, flaky = Receiver(delay=2.0), Receiver(), Receiver(fail_first=2)
    receivers += [slow, fast, flaky]
    store = HookStore(tmp_path / "hooks.sqlite")
    secret = store.register("alpha", [slow.url, fast.url, flaky.url])
    assert secret and store.register("alpha", [slow.url, fast.url, flaky.url]) is None
    for i in range(3):
        assert store.enqueue(f"ev{i}", "alpha", "OverCloudReady", {"i": i}) == 3
        assert store.enqueue(f"ev{i}", "alpha", "OverCloudReady", {"i": i}) == 0  # redelivery
    assert store.enqueue("evx", "nobody", "OverCloudReady", {}) == 0
    stop = threading.Event()
    start = time.monotonic()
    d = Dispatcher(store, stop, timeout=5.0)
    d.start()
    try:
        wait_until(lambda: len(fast.got) == 3, timeout=10, what="the fast endpoint")
        fast_done = time.monotonic() - start
        wait_until(lambda: len(flaky.got) == 3, timeout=20, what="the flaky endpoint (retries)")
        wait_until(lambda: len(slow.got) == 3, timeout=30, what="the slow endpoint")
    finally:
        stop.set()
        d.join(15)
    assert fast_done < 2.0, f"the fast endpoint waited for the slow one ({fast_done:.1f}s)"
    for r in (slow, fast, flaky):
        bodies = [b for _, _, b in r.got]
        assert bodies == [b'{"i":0}', b'{"i":1}', b'{"i":2}']  # once each, in order
        for _, headers, body in r.got:
            assert verify(secret, headers[SIGNATURE_HEADER], body)
            assert headers["X-OverCloud-Event"] == "OverCloudReady"
    states = {(x.url, x.state, x.attempts) for x in store.deliveries("alpha")}
    assert (flaky.url, "delivered", 3) in states  # two 500s, then delivered


def test_a_dead_endpoint_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    store = HookStore(tmp_path / "hooks.sqlite")
    store.register("alpha", ["http://127.0.0.1:9/nothing-listens"])
    store.enqueue("ev", "alpha", "OverCloudFailed", {})
    stop = threading.Event()
    d = Dispatcher(store, stop, timeout=1.0, max_attempts=3, max_backoff=0.2)
    d.start()
    try:
        wait_until(lambda: store.deliveries("alpha")[0].state == "failed", timeout=20,
                   what="giving up")
    finally:
        stop.set()
        d.join(10)
    row = store.deliveries("alpha")[0]
    assert row.attempts == 3 and "Connect" in row.error


def test_the_event_feed_thread_stops_and_joins(tmp_path: Path) -> None:
    """`serve` joins its threads on SIGTERM; an attribute shadowing `Thread._stop` made that
    join raise (a traceback in every DevTower's log at shutdown)."""
    import threading

    from devtower.journal import Journal
    from devtower.server import EventFeedRunner
    from overcloud.settings import load_settings
    from tests.helpers import free_port

    s = load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_CONFIG": "",
                           "OVERCLOUD_KAFKA_PORT": str(free_port())})  # nothing listens there
    stop = threading.Event()
    runner = EventFeedRunner(s, Journal(tmp_path / "j.sqlite"), HookStore(tmp_path / "h.sqlite"),
                             stop)
    runner.start()
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive()


def test_an_update_re_points_the_webhooks_and_a_new_url_hears_of_it(tmp_path: Path) -> None:
    """`OverCloudUpdated` carries the request the OverCloud now runs: its webhook URLs replace
    the old ones before the update's own notification is queued, so a URL the update adds
    receives it and one it removes does not; the secret stays the OverCloud's."""
    from devtower.feeds import EventFeed
    from devtower.journal import Journal
    from overcloud.events import OverCloudRequested, OverCloudUpdated

    hooks = HookStore(tmp_path / "h.sqlite")
    feed = EventFeed(None, Journal(tmp_path / "j.sqlite"), hooks)  # type: ignore[arg-type]
    old, new = "http://127.0.0.1:9/old", "http://127.0.0.1:9/new"
    feed.handle(OverCloudRequested(name="blog", owner="a@x", spec={"devtower": {"notify": [old]}}))
    secret = hooks.due(old)[0][2]
    feed.handle(OverCloudUpdated(name="blog", spec={"devtower": {"notify": [new]}},
                                 changes=[f"+ webhook {new}", f"- webhook {old}"]))
    assert hooks.urls("blog") == [new]
    ((_, body, signed_with, _, event),) = hooks.due(new)
    assert b"+ webhook" in body
    assert event == "OverCloudUpdated" and signed_with == secret
    assert [e for *_, e in hooks.due(old)] == ["OverCloudRequested"]
