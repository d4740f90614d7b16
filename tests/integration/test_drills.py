"""The kill -9 drills of issue 9 on the whole loop, with node agents of a real OverCloud.

Running, as real processes on the session's tansu, InfluxDB and two LXD hosts: two DevLakes
(one group), the orchestrator, the alert evaluator, a host agent (1 s) and — once the
OverCloud is up — its two node agents (1 s, started by the orchestrator), plus an in-process
"hot host" agent whose `resource_undercloud` samples make the evaluator fire
`NodeOverloaded` for a host that is not ours (the orchestrator handles it: nothing to move).
Then, one after the other, each part is killed with SIGKILL while the loop runs:

1. broker, while an `overcloud request apply` has just been acknowledged and the (held)
   orchestrator has not read it → the OverCloud is provisioned once;
2. broker for 20 s, with the DevLakes held for the 3 s before (batches acknowledged and
   unread die with it) and a `NodeOverloaded` acknowledged and unread → every agent's every
   series has a sample in every 1 s interval; the overload is handled once, recovered once;
3. both DevLakes for 5 s, 4. InfluxDB for 10 s → no interval missing;
5. the alert evaluator just after it published `NodeOverloaded` → one event per transition;
6. the orchestrator in the middle of `overcloud delete` → deleted once;
7. the broker again, after all that: the journal brings back every old event → none is
   acted on again (no OverCloud re-created, no second workflow).

One test, because the drills share one expensive setup (an OverCloud, ~1 min) and the
conftest deletes every OverCloud after each test. Each drill's figures are printed
(`DRILL {...}`) and, with OC_DRILL_REPORT=FILE, written for bench/drills.py; all drills run
and the failures are reported together. Run with OC_TEST_BRIDGE_PREFIX /
OC_TEST_SUBNET_PREFIX set for this session (see conftest).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from devlake.sinks import make_sink
from devtower.services import manager
from orchestrator.hosts import drivers
from orchestrator.inbox import Inbox
from orchestrator.registry import Registry
from orchestrator.store import WorkflowRecord, WorkflowStore
from overcloud.events import (
    Event,
    NodeOverloaded,
    NodeRecovered,
    OverCloudDeleted,
    OverCloudFailed,
    OverCloudReady,
    OverCloudRequested,
)
from overcloud.replay import EventJournal
from overcloud.settings import Settings
from overcloud.waiting import WaitTimeout, wait_until
from overcloud.wire import decode_event
from tests.conftest import Env
from tests.helpers import OVERCLOUD, Background, free_port
from tests.integration.drill_kit import (
    Buckets,
    Figures,
    empty_buckets,
    events_on_topic,
    first_sample_s,
    freeze,
    kill9,
    skipped_runs,
    thaw,
    wait_clock,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2700)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: drills@example.org
cluster: {{nodes: 2, cpu: 1, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""
RULES = """\
rules:
  - {name: node-overloaded, threshold: 1000, recover: 999}   # our real hosts: never here
  - name: drill-hot
    watch: {measurement: resource_undercloud, field: cpu_percent, group_by: [host]}
    condition: ">"
    threshold: 85
    recover: 70
    for: 2s
    actions: [{type: event, event: node_overloaded}]
