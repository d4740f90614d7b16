"""Backup and restore of an OverCloud's database on real LXD, driven through the CLI.

A one-node OverCloud; WordPress installed through its own install page; a post written in
the database; `overcloud backup NAME --wait`; the post deleted (and a table made that the
backup never saw); `overcloud restore NAME --from ID --wait` → the post is served again and
the later table is gone; `restore --as` makes a clone serving the same post at its own URL.
The same for an uploaded file (WordPress's uploads volume): back after the restore, one
uploaded since gone, and served by the clone.
Also: `backup list`, retention by count, a damaged backup refused, a bad id refused.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from lxdclient import lxc_env
from orchestrator.backup import backup_dir
from orchestrator.hosts import LxdDriver, drivers
from overcloud.waiting import wait_until
from tests.conftest import Env
from tests.helpers import Background, free_port, install_wordpress, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: test@example.org
cluster: {{nodes: 1, cpu: 1, memory: 1GiB}}
saas: {{stack: wordpress, expose: {{port: {port}}}}}
"""
TITLE = "A post worth keeping"


def _sh(env: Env, node: str, service: str, script: str, stdin: str = "") -> str:
    """Run a shell script in a stack container (`db`, `wordpress`) of the node."""
    for d in drivers(env.settings()).values():
        assert isinstance(d, LxdDriver)
        if node in d.instances():
            proc = subprocess.run(
                ["lxc", "exec", node, "--", "docker", "compose", "--project-directory",
                 "/srv/stack", "exec", "-T", service, "sh", "-c", script],
                env=lxc_env(env.settings(), d.host), input=stdin, capture_output=True,
                text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
    raise AssertionError(f"{node} runs on no host")


def _sql(env: Env, node: str, sql: str) -> str:
    """Run SQL in the node's WordPress database as its root (the password stays in the db
    container's environment)."""
    return _sh(env, node, "db", 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb -uroot -N "$DB_NAME"',
               sql)


UPLOADS = "/var/lib/wordpress/wp-content/uploads"


def _upload(env: Env, node: str, rel: str, text: str) -> None:
    """A file in WordPress's uploads, as WordPress writes them (owned by www-data)."""
    _sh(env, node, "wordpress", f'mkdir -p "$(dirname {UPLOADS}/{rel})" && cat > {UPLOADS}/{rel}'
        f' && chown -R www-data:www-data {UPLOADS}', text)


def _file(port: int, rel: str) -> tuple[int, str]:
    r = httpx.get(f"http://127.0.0.1:{port}/wp-content/uploads/{rel}", timeout=30)
    return r.status_code, r.text


def _post(port: int, post_id: int) -> int:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/?p={post_id}", timeout=30)
    except httpx.HTTPError:
        return -1
    return r.status_code if TITLE in r.text or r.status_code != 200 else 0


def test_a_deleted_post_comes_back_from_a_backup(uc: Env, tmp_path: Path) -> None:
    lake = Background(["devlake", "run"], uc, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], uc, tmp_path / "orchestrator.log").start()
    name, port = "bak-one", free_port()
    node = f"{name}-n1"
    doc = tmp_path / "bak.yaml"
    doc.write_text(DOC.format(name=name, port=port))
    try:
        out = run_cli(["request", "apply", str(doc), "--wait"], uc, timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr + orch.output()
        install_wordpress(port, "Backup test")
        post_id = int(_sql(uc, node, f"""
            INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title,
              post_excerpt, post_status, post_name, to_ping, pinged, post_modified,
              post_modified_gmt, post_content_filtered, post_type)
            VALUES (1, NOW(), UTC_TIMESTAMP(), 'Kept by a backup.', '{TITLE}', '', 'publish',
              'worth-keeping', '', '', NOW(), UTC_TIMESTAMP(), '', 'post');
            SELECT LAST_INSERT_ID();""").split()[-1])
        assert _post(port, post_id) == 200, "the post is served"
        _upload(uc, node, "2026/11/kept.txt", "an uploaded file\n")
        assert _file(port, "2026/11/kept.txt") == (200, "an uploaded file\n")

        made = run_cli(["backup", name, "--wait", "--keep", "2"], uc, timeout=600)
        assert made.returncode == 0, made.stdout + made.stderr + orch.output()
        # (the live task table shows the dump's report too: one id, maybe printed twice)
        (backup_id,) = set(re.findall(r"backup (\d{8}T\d{6}Z-[0-9a-f]{6}): \d+ bytes",
                                      made.stdout))
        listed = run_cli(["backup", "list", name], uc, check=True).stdout
        assert backup_id in listed and node in listed

        _sql(uc, node, f"DELETE FROM wp_posts WHERE ID = {post_id};"
                       "CREATE TABLE made_after (x INT);")
        assert _post(port, post_id) == 404, "the post is gone"
        _sh(uc, node, "wordpress", f"rm {UPLOADS}/2026/11/kept.txt")
        _upload(uc, node, "2026/12/later.txt", "uploaded after the backup\n")
        assert _file(port, "2026/11/kept.txt")[0] == 404

        back = run_cli(["restore", name, "--from", backup_id, "--wait"], uc, timeout=600)
        assert back.returncode == 0, back.stdout + back.stderr + orch.output()
        assert wait_until(lambda: _post(port, post_id) == 200, timeout=60,
                          what="the restored post served")
        assert "made_after" not in _sql(uc, node, "SHOW TABLES;"), "restored as it was"
        assert _file(port, "2026/11/kept.txt") == (200, "an uploaded file\n"), "uploads back"
        assert _file(port, "2026/12/later.txt")[0] == 404, "uploads as they were"
        assert "www-data www-data" in _sh(uc, node, "wordpress",
                                          f"ls -l {UPLOADS}/2026/11/kept.txt")

        # a clone to staging: a second OverCloud from the same request, the backup loaded
        # into it, WordPress told its own address (else it redirects to the original)
        clone = f"{name}-stg"
        cl = run_cli(["restore", name, "--from", backup_id, "--as", clone, "--wait"], uc,
                     timeout=900)
        assert cl.returncode == 0, cl.stdout + cl.stderr + orch.output()
        shown = json.loads(run_cli(["show", clone, "--json"], uc, check=True).stdout)
        clone_url = shown["url"]
        clone_port = int(clone_url.rstrip("/").rsplit(":", 1)[1])
        assert clone_port != port and shown["owner"] == "test@example.org"
        assert _post(clone_port, post_id) == 200, "the clone serves the same post"
        assert _file(clone_port, "2026/11/kept.txt") == (200, "an uploaded file\n")
        assert _sql(uc, f"{clone}-n1", "SELECT option_value FROM wp_options WHERE "
                                       "option_name = 'home';").strip() == clone_url.rstrip("/")
        assert _post(port, post_id) == 200, "the original is untouched"
        run_cli(["delete", clone, "--wait"], uc, check=True, timeout=300)

        # retention by count: three more backups with --keep 2 leave the newest two
        ids = [backup_id]
        for _ in range(3):
            more = run_cli(["backup", name, "--wait", "--keep", "2"], uc, timeout=600)
            assert more.returncode == 0, more.stdout + more.stderr
            ids += set(re.findall(r"backup (\S+): \d+ bytes", more.stdout))
        kept = sorted(json.loads(p.read_text())["id"]
                      for p in backup_dir(uc.settings(), name).glob("*.json"))
        assert kept == sorted(ids[-2:]), (kept, ids)
        assert len(list(backup_dir(uc.settings(), name).glob("*.sql.gz"))) == 2

        # a damaged backup is refused before the database is touched; a bad id at once
        dump = backup_dir(uc.settings(), name) / f"{ids[-1]}.sql.gz"
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        bad = run_cli(["restore", name, "--from", ids[-1], "--wait"], uc, timeout=300)
        assert bad.returncode == 1 and "damaged" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        assert _post(port, post_id) == 200
        nope = run_cli(["restore", name, "--from", "../../etc/passwd"], uc)
        assert nope.returncode == 1 and "not a backup id" in nope.stderr, nope.stderr

        run_cli(["delete", name, "--wait"], uc, check=True, timeout=300)
    finally:
        orch.stop()
        lake.stop()
