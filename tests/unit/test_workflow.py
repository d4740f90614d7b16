"""The workflow engine: graph checks, parallel branches and joins, retries, timeouts, failure
handling, idempotent creation, and resume after a crash (simulated, and a real SIGKILL).

No test sleeps: parallelism is shown with a Barrier, hanging attempts with Events, backoff
with the fake sleeper, and the crash test waits on conditions in the store and a log file.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import WorkflowConflict, WorkflowNotFound, WorkflowStore
from orchestrator.workflow import (
    ActionRegistry,
    Engine,
    FakeSleeper,
    TaskContext,
    TaskSpec,
    TaskState,
    WorkflowSpec,
    WorkflowSpecError,
    WorkflowState,
)
from overcloud.errors import PermanentError, TemporaryError
from overcloud.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WorkflowStore]:
    with WorkflowStore(tmp_path / "workflows.db") as s:
        yield s


@pytest.fixture
def actions() -> ActionRegistry:
    return ActionRegistry()


def spec(*tasks: TaskSpec, on_failure: str | None = None) -> WorkflowSpec:
    return WorkflowSpec("provision", "oc1", tasks, on_failure=on_failure)


def events(store: WorkflowStore, wid: str) -> list[tuple[str | None, str]]:
    return [(h.task, h.event) for h in store.history(wid)]


class Calls:
    """Thread-safe invocation counter, by task name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count: collections.Counter[str] = collections.Counter()

    def __call__(self, ctx: TaskContext) -> int:
        with self._lock:
            self.count[ctx.task] += 1
            return self.count[ctx.task]


# ------------------------------------------------------------------------- graph checks


def test_cycle_is_rejected_with_the_cycle_named() -> None:
    with pytest.raises(WorkflowSpecError) as err:
        spec(TaskSpec("a", "x", after=("c",)), TaskSpec("b", "x", after=("a",)),
             TaskSpec("c", "x", after=("b",)), TaskSpec("d", "x"))
    message = str(err.value)
    assert "dependency cycle a -> c -> b -> a" in message
    assert "a waits for c, c waits for b, b waits for a" in message


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(WorkflowSpecError, match="cycle a -> a"):
        spec(TaskSpec("a", "x", after=("a",)))


def test_unknown_dependency_and_duplicates_reported_together() -> None:
    with pytest.raises(WorkflowSpecError) as err:
        spec(TaskSpec("a", "x"), TaskSpec("a", "x"), TaskSpec("b", "x", after=("a", "nope")))
    assert "duplicate task name 'a'" in str(err.value)
    assert "task 'b' runs after unknown task(s) 'nope'" in str(err.value)


def test_task_spec_checks_its_fields() -> None:
    with pytest.raises(WorkflowSpecError, match="retries"):
        TaskSpec("a", "x", retries=-1)
    with pytest.raises(WorkflowSpecError, match="timeout"):
        TaskSpec("a", "x", timeout=0)
    with pytest.raises(WorkflowSpecError, match="not JSON-able"):
        TaskSpec("a", "x", args={"when": object()})


def test_spec_round_trips_through_json() -> None:
    original = spec(TaskSpec("a", "x", {"n": 1}), TaskSpec("b", "y", after=("a",), retries=0,
                                                         timeout=None, critical=False), on_failure="undo")
    assert WorkflowSpec.from_dict(original.to_dict()) == original


def test_registry_refuses_duplicates_and_lists_missing(actions: ActionRegistry) -> None:
    @actions.action("x")
    def x(ctx: TaskContext) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        actions.register("x", x)
    assert actions.missing(spec(TaskSpec("a", "x"), TaskSpec("b", "y"), on_failure="z")) == ["y", "z"]


# ------------------------------------------------------------------------------ running


