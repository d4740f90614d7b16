"""Where workflows live: one SQLite file in WAL mode, so a killed orchestrator resumes.

Three tables: `workflows` (one row per request: its spec, input, state and error), `tasks`
(one row per task: state, attempts, result, last error and progress) and `history`, an
append-only log of every state change in order (`overcloud show` prints it; the CLI can
tail it with `history(id, since=seq)`). Every change to a task or workflow and its history
row are written in one transaction, before the engine acts on it.

The store is thread-safe (one connection behind a lock) and another process can read the
same file at the same time (WAL). Writing belongs to one engine process at a time.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.workflow import TaskSpec, TaskState, WorkflowSpec, WorkflowState, to_json

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    spec TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    failed_task TEXT,
    cleanup TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_by_subject ON workflows (subject, kind, created);
CREATE INDEX IF NOT EXISTS workflows_by_state ON workflows (state);
CREATE TABLE IF NOT EXISTS tasks (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    started REAL,
    finished REAL,
    progress TEXT,
    PRIMARY KEY (workflow_id, name)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    task TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_by_workflow ON history (workflow_id, seq);
"""


class WorkflowNotFound(LookupError):
    """No workflow with that id in the store."""


class WorkflowConflict(ValueError):
    """An explicit workflow id already names a workflow of another kind or subject."""


@dataclass(frozen=True)
class TaskRecord:
    name: str
    spec: TaskSpec
    state: TaskState
    attempts: int
    result: Any
    """The action's return value (JSON round-tripped); None until it succeeds."""
    error: str | None
    """Why the last attempt failed (kept while retrying), or why the task was cancelled."""
    started: float | None
    finished: float | None
    progress: str | None


@dataclass(frozen=True)
class WorkflowRecord:
    id: str
    kind: str
    subject: str
    spec: WorkflowSpec
    input: Mapping[str, Any]
    state: WorkflowState
    error: str | None
    """"<task>: <reason>" once a critical task failed (set before the workflow is `failed`)."""
    failed_task: str | None
    cleanup: str | None
    """State of the `on_failure` action: None (not run), running, succeeded, failed."""
    created: float
    updated: float
    tasks: tuple[TaskRecord, ...]

    def task(self, name: str) -> TaskRecord:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)


@dataclass(frozen=True)
class HistoryEntry:
    seq: int
    time: float
    workflow_id: str
    task: str | None
    event: str
    detail: str


