"""A daemon started with one command line is still ours to stop after its options change
(an agent whose node moved), and starting it with new options replaces the old process."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons.process as process
from daemons.process import Daemon


def _sleeper(tmp: Path, seconds: str) -> Daemon:
    # the test's own directory in the command line: scans of /proc see only this test's
    # sleepers, not those of another test session running at the same time
    return Daemon(name="sleeper", argv=[sys.executable, "-c", "import time; time.sleep(60)",
                                        seconds, str(tmp)], state_dir=tmp, ready=lambda: True,
                  address="-")


def _state(pid: int) -> str:
    """The process's state letter and command line, or "" once /proc has forgotten it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
    return f"{stat.rsplit(')', 1)[1].split()[0]} {cmd}"


def _gone(pid: int) -> bool:
    state = _state(pid)
    return state == "" or state.startswith("Z")


def test_stop_finds_the_process_started_with_other_options(tmp_path: Path) -> None:
    first = _sleeper(tmp_path, "a")
    pid = first.start()
    try:
        later = _sleeper(tmp_path, "b")  # same name, other options
        assert later.pid() == pid
        assert later.stop()
        assert first.pid() is None and not first.pid_file.exists()
    finally:
        first.stop()


def test_start_with_other_options_replaces_the_old_process(tmp_path: Path) -> None:
    old = _sleeper(tmp_path, "a")
    old_pid = old.start()
    new = _sleeper(tmp_path, "b")
    try:
        new_pid = new.start()
        assert new_pid != old_pid
        assert _gone(old_pid), f"old sleeper {old_pid} still runs: {_state(old_pid)}"
        assert new.start() == new_pid  # as asked already: left alone
    finally:
        new.stop()
        old.stop()


def test_a_pid_file_of_someone_else_is_stale(tmp_path: Path) -> None:
    d = _sleeper(tmp_path, "a")
    d.pid_file.parent.mkdir(parents=True)
    d.pid_file.write_text(f"{1}\n")  # pid 1 does not run our command line
    assert d.pid() is None and not d.pid_file.exists()


def test_starts_at_once_give_one_process(tmp_path: Path) -> None:
    """Two workflow attempts starting the same agent at once (a timed-out task retried while
    its first attempt still runs) must not leave a second, untracked process."""
    import threading

    barrier = threading.Barrier(6)
    pids: list[int] = []

    def start() -> None:
        d = _sleeper(tmp_path, "a")
        barrier.wait()
        pids.append(d.start())

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    running = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _state(int(p.name))
               .endswith(f"{sys.executable} -c import time; time.sleep(60) a {tmp_path} ")]
    try:
        assert len(set(pids)) == 1 and len(pids) == 6, pids
        assert [int(p.name) for p in running] == pids[:1], (running, pids)
    finally:
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(p.name), signal.SIGKILL)


def test_a_process_just_born_is_not_taken_for_a_stranger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/PID/cmdline reads empty for a moment after a process is born: that is not
    another program under a reused pid (the pid file was removed, and a start waited its
    whole timeout for a daemon that had long shown its banner)."""
    d = _sleeper(tmp_path, "born")
    pid = d.start()
    try:
        real = process._cmdline
        reads: Iterator[list[str]] = iter([[], []])
        monkeypatch.setattr(process, "_cmdline", lambda p: next(reads, None) or real(p))
        assert d.pid() == pid and d.pid_file.exists()
        monkeypatch.setattr(process, "_cmdline", lambda p: [])  # never readable: not judged
        assert d.pid() is None and d.pid_file.exists()
        monkeypatch.setattr(process, "_cmdline", lambda p: ["/usr/bin/other"])  # reused
        assert d.pid() is None and not d.pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