def test_diamond_runs_branches_in_parallel_and_joins(store: WorkflowStore, actions: ActionRegistry) -> None:
    both_inside = threading.Barrier(2, timeout=10)  # passes only if b and c run at the same time

    @actions.action("root")
    def root(ctx: TaskContext) -> int:
        return int(ctx.input["base"])

    @actions.action("branch")
    def branch(ctx: TaskContext) -> int:
        both_inside.wait()
        return int(ctx.results["a"]) + int(ctx.args["add"])

    @actions.action("join")
    def join(ctx: TaskContext) -> dict[str, Any]:
        return {"sum": ctx.results["b"] + ctx.results["c"], "seen": sorted(ctx.results)}

    wid = store.create(spec(
        TaskSpec("a", "root"),
        TaskSpec("b", "branch", {"add": 1}, after=("a",), retries=0),
        TaskSpec("c", "branch", {"add": 2}, after=("a",), retries=0),
        TaskSpec("d", "join", after=("b", "c")),
    ), {"base": 10})
    assert Engine(store, actions).run(wid) is WorkflowState.SUCCEEDED

    wf = store.get(wid)
    assert wf.task("d").result == {"sum": 23, "seen": ["b", "c"]}
    assert [t.state for t in wf.tasks] == [TaskState.SUCCEEDED] * 4
    assert [t.attempts for t in wf.tasks] == [1, 1, 1, 1]
    seqs = {(h.task, h.event): h.seq for h in store.history(wid)}
    assert seqs[("a", "succeeded")] < min(seqs[("b", "running")], seqs[("c", "running")])
    assert max(seqs[("b", "succeeded")], seqs[("c", "succeeded")]) < seqs[("d", "running")]
    history = store.history(wid)
    assert [h.seq for h in history] == sorted(h.seq for h in history)
    assert (history[0].event, history[1].event, history[-1].event) == ("created", "started", "succeeded")


def test_retries_with_doubling_backoff_then_success(store: WorkflowStore, actions: ActionRegistry) -> None:
    attempts: list[int] = []

    @actions.action("flaky")
    def flaky(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("LXD not answering")
        return "up"

    clock = FakeSleeper()
    wid = store.create(spec(TaskSpec("a", "flaky", retries=3, backoff=2)))
    assert Engine(store, actions, clock=clock).run(wid) is WorkflowState.SUCCEEDED
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [2, 4]
    task = store.get(wid).task("a")
    assert (task.attempts, task.result, task.error) == (3, "up", None)
    retrying = [h.detail for h in store.history(wid) if h.event == "retrying"]
    assert retrying == ["ConnectionError: LXD not answering; retrying in 2s",
                        "ConnectionError: LXD not answering; retrying in 4s"]


def test_backoff_is_capped_and_temporary_error_delay_wins(store: WorkflowStore,
                                                          actions: ActionRegistry) -> None:
    @actions.action("busy")
    def busy(ctx: TaskContext) -> None:
        raise TemporaryError("image lock held", delay=7) if ctx.attempt == 1 else RuntimeError("still")

    clock = FakeSleeper()
    wid = store.create(spec(TaskSpec("a", "busy", retries=4, backoff=1, backoff_max=3)))
    assert Engine(store, actions, clock=clock).run(wid) is WorkflowState.FAILED
    assert clock.sleeps == [7, 2, 3, 3]
    assert store.get(wid).error == "a: RuntimeError: still (gave up after 5 attempts)"


def test_permanent_error_fails_at_once_and_cancels_the_rest(store: WorkflowStore,
                                                           actions: ActionRegistry) -> None:
    calls = Calls()
    actions.register("ok", calls)

    @actions.action("broken")
    def broken(ctx: TaskContext) -> None:
        calls(ctx)
        raise PermanentError("no image 'node-v3' on host lxd1")

    clock = FakeSleeper()
    wid = store.create(spec(TaskSpec("a", "ok"), TaskSpec("b", "broken", after=("a",), retries=5),
                            TaskSpec("c", "ok", after=("b",))))
    assert Engine(store, actions, clock=clock).run(wid) is WorkflowState.FAILED
    assert calls.count == {"a": 1, "b": 1}
    assert clock.sleeps == []
    wf = store.get(wid)
    assert wf.error == "b: no image 'node-v3' on host lxd1"
    assert [t.state for t in wf.tasks] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED]


def test_unknown_action_and_unserialisable_result_fail_permanently(store: WorkflowStore,
                                                                   actions: ActionRegistry) -> None:
    @actions.action("weird")
    def weird(ctx: TaskContext) -> object:
        return object()

    wid = store.create(spec(TaskSpec("a", "nope")))
    assert Engine(store, actions).run(wid) is WorkflowState.FAILED
    assert store.get(wid).error == "a: unknown action 'nope'"
    wid = store.create(spec(TaskSpec("a", "weird")))
    assert Engine(store, actions).run(wid) is WorkflowState.FAILED
    assert "the result of action 'weird' is not JSON-able" in (store.get(wid).error or "")
    assert store.get(wid).task("a").attempts == 1


