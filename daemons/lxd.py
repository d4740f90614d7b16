"""Local LXD daemons, each one an UnderCloud host (`lxd1`, `lxd2`, … from the settings).

Every daemon has its own LXD_DIR (`<state>/lxd/<name>`), unix socket, bridge with an
explicit subnet, `dir` storage pool and HTTPS listener on a loopback port. We never run
`lxd init --auto`: its subnet detection pings addresses outside this machine; the preseed
below names every address. All `lxc` calls share one client directory (LXD_CONF,
`<state>/lxd/client`) so nothing is written into $HOME; its client certificate is trusted
by every daemon, and its remotes `<name>` point at the HTTPS listeners: that is what lets
`lxc move lxd1:c lxd2:c` (or a pylxd migration, which refuses unix-socket sources) work
between the hosts, exactly as it would between two machines.

The daemon runs with HTTPS_PROXY pointing at a closed loopback port: at start-up LXD fetches
instance types from images.linuxcontainers.org, and traffic may only go to 127.0.0.0/8 here
(and a registry is not reachable anyway). Loopback addresses are never proxied, so moves
between our hosts are unaffected.

Storage is a btrfs pool on a loop file by default: LXD unpacks an image once into a
subvolume and every launch is a snapshot of it (~2 s instead of ~20 s for the node image
with a `dir` pool). `lxd shutdown` unmounts it and frees the loop device.

A daemon killed with -9 (a machine's processes ended, a CI runner reaped) leaves its bridge
in the kernel; LXD then reads the preseed's network as an existing *unmanaged* interface and
fails ("Failed to update local member network … Network not found"). Before a start we delete
a bridge of ours that no live dnsmasq serves (`clear_stale_bridge`), and `release_state_dir`
unmounts and frees what a killed daemon left under its state dir (pool loop devices, tmpfs).

Stopping a host stops its instances first (`lxc stop --all --force`), then `lxd shutdown`:
SIGTERM alone leaves containers running. Only the pid we recorded is ever signalled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from daemons.process import Daemon
from lxdclient import LocalApi, api_answers, client_dir, lxc_env, remote_conf
from overcloud.errors import ServiceError
from overcloud.settings import LxdHost, Settings

NO_EGRESS_PROXY = "http://127.0.0.1:9"
"""A proxy nobody listens on: LXD's own outbound HTTPS (instance types) fails fast, locally."""


