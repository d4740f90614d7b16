"""The UnderCloud inventory: hosts grouped into sites, what operators changed, and live load.

Why a store of its own: the settings say which LXD daemons exist when the system starts, but
operators change the UnderCloud while it runs — they add HTTPS remotes (`undercloud add`),
OpenStack sites (`undercloud add-site`), labels and capacity overrides, and drain hosts.
Those changes must survive restarts and be seen by every process (CLI, orchestrator), so
they live in SQLite under `<state_dir>/orchestrator/inventory.sqlite`. Hosts from the
settings belong to site `local` unless an operator moved them.

Three sources make one host's picture, kept apart on purpose:
- the records here (site, labels, capacity override, the operator's drain flag),
- what is observed now (is its API reachable; what OverCloud nodes the registry put there),
- its load from the DevLake (`resource_undercloud`, mean over a recent window).
`host_views` joins them into `placement.HostView`s (pure); `snapshot` gathers them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from orchestrator.placement import HostState, HostView, Plan
from overcloud import influxql
from overcloud.errors import TemporaryError, UserError
from overcloud.influxql import QL, compose
from overcloud.problems import echo
from overcloud.settings import LxdHost, Settings

if TYPE_CHECKING:
    from orchestrator.registry import Registry
    from orchestrator.request import OverCloudRequest

LOCAL_SITE = "local"
# used with fullmatch: `$` also matches before a trailing newline ("lxd3\n" was a host name)
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
URL_RE = re.compile(r"https://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}/?")
LABEL_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._/-]{0,62})=([A-Za-z0-9._-]{0,63})")
LOAD_WINDOW = "5m"
"""How far back the DevLake load is averaged: long enough to smooth a spike, short enough
to follow a host that got busy."""

SiteKind = Literal["lxd", "openstack"]


class HostNotFound(UserError, LookupError):
    """No UnderCloud host by that name."""


@dataclass(frozen=True)
class SiteRecord:
    name: str
    kind: SiteKind = "lxd"
    cloud: str = ""
    """For an OpenStack site: the `clouds.yaml` entry its driver connects with."""


@dataclass(frozen=True)
class HostRecord:
    """One UnderCloud host as configured (settings) or added (`undercloud add`)."""

    name: str
    site: str = LOCAL_SITE
    kind: Literal["local", "remote"] = "local"
    url: str = ""
    server_cert: Path | None = None
    """Pinned server certificate of an added remote (a copy in the state directory)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    """Capacity override (cores); None: what the DevLake reports, else the settings."""
    memory: int | None = None
    draining: bool = False
    """Set by an operator (`undercloud drain`): no new node is placed here."""
    added: bool = False
    """True for hosts added with `undercloud add`; False for hosts from the settings."""
    pool: int | None = None
    """Ready nodes the warm pool keeps on this host (`undercloud set --pool`); None: 0."""


@dataclass(frozen=True)
class HostLoad:
    """Mean of `resource_undercloud` over the window (None where the field had no data)."""

    cpu_percent: float | None = None
    cpu_cores_used: float | None = None
    mem_percent: float | None = None
    mem_usage: float | None = None
    net_bytes_per_s: float | None = None
    instances: int | None = None
    capacity_cpus: float | None = None
    capacity_memory: int | None = None


@dataclass(frozen=True)
class Allocation:
    """What our OverCloud nodes hold on one host (their LXD limits)."""

    cpu: float = 0.0
    memory: int = 0
    nodes: tuple[str, ...] = ()


class QueryApi(Protocol):
    def query(self, q: str, database: str = "", *, post: bool = False) -> list[dict[str, Any]]: ...


# --- parsing operator input -------------------------------------------------------------------


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """`["zone=a", "ssd=true"]` → dict; raises `UserError` naming the bad item."""
    out: dict[str, str] = {}
    for item in items:
        m = LABEL_RE.fullmatch(item.strip())
        if not m:
            raise UserError(f"bad label {item!r}: write key=value (letters, digits, '.', '_', "
                            "'-'; the key may contain '/')")
        out[m.group(1)] = m.group(2)
    return out


