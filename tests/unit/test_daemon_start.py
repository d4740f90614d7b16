"""Starting a daemon of our own: readiness is read from this start's log lines, however many
follow the banner; a start that gives up stops what it spawned. Before, an agent that had
logged 4 kB after its banner never counted as ready, each retry of the `agents` task spawned
another one beside it, and the ones before ran on untracked after the OverCloud was deleted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from daemons.cli import log_says
from daemons.process import Daemon, pid_alive
from overcloud.errors import ServiceError

# the banner, then 2000 lines, then a file saying they are all written (argv[1]/written):
# readiness waits for that file, so the banner is far above the log's end when it is looked for
CHATTY = ("import pathlib, sys, time\nprint('banner: up', flush=True)\n"
          "for i in range(2000): print('a warning that fills the log', i)\n"
          "sys.stdout.flush()\n(pathlib.Path(sys.argv[1]) / 'written').touch()\n"
          "time.sleep(60)\n")
MUTE = "import time\ntime.sleep(60)\n"


def _daemon(tmp: Path, script: str, timeout: float = 30.0) -> Daemon:
    d = Daemon(name="chatty", argv=[sys.executable, "-c", script, str(tmp)], state_dir=tmp,
               ready=lambda: False, address="-", start_timeout=timeout)
    d.ready = lambda: ((tmp / "written").exists() or script != CHATTY) \
        and d.pid() is not None and log_says(d, "banner:")
    return d


def test_a_banner_far_above_the_last_lines_still_counts(tmp_path: Path) -> None:
    d = _daemon(tmp_path, CHATTY)
    try:
        pid = d.start()
        assert d.log_file.stat().st_size > 4096 * 10
        assert _daemon(tmp_path, CHATTY).start() == pid, "running and ready: found, not spawned"
    finally:
        d.stop()


def test_an_earlier_runs_banner_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "chatty.log").write_text("banner: up (yesterday's run)\n")
    d = _daemon(tmp_path, MUTE, timeout=1.0)
    with pytest.raises(ServiceError, match="not ready after"):
        d.start()


def test_a_start_that_gives_up_stops_what_it_spawned(tmp_path: Path) -> None:
    d = _daemon(tmp_path, MUTE, timeout=1.0)
    with pytest.raises(ServiceError, match="not ready after"):
        d.start()
    assert not d.pid_file.exists()
    assert not _ours_running(tmp_path), "the process of the failed start still runs"


def _ours_running(tmp: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(tmp).encode() in cmd and b"time.sleep(60)" in cmd and pid_alive(int(proc.name)):
                found.append(int(proc.name))
    return found
