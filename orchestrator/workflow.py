"""A small persistent workflow engine: a graph of idempotent tasks, retried, timed out, resumable.

A request becomes a `WorkflowSpec`: tasks (`TaskSpec`) that name an *action* by a string key
into an `ActionRegistry`, wait for the tasks listed in `after`, and run in parallel when they
can. The `Engine` persists every state change to a `WorkflowStore` (SQLite, `store.py`)
before and after each attempt, so a new process can pick a killed run up with `resume_all()`.

Why a small engine in-process, and not Mistral, Celery, Airflow or Temporal
---------------------------------------------------------------------------
The seed used OpenStack Mistral, which needs Keystone, a message queue (RabbitMQ) and a
database service of its own. Celery needs a broker and a result backend, and gives task
queues, not a DAG with joins and durable per-task state. Airflow is a scheduler, a web
server and a metadata database built around periodic DAG runs, not on-demand requests.
Temporal needs its own server cluster (and Cassandra or Postgres). Our machines run one
orchestrator process next to one Kafka-protocol broker (see RUNTIME.md): every one of those
would be a second distributed system to install, start and keep alive for what is here a
few hundred lines: a DAG check, a thread pool, retries with backoff, a deadline per attempt
and three SQLite tables. Owning it also lets the task history feed `overcloud show` directly.

The idempotency contract for actions — READ THIS BEFORE WRITING ONE
-------------------------------------------------------------------
The engine runs an action *at least once* per task, never "exactly once". It runs it again:

* after a failed attempt (retries with backoff);
* after a timed-out attempt — and the timed-out attempt's thread cannot be killed: it is
  told so through `ctx.cancelled` and may still be running while the next attempt starts;
* after a crash: a task found `running` in the store is run again by `resume_all()`, even if
  its action had finished and only the "succeeded" write was lost;
* when the same request is delivered twice (the store's `create` is idempotent on the
  request's id, so it is the same workflow, but its unfinished tasks run).

So every action must be safe to repeat, including concurrently with a stale twin of itself:
look before creating, name what you create deterministically (from the workflow's subject
and the task's args, never a random suffix), treat "already exists / already gone" as
success, and return the same result either way. An action that creates a container named
`<overcloud>-node-1` checks for it first and adopts it; it never creates `...-node-1-2`.

Errors say what to do (`overcloud.errors`): `PermanentError` fails the task at once;
`TemporaryError(delay)` retries after max(delay, backoff); any other exception retries with
backoff. A task whose `retries` run out fails; if it is `critical` (the default) the workflow
fails: tasks not started are cancelled, the optional `on_failure` action runs once, and the
workflow's error reads "<task>: <reason>". A failed non-critical task is recorded and its
dependents still run (its name is then missing from their `ctx.results`).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from overcloud.errors import OverCloudError, PermanentError, TemporaryError

if TYPE_CHECKING:
    from orchestrator.store import WorkflowRecord, WorkflowStore

log = logging.getLogger(__name__)


class WorkflowState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED)


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class WorkflowSpecError(ValueError):
    """A workflow definition that cannot run (duplicate names, unknown or cyclic `after`)."""


class TaskTimeout(TimeoutError):
    """One attempt ran past its task's `timeout`; it counts as a failed attempt."""


