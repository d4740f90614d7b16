"""Alert benchmark: evaluator throughput with 100 rules, and detection latency end to end.

1. Throughput (in-process, one core): 100 rules over 8 measurements (thresholds, `where`
   scopes, group-by, one arithmetic expression), fed 400k sample rows exactly as they come
   off the wire (lists `[measurement, tags, fields, time_ns]`, ~3 % of them breaching).
   Reported: `Evaluator.feed_rows` alone; the same including the JSON decode of the Kafka
   messages (`overcloud.wire.sample_rows`, 500 samples a message); and a naive baseline
   that evaluates every rule on every sample (same state machine, no index, no shared value).
2. Detection latency (real processes): a private tansu broker and InfluxDB, the real
   `overcloud alerts run` process with `node-overloaded` shortened to `for: 5s`; this script
   plays a host agent (synthetic `resource_undercloud` samples for one host every `interval`,
   through the broker) and switches the host's CPU from 20 % to 95 % at a random phase of the
   sampling interval (the onset), then back. Latency = onset → `NodeOverloaded` read from the
   events topic. Target: ≤ for + 2 intervals at p99.

    .venv/bin/python bench/alerts.py [--onsets 8] [--samples 400000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import median, overcloud_cli, percentile, print_machine, private_services, spawn

from devlake.alerts.evaluator import _OPS, _RECOVERED, GroupState
from devlake.alerts.evaluator import Evaluator as StreamEvaluator
from devlake.alerts.rules import Rule, compile_expression
from overcloud.samples import Sample
from overcloud.wire import encode_samples, sample_rows

MEASUREMENTS: dict[str, tuple[list[str], list[str]]] = {
    # measurement: (fields, tags)
    "resource_undercloud": (["cpu_percent", "mem_percent", "net_bytes_per_s"], ["host"]),
    "resource_instance": (["cpu_percent", "mem_usage", "net_bytes_sent_per_s"], ["host", "instance"]),
    "resource_host": (["cpu_percent", "mem_used_percent", "load1"], ["host", "node"]),
    "flow_iface": (["bytes_sent_per_s", "errors_received", "drops_received"], ["node", "iface"]),
    "flow_peer": (["bytes_sent_per_s", "connections"], ["node", "peer"]),
    "service_http": (["latency_ms", "status"], ["overcloud", "node"]),
    "service_container": (["cpu_percent", "restarts", "mem_usage"], ["overcloud", "service"]),
    "agent_spool": (["queued_messages", "dropped_samples_total"], ["node"]),
}


def make_rules(n: int = 100) -> list[Rule]:
    rng = random.Random(7)
    names = sorted(MEASUREMENTS)
    rules = []
    for i in range(n):
        m = names[i % len(names)]
        fields, tags = MEASUREMENTS[m]
        doc: dict[str, Any] = {
            "name": f"r{i}", "condition": ">", "threshold": 90 + rng.random() * 5, "recover": 80,
            "for": "30s", "watch": {"measurement": m, "field": fields[i % len(fields)],
                                    "group_by": tags[: 1 + i % len(tags)]},
        }
        if i % 10 == 3:
            doc["watch"]["where"] = {tags[0]: "n3"}
        if i == 5:
            doc["watch"]["field"] = "100 * mem_usage / 1000"
            doc["watch"]["measurement"], doc["watch"]["group_by"] = "resource_instance", ["host"]
        rules.append(Rule.model_validate(doc))
    return rules


def make_rows(count: int) -> list[list[Any]]:
    rng = random.Random(11)
    names = sorted(MEASUREMENTS)
    rows = []
    t0 = time.time_ns()
    for i in range(count):
        m = names[i % len(names)]
        fields, tags = MEASUREMENTS[m]
        hot = rng.random() < 0.03
        rows.append([m, {t: f"n{rng.randrange(20)}" for t in tags},
                     {f: (95.0 + rng.random() if hot else rng.random() * 60) for f in fields},
                     t0 + i * 1000])
    return rows


class NaiveEvaluator:
    """Every rule on every sample: the same state machine without index or shared values."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules: list[tuple[Rule, Callable[[Mapping[str, Any]], float | None],
                               Callable[[float, float], bool], Callable[[float, float], bool],
                               dict[tuple[str, ...], GroupState]]] = [
            (r, compile_expression(r.watch.field)[0], _OPS[r.condition],
                       _RECOVERED[r.condition], {}) for r in rules]

    def feed_rows(self, rows: list[list[Any]]) -> None:
        for measurement, tags, fields, ts in rows:
            for rule, value, breach, recovered, states in self.rules:
                w = rule.watch
                if w.measurement != measurement or any(tags.get(k) != v for k, v in w.where.items()):
                    continue
                v = value(fields)
                if v is None:
                    continue
                key = tuple(tags.get(t, "") for t in w.group_by)
                st = states.get(key)
                if st is None:
                    if breach(v, rule.threshold):
                        states[key] = GroupState("pending", ts, v, ts)
                elif st.status == "pending":
                    if not breach(v, rule.threshold):
                        del states[key]
                    elif ts - st.since_ns >= rule.for_ * 1e9:
                        st.status = "firing"
                elif recovered(v, rule.recover_at):
                    del states[key]


