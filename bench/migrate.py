"""Migration benchmark: moving one node and a whole OverCloud between two LXD hosts.

What one run of the bench does (everything on this machine, a private state directory under
/tmp, free 127.0.0.1 ports, bridges `ocbm1/2` on 10.242.{1,2}.0/24 unless `--bridge-prefix` /
`--subnet-prefix` or OC_TEST_BRIDGE_PREFIX / OC_TEST_SUBNET_PREFIX say otherwise):

1. starts its own broker, InfluxDB, two LXD daemons (node image imported from the warm
   shared cache, as `bench/provision.py` does), `overcloud devlake run` and
   `overcloud orchestrator run`;
2. provisions one 2-node OverCloud packed on lxd1 (db on n1, app + web on n2, the URL the
   edge's route to n2);
3. `--runs` times (each run starts and ends with both nodes on lxd1):
   - **web node** to lxd2: `overcloud migrate NAME --node n2 --to lxd2 --wait` (make before
     break);
   - **db node (replication)** to lxd2: `… --node n1 --to lxd2 --wait` (a GTID replica
     seeded and caught up while the site serves, a write freeze, the switch);
   - **whole OverCloud** back to lxd1: `overcloud migrate NAME --to lxd1 --wait` (both
     nodes, one after the other; the database by replication);
   - **db node (copy)** to lxd2, then **db node (replication)** back: `… --db-method copy`
     (stop → copy the volume → start), then the default;
   then, with `--pool N` (issue 13's warm pool), the same moves again into **ready pooled
   nodes**: web node to lxd2, db node (replication) to lxd2, whole OverCloud back to lxd1,
   labelled "(pool)". The cold moves run with no pool on either host (its target set to 0
   and the pools emptied first); before every pooled move the bench waits until each host
   has N ready nodes and none warming, so no refill competes with the move measured;
   each timed from invoking the CLI to its return (the workflow finished, the page verified),
   with the page probed every `--poll` s (100 ms) by this bench meanwhile: the **downtime**
   is the sum of the stretches in which the page did not answer with WordPress. The
   orchestrator's own figures (its task duration and the downtime its probe saw) are shown
   beside them. During each database move a writer in the web node's WordPress container
   inserts a row about every 20 ms, as WordPress would (orchestrator/writeprobe.py); after
   the move every **acknowledged** write must be in the database (**lost** counts those
   that are not; refused writes — the freeze, the stopped database — are counted apart);
4. prints medians against the targets (one node ≤ 15 s; web downtime near zero; database
   downtime ≤ 1 s by replication; no acknowledged write lost), deletes the OverCloud, stops
   everything by pid and removes its state.

For reference: LXD moved a stopped container between two daemons in 8.4 s here, and a full
`lxc copy` of a node is 18-22 s (why nodes are re-made from the local image instead).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOOPBACK, bench_env, free_port, median, overcloud_cli, print_machine, spawn
from provision import cleanup, cli, free_port_pair, pool_full, wait_log

from daemons.install import ensure_packages
from devtower.services import manager
from devtower.services.catalog import CATALOG
from orchestrator.downtime import DowntimeProbe
from orchestrator.hosts import drivers
from orchestrator.images import ensure_images, image_status
from orchestrator.registry import Registry
from orchestrator.store import WorkflowStore
from orchestrator.writeprobe import WriteProbe
from overcloud.settings import load_settings

TARGET_NODE = 15.0
TARGET_DB_DOWN = 1.0
"""database downtime by replication (issue 13); stop → copy → start is shown beside it"""
STRICT = 1.0
"""the deadline of the probe before its 5 s one: answers slower than this, counted as down"""
NAME = "benchmv"

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: bench@example.org
cluster: {{nodes: 2, cpu: 1, memory: 1GiB}}
placement: {{strategy: pack}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


def _where(env: dict[str, str]) -> dict[str, str]:
    rec = Registry(load_settings(config=None, env=env)).get(NAME)
    return {n.node: n.host for n in rec.nodes} if rec else {}


def move(env: dict[str, str], store: WorkflowStore, port: int, poll: float, what: str,
         args: list[str], verbose: bool = False, write: bool = False) -> dict[str, Any]:
    """One `overcloud migrate … --wait`, timed and probed; with the orchestrator's steps and
    both probes' outages on one timeline (seconds from invoking the CLI). `write`: a writer
    in the web node's WordPress meanwhile, its acknowledged writes checked afterwards."""
    url = f"http://{LOOPBACK}:{port}/wp-admin/install.php"
    load = os.getloadavg()[0]  # the machine is shared: how busy it was when this move began
    hosts = drivers(load_settings(config=None, env=env))
    web, db = f"{NAME}-n2", f"{NAME}-n1"
    writes = WriteProbe(hosts[_where(env)[web]], web) if write else None
    with DowntimeProbe(url, every=poll, trace=True) as probe, writes or nullcontext():
        t, wall = time.monotonic(), time.time()
        out = cli(env, "migrate", NAME, *args, "--wait", timeout=900)
        seconds = time.monotonic() - t
    lost = writes.lost(hosts[_where(env)[db]], db) if writes else []
    ok = out.returncode == 0
    wid = out.stdout.split(" id ")[1].split()[0] if " id " in out.stdout else ""
    tasks = []
    if wid:
        wf = store.get(wid)
        tasks = [(t.name, t.result) for t in wf.tasks if isinstance(t.result, dict)]
    timeline: list[tuple[float, str]] = []
    for name, res in tasks:
        base = float(res.get("started", wall)) - wall
        timeline += [(base + off, f"{name} {step}") for step, off in res.get("steps", [])]
        timeline += [(base + o["start"], f"{name} probe DOWN {o['seconds']:.2f}s {o['kinds']}")
                     for o in res.get("outages", [])]
    timeline += [(o.start - wall, f"bench probe DOWN {o.seconds:.2f}s {dict(o.kinds)}"
                  + (" (still down at the end)" if o.ongoing else ""))
                 for o in probe.outages]
    for o in probe.outages:  # the probes from 1 s before each outage to 1 s after it
        timeline += [(at - wall, f"  probe {kind} in {took * 1000:.0f} ms")
                     for at, took, kind in probe.trace or []
                     if o.start - 1 <= at <= o.start + o.seconds + 1]
    strict = probe.downtime_if_slower_than(STRICT)
    hows = {name: res.get("how", "") for name, res in tasks}
    r = {"what": what, "args": args, "ok": ok, "seconds": seconds, "downtime": probe.downtime,
         "how": hows, "acked": len(writes.acked) if writes else None,
         "refused": len(writes.failed) if writes else None, "lost": len(lost),
         "downtime_strict": strict, "slowest": probe.slowest, "load": load,
         "failed_probes": probe.failures, "probes": probe.ok + probe.failures,
         "kinds": probe.kinds(), "timeline": sorted(timeline),
         "orchestrator": tasks, "error": "" if ok else (out.stderr or out.stdout)[-400:]}
    own = ", ".join(f"{n} {v.get('seconds', 0):.1f}s/down {v.get('downtime_s', 0):.2f}s"
                    for n, v in tasks)
    print(f"{what:<16} {' '.join(args):<26} {'ok' if ok else 'FAILED'}  {seconds:5.1f}s  "
          f"(load {load:.1f})  "
          f"downtime {probe.downtime:5.2f}s ({probe.failures}/{probe.ok + probe.failures} "
          f"probes failed: {probe.kinds() or '-'}; answers over {STRICT:g}s counted as down: "
          f"{strict:.2f}s; slowest good answer {probe.slowest:.2f}s)"
          + (f" | writes: {r['acked']} acknowledged, {r['refused']} refused, {len(lost)} LOST"
             if writes else "")
          + f" | orchestrator: {own}"
          + ("" if ok else f" | {r['error']}"), flush=True)
    if verbose:
        for at, line in sorted(timeline):
            print(f"    {at:7.2f}s  {line}", flush=True)
    return r


