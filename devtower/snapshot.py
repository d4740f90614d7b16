"""The registry and the workflow store as the API reads them: from memory, re-read only
after a change.

Every API request reads OverCloud records (who owns it, its state, its nodes) and `show`
its workflows. Read from SQLite each time that is 1 + N queries and a JSON decode per
record and per node: ~1.5 ms of a core for a list of 20 (bench/devtower_api.py), most of what a
request costs. Both stores say cheaply whether anything was committed since (`version()`:
SQLite's `data_version` and the connection's own `total_changes`), so the records are
re-read only when the orchestrator (or anyone) changed them, and a read never sees older
data than a direct read started after the change would.

Records are frozen dataclasses shared between requests; callers build their own dicts from
them (`orchestrator.views`), so nothing served can be changed in place by another request.
"""

from __future__ import annotations

import threading

from orchestrator.registry import OverCloudRecord, Registry
from orchestrator.store import WorkflowRecord, WorkflowStore


class Snapshot:
    def __init__(self, registry: Registry, workflows: WorkflowStore) -> None:
        self._registry = registry
        self._workflows = workflows
        self._lock = threading.Lock()
        self._records_at: tuple[int, int] | None = None
        self._records: dict[str, OverCloudRecord] = {}
        self._workflows_at: tuple[int, int] | None = None
        self._by_subject: dict[str, list[WorkflowRecord]] = {}
        self.rebuilds = 0
        """How often the records were re-read (tests: a change is seen, no change is free)."""

    def _fresh_records(self) -> dict[str, OverCloudRecord]:
        at = self._registry.version()
        with self._lock:
            if at == self._records_at:
                return self._records
        records = {r.name: r for r in self._registry.all()}
        with self._lock:
            self._records, self._records_at = records, at
            self.rebuilds += 1
        return records

    def ready(self, subject: str | None = None) -> bool:
        """Whether a read (of the records, and of `subject`'s workflows) would be served from
        memory: two `PRAGMA data_version` reads. The API answers such a read on its event loop
        and sends only re-reads to a thread."""
        records_at, workflows_at = self._registry.version(), self._workflows.version()
        with self._lock:
            return records_at == self._records_at and (
                subject is None
                or (workflows_at == self._workflows_at and subject in self._by_subject))

    def get(self, name: str) -> OverCloudRecord | None:
        return self._fresh_records().get(name)

    def all(self) -> list[OverCloudRecord]:
        """Every OverCloud, by name (as `Registry.all`)."""
        return list(self._fresh_records().values())

    def workflows_of(self, subject: str) -> list[WorkflowRecord]:
        """The subject's workflows, oldest first (as `WorkflowStore.list(subject=...)`)."""
        at = self._workflows.version()
        with self._lock:
            if at != self._workflows_at:
                self._by_subject, self._workflows_at = {}, at
            cached = self._by_subject.get(subject)
        if cached is not None:
            return cached
        wfs = self._workflows.list(subject=subject)
        with self._lock:
            if self._workflows_at == at:
                self._by_subject[subject] = wfs
        return wfs
