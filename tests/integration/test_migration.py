"""Issue 5 on two real LXD hosts: migration on overload, by hand, drains, and a target host
that dies mid-move — with the WordPress URL probed every 100 ms throughout.

Everything is real: the session's two LXD daemons (`uc` fixture), tansu, InfluxDB, DevLake,
the orchestrator, the host agent measuring `resource_undercloud`, and the alert evaluator
whose built-in `node-overloaded` rule (shortened `for`) raises `NodeOverloaded`. Host
sizes come from the inventory (`undercloud set --cpus`), which placement, the host agent's
measurement and relief plans all use.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from daemons.lxd import LxdHostService
from lxdclient import lxc_env
from orchestrator.downtime import DowntimeProbe
from orchestrator.hosts import drivers
from orchestrator.registry import Registry
from orchestrator.store import WorkflowStore
from orchestrator.writeprobe import WriteProbe
from overcloud.bus import events_topic
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import ApacheWorkers, Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
placement: {{strategy: {strategy}}}
saas:
  stack: wordpress
  tiers: {{app: {{replicas: {web}}}, web: {{replicas: {web}}}}}
  expose: {{port: {port}}}
"""


class Events:
    """Every event on the events topic since the start, read by a thread (no group)."""

    def __init__(self, env: Env) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from overcloud.bus import ensure_topics

        s = env.settings()
        ensure_topics(s)  # assigned before the topic exists, a consumer may never see it
        self._c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap, enable_auto_commit=False,
                                consumer_timeout_ms=200)
        tp = TopicPartition(events_topic(s), 0)
        self._c.assign([tp])
        self._c.seek_to_beginning(tp)
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msgs in self._c.poll(timeout_ms=200).values():
                for m in msgs:
                    try:
                        self.seen.append(orjson.loads(m.value))
                    except orjson.JSONDecodeError:  # other tests' malformed messages
                        continue

    def of(self, kind: str, **payload: Any) -> list[dict[str, Any]]:
        return [e for e in self.seen if isinstance(e, dict) and e.get("type") == kind
                and all((e.get("payload") or {}).get(k) == v for k, v in payload.items())]

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self._c.close()


def probe(port: int) -> DowntimeProbe:
    """The page every 100 ms (the orchestrator's own probe, orchestrator/downtime.py): the
    downtime is the sum of the failed stretches, one still running when it stops included."""
    return DowntimeProbe(f"http://127.0.0.1:{port}/wp-admin/install.php")


def timeline(down: DowntimeProbe, since: float, cli_out: str = "") -> str:
    """The probe's outages (seconds after `since`, a wall clock), the machine's load, and the
    move's own steps as `migrate --wait` printed them: what a failed downtime assertion needs
    to say which step broke the page (the CI output keeps only the assertion's line)."""
    outages = "; ".join(f"+{o.start - since:.1f}s {o.seconds:.1f}s {dict(o.kinds)}"
                        for o in down.outages)
    steps = [ln.strip() for ln in cli_out.splitlines() if "(steps:" in ln]
    return (f"outages [{outages}], slowest good {down.slowest:.1f}s, load "
            f"{os.getloadavg()[0]:.1f}; move: {' | '.join(steps)[-700:]}")


@pytest.fixture
def mig(uc: Env, tmp_path: Path) -> Iterator[tuple[Env, Events]]:
    """DevLake + orchestrator on the session's hosts, placement capacity 8 CPUs per host."""
    env = Env(uc, OVERCLOUD_UNDERCLOUD_MIGRATION_COOLDOWN="600")
    for h in ("lxd1", "lxd2"):
        run_cli(["undercloud", "set", h, "--cpus", "8"], env, check=True)
    events = Events(env)
    procs: list[Background] = []
    try:
        procs.append(Background(["devlake", "run"], env, tmp_path / "devlake.log").start())
        orch = Background(["orchestrator", "run"], env, tmp_path / "orchestrator.log").start()
        procs.append(orch)
        wait_until(lambda: "orchestrator:" in orch.output(), timeout=180,
                   what="the orchestrator")
        yield env, events
    finally:
        try:
            for h in ("lxd1", "lxd2"):
                run_cli(["undercloud", "undrain", h], env, timeout=300)
                # the session's hosts go back to their size: the overload test declared lxd1
                # 1-2 CPUs, and test_provisioning, later, found lxd1 full after one node
                run_cli(["undercloud", "set", h, "--default-capacity"], env, timeout=60)
        finally:  # whatever failed above, our processes stop (they would outlive the test)
            for p in reversed(procs):
                p.stop()
            events.close()
            if len(procs) == 2:
                print("\n--- orchestrator log (tail) ---\n" + procs[1].output()[-4000:])