def to_json(value: Any, what: str) -> str:
    """Strict JSON text of `value`, or `WorkflowSpecError` naming `what` is not JSON-able."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise WorkflowSpecError(f"{what} is not JSON-able: {exc}") from None


# ---------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class TaskSpec:
    """One node of the graph. Everything in it is JSON, so a resumed process rebuilds it."""

    name: str
    action: str
    """Key into the `ActionRegistry` (a name, not a closure: a new process must find it)."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able arguments, given to the action as `ctx.args`."""
    after: tuple[str, ...] = ()
    """Tasks that must succeed first; their results arrive in `ctx.results`."""
    retries: int = 3
    """Attempts after the first one; 0 = one attempt only."""
    backoff: float = 1.0
    """Seconds before the first retry; doubles at each retry up to `backoff_max`."""
    backoff_max: float = 60.0
    timeout: float | None = 600.0
    """Seconds one attempt may take; past it the attempt failed ("timed out"). None: no limit."""
    critical: bool = True
    """False: a failure is recorded but does not fail the workflow."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", tuple(self.after))
        object.__setattr__(self, "args", dict(self.args))
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append("a task name must be a non-empty string")
        if not isinstance(self.action, str) or not self.action:
            problems.append(f"task {self.name!r}: action must be a non-empty string")
        if not isinstance(self.retries, int) or self.retries < 0:
            problems.append(f"task {self.name!r}: retries must be an integer >= 0")
        if self.backoff < 0 or self.backoff_max < self.backoff:
            problems.append(f"task {self.name!r}: need 0 <= backoff <= backoff_max")
        if self.timeout is not None and self.timeout <= 0:
            problems.append(f"task {self.name!r}: timeout must be > 0 (or None)")
        if problems:
            raise WorkflowSpecError("; ".join(problems))
        to_json(self.args, f"task {self.name!r} args")

    def delay(self, failures: int) -> float:
        """Backoff before the retry that follows failure number `failures` (1-based)."""
        return float(min(self.backoff * 2 ** (failures - 1), self.backoff_max))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "action": self.action, "args": dict(self.args),
            "after": list(self.after), "retries": self.retries, "backoff": self.backoff,
            "backoff_max": self.backoff_max, "timeout": self.timeout, "critical": self.critical,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        return cls(**{**data, "after": tuple(data.get("after", ()))})


@dataclass(frozen=True)
class WorkflowSpec:
    """A graph of tasks for one `kind` of work ("provision", "delete") on one `subject`."""

    kind: str
    subject: str
    tasks: tuple[TaskSpec, ...]
    on_failure: str | None = None
    """Action run once when the workflow fails (e.g. cleanup); its ctx.args name the failure."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        problems = []
        if not self.kind or not self.subject:
            problems.append("kind and subject must be non-empty")
        if not self.tasks:
            problems.append("a workflow needs at least one task")
        seen: set[str] = set()
        for task in self.tasks:
            if task.name in seen:
                problems.append(f"duplicate task name {task.name!r}")
            seen.add(task.name)
        for task in self.tasks:
            unknown = [name for name in task.after if name not in seen]
            if unknown:
                names = ", ".join(map(repr, unknown))
                problems.append(f"task {task.name!r} runs after unknown task(s) {names}")
        if not problems:
            cycle = _find_cycle({t.name: t.after for t in self.tasks})
            if cycle:
                steps = ", ".join(f"{a} waits for {b}" for a, b in itertools.pairwise(cycle))
                problems.append(f"dependency cycle {' -> '.join(cycle)} ({steps})")
        if problems:
            raise WorkflowSpecError(f"workflow {self.kind}/{self.subject}: " + "; ".join(problems))

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "on_failure": self.on_failure,
                "tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        return cls(data["kind"], data["subject"], tuple(TaskSpec.from_dict(t) for t in data["tasks"]),
                   data.get("on_failure"))


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] where each waits for the next, or None."""
    on_path: dict[str, int] = {}
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        on_path[node] = len(path)
        path.append(node)
        for dep in graph[node]:
            if dep in on_path:
                return [*path[on_path[dep]:], dep]
            if dep not in done:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        del on_path[node]
        done.add(node)
        return None

    for node in graph:
        if node not in done:
            found = visit(node)
            if found:
                return found
    return None


# -------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class TaskContext:
    """What an action gets: its args, its dependencies' results, the workflow input."""

    workflow_id: str
    task: str
    args: Mapping[str, Any]
    results: Mapping[str, Any]
    """Results of the tasks in `after` that succeeded, by task name (JSON round-tripped)."""
    input: Mapping[str, Any]
    attempt: int
    """1 for the first attempt; counts across restarts, so > 1 means "look for my leftovers"."""
    cancelled: threading.Event
    """Set when this attempt timed out or the workflow stopped; long actions should check it."""
    _report: Callable[[str], None] = field(repr=False)

    def report(self, progress: str) -> None:
        """Record a one-line progress note (stored, and sent to the engine's listener)."""
        self._report(progress)


