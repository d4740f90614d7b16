"""UnderCloud smoke proof on real LXD and Docker: two LXD hosts, the cached node image,
a machine container running the 3-tier stack with Compose, WordPress through an LXD proxy
device on loopback, a move of the stopped container to the second host, and nothing left.

Its own state directory, bridges (`octs1`, `octs2`, 10.234.{1,2}.0/24) and ports, so it never
meets a developer's `overcloud services up`. The image cache is the shared one: a warm
cache makes this test take about a minute; a cold one builds everything first (minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from daemons.process import port_open
from devtower.services import manager
from lxdclient import api_answers, lxc
from orchestrator.drivers.lxd import client_for
from orchestrator.images import NODE_ALIAS, ensure_images
from orchestrator.stack.compose import COMPOSE_FILE, Role, StackSecrets, env_file
from overcloud.settings import LxdHost, Settings, load_settings
from overcloud.waiting import wait_until
from tests.helpers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

TIMES: dict[str, float] = {}


def _two_free_ports() -> int:
    for _ in range(50):
        port = free_port()
        if port < 65000 and not port_open("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def uc() -> Iterator[Settings]:
    # not under pytest's 0700 tmp dirs: unprivileged containers must traverse the path
    state = Path(tempfile.mkdtemp(prefix="oc-uc-", dir="/tmp"))
    state.chmod(0o711)
    env = {
        **os.environ,
        "OVERCLOUD_CONFIG": "",
        "OVERCLOUD_STATE_DIR": str(state),
        "OVERCLOUD_UNDERCLOUD_HOSTS": "lxd1,lxd2",
        "OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX": "octs",
        "OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX": "10.234",
        "OVERCLOUD_UNDERCLOUD_HTTPS_PORT": str(_two_free_ports()),
    }
    settings = load_settings(env=env)
    t0 = time.monotonic()
    manager.up(settings, ["lxd"])
    TIMES["lxd hosts up"] = time.monotonic() - t0
    try:
        yield settings
    finally:
        manager.down(settings, ["lxd", "dockerd"])
        for host in settings.lxd_hosts:
            assert not api_answers(host)
            assert not Path(f"/sys/class/net/{host.bridge}").exists(), f"{host.bridge} left"
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        assert str(state) not in loops, loops
        mounts = Path("/proc/mounts").read_text()
        assert str(state) not in mounts, "mounts left under the state directory"
        if str(state) not in mounts:
            shutil.rmtree(state, ignore_errors=True)
        print("\nUnderCloud timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMES.items()))


def _instances(s: Settings, host: LxdHost) -> list[str]:
    out = lxc(s, host, "list", "--format", "csv", "-c", "n").stdout
    return [ln for ln in out.splitlines() if ln]


def _exec(s: Settings, host: LxdHost, name: str, *cmd: str, timeout: float = 300) -> str:
    return lxc(s, host, "exec", name, "--", *cmd, timeout=timeout).stdout


def _wordpress_page(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    if r.status_code == 200 and "wp-admin/install.php" in str(r.url):
        return r.text
    return None


def test_node_image_runs_the_stack_and_moves(uc: Settings, tmp_path: Path) -> None:
    lxd1, lxd2 = uc.lxd_hosts

    t0 = time.monotonic()
    status = ensure_images(uc, say=print)
    TIMES["ensure_images"] = time.monotonic() - t0
    assert status.ready, status
    fingerprints = {h.fingerprint for h in status.hosts}
    assert len(fingerprints) == 1 and None not in fingerprints
    t0 = time.monotonic()
    again = ensure_images(uc)
    TIMES["warm check"] = time.monotonic() - t0
    assert [h.action for h in again.hosts] == ["present", "present"]

    # -- launch → WordPress install page -------------------------------------------
    name, port = "ocsmoke1", free_port()
    t_launch = time.monotonic()
    lxc(uc, lxd1, "launch", NODE_ALIAS, name, "-c", "security.nesting=true")
    TIMES["lxc launch"] = time.monotonic() - t_launch
    wait_until(
        lambda: lxc(uc, lxd1, "exec", name, "--", "docker", "info", check=False,
                    timeout=30).returncode == 0,
        timeout=120, interval=0.2, what="docker inside the machine container",
    )
    TIMES["docker ready"] = time.monotonic() - t_launch
    assert _exec(uc, lxd1, name, "docker", "info", "--format", "{{.Driver}}").strip() == "overlay2"
    images = _exec(uc, lxd1, name, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    assert {"overcloud/mariadb:1", "overcloud/wordpress:1", "overcloud/nginx:1"} <= set(
        images.split()
    ), images

    creds = StackSecrets.generate()
    env_path = tmp_path / "stack.env"
    env_path.write_text(env_file("wp", creds, Role.ALL, http_port=80))
    env_path.chmod(0o600)
    lxc(uc, lxd1, "file", "push", "-p", str(COMPOSE_FILE), f"{name}/srv/stack/compose.yml")
    lxc(uc, lxd1, "file", "push", "--mode", "0600", str(env_path), f"{name}/srv/stack/.env")
    _exec(uc, lxd1, name, "docker", "compose", "--project-directory", "/srv/stack",
          "up", "-d", "--wait", "--wait-timeout", "180", timeout=240)
    lxc(uc, lxd1, "config", "device", "add", name, "web", "proxy",
        f"listen=tcp:127.0.0.1:{port}", "connect=tcp:127.0.0.1:80")
    url = f"http://127.0.0.1:{port}/wp-admin/install.php"
    page = wait_until(lambda: _wordpress_page(url), timeout=120, interval=0.2,
                      what="the WordPress install page")
    TIMES["launch → WordPress page"] = time.monotonic() - t_launch
    assert "WordPress" in page and "Installation" in page, page[:500]
    assert creds.db_password not in page

    # no default password anywhere: the DB only takes the generated one
    denied = lxc(uc, lxd1, "exec", name, "--", "docker", "compose", "--project-directory",
                 "/srv/stack", "exec", "-T", "db", "mariadb", "-uwordpress", "-pwordpress",
                 "-e", "select 1", check=False)
    assert denied.returncode != 0

    # -- move the stopped container to the second host --------------------------------
    lxc(uc, lxd1, "stop", name, timeout=120)
    t0 = time.monotonic()
    lxc(uc, lxd1, "move", f"{lxd1.name}:{name}", f"{lxd2.name}:{name}", timeout=900)
    TIMES["lxc move (stopped) lxd1→lxd2"] = time.monotonic() - t0
    assert name not in _instances(uc, lxd1)
    assert name in _instances(uc, lxd2)
    t0 = time.monotonic()
    lxc(uc, lxd2, "start", name)
    page = wait_until(lambda: _wordpress_page(url), timeout=180, interval=0.2,
                      what="WordPress again after the move")
    TIMES["start on lxd2 → WordPress page"] = time.monotonic() - t0
    assert "Installation" in page

    # -- and back with pylxd (the orchestrator's driver), over the HTTPS remotes --------
    lxc(uc, lxd2, "stop", name, timeout=120)
    src, dst = client_for(uc, lxd2), client_for(uc, lxd1)
    assert src.trusted and dst.trusted
    t0 = time.monotonic()
    moved = src.instances.get(name).migrate(dst, wait=True)
    TIMES["pylxd migrate (stopped) lxd2→lxd1"] = time.monotonic() - t0
    assert moved.name == name
    assert name in _instances(uc, lxd1)
    # pylxd deletes the source without waiting for the operation
    wait_until(lambda: name not in _instances(uc, lxd2), timeout=60, interval=0.2,
               what="the source instance gone after the pylxd migration")

    # -- delete: nothing left on either host ------------------------------------------
    lxc(uc, lxd1, "delete", "--force", name)
    for host in (lxd1, lxd2):
        assert _instances(uc, host) == []
    wait_until(lambda: not port_open("127.0.0.1", port), timeout=10, what="proxy gone")


def test_services_down_leaves_no_lxd_state_problem(uc: Settings) -> None:
    """Stopping and starting the hosts again reuses their state (preseed is idempotent)."""
    manager.down(uc, ["lxd"])
    assert not any(api_answers(h) for h in uc.lxd_hosts)
    manager.up(uc, ["lxd"])
    for host in uc.lxd_hosts:
        out = subprocess.run(["ip", "-br", "addr", "show", host.bridge], capture_output=True,
                             text=True, check=True).stdout
        assert host.address in out


def _eth0_address(s: Settings, host: LxdHost, name: str) -> str | None:
    out = lxc(s, host, "list", name, "--format", "csv", "-c", "4").stdout
    for part in out.replace('"', "").replace("\n", ",").split(","):
        if part.strip().endswith("(eth0)"):
            return part.strip().split()[0]
    return None


def _wait_docker(s: Settings, host: LxdHost, name: str) -> None:
    def up() -> bool:
        return lxc(s, host, "exec", name, "--", "docker", "info", check=False,
                   timeout=30).returncode == 0

    wait_until(up, timeout=120, interval=0.2, what=f"docker in {name}")


def test_split_tiers_across_hosts(uc: Settings, tmp_path: Path) -> None:
    """DB node on lxd1, app+web node on lxd2, wired over the nodes' bridge addresses."""
    lxd1, lxd2 = uc.lxd_hosts
    ensure_images(uc)
    db_node, web_node, port = "ocsplitdb", "ocsplitweb", free_port()
    t0 = time.monotonic()
    try:
        lxc(uc, lxd1, "launch", NODE_ALIAS, db_node, "-c", "security.nesting=true")
        lxc(uc, lxd2, "launch", NODE_ALIAS, web_node, "-c", "security.nesting=true")
        db_ip = wait_until(lambda: _eth0_address(uc, lxd1, db_node), timeout=60,
                           what="the DB node's address")
        assert db_ip.startswith(uc.undercloud.subnet_prefix + ".1.")
        creds = StackSecrets.generate()
        for host, node, role in ((lxd1, db_node, Role.DB), (lxd2, web_node, Role.WEB)):
            env_path = tmp_path / f"{node}.env"
            env_path.write_text(env_file("wp", creds, role, db_host=db_ip, db_bind=db_ip))
            lxc(uc, host, "file", "push", "-p", str(COMPOSE_FILE), f"{node}/srv/stack/compose.yml")
            lxc(uc, host, "file", "push", "--mode", "0600", str(env_path), f"{node}/srv/stack/.env")
            _wait_docker(uc, host, node)
        _exec(uc, lxd1, db_node, "docker", "compose", "--project-directory", "/srv/stack",
              "up", "-d", "--wait", "--wait-timeout", "180", timeout=240)
        _exec(uc, lxd2, web_node, "docker", "compose", "--project-directory", "/srv/stack",
              "up", "-d", "--wait", "--wait-timeout", "180", timeout=240)
        web_services = _exec(uc, lxd2, web_node, "docker", "compose", "--project-directory",
                             "/srv/stack", "ps", "--services")
        assert set(web_services.split()) == {"wordpress", "nginx"}
        lxc(uc, lxd2, "config", "device", "add", web_node, "web", "proxy",
            f"listen=tcp:127.0.0.1:{port}", "connect=tcp:127.0.0.1:80")
        url = f"http://127.0.0.1:{port}/wp-admin/install.php"
        page = wait_until(lambda: _wordpress_page(url), timeout=120, interval=0.2,
                          what="WordPress on lxd2 with its DB on lxd1")
        TIMES["split 2 hosts: launch → WordPress page"] = time.monotonic() - t0
        assert "Installation" in page
    finally:
        lxc(uc, lxd1, "delete", "--force", db_node, check=False)
        lxc(uc, lxd2, "delete", "--force", web_node, check=False)
    assert _instances(uc, lxd1) == [] and _instances(uc, lxd2) == []
