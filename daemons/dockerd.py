"""The host's own Docker engine, used only to build the stack images.

It must never meet a user's Docker: its socket, data root, exec root, pid file and config
file all live under our state directory. It runs with `--bridge=none --iptables=false`, and
builds use the host network (`docker build --network host`): so it creates no docker0, adds
no iptables rules and never flips the FORWARD policy to DROP — which on this kind of machine
would cut the LXD bridges off (RUNTIME.md) and outlive the daemon. Containers that run the
stack live inside LXD machine containers, each with its own Docker, never here.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from daemons.process import Daemon
from overcloud.settings import Settings


def docker_dir(s: Settings) -> Path:
    return s.state_dir / "docker"


def docker_socket(s: Settings) -> Path:
    return s.state_dir / "docker.sock"


def docker_host(s: Settings) -> str:
    """The DOCKER_HOST value for clients of our host dockerd."""
    return f"unix://{docker_socket(s)}"


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=1.0) as c:
            return c.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class _Dockerd(Daemon):
    exec_root: Path | None = None

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Stop, then unmount what dockerd leaves mounted under its exec root (the
        `netns/default` nsfs mount), or the state directory could not be removed."""
        stopped = super().stop(timeout, sig)
        if self.exec_root is not None:
            prefix = str(self.exec_root) + "/"
            mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
            for target in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        return stopped


def dockerd_daemon(s: Settings) -> Daemon:
    data = docker_dir(s)
    config = s.state_dir / "dockerd.json"

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)
        (s.state_dir / "run").mkdir(parents=True, exist_ok=True)
        # our own (empty) config: a user's /etc/docker/daemon.json must not leak in
        config.write_text(json.dumps({}) + "\n")

    exec_root = s.state_dir / "run" / "docker"
    return _Dockerd(
        name="dockerd",
        argv=[
            shutil.which("dockerd") or "/usr/sbin/dockerd",
            "--config-file", str(config),
            "--data-root", str(data),
            "--exec-root", str(exec_root),
            "--pidfile", str(s.state_dir / "dockerd.pid"),
            "--host", docker_host(s),
            "--bridge", "none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
        ],
        state_dir=s.state_dir,
        ready=lambda: _answers(docker_socket(s)),
        address=docker_host(s),
        start_timeout=60,
        prepare=prepare,
        exec_root=exec_root,
    )
