"""Service collectors on recorded inputs (the Docker API of a web node) and a real local
HTTP server for the probe."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.service.container import (
    ContainerCollector,
    ContainerReading,
    cgroup_usage,
    container_samples,
    parse_containers,
)
from collectors.service.http import HttpProbeCollector, ProbeResult, probe_sample

CASES = Path(__file__).parent / "testcases" / "service"


def _recorded() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    doc = json.loads((CASES / "docker_web_node.json").read_text())
    return doc["list"], {i["Id"]: i for i in doc["inspect"]}


def test_compose_containers_from_the_docker_api() -> None:
    listing, inspects = _recorded()
    ids = {x["Labels"]["com.docker.compose.service"]: x["Id"] for x in listing}
    usage = {ids["wordpress"]: (2_000_000_000, 150 << 20), ids["nginx"]: (10_000_000, 13 << 20)}
    infos = parse_containers(listing, inspects, usage)
    assert [(i.service, i.state, i.health, i.restarts) for i in infos] == [
        ("nginx", "running", "healthy", 0), ("wordpress", "running", "healthy", 0)]
    later = tuple(
        i.__class__(**{**i.__dict__, "cpu_ns": (i.cpu_ns or 0) + 500_000_000}) for i in infos)
    samples = container_samples(ContainerReading(0, infos), ContainerReading(10**9, later))
    by = {s.tags["service"]: s for s in samples}
    assert by["wordpress"].tags == {"service": "wordpress", "tier": "app"}
    assert by["nginx"].tags["tier"] == "web"
    wp = by["wordpress"].fields
    assert wp["running"] is True and wp["healthy"] is True and wp["mem_usage"] == 150 << 20
    assert wp["cpu_percent"] == 50.0  # half a core for one second


def test_a_stopped_container_is_reported_not_running() -> None:
    listing, inspects = _recorded()
    wp = next(x["Id"] for x in listing if x["Labels"]["com.docker.compose.service"] == "wordpress")
    inspects[wp] = {**inspects[wp], "State": {"Status": "exited", "Running": False,
                                              "ExitCode": 137,
                                              "Health": {"Status": "unhealthy"}}}
    (nginx, wordpress) = container_samples(None, ContainerReading(5, parse_containers(
        listing, inspects, {})))
    assert wordpress.fields == {"running": False, "state": "exited", "health": "unhealthy",
                                "healthy": False, "restarts": 0}
    assert nginx.fields["running"] is True and "cpu_percent" not in nginx.fields


def test_unreachable_docker_gives_no_samples_and_keeps_the_last_reading() -> None:
    listing, inspects = _recorded()
    good = ContainerReading(1, parse_containers(listing, inspects, {}))
    readings = [good, ContainerReading(2, None)]

    class Recorded:
        def read(self) -> ContainerReading:
            return readings.pop(0)

    c = ContainerCollector(Recorded())
    assert len(c.collect()) == 2
    assert c.collect() == []


def test_cgroup_usage_reads_memory_and_process_cpu(tmp_path: Path) -> None:
    cid = "ab" * 32
    cg = tmp_path / "root" / "sys/fs/cgroup/memory/docker" / cid
    cg.mkdir(parents=True)
    (cg / "memory.usage_in_bytes").write_text("4096\n")
    (cg / "cgroup.procs").write_text("11\n12\n99\n")  # 99 exited meanwhile
    proc = tmp_path / "proc"
    for pid, (ut, st) in {"11": (100, 50), "12": (7, 3)}.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "stat").write_text(
            f"{pid} (apache2 (x)) S 1 1 1 0 -1 4194560 1 0 0 0 {ut} {st} 0 0 20 0 1 0 1 1 1\n")
    usage = cgroup_usage(tmp_path / "root", cid, proc)
    assert usage is not None
    cpu_ns, mem = usage
    assert mem == 4096
    from collectors.service.container import TICK_NS

    assert cpu_ns == 160 * TICK_NS
    assert cgroup_usage(tmp_path / "root", "cd" * 32, proc) is None


@pytest.mark.parametrize(
    ("result", "up", "body_ok"),
    [
        (ProbeResult(1, 200, 12.5, "<title>WordPress › Installation</title>", ""), True, True),
        (ProbeResult(1, 200, 3.0, "It works", ""), False, False),
        (ProbeResult(1, 502, 3.0, "Bad Gateway", "HTTP 502"), False, False),
        (ProbeResult(1, 0, 5000.0, "", "ConnectError: refused"), False, False),
    ],
)
def test_probe_fields(result: ProbeResult, up: bool, body_ok: bool) -> None:
    s = probe_sample(result, "/wp-admin/install.php", "WordPress")
    assert s.tags == {"target": "/wp-admin/install.php"}
    assert s.fields["up"] is up and s.fields["body_ok"] is body_ok
    assert s.fields["status"] == result.status and s.fields["error"] == result.error


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.startswith("/ok")
            body = b"WordPress install" if ok else b"Bad Gateway"
            self.send_response(200 if ok else 502)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_probe_against_a_real_server(server: str) -> None:
    (up,) = HttpProbeCollector(f"{server}/ok?x=1", "WordPress").collect()
    assert up.fields["up"] is True and up.fields["status"] == 200
    assert up.tags == {"target": "/ok"}  # no query string in a tag
    assert isinstance(up.fields["latency_ms"], float) and up.fields["latency_ms"] > 0
    (down,) = HttpProbeCollector(f"{server}/gone", "WordPress").collect()
    assert down.fields["up"] is False and down.fields["status"] == 502
    closed = server.rsplit(":", 1)[0] + ":9"  # discard port on loopback: nothing listens
    (none,) = HttpProbeCollector(closed + "/x", "WordPress", timeout=2).collect()
    assert none.fields["status"] == 0 and none.fields["error"]
