"""The OverCloud request: the developer's YAML description of the OverCloud they want.

A request names the OverCloud and its owner, sizes the logical cluster (nodes, CPU and
memory per node), sets DevTower/DevLake options and placement hints, and describes the SaaS:
the Web-App-DB 3-tier WordPress stack (nginx → WordPress → MariaDB) and the loopback port it
is exposed on. See `examples/my-overcloud.yaml` for every field with comments.

Validation reports *every* problem at once, each with its dotted path in the document and
its line (`Problem`), because fixing a file one error per run is tedious. Besides the typed
model (pydantic, strict: `nodes: "3"` is text, not a number), it checks what YAML hides:
duplicate keys (PyYAML silently keeps the last one), keys that look like secrets (OverCloud
generates and stores every credential; a request never carries one), a file that is binary,
empty or not a mapping. Cross-field rules (replicas versus nodes) and the size of the
largest UnderCloud host (`Capacity`) come last, on whatever parts are themselves valid.

Tier layout (`OverCloudRequest.tier_layout`), nodes named `<name>-n1` … `<name>-nN`:

- 1 node: n1 runs db, app and web; web and app have 1 replica each.
- 2 or more nodes: n1 runs only the db (one MariaDB primary gets a whole node, so the app
  and web tiers never compete with it for CPU or memory); app replica *i* runs on node
  n(i+1) and web replica *i* on node n(i+1). Replicas of one tier are thus on distinct nodes
  (a second replica on the same machine container adds no resilience), so each of app and
  web needs `replicas <= nodes - 1`, and every node from n2 on must run something:
  `nodes == 1 + max(app.replicas, web.replicas)`. Two nodes: db on n1, app + web on n2.
  `expose.port` points at the first web replica (n1 with one node, else n2).
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from overcloud.problems import DocumentInvalid, DocumentLoader, Problem, dotted, echo, yaml_problem

API_VERSION = "overcloud/v1"
MAX_FILE_BYTES = 256 * 1024
"""A request is a few dozen lines; anything this big is the wrong file."""
MIN_MEMORY = 256 * 1024**2
MAX_MEMORY = 1024**5
"""1 PiB: more than any machine has; a bound so that a number of 400 digits is an error, not
an overflow (memory sizes are computed exactly, never through a float)."""
MAX_DURATION_NS = 2**63 - 1
"""InfluxDB keeps durations in int64 nanoseconds (about 292 years)."""
# every pattern is matched with fullmatch: `$` also matches before a trailing newline
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
_MEMORY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)")
_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
          "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:w|d|h|m|s|ms|u|µ|ns))+")
_DURATION_NS = {"w": 604800 * 10**9, "d": 86400 * 10**9, "h": 3600 * 10**9, "m": 60 * 10**9,
                "s": 10**9, "ms": 10**6, "u": 10**3, "µ": 10**3, "ns": 1}
_SECRET_KEY_RE = re.compile(r"pass(word|wd|phrase)?$|secret|token|credential|private[_-]?key|api[_-]?key",
                            re.IGNORECASE)

Loc: TypeAlias = tuple[str | int, ...]


# --- problems ------------------------------------------------------------------------------


class RequestInvalid(DocumentInvalid):
    """The request document has problems; `problems` lists all of them, in document order."""

    what = " in the OverCloud request:"


# --- capacity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """What the largest UnderCloud host offers one node: a node may not ask for more."""

    cpu: int
    memory_bytes: int

    @classmethod
    def this_machine(cls) -> Capacity:
        """Cores and total memory of this machine (its LXD daemons are the UnderCloud hosts)."""
        memory = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
        return cls(cpu=os.cpu_count() or 1, memory_bytes=memory or 2**62)


def memory_bytes(text: str) -> int:
    """`"512MiB"` → 536870912; binary (KiB…TiB) and decimal (kB…TB) units, as LXD takes them.

    Exact (decimal arithmetic, no float to overflow to `inf`); ValueError for anything else
    or for more than `MAX_MEMORY`.
    """
    m = _MEMORY_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(text)
    if len(m.group(1)) > 30:  # more than MAX_MEMORY in any unit; spare the arithmetic
        raise ValueError(text)
    n = int(Decimal(m.group(1)) * _UNITS[m.group(2)])
    if n > MAX_MEMORY:
        raise ValueError(text)
    return n


def human_bytes(n: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n >= _UNITS[unit]:
            v = n / _UNITS[unit]
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n}B"


def _one_line(text: str) -> bool:
    """No newline, tab, control or format character (a bidi override reorders what a terminal
    shows); spaces of every kind and the emoji joiners are fine."""
    return all(c.isprintable() or unicodedata.category(c) == "Zs" or c in "\u200c\u200d"
               for c in text)


def _capacity(info: ValidationInfo) -> Capacity | None:
    ctx = info.context
    return ctx.get("capacity") if isinstance(ctx, dict) else None


# --- the model -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Cluster(_Model):
    """The logical cluster: machine containers, all of one size."""

    nodes: int = Field(default=1, ge=1, le=16)
    """Machine containers in the OverCloud (1..16)."""
    cpu: int = Field(default=1, ge=1, le=64)
    """Cores per node (LXD `limits.cpu`)."""
    memory: str = "1GiB"
    """Memory per node, with a unit: `512MiB`, `2GiB` (LXD `limits.memory`); at least 256MiB."""

    @field_validator("cpu")
    @classmethod
    def _cpu_fits(cls, v: int, info: ValidationInfo) -> int:
        cap = _capacity(info)
        if cap and v > cap.cpu:
            raise ValueError(f"{v} cores per node is more than the largest UnderCloud host offers "
                             f"({cap.cpu} cores)")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str, info: ValidationInfo) -> str:
        try:
            n = memory_bytes(v)
        except ValueError:
            if _MEMORY_RE.fullmatch(v.strip()):
                raise ValueError(f"{echo(v.strip())} is more memory than any machine has (at most "
                                 f"{human_bytes(MAX_MEMORY)})") from None
            raise ValueError(f"{echo(v)} is not a memory size: write a number and a unit, e.g. "
                             "512MiB or 2GiB (KiB, MiB, GiB, TiB or kB, MB, GB, TB)") from None
        if n < MIN_MEMORY:
            raise ValueError(f"{v} is too little: a node runs Docker and its tiers, give it at "
                             "least 256MiB")
        cap = _capacity(info)
        if cap and n > cap.memory_bytes:
            raise ValueError(f"{v} per node is more than the largest UnderCloud host offers "
                             f"({human_bytes(cap.memory_bytes)})")
        return v.strip()

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)


def _webhook(url: str) -> str:
    # urlsplit silently drops tabs and newlines; the URL is stored and used as written
    parts = urlsplit(url) if _one_line(url) and " " not in url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{echo(url)} is not a webhook URL: it must start with http:// or "
                         "https://, name a host and contain no spaces or control characters")
    if parts.password is not None:
        raise ValueError(f"{parts.hostname}: a password in the URL is a secret, and secrets are "
                         "never written in the request")
    return url


class DevTower(_Model):
    """The developer's interface to this OverCloud."""

    api: bool = True
    """Serve this OverCloud through the DevTower API (`overcloud show`, events)."""
    notify: list[Annotated[str, AfterValidator(_webhook)]] = Field(default_factory=list, max_length=8)
    """Webhook URLs (http/https) that receive this OverCloud's alerts and lifecycle events."""

    @field_validator("notify")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists the same URL twice")
        return v


