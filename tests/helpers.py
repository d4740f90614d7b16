"""Test helpers shared by unit and integration tests (no mocks of outside services here)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
OVERCLOUD = str(BIN / "overcloud")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (and whose +2 neighbour is free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
        return int(port)


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [OVERCLOUD, *args], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"overcloud {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Background:
    """A CLI process (e.g. `overcloud devlake run`) the test starts and stops by pid."""

    args: Sequence[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Background:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [OVERCLOUD, *self.args], env={**os.environ, **self.env}, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ApacheWorkers:
    """The most apache2 processes (WordPress's PHP workers and their parent) seen in any one
    node of `overcloud` at once, sampled from /proc in a thread: the stack bounds them by the
    node's CPUs (orchestrator/stack/wordpress/mpm_prefork.conf)."""

    def __init__(self, overcloud: str) -> None:
        self.most: dict[str, int] = {}
        self._mark = f"/lxc.payload.{overcloud}-"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ApacheWorkers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> dict[str, int]:
        count: dict[str, int] = {}
        for proc in Path("/proc").iterdir():
            try:
                if not proc.name.isdigit() or (proc / "comm").read_text().strip() != "apache2":
                    continue
                cgroup = (proc / "cgroup").read_text()
            except OSError:
                continue
            at = cgroup.find(self._mark)
            if at >= 0:
                node = cgroup[at + len("/lxc.payload."):].split("/", 1)[0].split("\n", 1)[0]
                count[node] = count.get(node, 0) + 1
        return count

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for node, n in self.sample().items():
                self.most[node] = max(n, self.most.get(node, 0))


def install_wordpress(port: int, title: str = "OverCloud test") -> None:
    """Install WordPress through its own install page on the URL's port (an admin with a
    random password), as a developer would; its front page then answers 200."""
    import secrets

    import httpx

    password = secrets.token_urlsafe(16)
    r = httpx.post(f"http://127.0.0.1:{port}/wp-admin/install.php?step=2", timeout=180, data={
        "weblog_title": title, "user_name": "admin", "admin_password": password,
        "admin_password2": password, "pw_weak": "1", "admin_email": "admin@example.org",
        "blog_public": "0", "language": "", "Submit": "Install WordPress"})
    assert r.status_code == 200 and "Success" in r.text, r.text[:500]