def throughput(samples: int) -> None:
    rules = make_rules()
    rows = make_rows(samples)
    messages = [encode_samples([Sample(*r) for r in rows[i:i + 500]]) for i in range(0, len(rows), 500)]
    results = {}
    runs: list[tuple[str, Callable[[], None]]] = [
        ("evaluator (decoded rows)", lambda: StreamEvaluator(rules).feed_rows(rows)),
        ("evaluator + JSON decode", lambda: _decode_and_feed(StreamEvaluator(rules), messages)),
        ("naive: every rule, every sample", lambda: NaiveEvaluator(rules).feed_rows(rows)),
    ]
    for label, run in runs:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        results[label] = len(rows) / best
        print(f"  {label:34s} {len(rows) / best:>12,.0f} samples/s")
    ratio = results["evaluator (decoded rows)"] / results["naive: every rule, every sample"]
    print(f"  speed-up over naive: {ratio:.1f}x  (100 rules, {len(MEASUREMENTS)} measurements, "
          f"{len(rows):,} samples, best of 3)")


def _decode_and_feed(ev: StreamEvaluator, messages: list[bytes]) -> None:
    for raw in messages:
        ev.feed_rows(sample_rows(raw)[2])


def detection(onsets: int, interval: float, for_s: float) -> None:
    from overcloud.bus import ensure_topics, events_topic, make_consumer, make_producer, metrics_topic
    from overcloud.events import NodeOverloaded, NodeRecovered
    from overcloud.wire import decode_event

    work = Path(tempfile.mkdtemp(prefix="oc-bench-alerts-"))
    rules = work / "rules.yaml"
    rules.write_text(f"rules:\n  - name: node-overloaded\n    for: {for_s:g}s\n")
    with private_services(extra_env={"OVERCLOUD_ALERTS_TICK": "0.2",
                                     "OVERCLOUD_ALERTS_GROUP": "bench-alerts"}) as (s, env):
        ensure_topics(s)
        started = time.monotonic()
        proc = spawn([*overcloud_cli(), "alerts", "run", "--rules", str(rules)], env,
                     work / "alerts.log", work)
        # ready = its banner, printed once the group is joined and partitions are assigned
        while "alerts: 1 rules" not in (work / "alerts.log").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise SystemExit(f"evaluator not ready: {(work / 'alerts.log').read_text()[-2000:]}")
            time.sleep(0.05)
        print(f"  evaluator ready (group joined, partitions assigned) "
              f"{time.monotonic() - started:.2f}s after start")
        producer = make_producer(s)
        consumer = make_consumer(s, [events_topic(s)], "bench-events")
        topic = metrics_topic(s, "resource")
        cpu = {"value": 20.0}
        stop = threading.Event()

        def agent() -> None:
            while not stop.is_set():
                sample = Sample("resource_undercloud",
                                {"host": "bench", "node": "bench", "layer": "resource"},
                                    {"cpu_percent": cpu["value"], "capacity_cpus": 1.0}, time.time_ns())
                producer.send(topic, key=b"bench", value=encode_samples([sample]))
                producer.flush()
                stop.wait(interval)

        def wait_for(cls: type, timeout: float) -> float | None:
            deadline = time.time() + timeout
            while time.time() < deadline:
                for msgs in consumer.poll(timeout_ms=100).values():
                    for m in msgs:
                        if isinstance(decode_event(m.value), cls):
                            return time.time_ns() / 1e9
            return None

        thread = threading.Thread(target=agent, daemon=True)
        thread.start()
        latencies = []
        try:
            # onset 0 warms up the producer, the events consumer's group and the evaluator's
            # first fetch; it is not counted
            rng = random.Random(3)
            for i in range(onsets + 1):
                time.sleep(interval * 2 + rng.random() * interval)   # random phase vs. the agent
                onset = time.time_ns() / 1e9
                cpu["value"] = 95.0
                seen = wait_for(NodeOverloaded, 60 if i == 0 else for_s + 20)
                cpu["value"] = 20.0
                wait_for(NodeRecovered, 30)
                if seen is None:
                    print(f"  onset {i}: no NodeOverloaded within the timeout")
                    continue
                if i > 0:
                    latencies.append(seen - onset)
                    print(f"  onset {i}: {seen - onset:.2f}s")
        finally:
            stop.set()
            thread.join(5)
            proc.terminate()
            proc.wait(30)
            producer.close()
            consumer.close()
    bound = for_s + 2 * interval
    print(f"  detection (onset → NodeOverloaded on the events topic), for {for_s:g}s, interval "
          f"{interval:g}s, {len(latencies)} onsets: median {median(latencies):.2f}s, "
          f"p99 {percentile(latencies, 99):.2f}s, max {max(latencies, default=float('nan')):.2f}s "
          f"(target ≤ {bound:g}s: {'met' if latencies and max(latencies) <= bound else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=400_000)
    ap.add_argument("--onsets", type=int, default=8)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--for", dest="for_s", type=float, default=5.0)
    ap.add_argument("--skip-detection", action="store_true")
    args = ap.parse_args()
    print_machine()
    print("evaluator throughput:")
    throughput(args.samples)
    if not args.skip_detection:
        print("detection latency (real broker + evaluator process, synthetic host samples):")
        detection(args.onsets, args.interval, args.for_s)


if __name__ == "__main__":
    main()