def test_hanging_attempt_times_out_each_time(store: WorkflowStore, actions: ActionRegistry) -> None:
    release = threading.Event()
    contexts: list[TaskContext] = []

    @actions.action("hang")
    def hang(ctx: TaskContext) -> str:
        contexts.append(ctx)
        release.wait(30)
        ctx.report("late progress from an abandoned attempt")
        return "too late"

    try:
        wid = store.create(spec(TaskSpec("a", "hang", retries=1, backoff=0, timeout=0.05)))
        assert Engine(store, actions).run(wid) is WorkflowState.FAILED
        task = store.get(wid).task("a")
        assert (task.state, task.attempts) == (TaskState.FAILED, 2)
        assert store.get(wid).error == "a: timed out after 0.05s (gave up after 2 attempts)"
        assert all(ctx.cancelled.is_set() for ctx in contexts)
    finally:
        release.set()
    # the abandoned attempts finish in the background without touching the store
    threads = [t for t in threading.enumerate() if t.name.startswith("a#")]
    for t in threads:
        t.join(10)
    assert store.get(wid).task("a").state is TaskState.FAILED
    assert store.get(wid).task("a").progress is None


def test_timeout_on_a_fake_clock(store: WorkflowStore, actions: ActionRegistry) -> None:
    inside, release = threading.Event(), threading.Event()

    @actions.action("hang")
    def hang(ctx: TaskContext) -> None:
        inside.set()
        release.wait(30)

    @actions.action("quick")
    def quick(ctx: TaskContext) -> str:
        return "done"

    clock = FakeSleeper()
    wid = store.create(spec(TaskSpec("a", "hang", retries=0, timeout=300),
                            TaskSpec("b", "quick", timeout=300, critical=False)))
    try:
        future = Engine(store, actions, clock=clock).submit(wid)
        assert inside.wait(10)
        wait_until(lambda: store.get(wid).task("b").state is TaskState.SUCCEEDED, 10, what="b done")
        clock.until_waiting(1)  # now only a's deadline is pending
        clock.advance(299)
        assert not future.done() and store.get(wid).task("a").state is TaskState.RUNNING
        clock.advance(1)
        assert future.result(10) is WorkflowState.FAILED
    finally:
        release.set()
    wf = store.get(wid)
    assert wf.error == "a: timed out after 300s"
    assert wf.task("b").state is TaskState.SUCCEEDED


def test_failure_runs_on_failure_once_and_cancels_downstream(store: WorkflowStore,
                                                            actions: ActionRegistry) -> None:
    calls = Calls()
    cleanups: list[TaskContext] = []
    actions.register("ok", calls)

    @actions.action("fail")
    def fail(ctx: TaskContext) -> None:
        raise PermanentError("compose up: port 8080 in use")

    @actions.action("cleanup")
    def cleanup(ctx: TaskContext) -> None:
        cleanups.append(ctx)

    wid = store.create(spec(TaskSpec("choose", "ok"), TaskSpec("launch", "fail", after=("choose",)),
                            TaskSpec("deploy", "ok", after=("launch",)),
                            TaskSpec("verify", "ok", after=("deploy",)), on_failure="cleanup"),
                       {"name": "oc1"})
    heard: list[tuple[str | None, str]] = []
    engine = Engine(store, actions, listener=lambda _, task, event, detail: heard.append((task, event)))
    assert engine.run(wid) is WorkflowState.FAILED
    assert engine.run(wid) is WorkflowState.FAILED  # a finished workflow is not run again
    assert heard == events(store, wid)[1:]
    assert calls.count == {"choose": 1}
    assert len(cleanups) == 1
    ctx = cleanups[0]
    assert ctx.args == {"failed_task": "launch", "error": "launch: compose up: port 8080 in use"}
    assert ctx.results == {"choose": 1} and ctx.input == {"name": "oc1"}
    wf = store.get(wid)
    assert (wf.state, wf.error, wf.cleanup) == (WorkflowState.FAILED, "launch: compose up: port 8080 in use",
                                               "succeeded")
    assert [t.state for t in wf.tasks] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                                           TaskState.CANCELLED]
    assert events(store, wid)[-7:] == [
        ("launch", "failed"), (None, "failing"), ("deploy", "cancelled"), ("verify", "cancelled"),
        (None, "on_failure running"), (None, "on_failure succeeded"), (None, "failed"),
    ]