def set_pool(env: dict[str, str], settings: Any, n: int) -> None:
    """Keep `n` ready nodes on each host (room for them beside the OverCloud); 0: wait
    until the refill has deleted every pooled node."""
    for host in ("lxd1", "lxd2"):
        out = cli(env, "undercloud", "set", host, "--pool", str(n), "--cpus", "16")
        if out.returncode:
            raise RuntimeError(f"undercloud set {host}: {out.stdout} {out.stderr}")
    if n == 0:
        deadline = time.monotonic() + 300
        while any(d.pool_nodes() for d in drivers(settings).values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the pools did not empty in 300s")
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="round trips (each: web, db, whole)")
    ap.add_argument("--poll", type=float, default=0.1, help="page probe interval (s)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state directory")
    ap.add_argument("--timeline", action="store_true",
                    help="print each move's steps and outages (s from invoking the CLI)")
    ap.add_argument("--pool", type=int, default=0,
                    help="also move into ready pooled nodes (N kept per host); 0: cold only")
    ap.add_argument("--bridge-prefix", default=os.environ.get("OC_TEST_BRIDGE_PREFIX", "ocbm"),
                    help="LXD bridge names (another run on this machine needs its own)")
    ap.add_argument("--subnet-prefix", default=os.environ.get("OC_TEST_SUBNET_PREFIX", "10.242"),
                    help="first two octets of the bridges' /24s")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    print_machine()
    state = Path(tempfile.mkdtemp(prefix="overcloud-bench-migrate-", dir="/tmp"))
    state.chmod(0o711)
    env = bench_env(state, free_port(), free_port())
    env.update({"OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX": args.bridge_prefix,
                "OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX": args.subnet_prefix,
                "OVERCLOUD_UNDERCLOUD_HTTPS_PORT": str(free_port_pair())})
    settings = load_settings(config=None, env=env)
    work = state / "bench"
    work.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    results: list[dict[str, Any]] = []
    try:
        missing = [a.kind for a in image_status(settings).artifacts if a.action != "cached"]
        if missing:
            print(f"image cache not warm (missing {', '.join(missing)}): run `overcloud "
                  "services up lxd` first; this bench never builds", file=sys.stderr)
            return 2
        manager.up(settings, ["kafka", "influxdb"])
        ensure_packages(sorted(CATALOG["lxd"].packages))
        CATALOG["lxd"].daemon(settings).start()
        ensure_images(settings, say=lambda m: print(f"# images: {m}", flush=True))
        for svc in ("devlake", "orchestrator"):
            log = state / "log" / f"bench-{svc}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            procs.append(spawn([*overcloud_cli(), svc, "run"], env, log, work))
            wait_log(procs[-1], log, f"{svc}:", timeout=60)
        port = free_port()
        doc = work / f"{NAME}.yaml"
        doc.write_text(REQUEST.format(name=NAME, port=port))
        out = cli(env, "request", "apply", str(doc), "--wait", timeout=1800)
        if out.returncode != 0:
            print(f"provisioning failed: {out.stderr or out.stdout}", file=sys.stderr)
            return 1
        print(f"# {NAME}: 2 nodes on lxd1, http://{LOOPBACK}:{port}/", flush=True)
        store = WorkflowStore(state / "orchestrator" / "workflows.sqlite")
        here, there = "lxd1", "lxd2"
        WriteProbe.prepare(drivers(settings)[here], f"{NAME}-n1")
        db = ["--node", f"{NAME}-n1"]
        cold = (("web node", ["--node", f"{NAME}-n2", "--to", there], False),
                ("db by replication", [*db, "--to", there], True),
                ("whole OverCloud", ["--to", here], False),
                ("db by copy", [*db, "--to", there, "--db-method", "copy"], True),
                ("db by replication", [*db, "--to", here], True))
        pooled = (("web node (pool)", ["--node", f"{NAME}-n2", "--to", there], False),
                  ("db by replication (pool)", [*db, "--to", there], True),
                  ("whole OverCloud (pool)", ["--to", here], False))
        for _ in range(args.runs):
            set_pool(env, settings, 0)
            for what, margs, write in cold:
                results.append(move(env, store, port, args.poll, what, margs, args.timeline,
                                    write))
            if not args.pool:
                continue
            set_pool(env, settings, args.pool)
            for what, margs, write in pooled:
                pool_full(settings, args.pool, 900)
                results.append(move(env, store, port, args.poll, what, margs, args.timeline,
                                    write))
    finally:
        try:
            cli(env, "delete", NAME, "--wait", timeout=900)
        except (subprocess.TimeoutExpired, OSError) as e:  # cleanup below runs regardless
            print(f"# deleting {NAME} failed ({e}): stopping everything anyway", flush=True)
        cleanup(settings, procs, [NAME], args.keep_state)
        print(f"# stopped our services and processes; {'kept' if args.keep_state else 'removed'} "
              f"{state}", flush=True)

    summary: dict[str, Any] = {}
    for what in ("web node", "db by replication", "db by copy", "whole OverCloud",
                 "web node (pool)", "db by replication (pool)", "whole OverCloud (pool)"):
        rs = [r for r in results if r["what"] == what and r["ok"]]
        if rs:
            summary[what] = {"runs": len(rs), "seconds_median": median([r["seconds"] for r in rs]),
                             "downtime_median": median([r["downtime"] for r in rs]),
                             "downtime_max": max(r["downtime"] for r in rs),
                             "strict_median": median([r["downtime_strict"] for r in rs]),
                             "strict_max": max(r["downtime_strict"] for r in rs),
                             "slowest_median": median([r["slowest"] for r in rs]),
                             "lost": sum(r["lost"] for r in rs),
                             "acked": sum(r["acked"] or 0 for r in rs),
                             "refused": sum(r["refused"] or 0 for r in rs)}
            s = summary[what]
            print(f"{what:<16} {len(rs)} ok | move median {s['seconds_median']:.1f}s | "
                  f"downtime median {s['downtime_median']:.2f}s (max {s['downtime_max']:.2f}s) | "
                  f"answers over {STRICT:g}s as down: median {s['strict_median']:.2f}s "
                  f"(max {s['strict_max']:.2f}s) | slowest answer median "
                  f"{s['slowest_median']:.2f}s"
                  + (f" | writes {s['acked']} acknowledged, {s['refused']} refused, "
                     f"{s['lost']} lost" if what.startswith("db") else ""))
    for what, target in (("web node", TARGET_NODE), ("db by replication", TARGET_NODE),
                         ("web node (pool)", TARGET_NODE),
                         ("db by replication (pool)", TARGET_NODE)):
        if what in summary:
            v = summary[what]["seconds_median"]
            print(f"target one node ({what}) <= {target:g}s: {v:.1f}s "
                  f"{'MET' if v <= target else 'NOT MET'}")
    reps = [summary[w] for w in ("db by replication", "db by replication (pool)") if w in summary]
    if reps:
        v = max(r["downtime_max"] for r in reps)
        print(f"target database downtime <= {TARGET_DB_DOWN:g}s (replication, cold and pooled "
              f"targets, worst run): {v:.2f}s {'MET' if v <= TARGET_DB_DOWN else 'NOT MET'}; "
              f"beside it stop → copy → start: "
              f"{summary.get('db by copy', {}).get('downtime_median', float('nan')):.2f}s median")
        written = [*reps, summary.get("db by copy", {"lost": 0, "acked": 0})]
        lost = sum(r["lost"] for r in written)
        print(f"target no acknowledged write lost: {lost} lost of "
              f"{sum(r['acked'] for r in written)} {'MET' if lost == 0 else 'NOT MET'}")
    if "web node" in summary:
        print(f"web tier downtime (make before break, target near zero): "
              f"{summary['web node']['downtime_median']:.2f}s median")
    print(f"# total {time.monotonic() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2,
                                        default=str))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
