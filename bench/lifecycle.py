"""Lifecycle benchmark: scale-up, scale-down and resize of a running OverCloud, and backup /
restore time against database size next to plain `mariadb-dump` / `mariadb` of the same data.

What one run of the bench does (everything on this machine, a private state directory under
/tmp, free 127.0.0.1 ports, bridges `ocbl1/2` on 10.243.{1,2}.0/24 unless `--bridge-prefix`
/ `--subnet-prefix` or OC_TEST_BRIDGE_PREFIX / OC_TEST_SUBNET_PREFIX say otherwise):

1. starts its own broker, InfluxDB, two LXD daemons (the node image from the warm shared
   cache: this bench never builds), `overcloud devlake run` and `overcloud orchestrator run`;
2. provisions one 2-node OverCloud (db on n1, app + web on n2), installs WordPress;
3. `--runs` times: **scale-up** (`request apply` with one more app replica: + node n3),
   **scale-down** (back to one: - node n3), the same with a second **web** replica (behind
   the edge), **resize** (cpu 1 → 2, and back), each timed from invoking the CLI to its
   return, with the front page (public: spread over every replica) probed every `--poll` s
   (100 ms): downtime is the sum of the stretches the page did not answer with WordPress;
4. for each `--posts` size (default 1000 and 100000 posts of ~1 KB): fills `wp_posts` to that
   size, then `--runs` times: `overcloud backup NAME --wait` and `overcloud restore NAME
   --from ID --wait` (timed end to end: CLI, orchestrator, dump streamed out of the node,
   gzip, SHA-256, fsync / checked, loaded back), and, as the baseline in the same run, a
   plain `mariadb-dump --single-transaction` of the same database into a file inside the
   db container and a plain `mariadb < that file` — what an operator would type, with none
   of the transport, compression or checks;
5. prints medians and the ratios to the baseline, deletes the OverCloud, stops everything by
   pid and removes its state.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import LOOPBACK, bench_env, free_port, median, overcloud_cli, print_machine, spawn
from provision import cleanup, cli, free_port_pair, wait_log

from daemons.install import ensure_packages
from devtower.services import manager
from devtower.services.catalog import CATALOG
from lxdclient import lxc_env
from orchestrator.downtime import DowntimeProbe
from orchestrator.images import ensure_images, image_status
from overcloud.settings import Settings, load_settings

NAME = "benchlc"
REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: bench@example.org
cluster: {{nodes: {nodes}, cpu: {cpu}, memory: 1GiB}}
saas:
  stack: wordpress
  tiers: {{app: {{replicas: {app}}}, web: {{replicas: {web}}}}}
  expose: {{port: {port}}}
"""
DB = ("docker", "compose", "--project-directory", "/srv/stack", "exec", "-T", "db", "sh", "-c")


def doc(work: Path, port: int, app: int, cpu: int, web: int = 1) -> Path:
    path = work / f"{NAME}-app{app}-web{web}-cpu{cpu}.yaml"
    path.write_text(REQUEST.format(name=NAME, nodes=max(app, web) + 1, cpu=cpu, app=app,
                                   web=web, port=port))
    return path


def timed(env: dict[str, str], port: int, poll: float, what: str, args: list[str]
          ) -> dict[str, Any]:
    """One CLI call with `--wait`, timed, with the page probed meanwhile."""
    url = f"http://{LOOPBACK}:{port}/"
    with DowntimeProbe(url, every=poll) as probe:
        t = time.monotonic()
        out = cli(env, *args, timeout=1800)
        seconds = time.monotonic() - t
    ok = out.returncode == 0
    r = {"what": what, "ok": ok, "seconds": seconds, "downtime": probe.downtime,
         "failed_probes": probe.failures, "probes": probe.ok + probe.failures,
         "output": out.stdout, "error": "" if ok else (out.stderr or out.stdout)[-400:]}
    r["kinds"] = probe.kinds()
    print(f"{what:<22} {'ok' if ok else 'FAILED'} {seconds:6.1f}s  downtime "
          f"{probe.downtime:5.2f}s ({probe.failures}/{probe.ok + probe.failures} probes failed"
          + (f": {probe.kinds()}" if probe.failures else "") + ")"
          + ("" if ok else f" | {r['error']}"), flush=True)
    return r