def test_a_failing_on_failure_is_recorded_not_raised(store: WorkflowStore, actions: ActionRegistry) -> None:
    @actions.action("fail")
    def fail(ctx: TaskContext) -> None:
        raise PermanentError("boom")

    @actions.action("cleanup")
    def cleanup(ctx: TaskContext) -> None:
        raise RuntimeError("host lxd2 unreachable")

    wid = store.create(spec(TaskSpec("a", "fail"), on_failure="cleanup"))
    assert Engine(store, actions).run(wid) is WorkflowState.FAILED
    wf = store.get(wid)
    assert (wf.error, wf.cleanup) == ("a: boom", "failed")
    assert [h.detail for h in store.history(wid) if h.event == "on_failure failed"] == [
        "cleanup: RuntimeError: host lxd2 unreachable"]


def test_failed_optional_task_does_not_fail_the_workflow(store: WorkflowStore,
                                                          actions: ActionRegistry) -> None:
    seen: list[list[str]] = []

    @actions.action("ok")
    def ok(ctx: TaskContext) -> str:
        seen.append(sorted(ctx.results))
        return ctx.task

    @actions.action("fail")
    def fail(ctx: TaskContext) -> None:
        raise PermanentError("agent did not start")

    wid = store.create(spec(TaskSpec("verify", "ok"),
                            TaskSpec("agents", "fail", after=("verify",), critical=False),
                            TaskSpec("ready", "ok", after=("verify", "agents"))))
    assert Engine(store, actions).run(wid) is WorkflowState.SUCCEEDED
    assert seen == [[], ["verify"]]
    assert store.get(wid).task("agents").state is TaskState.FAILED
    assert store.get(wid).error is None


def test_progress_reports_are_stored_and_sent_to_the_listener(store: WorkflowStore,
                                                              actions: ActionRegistry) -> None:
    heard: list[tuple[str, str | None, str, str]] = []

    @actions.action("work")
    def work(ctx: TaskContext) -> None:
        ctx.report("image unpacked")
        ctx.report("container started")

    wid = store.create(spec(TaskSpec("a", "work"), TaskSpec("b", "work", after=("a",), timeout=None)))
    Engine(store, actions, listener=lambda *event: heard.append(event)).run(wid)
    assert store.get(wid).task("b").progress == "container started"
    history = [(h.task, h.event, h.detail) for h in store.history(wid)][1:]  # listener starts at "started"
    assert [(task, event, detail) for _, task, event, detail in heard] == history
    assert ("a", "progress", "image unpacked") in history


def test_cancel_stops_a_running_workflow(store: WorkflowStore, actions: ActionRegistry) -> None:
    inside, release = threading.Event(), threading.Event()
    calls = Calls()
    actions.register("ok", calls)

    @actions.action("slow")
    def slow(ctx: TaskContext) -> str:
        inside.set()
        release.wait(30)
        return "made"

    engine = Engine(store, actions)
    wid = store.create(spec(TaskSpec("a", "slow"), TaskSpec("b", "ok", after=("a",))))
    future = engine.submit(wid)
    assert inside.wait(10)
    engine.cancel(wid)
    release.set()
    assert future.result(10) is WorkflowState.CANCELLED
    wf = store.get(wid)
    assert [t.state for t in wf.tasks] == [TaskState.SUCCEEDED, TaskState.CANCELLED]
    assert calls.count == {}
    pending = store.create(spec(TaskSpec("a", "ok")))
    engine.cancel(pending)
    assert store.get(pending).state is WorkflowState.CANCELLED


# ---------------------------------------------------------------- idempotency and resume


def test_create_with_the_same_id_is_one_workflow(store: WorkflowStore) -> None:
    first = store.create(spec(TaskSpec("a", "x")), {"n": 1}, workflow_id="evt-7")
    again = store.create(spec(TaskSpec("a", "x"), TaskSpec("b", "x")), {"n": 2}, workflow_id="evt-7")
    assert first == again == "evt-7"
    assert [w.id for w in store.list()] == ["evt-7"]
    wf = store.get("evt-7")
    assert (wf.input, [t.name for t in wf.tasks]) == ({"n": 1}, ["a"])  # the first plan wins
    assert events(store, "evt-7") == [(None, "created")]
    with pytest.raises(WorkflowConflict):
        store.create(WorkflowSpec("delete", "oc1", (TaskSpec("a", "x"),)), workflow_id="evt-7")
    with pytest.raises(WorkflowNotFound):
        store.get("evt-8")


