"""`overcloud top` frames rendered from canned InfluxQL results (pure: no DevLake involved)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from dashboards.terminal import Frame, parse, render, sparkline, top_queries

T0 = 1_790_000_000 * 10**9
NOW = datetime.fromtimestamp(T0 / 1e9 + 45, UTC)


def rows(*cols: list[object]) -> list[list[object]]:
    return [[T0 + i * 20 * 10**9, *vals] for i, vals in enumerate(zip(*cols, strict=True))]


CANNED = {
    "hosts": [{"name": "resource_undercloud", "tags": {"host": "lxd1"},
               "columns": ["time", "cpu", "mem", "running", "containers", "net"],
               "values": rows([10.0, 50.0, 90.0], [20.0, 21.0, 22.0], [1, 2, 2], [2, 2, 2],
                              [1024.0, 2048.0, 3e6])}],
    "machines": [{"name": "resource_host", "tags": {"host": "vm"}, "columns": ["time", "cpu", "load1", "mem"],
                  "values": rows([5.0, None, 7.0], [0.5, None, 0.7], [30.0, None, 31.0])}],
    "nodes": [{"name": "resource_instance", "tags": {"node": "n1", "host": "lxd1"},
               "columns": ["time", "cpu", "mem", "rx", "tx", "running"],
               "values": rows([1.0, 2.0, 3.0], [2**20, 2**20, 2**21], [10.0, 20.0, 30.0], [5.0, 5.0, 5.0],
                              [True, True, True])}],
    "flows": [{"name": "flow_peer", "tags": {"node": "n1", "peer": "n2"},
               "columns": ["time", "sent", "received", "connections"],
               "values": rows([100.0, 200.0, 300.0], [50.0, 50.0, 60.0], [2, 3, 3])}],
    "http": [{"name": "service_http", "tags": {"target": "/wp-admin/install.php"},
              "columns": ["time", "status", "latency", "up", "error"],
              "values": rows([200, 200, 0], [12.0, 15.0, None], [True, True, False], ["", "", "timeout"])}],
    "containers": [{"name": "service_container", "tags": {"node": "n1", "service": "db"},
                    "columns": ["time", "state", "health", "restarts", "cpu", "mem"],
                    "values": rows(["running", "running", "exited"], ["healthy", "healthy", "unhealthy"],
                                   [0, 0, 1], [1.0, 2.0, None], [2**20, 2**20, None])}],
}


def text_of(frame: Frame) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(render(frame))
    return console.export_text()


def test_sparkline_scales_to_its_own_range() -> None:
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([None, 1, 1]) == " ▄▄"
    assert sparkline([]) == "" and sparkline([None]) == ""
    assert len(sparkline(list(range(100)), width=16)) == 16


def test_parse_keeps_latest_non_null_and_history() -> None:
    (machine,) = parse(CANNED["machines"])
    assert machine.latest == {"cpu": 7.0, "load1": 0.7, "mem": 31.0}
    assert machine.history["cpu"] == [5.0, None, 7.0]
    (http,) = parse(CANNED["http"])
    assert http.latest["up"] is False and http.latest["status"] == 0 and http.latest["error"] == "timeout"
    assert http.latest["latency"] == 15.0  # last non-null value, the newest bucket had none
    assert parse([{"name": "x", "columns": ["time", "v"], "values": []}]) == []


def test_frame_renders_every_section() -> None:
    frame = Frame("overcloud top — blog", NOW, {k: parse(v) for k, v in CANNED.items()})
    text = text_of(frame)
    for expected in ("lxd1", "90.0", "2/2", "2.9 MiB/s", "vm", "0.70", "n1", "2.0 MiB", "30 B/s",
                     "n1 → n2", "300 B/s", "/wp-admin/install.php", "DOWN", "timeout",
                     "n1/db", "exited", "unhealthy", "▁▅█"):
        assert expected in text, f"{expected!r} not in\n{text}"
    assert "5s" in text  # age of the newest bucket: NOW - (T0 + 40 s)


def test_undercloud_only_frame_lists_overclouds_and_errors() -> None:
    frame = Frame("overcloud top — UnderCloud", NOW, {"hosts": [], "machines": []}, ["blog", "shop"],
                  ["InfluxDB at http://127.0.0.1:8086 unreachable"])
    text = text_of(frame)
    assert "OverClouds: blog, shop" in text
    assert "! InfluxDB at http://127.0.0.1:8086 unreachable" in text
    assert "(no samples in this window)" in text
    assert "Nodes" not in text


def test_a_refresh_is_six_queries_not_one_per_cell() -> None:
    qs = top_queries("10m", "20s")
    assert [q.key for q in qs] == ["hosts", "machines", "nodes", "flows", "http", "containers"]
    assert all("GROUP BY time(20s)" in q.text and "now() - 10m" in q.text for q in qs)