def db_sh(settings: Settings, script: str, timeout: float = 3600) -> float:
    """Run `script` in the db container (its root password in its own environment); seconds."""
    host = next(h for h in settings.lxd_hosts if h.name == _db_host(settings))
    t = time.monotonic()
    proc = subprocess.run(["lxc", "exec", f"{NAME}-n1", "--", *DB, script],
                          env=lxc_env(settings, host), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{script[:60]}…: {proc.stderr.strip()[-300:]}")
    return time.monotonic() - t


def _db_host(settings: Settings) -> str:
    from orchestrator.registry import Registry

    rec = Registry(settings).get(NAME)
    assert rec is not None
    return next(n.host for n in rec.nodes if "db" in n.tiers)


ROOT = 'MYSQL_PWD="$DB_ROOT_PASSWORD" '


FILL_SQL = (
    "SET SESSION max_recursive_iterations = @n + 1; "
    "DELETE FROM wp_posts WHERE post_name LIKE 'bench-%'; "
    "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, "
    "post_title, post_excerpt, post_status, post_name, to_ping, pinged, post_modified, "
    "post_modified_gmt, post_content_filtered, post_type) "
    "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < @n) "
    "SELECT 1, NOW(), UTC_TIMESTAMP(), REPEAT(MD5(n), 30), CONCAT('Post ', n), '', "
    "'publish', CONCAT('bench-', n), '', '', NOW(), UTC_TIMESTAMP(), '', 'post' FROM seq;")
"""`@n` rows of ~1 KB in `wp_posts`, generated in the database itself."""


def fill(settings: Settings, posts: int) -> None:
    """`wp_posts` to `posts` rows of ~1 KB (generated in the database itself)."""
    sql = "".join(["SET @n := ", str(int(posts)), "; ", FILL_SQL])
    db_sh(settings, ROOT + f'exec mariadb -uroot "$DB_NAME" -e "{sql}"')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--posts", type=int, nargs="*", default=[1000, 100000],
                    help="database sizes for backup/restore (none: skip that part)")
    ap.add_argument("--poll", type=float, default=0.1, help="page probe interval (s)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state directory")
    ap.add_argument("--bridge-prefix", default=os.environ.get("OC_TEST_BRIDGE_PREFIX", "ocbl"))
    ap.add_argument("--subnet-prefix", default=os.environ.get("OC_TEST_SUBNET_PREFIX", "10.243"))
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    print_machine()
    state = Path(tempfile.mkdtemp(prefix="overcloud-bench-lifecycle-", dir="/tmp"))
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
        out = cli(env, "request", "apply", str(doc(work, port, 1, 1)), "--wait", timeout=1800)
        if out.returncode != 0:
            print(f"provisioning failed: {out.stderr or out.stdout}", file=sys.stderr)
            return 1
        password = secrets.token_urlsafe(16)
        httpx.post(f"http://{LOOPBACK}:{port}/wp-admin/install.php?step=2", timeout=300, data={
            "weblog_title": "bench", "user_name": "admin", "admin_password": password,
            "admin_password2": password, "pw_weak": "1", "admin_email": "admin@example.org",
            "blog_public": "0", "language": "", "Submit": "Install WordPress"})
        print(f"# {NAME}: 2 nodes, WordPress installed, http://{LOOPBACK}:{port}/", flush=True)
        for _ in range(args.runs):
            results.append(timed(env, port, args.poll, "scale-up app 1→2",
                                 ["request", "apply", str(doc(work, port, 2, 1)), "--wait"]))
            results.append(timed(env, port, args.poll, "scale-down app 2→1",
                                 ["request", "apply", str(doc(work, port, 1, 1)), "--wait"]))
            results.append(timed(env, port, args.poll, "scale-up web 1→2",
                                 ["request", "apply", str(doc(work, port, 1, 1, web=2)),
                                  "--wait"]))
            results.append(timed(env, port, args.poll, "scale-down web 2→1",
                                 ["request", "apply", str(doc(work, port, 1, 1)), "--wait"]))
            results.append(timed(env, port, args.poll, "resize cpu 1→2",
                                 ["request", "apply", str(doc(work, port, 1, 2)), "--wait"]))
            results.append(timed(env, port, args.poll, "resize cpu 2→1",
                                 ["request", "apply", str(doc(work, port, 1, 1)), "--wait"]))
        for posts in args.posts:
            fill(settings, posts)
            for _ in range(args.runs):
                b = timed(env, port, args.poll, f"backup {posts} posts",
                          ["backup", NAME, "--wait", "--keep", "2"])
                found = re.findall(r"backup (\d{8}T\d{6}Z-[0-9a-f]{6}): (\d+) bytes", b["output"])
                b |= {"posts": posts, "bytes": int(found[-1][1]) if found else 0}
                results.append(b)
                base = db_sh(settings, ROOT + "mariadb-dump -uroot --single-transaction --quick "
                             '--add-drop-database --databases "$DB_NAME" > /tmp/plain.sql')
                results.append({"what": f"plain dump {posts} posts", "ok": True,
                                "seconds": base, "posts": posts})
                print(f"{'plain dump ' + str(posts) + ' posts':<22} ok {base:6.1f}s", flush=True)
                if found:
                    r = timed(env, port, args.poll, f"restore {posts} posts",
                              ["restore", NAME, "--from", found[-1][0], "--wait"])
                    results.append(r | {"posts": posts})
                base = db_sh(settings, ROOT + "mariadb -uroot < /tmp/plain.sql")
                results.append({"what": f"plain load {posts} posts", "ok": True,
                                "seconds": base, "posts": posts})
                print(f"{'plain load ' + str(posts) + ' posts':<22} ok {base:6.1f}s", flush=True)
            db_sh(settings, "rm -f /tmp/plain.sql")
    finally:
        try:
            cli(env, "delete", NAME, "--wait", timeout=900)
        except (subprocess.TimeoutExpired, OSError) as e:  # cleanup below runs regardless
            print(f"# deleting {NAME} failed ({e}): stopping everything anyway", flush=True)
        cleanup(settings, procs, [NAME], args.keep_state)
        print(f"# stopped our services and processes; {'kept' if args.keep_state else 'removed'} "
              f"{state}", flush=True)

    summary: dict[str, Any] = {}
    for what in dict.fromkeys(r["what"] for r in results):
        rs = [r for r in results if r["what"] == what and r["ok"]]
        if rs:
            summary[what] = {"runs": len(rs), "seconds_median": median([r["seconds"] for r in rs]),
                             "downtime_median": median([r.get("downtime", 0.0) for r in rs]),
                             "failed_probes": sum(r.get("failed_probes", 0) for r in rs)}
    print("\n# medians")
    for what, s in summary.items():
        print(f"{what:<22} {s['runs']} ok | {s['seconds_median']:6.1f}s | downtime median "
              f"{s['downtime_median']:.2f}s | failed probes in all runs {s['failed_probes']}")
    for posts in args.posts:
        for ours, plain in ((f"backup {posts} posts", f"plain dump {posts} posts"),
                            (f"restore {posts} posts", f"plain load {posts} posts")):
            if ours in summary and plain in summary:
                ratio = summary[ours]["seconds_median"] / max(summary[plain]["seconds_median"],
                                                              1e-9)
                print(f"{ours:<22} / {plain}: {ratio:.2f}x")
    print(f"# total {time.monotonic() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2,
                                        default=str))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
