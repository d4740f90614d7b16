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

Stopping a host stops its instances first (`lxc stop --all --force`), then `lxd shutdown`:
SIGTERM alone leaves containers running. Only the pid we recorded is ever signalled.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from overcloud.errors import ServiceError
from overcloud.services.process import Daemon
from overcloud.settings import LxdHost, Settings


def client_dir(s: Settings) -> Path:
    """LXD_CONF shared by every `lxc` call we make: client certificate and remotes."""
    return s.state_dir / "lxd" / "client"


def lxc_env(s: Settings, host: LxdHost) -> dict[str, str]:
    """Environment for `lxc`/`lxd` commands aimed at `host`.

    A local host is the `local:` remote (its socket, via LXD_DIR). A remote host gets a client
    directory of its own whose *default* remote is that host, so the same `lxc` command lines
    (`launch IMAGE NAME`, `exec NAME`, `file push F NAME/path`) act on it unchanged.
    """
    conf = remote_conf(s, host) if host.remote else client_dir(s)
    return {**os.environ, "LXD_DIR": str(host.lxd_dir), "LXD_CONF": str(conf)}


def remote_conf(s: Settings, host: LxdHost) -> Path:
    """The `lxc` client directory for a remote host: our client identity, its pinned server
    certificate, and a config whose default remote is it.

    Made from what the settings (or the inventory) name *now*, at every call: the directory
    is `<state>/lxd/client-<name>/<digest>`, the digest of the URL and of the three files'
    contents, so a changed pin takes effect at the next `lxc` call instead of the first copy
    being trusted forever. It is written into a temporary directory and renamed into place
    (parallel callers never see half of one); directories of pins no longer in force are
    removed. Cheap when nothing changed: three small reads and a hash.
    """
    assert host.tls is not None
    crt, key, pinned = host.tls
    contents = []
    for path, what in ((crt, "client certificate"), (key, "client key"),
                       (pinned, "pinned server certificate")):
        try:
            contents.append(path.read_bytes())
        except OSError:
            raise ServiceError(f"remote host {host.name}: no {what} at {path}") from None
    digest = hashlib.sha256(b"\0".join([host.url.encode(), *contents])).hexdigest()[:16]
    base = s.state_dir / "lxd" / f"client-{host.name}"
    conf = base / digest
    if (conf / "config.yml").is_file():
        return conf
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
    (tmp / "servercerts").mkdir()
    for name, data in (("client.crt", contents[0]), ("client.key", contents[1]),
                       (f"servercerts/{host.name}.crt", contents[2])):
        (tmp / name).write_bytes(data)
    os.chmod(tmp / "client.key", 0o600)
    doc = {"default-remote": host.name, "aliases": {}, "remotes": {
        host.name: {"addr": host.url, "protocol": "lxd", "auth_type": "tls", "public": False},
    }}
    (tmp / "config.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        tmp.rename(conf)
    except OSError:  # another caller made the same one first
        shutil.rmtree(tmp, ignore_errors=True)
    for old in base.iterdir():  # earlier pins, and the flat layout of older versions
        if old.name != digest and not old.name.startswith(".new-"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return conf


def lxc(
    s: Settings,
    host: LxdHost,
    *args: str,
    timeout: float = 600,
    check: bool = True,
    stdin: Any = None,
) -> subprocess.CompletedProcess[str]:
    """Run `lxc ARGS` against `host`; raises `ServiceError` with lxc's own message on failure."""
    proc = subprocess.run(
        ["lxc", *args],
        env=lxc_env(s, host),
        capture_output=True,
        text=stdin is None,
        stdin=stdin,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout if isinstance(proc.stdout, str) else proc.stdout.decode(errors="replace")
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise ServiceError(f"{host.name}: lxc {' '.join(args[:3])} failed: {err.strip()[-400:]}")
    return result


class LocalApi:
    """The LXD REST API of one host: a local one over its unix socket (no certificate needed),
    a remote one over HTTPS with our client certificate, its server certificate pinned."""

    def __init__(self, host: LxdHost, timeout: float = 30.0) -> None:
        self.host = host
        if host.remote:
            assert host.tls is not None
            ctx = _pinned(host.tls[2])
            ctx.load_cert_chain(host.tls[0], host.tls[1])
            self._client = httpx.Client(base_url=host.url.rstrip("/"), timeout=timeout,
                                        verify=ctx)
        else:
            self._client = httpx.Client(
                transport=httpx.HTTPTransport(uds=str(host.socket)),
                base_url="http://lxd",
                timeout=timeout,
            )

    def __enter__(self) -> LocalApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, path: str) -> Any:
        r = self._client.get(path)
        if r.status_code >= 400:
            raise ServiceError(f"{self.host.name}: GET {path}: {r.text[:300]}")
        return r.json()["metadata"]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self._client.post(path, json=body)
        if r.status_code >= 400:
            raise ServiceError(f"{self.host.name}: POST {path}: {r.text[:300]}")
        return r.json().get("metadata")


def _pinned(server_cert: Path) -> ssl.SSLContext:
    """Trust exactly this self-signed server certificate (LXD's are not issued for a name)."""
    ctx = ssl.create_default_context(cafile=str(server_cert))
    ctx.check_hostname = False  # the pin is the certificate itself, whatever name it carries
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx


def api_answers(host: LxdHost) -> bool:
    """The host's API answers, and (remote) trusts our client certificate."""
    if not host.remote and not host.socket.exists():
        return False
    try:
        with LocalApi(host, timeout=1.0 if not host.remote else 3.0) as api:
            info = api.get("/1.0")
    except (httpx.HTTPError, ServiceError, OSError, ValueError, ssl.SSLError):
        return False
    return bool(info.get("api_version")) and info.get("auth", "trusted") == "trusted"


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