class DevLake(_Model):
    """The OverCloud's store of monitoring data (its own InfluxDB database)."""

    retention: str = "30d"
    """How long samples are kept: an InfluxQL duration (`12h`, `30d`, `4w`) or `INF`."""
    keep_on_delete: bool = False
    """Keep the DevLake database when the OverCloud is deleted."""

    @field_validator("retention")
    @classmethod
    def _duration(cls, v: str) -> str:
        if v.upper() == "INF":
            return "INF"
        if not _DURATION_RE.fullmatch(v):
            raise ValueError(f"{echo(v)} is not an InfluxQL duration: write e.g. 12h, 30d or 4w "
                             "(units w, d, h, m, s), or INF to keep everything")
        parts = re.findall(r"([0-9]+)(ms|ns|w|d|h|m|s|u|µ)", v)
        ns = sum(int(n) * _DURATION_NS[u] for n, u in parts) if all(len(n) <= 20 for n, _ in parts) \
            else MAX_DURATION_NS + 1  # int() of thousands of digits raises; it is too long anyway
        if ns > MAX_DURATION_NS:
            raise ValueError(f"{echo(v)} is longer than InfluxDB can keep (about 292 years); "
                             "write INF to keep everything")
        if ns < _DURATION_NS["h"]:
            raise ValueError(f"{v} is shorter than InfluxDB's shortest retention, 1h")
        return v


