"""A bridge a killed LXD daemon left behind does not stop its host from starting again.

Seen in CI: the machine's processes were ended with -9 between runs, bridge `octe1` stayed in
the kernel and the next `lxd init --preseed` failed with "Network not found".
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from daemons.lxd import clear_stale_bridge
from overcloud.errors import ServiceError

NAME = "ocstale9"


def _exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture
def gone() -> Iterator[None]:
    subprocess.run(["ip", "link", "delete", NAME], capture_output=True, check=False)
    yield
    subprocess.run(["ip", "link", "delete", NAME], capture_output=True, check=False)


def test_a_stale_bridge_is_deleted_and_a_missing_one_is_fine(gone: None) -> None:
    assert clear_stale_bridge(NAME) is False
    subprocess.run(["ip", "link", "add", NAME, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", NAME, "up"], check=True)
    assert clear_stale_bridge(NAME) is True
    assert not _exists(NAME)


def test_an_interface_that_is_not_a_bridge_is_left_alone(gone: None) -> None:
    subprocess.run(["ip", "link", "add", NAME, "type", "veth", "peer", "name", NAME + "p"],
                   check=True)
    with pytest.raises(ServiceError, match="not a bridge"):
        clear_stale_bridge(NAME)
    assert _exists(NAME)


def test_a_bridge_a_live_dnsmasq_serves_is_left_alone(gone: None) -> None:
    subprocess.run(["ip", "link", "add", NAME, "type", "bridge"], check=True)
    # a process whose command line is a dnsmasq bound to the bridge, as LXD runs one
    # Popen returns once the child has exec'd: its command line is in place
    proc = subprocess.Popen(["dnsmasq", "-c", "import time; time.sleep(60)",
                             f"--interface={NAME}"], executable=sys.executable)
    try:
        with pytest.raises(ServiceError, match="served by another LXD"):
            clear_stale_bridge(NAME)
    finally:
        proc.kill()
        proc.wait()
    assert _exists(NAME)