"""
BROKER_OUTAGE_S = 20.0


class Loop:
    """The processes of the loop, restartable one by one."""

    def __init__(self, env: Env, logs: Path) -> None:
        self.env, self.logs = env, logs
        self.s: Settings = env.settings()
        self.procs: dict[str, Background] = {}
        self.failures: list[str] = []
        self._n = 0

    def start(self, key: str, args: list[str]) -> Background:
        self._n += 1
        p = Background(args, self.env, self.logs / f"{key}-{self._n}.log").start()
        self.procs[key] = p
        return p

    def kill(self, key: str) -> float:
        self.procs[key].kill()
        return time.time()

    def dump(self, key: str) -> None:
        """A process that does not do its part: SIGABRT, so that it writes every thread's
        stack into its log (PYTHONFAULTHANDLER) for the failure report."""
        p = self.procs[key]
        if p.alive():
            assert p.proc is not None
            p.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(10)
        self.failures.append(f"{key} stuck; its stacks: {p.output()[-6000:]}")

    def expect(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
        return ok

    def stop_all(self) -> None:
        for p in self.procs.values():
            thaw(p)
            p.stop()


def journal_events(s: Settings) -> list[Event]:
    out = []
    for e in EventJournal.of(s).entries():
        try:
            out.append(decode_event(e.value))
        except Exception:
            continue
    return out


def distinct(events: list[Event], kind: type[Event], **match: str) -> set[str]:
    return {e.id for e in events if isinstance(e, kind)
            and all(getattr(e, k) == v for k, v in match.items())}


def test_kill_9_drills_while_the_loop_runs(uc: Env, services: Env, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = Env(uc, PYTHONFAULTHANDLER="1", OVERCLOUD_AGENT_INTERVAL="1",
              OVERCLOUD_KAFKA_TOPIC_PREFIX=f"drill{tag}",
              OVERCLOUD_DEVLAKE_GROUP=f"drill{tag}-lake", OVERCLOUD_DEVLAKE_LINGER="0.1",
              OVERCLOUD_ALERTS_GROUP=f"drill{tag}-alerts", OVERCLOUD_ALERTS_RULES=str(rules),
              OVERCLOUD_ALERTS_TICK="0.2")
    loop = Loop(env, tmp_path / "logs")
    s = loop.s
    # the broker and InfluxDB are the session's: their pids are recorded in its state dir
    svc = Env(services, OVERCLOUD_KAFKA_TOPIC_PREFIX=f"drill{tag}").settings()
    name, port = f"drill{tag}", free_port()
    oc_db, uc_db = f"{s.influx.database_prefix}{name}", s.influx.default_database
    host_node = f"drill-host-{tag}"
    n1, n2 = f"{name}-n1", f"{name}-n2"
    store = WorkflowStore(s.state_dir / "orchestrator" / "workflows.sqlite")
    inbox = Inbox(s.state_dir / "orchestrator" / "inbox.sqlite")
    hot_node = f"drill-hot-{tag}"
    control = tmp_path / "hot.json"

    class Hot:
        """What the hot-host agent (its own process) reports: host and CPU."""

        host = "drill-hot-1"

        def set(self, host: str, value: float) -> None:
            self.host = host
            tmp = control.with_suffix(".tmp")
            tmp.write_text(json.dumps({"host": host, "value": value}))
            tmp.replace(control)

    hot = Hot()
    hot.set("drill-hot-1", 10.0)
    series: list[tuple[str, str, str, dict[str, str], tuple[str, ...], int, str]] = [
        # db, measurement, field, where, group by, series expected, collector (agent_skipped)
        (uc_db, "resource_host", "load1", {"node": host_node}, (), 1, "host"),
        (uc_db, "resource_undercloud", "cpu_percent", {"node": host_node}, ("host",), 2,
         "undercloud"),
        # whatever host it names: drill 5 switches it while drill 4's window still runs
        (uc_db, "resource_undercloud", "cpu_percent", {"node": hot_node}, (), 1, "drill-hot"),
        (oc_db, "resource_instance", "cpu_time_ns", {}, ("node",), 2, "instance"),
        (oc_db, "flow_iface", "bytes_received", {"iface": "eth0"}, ("node",), 2, "flow_iface"),
        (oc_db, "service_container", "running", {}, ("node", "service"), 3, "service_container"),
        (oc_db, "service_http", "up", {}, ("node",), 1, "service_http"),
    ]

    def gaps(start: int, end: int) -> list[Buckets]:
        out: list[Buckets] = []
        for db, m, f, where, group, want, collector in series:
            got = empty_buckets(s, db, m, f, where, start, end, group_by=group)
            for b in got:
                if b.empty and b.tags.get("node"):
                    b.skipped = skipped_runs(s, db, b.tags["node"], collector, start, end)
            out += got
            if len(got) < want:  # a series without one sample in the window: all empty
                out += [Buckets(f"{m}{where} ({want - len(got)} missing series)", end - start,
                                list(range(start, end)), 0)] * (want - len(got))
        return out

    windows: list[tuple[Figures, int, int]] = []

    def window(drill: Figures, start: int, end: int) -> None:
        """A drill's data window, judged at the end: late (a busy machine, a group that takes
        long to join again) is not lost, so every window gets all the time there is."""
        windows.append((drill, start, end))

    def judge_windows(timeout: float) -> None:
        wait_clock(max(w[2] for w in windows) - time.time() + 1, time.time())
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not any(b.unexplained for _, a, z in windows
                                       for b in gaps(a, z)),
                       timeout=timeout, interval=2, what="every interval of every window")
        for drill, start, end in windows:
            got = gaps(start, end)
            lost = {b.series: f"{len(b.empty)} of {b.intervals} empty, {b.skipped} skipped: "
                              f"{_ranges(b.empty)}" for b in got if b.unexplained}
            drill.add(window_s=end - start, series=len(got),
                      intervals=sum(b.intervals for b in got),
                      samples=sum(b.samples for b in got),
                      empty_intervals=sum(len(b.empty) for b in got),
                      skipped_by_agents=sum(min(b.skipped, len(b.empty)) for b in got),
                      unexplained=sum(b.unexplained for b in got))
            if lost:
                drill.add(lost=lost)
            loop.expect(not lost, f"{drill.drill}: window {_ranges([start])}-{_ranges([end - 1])}: "
                                  f"intervals without a sample the agent had not skipped: {lost}")

    def events() -> list[Event]:
        return events_on_topic(s)

    def settle(pred: Callable[[], object], timeout: float, what: str, who: str = "") -> bool:
        try:
            wait_until(pred, timeout=timeout, interval=0.5, what=what)
        except WaitTimeout as exc:
            loop.failures.append(str(exc))
            if who:
                loop.dump(who)
            return False
        return True

    manager.up(svc, ["kafka"])  # this prefix's topics
    apply: subprocess.Popen[str] | None = None
    hot_agent: subprocess.Popen[bytes] | None = None
    try:
        # one after the other, each ready before the next: on a loaded machine a crowd of
        # clients joining at once can keep the broker from answering within their timeouts
        for key, args, banner in (
                ("lake1", ["devlake", "run"], "devlake:"), ("lake2", ["devlake", "run"], "devlake:"),
                ("orch", ["orchestrator", "run"], "orchestrator:"),
                ("alerts", ["alerts", "run"], "alerts:"),
                ("host-agent", ["agent", "run", "--layer", "resource", "--interval", "1",
                                "--node", host_node], "agent:")):
            p = loop.start(key, args)
            wait_until(lambda p=p, b=banner: b in p.output() or not p.alive(), timeout=180,
                       interval=0.3, what=f"{key}'s banner")
            assert p.alive(), p.output()[-2000:]
        hot_agent = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.hot_agent", str(control), hot_node],
            env={**os.environ, **env}, stdout=(tmp_path / "logs" / "hot-agent.log").open("ab"),
            stderr=subprocess.STDOUT)

        # --- 1. broker killed right after a request was acknowledged, before it was read ---
        d1 = Figures("1. broker kill -9 after `request apply` was acknowledged (orchestrator held)")
        freeze(loop.procs["orch"])
        request = tmp_path / f"{name}.yaml"
        request.write_text(REQUEST.format(name=name, port=port))
        apply = subprocess.Popen([OVERCLOUD, "request", "apply", str(request), "--wait",
                                  "--timeout", "300"], env={**os.environ, **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        req = wait_until(lambda: next((e for e in journal_events(s)
                                       if isinstance(e, OverCloudRequested) and e.name == name),
                                      None), timeout=60, interval=0.2,
                         what="the request acknowledged (in the journal)")
        t_kill = kill9(svc, "kafka")
        thaw(loop.procs["orch"])
        wait_clock(5, t_kill)
        manager.up(svc, ["kafka"])
        out, _ = apply.communicate(timeout=900)
        rec = Registry(s).get(name)
        provisions = store.list(kind="provision", subject=name)
        on_topic = events()
        d1.add(apply_exit=apply.returncode, provision_workflows=len(provisions),
               handling_starts=inbox.starts(req.id),
               ready_events=len(distinct(on_topic, OverCloudReady, name=name)),
               failed_events=len(distinct(on_topic, OverCloudFailed, name=name)),
               journal_replays=EventJournal.of(s).counter("replays"))
        d1.write()
        assert apply.returncode == 0, out + loop.procs["orch"].output()[-3000:]
        loop.expect(rec is not None and rec.request_id == req.id, "1: the OverCloud is the request's")
        loop.expect(len(provisions) == 1 and provisions[0].id == req.id, f"1: {provisions}")
        loop.expect(inbox.starts(req.id) == 1, "1: request handled once")
        loop.expect(d1.values["ready_events"] == 1 and d1.values["failed_events"] == 0,
                    f"1: {d1.values}")

        # node agents at 1 s: wait for some steady state of every series
        def nodes_first() -> int | None:
            t = [first_sample_s(s, oc_db, m, f, {"node": n})
                 for m, f in (("resource_instance", "cpu_time_ns"), ("service_container", "running"),
                              ("flow_iface", "bytes_received")) for n in (n1, n2)]
            return max(t) if all(t) else None  # type: ignore[type-var]

        first = wait_until(nodes_first, timeout=120, interval=0.5, what="node agents' samples")
        wait_clock(8, first)

        # --- 2. broker killed for 20 s; unread batches and an unread NodeOverloaded die ---
        d2 = Figures(f"2. broker kill -9, {BROKER_OUTAGE_S:g} s (host agent, 2 node agents, "
                     "hot-host agent; DevLakes and orchestrator held before)")
        freeze(loop.procs["orch"])
        hot.set("drill-hot-1", 95.0)
        over = wait_until(lambda: next((e for e in journal_events(s) if isinstance(
            e, NodeOverloaded) and e.host == "drill-hot-1"), None), timeout=60, interval=0.2,
            what="NodeOverloaded acknowledged (in the journal)")
        for k in ("lake1", "lake2"):
            freeze(loop.procs[k])
        t_freeze = time.time()
        wait_clock(3, t_freeze)
        t_kill = kill9(svc, "kafka")
        for k in ("lake1", "lake2", "orch"):
            thaw(loop.procs[k])
        wait_clock(BROKER_OUTAGE_S, t_kill)
        manager.up(svc, ["kafka"])
        t_up = time.time()
        d2.add(outage_s=round(t_up - t_kill, 1))
        window(d2, max(first + 1, math.floor(t_freeze) - 5), math.floor(t_up) + 6)
        hot.set("drill-hot-1", 10.0)
        settle(lambda: distinct(events(), NodeRecovered, host="drill-hot-1"), 300,
               "NodeRecovered for drill-hot-1", "alerts")
        settle(lambda: inbox.done(over.id), 300, "the orchestrator to handle the NodeOverloaded",
               "orch")
        on_topic = events()
        d2.add(overloaded_events=len(distinct(on_topic, NodeOverloaded, host="drill-hot-1")),
               recovered_events=len(distinct(on_topic, NodeRecovered, host="drill-hot-1")),
               overload_handling_starts=inbox.starts(over.id),
               journal_replays=EventJournal.of(s).counter("replays"))
        loop.expect(d2.values["overloaded_events"] == 1 and d2.values["recovered_events"] == 1
                    and inbox.starts(over.id) == 1, f"2: {d2.values}")

        # --- 3. both DevLakes killed for 5 s ---
        d3 = Figures("3. both DevLakes kill -9, 5 s")
        t_kill = loop.kill("lake1")
        loop.kill("lake2")
        wait_clock(5, t_kill)
        for i in (1, 2):
            loop.start(f"lake{i}", ["devlake", "run"])
        t_up = time.time()
        d3.add(outage_s=round(t_up - t_kill, 1))
        window(d3, math.floor(t_kill) - 5, math.floor(t_up) + 6)

        # --- 4. InfluxDB killed for 10 s ---
        d4 = Figures("4. InfluxDB kill -9, 10 s")
        t_kill = kill9(svc, "influxdb")
        wait_clock(10, t_kill)
        manager.up(svc, ["influxdb"])
        t_up = time.time()
        d4.add(outage_s=round(t_up - t_kill, 1))
        window(d4, math.floor(t_kill) - 5, math.floor(t_up) + 6)

        # --- 5. the evaluator killed just after it published NodeOverloaded ---
        d5 = Figures("5. alert evaluator kill -9 right after it published NodeOverloaded")
        hot.set("drill-hot-2", 95.0)
        over2 = wait_until(lambda: next((e for e in journal_events(s) if isinstance(
            e, NodeOverloaded) and e.host == "drill-hot-2"), None), timeout=60, interval=0.1,
            what="NodeOverloaded for drill-hot-2")
        t_kill = loop.kill("alerts")
        alerts = loop.start("alerts", ["alerts", "run"])
        wait_until(lambda: "alerts:" in alerts.output(), timeout=120, interval=0.3,
                   what="the evaluator back")
        d5.add(down_s=round(time.time() - t_kill, 1))
        wait_clock(4, time.time())  # it reads the hot samples it had not committed
        hot.set("drill-hot-2", 10.0)
        settle(lambda: distinct(events(), NodeRecovered, host="drill-hot-2"), 300,
               "NodeRecovered for drill-hot-2", "alerts")
        settle(lambda: inbox.done(over2.id), 300, "the orchestrator to handle it", "orch")
        on_topic = events()
        d5.add(overloaded_events=len(distinct(on_topic, NodeOverloaded, host="drill-hot-2")),
               recovered_events=len(distinct(on_topic, NodeRecovered, host="drill-hot-2")),
               overload_handling_starts=inbox.starts(over2.id))
        loop.expect(d5.values["overloaded_events"] == 1 and d5.values["recovered_events"] == 1
                    and inbox.starts(over2.id) == 1, f"5: {d5.values}")
        d5.write()
        hot_agent.terminate()

        # --- 6. the orchestrator killed in the middle of a deletion ---
        d6 = Figures("6. orchestrator kill -9 in the middle of `overcloud delete`")
        delete = subprocess.Popen([OVERCLOUD, "delete", name, "--wait", "--keep-data",
                                   "--timeout", "300"],
                                  env={**os.environ, **env},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def started() -> WorkflowRecord | bool:
            """The delete workflow, once persisted and not finished (pending: the orchestrator
            has it and will resume it; running: in the middle); or the CLI's exit."""
            wf = next((w for w in store.list(kind="delete", subject=name)
                       if str(w.state) in ("pending", "running")), None)
            return wf or delete.poll() is not None

        got = wait_until(started, timeout=300, interval=0.1, what="the delete workflow")
        if not isinstance(got, WorkflowRecord):  # the CLI ended before the workflow was seen under way
            out, _ = delete.communicate()
            raise AssertionError(f"6: `overcloud delete` exited {delete.returncode} before its "
                                 f"workflow was seen running: {out[-3000:]}\n"
                                 f"{loop.procs['orch'].output()[-4000:]}")
        running = got
        d6.add(workflow_state_at_kill=str(running.state))
        loop.kill("orch")
        loop.start("orch", ["orchestrator", "run"])
        out, _ = delete.communicate(timeout=600)
        on_topic = events()
        d6.add(delete_exit=delete.returncode,
               delete_workflows=len(store.list(kind="delete", subject=name)),
               handling_starts=inbox.starts(running.id),
               deleted_events=len(distinct(on_topic, OverCloudDeleted, name=name)))
        d6.write()
        loop.expect(delete.returncode == 0, f"6: delete failed: {out}")
        # acted on once: one workflow (keyed by the event id), one OverCloudDeleted. The
        # handling may start twice: a kill between the inbox's begin and finish leaves the
        # event uncommitted, the new orchestrator starts it again and resumes that workflow
        loop.expect(d6.values["delete_workflows"] == 1 and d6.values["deleted_events"] == 1
                    and d6.values["handling_starts"] in (1, 2), f"6: {d6.values}")

        # --- 7. the broker loses the log once more: every old event comes back ---
        d7 = Figures("7. broker kill -9 after all that: old events replayed, none acted on")
        replays = EventJournal.of(s).counter("replays")
        kill9(svc, "kafka")
        manager.up(svc, ["kafka"])
        settle(lambda: EventJournal.of(s).counter("replays") > replays, 300, "the replay")
        orch = loop.procs["orch"]
        settle(lambda: f"{req.id}: already handled, skipped" in orch.output(), 300,
               "the orchestrator to skip the replayed request", "orch")
        on_topic = events()
        d7.add(replayed_events=EventJournal.of(s).counter("replayed_events"),
               request_handling_starts=inbox.starts(req.id),
               provision_workflows=len(store.list(kind="provision", subject=name)),
               delete_workflows=len(store.list(kind="delete", subject=name)),
               registry_record=Registry(s).get(name) is not None,
               containers=sum(len(d.instances(name)) for d in drivers(s).values()),
               failed_events=len(distinct(on_topic, OverCloudFailed, name=name)))
        d7.write()
        loop.expect(d7.values["request_handling_starts"] == 1
                    and d7.values["provision_workflows"] == 1
                    and d7.values["delete_workflows"] == 1 and not d7.values["registry_record"]
                    and d7.values["containers"] == 0 and d7.values["failed_events"] == 0,
                    f"7: {d7.values}")
        for key, p in loop.procs.items():
            loop.expect(p.alive(), f"{key} died: {p.output()[-1500:]}")

        # --- the data windows of drills 2-4, now that everything had time to arrive ---
        judge_windows(timeout=600)
        for w in windows:
            w[0].write()
        assert not loop.failures, "\n".join(loop.failures)
    finally:
        if hot_agent is not None and hot_agent.poll() is None:
            hot_agent.terminate()
            hot_agent.wait(30)
        if apply is not None and apply.poll() is None:
            apply.kill()
        manager.up(svc, ["kafka", "influxdb"])
        loop.stop_all()
        sink = make_sink(s.influx)
        with contextlib.suppress(Exception):
            sink.drop_database(oc_db)  # kept by the delete for the windows above
        sink.close()


def _ranges(seconds: list[int]) -> str:
    """Epoch seconds as short UTC clock ranges ("22:11:12-22:11:21, 22:11:30"): a failure's
    line stays readable (the CI output keeps only that line)."""
    out: list[str] = []
    prev = None
    for t in sorted(seconds):
        clock = time.strftime("%H:%M:%S", time.gmtime(t))
        if out and prev is not None and t - prev == 1:
            out[-1] = out[-1].split("-")[0] + "-" + clock
        else:
            out.append(clock)
        prev = t
    return ", ".join(out)
