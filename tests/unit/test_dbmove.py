"""The database move's SQL and commands, on a scripted host (the real MariaDB runs them in
tests/integration/test_migration.py): what reaches SQL is checked and quoted, secrets go on
stdin, replication trouble fails the attempt with its reason, and the freeze promotes only
a replica that reached the old database's last write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import dbmove
from overcloud.errors import PermanentError, TemporaryError
from overcloud.events import MigrationRequested
from overcloud.wire import DecodeError, decode_event, encode_event


class ScriptedHost:
    """A node whose database answers each SQL text by the first matching rule."""

    name = "h1"

    def __init__(self, answers: list[tuple[str, str]] | None = None) -> None:
        self.answers = answers or []
        self.sql: list[str] = []
        self.commands: list[tuple[str, ...]] = []
        self.pushed: dict[str, str] = {}
        self.env = "STACK_NAME=blog\nDB_HOST=10.0.0.5\nDB_NAME=wordpress\n"

    def exec_stream(self, name: str, *cmd: str, stdin: Any = None,
                    stdout: Any = None) -> Any:
        host = self

        class Proc:
            returncode = 0

            def communicate(self, data: bytes = b"", timeout: float = 0) -> tuple[bytes, bytes]:
                text = data.decode()
                host.sql.append(text)
                for needle, answer in host.answers:
                    if needle in text:
                        return answer.encode(), b""
                return b"", b""

        self.commands.append(cmd)
        return Proc()

    def exec(self, name: str, *cmd: str, timeout: float = 300) -> str:
        self.commands.append(cmd)
        return self.env if cmd[:1] == ("cat",) else ""

    def push(self, name: str, local: Path, remote: str, mode: str = "0644") -> None:
        self.pushed[remote] = local.read_text()


PASSWORD = "a" * 32


def test_sql_string_escapes_quotes_and_backslashes_and_refuses_nul() -> None:
    assert dbmove.sql_string("o'k\\") == "'o\\'k\\\\'"
    assert dbmove.sql_name("a`b") == "`a``b`"
    with pytest.raises(ValueError):
        dbmove.sql_string("a\x00b")


@pytest.mark.parametrize("address", ["10.0.0.1'; DROP USER root;--", "::1", "example.org",
                                     "10.0.0.256", ""])
def test_a_replica_address_that_is_not_an_ipv4_address_never_reaches_sql(address: str) -> None:
    src = ScriptedHost()
    with pytest.raises(PermanentError):
        dbmove.grant(src, "blog-n1", address, PASSWORD)
    with pytest.raises(PermanentError):
        dbmove.start_replica(src, "blog-n1", address, PASSWORD)
    assert src.sql == []


def test_grant_drops_earlier_replication_users_unlogged_and_quotes_every_value() -> None:
    src = ScriptedHost([("FROM mysql.user", "10.0.0.9\nx'y\n")])
    dbmove.grant(src, "blog-n1", "10.0.0.7", PASSWORD)
    statements = src.sql[-1]
    assert statements.startswith("SET sql_log_bin=0; SET GLOBAL read_only=0;")
    assert "DROP USER IF EXISTS 'oc_repl'@'10.0.0.9';" in statements
    assert "DROP USER IF EXISTS 'oc_repl'@'x\\'y';" in statements
    assert f"CREATE USER 'oc_repl'@'10.0.0.7' IDENTIFIED BY '{PASSWORD}';" in statements
    assert "GRANT REPLICATION SLAVE ON *.* TO 'oc_repl'@'10.0.0.7';" in statements
    # the password went on stdin, never on a command line
    assert not any(PASSWORD in " ".join(cmd) for cmd in src.commands)


@pytest.mark.parametrize("password", ["short", "x' OR '1", "a" * 20 + "\n"])
def test_a_password_outside_the_generated_alphabet_is_refused(password: str) -> None:
    with pytest.raises(PermanentError):
        dbmove.grant(ScriptedHost(), "blog-n1", "10.0.0.7", password)


def test_wait_caught_up_returns_the_position_the_replica_reached() -> None:
    src = ScriptedHost([("@@gtid_binlog_pos", "0-1-42\n")])
    tgt = ScriptedHost([("MASTER_GTID_WAIT", "0\n")])
    assert dbmove.wait_caught_up(src, tgt, "blog-n1") == "0-1-42"
    assert "SELECT MASTER_GTID_WAIT('0-1-42', 2);" in tgt.sql


def _behind_replica(status: str) -> tuple[ScriptedHost, ScriptedHost]:
    """An old database at 0-1-42 and a new one that never reaches it, in state `status`."""
    return (ScriptedHost([("@@gtid_binlog_pos", "0-1-42\n")]),
            ScriptedHost([("MASTER_GTID_WAIT", "-1\n"), ("SHOW SLAVE STATUS", status)]))


@pytest.mark.timeout(30)  # (a replica whose stop went unnoticed would wait out 600 s)
def test_a_stopped_replica_fails_the_attempt_at_once_with_its_error() -> None:
    src, tgt = _behind_replica("Slave_IO_Running: Yes\nSlave_SQL_Running: No\n"
                               "Last_SQL_Error: Duplicate entry '7' for key 'PRIMARY'\n")
    with pytest.raises(TemporaryError, match="stopped replicating: Duplicate entry"):
        dbmove.wait_caught_up(src, tgt, "blog-n1", timeout=600)
    assert sum("MASTER_GTID_WAIT" in s for s in tgt.sql) == 1


@pytest.mark.timeout(30)
def test_a_replica_that_cannot_reach_the_old_database_fails_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmove, "CONNECT_GRACE", 0.0)
    src, tgt = _behind_replica("Slave_IO_Running: Connecting\nSlave_SQL_Running: Yes\n"
                               "Last_IO_Error: Can't connect to server on '10.0.0.5' (111)\n")
    with pytest.raises(TemporaryError, match="cannot reach the old one: Can't connect"):
        dbmove.wait_caught_up(src, tgt, "blog-n1", timeout=600)


@pytest.mark.parametrize("pos", ["0-1-2'; SET GLOBAL read_only=0; --", "0-1", "x", "0-1-2,"])
def test_a_position_that_is_not_a_gtid_list_never_reaches_sql(pos: str) -> None:
    src = ScriptedHost([("@@gtid_binlog_pos", pos)])
    tgt = ScriptedHost([("MASTER_GTID_WAIT", "0\n")])
    with pytest.raises(TemporaryError, match="unexpected GTID position"):
        dbmove.promote(src, tgt, "blog-n1")
    assert tgt.sql == []


def test_promotion_waits_for_the_last_write_and_only_then_stops_replicating() -> None:
    src = ScriptedHost([("read_only=1", "0-1-9,1-2-3\n")])
    behind = ScriptedHost([("MASTER_GTID_WAIT", "behind\n"),
                           ("SHOW SLAVE STATUS", "Slave_IO_Running: Yes\nSlave_SQL_Running: Yes\n")])
    with pytest.raises(TemporaryError, match="did not reach 0-1-9,1-2-3"):
        dbmove.promote(src, behind, "blog-n1", timeout=1)
    caught_up = ScriptedHost([("MASTER_GTID_WAIT", "promoted\n")])
    assert dbmove.promote(src, caught_up, "blog-n1") == "0-1-9,1-2-3"
    assert src.sql[0].startswith("SET GLOBAL read_only=1;")
    # the replica stops only when the wait says it reached the position
    assert ("IF MASTER_GTID_WAIT('0-1-9,1-2-3', 30) = 0 THEN STOP SLAVE; RESET SLAVE ALL;"
            in caught_up.sql[-1])


def test_point_db_writes_the_env_then_the_file_with_the_address_as_an_argument() -> None:
    web = ScriptedHost()
    dbmove.point_db(web, "blog-n2", "10.0.0.8")
    assert web.pushed["/srv/stack/.env"].splitlines()[-1] == "DB_HOST=10.0.0.8"
    assert "DB_HOST=10.0.0.5" not in web.pushed["/srv/stack/.env"]
    cmd = web.commands[-1]
    assert cmd[-2:] == ("sh", "10.0.0.8:3306")  # $1 of the script, not inside it
    assert "10.0.0.8" not in cmd[-3]
    with pytest.raises(PermanentError):
        dbmove.point_db(web, "blog-n2", "10.0.0.8; rm -rf /")


def test_the_db_method_is_validated_on_the_bus() -> None:
    copy = MigrationRequested(overcloud="blog", node="blog-n1", target="lxd2", db_method="copy")
    decoded = decode_event(encode_event(copy))
    assert isinstance(decoded, MigrationRequested) and decoded.db_method == "copy"
    assert MigrationRequested(overcloud="blog").db_method == "replicate"
    raw = encode_event(copy).replace(b'"copy"', b'"rsync"')
    with pytest.raises(DecodeError, match="db_method"):
        decode_event(raw)


def test_the_wordpress_config_reads_the_switch_file_the_orchestrator_writes() -> None:
    config = (Path(dbmove.__file__).parent / "stack" / "wordpress" / "config-default.php")
    text = config.read_text()
    assert f"file_get_contents('{dbmove.DB_HOST_FILE}')" in text
    assert "define('DB_HOST', oc_db_host());" in text


@pytest.mark.parametrize("node", ["blog", "blog-nx", "-n1", "blog-n1 ; sh"])
def test_commands_go_only_to_the_containers_of_a_node_name(node: str) -> None:
    with pytest.raises(PermanentError, match="not a node name"):
        dbmove.sql(ScriptedHost(), node, "SELECT 1;")


def test_sql_runs_in_the_stack_container_of_the_node() -> None:
    host = ScriptedHost()
    dbmove.sql(host, "my-net-n12", "SELECT 1;")
    assert host.commands[-1][:4] == ("docker", "exec", "-i", "oc-db-1")