class BackupSchedule(_Model):
    """Scheduled backups of the database tier (orchestrator/schedule.py): the first soon
    after the schedule is set, then one whenever the newest is `every` old."""

    every: str | None = None
    """How often: a duration (`1d`, `12h`, `30m`; at least 5m); unset: no schedule."""
    keep: int = Field(default=7, ge=1, le=1000)
    """How many backups are kept (the newest)."""

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _DURATION_RE.fullmatch(v) or any(len(n) > 12 for n in re.findall(r"[0-9]+", v)):
            raise ValueError(f"{echo(v)} is not a duration: write e.g. 1d, 12h or 30m")
        if duration_seconds(v) < 300:
            raise ValueError(f"{v} is too often: at least 5m between backups")
        return v


def duration_seconds(v: str) -> float:
    """`1d12h` → 129600.0 (a string `_DURATION_RE` accepted)."""
    return sum(int(n) * _DURATION_NS[u]
               for n, u in re.findall(r"([0-9]+)(ms|ns|w|d|h|m|s|u|µ)", v)) / 1e9


class Placement(_Model):
    """Hints for choosing UnderCloud hosts for the nodes."""

    strategy: Literal["spread", "pack", "least-loaded", "network-aware"] = "spread"
    """`spread`: nodes on as many hosts as possible; `pack`: as few hosts as possible;
    `least-loaded`: the hosts with the lowest live CPU/memory use (DevLake, recent window);
    `network-aware`: the hosts whose links carry the least traffic (see orchestrator/placement.py)."""
    network_heavy: bool = False
    """Prefer hosts whose network is idle."""
    separate_tiers: bool = False
    """Keep the db node and the app/web nodes on different hosts when the hosts allow it."""


class Tier(_Model):
    replicas: int = Field(default=1, ge=1, le=4)
    """Instances of this tier, each on its own node (1..4)."""


class DbTier(_Model):
    replicas: int = 1
    """Always 1: one MariaDB primary, no replication."""

    @field_validator("replicas")
    @classmethod
    def _one(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"must be 1, got {echo(v)}: the db tier is a single MariaDB primary without "
                             "replication, so another replica would be a second, diverging database")
        return v


class Tiers(_Model):
    web: Tier = Field(default_factory=Tier)
    """nginx in front."""
    app: Tier = Field(default_factory=Tier)
    """WordPress (Apache + mod_php)."""
    db: DbTier = Field(default_factory=DbTier)
    """MariaDB."""


class Expose(_Model):
    port: int | Literal["auto"] = "auto"
    """Host port on 127.0.0.1 (1024..65535), or `auto` to pick a free one."""
    path_check: str = "/wp-admin/install.php"
    """Page loaded through the exposed port to verify the stack answers."""

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be a port number (1024..65535) or auto, got {_describe(v)}")
        if not 1024 <= v <= 65535:
            raise ValueError(f"must be between 1024 and 65535, got {echo(v)} (ports below 1024 are "
                             "privileged; the stack is exposed on 127.0.0.1 by an unprivileged proxy)")
        return v

    @field_validator("path_check")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or any(c.isspace() or not c.isprintable() for c in v):
            raise ValueError(f"{echo(v)} must be a URL path starting with '/' without spaces or "
                             "control characters")
        return v


class Saas(_Model):
    stack: Literal["wordpress"]
    """The Web-App-DB 3-tier stack: nginx → WordPress → MariaDB."""
    tiers: Tiers = Field(default_factory=Tiers)
    expose: Expose = Field(default_factory=Expose)


