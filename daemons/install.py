"""Install what a service needs from Debian's packages, only when it is missing."""

from __future__ import annotations

import os
import subprocess
import threading

from overcloud.errors import ServiceError

_lock = threading.Lock()
_updated = False


def missing_packages(packages: list[str]) -> list[str]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    installed = {ln.split()[0] for ln in out.splitlines() if ln.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure_packages(packages: list[str]) -> list[str]:
    """apt-get install the missing ones (running `apt-get update` once first); returns them."""
    global _updated
    with _lock:
        missing = missing_packages(packages)
        if not missing:
            return []
        if os.geteuid() != 0:
            raise ServiceError(
                f"packages {' '.join(missing)} are missing; run as root or install them with apt-get"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _updated:
            _run(["apt-get", "update", "-qq"], env)
            _updated = True
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env)
        return missing


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ServiceError(f"{' '.join(cmd[:3])} failed: {' | '.join(tail)}")
