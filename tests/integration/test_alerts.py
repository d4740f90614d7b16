"""Node-overloaded end to end on real services: a busy machine container on LXD host lxd1 →
host agent (`resource_undercloud`, every 1 s) → tansu → the evaluator process → one webhook
notification, the alert in a real Alertmanager, `NodeOverloaded` on the events topic, the
`alerts` measurement in the DevLake; load throttled below the threshold → still firing
(hysteresis); load stopped → resolved at the first sample below the recovery threshold;
agent stopped → the no-data policy (`alert`) fires.

Run with OC_TEST_BRIDGE_PREFIX=ocal OC_TEST_SUBNET_PREFIX=10.237 (own bridges and subnets).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest

from collectors.resource.undercloud import Capacity, LxdHostSource, UnderCloudCollector
from devlake.alerts.runner import read_state
from devlake.sinks import InfluxQL, make_sink
from devtower.services import manager
from lxdclient import lxc_env
from orchestrator.hosts import LxdDriver, NodeSpec
from orchestrator.images import NODE_ALIAS
from overcloud.bus import events_topic, make_consumer
from overcloud.events import AlertFiring, AlertResolved, Event, NodeOverloaded, NodeRecovered
from overcloud.settings import Settings
from overcloud.waiting import wait_until
from overcloud.wire import decode_event
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FOR_S = 5.0
INTERVAL_S = 1.0
TICK_S = 0.2
THRESHOLD, RECOVER = 85.0, 25.0
"""The rule's thresholds (% of capacity). The band between them is wide because a reading is
noisy on a loaded machine: LXD's counters are read during an API call whose latency varies
and the reading is dated at its end, so a steady load reads ±15-30 % from one second to the
next (a load capped at 80 % read 69.2 once, below the built-in 70; one capped at 60 % read
42.4 and 71.6 in one run, in a band of 40-85)."""
CAP_MS = 3
"""The hysteresis step's cap: a CFS quota of CAP_MS per 100 ms period (0.03 CPU): a hard
limit, far below any share the container gets on the shared machine however busy it is."""
THROTTLED = (THRESHOLD * RECOVER) ** 0.5 / 100
"""Where the cap sits, as a fraction of capacity: the band's geometric middle (46 %), so a
reading may be off by a factor 1.84 either way (-46 %/+84 %) before it leaves the band."""
HOST_CPUS = round(CAP_MS / 100 / THROTTLED, 3)
"""Capacity of lxd1 for this test (0.065 CPU). The machine is shared (2 cores, load often
10-80): a busy container gets only its share of a core, unknowable in advance, so the host is
declared small enough that two busy loops are far above the threshold (~1500 %), the capped
container mid-band, and the idle container (systemd, dockerd, ~3 %) far below the recovery
threshold. Declared in the inventory too (`undercloud set --cpus`), which the host agent
prefers to its settings: an earlier test in the session (the migration tests) left lxd1 at 8
CPUs there, and the loops then read 10 % of capacity and never fired."""
WEIGHT = "400%"
"""The busy container's CPU weight (`limits.cpu.allowance` as a percentage: cgroup shares,
4× a normal process's), so that the machine's other work does not decide its load."""
BURN = "/root/oc-burn.sh"
BURN_RE = "oc-bur[n]"  # matches the loops' command line, not the shell that searches for them


class Hook(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.posts.append((self.path, orjson.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def ours(path: str) -> list[dict[str, Any]]:
    return [b for p, b in Hook.posts if p == path]


@pytest.fixture
def hook() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


class Events:
    def __init__(self, s: Settings) -> None:
        self.consumer = make_consumer(s, [events_topic(s)], f"ev{uuid.uuid4().hex[:6]}")
        self.seen: list[Event] = []

    def poll(self) -> list[Event]:
        for msgs in self.consumer.poll(timeout_ms=200).values():
            self.seen += [decode_event(m.value) for m in msgs]
        return self.seen

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.poll() if isinstance(e, cls)]


class Box:
    """Commands inside the machine container, through `lxc exec` on its LXD host."""

    def __init__(self, s: Settings, host: Any, name: str) -> None:
        self.env = lxc_env(s, host)
        self.name = name

    def sh(self, script: str) -> str:
        out = subprocess.run(["lxc", "exec", self.name, "--", "sh", "-c", script], env=self.env,
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def burners(self) -> list[int]:
        """Pids of the busy loops, from /proc (the node image has no procps)."""
        out = self.sh(f"grep -l '{BURN_RE}' /proc/[0-9]*/cmdline 2>/dev/null || true")
        return sorted(int(line.split("/")[2]) for line in out.split())

    def start_load(self, loops: int) -> None:
        # detached from the exec session (nohup, own stdio), so they outlive it; checked by pid
        self.sh(f"printf 'while :; do :; done\\n' >{BURN}; "
                f"for i in $(seq {loops}); do nohup sh {BURN} >/dev/null 2>&1 </dev/null & done")

    def cap_cpu(self, allowance: str) -> None:
        """`limits.cpu.allowance`: a CFS quota (`3ms/100ms`), or a weight (`400%`); "" lifts it."""
        args = ["set", self.name, "limits.cpu.allowance", allowance] if allowance else \
            ["unset", self.name, "limits.cpu.allowance"]
        subprocess.run(["lxc", "config", *args], env=self.env, capture_output=True, timeout=60,
                       check=True)

    def stop_load(self) -> None:
        self.sh(f"for p in $(grep -l '{BURN_RE}' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); "
                "do kill $p; done; true")


def idle_for(probe: UnderCloudCollector, readings: int) -> Any:
    """A predicate: the host's load stayed under the recovery threshold (what the test's idle
    baseline must be) for `readings` readings. Half of it, as before, was 8 ms of CPU a second
    for the whole host: an idle node's dockerd with the reading's noise on a loaded machine
    missed it for 3 minutes in two of three CI runs."""
    calm = [0]

    def check() -> bool:
        (sample,) = probe.collect()
        cpu = sample.fields.get("cpu_percent")
        calm[0] = calm[0] + 1 if isinstance(cpu, float) and cpu < RECOVER else 0
        return calm[0] >= readings

    return check


def test_node_overloaded(uc: Env, hook: int, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    env = Env(uc, OVERCLOUD_KAFKA_TOPIC_PREFIX=f"al{tag}", OVERCLOUD_DEVLAKE_GROUP=f"dl{tag}",
              OVERCLOUD_ALERTS_GROUP=f"al{tag}", OVERCLOUD_AGENT_INTERVAL=str(INTERVAL_S),
              OVERCLOUD_UNDERCLOUD_HOST_CPUS=str(HOST_CPUS), OVERCLOUD_ALERTS_TICK=str(TICK_S),
              OVERCLOUD_ALERTS_RESEND="2", OVERCLOUD_DEVLAKE_LINGER="0.1",
              OVERCLOUD_ALERTS_ALERTMANAGER_PORT=str(free_port()),
              OVERCLOUD_ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{hook}/am")
    s = env.settings()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""rules:
  - name: node-overloaded
    for: {FOR_S:g}s
    threshold: {THRESHOLD:g}
    recover: {RECOVER:g}
    no_data: {{policy: alert, after: 4s}}
    actions:
      - {{type: event, event: node_overloaded}}
      - {{type: alertmanager}}
      - {{type: webhook, url: "http://127.0.0.1:{hook}/hook"}}
""")
    lxd1 = next(h for h in s.lxd_hosts if h.name == "lxd1")
    driver = LxdDriver(s, lxd1)
    name = f"al{tag}"
    logs = tmp_path / "logs"
    procs: list[Background] = []
    ql = InfluxQL(s.influx)
    db = s.influx.default_database
    marks: dict[str, float] = {}

    def cpu_series(since_s: float, until_s: float | None = None) -> list[tuple[float, float]]:
        """(time s, cpu_percent) of lxd1 in the DevLake."""
        # event times are datetimes (µs): the sample at an event's instant is within 1 µs after
        until = f" AND time <= {(until_s + 1e-6) * 1e9:.0f}" if until_s is not None else ""
        series = ql.query(f"SELECT cpu_percent FROM resource_undercloud WHERE host = 'lxd1' "
                          f"AND time >= {since_s * 1e9:.0f}{until}", db)
        return [(t / 1e9, v) for t, v in series[0]["values"]] if series else []

    def timeline() -> None:
        t0 = marks.get("load_confirmed", time.time() - 120)
        print("\nmarks (s from load confirmed):",
              {k: round(v - t0, 2) for k, v in marks.items()})
        print("lxd1 cpu_percent:", [(round(t - t0, 2), v) for t, v in cpu_series(t0 - 15)])
        for p in procs:
            print(f"--- {p.args[0:2]} log ---\n{p.output()[-3000:]}")

    from orchestrator.inventory import Inventory, default_capacity

    inv = Inventory(s)
    try:
        declared = inv.host("lxd1").cpus  # put back at the end (the session's other tests)
        inv.update("lxd1", cpus=HOST_CPUS)
    finally:
        inv.close()
    manager.up(s, ["alertmanager"])
    try:
        driver.launch(NodeSpec(name=name, overcloud="alerts-test", node="n1", image=NODE_ALIAS,
                               cpu=2, memory_bytes=512 << 20))
        box = Box(s, lxd1, name)
        # the container's own start-up (systemd, dockerd) is not the load under test
        probe = UnderCloudCollector(LxdHostSource(lxd1), "lxd1", Capacity(HOST_CPUS, 1 << 30))
        wait_until(idle_for(probe, 3), timeout=300, interval=1.0, what="lxd1 idle after the launch")
        events = Events(s)
        procs += [Background(["devlake", "run"], env, logs / "devlake.log").start(),
                  Background(["alerts", "run", "--rules", str(rules)], env, logs / "alerts.log").start()]
        alerts_proc = procs[1]
        # ready (banner) only once its group is joined and partitions assigned
        wait_until(lambda: "alerts: 1 rules" in alerts_proc.output(), timeout=60,
                   what="the evaluator's ready banner")
        agent = Background(["agent", "run", "--layer", "resource"], env, logs / "agent.log").start()
        procs.append(agent)

        def seen_hosts() -> set[str]:
            st = read_state(s) or {}
            return {g["group"].get("host", "") for g in st.get("groups") or []}

        # started before the agent, the evaluator sees its very first samples of lxd1
        wait_until(lambda: "lxd1" in seen_hosts(), timeout=60, interval=0.2,
                   what="lxd1's samples at the evaluator")
        marks["first_seen"] = time.time()
        # two readings in a row with a rate (the first has none), both below recovery: the
        # idle baseline. Waited for, not taken from the first two: on a host declared 0.065
        # CPU, a 29 ms blip of the idle node read 44 % once (CI), and the rule needs 85 % for
        # 5 s, so one such reading says nothing about the alert
        before = wait_until(lambda: len(v := cpu_series(marks["first_seen"] - 60)) >= 2
                            and all(x < RECOVER for _, x in v[-2:]) and v[-2:],
                            timeout=120, what="two cpu_percent samples of lxd1 below recovery")
        assert all(v < RECOVER for _, v in before), before
        events.poll()
        assert ours("/hook") == []

        # --- load: two busy loops in the container --------------------------------------------
        box.cap_cpu(WEIGHT)
        marks["load_cmd"] = time.time()
        box.start_load(2)
        (p1, p2) = wait_until(lambda: len(box.burners()) == 2 and box.burners(), timeout=30,
                              interval=0.1, what="the busy loops running")
        marks["load_confirmed"] = onset = time.time()
        (over,) = wait_until(lambda: events.of(NodeOverloaded), timeout=FOR_S + 60, interval=0.1,
                             what="NodeOverloaded")
        marks["event_received"] = time.time()
        marks["fired"] = fired = over.time.timestamp()
        # detection, in the agent's readings (their times, not this machine's latencies): the
        # condition began at the first or second reading after the loops were seen running,
        # and the rule fired `for` after that, at the next tick or reading
        def readings_through_firing() -> list[tuple[float, float]]:
            v = cpu_series(marks["load_cmd"])
            began = next((t for t, x in v if x > THRESHOLD), None)
            return v if began is not None and v[-1][0] >= max(fired, began + FOR_S) else []

        samples = wait_until(readings_through_firing, timeout=30,
                             what="the readings up to the firing in the DevLake")
        since = next(t for t, v in samples if v > THRESHOLD)
        after_onset = [t for t, _ in samples if t > onset]
        due = next(t for t, _ in samples if t >= since + FOR_S)
        marks["breach"] = since
        print(f"\ndetection: load running → NodeOverloaded fired {fired - onset:.2f}s "
              f"(received {marks['event_received'] - onset:.2f}s; condition began "
              f"{since - onset:.2f}s after the load was seen, fired {fired - since:.2f}s after "
              f"that; for {FOR_S:g}s, interval {INTERVAL_S:g}s)")
        assert box.burners() == [p1, p2]  # the loops outlived their exec session
        assert over.host == "lxd1" and over.value > THRESHOLD and over.threshold == THRESHOLD
        assert since <= after_onset[1], (since, after_onset)
        # never before `for`; at the latest on the first reading after it (a tick may beat
        # it), that reading being up to ~2 s in transit from the agent on a loaded machine
        assert since + FOR_S - 1e-3 <= fired <= max(due, since + FOR_S + TICK_S) + 2.0, \
            (since, fired, due)
        (firing,) = wait_until(lambda: ours("/hook"), timeout=15, what="webhook notification")
        assert firing["status"] == "firing" and firing["labels"]["host"] == "lxd1"
        assert firing["value"] > THRESHOLD and firing["reason"] == "threshold"
        assert [e.rule for e in events.of(AlertFiring)] == ["node-overloaded"]

        # Alertmanager holds it (and, routed by its own receiver, notified /am)
        def am_alerts() -> list[Any]:
            r = httpx.get(f"{s.alerts.alertmanager_base}/api/v2/alerts",
                          params={"filter": 'alertname="node-overloaded"'}, timeout=5)
            return [a for a in r.json() if a["labels"].get("host") == "lxd1"]

        (am,) = wait_until(am_alerts, timeout=15, what="the alert in Alertmanager")
        assert am["status"]["state"] == "active" and am["labels"]["severity"] == "critical"
        (am_hook,) = wait_until(lambda: ours("/am"), timeout=30,
                                what="Alertmanager's own webhook receiver")
        assert am_hook["status"] == "firing"
        assert [a["labels"]["host"] for a in am_hook["alerts"]] == ["lxd1"]

        # still firing for several more samples: no second notification (no storm)
        n = len(cpu_series(onset))
        wait_until(lambda: len(cpu_series(onset)) >= n + 5, timeout=30,
                   what="5 more samples while firing")
        assert all(v > THRESHOLD for _, v in cpu_series(marks["fired"])), \
            cpu_series(marks["fired"])
        events.poll()
        assert len(ours("/hook")) == 1 and len(events.of(NodeOverloaded)) == 1
        assert len(events.of(AlertFiring)) == 1

        # --- hysteresis: the loops capped (a CFS quota) at 46 % of lxd1's capacity, mid-way
        # between recovery and threshold: readings below the threshold, and it keeps firing
        box.cap_cpu(f"{CAP_MS}ms/100ms")
        marks["throttled"] = time.time()

        def band_or_resolved() -> list[float]:
            v = [x for _, x in cpu_series(marks["throttled"] + INTERVAL_S)]
            if events.of(AlertResolved):
                return v  # (fails below, with the readings that made it resolve)
            return v if sum(RECOVER <= x < THRESHOLD for x in v) >= 3 else []

        band = wait_until(band_or_resolved, timeout=60, interval=0.3,
                          what=f"3 readings between {RECOVER:g} and {THRESHOLD:g}")
        print(f"capped at {THROTTLED:.0%} of capacity: {band}")
        events.poll()
        assert events.of(AlertResolved) == [] and len(ours("/hook")) == 1, band
        assert all(x >= RECOVER for x in band), band

        # --- load stopped: resolved at the first sample below the recovery threshold -------
        box.stop_load()
        wait_until(lambda: box.burners() == [], timeout=30, interval=0.2, what="the loops gone")
        marks["load_stopped"] = time.time()
        (resolved,) = wait_until(lambda: events.of(AlertResolved), timeout=30, what="AlertResolved")
        marks["resolved"] = resolved.time.timestamp()
        assert resolved.value < RECOVER
        hooks = wait_until(lambda: len(ours("/hook")) == 2 and ours("/hook"), timeout=15,
                           what="the resolved notification")
        assert hooks[1]["status"] == "resolved" and hooks[1]["reason"] == "recovered"
        # every sample between firing and resolution stayed at or above the recovery
        # threshold, some of them below the firing threshold: hysteresis
        values = wait_until(
            lambda: (v := [x for _, x in cpu_series(marks["fired"], marks["resolved"])])
            and v[-1] < RECOVER and v, timeout=15, what="the resolving sample in the DevLake")
        assert all(v >= RECOVER for v in values[:-1]) and values[-1] == resolved.value, values
        assert sum(RECOVER <= v < THRESHOLD for v in values[:-1]) >= 3, values
        print(f"values from firing to resolved: {values}")
        assert len(events.of(NodeRecovered)) == 1
        # the alerts measurement, for the dashboards' alerts view
        alert_rows = wait_until(
            lambda: (q := ql.query("SELECT firing, value FROM alerts WHERE host = 'lxd1' AND "
                                   "rule = 'node-overloaded'", db)) and len(q[0]["values"]) == 2
            and q[0]["values"], timeout=15, what="alerts measurement")
        assert [row[1] for row in alert_rows] == [True, False]
        assert alert_rows[0][2] == over.value and alert_rows[1][2] == resolved.value

        # --- the agent stops: the no-data policy (alert) fires --------------------------------
        assert agent.stop() == 0
        marks["agent_stopped"] = time.time()
        nodata = wait_until(lambda: [h for h in ours("/hook") if h.get("reason") == "no_data"
                                     and h["labels"]["host"] == "lxd1"],
                            timeout=30, what="no-data notification")
        marks["no_data"] = time.time()
        assert nodata[0]["status"] == "firing" and "no_data" in nodata[0]["annotations"]
        events.poll()
        assert len(events.of(NodeOverloaded)) == 1   # silence is not overload
        assert alerts_proc.alive()
        listing = run_cli(["alerts", "list", "--rules", str(rules)], env)
        assert "node-overloaded" in listing.stdout and "firing" in listing.stdout, listing.stdout
        print("marks (s from load confirmed):", {k: round(v - onset, 2) for k, v in marks.items()})
        events.consumer.close()
    except BaseException:
        timeline()
        raise
    finally:
        for p in procs:
            p.stop()
        ql.close()
        driver.delete(name)
        manager.down(s, ["alertmanager"])
        inv = Inventory(s)
        try:  # (no override before: the settings' size, which is what lxd1 had then)
            inv.update("lxd1", cpus=declared or default_capacity(uc.settings())[0])
        finally:
            inv.close()
    assert name not in driver.instances()


