"""Helpers shared by the benchmarks: machine facts, private services, CPU accounting.

Every benchmark starts its own broker and InfluxDB through `overcloud.services.manager`, in a
temporary state directory and on free loopback ports, so that it never touches a user's
services; it stops exactly those (by the pids recorded in that state directory) at the end.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from overcloud.services import manager
from overcloud.settings import Settings, load_settings

LOOPBACK = "127.0.0.1"
_TICK = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for row in Path("/proc/meminfo").read_text().splitlines():
            if row.startswith("MemTotal:"):
                mem_kib = int(row.split()[1])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "cpu": model,
        "python": platform.python_version(),
    }


def print_machine() -> None:
    m = machine()
    print(f"# {m['date']} | nproc {m['nproc']} | {m['memory']} | kernel {m['kernel']} | "
          f"CPU {m['cpu']} | Python {m['python']}")


def free_port() -> int:
    """A free TCP port on loopback whose +2 neighbour (InfluxDB's RPC port) is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port: int = s.getsockname()[1]
        if port > 65000:
            continue
        with contextlib.suppress(OSError), socket.socket() as s2:
            s2.bind((LOOPBACK, port + 2))
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1")


def bench_env(state_dir: Path, kafka_port: int, influx_port: int) -> dict[str, str]:
    """Environment for `overcloud` processes of this benchmark (and nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERCLOUD_")}
    env.update({
        "OVERCLOUD_STATE_DIR": str(state_dir),
        "OVERCLOUD_KAFKA_HOST": LOOPBACK,
        "OVERCLOUD_KAFKA_PORT": str(kafka_port),
        "OVERCLOUD_INFLUX_HOST": LOOPBACK,
        "OVERCLOUD_INFLUX_PORT": str(influx_port),
        "OVERCLOUD_INFLUX_URL": "",
        "OVERCLOUD_INFLUX_DIALECT": "v1",
    })
    return env


@contextlib.contextmanager
def private_services(
    names: Sequence[str] = ("kafka", "influxdb"),
    keep: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Start our own broker/InfluxDB in a temp state dir on free ports; stop them after."""
    state = Path(tempfile.mkdtemp(prefix="overcloud-bench-"))
    env = bench_env(state, free_port(), free_port())
    env.update(extra_env or {})
    settings = load_settings(config=None, env=env)
    try:
        manager.up(settings, list(names))
        yield settings, env
    finally:
        manager.down(settings, list(names))
        if not keep:
            shutil.rmtree(state, ignore_errors=True)


def service_pids(settings: Settings) -> dict[str, int]:
    out = {}
    for st in manager.status(settings):
        if st.pid:
            out[st.name] = st.pid
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own threads), in seconds; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def total_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    row = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(v) for v in row[:8]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / _TICK, sum(vals) / _TICK


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def overcloud_cli() -> list[str]:
    exe = Path(sys.executable).parent / "overcloud"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "devtower.cli.main"]


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd)
    finally:
        out.close()
