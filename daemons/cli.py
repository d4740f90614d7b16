"""Our own CLI commands as daemons (the DevLake, the orchestrator, agents, the DevTower):
started with this interpreter, ready once their log shows their banner."""

from __future__ import annotations

import sys

from daemons.process import Daemon
from overcloud.settings import Settings


def log_says(d: Daemon, text: str) -> bool:
    try:
        return text in d.log_file.read_text(errors="replace")[-4096:]
    except OSError:
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
