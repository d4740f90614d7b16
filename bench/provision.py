"""Provisioning benchmark: `overcloud request apply` → the WordPress install page answering.

What one run of the bench does (everything on this machine, in a private state directory under
/tmp with mode 0711, on free 127.0.0.1 ports, with bridges `ocbn1/2` on 10.238.{1,2}.0/24):

1. starts its own broker and InfluxDB with `devtower.services.manager`, then its own two LXD
   daemons (the two UnderCloud hosts) the way `manager.up(settings, ["lxd"])` does: the
   daemons, then `ensure_images`, which imports the node image from the shared image cache
   (~/.cache/overcloud). That step is timed ("fresh hosts: import from a warm cache"). The
   cache must be warm: a cold build takes minutes and other people use the cache, so the bench
   refuses to build (its cold figures are quoted in BENCHMARKS.md, not measured here);
2. starts `overcloud devlake run` and `overcloud orchestrator run` as processes;
3. `--runs` times, alternately, a 1-node and a 3-node OverCloud (spread over the 2 hosts, app
   replicas 2), each size twice side by side: **cold** (`pool: false`: every node launched)
   and **pool** (ready nodes of the warm pool, `--pool` per host, claimed). Before every run
   it waits until each host's pool is full and idle (no node warming), so a refill never
   competes with the run measured, and records how long the refill took. Then it
   runs `overcloud request apply FILE` (no --wait) and measures the wall time
   from invoking it until GET http://127.0.0.1:PORT/wp-admin/install.php returns 200 with
   the WordPress installation page (polled every `--poll` s). It also records when the
   workflow reached `succeeded` (DevLake database and agents registered too), the duration of
   every task of the workflow (WorkflowStore on STATE/orchestrator/workflows.sqlite), then
   runs `overcloud delete NAME --wait` and checks that nothing is left (no container on any
   host, no agent, no secrets file, no DevLake database, the port closed);
4. prints medians, p95 (nearest rank), min/max, the 3-node/1-node ratio and the verdict
   against the targets (cold: 1 node ≤ 30 s, 3 nodes ≤ 1.3 × the 1-node time; pool: p95
   ≤ 5 s for 1 node and ≤ 6 s for 3 nodes, issue 13);
5. stops what it started, by the pids recorded in its state directory, and removes it.

The whole bench stops starting runs when `--budget` seconds would be exceeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOOPBACK,
    bench_env,
    free_port,
    median,
    overcloud_cli,
    percentile,
    print_machine,
    spawn,
)

from daemons.install import ensure_packages
from devtower.services import manager
from devtower.services.catalog import CATALOG
from orchestrator.hosts import drivers
from orchestrator.images import ensure_images, image_status
from orchestrator.provision import agent_daemon
from orchestrator.store import WorkflowStore
from overcloud.settings import Settings, load_settings

TARGET_ONE = 30.0
TARGET_RATIO = 1.3
TARGET_POOL = {1: 5.0, 3: 6.0}
"""Issue 13: apply → page p95 from the warm pool, by node count."""
MODES = ("cold", "pool")

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: bench@example.org
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
placement: {{strategy: spread}}
saas:
  stack: wordpress
  tiers:
    app: {{replicas: {app}}}
  expose: {{port: {port}}}
pool: {pool}
"""