class OverCloudRequest(_Model):
    """A validated request. Build it with `load_request`, `parse_request` or `from_spec`."""

    apiVersion: Literal["overcloud/v1"]  # the document key, as written
    kind: Literal["OverCloud"]
    name: str
    """DNS label (2..32 of a-z, 0-9, '-'): it names containers, databases and networks."""
    owner: str = Field(min_length=1, max_length=254)
    """Who asked for it, e.g. an e-mail address; alerts and `overcloud list` show it."""
    cluster: Cluster = Field(default_factory=Cluster)
    devtower: DevTower = Field(default_factory=DevTower)
    devlake: DevLake = Field(default_factory=DevLake)
    placement: Placement = Field(default_factory=Placement)
    backup: BackupSchedule = Field(default_factory=BackupSchedule)
    saas: Saas
    pool: bool = True
    """Take ready nodes from the hosts' warm pools when they have some (orchestrator/pool.py);
    `false`: every node is launched cold (its own container, made for this OverCloud)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"{echo(v)} must be a DNS label: 2 to 32 lowercase letters, digits and '-', "
                             "starting with a letter and not ending with '-' (it names containers, "
                             "databases and networks)")
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank: say who the OverCloud is for, e.g. an e-mail")
        if not _one_line(v.strip()):
            raise ValueError(f"{echo(v.strip())} must be one line of text: no newlines, tabs, "
                             "control or bidirectional-override characters (it is printed in "
                             "lists and alerts)")
        return v.strip()

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> OverCloudRequest:
        # `_validate` runs these itself to report each at its own path; a direct
        # `model_validate` still gets them, as one error
        if isinstance(info.context, dict) and info.context.get("cross") is False:
            return self
        counts = (self.cluster.nodes, self.saas.tiers.app.replicas, self.saas.tiers.web.replicas)
        msgs = [f"{dotted(loc)}: {msg}" for loc, msg in _cross_rules(*counts)]
        if msgs:
            raise ValueError("; ".join(msgs))
        return self

    # -- derived helpers for the orchestrator ---------------------------------------------

    def node_names(self) -> list[str]:
        """`["<name>-n1", …, "<name>-nN"]`, also the LXD instance names."""
        return [f"{self.name}-n{i}" for i in range(1, self.cluster.nodes + 1)]

    def tier_layout(self) -> dict[str, list[str]]:
        """Node name → tiers it runs (`db`, `app`, `web`), by the rule in the module docstring."""
        nodes = self.node_names()
        layout: dict[str, list[str]] = {n: [] for n in nodes}
        if len(nodes) == 1:
            layout[nodes[0]] = ["db", "app", "web"]
            return layout
        layout[nodes[0]].append("db")
        for tier in ("app", "web"):
            for i in range(self.tier_replicas(tier)):
                layout[nodes[1 + i]].append(tier)
        return layout

    def tier_replicas(self, tier: str) -> int:
        return {"web": self.saas.tiers.web.replicas, "app": self.saas.tiers.app.replicas,
                "db": self.saas.tiers.db.replicas}[tier]

    def nodes_of(self, tier: str) -> list[str]:
        """Nodes that run `tier`, in order (the first `web` node is the exposed one)."""
        return [n for n, tiers in self.tier_layout().items() if tier in tiers]

    def lxd_limits(self) -> dict[str, str]:
        """LXD instance config for every node."""
        return {"limits.cpu": str(self.cluster.cpu), "limits.memory": str(self.cluster.memory_bytes)}

    # -- spec: the `OverCloudRequested` event payload -------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """The whole request, defaults filled in, as JSON-able data (`OverCloudRequested.spec`)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], capacity: Capacity | None = None) -> OverCloudRequest:
        """Rebuild a request from `to_spec()` output; raises `RequestInvalid` like a document.

        `capacity=None` skips the host-size check: the orchestrator's placement checks the
        real hosts instead.
        """
        problems, request = _validate(spec, capacity, {})
        if problems or request is None:
            raise RequestInvalid("<spec>", problems)
        return request


# --- validation ----------------------------------------------------------------------------