def test_queries(store: WorkflowStore) -> None:
    p1 = store.create(WorkflowSpec("provision", "oc1", (TaskSpec("a", "x"),)))
    store.create(WorkflowSpec("provision", "oc2", (TaskSpec("a", "x"),)))
    d1 = store.create(WorkflowSpec("delete", "oc1", (TaskSpec("a", "x"),)))
    assert [w.id for w in store.list(subject="oc1")] == [p1, d1]
    assert [w.subject for w in store.list(kind="provision", state="pending")] == ["oc1", "oc2"]
    assert (store.latest_for("oc1") or store).id == d1  # type: ignore[union-attr]
    assert (store.latest_for("oc1", "provision") or store).id == p1  # type: ignore[union-attr]
    assert store.latest_for("oc9") is None
    last = store.history(p1)[-1].seq
    store.workflow_started(p1, resumed=False)
    assert [h.event for h in store.history(p1, since=last)] == ["started"]


def test_second_run_of_the_same_workflow_waits_instead_of_running_twice(store: WorkflowStore,
                                                                       actions: ActionRegistry) -> None:
    inside, release = threading.Event(), threading.Event()
    calls = Calls()

    @actions.action("launch")
    def launch(ctx: TaskContext) -> None:
        calls(ctx)
        inside.set()
        release.wait(30)

    engine = Engine(store, actions)
    wid = store.create(spec(TaskSpec("a", "launch")), workflow_id="evt-1")
    first = engine.submit(wid)
    assert inside.wait(10)
    second = engine.submit(store.create(spec(TaskSpec("a", "launch")), workflow_id="evt-1"))
    release.set()
    assert first.result(10) is second.result(10) is WorkflowState.SUCCEEDED
    assert calls.count == {"a": 1}