def preseed(host: LxdHost, storage_driver: str = "dir", storage_size: str = "") -> str:
    """The `lxd init --preseed` document: explicit subnet, no IPv6, `dir` pool, loopback HTTPS.

    Applying it again to an initialised daemon updates in place, so start-up is idempotent.
    """
    doc = {
        "config": {
            "core.https_address": f"127.0.0.1:{host.https_port}",
            "core.proxy_https": NO_EGRESS_PROXY,
            "core.proxy_http": NO_EGRESS_PROXY,
            "images.auto_update_interval": "0",
        },
        "networks": [
            {
                "name": host.bridge,
                "type": "bridge",
                "config": {
                    "ipv4.address": host.address,
                    "ipv4.nat": "true",
                    "ipv6.address": "none",
                },
            }
        ],
        "storage_pools": [
            {
                "name": "default",
                "driver": storage_driver,
                "config": {"size": storage_size} if storage_driver == "btrfs" else {},
            }
        ],
        "profiles": [
            {
                "name": "default",
                "devices": {
                    "eth0": {"name": "eth0", "network": host.bridge, "type": "nic"},
                    "root": {"path": "/", "pool": "default", "type": "disk"},
                },
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


KERNEL_LIMITS = {"kernel/keys/maxkeys": 2000, "kernel/keys/maxbytes": 2000000}
"""LXD's production settings for the per-user key quota. Every container started inside a
node (runc) takes a session keyring from the quota of the node's mapped root uid, shared by
all nodes of a host: with the kernel default of 200 keys, a few nodes running the stack hit
"unable to create session key: disk quota exceeded"."""


def raise_kernel_limits(limits: dict[str, int] = KERNEL_LIMITS) -> None:
    """Raise each limit to at least the given value (never lowers one)."""
    for key, want in limits.items():
        path = Path("/proc/sys") / key
        try:
            if int(path.read_text().split()[0]) < want:
                path.write_text(str(want))
        except (OSError, ValueError) as exc:
            raise ServiceError(f"cannot raise {key.replace('/', '.')} to {want}: {exc}") from None


def _links(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["ip", "-j", "-d", "link", "show", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    links: list[dict[str, Any]] = json.loads(proc.stdout)
    return links


def _dnsmasq_serving(bridge: str) -> int | None:
    """The pid of a running dnsmasq bound to `bridge` (an LXD daemon's DHCP for it), if any."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq") and f"--interface={bridge}".encode() in argv:
            return int(proc_dir.name)
    return None


def clear_stale_bridge(bridge: str) -> bool:
    """Delete `bridge` when a killed LXD daemon left it behind; True when one was deleted.

    Only a bridge that no live dnsmasq serves is ours to delete (a running LXD keeps one per
    managed bridge); anything else under that name is reported instead of touched.
    """
    links = _links("dev", bridge)
    if not links:
        return False
    kind = links[0].get("linkinfo", {}).get("info_kind")
    if kind != "bridge":
        raise ServiceError(
            f"an interface named {bridge} exists and is not a bridge ({kind or 'no kind'}); "
            "choose another undercloud bridge prefix"
        )
    pid = _dnsmasq_serving(bridge)
    if pid is not None:
        raise ServiceError(
            f"bridge {bridge} is served by another LXD daemon (dnsmasq pid {pid}); "
            "stop it or choose another undercloud bridge prefix"
        )
    proc = subprocess.run(["ip", "link", "delete", bridge], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise ServiceError(f"cannot delete the stale bridge {bridge}: {proc.stderr.strip()}")
    return True


def release_state_dir(state: Path) -> None:
    """Unmount what LXD daemons mounted under `state` and detach the loop files of their pools.

    For a state dir whose daemons are gone (stopped or killed): `lxd shutdown` does this
    itself, a killed daemon leaves tmpfs mounts and a loop device holding gigabytes.
    """
    root = str(state.resolve()) + "/"
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(root)), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    proc = subprocess.run(["losetup", "-J", "-l"], capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        for dev in json.loads(proc.stdout).get("loopdevices", []):
            if str(dev.get("back-file") or "").startswith(root):
                subprocess.run(["losetup", "-d", dev["name"]], capture_output=True, check=False)


@dataclass
class LxdHostService:
    """One LXD daemon: start it, apply the preseed, stop it with its instances."""

    settings: Settings
    host: LxdHost

    @property
    def daemon(self) -> Daemon:
        h = self.host
        return Daemon(
            name=f"lxd-{h.name}",
            argv=[
                shutil.which("lxd") or "/usr/bin/lxd",
                "--group", "root",
                "--logfile", str(h.lxd_dir / "lxd.log"),
            ],
            state_dir=self.settings.state_dir,
            ready=lambda: api_answers(h),
            address=h.https_url,
            port=("127.0.0.1", h.https_port),
            env={
                "LXD_DIR": str(h.lxd_dir),
                "LXD_CONF": str(client_dir(self.settings)),
                "HTTPS_PROXY": NO_EGRESS_PROXY,
                "HTTP_PROXY": NO_EGRESS_PROXY,
                "NO_PROXY": "127.0.0.1,localhost,::1",
            },
            start_timeout=60,
            prepare=self._prepare,
        )

    def _prepare(self) -> None:
        h = self.host
        raise_kernel_limits()
        h.lxd_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(h.lxd_dir, 0o711)
        if api_answers(h):
            raise ServiceError(
                f"{h.name}: an LXD daemon we have no pid for already serves {h.socket}; "
                "stop it (lxd shutdown with that LXD_DIR) and retry"
            )
        clear_stale_bridge(h.bridge)

    def start(self) -> int:
        pid = self.daemon.start()
        proc = subprocess.run(
            ["lxd", "init", "--preseed"],
            input=preseed(
                self.host, self.settings.undercloud.storage_driver,
                self.settings.undercloud.storage_size,
            ),
            env=lxc_env(self.settings, self.host),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"{self.host.name}: lxd init --preseed failed: {proc.stderr.strip()}"
            )
        return pid

    def stop(self) -> bool:
        d = self.daemon
        if d.pid() is None:
            return False
        env = lxc_env(self.settings, self.host)
        if api_answers(self.host):
            subprocess.run(
                ["lxc", "stop", "--all", "--force"],
                env=env, capture_output=True, timeout=120, check=False,
            )
            subprocess.run(
                ["lxd", "shutdown", "--timeout", "60"],
                env=env, capture_output=True, timeout=90, check=False,
            )
        d.stop(timeout=30)  # normally gone already; SIGTERM/SIGKILL only our own pid if not
        return True


def _fingerprint(cert_pem: bytes) -> str:
    body = b"".join(
        ln for ln in cert_pem.splitlines() if ln and not ln.startswith(b"-----")
    )
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def ensure_client(s: Settings) -> Path:
    """Client certificate, trusted by every running host, and remotes `<name>` over HTTPS.

    Safe to repeat: the certificate is made once, trust is added only when missing, and the
    remotes file is rewritten from the settings every time.
    """
    conf = client_dir(s)
    conf.mkdir(parents=True, exist_ok=True)
    os.chmod(conf, 0o700)
    crt, key = conf / "client.crt", conf / "client.key"
    u = s.undercloud
    if u.client_cert and not crt.exists():  # a given identity instead of a generated one
        shutil.copyfile(u.client_cert, crt)
        shutil.copyfile(u.client_key, key)
        os.chmod(key, 0o600)
    if not (crt.exists() and key.exists()):
        proc = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
             "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "3650",
             "-subj", "/CN=overcloud"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"cannot make the LXD client certificate: {proc.stderr.strip()}")
        os.chmod(key, 0o600)
    pem = crt.read_bytes()
    fp = _fingerprint(pem)
    (conf / "servercerts").mkdir(exist_ok=True)
    remotes: dict[str, dict[str, Any]] = {
        "local": {"addr": "unix://", "public": False},
    }
    for host in s.lxd_hosts:
        if host.remote:
            if not api_answers(host):
                raise ServiceError(
                    f"remote host {host.name} ({host.url}) does not answer or does not trust "
                    f"our client certificate; on it run: lxc config trust add {crt}"
                )
            remote_conf(s, host)
            assert host.tls is not None
            shutil.copyfile(host.tls[2], conf / "servercerts" / f"{host.name}.crt")
            remotes[host.name] = {"addr": host.url, "protocol": "lxd", "auth_type": "tls",
                                  "public": False}
            continue
        with LocalApi(host) as api:
            trusted = {c["fingerprint"] for c in api.get("/1.0/certificates?recursion=1")}
            if fp not in trusted:
                body = "".join(
                    ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")
                )
                api.post("/1.0/certificates", {"type": "client", "name": "overcloud",
                                               "certificate": body})
        shutil.copyfile(host.lxd_dir / "server.crt", conf / "servercerts" / f"{host.name}.crt")
        remotes[host.name] = {"addr": host.https_url, "protocol": "lxd", "auth_type": "tls",
                              "public": False}
    config = {"default-remote": "local", "remotes": remotes, "aliases": {}}
    (conf / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return conf


@dataclass
class LxdHosts:
    """All local LXD hosts as one supervised service (`overcloud services up lxd`)."""

    settings: Settings

    @property
    def members(self) -> list[LxdHostService]:
        return [LxdHostService(self.settings, h) for h in self.settings.local_lxd_hosts]

    @property
    def address(self) -> str:
        return ", ".join(f"{h.name} {h.https_url} ({h.address})"
                         for h in self.settings.local_lxd_hosts)

    @property
    def log_file(self) -> Path:
        return self.members[0].daemon.log_file

    def pid(self) -> int | None:
        pids = [m.daemon.pid() for m in self.members]
        return pids[0] if all(pids) else None

    def ready(self) -> bool:
        return all(api_answers(h) for h in self.settings.local_lxd_hosts)

    def start(self) -> int:
        pids = [m.start() for m in self.members]
        ensure_client(self.settings)
        return pids[0]

    def stop(self) -> bool:
        stopped = [m.stop() for m in reversed(self.members)]
        return any(stopped)


def lxd_service(s: Settings) -> LxdHosts:
    return LxdHosts(s)

