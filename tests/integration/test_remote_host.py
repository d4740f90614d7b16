"""A remote UnderCloud host: an LXD daemon reached only over HTTPS, with our client
certificate and its pinned server certificate — no unix socket, no LXD_DIR.

The session's second LXD daemon plays the remote machine: this test's settings name only
`lxd1` as a local host and reach the other daemon as the remote `far` through its HTTPS
listener (on loopback here; on another machine only the URL would differ). A 2-node
OverCloud spreads over `lxd1` and `far`, serves, reports samples from both, and is deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from pylxd.exceptions import ClientConnectionFailed

from orchestrator.drivers.lxd import client_for
from orchestrator.hosts import LxdDriver, drivers
from overcloud.errors import ServiceError, TemporaryError
from overcloud.services.lxd import LocalApi, api_answers
from overcloud.settings import LxdHost, Settings
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: 2, cpu: 1, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


@pytest.fixture
def far(uc: Env, tmp_path: Path) -> Env:
    second = next(h for h in uc.settings().lxd_hosts if h.name == "lxd2")
    pins = tmp_path / "pins"
    pins.mkdir()
    shutil.copyfile(second.lxd_dir / "server.crt", pins / "far.crt")
    return Env(uc, OVERCLOUD_UNDERCLOUD_HOSTS="lxd1",
               OVERCLOUD_UNDERCLOUD_REMOTES=f"far={second.https_url}",
               OVERCLOUD_UNDERCLOUD_REMOTE_CERTS=str(pins))


def test_remote_host_is_reached_over_https_only(far: Env, tmp_path: Path) -> None:
    s = far.settings()
    remote = next(h for h in s.lxd_hosts if h.name == "far")
    assert remote.remote and not (s.state_dir / "lxd" / "far").exists()
    assert api_answers(remote)
    with LocalApi(remote) as api:
        assert api.get("/1.0")["auth"] == "trusted"

    # the two other ways we reach a host: the `lxc` client (LxdDriver) and pylxd
    assert _lxc_answers(s, remote) and _pylxd_answers(s, remote)

    # a wrong pin (the other daemon's certificate) is refused on every path, not trusted on
    # first use: the REST client, `lxc`, pylxd
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copyfile(s.lxd_hosts[0].lxd_dir / "server.crt", wrong / "far.crt")
    bad = Env(far, OVERCLOUD_UNDERCLOUD_REMOTE_CERTS=str(wrong)).settings()
    bad_far = next(h for h in bad.lxd_hosts if h.name == "far")
    assert not api_answers(bad_far)
    assert not _lxc_answers(bad, bad_far), "lxc used a pin it copied earlier"
    assert not _pylxd_answers(bad, bad_far)

    # a pin changed in place takes effect at the next call, both ways
    pin = Path(far["OVERCLOUD_UNDERCLOUD_REMOTE_CERTS"]) / "far.crt"
    right = pin.read_bytes()
    shutil.copyfile(wrong / "far.crt", pin)
    assert not api_answers(remote)
    assert not _lxc_answers(s, remote), "lxc kept trusting the certificate pinned before"
    assert not _pylxd_answers(s, remote)
    pin.write_bytes(right)
    assert api_answers(remote) and _lxc_answers(s, remote) and _pylxd_answers(s, remote)

    # a malformed remote is a one-line settings error
    out = run_cli(["list"], Env(far, OVERCLOUD_UNDERCLOUD_REMOTES="far=http://x"))
    assert out.returncode == 1 and "undercloud.remotes" in out.stderr
    assert "Traceback" not in out.stderr


def _lxc_answers(s: Settings, host: LxdHost) -> bool:
    """`lxc list` on the host succeeds (what every LxdDriver call runs)."""
    try:
        LxdDriver(s, host).instances()
    except TemporaryError:
        return False
    return True


def _pylxd_answers(s: Settings, host: LxdHost) -> bool:
    """A pylxd client (migrations) connects and is trusted."""
    try:
        return bool(client_for(s, host).trusted)
    except (ClientConnectionFailed, ServiceError):
        return False


def test_overcloud_spreads_over_a_local_and_a_remote_host(far: Env, tmp_path: Path) -> None:
    lake = Background(["devlake", "run"], far, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], far, tmp_path / "orchestrator.log").start()
    name, port = "e2e-far", free_port()
    req = tmp_path / f"{name}.yaml"
    req.write_text(REQUEST.format(name=name, port=port))
    hosts = drivers(far.settings())
    try:
        out = run_cli(["request", "apply", str(req), "--wait"], far, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        assert sorted(len(d.instances(name)) for d in hosts.values()) == [1, 1]
        assert len(hosts["far"].networks(name)) == 1
        r = httpx.get(f"http://127.0.0.1:{port}/wp-admin/install.php", timeout=10)
        assert r.status_code == 200 and "WordPress" in r.text
        shown = run_cli(["show", name], far, check=True).stdout
        assert "far" in shown and "lxd1" in shown

        def samples() -> bool:
            res = run_cli(["metrics", "query",
                           "SELECT count(cpu_time_ns) FROM resource_instance GROUP BY host",
                           "--overcloud", name], far)
            return res.returncode == 0 and "far" in res.stdout and "lxd1" in res.stdout

        wait_until(samples, timeout=90, interval=0.5, what="samples from both hosts")

        gone = run_cli(["delete", name, "--wait"], far, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert all(not d.instances(name) and not d.networks(name) for d in hosts.values())
    finally:
        orch.stop()
        lake.stop()
