"""Pipeline benchmark: simulated agents → tansu broker → DevLake → InfluxDB 1.x.

What one run does (everything on 127.0.0.1, in a private state directory, on free ports):

1. starts its own broker and InfluxDB with `devtower.services.manager` (stopped at the end,
   by the pids recorded in that private state directory — never anything else);
2. starts `--devlakes` real `overcloud devlake run` processes in one consumer group;
3. per round:
   a. **ceiling**: one Python process posts pre-built, batched line protocol of exactly the
      points the agents send straight to InfluxDB's `/write`, first from one writer, then
      from two parallel ones (each its own connection; the pipeline writes with two
      DevLakes) → InfluxDB's raw points/s, the better of the two (the *fair* ceiling);
   b. **pipeline**: `--producers` processes simulate `--nodes` agents. Each node's message is
      a real agent cycle (the HostCollector's `samples_between` on synthetic snapshots of a
      `--cores`-core host, tagged like `Agent.cycle`, rendered into a `LineBatch` as agents
      publish it, or a `SampleBatch` with `--format samples`), encoded once per node and
      variant and re-stamped per send (the agent's own CPU cost is
      `bench/agent_overhead.py`'s business); they are published keyed by node at an open-loop
      rate of `--load` × that round's ceiling. Small probe messages carrying their publish
      time go through the same topic; a poller finds each in InfluxDB (every `--poll` s) →
      publish→queryable latency. At the end every point is counted in InfluxDB.
4. prints per round and the medians: stored points/s, ratio to the ceiling, p50/p99 latency,
   and where the CPU went (cores used by producers, broker, DevLake, influxd, and µs of CPU
   per stored point of each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    cpu_seconds,
    median,
    overcloud_cli,
    percentile,
    print_machine,
    private_services,
    service_pids,
    spawn,
    total_cpu_seconds,
)

from agents.runtime import AgentIdentity
from collectors.resource.host import HostSnapshot, samples_between
from devlake.sinks import InfluxQL, InfluxV1Sink
from overcloud import influxql
from overcloud.bus import make_producer, metrics_topic
from overcloud.influxql import QL, compose
from overcloud.lineprotocol import encode_lines, line
from overcloud.samples import Layer, Sample
from overcloud.settings import Settings, load_settings
from overcloud.wire import encode_samples

OVERCLOUD = "bench"
DATABASE = f"devlake_{OVERCLOUD}"
CEILING_DB = "bench_ceiling"
TS_SENTINEL = 1_111_111_111_111_111_111  # 19 digits like a real time_ns, replaced per send
ID_SENTINEL = "b" * 32
#: one field that every point of a measurement carries, for counting in InfluxDB
COUNT_FIELD = {
    "resource_host": "load1",
    "resource_host_cpu": "cpu_percent",
    "resource_host_disk": "total",
    "resource_host_diskio": "read_bytes",
    "resource_host_net": "bytes_sent",
    "agent_spool": "queued_messages",
}

# --- simulated agents ------------------------------------------------------------------------


def _snapshot(rng: random.Random, prev: HostSnapshot | None, cores: int, t_ns: int) -> HostSnapshot:
    def cpu(p: dict[str, float] | None) -> dict[str, float]:
        keys = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        base = p or dict.fromkeys(keys, 1000.0)
        return {k: base[k] + rng.uniform(0, 5 if k == "idle" else 1) for k in keys}

    def counters(p: dict[str, int] | None, keys: tuple[str, ...]) -> dict[str, int]:
        return {k: (p[k] if p else 10**9) + rng.randrange(0, 10**6) for k in keys}

    io_keys = ("read_bytes", "write_bytes", "read_count", "write_count")
    net_keys = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv",
                "errin", "errout", "dropin", "dropout")
    total = 64 * 2**30
    used = rng.randrange(2**30, 60 * 2**30)
    return HostSnapshot(
        time_ns=t_ns,
        cpu_total=cpu(prev.cpu_total if prev else None),
        cpu_per_core=[cpu(prev.cpu_per_core[i] if prev else None) for i in range(cores)],
        load=(rng.uniform(0, cores), rng.uniform(0, cores), rng.uniform(0, cores)),
        memory={"total": total, "available": total - used, "used": used},
        swap={"total": 2**32, "used": rng.randrange(0, 2**30)},
        disks={m: {"total": 2**40, "used": (u := rng.randrange(2**38, 2**39)), "free": 2**40 - u}
               for m in ("/", "/var/lib/lxd")},
        disk_io={d: counters(prev.disk_io[d] if prev else None, io_keys) for d in ("vda", "vdb")},
        net_io={n: counters(prev.net_io[n] if prev else None, net_keys)
                for n in ("eth0", "eth1", "lxdbr0")},
    )


def node_cycles(node: str, cores: int, variants: int, seed: int,
                overcloud: str = OVERCLOUD) -> list[list[Sample]]:
    """`variants` consecutive agent cycles of one simulated node, stamped with TS_SENTINEL."""
    rng = random.Random(seed)
    ident = AgentIdentity(node=node, host=node, overcloud=overcloud)
    tags = ident.tags(Layer.RESOURCE)
    prev = _snapshot(rng, None, cores, 1)
    out = []
    for i in range(variants):
        cur = _snapshot(rng, prev, cores, 1 + (i + 1) * 10**9)
        samples = [Sample(s.measurement, {**tags, **s.tags}, s.fields, TS_SENTINEL)
                   for s in samples_between(prev, cur)]
        samples.append(Sample("agent_spool", tags, {
            "queued_messages": 0, "queued_bytes": 0, "dropped_messages_total": 0,
            "dropped_samples_total": 0, "sent_messages_total": i, "connected": True,
        }, TS_SENTINEL))
        out.append(samples)
        prev = cur
    return out


def node_names(n: int) -> list[str]:
    return [f"sim-{i:04d}" for i in range(n)]


@dataclass
class ProducerPlan:
    index: int
    nodes: list[str]
    cores: int
    variants: int
    rate: float  # messages per second (open loop)
    duration: float
    probe_interval: float
    overcloud: str
    producer_options: dict[str, Any]
    env: dict[str, str]
    start_at: float  # time.time() at which to start sending
    format: str = "lines"  # what agents publish (LineBatch), or "samples" (SampleBatch)

    def encode(self, samples: list[Sample], batch_id: str | None = None) -> bytes:
        encode = encode_lines if self.format == "lines" else encode_samples
        return encode(samples, batch_id)


@dataclass
class ProducerResult:
    index: int
    messages: int = 0
    points: int = 0
    probes: list[tuple[str, int, int]] = field(default_factory=list)  # (node, seq, sent_ns)
    ends: list[tuple[str, int, int]] = field(default_factory=list)
    behind_s: float = 0.0
    failed_messages: int = 0
    failed_points: int = 0
    error_sample: str = ""  # how far the open-loop schedule was behind at the end
    cpu_s: float = 0.0
    error: str = ""


def producer_main(plan: ProducerPlan, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    res = ProducerResult(plan.index)
    try:
        _produce(plan, res)
    except Exception as exc:  # reported to the parent, never a silent failure
        res.error = f"{type(exc).__name__}: {exc}"
    res.cpu_s = time.process_time() - res.cpu_s
    out.put(res)


def _produce(plan: ProducerPlan, res: ProducerResult) -> None:
    settings = load_settings(config=None, env=plan.env)
    topic = metrics_topic(settings, Layer.RESOURCE)
    ts_b = str(TS_SENTINEL).encode()
    id_b = ID_SENTINEL.encode()
    # per node: (key, [(template bytes, points)]) built by the real encoder
    templates = []
    for _j, node in enumerate(plan.nodes):
        cycles = node_cycles(node, plan.cores, plan.variants, seed=zlib.crc32(node.encode()),
                             overcloud=plan.overcloud)
        encoded = [(plan.encode(c, ID_SENTINEL), len(c)) for c in cycles]
        templates.append((node.encode(), encoded))
    producer = make_producer(settings, **plan.producer_options)
    # connect before the clock starts
    producer.partitions_for(topic)
    last_ts = dict.fromkeys(range(len(templates)), 0)

    def failed(points: int, exc: Exception) -> None:
        # not acknowledged by the broker: not counted as produced (and reported)
        res.failed_messages += 1
        res.failed_points += points
        res.points -= points
        res.error_sample = res.error_sample or f"{type(exc).__name__}: {exc}"

    seq = 0
    sent = 0
    probe_seq = 0
    probe_node = f"probe-{plan.index}"
    while time.time() < plan.start_at:
        time.sleep(0.001)
    t0 = time.monotonic()
    res.cpu_s = time.process_time()  # the parent gets the CPU spent from here on
    next_probe = t0
    end = t0 + plan.duration
    n_nodes = len(templates)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * plan.rate) + 1
        while sent < due:
            k = sent % n_nodes
            key, variants = templates[k]
            tpl, points = variants[(sent // n_nodes) % len(variants)]
            ts = time.time_ns()
            if ts <= last_ts[k]:
                ts = last_ts[k] + 1
            last_ts[k] = ts
            seq += 1
            value = tpl.replace(ts_b, str(ts).encode()).replace(
                id_b, f"{plan.index:08x}{seq:024x}".encode())
            fut = producer.send(topic, key=key, value=value)
            fut.add_errback(failed, points)
            sent += 1
            res.points += points
        if now >= next_probe:
            probe_seq += 1
            sent_ns = time.time_ns()
            probe = Sample("bench_probe", {"node": probe_node, "overcloud": plan.overcloud},
                           {"seq": probe_seq}, sent_ns)
            producer.send(topic, key=f"probe-{probe_seq}".encode(), value=plan.encode([probe]))
            res.probes.append((probe_node, probe_seq, sent_ns))
            next_probe += plan.probe_interval
        time.sleep(0.002)
    res.behind_s = max(0.0, (int(plan.duration * plan.rate) - sent) / plan.rate)
    producer.flush(timeout=60)
    # end markers, one per partition, after everything else: when all are queryable, every
    # point before them is (a partition is consumed in order and written batch by batch)
    for p in sorted(producer.partitions_for(topic)):
        s = Sample("bench_probe", {"node": f"end-{plan.index}-{p}", "overcloud": plan.overcloud},
                   {"seq": 0}, time.time_ns())
        producer.send(topic, partition=p, value=plan.encode([s]))
        res.ends.append((f"end-{plan.index}-{p}", 0, s.time_ns))
    producer.flush(timeout=60)
    producer.close(timeout=10)
    res.messages = sent


# --- InfluxDB side ---------------------------------------------------------------------------


def ceiling_batches(nodes: list[str], cores: int, batch_lines: int, max_points: int,
                    t_base: int) -> tuple[list[bytes], int]:
    """Pre-built line protocol bodies: the same points the agents send, unique timestamps."""
    node_lines = []
    for _j, node in enumerate(nodes):
        cycles = node_cycles(node, cores, 1, seed=zlib.crc32(node.encode()))
        node_lines.append(("\n".join(line(s) for s in cycles[0]) + "\n").encode())
    sentinel = str(TS_SENTINEL).encode()
    per_node = node_lines[0].count(b"\n")
    bodies: list[bytes] = []
    parts: list[bytes] = []
    in_batch = 0
    total = 0
    i = 0
    while total < max_points:
        tpl = node_lines[i % len(node_lines)]
        parts.append(tpl.replace(sentinel, str(t_base + i).encode()))
        in_batch += per_node
        total += per_node
        i += 1
        if in_batch >= batch_lines:
            bodies.append(b"".join(parts))
            parts, in_batch = [], 0
    if parts:
        bodies.append(b"".join(parts))
    return bodies, per_node


def measure_ceiling(settings: Settings, bodies: list[bytes], seconds: float,
                    db: str, writers: int = 1) -> dict[str, float]:
    """InfluxDB's raw write rate: `writers` threads (each its own connection) POST the
    pre-built bodies, taking turns, for `seconds`."""
    from devlake.sinks import client as influx_client

    counts = [0] * writers
    errors: list[str] = []
    t0 = c0 = 0.0

    def go() -> None:  # run by the barrier before it lets anyone through: the clock starts
        nonlocal t0, c0
        t0, c0 = time.perf_counter(), time.process_time()

    start = threading.Barrier(writers + 1, action=go)

    def write(k: int) -> None:
        with influx_client(settings.influx, 60, "devlake") as client:
            # warm-up: one batch each, not timed
            client.post("/write", params={"db": db, "precision": "ns"}, content=bodies[k])
            start.wait()
            for body in bodies[writers + k::writers]:
                r = client.post("/write", params={"db": db, "precision": "ns"}, content=body)
                if r.status_code != 204:
                    errors.append(f"ceiling write failed: {r.status_code} {r.text[:200]}")
                    return
                counts[k] += body.count(b"\n")
                if time.perf_counter() - t0 >= seconds:
                    return

    threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - c0
    if errors:
        raise RuntimeError(errors[0])
    points = sum(counts)
    return {"points": points, "seconds": elapsed, "rate": points / elapsed,
            "client_cpu_cores": client_cpu / elapsed}


def count_query(measurement: str, fld: str, since_ns: int) -> QL:
    return compose("SELECT count({}) FROM {} WHERE time >= {}", influxql.ident(fld),
                   influxql.ident(measurement), influxql.integer(since_ns))


def count_points(ql: InfluxQL, database: str, since_ns: int) -> int:
    total = 0
    for meas, fld in COUNT_FIELD.items():
        for s in ql.query(count_query(meas, fld, since_ns), database, post=True):
            total += int(s["values"][0][1])
    return total


class ProbePoller(threading.Thread):
    """Polls InfluxDB for probes and records when each first became queryable."""

    def __init__(self, settings: Settings, interval: float, since_ns: int, db: str) -> None:
        super().__init__(daemon=True)
        self._ql = InfluxQL(settings.influx, timeout=5)
        self.interval = interval
        self.since_ns = since_ns
        self.db = db
        self.seen: dict[tuple[str, int], int] = {}
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                series = self._ql.query(
                    compose('SELECT "seq", "node" FROM "bench_probe" WHERE time >= {}',
                            influxql.integer(self.since_ns)),
                    self.db,
                )
            except Exception:
                self.errors += 1
                series = []
            now = time.time_ns()
            for s in series:
                for _t, seq, node in s.get("values", []):
                    self.seen.setdefault((node, int(seq)), now)
            self.stop.wait(self.interval)
        self._ql.close()


# --- orchestration ---------------------------------------------------------------------------


def start_devlakes(n: int, env: dict[str, str], state: Path) -> list[Any]:
    procs = []
    for i in range(n):
        procs.append(spawn([*overcloud_cli(), "devlake", "run"], env,
                           state / "log" / f"bench-devlake-{i}.log", cwd=state))
    return procs


def create_devlake(settings: Settings, database: str) -> None:
    sink = InfluxV1Sink(settings.influx)
    sink.ensure_database(database)
    sink.close()


def wait_group_ready(settings: Settings, env: dict[str, str], partitions: int,
                     timeout: float = 60) -> None:
    """Send a probe to every partition until each is stored: the group owns all of them."""
    create_devlake(settings, DATABASE)
    producer = make_producer(settings)
    topic = metrics_topic(settings, Layer.RESOURCE)
    ql = InfluxQL(settings.influx, timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            marks = []
            for p in range(partitions):
                ts = time.time_ns()
                s = Sample("bench_warmup", {"node": f"warm-{p}", "overcloud": OVERCLOUD},
                           {"v": 1}, ts)
                producer.send(topic, partition=p, value=encode_samples([s]))
                marks.append(ts)
            producer.flush(timeout=10)
            t_sent = time.monotonic()
            while time.monotonic() - t_sent < 3:
                try:
                    rows = ql.query(count_query("bench_warmup", "v", min(marks)), DATABASE)
                except Exception:
                    rows = []
                if rows and int(rows[0]["values"][0][1]) >= partitions:
                    return
                time.sleep(0.1)
        raise RuntimeError("DevLake group did not consume every partition in time")
    finally:
        producer.close(timeout=5)
        ql.close()


def ceiling_phase(settings: Settings, bodies: list[bytes], seconds: float, db: str,
                  pids: dict[str, int]) -> dict[str, float]:
    """The fair ceiling: the better of one serial raw writer and two parallel ones (the
    pipeline writes with two DevLake processes), each into a fresh database."""
    runs = {}
    for writers in (1, 2):
        name = f"{db}_{writers}w"
        sink = InfluxV1Sink(settings.influx)
        sink.ensure_database(name)  # same retention policy as a DevLake database
        sink.close()
        c_influx0 = cpu_seconds(pids["influxdb"])
        c_busy0, _ = total_cpu_seconds()
        run = measure_ceiling(settings, bodies, seconds, name, writers)
        c_busy1, _ = total_cpu_seconds()
        run["influxd_cores"] = (cpu_seconds(pids["influxdb"]) - c_influx0) / run["seconds"]
        run["machine_cores"] = (c_busy1 - c_busy0) / run["seconds"]
        # drop it so that its compactions do not run during the next phase
        drop = InfluxV1Sink(settings.influx, timeout=60)
        drop.drop_database(name)
        drop.close()
        time.sleep(2.0)
        runs[writers] = run
    best = max(runs.values(), key=lambda r: r["rate"])
    return {**best, "rate_1w": runs[1]["rate"], "rate_2w": runs[2]["rate"]}


def run_round(args: argparse.Namespace, settings: Settings, env: dict[str, str],
              bodies: list[bytes], devlakes: list[Any], rnd: int) -> dict[str, Any]:
    pids = service_pids(settings)
    # a. ceiling
    before = ceiling_phase(settings, bodies, args.ceiling_seconds, f"{CEILING_DB}_{rnd}a", pids)
    # each round writes to a fresh DevLake database (`overcloud` tag bench<round>)
    overcloud = f"{OVERCLOUD}{rnd}"
    database = f"devlake_{overcloud}"
    create_devlake(settings, database)  # as the orchestrator does: DevLake writes only there
    # b. pipeline at --load × ceiling (or --rate points/s)
    per_msg = sum(len(c) for c in node_cycles("x", args.cores, 1, 1))
    target_points = args.rate or args.load * before["rate"]
    msg_rate = target_points / per_msg
    nodes = node_names(args.nodes)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 2.0 + 0.02 * args.nodes / args.producers
    since_ns = time.time_ns()
    plans = [
        ProducerPlan(i, nodes[i::args.producers], args.cores, args.variants,
                     msg_rate / args.producers, args.seconds, args.probe_interval,
                     overcloud, producer_options(args), env, start_at, args.format)
        for i in range(args.producers)
    ]
    procs = [ctx.Process(target=producer_main, args=(p, q), daemon=True) for p in plans]
    for p in procs:
        p.start()
    poller = ProbePoller(settings, args.poll, since_ns, database)
    poller.start()
    while time.time() < start_at:
        time.sleep(0.005)
    t_start = time.time()
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu0.update({f"devlake{i}": cpu_seconds(p.pid) for i, p in enumerate(devlakes)})
    busy0, _tot0 = total_cpu_seconds()
    bench_cpu0 = time.process_time()
    profilers = start_profilers(args, devlakes, rnd)
    results: list[ProducerResult] = [q.get(timeout=args.seconds + 120) for _ in procs]
    t_sent = time.time()
    for p in procs:
        p.join(timeout=10)
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError("producer failed: " + "; ".join(errors))
    produced = sum(r.points for r in results)
    probes = [pr for r in results for pr in r.probes]
    # the round ends when every end marker is queryable: the tail counts towards the rate
    ends = {(n, sq) for r in results for n, sq, _ in r.ends}
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline and not ends <= poller.seen.keys():
        time.sleep(0.02)
    drained = ends <= poller.seen.keys()
    for prof in profilers:
        prof.send_signal(signal.SIGINT)
        prof.wait(timeout=30)
    t_done = max((poller.seen[e] for e in ends if e in poller.seen), default=time.time_ns()) / 1e9
    busy1, _tot1 = total_cpu_seconds()
    window = max(t_done - t_start, 1e-9)
    cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu1.update({f"devlake{i}": cpu_seconds(p.pid) for i, p in enumerate(devlakes)})
    time.sleep(args.poll * 3)
    poller.stop.set()
    poller.join(timeout=5)
    ql = InfluxQL(settings.influx, timeout=120)
    stored = count_points(ql, database, since_ns)
    ql.close()
    with contextlib.suppress(Exception):
        drop = InfluxV1Sink(settings.influx, timeout=120)
        drop.drop_database(database)
        drop.close()
    # the ceiling again after the pipeline: the machine is shared, so the ratio uses the mean
    after = ceiling_phase(settings, bodies, args.ceiling_seconds, f"{CEILING_DB}_{rnd}b", pids)
    ceiling = {k: (before[k] + after[k]) / 2 for k in before}
    lat = [(poller.seen[(n, s)] - sent) / 1e9 for n, s, sent in probes if (n, s) in poller.seen]
    missing = len(probes) - len(lat)
    cores = {k: (cpu1[k] - cpu0.get(k, 0.0)) / window for k in cpu1}
    devlake_cores = sum(v for k, v in cores.items() if k.startswith("devlake"))
    prod_cores = sum(r.cpu_s for r in results) / window
    rate = stored / window
    ours = (prod_cores + cores.get("kafka", 0.0) + devlake_cores + cores.get("influxdb", 0.0)
            + (time.process_time() - bench_cpu0) / window)
    return {
        "round": rnd,
        "ceiling": ceiling["rate"],
        "ceiling_1w": ceiling["rate_1w"],
        "ceiling_2w": ceiling["rate_2w"],
        "ceiling_before": before["rate"],
        "ceiling_after": after["rate"],
        "ceiling_cores": {"client": ceiling["client_cpu_cores"],
                          "influxd": ceiling["influxd_cores"],
                          "machine": ceiling["machine_cores"]},
        "offered": produced / max(t_sent - t_start, 1e-9),
        "target": target_points,
        "produced": produced,
        "stored": stored,
        "complete": drained and stored == produced,
        "rate": rate,
        "ratio": rate / ceiling["rate"],
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat, default=float("nan")),
        "probes": len(probes),
        "probes_missing": missing,
        "behind_s": max(r.behind_s for r in results),
        "produce_failed": sum(r.failed_messages for r in results),
        "produce_error": next((r.error_sample for r in results if r.error_sample), ""),
        "cores": {
            "producers": prod_cores,
            "broker": cores.get("kafka", 0.0),
            "devlake": devlake_cores,
            "influxd": cores.get("influxdb", 0.0),
            "bench": (time.process_time() - bench_cpu0) / window,
            "machine": (busy1 - busy0) / window,
            # kernel threads (writeback, softirq) and whatever else shares the machine
            "other": (busy1 - busy0) / window - ours,
        },
        # CPU per stored point of each stage, in microseconds
        "us_per_point": {k: v * 1e6 / max(rate, 1e-9) for k, v in (
            ("producers", prod_cores), ("broker", cores.get("kafka", 0.0)),
            ("devlake", devlake_cores), ("influxd", cores.get("influxdb", 0.0)))},
        "window_s": window,
    }


def start_profilers(args: argparse.Namespace, devlakes: list[Any], rnd: int) -> list[Any]:
    """`--profile DIR`: py-spy samples each DevLake process during the round (raw stacks)."""
    if not args.profile:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "py-spy"
    procs = []
    for i, p in enumerate(devlakes):
        out = args.profile / f"devlake{i}-round{rnd}.txt"
        procs.append(subprocess.Popen(
            [str(exe), "record", "--pid", str(p.pid), "--rate", "200", "--format", "raw",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def producer_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"linger_ms": args.linger_ms, "batch_size": args.batch_bytes,
                            "compression_type": args.compression}
    return opts


def print_round(r: dict[str, Any]) -> None:
    c = r["cores"]
    print(
        f"round {r['round']}: ceiling {r['ceiling']:,.0f} pts/s (best of 1 writer "
        f"{r['ceiling_1w']:,.0f} and 2 writers {r['ceiling_2w']:,.0f}; before "
        f"{r['ceiling_before']:,.0f}, after {r['ceiling_after']:,.0f}) | pipeline "
        f"{r['rate']:,.0f} pts/s "
        f"(offered {r['offered']:,.0f}, {'complete' if r['complete'] else 'INCOMPLETE'} "
        f"{r['stored']:,}/{r['produced']:,} acked, {r['produce_failed']} sends failed) | "
        f"ratio {r['ratio']:.2f} | latency p50 "
        f"{r['p50']:.3f}s p99 {r['p99']:.3f}s max {r['max']:.3f}s ({r['probes']} probes, "
        f"{r['probes_missing']} missing) | cores: producers {c['producers']:.2f} broker "
        f"{c['broker']:.2f} devlake {c['devlake']:.2f} influxd {c['influxd']:.2f} "
        f"bench {c['bench']:.2f} other {c['other']:.2f} machine {c['machine']:.2f} | "
        f"ceiling cores: influxd "
        f"{r['ceiling_cores']['influxd']:.2f} client {r['ceiling_cores']['client']:.2f} "
        f"machine {r['ceiling_cores']['machine']:.2f} | µs CPU per point: "
        + " ".join(f"{k} {v:.2f}" for k, v in r["us_per_point"].items()),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds (ceiling + pipeline each)")
    ap.add_argument("--seconds", type=float, default=20, help="pipeline load per round")
    ap.add_argument("--ceiling-seconds", type=float, default=5,
                    help="each ceiling run (one before and one after the pipeline per round)")
    ap.add_argument("--ceiling-batch", type=int, default=10000, help="lines per ceiling POST")
    ap.add_argument("--nodes", type=int, default=200, help="simulated agents")
    ap.add_argument("--cores", type=int, default=16, help="CPU cores of each simulated host")
    ap.add_argument("--variants", type=int, default=4, help="distinct cycles per node")
    ap.add_argument("--producers", type=int, default=2, help="producer processes")
    ap.add_argument("--devlakes", type=int, default=2, help="`overcloud devlake run` processes")
    ap.add_argument("--format", choices=["lines", "samples"], default="lines",
                    help="what the simulated agents publish: LineBatch (what agents send) or "
                         "SampleBatch (rendered by the DevLake)")
    ap.add_argument("--load", type=float, default=0.85,
                    help="offered load as a fraction of the round's measured ceiling")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offered load in points/s (overrides --load)")
    ap.add_argument("--batch-points", type=int, default=5000,
                    help="DevLake batch_points (0: the settings default)")
    ap.add_argument("--devlake-linger", type=float, default=0.0,
                    help="DevLake linger in s (0: the settings default)")
    ap.add_argument("--linger-ms", type=int, default=20, help="producer linger_ms")
    ap.add_argument("--batch-bytes", type=int, default=512 * 1024, help="producer batch_size")
    ap.add_argument("--compression", choices=["none", "gzip", "lz4", "zstd", "snappy"],
                    default="none", help="producer compression")
    ap.add_argument("--probe-interval", type=float, default=0.05,
                    help="seconds between latency probes per producer")
    ap.add_argument("--poll", type=float, default=0.05, help="probe poll interval (s)")
    ap.add_argument("--drain-timeout", type=float, default=60, help="max wait for the tail (s)")
    ap.add_argument("--profile", type=Path,
                    help="record py-spy stacks of the DevLake processes into this folder")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state directory")
    args = ap.parse_args(argv)
    if args.compression == "none":
        args.compression = None

    print_machine()
    extra: dict[str, str] = {}
    if args.batch_points:
        extra["OVERCLOUD_DEVLAKE_BATCH_POINTS"] = str(args.batch_points)
    if args.devlake_linger:
        extra["OVERCLOUD_DEVLAKE_LINGER"] = str(args.devlake_linger)
    per_msg = sum(len(c) for c in node_cycles("x", args.cores, 1, 1))
    print(f"# {args.nodes} simulated agents ({args.cores} cores each: {per_msg} points/message, "
          f"{_fields_per_point(args.cores):.1f} fields/point), {args.producers} producer "
          f"process(es), {args.devlakes} DevLake process(es), compression {args.compression}, "
          f"linger {args.linger_ms} ms, batch {args.batch_bytes} B", flush=True)
    results: list[dict[str, Any]] = []
    devlakes: list[Any] = []
    with private_services(keep=args.keep_state, extra_env=extra) as (settings, env):
        state = settings.state_dir
        print(f"# services: broker {settings.kafka.bootstrap}, InfluxDB "
              f"{settings.influx.base_url}, state {state}", flush=True)
        try:
            bodies, _ = ceiling_batches(
                node_names(args.nodes), args.cores, args.ceiling_batch,
                max_points=int(args.ceiling_seconds * 400_000),
                t_base=time.time_ns() - 3600 * 10**9,
            )
            devlakes = start_devlakes(args.devlakes, env, state)
            wait_group_ready(settings, env, settings.kafka.partitions)
            time.sleep(1.0)
            for rnd in range(1, args.rounds + 1):
                r = run_round(args, settings, env, bodies, devlakes, rnd)
                print_round(r)
                results.append(r)
        finally:
            for p in devlakes:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
            for p in devlakes:
                try:
                    p.wait(timeout=20)
                except Exception:
                    p.kill()
                    p.wait(timeout=5)
    if not results:
        return 1
    med = {k: median([r[k] for r in results]) for k in
           ("ceiling", "ceiling_1w", "ceiling_2w", "rate", "ratio", "p50", "p99", "offered")}
    per_point = {k: median([r["us_per_point"][k] for r in results])
                 for k in results[0]["us_per_point"]}
    cores = {k: median([r["cores"][k] for r in results]) for k in results[0]["cores"]}
    ok = med["ratio"] >= 0.8 and med["p99"] <= 1.0 and all(r["complete"] for r in results)
    print(
        f"MEDIAN of {len(results)} rounds ({args.format}): ceiling {med['ceiling']:,.0f} pts/s "
        f"(1 writer {med['ceiling_1w']:,.0f}, 2 writers {med['ceiling_2w']:,.0f}) | pipeline "
        f"{med['rate']:,.0f} pts/s stored (offered {med['offered']:,.0f}) | ratio "
        f"{med['ratio']:.2f} | latency p50 {med['p50']:.3f}s p99 {med['p99']:.3f}s | cores: "
        + " ".join(f"{k} {v:.2f}" for k, v in cores.items())
        + " | µs CPU per point: " + " ".join(f"{k} {v:.2f}" for k, v in per_point.items())
    )
    print(f"target (ratio >= 0.80 of the fair ceiling, p99 <= 1 s, nothing lost): "
          f"{'MET' if ok else 'NOT MET'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                  if k != "json"},
                                         "rounds": results, "median": med,
                                         "median_cores": cores, "median_us_per_point": per_point},
                                        indent=2, default=str))
    return 0


def _fields_per_point(cores: int) -> float:
    cycle = node_cycles("x", cores, 1, 1)[0]
    return sum(len(s.fields) for s in cycle) / len(cycle)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