def free_port_pair() -> int:
    """A free loopback port whose +1 neighbour is free too (LXD host i listens on port+i-1)."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind((LOOPBACK, port + 1))
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1")


def page_answers(client: httpx.Client, port: int) -> bool:
    try:
        r = client.get(f"http://{LOOPBACK}:{port}/wp-admin/install.php")
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and "WordPress" in r.text and "install" in r.text.lower()


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*overcloud_cli(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def wait_log(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if text in log.read_text(errors="replace"):
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited ({proc.returncode}): {tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log.stem} not ready after {timeout:g}s: {tail(log)}")
        time.sleep(0.1)


def tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_proc(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def leftovers(settings: Settings, name: str, port: int, client: httpx.Client) -> list[str]:
    """Everything of OverCloud `name` still present after its deletion (empty: clean)."""
    left = []
    for host, driver in drivers(settings).items():
        for inst in driver.instances():
            left.append(f"container {inst} on {host}")
    state = settings.state_dir
    left += [f"agent pid file {p.name}" for p in (state / "run").glob(f"agent-{name}-*.pid")]
    if (state / "secrets" / f"{name}.json").exists():
        left.append(f"secrets/{name}.json")
    from devlake.sinks import InfluxQL

    ql = InfluxQL(settings.influx)
    try:
        dbs = ql.databases()
    finally:
        ql.close()
    if f"{settings.influx.database_prefix}{name}" in dbs:
        left.append(f"database {settings.influx.database_prefix}{name}")
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        left.append(f"port {port} still open")
    return left


def pool_full(settings: Settings, target: int, timeout: float) -> float:
    """Wait until every host has `target` ready pooled nodes and none warming; seconds."""
    t0 = time.monotonic()
    hosts = drivers(settings)
    while True:
        states = [[st for st, _ in d.pool_nodes().values()] for d in hosts.values()]
        if all(s.count("ready") == target and "warming" not in s for s in states):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the pool did not fill in {timeout:g}s: {states}")
        time.sleep(0.5)


def one_run(args: argparse.Namespace, settings: Settings, env: dict[str, str], nodes: int,
            index: int, work: Path, client: httpx.Client, mode: str = "cold") -> dict[str, Any]:
    name = f"bench{mode[0]}{nodes}n{index}"
    port = free_port()
    doc = work / f"{name}.yaml"
    doc.write_text(REQUEST.format(name=name, nodes=nodes, app=max(1, nodes - 1), port=port,
                                  pool="true" if mode == "pool" else "false"))
    res: dict[str, Any] = {"nodes": nodes, "run": index, "name": name, "port": port, "ok": False,
                           "mode": mode}
    if args.pool:
        res["refill_wait_s"] = pool_full(settings, args.pool, args.timeout * 4)
    store = WorkflowStore(settings.state_dir / "orchestrator" / "workflows.sqlite")
    wall0 = time.time()
    t0 = time.monotonic()
    apply_log = work / f"{name}-apply.log"
    apply = spawn([*overcloud_cli(), "request", "apply", str(doc)], env, apply_log, work)
    t_apply = t_page = None
    error = ""
    try:
        next_check = t0
        while True:
            now = time.monotonic()
            if t_apply is None and apply.poll() is not None:
                t_apply = now - t0
                if apply.returncode != 0:
                    error = f"apply exited {apply.returncode}: {tail(apply_log)}"
                    break
            if page_answers(client, port):
                t_page = time.monotonic() - t0
                break
            if now - t0 > args.timeout:
                error = f"page not answering after {args.timeout:g}s"
                break
            if now >= next_check:  # fail fast on a failed workflow (once a second)
                wf = store.latest_for(name, kind="provision")
                if wf is not None and str(wf.state) == "failed":
                    error = f"workflow failed: {wf.error}"
                    break
                next_check = now + 1.0
            next_tick = now + args.poll
            time.sleep(max(0.0, next_tick - time.monotonic()))
        if t_apply is None:
            apply.wait(60)
            t_apply = time.monotonic() - t0
        res["apply_cli_s"] = t_apply
        res["page_s"] = t_page
        # wait for the whole workflow (DevLake database, agents, OverCloudReady) to finish
        t_ready = None
        while not error:
            wf = store.latest_for(name, kind="provision")
            if wf is not None and str(wf.state) in ("succeeded", "failed"):
                if str(wf.state) == "failed":
                    error = f"workflow failed: {wf.error}"
                else:
                    t_ready = wf.updated - wall0
                break
            if time.monotonic() - t0 > args.timeout:
                error = f"workflow not finished after {args.timeout:g}s"
                break
            time.sleep(0.2)
        res["ready_s"] = t_ready
        wf = store.latest_for(name, kind="provision")
        if wf is not None:
            res["workflow_created_s"] = wf.created - wall0
            res["tasks"] = [
                {"task": t.name.replace(f"{name}-", ""), "state": str(t.state),
                 "attempts": t.attempts, "error": t.error,
                 "start_s": (t.started - wall0) if t.started else None,
                 "seconds": (t.finished - t.started) if t.started and t.finished else None}
                for t in wf.tasks
            ]
            res["retries"] = [
                {"task": h.task, "at_s": h.time - wall0, "detail": h.detail[:300]}
                for h in store.history(wf.id) if h.event == "retrying"
            ]
        res["placement"] = {h: sorted(d.instances(name)) for h, d in drivers(settings).items()}
        from orchestrator.registry import Registry

        rec = Registry(settings).get(name)
        res["pooled"] = sum(1 for n in rec.nodes if n.instance) if rec else 0
    finally:
        stop_proc(apply)
        store.close()
        t1 = time.monotonic()
        gone = cli(env, "delete", name, "--wait", timeout=args.timeout)
        res["delete_s"] = time.monotonic() - t1
        if gone.returncode != 0:
            error = error or f"delete failed: {gone.stdout[-500:]} {gone.stderr[-500:]}"
        res["left"] = leftovers(settings, name, port, client)
    if res["left"]:
        error = error or f"left behind: {', '.join(res['left'])}"
    res["error"] = error
    res["ok"] = not error and t_page is not None
    return res


def print_run(r: dict[str, Any]) -> None:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}s"

    placed = " ".join(f"{h}:{len(v)}" for h, v in r.get("placement", {}).items())
    print(f"run {r['run']} {r.get('mode', 'cold')} {r['nodes']} node(s) {r['name']}: page "
          f"{s(r.get('page_s'))} | pooled nodes {r.get('pooled', 0)} | refill waited "
          f"{s(r.get('refill_wait_s'))} | "
          f"workflow succeeded {s(r.get('ready_s'))} | apply CLI {s(r.get('apply_cli_s'))} | "
          f"delete {s(r.get('delete_s'))} | placed {placed} | "
          f"{'clean' if not r.get('left') else 'LEFT: ' + ', '.join(r['left'])}"
          + (f" | ERROR {r['error']}" if r.get("error") else ""), flush=True)
    for retry in r.get("retries", []):
        print(f"    retry of {retry['task']} at {retry['at_s']:.1f}s: {retry['detail']}", flush=True)
    tasks = [t for t in r.get("tasks", []) if t["seconds"] is not None]
    if tasks:
        print("    tasks (start → duration): " + ", ".join(
            f"{t['task']} {t['start_s']:.1f}→{t['seconds']:.1f}s"
            + (f" ×{t['attempts']}" if t["attempts"] > 1 else "") for t in tasks), flush=True)


def summary(results: list[dict[str, Any]], mode: str = "cold") -> dict[str, Any]:
    out: dict[str, Any] = {}
    results = [r for r in results if r.get("mode", "cold") == mode]
    for nodes in sorted({r["nodes"] for r in results}):
        ok = [r for r in results if r["nodes"] == nodes and r["ok"]]
        pages = [r["page_s"] for r in ok]
        readies = [r["ready_s"] for r in ok if r.get("ready_s") is not None]
        deletes = [r["delete_s"] for r in ok]
        task_times: dict[str, list[float]] = {}
        for r in ok:
            for t in r.get("tasks", []):
                if t["seconds"] is not None:
                    task_times.setdefault(t["task"], []).append(t["seconds"])
        out[str(nodes)] = {
            "runs": len([r for r in results if r["nodes"] == nodes]), "ok": len(ok),
            "page_median": median(pages), "page_p95": percentile(pages, 95) if pages else
            float("nan"), "page_min": min(pages, default=float("nan")),
            "page_max": max(pages, default=float("nan")), "ready_median": median(readies),
            "delete_median": median(deletes),
            "task_median": {k: median(v) for k, v in task_times.items()},
        }
    return out


def cleanup(settings: Settings, procs: list[subprocess.Popen[bytes]], names: list[str],
            keep: bool) -> None:
    for p in procs:
        stop_proc(p)
    # agents a failed run may have left: stopped by their recorded pid (and command line)
    for name in names:
        for pid_file in (settings.state_dir / "run").glob(f"agent-{name}-*.pid"):
            node = pid_file.stem.removeprefix(f"agent-{name}-")
            for host in settings.undercloud.host_names:
                with contextlib.suppress(Exception):
                    agent_daemon(settings, name, node, host).stop()
    manager.down(settings, ["kafka", "influxdb", "dockerd", "lxd", "edge"])  # stopped in reverse
    if keep:
        return
    state = str(settings.state_dir)
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
              if ln.split()[1].startswith(state + "/")]
    for m in sorted(mounts, key=len, reverse=True):  # only what lies inside our state dir
        subprocess.run(["umount", "-l", m], check=False, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per size (1 node, 3 nodes)")
    ap.add_argument("--sizes", default="1,3", help="node counts to measure, comma-separated")
    ap.add_argument("--poll", type=float, default=0.1, help="page poll interval (s)")
    ap.add_argument("--timeout", type=float, default=240,
                    help="per run: max seconds to the page, to workflow end, and for delete")
    ap.add_argument("--budget", type=float, default=540,
                    help="start no new run once the bench would run longer than this (s)")
    ap.add_argument("--pool", type=int, default=2,
                    help="ready nodes kept per host (0: cold runs only, no pool)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state directory")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    bench_t0 = time.monotonic()

    print_machine()
    state = Path(tempfile.mkdtemp(prefix="overcloud-bench-provision-", dir="/tmp"))
    state.chmod(0o711)  # unprivileged containers traverse it to their rootfs
    env = bench_env(state, free_port(), free_port())
    env.update({
        "OVERCLOUD_UNDERCLOUD_BRIDGE_PREFIX": "ocbn",
        "OVERCLOUD_UNDERCLOUD_SUBNET_PREFIX": "10.238",
        "OVERCLOUD_UNDERCLOUD_HTTPS_PORT": str(free_port_pair()),
    })
    settings = load_settings(config=None, env=env)
    work = state / "bench"
    work.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    results: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    names: list[str] = []
    try:
        missing = [a.kind for a in image_status(settings).artifacts if a.action != "cached"]
        if missing:
            print(f"image cache {settings.undercloud.cache_dir} is not warm (missing: "
                  f"{', '.join(missing)}); build it first (`overcloud services up lxd`): this "
                  "bench does not measure or trigger a cold build", file=sys.stderr)
            return 2
        t = time.monotonic()
        manager.up(settings, ["kafka", "influxdb"])
        setup["kafka_influxdb_s"] = time.monotonic() - t
        # manager.up(settings, ["lxd"]), in its two steps so that each is timed
        spec = CATALOG["lxd"]
        ensure_packages(sorted(spec.packages))
        t = time.monotonic()
        spec.daemon(settings).start()
        setup["lxd_daemons_s"] = time.monotonic() - t
        t = time.monotonic()
        images = ensure_images(settings, say=lambda m: print(f"# images: {m}", flush=True))
        setup["images_s"] = time.monotonic() - t
        setup["lxd_up_s"] = setup["lxd_daemons_s"] + setup["images_s"]
        setup["hosts"] = {h.host: {"action": h.action, "seconds": h.seconds} for h in images.hosts}
        built = [a.kind for a in images.artifacts if a.action == "built"]
        print(f"# services: broker {settings.kafka.bootstrap}, InfluxDB "
              f"{settings.influx.base_url}, state {state}", flush=True)
        print(f"# manager.up lxd on fresh hosts: {setup['lxd_up_s']:.1f}s = daemons + preseed "
              f"{setup['lxd_daemons_s']:.1f}s + node image from the warm cache "
              f"{setup['images_s']:.1f}s ("
              + ", ".join(f"{h.host} {h.action} {h.seconds:.1f}s" for h in images.hosts)
              + (f"; BUILT {built}" if built else "") + ")", flush=True)
        if args.pool:  # room for the pool beside the nodes measured, then its target
            for host in settings.undercloud.host_names:
                out = cli(env, "undercloud", "set", host, "--cpus", "16", "--pool",
                          str(args.pool))
                if out.returncode:
                    raise RuntimeError(f"undercloud set {host}: {out.stdout} {out.stderr}")
        for svc in ("devlake", "orchestrator"):
            log = state / "log" / f"bench-{svc}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            procs.append(spawn([*overcloud_cli(), svc, "run"], env, log, work))
            wait_log(procs[-1], log, f"{svc}:", timeout=60)
        setup["ready_to_measure_s"] = time.monotonic() - bench_t0
        modes = MODES if args.pool else MODES[:1]
        if args.pool:
            t = time.monotonic()
            setup["pool_fill_s"] = pool_full(settings, args.pool, args.timeout * 4)
            print(f"# warm pool: {args.pool} ready node(s) on each host after "
                  f"{time.monotonic() - t:.1f}s", flush=True)
        with httpx.Client(timeout=1.0) as client:
            longest = 0.0
            runs = [(i, n, m) for i in range(1, args.runs + 1) for n in sizes for m in modes]
            for i, nodes, mode in runs:
                elapsed = time.monotonic() - bench_t0
                guess = max(longest, 90.0)
                if elapsed + guess > args.budget:
                    print(f"# budget: {elapsed:.0f}s spent, a run takes up to "
                          f"{guess:.0f}s: no more runs (--budget {args.budget:g})", flush=True)
                    break
                t = time.monotonic()
                names.append(f"bench{mode[0]}{nodes}n{i}")
                r = one_run(args, settings, env, nodes, i, work, client, mode)
                longest = max(longest, time.monotonic() - t)
                print_run(r)
                results.append(r)
    finally:
        t = time.monotonic()
        cleanup(settings, procs, names, args.keep_state)
        setup["cleanup_s"] = time.monotonic() - t
        print(f"# stopped our services and processes in {setup['cleanup_s']:.1f}s"
              + ("" if args.keep_state else f", removed {state}"), flush=True)

    summ = summary(results)
    pooled = summary(results, "pool")
    for mode, table in (("cold", summ), ("pool", pooled)):
        for size, s in table.items():
            print(f"{mode} {size} node(s): {s['ok']}/{s['runs']} runs ok | apply → page median "
                  f"{s['page_median']:.1f}s, p95 {s['page_p95']:.1f}s (min {s['page_min']:.1f}, "
                  f"max {s['page_max']:.1f}) | apply → workflow succeeded "
                  f"{s['ready_median']:.1f}s | delete {s['delete_median']:.1f}s", flush=True)
            print("    task medians: " + ", ".join(f"{k} {v:.1f}s"
                                                   for k, v in s["task_median"].items()))
    for size, s in pooled.items():
        target = TARGET_POOL.get(int(size))
        cold = summ.get(size)
        if target is not None:
            print(f"target pool {size} node(s) p95 <= {target:g}s: {s['page_p95']:.1f}s "
                  f"{'MET' if s['page_p95'] <= target else 'NOT MET'}"
                  + (f" (median {s['page_median']:.1f}s vs cold {cold['page_median']:.1f}s: "
                     f"{cold['page_median'] / s['page_median']:.1f}x faster)" if cold else ""))
    summ = {**summ, "pool": pooled}
    one, three = summ.get("1"), summ.get("3")
    if one:
        met = one["page_median"] <= TARGET_ONE
        print(f"target 1 node <= {TARGET_ONE:g}s: {one['page_median']:.1f}s "
              f"{'MET' if met else 'NOT MET'}")
    if one and three:
        ratio = three["page_median"] / one["page_median"]
        summ["ratio"] = ratio
        met = ratio <= TARGET_RATIO
        print(f"target 3 nodes <= {TARGET_RATIO:g} x 1 node: ratio {ratio:.2f} "
              f"({three['page_median']:.1f}s / {one['page_median']:.1f}s) "
              f"{'MET' if met else 'NOT MET'}")
    print(f"# total {time.monotonic() - bench_t0:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                  if k != "json"}, "setup": setup,
                                         "runs": results, "summary": summ},
                                        indent=2, default=str))
    failed = [r for r in results if not r["ok"]]
    return 1 if failed or not results else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
