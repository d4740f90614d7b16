"""A daemon we start ourselves, tracked by a pid file, stopped only by that pid.

Copes with stale state: a pid file whose process is gone, or whose pid now belongs to some
other program, is removed instead of trusted; a port already taken by a stranger is reported
instead of silently colliding. Starting and stopping one daemon hold a lock on its name
(threads and processes alike): two starts at once would spawn two processes, and the one
whose pid the other's pid file overwrote would run on, untracked, for good.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from overcloud.errors import ServiceError


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def pid_alive(pid: int) -> bool:
    """`pid` runs and is not a zombie (our own exited child is reaped on the way)."""
    # reap it if it is our own child that already exited
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, timeout: float, sig: int) -> None:
    """Send `sig`; SIGKILL when the process is still there after `timeout` s; wait it out."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


class Supervised(Protocol):
    """What the services manager needs from a service: a `Daemon`, or a group of them."""

    @property
    def address(self) -> str: ...

    @property
    def log_file(self) -> Path: ...

    def pid(self) -> int | None: ...

    def ready(self) -> bool: ...

    def start(self) -> int: ...

    def stop(self) -> bool: ...


@dataclass
class Daemon:
    """One long-running process of ours.

    `ready` says whether it serves (polled after start, and by `status`); `address` is what
    `status` prints; `port` is checked for strangers before starting.
    """

    name: str
    argv: list[str]
    state_dir: Path
    ready: Callable[[], bool]
    address: str
    port: tuple[str, int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0
    prepare: Callable[[], None] | None = None
    """Runs just before a fresh start (write a config file, make directories)."""
    log_from: int = 0
    """Where in the log this object's own start began (0 when it found the daemon running):
    readiness is read from there on, not from an earlier run's lines."""

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "log" / f"{self.name}.log"

    def _recorded(self) -> tuple[int, list[str]] | None:
        """(pid, command line) from the pid file; the command line is the one we started
        (older files hold only the pid: then it is this daemon's own)."""
        try:
            first, *rest = self.pid_file.read_text().splitlines()
            pid = int(first.strip())
            argv = json.loads(rest[0]) if rest and rest[0].strip() else list(self.argv)
        except (OSError, ValueError, IndexError):
            return None
        return pid, [str(a) for a in argv]

    def pid(self) -> int | None:
        """The recorded pid if that process is still ours and alive; clears stale pid files.

        Ours means it still runs the very command line we recorded when starting it (pids get
        reused) — not necessarily today's `argv`: a daemon started with other options (an
        agent of a node that has moved since) is still ours to stop."""
        rec = self._recorded()
        if rec is None:
            return None
        pid, argv = rec
        if not pid_alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        cmdline = _cmdline(pid)
        deadline = time.monotonic() + 1.0
        while not cmdline and time.monotonic() < deadline and pid_alive(pid):
            # a process just born reads as an empty /proc/PID/cmdline for a moment (seen:
            # a start of ours then took its own new agent for a stranger, removed the pid file
            # and waited its whole start timeout): ask again before judging
            time.sleep(0.01)
            cmdline = _cmdline(pid)
        if cmdline == argv:
            return pid
        if cmdline:  # someone else's now (the pid was reused): the file is stale
            self.pid_file.unlink(missing_ok=True)
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # beside the pid files, not among them: a lock file stays (removing one that another
        # process waits on would hand out a second lock), and must not look like a daemon
        locks = self.state_dir / "run" / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with (locks / f"{self.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start(self) -> int:
        """Start unless already running as asked; wait until ready. Returns the pid.

        Running with other options (the recorded command line differs from `argv`): that
        process is stopped and this one started."""
        with self._locked():
            pid, spawned = self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            if not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited during start-up: {self.log_tail()}")
            if time.monotonic() > deadline and not self.ready():  # one last look
                if spawned:
                    # started now and given up on: stopped, not left running for the next
                    # start to spawn a second one beside it (its pid file may be gone, or
                    # name another process by then, so it is stopped by its own pid)
                    with self._locked():
                        self._stop_pid(pid)
                raise ServiceError(
                    f"{self.name} not ready after {self.start_timeout:g}s: {self.log_tail()}"
                )
            time.sleep(0.05)
        return pid

    def _stop_pid(self, pid: int) -> None:
        """SIGTERM, then SIGKILL, the process `pid` if it still runs our command line; its
        pid file goes too when it names that process (locked)."""
        if not (pid_alive(pid) and _cmdline(pid) == [str(a) for a in self.argv]):
            return
        rec = self._recorded()
        _terminate(pid, 10.0, signal.SIGTERM)
        if rec is not None and rec[0] == pid:
            self.pid_file.unlink(missing_ok=True)

    def _spawn(self) -> tuple[int, bool]:
        """The pid running as asked, and whether it was started now: the recorded process,
        or a new one (locked)."""
        pid = self.pid()
        rec = self._recorded()
        if pid is not None and rec is not None and rec[1] != self.argv:
            self._stop()
            pid = None
        if pid is not None:
            return pid, False
        if self.port and port_open(*self.port):
            raise ServiceError(
                f"{self.name}: port {self.port[1]} on {self.port[0]} is already used by "
                "another process; stop it or choose another port"
            )
        if self.prepare:
            self.prepare()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self.log_from = log.seek(0, os.SEEK_END)
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from None
        finally:
            log.close()
        pid = proc.pid
        self.pid_file.write_text(f"{pid}\n{json.dumps(self.argv)}\n")
        return pid, True

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Stop our recorded process (SIGTERM, then SIGKILL). Returns False if none ran."""
        with self._locked():
            return self._stop(timeout, sig)

    def _stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        _terminate(pid, timeout, sig)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"