def load_request(path: Path, capacity: Capacity | None = None) -> OverCloudRequest:
    """Read and validate a request file; `capacity` defaults to `Capacity.this_machine()`.

    Raises `RequestInvalid` listing every problem (also for an unreadable, binary or empty file).
    """
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RequestInvalid(source, [Problem("", None, f"is {size} bytes: a request is a small "
                                                  f"YAML file (at most {MAX_FILE_BYTES} bytes)")])
        data = path.read_bytes()
    except IsADirectoryError:
        raise RequestInvalid(source, [Problem("", None, "is a directory, not a request file")]) from None
    except OSError as exc:
        raise RequestInvalid(source, [Problem("", None, f"cannot read it: {exc.strerror}")]) from None
    if b"\0" in data:
        raise RequestInvalid(source, [Problem("", None, "is a binary file, not a YAML request")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RequestInvalid(source, [Problem("", line, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} "
                                              "cannot be decoded); save the file as UTF-8")]) from None
    return parse_request(text, source, capacity)


def parse_request(text: str, source: str = "<string>",
                  capacity: Capacity | None = None) -> OverCloudRequest:
    """Validate request text; `capacity` defaults to `Capacity.this_machine()`."""
    if capacity is None:
        capacity = Capacity.this_machine()
    try:
        node = yaml.compose(text, Loader=DocumentLoader)
    except yaml.YAMLError as exc:
        raise RequestInvalid(source, [yaml_problem(exc, text, "a request")]) from None
    if node is None:
        raise RequestInvalid(source, [Problem("", None, "is empty: a request needs at least "
                                              "apiVersion, kind, name, owner and saas")])
    if not isinstance(node, yaml.MappingNode):
        got = _node_kind(node)
        raise RequestInvalid(source, [Problem("", node.start_mark.line + 1, "must be a mapping of keys "
                                              f"(apiVersion, kind, name, owner, ...), got {got}")])
    tree = _Tree()
    tree.walk(node, ())
    try:
        data = DocumentLoader(text).get_single_data()
    except yaml.YAMLError as exc:  # e.g. an unknown tag such as !!python/object, a date in month 13
        raise RequestInvalid(source, [*tree.problems, yaml_problem(exc, text, "a request")]) from None
    problems, request = _validate(data, capacity, tree.lines, skip=frozenset(tree.reported))
    problems = sorted([*tree.problems, *problems], key=lambda p: (p.line or 0, p.path))
    if problems or request is None:
        raise RequestInvalid(source, problems)
    return request


def line_of(text: str, path: str) -> int | None:
    """The line of `path` (dotted, e.g. `saas.expose.port`) in a document that parsed, or of
    its nearest parent that is written; None when none is (a default)."""
    try:
        node = yaml.compose(text, Loader=DocumentLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    tree = _Tree()
    tree.walk(node, ())
    return _line(tree.lines, tuple(path.split(".")), "")


def _validate(data: Any, capacity: Capacity | None, lines: Mapping[Loc, int],
              skip: frozenset[Loc] = frozenset()) -> tuple[list[Problem], OverCloudRequest | None]:
    """Typed validation plus cross-field rules; problems under `skip` are already reported."""
    if not isinstance(data, dict):
        return [Problem("", None, f"must be a mapping, got {_describe(data)}")], None
    context: dict[str, Any] = {"capacity": capacity, "cross": False}
    problems: list[Problem] = []
    request: OverCloudRequest | None = None
    try:
        request = OverCloudRequest.model_validate(data, context=context)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _clean_loc(err["loc"], err["type"])
            if err["type"] == "invalid_key" and lines:
                continue  # a key that is not text: the node tree reported it with its line
            if not _under(loc, skip):
                problems.append(Problem(dotted(loc), _line(lines, loc, err["type"]), _message(err, loc)))
    # cross-field rules, also when other parts of the document are broken
    counts = (request.cluster.nodes, request.saas.tiers.app.replicas, request.saas.tiers.web.replicas
              ) if request else _counts(data)
    if counts:
        for loc, msg in _cross_rules(*counts):
            if not _under(loc, skip):
                problems.append(Problem(dotted(loc), _line(lines, loc, ""), msg))
    return problems, (request if not problems else None)


def _under(loc: Loc, prefixes: frozenset[Loc]) -> bool:
    return any(loc[: len(p)] == p for p in prefixes)


def _counts(data: dict[str, Any]) -> tuple[int, int, int] | None:
    """(nodes, app replicas, web replicas) when each of them is valid on its own."""
    def part(model: type[_Model], raw: Any) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError:
            return None

    cluster = part(Cluster, data.get("cluster", {}))
    saas = data.get("saas")
    tiers = saas.get("tiers", {}) if isinstance(saas, dict) else None
    if cluster is None or not isinstance(tiers, dict):
        return None
    app, web = part(Tier, tiers.get("app", {})), part(Tier, tiers.get("web", {}))
    if app is None or web is None:
        return None
    return cluster.nodes, app.replicas, web.replicas


def _cross_rules(nodes: int, app: int, web: int) -> Iterator[tuple[Loc, str]]:
    replicas = {"app": app, "web": web}
    for tier, r in replicas.items():
        if r > 1 and nodes < r + 1:
            yield (("saas", "tiers", tier, "replicas"),
                   f"{r} {tier} replicas need cluster.nodes >= {r + 1} (each replica gets its own "
                   f"node and n1 holds the db), but cluster.nodes is {nodes}")
    used = 1 + max(replicas.values())
    if nodes > 1 and nodes > used and all(r <= nodes - 1 for r in replicas.values()):
        yield (("cluster", "nodes"),
               f"{nodes} nodes but only {used} would run anything (db on n1, app and web replicas "
               f"on their own nodes after it): set cluster.nodes to {used} or raise "
               "saas.tiers.app.replicas / saas.tiers.web.replicas")


# --- YAML node tree: lines, duplicates, secrets --------------------------------------------


@dataclass
class _Tree:
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    reported: set[Loc] = field(default_factory=set)
    """Secret keys and duplicated keys: reported here, so not validated again."""
    _seen: set[int] = field(default_factory=set)

    def walk(self, node: yaml.Node, loc: Loc) -> None:
        if id(node) in self._seen:  # an alias: walked once already (and no alias bombs)
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines.setdefault((*loc, i), item.start_mark.line + 1)
                self.walk(item, (*loc, i))
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        self.walk(value_node, loc)
                        continue
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else _node_kind(key_node)
                    self.problems.append(Problem(dotted(loc), line, f"key {echo(shown)} must be text "
                                                 "(a plain name such as nodes or replicas)"))
                    continue
                key = key_node.value
                here = (*loc, key)
                if key in first:
                    self.reported.add(here)
                    self.problems.append(Problem(dotted(here), line, f"duplicate key {echo(key)} (first at "
                                                 f"line {first[key]}); YAML would silently keep only "
                                                 "the last one, so write it once"))
                    continue
                first[key] = line
                self.lines[here] = line
                if _SECRET_KEY_RE.search(key):
                    self.reported.add(here)
                    self.problems.append(Problem(dotted(here), line, "secrets are never written in the "
                                                 "request: OverCloud generates every password and key "
                                                 "and stores them itself; remove this key"))
                    continue
                self.walk(value_node, here)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the value {echo(node.value)}" if node.value else "nothing"


# --- pydantic errors → problems ------------------------------------------------------------


def _clean_loc(loc: tuple[int | str, ...], kind: str) -> Loc:
    # union members and function validators add their own names to the location; the last
    # part of an unknown key's location is the user's key, which may well be called `int`
    keep = loc[-1:] if kind == "extra_forbidden" else ()
    head = loc[: len(loc) - len(keep)]
    return tuple(p for p in head if not (isinstance(p, str) and (p.startswith(("literal[", "function-"))
                                                                or p in ("int", "str")))) + keep


def _line(lines: Mapping[Loc, int], loc: Loc, kind: str) -> int | None:
    if kind == "missing":  # point at the mapping that lacks the key
        loc = loc[:-1]
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f"the text {echo(v)}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return echo(v)


def _allowed_keys(loc: Loc) -> list[str]:
    model: Any = OverCloudRequest
    for p in loc:
        info = model.model_fields.get(p) if isinstance(p, str) else None
        model = info.annotation if info else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


_REQUIRED_HINTS = {
    "apiVersion": f" (write apiVersion: {API_VERSION})",
    "kind": " (write kind: OverCloud)",
    "name": " (a DNS label such as my-blog: it names the containers and databases)",
    "owner": " (who the OverCloud is for, e.g. an e-mail address)",
    "saas": " (the SaaS to run; at least saas: {stack: wordpress})",
    "saas.stack": " (the only stack so far: wordpress)",
}


def _message(err: Any, loc: Loc) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return "is required" + _REQUIRED_HINTS.get(dotted(loc), "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"unknown key{hint}; expected one of: {', '.join(allowed)}"
    if kind == "int_type":
        unquote = isinstance(value, str) and value.strip().lstrip("-").isdigit()
        return f"must be a whole number, got {_describe(value)}" + (
            " (write it without quotes)" if unquote else "")
    if kind == "bool_type":
        unquote = isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off")
        return f"must be true or false, got {_describe(value)}" + (
            " (write true or false, without quotes)" if unquote else "")
    if kind == "string_type":
        return f"must be text, got {_describe(value)}"
    if kind == "list_type":
        return f"must be a list, got {_describe(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value lines), got {_describe(value)}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {_describe(value)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = "at least" if kind == "greater_than_equal" else "at most"
        return f"must be {bound} {ctx.get('ge', ctx.get('le'))}, got {_describe(value)}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} entries"
    if kind == "string_too_short":
        return "must not be empty"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