class WorkflowStore:
    """SQLite persistence for workflows; `path` is a file (created) or ":memory:"."""

    def __init__(self, path: str | Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives a killed process
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> WorkflowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- creation and queries -----------------------------------------------------------

    def create(self, spec: WorkflowSpec, input: Mapping[str, Any] | None = None,
               workflow_id: str | None = None) -> str:
        """Store a new pending workflow and return its id.

        Idempotent on an explicit `workflow_id` (the orchestrator passes the request event's
        id): if it exists already, nothing changes and the same id comes back, even when the
        spec differs (a redelivered request may be planned differently; the first plan wins).
        A different kind or subject under that id is a `WorkflowConflict`.
        """
        input_json = to_json(dict(input or {}), "workflow input")
        wid = workflow_id or uuid.uuid4().hex
        now = self._now()
        with self._tx() as db:
            row = db.execute("SELECT kind, subject FROM workflows WHERE id = ?", (wid,)).fetchone()
            if row is not None:
                if (row["kind"], row["subject"]) != (spec.kind, spec.subject):
                    raise WorkflowConflict(
                        f"workflow {wid} is {row['kind']}/{row['subject']}, not {spec.kind}/{spec.subject}")
                return wid
            db.execute(
                "INSERT INTO workflows (id, kind, subject, spec, input, state, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (wid, spec.kind, spec.subject, to_json(spec.to_dict(), "workflow spec"), input_json,
                 WorkflowState.PENDING.value, now, now),
            )
            db.executemany(
                "INSERT INTO tasks (workflow_id, name, position, spec, state) VALUES (?, ?, ?, ?, ?)",
                [(wid, t.name, i, to_json(t.to_dict(), "task spec"), TaskState.PENDING.value)
                 for i, t in enumerate(spec.tasks)],
            )
            self._history(db, now, wid, None, "created", f"{spec.kind} {spec.subject}")
        return wid

    def exists(self, workflow_id: str) -> bool:
        try:
            self.get(workflow_id)
        except WorkflowNotFound:
            return False
        return True

    def get(self, workflow_id: str) -> WorkflowRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
            if row is None:
                raise WorkflowNotFound(f"no workflow {workflow_id!r}")
            tasks = self._db.execute(
                "SELECT * FROM tasks WHERE workflow_id = ? ORDER BY position", (workflow_id,)).fetchall()
        return _workflow(row, tasks)

    def version(self) -> tuple[int, int]:
        """Changes whenever any connection committed to the store (as `Registry.version`)."""
        with self._lock:
            return self._db.execute("PRAGMA data_version").fetchone()[0], self._db.total_changes

    def list(self, kind: str | None = None, subject: str | None = None,
             state: WorkflowState | str | None = None) -> builtins.list[WorkflowRecord]:
        """Workflows matching every filter given, oldest first."""
        where, params = [], []
        for column, value in (("kind", kind), ("subject", subject), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = "SELECT id FROM workflows" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            ids = [r["id"] for r in self._db.execute(sql + " ORDER BY created, rowid", params)]
            return [self.get(wid) for wid in ids]

    def latest_for(self, subject: str, kind: str | None = None) -> WorkflowRecord | None:
        """The most recent workflow on `subject` (of `kind`, if given), or None."""
        sql = "SELECT id FROM workflows WHERE subject = ?" + (" AND kind = ?" if kind else "")
        params = (subject, kind) if kind else (subject,)
        with self._lock:
            row = self._db.execute(sql + " ORDER BY created DESC, rowid DESC LIMIT 1", params).fetchone()
            return None if row is None else self.get(row["id"])

    def history(self, workflow_id: str, since: int = 0) -> builtins.list[HistoryEntry]:
        """History rows of a workflow in the order they were written; `since` a seq to tail."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM history WHERE workflow_id = ? AND seq > ? ORDER BY seq",
                (workflow_id, since)).fetchall()
        return [HistoryEntry(r["seq"], r["time"], r["workflow_id"], r["task"], r["event"], r["detail"])
                for r in rows]

    def history_after(self, since: int, limit: int = 1000
                      ) -> builtins.list[tuple[HistoryEntry, str, str]]:
        """Every workflow's history rows after `since` (a global seq), with each workflow's
        kind and subject: what the DevTower tails to show task changes live."""
        with self._lock:
            rows = self._db.execute(
                "SELECT h.*, w.kind AS kind, w.subject AS subject FROM history h"
                " JOIN workflows w ON w.id = h.workflow_id WHERE h.seq > ? ORDER BY h.seq LIMIT ?",
                (since, limit)).fetchall()
        return [(HistoryEntry(r["seq"], r["time"], r["workflow_id"], r["task"], r["event"],
                              r["detail"]), r["kind"], r["subject"]) for r in rows]

    # -- changes written by the engine ----------------------------------------------------

    def workflow_started(self, workflow_id: str, *, resumed: bool) -> str:
        event = "resumed" if resumed else "started"
        self._set_workflow(workflow_id, event, "", state=WorkflowState.RUNNING.value)
        return event

    def workflow_failing(self, workflow_id: str, task: str | None, error: str) -> None:
        """Record the failure first, so a crash during cancel/cleanup resumes into them."""
        self._set_workflow(workflow_id, "failing", error, error=error, failed_task=task)

    def workflow_finished(self, workflow_id: str, state: WorkflowState, error: str | None) -> None:
        self._set_workflow(workflow_id, state.value, error or "", state=state.value, error=error)

    def cleanup_changed(self, workflow_id: str, state: str, detail: str) -> None:
        self._set_workflow(workflow_id, f"on_failure {state}", detail, cleanup=state)

    def task_started(self, workflow_id: str, name: str) -> int:
        """Mark a task running for one more attempt; returns the attempt number (1-based)."""
        now = self._now()
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET state = ?, attempts = attempts + 1, started = ?, finished = NULL"
                " WHERE workflow_id = ? AND name = ?",
                (TaskState.RUNNING.value, now, workflow_id, name))
            attempt = int(db.execute("SELECT attempts FROM tasks WHERE workflow_id = ? AND name = ?",
                                     (workflow_id, name)).fetchone()[0])
            self._touch(db, now, workflow_id, name, TaskState.RUNNING.value, f"attempt {attempt}")
        return attempt

    def task_progress(self, workflow_id: str, name: str, progress: str) -> None:
        self._set_task(workflow_id, name, "progress", progress, progress=progress)

    def task_retrying(self, workflow_id: str, name: str, error: str, delay: float) -> str:
        detail = f"{error}; retrying in {delay:g}s"
        self._set_task(workflow_id, name, "retrying", detail, error=error)
        return detail

    def task_succeeded(self, workflow_id: str, name: str, result_json: str) -> None:
        self._set_task(workflow_id, name, TaskState.SUCCEEDED.value, "", state=TaskState.SUCCEEDED.value,
                       result=result_json, error=None, finished=self._now())

    def task_finished(self, workflow_id: str, name: str, state: TaskState, error: str) -> None:
        """A task ends without a result: failed or cancelled, with the reason."""
        self._set_task(workflow_id, name, state.value, error, state=state.value, error=error,
                       finished=self._now())

    def task_interrupted(self, workflow_id: str, name: str) -> str:
        """A task found running after a restart goes back to pending, to run again."""
        detail = "was running when the engine stopped; running it again"
        self._set_task(workflow_id, name, "interrupted", detail, state=TaskState.PENDING.value)
        return detail

    def cancel_unfinished(self, workflow_id: str, reason: str) -> builtins.list[str]:
        """Cancel every task not finished; returns their names."""
        now = self._now()
        with self._tx() as db:
            names = [r["name"] for r in db.execute(
                "SELECT name FROM tasks WHERE workflow_id = ? AND state IN (?, ?) ORDER BY position",
                (workflow_id, TaskState.PENDING.value, TaskState.RUNNING.value))]
            for name in names:
                db.execute(
                    "UPDATE tasks SET state = ?, error = ?, finished = ? WHERE workflow_id = ? AND name = ?",
                    (TaskState.CANCELLED.value, reason, now, workflow_id, name))
                self._touch(db, now, workflow_id, name, TaskState.CANCELLED.value, reason)
        return names

    # -- internals ----------------------------------------------------------------------

    def _set_workflow(self, workflow_id: str, event: str, detail: str, **columns: Any) -> None:
        now = self._now()
        with self._tx() as db:
            sets = "".join(f", {c} = ?" for c in columns)
            cur = db.execute(f"UPDATE workflows SET updated = ?{sets} WHERE id = ?",
                             (now, *columns.values(), workflow_id))
            if cur.rowcount == 0:
                raise WorkflowNotFound(f"no workflow {workflow_id!r}")
            self._history(db, now, workflow_id, None, event, detail)

    def _set_task(self, workflow_id: str, name: str, event: str, detail: str, **columns: Any) -> None:
        now = self._now()
        with self._tx() as db:
            sets = ", ".join(f"{c} = ?" for c in columns)
            cur = db.execute(f"UPDATE tasks SET {sets} WHERE workflow_id = ? AND name = ?",
                             (*columns.values(), workflow_id, name))
            if cur.rowcount == 0:
                raise WorkflowNotFound(f"no task {name!r} in workflow {workflow_id!r}")
            self._touch(db, now, workflow_id, name, event, detail)

    def _touch(self, db: sqlite3.Connection, now: float, workflow_id: str, task: str, event: str,
               detail: str) -> None:
        db.execute("UPDATE workflows SET updated = ? WHERE id = ?", (now, workflow_id))
        self._history(db, now, workflow_id, task, event, detail)

    @staticmethod
    def _history(db: sqlite3.Connection, now: float, workflow_id: str, task: str | None, event: str,
                 detail: str) -> None:
        db.execute("INSERT INTO history (time, workflow_id, task, event, detail) VALUES (?, ?, ?, ?, ?)",
                   (now, workflow_id, task, event, detail))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _workflow(row: sqlite3.Row, tasks: builtins.list[sqlite3.Row]) -> WorkflowRecord:
    return WorkflowRecord(
        id=row["id"], kind=row["kind"], subject=row["subject"],
        spec=WorkflowSpec.from_dict(json.loads(row["spec"])), input=json.loads(row["input"]),
        state=WorkflowState(row["state"]), error=row["error"], failed_task=row["failed_task"],
        cleanup=row["cleanup"], created=row["created"], updated=row["updated"],
        tasks=tuple(
            TaskRecord(name=t["name"], spec=TaskSpec.from_dict(json.loads(t["spec"])),
                       state=TaskState(t["state"]), attempts=t["attempts"], result=_loads(t["result"]),
                       error=t["error"], started=t["started"], finished=t["finished"],
                       progress=t["progress"])
            for t in tasks),
    )
