"""Our own CLI commands as daemons (the DevLake, the orchestrator, agents, the DevTower):
started with this interpreter, ready once their log shows their banner."""

from __future__ import annotations

import os
import sys

from daemons.process import Daemon
from overcloud.settings import Settings


def log_says(d: Daemon, text: str) -> bool:
    """`text` is in the daemon's log since its start (`log_from`), not only in its last 4 kB:
    an agent that had logged more than that since its banner (a broker outage's warnings)
    counted as not ready, and a start of it that was already running waited its whole start
    timeout and failed."""
    needle = text.encode()
    try:
        with d.log_file.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(d.log_from, size - 4096))
            if needle in f.read():  # the usual case: a banner just written
                return True
            f.seek(d.log_from)  # this start's lines, not an earlier run's
            carry = b""
            while chunk := f.read(1 << 20):
                if needle in carry + chunk:
                    return True
                carry = chunk[-len(needle):]
    except OSError:
        return False
    return False


def _cli(*args: str) -> list[str]:
    """argv running our own CLI with this interpreter (works inside a venv and without PATH)."""
    return [sys.executable, "-m", "devtower.cli.main", *args]


def cli_daemon(s: Settings, name: str, args: list[str], address: str, banner: str) -> Daemon:
    """One of our own CLI commands as a daemon; ready once its log shows `banner`."""
    d = Daemon(name=name, argv=_cli(*args), state_dir=s.state_dir, ready=lambda: False,
               address=address)
    d.ready = lambda: d.pid() is not None and log_says(d, banner)
    return d