def _apply(env: Env, tmp: Path, name: str, nodes: int, strategy: str) -> int:
    port = free_port()
    doc = tmp / f"{name}.yaml"
    doc.write_text(REQUEST.format(name=name, nodes=nodes, strategy=strategy, port=port,
                                  web=max(nodes - 1, 1)))
    out = run_cli(["request", "apply", str(doc), "--wait"], env, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    return port


def _hosts(env: Env, name: str) -> dict[str, str]:
    rec = Registry(env.settings()).get(name)
    assert rec is not None
    return {n.node: n.host for n in rec.nodes}


def _page_answers(port: int) -> None:
    """The WordPress page answers (a slow answer on a busy machine is an answer: each try
    gets 30 s, and a failing page gets two minutes to recover before this fails)."""
    def good() -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/wp-admin/install.php", timeout=30)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "WordPress" in r.text
    wait_until(good, timeout=120, interval=1.0, what="the WordPress page")


def _where(env: Env, name: str, down: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """What the hosts themselves say: each node of `name` and the hosts it exists on. Every
    host must answer, except those the caller knows are `down` (which must not answer): a
    check that skipped a silent host would miss what is left on it."""
    found: dict[str, list[str]] = {}
    for h, d in drivers(env.settings()).items():
        if h in down:
            assert not d.reachable(), f"{h} answers: it was expected down"
            continue
        # (its API's 1 s ping can miss on a busy machine: a silent host gets a minute)
        wait_until(d.reachable, timeout=60, interval=0.5, what=f"{h} to answer")
        for inst in d.instances(name):
            found.setdefault(inst, []).append(h)
    return found


def _proc_line(pid: int) -> str:
    """A process's parent, start (clock ticks since boot) and command line, for a message."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError as exc:
        return f"{pid}: {exc}"
    return f"{pid} (parent {stat[1]}, started at tick {stat[19]}): {argv}"


def _identity(env: Env, host: str, node: str) -> str:
    """The container's LXD identity (`volatile.uuid`, set once when it is created)."""
    s = env.settings()
    lxd = next(h for h in s.lxd_hosts if h.name == host)
    return subprocess.run(["lxc", "config", "get", node, "volatile.uuid"], env=lxc_env(s, lxd),
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def _how(env: Env, cli_out: str) -> dict[str, str]:
    """How each node of the migration `overcloud migrate` printed the id of moved (its move
    task's result: "by replication", "by stop → copy → start (why)", '' when stateless)."""
    wid = cli_out.split(" id ", 1)[1].split()[0]
    store = WorkflowStore(Path(env["OVERCLOUD_STATE_DIR"]) / "orchestrator" / "workflows.sqlite")
    return {t.name.removeprefix("move:"): t.result["how"] for t in store.get(wid).tasks
            if isinstance(t.result, dict)}


def _sql(env: Env, name: str, node: str, host: str, statement: str) -> str:
    secrets = orjson.loads((Path(env["OVERCLOUD_STATE_DIR"]) / "secrets" / f"{name}.json")
                           .read_bytes())
    d = drivers(env.settings())[host]
    return d.exec(node, "docker", "exec", "oc-db-1", "mariadb", "-uroot",
                  f"-p{secrets['db_root_password']}", "-N", "-e", statement, timeout=60)


def test_database_and_web_nodes_move_by_hand_and_the_url_stays(
        mig: tuple[Env, Events], tmp_path: Path) -> None:
    env, events = mig
    name = f"mv{uuid.uuid4().hex[:5]}"
    port = _apply(env, tmp_path, name, 2, "pack")
    assert set(_hosts(env, name).values()) == {"lxd1"}, "pack: both nodes on lxd1"
    db, web = f"{name}-n1", f"{name}-n2"
    _sql(env, name, db, "lxd1",
         "CREATE TABLE wordpress.oc_marker (v INT); INSERT INTO wordpress.oc_marker VALUES (42)")
    try:
        with probe(port) as down:
            t0, wall0 = time.monotonic(), time.time()
            out = run_cli(["migrate", name, "--node", web, "--to", "lxd2", "--wait"], env,
                          timeout=600)
            web_seconds = time.monotonic() - t0
            assert out.returncode == 0, out.stdout + out.stderr
            web_down, web_failed = down.downtime, down.kinds()
            web_timeline = timeline(down, wall0, out.stdout)
            print(out.stdout)
            # stateless: the edge sends new connections to the new node once it serves the
            # page, and the old one drains (its requests in flight finish) before it goes:
            # the port never closes. At most one probe may lose the race of reusing a
            # keep-alive connection just as the old nginx closes it (reset); never refused,
            # never an error page
            assert set(web_failed) <= {"reset"}, (web_failed, web_timeline)
            assert web_failed.get("reset", 0) <= 1, (web_failed, web_timeline)
            assert web_down < 0.5, (web_down, web_timeline)
            wall1 = time.time()
            d = drivers(env.settings())
            WriteProbe.prepare(d["lxd1"], db)
            # a user writing all along, as WordPress does (orchestrator/writeprobe.py)
            with WriteProbe(d["lxd2"], web) as writes:
                wait_until(lambda: len(writes.acked) >= 5, timeout=120, interval=0.1,
                           what="the writer's first acknowledged writes")
                out = run_cli(["migrate", name, "--node", db, "--to", "lxd2", "--wait"], env,
                              timeout=600)
                acked_at_switch = len(writes.acked)
                wait_until(lambda: len(writes.acked) >= acked_at_switch + 5, timeout=60,
                           interval=0.1, what="writes acknowledged by the new database")
            print(out.stdout)
            assert out.returncode == 0, out.stdout + out.stderr
            db_timeline = timeline(down, wall1, out.stdout)
            # by replication: the page never went down (reads go on through the write freeze)
            assert _how(env, out.stdout) == {db: "by replication"}, out.stdout
            assert down.downtime - web_down <= 1.0, (down.downtime - web_down, db_timeline)
            # no acknowledged write lost; the freeze refused some, as read-only
            lost = writes.lost(d["lxd2"], db)
            print(f"writes: {len(writes.acked)} acknowledged, {len(writes.failed)} refused "
                  f"({sorted(set(f.split(' ', 1)[-1][:60] for f in writes.failed))}), "
                  f"{len(lost)} lost")
            assert not lost, (lost[:20], len(writes.acked))
            # the old database let nothing else in, and the new one replicates from no one
            assert _sql(env, name, db, "lxd2", "SHOW SLAVE STATUS").strip() == ""
        print(f"\nweb node moved in {web_seconds:.1f}s, downtime {web_down:.2f}s "
              f"(failed probes {web_failed}); after the db move: downtime {down.downtime:.2f}s "
              f"({down.failures} failed / {down.ok} good probes: {down.kinds()}; slowest "
              f"good answer {down.slowest:.1f}s)")
        assert _hosts(env, name) == {db: "lxd2", web: "lxd2"}
        # one agent per node, following it (the old one stopped)
        from tests.integration.test_provisioning import _agent_processes

        agents = _agent_processes(name)
        assert len(agents) == 2, [_proc_line(pid) for pid in agents]
        assert _where(env, name) == {db: ["lxd2"], web: ["lxd2"]}, "one copy of each node"
        shown = run_cli(["show", name], env, check=True).stdout
        assert "lxd1" not in shown.split("networks:")[0], shown
        # the database came with its volume
        assert _sql(env, name, db, "lxd2", "SELECT v FROM wordpress.oc_marker").strip() == "42"
        finished = wait_until(lambda: len(v := events.of("MigrationFinished", overcloud=name))
                              >= 2 and v, timeout=30, what="both MigrationFinished events")
        assert [(e["payload"]["node"], e["payload"]["target"], e["payload"]["ok"])
                for e in finished] == [(web, "lxd2", True), (db, "lxd2", True)]
        assert finished[0]["payload"]["downtime_s"] < 3.0  # the orchestrator's probe agrees
        # its network on lxd1 went with the last node; its DevLake series continue
        assert not drivers(env.settings())["lxd1"].networks(name)

        def series_on_lxd2() -> bool:
            res = run_cli(["metrics", "query",
                           f"SELECT count(cpu_time_ns) FROM resource_instance WHERE "
                           f"node = '{web}' AND host = 'lxd2'", "--overcloud", name], env)
            return res.returncode == 0 and "count" in res.stdout
        wait_until(series_on_lxd2, timeout=60, interval=0.5, what="samples of the moved node")

        # the whole OverCloud to a site, the database by stop → copy → start: both nodes
        # back to lxd1, data (the writes acknowledged above too) and URL with them
        run_cli(["undercloud", "set", "lxd1", "--site", "back"], env, check=True)
        try:
            out = run_cli(["migrate", name, "--to-site", "back", "--db-method", "copy",
                           "--wait"], env, timeout=900)
            assert out.returncode == 0, out.stdout + out.stderr
            assert _how(env, out.stdout) == {web: "", db: "by stop → copy → start (asked for)"}
        finally:
            run_cli(["undercloud", "set", "lxd1", "--site", "local"], env, check=True)
        assert _where(env, name) == {db: ["lxd1"], web: ["lxd1"]}
        assert _sql(env, name, db, "lxd1", "SELECT v FROM wordpress.oc_marker").strip() == "42"
        assert not writes.lost(d["lxd1"], db)
        _page_answers(port)

        # mistakes are one line each, and nothing is published
        for args, says in ((["migrate", name, "--to", "nowhere"], "no UnderCloud host"),
                           (["migrate", name, "--node", "x", "--to", "lxd1"], "has no node"),
                           (["migrate", "ghost", "--to", "lxd1"], "no OverCloud named"),
                           (["migrate", name], "exactly one of")):
            bad = run_cli(args, env)
            assert bad.returncode == 1 and says in bad.stderr, bad.stderr
            assert "Traceback" not in bad.stderr
    finally:
        run_cli(["delete", name, "--wait"], env, timeout=900)


def test_drain_evacuates_a_host_and_new_requests_avoid_it(
        mig: tuple[Env, Events], tmp_path: Path) -> None:
    env, events = mig
    name = f"dr{uuid.uuid4().hex[:5]}"
    port = _apply(env, tmp_path, name, 2, "spread")
    assert sorted(_hosts(env, name).values()) == ["lxd1", "lxd2"]
    try:
        with probe(port) as down:
            wall0 = time.time()
            out = run_cli(["undercloud", "drain", "lxd2", "--wait"], env, timeout=600)
            assert out.returncode == 0, out.stdout + out.stderr
        assert set(_hosts(env, name).values()) == {"lxd1"}
        assert all(v == ["lxd1"] for v in _where(env, name).values())
        drained = wait_until(lambda: events.of("MigrationFinished", overcloud=name,
                                               source="lxd2"), timeout=30, what="the event")
        assert [e["payload"]["ok"] for e in drained] == [True], drained
        assert down.ok > 0 and down.downtime < 20.0, (down.downtime,
                                                      timeline(down, wall0, out.stdout))
        listed = orjson.loads(run_cli(["undercloud", "list", "--json"], env, check=True).stdout)
        assert next(h for h in listed["hosts"] if h["host"] == "lxd2")["state"] == "draining"
        # a new request never lands on the drained host
        plan = run_cli(["request", "apply", str(_doc(tmp_path, "dry", 2)), "--dry-run"], env,
                       check=True).stdout
        assert "→ lxd2" not in plan and "→ lxd1" in plan, plan
    finally:
        run_cli(["undercloud", "undrain", "lxd2"], env)
        run_cli(["delete", name, "--wait"], env, timeout=900)


def _doc(tmp: Path, name: str, nodes: int) -> Path:
    doc = tmp / f"{name}.yaml"
    doc.write_text(REQUEST.format(name=name, nodes=nodes, strategy="spread", port=free_port(),
                                  web=max(nodes - 1, 1)))
    return doc


def test_a_target_that_dies_mid_move_leaves_one_copy_and_a_retry_completes(
        mig: tuple[Env, Events], tmp_path: Path) -> None:
    env, events = mig
    s = env.settings()
    name = f"tf{uuid.uuid4().hex[:5]}"
    port = _apply(env, tmp_path, name, 2, "pack")
    web = f"{name}-n2"
    lxd2 = LxdHostService(s, next(h for h in s.lxd_hosts if h.name == "lxd2"))
    try:
        mover = Background(["migrate", name, "--node", web, "--to", "lxd2", "--wait"], env,
                           tmp_path / "migrate-1.log").start()
        # the new node exists on lxd2: stop that host now, in the middle of the move
        wait_until(lambda: web in _where(env, name) and "lxd2" in _where(env, name)[web],
                   timeout=300, interval=0.1, what="the new node on lxd2")
        made = _identity(env, "lxd2", web)
        lxd2.stop()
        assert mover.proc is not None
        assert mover.proc.wait(600) == 1, mover.output()
        rec = Registry(s).get(name)
        assert rec is not None and rec.state == "degraded" and web in rec.error, rec
        # lxd1 serves on; what the failed move made on lxd2 cannot be removed while lxd2 is
        # down, and cannot be seen either: looked at once lxd2 answers again
        assert _where(env, name, down=frozenset({"lxd2"})) == {f"{name}-n1": ["lxd1"],
                                                                web: ["lxd1"]}
        assert _hosts(env, name)[web] == "lxd1"
        _page_answers(port)  # still served, from lxd1
        failed = wait_until(lambda: events.of("MigrationFinished", overcloud=name, ok=False),
                            timeout=30, what="the failed move's event")
        assert failed and failed[-1]["payload"]["node"] == web

        lxd2.start()
        assert _where(env, name) == {f"{name}-n1": ["lxd1"], web: ["lxd1", "lxd2"]}, \
            "the failed move's partial node is still on lxd2"
        out = run_cli(["migrate", name, "--node", web, "--to", "lxd2", "--wait"], env,
                      timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert _where(env, name) == {f"{name}-n1": ["lxd1"], web: ["lxd2"]}
        assert _identity(env, "lxd2", web) == made, "the next migrate must reuse the partial node"
        assert Registry(s).get(name).state == "ready"  # type: ignore[union-attr]
        _page_answers(port)
    finally:
        if not lxd2.daemon.pid():
            lxd2.start()
        run_cli(["delete", name, "--wait"], env, timeout=900)


THRESHOLD, RECOVER = 50.0, 35.0
"""The overload rule of the relief test (percent of the host's declared capacity)."""


def _rates(env: Env, host: str, window: float = 3.0) -> dict[str, float]:
    """Each of our containers' CPU use on `host` (cores), from LXD's accounting over
    `window` seconds: two readings, the second taken once the window has passed."""
    d = drivers(env.settings())[host]
    t0, first = time.monotonic(), d.cpu_usage_ns()
    last: dict[str, Any] = {}

    def window_passed() -> bool:
        last["t"], last["usage"] = time.monotonic(), d.cpu_usage_ns()
        return bool(last["t"] - t0 >= window)

    wait_until(window_passed, timeout=window + 120, interval=0.5, what="a measurement window")
    dt = last["t"] - t0
    return {n: max(u - first.get(n, u), 0) / 1e9 / dt for n, u in last["usage"].items()}


def _host_size(busy: float, idle: float) -> tuple[float, float]:
    """The capacity to declare for a host whose nodes use `busy` + `idle` cores, so that with
    the busy node the host is over THRESHOLD and without it under RECOVER by the same factor
    (as large as these figures allow); returns (capacity, that factor)."""
    margin = ((busy + idle) / idle * RECOVER / THRESHOLD) ** 0.5
    return (busy + idle) / (THRESHOLD / 100 * margin), margin


def test_overload_moves_nodes_until_the_host_recovers(
        mig: tuple[Env, Events], tmp_path: Path) -> None:
    """Real load in a node → the host agent's measurement → the evaluator's rule →
    NodeOverloaded → relief migration → NodeRecovered; one migration however often the
    overload is reported again within the cool-down."""
    env, events = mig
    name = f"ov{uuid.uuid4().hex[:5]}"
    port = _apply(env, tmp_path, name, 3, "pack")
    assert set(_hosts(env, name).values()) == {"lxd1"}
    hot = f"{name}-n3"
    s = env.settings()
    lxd1 = next(h for h in s.lxd_hosts if h.name == "lxd1")
    watch = Env(env, OVERCLOUD_AGENT_INTERVAL="1",
                OVERCLOUD_ALERTS_GROUP=f"al{uuid.uuid4().hex[:5]}",
                OVERCLOUD_ALERTS_TICK="0.5")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n  - {{name: node-overloaded, for: 4s, threshold: {THRESHOLD:g}, "
                     f"recover: {RECOVER:g}}}\n")
    load: subprocess.Popen[bytes] | None = None
    agent = evaluator = None
    try:
        # the page every 0.5 s, not 0.1 s: this asks only "did it ever fail" (the busy node
        # does not serve the URL), and ten WordPress pages a second cost the other nodes 0.6
        # cores, more than a 2-core machine leaves a clear overload room for
        with DowntimeProbe(f"http://127.0.0.1:{port}/wp-admin/install.php", every=0.5) as down, \
                ApacheWorkers(name) as workers:
            # the load: one busy loop in one node, with three times the CPU weight (cgroup
            # shares) of other processes, so that it gets most of a core however busy the
            # shared machine is — the others' tests must not decide whether this node is
            # "busy" — and a node sharing its core (LXD pins each node to one) still gets a
            # quarter (at twenty times, as before, the page on such a node timed out). What
            # the other nodes use is measured first, unhindered: a starved figure made lxd1
            # look recovered when it was not
            before = _rates(env, "lxd1", window=5.0)
            unhindered = sum(v for n, v in before.items() if n != hot)
            subprocess.run(["lxc", "config", "set", hot, "limits.cpu.allowance", "300%"],
                           env=lxc_env(s, lxd1), check=True, capture_output=True, timeout=60)
            load = subprocess.Popen(["lxc", "exec", hot, "--", "sh", "-c",
                                     "while :; do :; done"], env=lxc_env(s, lxd1),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # the host's size as an operator declares it (the inventory; the host agent, the
            # rule, placement and relief plans all measure against it), chosen from what the
            # nodes use now — the busy one and the others (health checks, this test's probe)
            rates = _rates(env, "lxd1")
            busy = rates[hot]
            idle = max(unhindered, sum(v for n, v in rates.items() if n != hot))
            cpus, margin = _host_size(busy, idle)
            print(f"\nlxd1: busy node {busy:.2f} cores, the others {idle:.2f} (alone "
                  f"{unhindered:.2f}): declared "
                  f"{cpus:.2f} CPUs (busy {100 * (busy + idle) / cpus:.0f} %, without the busy "
                  f"node {100 * idle / cpus:.0f} %: a factor {margin:.2f} either side)")
            # 1.2: over the threshold and under the recovery by a fifth either side (a CI run
            # on the shared machine gave the busy loop 0.70 cores next to 0.54: 1.27)
            assert margin >= 1.2, f"no host size makes {busy:.2f} busy + {idle:.2f} idle " \
                "cores a clear overload that one move relieves"
            run_cli(["undercloud", "set", "lxd1", "--cpus", f"{cpus:.3f}"], env, check=True)
            # its own state dir: the evaluator restores its alert states across restarts, and
            # an earlier test's evaluator left lxd1 firing in the session's
            evaluator = Background(["alerts", "run", "--rules", str(rules)],
                                   Env(watch, OVERCLOUD_STATE_DIR=str(tmp_path / "alerts-state")),
                                   tmp_path / "alerts.log").start()
            wait_until(lambda: "alerts:" in evaluator.output(), timeout=180, what="the evaluator")
            agent = Background(["agent", "run", "--layer", "resource"], watch,
                               tmp_path / "agent.log").start()
            started = time.time()
            wait_until(lambda: events.of("NodeOverloaded", host="lxd1"), timeout=180,
                       interval=0.2, what="NodeOverloaded for lxd1")
            # measured and decided: the busy loop keeps running, at an ordinary weight again.
            # Two LXD daemons on one 2-core machine pin their nodes without knowing of each
            # other, so the node the move starts on lxd2 shares the busy loop's core half the
            # time, and at 20 times its weight (as before) it booted for over 5 minutes
            wait_until(lambda: events.of("MigrationStarted", overcloud=name), timeout=180,
                       interval=0.2, what="the relief migration to start")
            subprocess.run(["lxc", "config", "unset", hot, "limits.cpu.allowance"],
                           env=lxc_env(s, lxd1), check=True, capture_output=True, timeout=60)
            wait_until(lambda: events.of("MigrationFinished", overcloud=name), timeout=300,
                       interval=0.2, what="the relief migration")
            wait_until(lambda: events.of("NodeRecovered", host="lxd1"), timeout=180,
                       interval=0.2, what="lxd1 to recover")
        # every planned move done (one workflow: as many Finished as Started)
        moved = wait_until(lambda: len(v := events.of("MigrationFinished", overcloud=name))
                           == len(events.of("MigrationStarted", overcloud=name)) and v,
                           timeout=300, interval=0.2, what="every planned move to finish")
        over = events.of("NodeOverloaded", host="lxd1")[0]
        print(f"overloaded {_t(over) - started:.1f}s after the host agent started "
              f"({over['payload']['value']:.0f} %); moves "
              f"{[(e['payload']['node'], e['payload']['downtime_s']) for e in moved]}; probe "
              f"downtime {down.downtime:.2f}s ({down.failures} failed: {down.kinds()})")
        # one move, the busy node (biggest user first; the others alone are under the
        # recovery threshold), to the big host, which it does not overload
        assert [(e["payload"]["node"], e["payload"]["source"], e["payload"]["target"],
                 e["payload"]["ok"]) for e in moved] == [(hot, "lxd1", "lxd2", True)], moved
        assert _hosts(env, name)[hot] == "lxd2"
        assert "lxd2" in run_cli(["show", name], env, check=True).stdout
        # the busy node does not carry the URL: the page never failed
        assert down.ok > 0 and down.failures == 0, down.kinds()
        # a node starved of CPU by its neighbour keeps its PHP workers bounded (8 per CPU and
        # their parent): with Debian's 150, requests whose clients gave up piled up workers
        # until the machine's load passed 150
        assert workers.most and max(workers.most.values()) <= 8 + 1, workers.most
        print(f"apache2 processes at most, per node: {workers.most}")

        # the same host reported overloaded again within the cool-down: no second migration
        started_before = len(events.of("MigrationStarted", overcloud=name))
        assert started_before == len(moved)
        from overcloud.bus import KafkaEventBus
        from overcloud.events import NodeOverloaded

        bus = KafkaEventBus(s)
        for _ in range(3):
            bus.publish(NodeOverloaded(host="lxd1", rule="node-overloaded", value=95.0,
                                       threshold=85.0, recovery=70.0), key="lxd1")
        bus.close()
        orch_log = Path(tmp_path / "orchestrator.log")
        wait_until(lambda: orch_log.read_text().count("within its 600s cool-down") >= 3,
                   timeout=60, interval=0.2, what="the orchestrator to skip the repeats")
        assert len(events.of("MigrationStarted", overcloud=name)) == started_before
        if load is not None:
            load.kill()
        # "why did my node move?": the developer's page shows the move with its reason
        _page_shows_the_move(env, tmp_path, name, f"{hot} lxd1 → lxd2", "node-overloaded: lxd1 at")
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        for p in (agent, evaluator):
            if p is not None:
                p.stop()
        run_cli(["delete", name, "--wait"], env, timeout=900)


def _page_shows_the_move(env: Env, tmp_path: Path, name: str, move: str, reason: str) -> None:
    """The owner's DevTower page, opened after the fact, marks the move on its charts and
    lists it with its reason (the DevTower's feed reads the events topic from its start)."""
    from devtower.server import token_store
    from devtower.tokens import Role
    from tests.browser import chromium, css, read, shot, sign_in

    port = free_port()
    tenv = Env(env, OVERCLOUD_DEVTOWER_PORT=str(port), OVERCLOUD_DEVTOWER_WORKERS="1")
    token, _ = token_store(tenv.settings()).create("test@example.org", Role.DEVELOPER)
    tower = Background(["tower", "run"], tenv, tmp_path / "devtower.log").start()
    try:
        wait_until(lambda: "devtower: http" in tower.output(), timeout=180, interval=0.2,
                   what="the DevTower")
        url = f"http://127.0.0.1:{port}"
        with chromium(1280, 1500) as d:
            sign_in(d, url, token)
            d.get(url + f"/#/oc/{name}")
            started = read(d, '#markers li[data-type="MigrationStarted"]', timeout=180)
            assert move in started and reason in started, started
            assert move in read(d, '#markers li[data-type="MigrationFinished"]', timeout=60)
            css(d, "#box-cpu canvas", timeout=60)
            shot(d, "overload-move", Path(__file__).resolve().parents[2] / ".pytest-screens")
    finally:
        tower.stop()


def _t(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["time"]).timestamp()
