"""DevLake data is printed as written, never read as rich markup (issue 9 §2), on a real
InfluxDB: tag values, field names and string fields that carry `[/x]` (rich raised
MarkupError on it), `[bold]` and `:smile:` go through `metrics latest`, `metrics query`,
`top --once` and `alerts test`, and come out literally.

Only InfluxDB runs (started by the project's own service manager on a free port, stopped
by pid); the points are written as line protocol, the way the DevLake consumer writes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devlake.sinks import InfluxV1Sink
from devtower.services import manager
from overcloud.lineprotocol import encode
from overcloud.samples import Sample
from overcloud.settings import load_settings
from tests.helpers import free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MARKUP = "[/x] [bold]b :smile:"
OVERCLOUD = "mk"


@pytest.fixture(scope="module")
def influx_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {"OVERCLOUD_STATE_DIR": str(tmp_path_factory.mktemp("state")), "OVERCLOUD_CONFIG": "",
           "OVERCLOUD_INFLUX_PORT": str(free_port()), "OVERCLOUD_KAFKA_PORT": str(free_port())}
    settings = load_settings(env=env)
    manager.up(settings, ["influxdb"])
    try:
        now = time.time_ns()
        sink = InfluxV1Sink(settings.influx)
        try:
            under = [Sample("resource_undercloud", {"host": MARKUP}, {
                "cpu_percent": 42.0 + i, "mem_percent": 10.0, "instances": 1, "running_instances": 1,
                "net_bytes_per_s": 100.0}, now - (30 - i) * 10**9) for i in range(3)]
            over = [Sample("service_http", {"overcloud": OVERCLOUD, "node": MARKUP, "target": MARKUP}, {
                "latency_ms": 900.0 + i, "status": 500, "up": False, "error": f"boom {MARKUP}"},
                now - (30 - i) * 10**9) for i in range(3)]
            for db, points in ((settings.influx.default_database, under),
                               (settings.influx.database_prefix + OVERCLOUD, over)):
                sink.ensure_database(db)
                sink.write(db, encode(points))
        finally:
            sink.close()
        yield env
    finally:
        manager.down(settings, ["influxdb"])


def _ok(args: list[str], env: dict[str, str]) -> str:
    proc = run_cli(args, env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_metrics_latest(influx_env: dict[str, str]) -> None:
    out = _ok(["metrics", "latest", "--overcloud", OVERCLOUD, "--all"], influx_env)
    assert MARKUP in out and f"boom {MARKUP}" in out, out


def test_metrics_query(influx_env: dict[str, str]) -> None:
    out = _ok(["metrics", "query", 'SELECT * FROM "service_http" GROUP BY *', "--overcloud", OVERCLOUD],
              influx_env)
    assert f"target={MARKUP}" in out and f"boom {MARKUP}" in out, out


def test_top_once(influx_env: dict[str, str]) -> None:
    out = _ok(["top", "--once", "--overcloud", OVERCLOUD], influx_env)
    assert out.count(MARKUP) >= 3 and f"boom {MARKUP}" in out, out  # host, node/target, error


def test_alerts_test(influx_env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: slow\n    watch: {measurement: service_http, field: latency_ms, "
                     "group_by: [target]}\n    condition: '>'\n    threshold: 100\n")
    out = _ok(["alerts", "test", str(rules), "--since", "10m"], influx_env)
    assert f"slow target={MARKUP}" in out, out