def parse_memory(text: str) -> int:
    """`8GiB`, `512MiB` or a number of bytes; raises `UserError`."""
    from orchestrator.request import memory_bytes

    t = text.strip()
    if re.fullmatch(r"[0-9]{1,18}", t):  # not "٣", nor 5000 digits int() cannot read
        return int(t)
    try:
        return memory_bytes(t)
    except ValueError:
        raise UserError(f"bad memory size {echo(text)}: write e.g. 8GiB or 512MiB") from None


MAX_CPUS = 4096
MAX_POOL = 16


def check_cpus(cpus: float) -> float:
    """A host's declared cores: a finite number in (0, 4096]; raises `UserError` (NaN compares
    false with everything, so `cpus <= 0` alone lets it through, and inf is no capacity)."""
    if not math.isfinite(cpus) or not 0 < cpus <= MAX_CPUS:
        raise UserError(f"--cpus must be a number of cores in (0, {MAX_CPUS}], got {cpus!r}")
    return cpus


def _check_name(name: str, what: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise UserError(f"bad {what} name {name!r}: lowercase letters, digits and '-', starting "
                        "with a letter, at most 31 characters")


# --- the store ---------------------------------------------------------------------------------


def inventory_path(settings: Settings) -> Path:
    return settings.state_dir / "orchestrator" / "inventory.sqlite"


class Inventory:
    """Hosts and sites: the settings' hosts plus what operators added or changed."""

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self.certs_dir = settings.state_dir / "orchestrator" / "certs"
        path = inventory_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS sites (
              name TEXT PRIMARY KEY, kind TEXT NOT NULL, cloud TEXT NOT NULL DEFAULT '');
            CREATE TABLE IF NOT EXISTS hosts (
              name TEXT PRIMARY KEY, added INTEGER NOT NULL, site TEXT,
              url TEXT NOT NULL DEFAULT '', cert TEXT NOT NULL DEFAULT '',
              labels TEXT NOT NULL DEFAULT '{}', cpus REAL, memory INTEGER,
              draining INTEGER NOT NULL DEFAULT 0, changed REAL NOT NULL);
            """
        )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(hosts)")}
        if "pool" not in columns:  # an inventory from before the warm pool
            with contextlib.suppress(sqlite3.OperationalError):  # another process was first
                self._db.execute("ALTER TABLE hosts ADD COLUMN pool INTEGER")

    def close(self) -> None:
        self._db.close()

    # --- reading ----------------------------------------------------------------------------

    def _configured(self) -> list[LxdHost]:
        return list(self._s.lxd_hosts)

    def _rows(self) -> dict[str, tuple[Any, ...]]:
        with self._lock:
            return {r[0]: r for r in self._db.execute(
                "SELECT name, added, site, url, cert, labels, cpus, memory, draining, pool"
                " FROM hosts")}

    def hosts(self) -> list[HostRecord]:
        """Every host: the settings' ones (with operator changes), then the added ones."""
        rows = self._rows()
        out = []
        for h in self._configured():
            r = rows.get(h.name)
            out.append(HostRecord(
                name=h.name, site=(r[2] if r and r[2] else LOCAL_SITE),
                kind="remote" if h.remote else "local", url=h.url,
                server_cert=h.tls[2] if h.tls else None,
                labels=json.loads(r[5]) if r else {}, cpus=r[6] if r else None,
                memory=r[7] if r else None, draining=bool(r[8]) if r else False,
                pool=r[9] if r else None))
        configured = {h.name for h in out}
        for name in sorted(rows):
            r = rows[name]
            if r[1] and name not in configured:
                out.append(HostRecord(name=name, site=r[2] or LOCAL_SITE, kind="remote", url=r[3],
                                      server_cert=Path(r[4]), labels=json.loads(r[5]),
                                      cpus=r[6], memory=r[7], draining=bool(r[8]), added=True,
                                      pool=r[9]))
        return out

    def host(self, name: str) -> HostRecord:
        for h in self.hosts():
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts()) or "none"
        raise HostNotFound(f"no UnderCloud host named {name!r} (known: {known}; see: overcloud "
                           "undercloud list)")

    def sites(self) -> list[SiteRecord]:
        """Every site: `local`, those of the hosts, and those added with `add-site`."""
        with self._lock:
            recorded = {r[0]: SiteRecord(r[0], r[1], r[2]) for r in self._db.execute(
                "SELECT name, kind, cloud FROM sites")}
        names = {LOCAL_SITE, *(h.site for h in self.hosts()), *recorded}
        return [recorded.get(n, SiteRecord(n)) for n in sorted(names)]

    def lxd_hosts(self) -> list[LxdHost]:
        """The added HTTPS remotes as `LxdHost`s, built like the settings build remotes."""
        u = self._s.undercloud
        client = self._s.state_dir / "lxd" / "client"
        crt = Path(u.client_cert) if u.client_cert else client / "client.crt"
        key = Path(u.client_key) if u.client_key else client / "client.key"
        start = len(self._s.lxd_hosts) + 1
        return [
            LxdHost(name=h.name, index=i, lxd_dir=self._s.state_dir / "lxd" / h.name, bridge="",
                    address="", https_port=0, url=h.url,
                    tls=(crt, key, h.server_cert or self.certs_dir / f"{h.name}.crt"))
            for i, h in enumerate((h for h in self.hosts() if h.added), start=start)
        ]

    # --- operator changes -----------------------------------------------------------------------

    def add_remote(self, name: str, url: str, server_cert: Path, *, site: str = LOCAL_SITE,
                   labels: Mapping[str, str] | None = None, cpus: float | None = None,
                   memory: int | None = None) -> HostRecord:
        """Record an HTTPS LXD remote; its pinned certificate is copied into the state dir."""
        _check_name(name, "host")
        _check_name(site, "site")
        if not URL_RE.fullmatch(url):
            raise UserError(f"bad URL {url!r}: an LXD remote is https://address:port (HTTPS only, "
                            "explicit port), e.g. https://198.51.100.7:8443")
        if cpus is not None:
            check_cpus(cpus)
        if memory is not None and memory <= 0:
            raise UserError("--memory must be > 0")
        if any(h.name == name for h in self.hosts()):
            raise UserError(f"an UnderCloud host named {name!r} already exists")
        if any(s.name == site and s.kind == "openstack" for s in self.sites()):
            raise UserError(f"site {site!r} is an OpenStack site: its nodes are OpenStack VMs, "
                            "not LXD remotes; pick another --site")
        pem = _read_certificate(server_cert)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        copy = self.certs_dir / f"{name}.crt"
        tmp = copy.with_suffix(".tmp")
        tmp.write_bytes(pem)
        tmp.replace(copy)
        with self._lock:
            self._db.execute(
                "INSERT INTO hosts (name, added, site, url, cert, labels, cpus, memory, changed)"
                " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
                (name, site, url.rstrip("/"), str(copy), json.dumps(dict(labels or {})), cpus,
                 memory, time.time()))
        return self.host(name)

    def update(self, name: str, *, site: str | None = None, labels: Mapping[str, str] | None = None,
               cpus: float | None = None, memory: int | None = None,
               pool: int | None = None) -> HostRecord:
        """Change a host's site, add/replace labels, override its capacity, or set how many
        ready nodes the warm pool keeps on it."""
        if cpus is not None:
            check_cpus(cpus)
        if pool is not None and not 0 <= pool <= MAX_POOL:
            raise UserError(f"--pool must be 0..{MAX_POOL} (ready nodes kept on the host)")
        cur = self.host(name)
        if site is not None:
            _check_name(site, "site")
        merged = {**cur.labels, **(labels or {})}
        self._upsert(cur, site=site or cur.site, labels=merged,
                     cpus=cpus if cpus is not None else cur.cpus,
                     memory=memory if memory is not None else cur.memory,
                     pool=pool if pool is not None else cur.pool)
        return self.host(name)

    def clear_capacity(self, name: str) -> HostRecord:
        """Drop a host's capacity override: it counts with the settings' size again."""
        cur = self.host(name)
        self._upsert(cur)  # the row exists (a configured host may have none yet)
        with self._lock:
            self._db.execute("UPDATE hosts SET cpus = NULL, memory = NULL, changed = ? "
                             "WHERE name = ?", (time.time(), name))
        return self.host(name)

    def set_draining(self, host: str, draining: bool) -> HostRecord:
        """Mark a host unschedulable (or schedulable again). Idempotent; unknown host: error."""
        cur = self.host(host)
        self._upsert(cur, draining=draining)
        return self.host(host)

    def _upsert(self, cur: HostRecord, *, site: str | None = None,
                labels: Mapping[str, str] | None = None, cpus: float | None = None,
                memory: int | None = None, draining: bool | None = None,
                pool: int | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO hosts (name, added, site, labels, cpus, memory, draining, changed,"
                " pool) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                " site = excluded.site, labels = excluded.labels, cpus = excluded.cpus,"
                " memory = excluded.memory, draining = excluded.draining,"
                " changed = excluded.changed, pool = excluded.pool",
                (cur.name, site or cur.site, json.dumps(dict(labels if labels is not None
                                                             else cur.labels)),
                 cpus if cpus is not None else cur.cpus,
                 memory if memory is not None else cur.memory,
                 int(cur.draining if draining is None else draining), time.time(),
                 pool if pool is not None else cur.pool))

    def remove(self, name: str, nodes_on_host: Sequence[str]) -> None:
        """Forget an added host; refused while OverCloud nodes are on it or it is configured."""
        cur = self.host(name)
        if not cur.added:
            raise UserError(f"{name} comes from the settings (undercloud.hosts / undercloud."
                            "remotes): remove it there; `undercloud drain` keeps new nodes off it")
        if nodes_on_host:
            shown = ", ".join(sorted(nodes_on_host)[:5]) + (" …" if len(nodes_on_host) > 5 else "")
            raise UserError(f"{name} still holds {len(nodes_on_host)} OverCloud node"
                            f"{'s' * (len(nodes_on_host) != 1)} ({shown}): move or delete them "
                            f"first (drain it: overcloud undercloud drain {name})")
        with self._lock:
            self._db.execute("DELETE FROM hosts WHERE name = ?", (name,))
        if cur.server_cert is not None and cur.server_cert.parent == self.certs_dir:
            cur.server_cert.unlink(missing_ok=True)
        # the lxc client directory derived from the old certificate (services/lxd.remote_conf)
        shutil.rmtree(self._s.state_dir / "lxd" / f"client-{name}", ignore_errors=True)

    def add_site(self, name: str, *, openstack_cloud: str = "") -> SiteRecord:
        """Record a site; with `openstack_cloud` an OpenStack one (a clouds.yaml entry name)."""
        _check_name(name, "site")
        if openstack_cloud and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", openstack_cloud):
            raise UserError(f"bad clouds.yaml entry name {openstack_cloud!r}")
        existing = {s.name: s for s in self.sites()}
        if name in existing:
            raise UserError(f"a site named {name!r} already exists ({existing[name].kind})")
        kind: SiteKind = "openstack" if openstack_cloud else "lxd"
        with self._lock:
            self._db.execute("INSERT INTO sites (name, kind, cloud) VALUES (?, ?, ?)",
                             (name, kind, openstack_cloud))
        return SiteRecord(name, kind, openstack_cloud)

    def remove_site(self, name: str) -> None:
        if name == LOCAL_SITE:
            raise UserError("the local site cannot be removed")
        if name not in {s.name for s in self.sites()}:
            raise UserError(f"no site named {name!r}")
        on = [h.name for h in self.hosts() if h.site == name]
        if on:
            raise UserError(f"site {name} still has hosts: {', '.join(on)}")
        with self._lock:
            self._db.execute("DELETE FROM sites WHERE name = ?", (name,))


def added_lxd_hosts(settings: Settings) -> list[LxdHost]:
    """The remotes added with `undercloud add` (none when no inventory exists yet)."""
    if not inventory_path(settings).exists():
        return []
    inv = Inventory(settings)
    try:
        return inv.lxd_hosts()
    finally:
        inv.close()


def _read_certificate(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"server certificate {path} does not exist (copy the remote's "
                        "/var/lib/lxd/server.crt here)") from None
    except IsADirectoryError:
        raise UserError(f"server certificate {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise UserError(f"cannot read server certificate {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UserError(f"{path} is not a PEM certificate (no BEGIN CERTIFICATE block)")
    return data


# --- observed state ----------------------------------------------------------------------------


def load_query(window: str = LOAD_WINDOW) -> QL:
    """The InfluxQL of `read_load` (`window`: an InfluxQL duration, ValueError otherwise)."""
    return compose(
        'SELECT mean("cpu_percent") AS cpu_percent, mean("cpu_cores_used") AS cpu_cores_used, '
        'mean("mem_percent") AS mem_percent, mean("mem_usage") AS mem_usage, '
        'mean("net_bytes_per_s") AS net_bytes_per_s, last("instances") AS instances, '
        'last("capacity_cpus") AS capacity_cpus, last("capacity_memory") AS capacity_memory '
        'FROM "resource_undercloud" WHERE time > now() - {} GROUP BY "host"',
        influxql.duration(window))


def read_load(ql: QueryApi, database: str, window: str = LOAD_WINDOW) -> dict[str, HostLoad]:
    """Per host: the mean of `resource_undercloud` over the last `window` (InfluxQL)."""
    out: dict[str, HostLoad] = {}
    for s in ql.query(load_query(window), database):
        host = (s.get("tags") or {}).get("host")
        rows = s.get("values") or []
        if not host or not rows:
            continue
        v = dict(zip(s.get("columns") or [], rows[0], strict=False))

        def num(key: str, row: dict[str, Any] = v) -> float | None:
            x = row.get(key)
            return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None

        inst, mem_cap = num("instances"), num("capacity_memory")
        out[host] = HostLoad(num("cpu_percent"), num("cpu_cores_used"), num("mem_percent"),
                             num("mem_usage"), num("net_bytes_per_s"),
                             None if inst is None else int(inst), num("capacity_cpus"),
                             None if mem_cap is None else int(mem_cap))
    return out


def latest_undercloud(settings: Settings) -> dict[str, tuple[float, float]]:
    """Per host: (CPU cores used, CPU capacity) of its latest `resource_undercloud` sample of
    the last minute — the units the overload rule measured in. {} when the DevLake is down."""
    from devlake.sinks import InfluxQL
    from overcloud.errors import PermanentError

    q = QL('SELECT last("cpu_cores_used") AS used, last("capacity_cpus") AS cap '
           'FROM "resource_undercloud" WHERE time > now() - 1m GROUP BY "host"')
    try:
        series = InfluxQL(settings.influx, timeout=5.0).query(q, settings.influx.default_database)
    except (TemporaryError, PermanentError):
        return {}
    out = {}
    for s in series:
        host = (s.get("tags") or {}).get("host")
        row = dict(zip(s.get("columns") or [], (s.get("values") or [[]])[0], strict=False))
        used, cap = row.get("used"), row.get("cap")
        if host and isinstance(used, int | float) and isinstance(cap, int | float) and cap > 0:
            out[host] = (float(used), float(cap))
    return out


def allocations(registry: Registry) -> dict[str, Allocation]:
    """Per host: the cpu/memory limits of the OverCloud nodes the registry placed there
    (a paused OverCloud's nodes hold nothing)."""
    from orchestrator.request import memory_bytes

    cpu: dict[str, float] = {}
    mem: dict[str, int] = {}
    nodes: dict[str, list[str]] = {}
    for rec in registry.all():
        if rec.state == "paused":  # stopped nodes: their room is given back (orchestrator/pause.py)
            continue
        cluster = rec.spec.get("cluster") or {}
        try:
            c = float(cluster.get("cpu", 1))
            m = memory_bytes(str(cluster.get("memory", "1GiB")))
        except (TypeError, ValueError):
            continue
        for n in rec.nodes:
            cpu[n.host] = cpu.get(n.host, 0.0) + c
            mem[n.host] = mem.get(n.host, 0) + m
            nodes.setdefault(n.host, []).append(n.node)
    return {h: Allocation(cpu[h], mem[h], tuple(sorted(nodes[h]))) for h in cpu}


def default_capacity(settings: Settings) -> tuple[float, int]:
    """What a host has when nothing says otherwise: `undercloud.host_cpus/host_memory`, with
    0 meaning this machine (the same rule as the host agent's `resource_undercloud`)."""
    u = settings.undercloud
    cpus = u.host_cpus or float(os.cpu_count() or 1)
    memory = u.host_memory
    if not memory:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
        except OSError:
            memory = 0
    return cpus, memory


def host_views(records: Sequence[HostRecord], *, reachable: Mapping[str, bool],
               allocated: Mapping[str, Allocation], load: Mapping[str, HostLoad],
               capacity: tuple[float, int]) -> list[HostView]:
    """Join records, observations and load into placement's view (pure).

    Capacity: the operator's override, else `capacity` (the settings' host size). Not what
    a host agent reported: that is whatever `host_cpus` *its* settings had (a test's or a
    demo's small measuring capacity would make every host look full to placement).
    Utilisation is recomputed against that capacity from the used cores/bytes when known.
    """
    views = []
    for r in records:
        ld = load.get(r.name, HostLoad())
        cap_cpu = r.cpus or capacity[0]
        cap_mem = r.memory or capacity[1]
        cpu_util = (100 * ld.cpu_cores_used / cap_cpu if ld.cpu_cores_used is not None and cap_cpu
                    else ld.cpu_percent)
        mem_util = (100 * ld.mem_usage / cap_mem if ld.mem_usage is not None and cap_mem
                    else ld.mem_percent)
        state: HostState = ("draining" if r.draining else
                            "ready" if reachable.get(r.name, False) else "unreachable")
        a = allocated.get(r.name, Allocation())
        views.append(HostView(
            name=r.name, site=r.site, state=state, capacity_cpu=float(cap_cpu),
            capacity_memory=int(cap_mem), allocated_cpu=a.cpu, allocated_memory=a.memory,
            cpu_util=None if cpu_util is None else round(cpu_util, 3),
            mem_util=None if mem_util is None else round(mem_util, 3),
            net_bytes_per_s=ld.net_bytes_per_s, labels=dict(r.labels)))
    return views


def probe(checks: Mapping[str, Callable[[], bool]]) -> dict[str, bool]:
    """Run reachability checks in parallel (each host's API answers or not)."""
    if not checks:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(checks))) as pool:
        futures = {name: pool.submit(fn) for name, fn in checks.items()}
        return {name: _ok(f.result) for name, f in futures.items()}


def _ok(result: Callable[[], bool]) -> bool:
    try:
        return bool(result())
    except Exception:
        return False


def live_load(settings: Settings) -> tuple[dict[str, HostLoad], str]:
    """The DevLake's load per host, or ({}, why) when the DevLake cannot be read."""
    from devlake.sinks import InfluxQL
    from overcloud.errors import PermanentError

    ql = InfluxQL(settings.influx, timeout=5.0)
    try:
        return read_load(ql, settings.influx.default_database), ""
    except (TemporaryError, PermanentError) as exc:
        if "database not found" in str(exc):
            return {}, ""
        return {}, str(exc)
    finally:
        ql.close()


@dataclass(frozen=True)
class Snapshot:
    records: list[HostRecord]
    views: list[HostView]
    allocated: dict[str, Allocation]
    load: dict[str, HostLoad]
    reachable: dict[str, bool]
    load_error: str = ""


def snapshot(settings: Settings, inventory: Inventory, reachable: Mapping[str, Callable[[], bool]],
             registry: Registry, load: tuple[dict[str, HostLoad], str] | None = None) -> Snapshot:
    """Gather everything placement needs: records, reachability, allocation and live load.

    `reachable`: one check per driven host; a driver the inventory has no record of (e.g. a
    test's own host) counts as a host of site `local`."""
    records = inventory.hosts()
    known = {r.name for r in records}
    records += [HostRecord(name) for name in sorted(reachable) if name not in known]
    up = probe({r.name: reachable[r.name] for r in records if r.name in reachable})
    alloc = allocations(registry)
    ld, why = load if load is not None else live_load(settings)
    views = host_views(records, reachable=up, allocated=alloc, load=ld,
                       capacity=default_capacity(settings))
    return Snapshot(records, views, alloc, ld, up, why)


def plan_request(settings: Settings, reachable: Mapping[str, Callable[[], bool]],
                 registry: Registry, request: OverCloudRequest,
                 load: tuple[dict[str, HostLoad], str] | None = None,
                 nodes: Sequence[str] | None = None) -> tuple[Plan, Snapshot]:
    """The placement of a request's nodes on the driven hosts (`reachable`), as `place` and
    `request apply --dry-run` both decide it: same inputs, same plan. `nodes`: only these
    (an update's new replicas; the OverCloud's other nodes count as allocated already).

    No valid plan: `PlacementError`, or `TemporaryError` when a host is unreachable (it may
    come back, so a retry can succeed)."""
    from orchestrator.placement import NodeDemand, PlacementError, plan

    inv = Inventory(settings)
    try:
        snap = snapshot(settings, inv, reachable, registry, load)
    finally:
        inv.close()
    views = [v for v in snap.views if v.name in reachable]
    layout = request.tier_layout()
    demands = [NodeDemand(n, tuple(layout[n]), float(request.cluster.cpu),
                          request.cluster.memory_bytes) for n in request.node_names()
               if nodes is None or n in nodes]
    try:
        p = plan(demands, views, request.placement.strategy,
                 separate_tiers=request.placement.separate_tiers,
                 network_heavy=request.placement.network_heavy)
    except PlacementError as exc:
        if any(v.state == "unreachable" for v in views):  # it may answer again: retry later
            raise TemporaryError(str(exc), delay=2) from None
        raise
    return p, Snapshot(snap.records, views, snap.allocated, snap.load, snap.reachable,
                       snap.load_error)



def undercloud_report(settings: Settings, inventory: Inventory,
                      reachable: Mapping[str, Callable[[], bool]], registry: Registry
                      ) -> dict[str, Any]:
    """Every site and host as plain data: kind, state, capacity, our nodes, current load.

    What `overcloud undercloud list --json` prints and the DevTower's operator view serves."""
    snap = snapshot(settings, inventory, reachable, registry)
    views = {v.name: v for v in snap.views}
    rows: list[dict[str, Any]] = []
    for r in snap.records:
        v = views[r.name]
        a = snap.allocated.get(r.name)
        ld = snap.load.get(r.name)
        rows.append({
            "site": r.site, "host": r.name, "kind": f"lxd-{r.kind}", "state": v.state,
            "reachable": snap.reachable.get(r.name, False), "url": r.url,
            "labels": dict(r.labels),
            "capacity": {"cpu": v.capacity_cpu, "memory": v.capacity_memory},
            "allocated": {"cpu": v.allocated_cpu, "memory": v.allocated_memory,
                          "nodes": list(a.nodes) if a else []},
            "load": {"cpu_percent": v.cpu_util, "mem_percent": v.mem_util,
                     "net_bytes_per_s": v.net_bytes_per_s},
            "instances": ld.instances if ld else None,
        })
    sites = [{"site": s.name, "kind": s.kind, "cloud": s.cloud} for s in inventory.sites()]
    return {"hosts": rows, "sites": sites, "load_error": snap.load_error}