def test_resume_runs_only_unfinished_tasks(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    with WorkflowStore(db) as before_crash:
        wid = before_crash.create(spec(TaskSpec("a", "count"), TaskSpec("b", "count", after=("a",)),
                                       TaskSpec("c", "count", after=("b",))), {"name": "oc1"})
        before_crash.workflow_started(wid, resumed=False)
        before_crash.task_started(wid, "a")
        before_crash.task_succeeded(wid, "a", '{"host": "lxd1"}')
        before_crash.task_started(wid, "b")  # the process "dies" inside b

    calls = Calls()
    seen: dict[str, Any] = {}
    actions = ActionRegistry()

    @actions.action("count")
    def count(ctx: TaskContext) -> str:
        calls(ctx)
        seen[ctx.task] = (ctx.attempt, dict(ctx.results))
        return ctx.task

    with WorkflowStore(db) as after:
        assert Engine(after, actions).resume_all() == {wid: WorkflowState.SUCCEEDED}
        assert calls.count == {"b": 1, "c": 1}
        assert seen == {"b": (2, {"a": {"host": "lxd1"}}), "c": (1, {"b": "b"})}
        assert ("b", "interrupted") in events(after, wid)
        assert events(after, wid).index((None, "resumed")) < events(after, wid).index(("b", "interrupted"))
        assert Engine(after, actions).resume_all() == {}


def test_resume_after_a_crash_during_failure_handling(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    with WorkflowStore(db) as before_crash:
        wid = before_crash.create(spec(TaskSpec("a", "x"), TaskSpec("b", "x"),
                                       TaskSpec("c", "x", after=("a",)), on_failure="cleanup"))
        before_crash.workflow_started(wid, resumed=False)
        before_crash.task_started(wid, "a")
        before_crash.task_finished(wid, "a", TaskState.FAILED, "boom")
        before_crash.task_started(wid, "b")
        before_crash.workflow_failing(wid, "a", "a: boom")  # dies here, b still in flight
    cleanups: list[dict[str, Any]] = []
    actions = ActionRegistry()
    actions.register("cleanup", lambda ctx: cleanups.append(dict(ctx.args)))
    with WorkflowStore(db) as after:
        assert Engine(after, actions).resume_all() == {wid: WorkflowState.FAILED}
        wf = after.get(wid)
        assert [t.state for t in wf.tasks] == [TaskState.FAILED, TaskState.CANCELLED, TaskState.CANCELLED]
        assert cleanups == [{"failed_task": "a", "error": "a: boom"}]
        assert wf.error == "a: boom"


def test_resume_after_a_crash_between_task_failed_and_workflow_failing(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    with WorkflowStore(db) as before_crash:
        wid = before_crash.create(spec(TaskSpec("a", "x"), TaskSpec("b", "x", after=("a",)),
                                       on_failure="cleanup"))
        before_crash.workflow_started(wid, resumed=False)
        before_crash.task_started(wid, "a")
        before_crash.task_finished(wid, "a", TaskState.FAILED, "boom")  # dies here
    cleanups: list[dict[str, Any]] = []
    actions = ActionRegistry()
    actions.register("cleanup", lambda ctx: cleanups.append(dict(ctx.args)))
    with WorkflowStore(db) as after:
        assert Engine(after, actions).resume_all() == {wid: WorkflowState.FAILED}
        assert after.get(wid).error == "a: boom"
        assert after.get(wid).task("b").state is TaskState.CANCELLED
        assert cleanups == [{"failed_task": "a", "error": "a: boom"}]


def test_resume_after_a_crash_during_cancel(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    with WorkflowStore(db) as before_crash:
        wid = before_crash.create(spec(TaskSpec("a", "x"), TaskSpec("b", "x", after=("a",))))
        before_crash.workflow_started(wid, resumed=False)
        before_crash.task_started(wid, "a")
        before_crash.task_finished(wid, "a", TaskState.CANCELLED, "workflow stopped")  # dies here
    with WorkflowStore(db) as after:
        assert Engine(after, ActionRegistry()).resume_all() == {wid: WorkflowState.CANCELLED}
        assert [t.state for t in after.get(wid).tasks] == [TaskState.CANCELLED, TaskState.CANCELLED]


CRASHING = r"""
import sys
from pathlib import Path
from orchestrator.store import WorkflowStore
from orchestrator.workflow import ActionRegistry, Engine, TaskSpec, WorkflowSpec
from overcloud.waiting import wait_until

db, work, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
actions = ActionRegistry()

def note(line):
    with (work / "calls.log").open("a") as log:
        log.write(line + "\n")

@actions.action("step")
def step(ctx):
    note(f"start {ctx.task} {ctx.attempt}")
    if ctx.args.get("block"):
        wait_until(lambda: (work / "release").exists(), timeout=60, what="the release file")
    note(f"done {ctx.task}")
    return ctx.task

store = WorkflowStore(db)
engine = Engine(store, actions)
if mode == "run":
    spec = WorkflowSpec("provision", "oc-kill", (
        TaskSpec("a", "step"),
        TaskSpec("b", "step", {"block": True}, after=("a",)),
        TaskSpec("c", "step", after=("a",)),
        TaskSpec("d", "step", after=("b", "c")),
    ))
    print(engine.run(store.create(spec, {}, workflow_id="evt-42")))
else:
    print(engine.resume_all())
"""


def test_sigkilled_process_is_resumed_by_another(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    log = tmp_path / "calls.log"

    def start(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", CRASHING, str(db), str(tmp_path), mode],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("run")
    try:
        with WorkflowStore(db) as watcher:

            def mid_workflow() -> bool:
                if first.poll() is not None:
                    raise AssertionError(f"the first process exited early: {first.communicate()}")
                try:
                    wf = watcher.get("evt-42")
                except WorkflowNotFound:
                    return False
                return (wf.task("c").state is TaskState.SUCCEEDED and log.exists()
                        and "start b 1" in log.read_text())

            wait_until(mid_workflow, timeout=30, what="b blocked and c finished")
            first.kill()  # SIGKILL: no cleanup, no final write
            first.wait(10)
            wf = watcher.get("evt-42")
            assert wf.state is WorkflowState.RUNNING
            assert [t.state for t in wf.tasks] == [TaskState.SUCCEEDED, TaskState.RUNNING,
                                                   TaskState.SUCCEEDED, TaskState.PENDING]

            (tmp_path / "release").touch()
            second = start("resume")
            out, err = second.communicate(timeout=30)
            assert second.returncode == 0, err
            assert "evt-42" in out and "succeeded" in out.lower()

            wf = watcher.get("evt-42")
            assert wf.state is WorkflowState.SUCCEEDED
            assert [t.attempts for t in wf.tasks] == [1, 2, 1, 1]
            lines = log.read_text().splitlines()
            assert collections.Counter(lines) == {
                "start a 1": 1, "done a": 1, "start b 1": 1, "start c 1": 1, "done c": 1,
                "start b 2": 1, "done b": 1, "start d 1": 1, "done d": 1,
            }
            b_events = [h.event for h in watcher.history("evt-42") if h.task == "b"]
            assert b_events == ["running", "interrupted", "running", "succeeded"]
            workflow_events = [h.event for h in watcher.history("evt-42") if h.task is None]
            assert workflow_events == ["created", "started", "resumed", "succeeded"]
    finally:
        if first.poll() is None:
            os.kill(first.pid, 9)
            first.wait(10)
