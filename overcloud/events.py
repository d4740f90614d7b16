"""Domain events: one frozen, versioned class per event, registered by its type name.

Events are the contract between the parts (CLI, orchestrator, DevLake, alerting). Each class
names its wire `TYPE` and schema `VERSION`; `overcloud.wire` turns them into the JSON envelope
`{"type", "version", "id", "time", "payload"}` and back. `id` makes handling idempotent: a
consumer that sees the same id twice may skip it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal


def new_id() -> str:
    """A fresh event id (UUID4 hex); stable across redeliveries because it travels with the event."""
    return uuid.uuid4().hex


def derived_id(*parts: str) -> str:
    """An event id that is the same every time the same step publishes it (e.g. a workflow
    id and its task): a resumed or retried task re-publishes the *same* event, which every
    consumer (webhooks, `--wait`, the journal) then sees once."""
    import hashlib

    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def utcnow() -> datetime:
    return datetime.now(UTC)


EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events. Subclasses set `TYPE` and `VERSION` and add payload fields."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        type_name = cls.__dict__.get("TYPE") or cls.__name__
        cls.TYPE = type_name
        if type_name in EVENT_TYPES and EVENT_TYPES[type_name] is not cls:
            raise TypeError(f"event type {type_name!r} is registered twice")
        EVENT_TYPES[type_name] = cls


# --- OverCloud lifecycle -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OverCloudRequested(Event):
    """A developer asked for an OverCloud; `spec` is the validated request document."""

    name: str
    owner: str
    spec: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class OverCloudReady(Event):
    name: str
    url: str
    nodes: dict[str, str] = field(default_factory=dict)
    """node name -> UnderCloud host it runs on"""


@dataclass(frozen=True, kw_only=True)
class OverCloudFailed(Event):
    name: str
    task: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class OverCloudDeleteRequested(Event):
    name: str
    keep_data: bool = False


@dataclass(frozen=True, kw_only=True)
class OverCloudDeleted(Event):
    name: str


@dataclass(frozen=True, kw_only=True)
class OverCloudUpdateRequested(Event):
    """The developer applied a changed document to an existing OverCloud; `spec` is the
    whole validated request (declarative: the orchestrator plans the difference itself)."""

    name: str
    owner: str
    spec: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class OverCloudUpdated(Event):
    """An update was carried out: `changes` are the plan's lines (`~ retention 30d → 90d`),
    `spec` the request the OverCloud now runs (webhooks re-read their URLs from it)."""

    name: str
    spec: dict[str, Any]
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BackupRequested(Event):
    """Dump an OverCloud's database now; keep its newest `keep` backups."""

    name: str
    keep: int = 7


@dataclass(frozen=True, kw_only=True)
class RestoreRequested(Event):
    """Load backup `backup` into the OverCloud's database (as it was then); `source`: the
    OverCloud the backup was made of when it is another one (a clone to staging)."""

    name: str
    backup: str
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class PauseRequested(Event):
    """Stop the OverCloud's nodes and agents, keep its data, give its capacity back."""

    name: str


@dataclass(frozen=True, kw_only=True)
class OverCloudPaused(Event):
    name: str


@dataclass(frozen=True, kw_only=True)
class ResumeRequested(Event):
    """Start a paused OverCloud again (on other hosts for nodes whose host is full now)."""

    name: str


@dataclass(frozen=True, kw_only=True)
class OverCloudResumed(Event):
    name: str
    url: str
    nodes: dict[str, str] = field(default_factory=dict)
    """node name -> UnderCloud host it runs on now"""


# --- UnderCloud health and migration -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NodeOverloaded(Event):
    host: str
    rule: str
    value: float
    threshold: float
    node: str = ""
    overcloud: str = ""
    recovery: float = 0.0
    """The rule's recovery threshold (what a relief migration aims under); 0: not given."""


@dataclass(frozen=True, kw_only=True)
class NodeRecovered(Event):
    host: str
    rule: str
    value: float
    node: str = ""
    overcloud: str = ""


@dataclass(frozen=True, kw_only=True)
class MigrationRequested(Event):
    """Move nodes by hand: one `node` of `overcloud`, or all of `overcloud`'s nodes, or every
    node on `source` (a drain); to `target` host, to hosts of `site`, or where placement says."""

    overcloud: str = ""
    node: str = ""
    source: str = ""
    target: str = ""
    site: str = ""
    reason: str = "by hand"
    db_method: Literal["replicate", "copy"] = "replicate"
    """How a database node moves: by GTID replication (a write freeze only), or stop → copy
    → start (the site down meanwhile); orchestrator/migration.py."""


@dataclass(frozen=True, kw_only=True)
class MigrationStarted(Event):
    overcloud: str
    node: str
    source: str
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class MigrationFinished(Event):
    overcloud: str
    node: str
    source: str
    target: str
    downtime_s: float
    ok: bool = True
    reason: str = ""


# --- Alerting ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AlertFiring(Event):
    rule: str
    severity: str
    labels: dict[str, str]
    value: float
    summary: str = ""


@dataclass(frozen=True, kw_only=True)
class AlertResolved(Event):
    rule: str
    labels: dict[str, str]
    value: float
