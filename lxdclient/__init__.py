"""The LXD client side: how our code talks to an UnderCloud host's LXD, local or remote.

`lxc` command lines with a client directory of ours (never $HOME), the REST API over the
unix socket or over HTTPS with the server certificate pinned, and a cheap "does it answer"
probe. Used by the orchestrator's host driver, the collectors and the daemon manager
(`daemons.lxd`), which is why it is a package of its own below all of them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from overcloud.errors import ServiceError
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


API_ANSWER_TIMEOUT = (5.0, 10.0)
"""(local, remote) seconds an API call may take before its host counts as not answering. A
dead local daemon is refused at once (no socket listener), so this only bounds a live, slow
one: on our 2-core machines under a heavy load, `GET /1.0` took over 1 s, and a 1 s limit
made placement drop a healthy host as unreachable."""


def api_answers(host: LxdHost) -> bool:
    """The host's API answers, and (remote) trusts our client certificate."""
    if not host.remote and not host.socket.exists():
        return False
    try:
        with LocalApi(host, timeout=API_ANSWER_TIMEOUT[1 if host.remote else 0]) as api:
            info = api.get("/1.0")
    except (httpx.HTTPError, ServiceError, OSError, ValueError, ssl.SSLError):
        return False
    return bool(info.get("api_version")) and info.get("auth", "trusted") == "trusted"