def test_alerts_test_over_devlake_data(env: Env, tmp_path: Path) -> None:
    """`overcloud alerts test FILE` over points in a real InfluxDB: the transitions and what
    would fire now, for a grouped rule and for a rule scoped by a tag it does not group by."""
    tag = uuid.uuid4().hex[:6]
    env = Env(env, OVERCLOUD_INFLUX_DATABASE_PREFIX=f"bt{tag}_",
              OVERCLOUD_INFLUX_DEFAULT_DATABASE=f"bt{tag}_undercloud")
    s = env.settings()
    sink = make_sink(s.influx)
    db = s.influx.default_database
    sink.ensure_database(db)
    now = time.time_ns() // 10**9 * 10**9
    lines = []
    for i in range(40):   # the last 40 s: lxd1 at 95 % for 10 s, 80 % (hysteresis), 40 %; lxd2 busy
        ts = now - (40 - i) * 10**9
        lxd1 = 40.0 if i < 5 else 95.0 if i < 15 else 80.0 if i < 25 else 40.0
        lines.append(f"resource_undercloud,host=lxd1 cpu_percent={lxd1} {ts}")
        lines.append(f"resource_undercloud,host=lxd2 cpu_percent={95.0 if i >= 30 else 10.0} {ts}")
    sink.write(db, "\n".join(lines).encode())
    sink.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text("""rules:
  - {name: node-overloaded, for: 5s}
  - name: lxd2-busy
    watch: {measurement: resource_undercloud, field: cpu_percent, where: {host: lxd2}}
    condition: ">"
    threshold: 90
    for: 5s
  - name: any-busy
    watch: {measurement: resource_undercloud, field: cpu_percent}
    condition: ">"
    threshold: 90
    for: 20s
""")
    out = run_cli(["alerts", "test", str(rules), "--since", "1m"], env, check=True).stdout
    lines_out = [line.strip() for line in out.splitlines()]
    assert lines_out[0].startswith(f"3 rules over 200 points of the last 1m ({db})"), out
    changes = [line.split(" ", 1)[1] for line in lines_out[1:] if line[:2].isdigit()]
    assert changes == [
        "node-overloaded host=lxd1: firing (value 95.000, threshold)",
        "node-overloaded host=lxd1: resolved (value 40.000, recovered)",
        "node-overloaded host=lxd2: firing (value 95.000, threshold)",
        "lxd2-busy -: firing (value 95.000, threshold)",
    ], out   # no phantom `host=` group from another rule's points; any-busy never held 20 s
    assert "would be firing now: node-overloaded host=lxd2" in out
    assert "would be firing now: lxd2-busy -" in out
