"""Issue 13, the warm pool, on real LXD + Docker + MariaDB: pooled nodes become ready in the
background, `apply` claims them, every claimed node serves with its OverCloud's own secrets
only (never the pool's, never another OverCloud's), the pool refills, `pool: false` launches
cold, and `undercloud show` lists the pool.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrator.hosts import drivers
from orchestrator.registry import Registry
from orchestrator.store import WorkflowStore
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REQUEST = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: {nodes}, cpu: 1, memory: 1GiB}}
saas:
  stack: wordpress
  tiers: {{app: {{replicas: {app}}}}}
  expose: {{port: {port}}}
{extra}"""


def _apply(env: Env, tmp: Path, name: str, extra: str = "", nodes: int = 1) -> int:
    port = free_port()
    path = tmp / f"{name}.yaml"
    path.write_text(REQUEST.format(name=name, port=port, extra=extra, nodes=nodes,
                                   app=max(1, nodes - 1)))
    out = run_cli(["request", "apply", str(path), "--wait"], env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return port


def _ready(env: Env, host: str) -> list[str]:
    d = drivers(env.settings())[host]
    return sorted(n for n, (st, _) in d.pool_nodes().items() if st == "ready")


def _env_of(env: Env, host: str, container: str) -> dict[str, str]:
    text = drivers(env.settings())[host].exec(container, "cat", "/srv/stack/.env", timeout=30)
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)


def _login(env: Env, host: str, node: str, user: str, password: str) -> bool:
    """`user` gets into `node`'s MariaDB with `password` (given on stdin, never in argv)."""
    d = drivers(env.settings())[host]
    proc = d.exec_stream(node, "docker", "exec", "-i", "oc-db-1", "sh", "-c",
                         'IFS= read -r MYSQL_PWD; export MYSQL_PWD; '
                         'exec mariadb -u"$1" -N -e "SELECT 1"', "sh", user,
                         stdin=-1, stdout=-1)
    out, _ = proc.communicate(f"{password}\n".encode(), timeout=60)
    return proc.returncode == 0 and out.strip() == b"1"