Action = Callable[[TaskContext], Any]
A = TypeVar("A", bound=Action)


class ActionRegistry:
    """Actions by name. Tests and processes build their own; no global registry."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def action(self, name: str) -> Callable[[A], A]:
        """Decorator: `@actions.action("launch_node") def launch(ctx): ...`."""

        def register(fn: A) -> A:
            self.register(name, fn)
            return fn

        return register

    def register(self, name: str, fn: Action) -> None:
        if name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        self._actions[name] = fn

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise PermanentError(f"unknown action {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def missing(self, spec: WorkflowSpec) -> list[str]:
        """Action names `spec` uses that are not registered (check before `create`)."""
        names = [t.action for t in spec.tasks] + ([spec.on_failure] if spec.on_failure else [])
        return sorted({n for n in names if n not in self._actions})


# --------------------------------------------------------------------------------- clocks


class Sleeper(Protocol):
    """How the engine waits: backoff sleeps and attempt deadlines. Faked in tests."""

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        """Wait `seconds` or until `interrupt` is set; True when interrupted."""
        ...

    def wait(self, future: Future[Any], timeout: float | None) -> bool:
        """Wait for `future` at most `timeout` seconds (None: no limit); True when it is done."""
        ...


class RealSleeper:
    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        return interrupt.wait(seconds)

    def wait(self, future: Future[Any], timeout: float | None) -> bool:
        done, _ = wait_futures([future], timeout)
        return bool(done)


class FakeSleeper:
    """Fake time: sleeps return at once and advance it; deadlines pass only when it advances.

    `sleeps` records every backoff asked for. A `wait` with a timeout blocks (for real) until
    its future is done or someone moves the fake time past the deadline with `advance` (or
    another thread's `sleep`); `until_waiting(n)` lets a test know the engine is waiting.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._waiters = 0
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        with self._cond:
            self.sleeps.append(seconds)
        self.advance(seconds)
        return interrupt.is_set()

    def wait(self, future: Future[Any], timeout: float | None) -> bool:
        if timeout is None:
            wait_futures([future])
            return True
        future.add_done_callback(lambda _: self.advance(0))
        with self._cond:
            deadline = self._now + timeout
            self._waiters += 1
            self._cond.notify_all()
            try:
                while not future.done() and self._now < deadline:
                    self._cond.wait()
            finally:
                self._waiters -= 1
            return future.done()

    def until_waiting(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` threads are inside `wait` with a deadline."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._waiters >= count, timeout):
                raise TimeoutError(f"fewer than {count} waiter(s) after {timeout:g}s")


# --------------------------------------------------------------------------------- engine

Listener = Callable[[str, str | None, str, str], None]
"""`(workflow_id, task, event, detail)`, called after each history row is written, with the
same values. Task events: "running" (detail "attempt N"), "progress", "retrying",
"succeeded", "failed", "cancelled", "interrupted". Workflow events (task None): "started",
"resumed", "failing", "on_failure ...", "succeeded", "failed", "cancelled" ("created" is
written by the store, before any engine is involved). A listener that raises is
logged and ignored; it runs on engine threads, so it should be quick (e.g. publish)."""


class _Run:
    """One workflow being driven by this engine: its stop switch and live attempts."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.stop = threading.Event()
        self.cancel_requested = False
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._attempts: set[threading.Event] = set()

    def attempt_started(self) -> threading.Event:
        cancelled = threading.Event()
        with self._lock:
            self._attempts.add(cancelled)
            if self.stop.is_set():
                cancelled.set()
        return cancelled

    def attempt_ended(self, cancelled: threading.Event) -> None:
        with self._lock:
            self._attempts.discard(cancelled)

    def halt(self) -> None:
        with self._lock:
            self.stop.set()
            for cancelled in self._attempts:
                cancelled.set()


@dataclass(frozen=True)
class _Outcome:
    state: TaskState
    result: Any = None
    error: str | None = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OverCloudError | TaskTimeout):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Engine:
    """Drives workflows from a `WorkflowStore` with actions from an `ActionRegistry`.

    `max_parallel` caps the tasks of one workflow running at once. One engine may drive
    several workflows (each `run` in its own thread, or `submit`); a second `run` of a
    workflow this engine is already driving waits for the first instead of running it twice.
    Only one engine process should drive a given store file at a time.
    """

    def __init__(self, store: WorkflowStore, actions: ActionRegistry, max_parallel: int = 8,
                 clock: Sleeper | None = None, listener: Listener | None = None) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be >= 1")
        self._store = store
        self._actions = actions
        self._max_parallel = max_parallel
        self._clock: Sleeper = clock or RealSleeper()
        self._listener = listener
        self._lock = threading.Lock()
        self._active: dict[str, _Run] = {}

    # -- public ---------------------------------------------------------------------------

    def run(self, workflow_id: str) -> WorkflowState:
        """Run `workflow_id` to its end (or resume it) and return its final state."""
        with self._lock:
            run = self._active.get(workflow_id)
            owner = run is None
            if run is None:
                run = self._active[workflow_id] = _Run(workflow_id)
        if not owner:
            run.finished.wait()
            return self._store.get(workflow_id).state
        try:
            return self._drive(run)
        finally:
            with self._lock:
                del self._active[workflow_id]
            run.finished.set()

    def submit(self, workflow_id: str) -> Future[WorkflowState]:
        """`run` in a background thread; the future holds the final state."""
        future: Future[WorkflowState] = Future()

        def body() -> None:
            try:
                future.set_result(self.run(workflow_id))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=body, name=f"workflow-{workflow_id}", daemon=True).start()
        return future

    def resume_all(self) -> dict[str, WorkflowState]:
        """Run every workflow the store holds as pending or running (after a crash)."""
        ids = [w.id for w in self._store.list(state=WorkflowState.RUNNING)]
        ids += [w.id for w in self._store.list(state=WorkflowState.PENDING)]
        futures = {wid: self.submit(wid) for wid in ids}
        return {wid: future.result() for wid, future in futures.items()}

    def cancel(self, workflow_id: str) -> None:
        """Stop a workflow: no new attempts, unstarted tasks cancelled, state `cancelled`.

        Attempts already running finish (their results are kept); `on_failure` does not run.
        """
        with self._lock:
            run = self._active.get(workflow_id)
            if run is not None:
                run.cancel_requested = True
                run.halt()
                return
        if not self._store.get(workflow_id).state.finished:
            self._finish_unfinished(workflow_id, "workflow cancelled")
            self._store.workflow_finished(workflow_id, WorkflowState.CANCELLED, "cancelled")
            self._notify(workflow_id, None, WorkflowState.CANCELLED, "cancelled")

    # -- driving ----------------------------------------------------------------------------

    def _drive(self, run: _Run) -> WorkflowState:
        wid = run.workflow_id
        wf = self._store.get(wid)
        if wf.state.finished:
            return wf.state
        resumed = wf.state is WorkflowState.RUNNING
        event = self._store.workflow_started(wid, resumed=resumed)
        self._notify(wid, None, event, "")
        states = {t.name: t.state for t in wf.tasks}
        results = {t.name: t.result for t in wf.tasks if t.state is TaskState.SUCCEEDED}
        failure = (wf.failed_task, wf.error) if wf.error is not None else None
        for task in wf.tasks:
            if failure is None and task.state is TaskState.FAILED and task.spec.critical:
                # the process stopped between "task failed" and "workflow failing"
                failure = (task.name, f"{task.name}: {task.error or 'failed'}")
                self._store.workflow_failing(wid, *failure)
                self._notify(wid, None, "failing", failure[1])
        if failure is None:
            for task in wf.tasks:
                if task.state is TaskState.RUNNING:
                    detail = self._store.task_interrupted(wid, task.name)
                    self._notify(wid, task.name, "interrupted", detail)
                    states[task.name] = TaskState.PENDING
            failure = self._schedule(run, wf, states, results)
        if failure is not None:
            task_name, error = failure
            self._finish_unfinished(wid, f"cancelled: {error}")
            self._run_on_failure(wf, task_name, error, results)
            self._store.workflow_finished(wid, WorkflowState.FAILED, error)
            self._notify(wid, None, WorkflowState.FAILED, error)
            return WorkflowState.FAILED
        unrun = any(s in (TaskState.PENDING, TaskState.CANCELLED) for s in states.values())
        if run.cancel_requested or unrun:
            # tasks left unrun without a failure: this run was cancelled (or a cancel was
            # interrupted by a crash, which leaves cancelled tasks behind it)
            self._finish_unfinished(wid, "workflow cancelled")
            self._store.workflow_finished(wid, WorkflowState.CANCELLED, "cancelled")
            self._notify(wid, None, WorkflowState.CANCELLED, "cancelled")
            return WorkflowState.CANCELLED
        self._store.workflow_finished(wid, WorkflowState.SUCCEEDED, None)
        self._notify(wid, None, WorkflowState.SUCCEEDED, "")
        return WorkflowState.SUCCEEDED

    def _schedule(self, run: _Run, wf: WorkflowRecord, states: dict[str, TaskState],
                  results: dict[str, Any]) -> tuple[str | None, str] | None:
        """Start every ready task, collect outcomes, until nothing runs.

        Returns the first critical failure as (task, "<task>: <reason>"), or None.
        """
        spec = wf.spec
        failure: tuple[str | None, str] | None = None

        def settled(name: str) -> bool:
            state = states[name]
            if state is TaskState.FAILED:
                return not spec.task(name).critical  # a failed optional task does not block
            return state is TaskState.SUCCEEDED

        with ThreadPoolExecutor(self._max_parallel, thread_name_prefix=f"wf-{wf.id[:8]}") as pool:
            running: dict[Future[_Outcome], str] = {}
            try:
                while True:
                    if failure is None and not run.stop.is_set():
                        for task in spec.tasks:
                            if states[task.name] is TaskState.PENDING and all(map(settled, task.after)):
                                deps = {d: results[d] for d in task.after if d in results}
                                running[pool.submit(self._run_task, run, wf, task, deps)] = task.name
                                states[task.name] = TaskState.RUNNING
                    if not running:
                        return failure
                    done, _ = wait_futures(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        outcome = future.result()
                        states[name] = outcome.state
                        if outcome.state is TaskState.SUCCEEDED:
                            results[name] = outcome.result
                        elif (outcome.state is TaskState.FAILED and spec.task(name).critical
                              and failure is None):
                            failure = (name, f"{name}: {outcome.error or 'failed'}")
                            self._store.workflow_failing(wf.id, name, failure[1])
                            self._notify(wf.id, None, "failing", failure[1])
                            run.halt()
            except BaseException:
                run.halt()
                raise

    def _run_task(self, run: _Run, wf: WorkflowRecord, task: TaskSpec, deps: dict[str, Any]) -> _Outcome:
        """All attempts of one task; every state change is written before it is acted on."""
        wid = wf.id
        failures = 0
        while True:
            if run.stop.is_set():
                return self._cancel_task(wid, task.name, "workflow stopped")
            attempt = self._store.task_started(wid, task.name)
            self._notify(wid, task.name, TaskState.RUNNING, f"attempt {attempt}")
            try:
                value = self._attempt(run, wf, task, deps, attempt)
            except PermanentError as exc:
                return self._fail_task(wid, task.name, _describe(exc))
            except Exception as exc:
                failures += 1
                error = _describe(exc)
                if failures > task.retries:
                    if failures > 1:
                        error = f"{error} (gave up after {failures} attempts)"
                    return self._fail_task(wid, task.name, error)
                delay = task.delay(failures)
                if isinstance(exc, TemporaryError):
                    delay = max(delay, exc.delay)
                detail = self._store.task_retrying(wid, task.name, error, delay)
                self._notify(wid, task.name, "retrying", detail)
                if self._clock.sleep(delay, run.stop):
                    return self._cancel_task(wid, task.name, "workflow stopped")
            else:
                self._store.task_succeeded(wid, task.name, value)
                self._notify(wid, task.name, TaskState.SUCCEEDED, "")
                return _Outcome(TaskState.SUCCEEDED, json.loads(value))

    def _attempt(self, run: _Run, wf: WorkflowRecord, task: TaskSpec, deps: dict[str, Any],
                 attempt: int) -> str:
        """One attempt, in a worker thread when it has a deadline; the result as JSON text."""
        action = self._actions.get(task.action)
        cancelled = run.attempt_started()
        timed_out = threading.Event()

        def report(progress: str) -> None:
            if timed_out.is_set():
                return  # a stale attempt left running in the background: not ours to report
            self._store.task_progress(wf.id, task.name, progress)
            self._notify(wf.id, task.name, "progress", progress)

        ctx = TaskContext(wf.id, task.name, task.args, deps, wf.input, attempt, cancelled, report)
        try:
            if task.timeout is None:
                value = action(ctx)
            else:
                future: Future[Any] = Future()

                def body() -> None:
                    future.set_running_or_notify_cancel()
                    try:
                        future.set_result(action(ctx))
                    except BaseException as exc:
                        future.set_exception(exc)

                threading.Thread(target=body, name=f"{task.name}#{attempt}", daemon=True).start()
                if not self._clock.wait(future, task.timeout):
                    timed_out.set()
                    cancelled.set()
                    raise TaskTimeout(f"timed out after {task.timeout:g}s")
                value = future.result()
        finally:
            run.attempt_ended(cancelled)
        try:
            return to_json(value, f"the result of action {task.action!r}")
        except WorkflowSpecError as exc:
            raise PermanentError(str(exc)) from None

    # -- endings ----------------------------------------------------------------------------

    def _fail_task(self, wid: str, name: str, error: str) -> _Outcome:
        self._store.task_finished(wid, name, TaskState.FAILED, error)
        self._notify(wid, name, TaskState.FAILED, error)
        return _Outcome(TaskState.FAILED, error=error)

    def _cancel_task(self, wid: str, name: str, reason: str) -> _Outcome:
        self._store.task_finished(wid, name, TaskState.CANCELLED, reason)
        self._notify(wid, name, TaskState.CANCELLED, reason)
        return _Outcome(TaskState.CANCELLED, error=reason)

    def _finish_unfinished(self, wid: str, reason: str) -> None:
        for name in self._store.cancel_unfinished(wid, reason):
            self._notify(wid, name, TaskState.CANCELLED, reason)

    def _run_on_failure(self, wf: WorkflowRecord, task: str | None, error: str,
                        results: Mapping[str, Any]) -> None:
        """The workflow's `on_failure` action, once (again only if a crash interrupted it)."""
        name = wf.spec.on_failure
        if not name or self._store.get(wf.id).cleanup in ("succeeded", "failed"):
            return
        self._store.cleanup_changed(wf.id, "running", name)
        self._notify(wf.id, None, "on_failure running", name)
        ctx = TaskContext(wf.id, "on_failure", {"failed_task": task, "error": error}, dict(results),
                          wf.input, 1, threading.Event(), lambda progress: None)
        try:
            self._actions.get(name)(ctx)
        except Exception as exc:
            log.exception("on_failure action %s of workflow %s failed", name, wf.id)
            detail = f"{name}: {_describe(exc)}"
            self._store.cleanup_changed(wf.id, "failed", detail)
            self._notify(wf.id, None, "on_failure failed", detail)
        else:
            self._store.cleanup_changed(wf.id, "succeeded", name)
            self._notify(wf.id, None, "on_failure succeeded", name)

    def _notify(self, wid: str, task: str | None, event: str, detail: str) -> None:
        if self._listener is None:
            return
        try:
            self._listener(wid, task, str(event), detail)
        except Exception:
            log.exception("workflow listener failed on %s %s %s", wid, task, event)