def test_pooled_overclouds_have_their_own_secrets_and_the_pool_refills(uc: Env,
                                                                       tmp_path: Path) -> None:
    run_cli(["undercloud", "set", "lxd1", "--pool", "2", "--cpus", "16"], uc, check=True)
    run_cli(["undercloud", "drain", "lxd2", "--no-evacuate"], uc, check=True)
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    names: list[str] = []
    try:
        first = wait_until(lambda: (r := _ready(uc, "lxd1")) and len(r) == 2 and r,
                           timeout=900, interval=1, what="two ready pooled nodes on lxd1")
        pooled_env = {c: _env_of(uc, "lxd1", c) for c in first}
        shown = run_cli(["undercloud", "show", "lxd1"], uc, check=True).stdout
        assert "pool       2 ready of 2" in shown and all(c in shown for c in first), shown

        for name in ("pool-a", "pool-b"):
            _apply(uc, tmp_path, name)
            names.append(name)
        reg = Registry(uc.settings())
        got = {}
        for name in ("pool-a", "pool-b"):
            rec = reg.get(name)
            assert rec is not None and rec.state == "ready"
            node = rec.nodes[0]
            assert node.instance in first, (node, first)  # taken from the pool
            got[name] = (node, reg.secrets(name))
        assert got["pool-a"][0].instance != got["pool-b"][0].instance
        a, b = got["pool-a"][1], got["pool-b"][1]
        for field in ("db_password", "db_root_password"):
            assert getattr(a, field) != getattr(b, field)
        assert a.wp_keys["WP_AUTH_KEY"] != b.wp_keys["WP_AUTH_KEY"]

        for name, (node, own) in got.items():
            old = pooled_env[node.instance]
            assert old["DB_PASSWORD"] != own.db_password  # rotated, not adopted
            # the database takes its OverCloud's passwords and no longer the pool's
            assert _login(uc, "lxd1", node.node, "root", own.db_root_password)
            assert _login(uc, "lxd1", node.node, "wordpress", own.db_password)
            assert not _login(uc, "lxd1", node.node, "root", old["DB_ROOT_PASSWORD"])
            assert not _login(uc, "lxd1", node.node, "wordpress", old["DB_PASSWORD"])
            other = b if name == "pool-a" else a
            assert not _login(uc, "lxd1", node.node, "wordpress", other.db_password)
            # the .env (a re-created container's) and WordPress's secrets file are its own
            now = _env_of(uc, "lxd1", node.node)
            assert now["DB_PASSWORD"] == own.db_password
            assert now["WP_AUTH_KEY"] == own.wp_keys["WP_AUTH_KEY"]
            wp = drivers(uc.settings())["lxd1"].exec(
                node.node, "docker", "exec", "oc-wordpress-1", "cat",
                "/etc/overcloud/secrets.env", timeout=30)
            assert f"WP_AUTH_KEY={own.wp_keys['WP_AUTH_KEY']}" in wp.splitlines()
            assert old["WP_AUTH_KEY"] not in wp

        # the agent of a pooled node measures its container under the node's name
        def samples() -> bool:
            res = run_cli(["metrics", "query",
                           "SELECT count(cpu_time_ns) FROM resource_instance GROUP BY node",
                           "--overcloud", "pool-a"], uc)
            return res.returncode == 0 and "pool-a-n1" in res.stdout

        wait_until(samples, timeout=120, interval=1, what="resource samples of pool-a's node")

        # the pool refills: two ready nodes again, new ones
        again = wait_until(lambda: (r := _ready(uc, "lxd1")) and len(r) == 2 and r,
                           timeout=900, interval=1, what="the pool refilled")
        assert not set(again) & set(first)

        # pool: false → a cold node in a container of its own name, the pool untouched
        _apply(uc, tmp_path, "pool-c", "pool: false\n")
        names.append("pool-c")
        rec = Registry(uc.settings()).get("pool-c")
        assert rec is not None and rec.nodes[0].instance == ""
        assert "pool-c-n1" in drivers(uc.settings())["lxd1"].instances("pool-c")
        assert _ready(uc, "lxd1") == again

        # three nodes on lxd1, two ready there: db and a web node from the pool (their roles
        # made in place, the web node pointed at the pooled db), the third launched cold
        port = _apply(uc, tmp_path, "pool-d", nodes=3)
        names.append("pool-d")
        rec = Registry(uc.settings()).get("pool-d")
        assert rec is not None and rec.state == "ready"
        assert sorted(bool(n.instance) for n in rec.nodes) == [False, True, True], rec.nodes
        own = Registry(uc.settings()).secrets("pool-d")
        db = next(n for n in rec.nodes if "db" in n.tiers)
        assert _login(uc, "lxd1", db.node, "wordpress", own.db_password)
        r = httpx.get(f"http://127.0.0.1:{port}/wp-admin/install.php", timeout=30)
        assert r.status_code == 200 and "WordPress" in r.text
        for n in rec.nodes:  # what the role does not run is gone from a pooled node
            ps = drivers(uc.settings())["lxd1"].exec(n.node, "docker", "ps", "--format",
                                                      "{{.Names}}", timeout=30).split()
            assert ("oc-db-1" in ps) == ("db" in n.tiers), (n, ps)
            assert ("oc-nginx-1" in ps) == ("web" in n.tiers), (n, ps)

        # a move takes a ready node of the target's pool too: pool-d's database goes to lxd2
        # by replication into a pooled node, whose secrets become pool-d's first
        run_cli(["undercloud", "undrain", "lxd2"], uc, check=True)
        run_cli(["undercloud", "set", "lxd2", "--pool", "1", "--cpus", "16"], uc, check=True)
        target = wait_until(lambda: (r := _ready(uc, "lxd2")) and r, timeout=900, interval=1,
                            what="a ready pooled node on lxd2")
        pool_root = _env_of(uc, "lxd2", target[0])["DB_ROOT_PASSWORD"]
        out = run_cli(["migrate", "pool-d", "--node", db.node, "--to", "lxd2", "--wait"], uc,
                      timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr
        wid = out.stdout.split(" id ", 1)[1].split()[0]
        store = WorkflowStore(Path(uc["OVERCLOUD_STATE_DIR"]) / "orchestrator" / "workflows.sqlite")
        assert [t.result["how"] for t in store.get(wid).tasks
                if isinstance(t.result, dict)] == ["by replication"]
        moved = next(n for n in Registry(uc.settings()).get("pool-d").nodes  # type: ignore[union-attr]
                     if n.node == db.node)
        assert (moved.host, moved.instance) == ("lxd2", target[0]), moved
        assert _login(uc, "lxd2", db.node, "wordpress", own.db_password)
        assert not _login(uc, "lxd2", db.node, "root", pool_root)  # the pooled node's own
        r = httpx.get(f"http://127.0.0.1:{port}/wp-admin/install.php", timeout=30)
        assert r.status_code == 200 and "WordPress" in r.text
    finally:
        for name in names:
            run_cli(["delete", name, "--wait"], uc, timeout=600)
        for host in ("lxd1", "lxd2"):
            run_cli(["undercloud", "set", host, "--pool", "0", "--default-capacity"], uc)
        run_cli(["undercloud", "undrain", "lxd2"], uc)
        try:  # a pool beyond its target is deleted by the refill
            wait_until(lambda: not any(d.pool_nodes() for d in drivers(uc.settings()).values()),
                       timeout=300, interval=1, what="the pools emptied")
        finally:
            orch.stop()
            lake.stop()
