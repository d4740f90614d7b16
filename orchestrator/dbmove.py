"""Moving a database node by GTID replication: the site serves while the new database
catches up, and only writes pause, for the moment of the switch.

The steps (orchestrator/migration.py runs them; each is safe to repeat):

1. **seed** — the new node's database starts empty (its own entrypoint makes the database,
   the user and the root password from the OverCloud's secrets). The old database lets one
   replication user in, from the new node's address only, with a password made for this move
   (`grant`); then one consistent snapshot travels node to node: `mariadb-dump
   --single-transaction --gtid --master-data` (an InnoDB snapshot, the site keeps writing)
   piped into the new database, which learns from it the GTID position the snapshot stands
   at (`SET GLOBAL gtid_slave_pos`). The load is not binary-logged on the new node: its log
   starts with what it replicates.
2. **replicate** — the new database follows the old one from that position
   (`MASTER_USE_GTID=slave_pos`) until it has applied everything the old one has logged.
3. **promote** — the write freeze: the old database goes read-only (the application's user
   has no privilege past it: its writes fail and are not acknowledged, reads go on), the new
   one waits for the old one's last GTID (`MASTER_GTID_WAIT`), then stops replicating and is
   the database. The orchestrator's record moves to the new node at that moment: it holds
   writes the old one never saw, so from here on neither a retry nor a roll-back goes back
   to the old database.
4. **re-point** — every WordPress node reads its database address per request from a file
   (orchestrator/stack/wordpress/config-default.php), so rewriting that file moves new
   requests at once, without restarting anything; `.env` says the same, so a re-created
   container agrees.
5. **drain** — the old database finishes what its clients hold (no application connection
   left, or 10 s); it is still read-only when the migration deletes its node.

A failure before the promotion leaves the old database serving and writable again (`thaw`).

Everything here runs as the database's root inside the `db` container, SQL on stdin (a
password never lands on a command line). What goes into SQL text is checked, then quoted by
`sql_string`, the one function that writes an SQL literal.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.hosts import HostDriver, MovableHost, pipe
from orchestrator.provision import set_env
from orchestrator.stack.compose import SOURCE_SECRETS, container
from overcloud.errors import PermanentError, TemporaryError

REPL_USER = "oc_repl"
DB_PORT = 3306
DB_HOST_FILE = "/etc/wordpress/db-host"
"""Where WordPress reads its database's `address:port` per request (the image's config)."""
ROOT_SQL = SOURCE_SECRETS + 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb -uroot -N -B'
DUMP_SH = (SOURCE_SECRETS + 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb-dump -uroot --single-transaction '
           '--gtid --master-data=1 --routines --triggers --events --add-drop-database '
           '--databases "$DB_NAME"')
LOAD_SH = (SOURCE_SECRETS + 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb -uroot '
           '--init-command="SET sql_log_bin=0"')
GTID_POS = re.compile(r"\A(?:\d{1,10}-\d{1,10}-\d{1,20}(?:,\d{1,10}-\d{1,10}-\d{1,20})*)?\Z")
SECRET = re.compile(r"\A[A-Za-z0-9_-]{16,128}\Z")
DRAIN_SECONDS = 10.0


def sql_name(value: str) -> str:
    """`value` as a MariaDB identifier (backquoted, backquotes doubled, NUL refused)."""
    if "\x00" in value:
        raise ValueError("an SQL name cannot hold NUL")
    return "`" + value.replace("`", "``") + "`"


def sql_string(value: str) -> str:
    """`value` as a MariaDB string literal (quotes and backslashes escaped, NUL refused)."""
    if "\x00" in value:
        raise ValueError("an SQL string cannot hold NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _address(value: str) -> str:
    """An IPv4 address as LXD reports it, else a PermanentError (never text into SQL)."""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise PermanentError(f"not a node address: {value!r}") from None


def in_container(node: str, service: str, *cmd: str) -> tuple[str, ...]:
    """`cmd` in `service`'s container of `node`'s stack. `docker exec` by the name Compose
    gives it (`oc-<service>-1`, the same on every node): `docker compose exec` first loads
    the project, and the freeze is a chain of these. `node` must be a node name."""
    stack, sep, index = node.rpartition("-n")
    if not (sep and stack and index.isascii() and index.isdigit()):
        raise PermanentError(f"not a node name: {node!r}")
    return ("docker", "exec", "-i", container(service), *cmd)


def feed(host: MovableHost, node: str, service: str, script: str, data: str, *args: str,
         what: str, timeout: float = 60) -> str:
    """`sh -c script` (with `args` as $1…) in `service`'s container of `node`, `data` on its
    stdin (secrets never go in argv); its output. A failure or `timeout` is a
    TemporaryError naming `what`, with the command's error."""
    proc = host.exec_stream(node, *in_container(node, service, "sh", "-c", script, "sh", *args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        out, err = proc.communicate(data.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise TemporaryError(f"{node}: {what} took over {timeout:g}s") from None
    if proc.returncode:
        why = (err or b"").decode(errors="replace").strip()[-300:] or f"exit {proc.returncode}"
        raise TemporaryError(f"{node}: {what}: {why}")
    return out.decode(errors="replace")


def sql(host: MovableHost, node: str, statements: str, timeout: float = 60) -> str:
    """Run `statements` as root in `node`'s database; its tab-separated output."""
    return feed(host, node, "db", ROOT_SQL, statements, what="SQL", timeout=timeout)


def binlog_on(host: MovableHost, node: str) -> bool:
    """The database logs GTIDs (databases made before the binary log was switched on do not:
    they move by stop → copy → start)."""
    return sql(host, node, "SELECT @@log_bin;").strip() == "1"


def reads_db_host_file(host: HostDriver, node: str) -> bool:
    """`node`'s WordPress takes its database address from `DB_HOST_FILE` (images made before
    that did not: their nodes are re-pointed by re-creating WordPress)."""
    try:
        host.exec(node, *in_container(node, "wordpress", "grep", "-q", DB_HOST_FILE,
                                  "/etc/wordpress/config-default.php"), timeout=60)
    except TemporaryError:
        return False
    return True


def _gtid(text: str) -> str:
    pos = text.strip()
    if not GTID_POS.match(pos):
        raise TemporaryError(f"unexpected GTID position {pos[:80]!r}")
    return pos


def _drop_replication_users(host: MovableHost, node: str) -> str:
    """SQL dropping every replication user earlier attempts left (from any address)."""
    hosts = sql(host, node, f"SELECT Host FROM mysql.user WHERE User = {sql_string(REPL_USER)};")
    return "".join(f"DROP USER IF EXISTS {sql_string(REPL_USER)}@{sql_string(h)};"
                   for h in hosts.split())


def grant(src: MovableHost, node: str, replica: str, password: str) -> None:
    """Let the new node's address in as the replication user; the old database writable (a
    retry starts over from here). Not binary-logged: this is no data of the site's."""
    if not SECRET.match(password):
        raise PermanentError("the replication password has unexpected characters")
    who = f"{sql_string(REPL_USER)}@{sql_string(_address(replica))}"
    sql(src, node, "SET sql_log_bin=0; SET GLOBAL read_only=0;"
                   + _drop_replication_users(src, node)
                   + f"CREATE USER {who} IDENTIFIED BY {sql_string(password)};"
                   f"GRANT REPLICATION SLAVE ON *.* TO {who};")


def password_sql(user: str, password: str, root_password: str) -> str:
    """Statements that give the application's `user` and root new passwords (a pooled
    node's database becoming its OverCloud's: orchestrator/pool.py). Not binary-logged."""
    for value in (password, root_password):
        if not SECRET.match(value):
            raise PermanentError("a new database password has unexpected characters")
    return ("SET sql_log_bin=0;\n"
            f"ALTER USER {sql_string(user)}@'%' IDENTIFIED BY {sql_string(password)};\n"
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY {sql_string(root_password)};\n"
            "FLUSH PRIVILEGES;\n")


def seed(src: MovableHost, tgt: MovableHost, node: str, timeout: float = 600) -> None:
    """The old database's consistent snapshot into the new one, with its GTID position (the
    new one's own replication state and binary log cleared first: a retried seed starts
    clean)."""
    sql(tgt, node, "STOP SLAVE; RESET SLAVE ALL; RESET MASTER;")
    pipe(src, tgt, node, in_container(node, "db", "sh", "-c", DUMP_SH),
         in_container(node, "db", "sh", "-c", LOAD_SH), f"{node}: seeding the new database",
         timeout)


def start_replica(tgt: MovableHost, node: str, source: str, password: str) -> None:
    if not SECRET.match(password):
        raise PermanentError("the replication password has unexpected characters")
    sql(tgt, node, f"CHANGE MASTER TO MASTER_HOST={sql_string(_address(source))}, "
                   f"MASTER_PORT={DB_PORT}, MASTER_USER={sql_string(REPL_USER)}, "
                   f"MASTER_PASSWORD={sql_string(password)}, MASTER_USE_GTID=slave_pos, "
                   "MASTER_CONNECT_RETRY=1; START SLAVE;")


def replica_state(tgt: MovableHost, node: str) -> tuple[str, str]:
    """How the new database's replication goes: `running`, `connecting` (not reaching the old
    one yet, with the last connection error) or `stopped` (with its error)."""
    out = sql(tgt, node, "SHOW SLAVE STATUS\\G")
    status = dict(line.strip().split(": ", 1) for line in out.splitlines() if ": " in line)
    io, applier = status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")
    if applier != "Yes" or io == "No":
        return "stopped", (status.get("Last_SQL_Error") or status.get("Last_IO_Error")
                           or "replication is not running")[:300]
    if io != "Yes":
        return "connecting", (status.get("Last_IO_Error") or "")[:300]
    return "running", ""


CONNECT_GRACE = 15.0
"""Seconds a replica may fail to reach the old database before the attempt fails (it retries
every second meanwhile: a busy host can be slow to accept)."""


def wait_caught_up(src: MovableHost, tgt: MovableHost, node: str, timeout: float = 120) -> str:
    """Until the new database has applied what the old one had logged when asked; returns
    that position. A replica that stopped, or cannot reach the old database for
    `CONNECT_GRACE` seconds, fails the attempt with its error."""
    start = time.monotonic()
    connecting_since: float | None = None
    while True:
        pos = _gtid(sql(src, node, "SELECT @@gtid_binlog_pos;"))
        got = sql(tgt, node, f"SELECT MASTER_GTID_WAIT({sql_string(pos)}, 2);").strip()
        if got == "0":
            return pos
        now = time.monotonic()
        state, error = replica_state(tgt, node)
        if state == "stopped":
            raise TemporaryError(f"{node}: the new database stopped replicating: {error}")
        if state == "connecting":
            connecting_since = connecting_since if connecting_since is not None else now
            if now - connecting_since > CONNECT_GRACE:
                raise TemporaryError(f"{node}: the new database cannot reach the old one: "
                                     f"{error or 'no answer'}")
        else:
            connecting_since = None
        if now - start > timeout:
            raise TemporaryError(f"{node}: the new database did not catch up in {timeout:g}s")


def promote(src: MovableHost, tgt: MovableHost, node: str, timeout: float = 30) -> str:
    """The write freeze: the old database read-only, the new one caught up to its very last
    write, and then — in the same round trip — no longer a replica. Returns the last GTID
    the old one logged."""
    pos = _gtid(sql(src, node, "SET GLOBAL read_only=1; SELECT @@gtid_binlog_pos;"))
    # one compound statement (the client must not split it at its `;`: another delimiter)
    got = sql(tgt, node, "DELIMITER //\nBEGIN NOT ATOMIC "
                         f"IF MASTER_GTID_WAIT({sql_string(pos)}, {timeout:g}) = 0 THEN "
                         "STOP SLAVE; RESET SLAVE ALL; SELECT 'promoted'; "
                         "ELSE SELECT 'behind'; END IF; END //\n",
              timeout=timeout + 30).strip()
    if got != "promoted":
        state, error = replica_state(tgt, node)
        raise TemporaryError(f"{node}: the new database did not reach {pos} in {timeout:g}s "
                             f"(replication {state}{': ' + error if error else ''})")
    return pos


def thaw(src: MovableHost, node: str) -> None:
    """Undo `grant` and the freeze on the old database (after a failed move)."""
    sql(src, node, "SET sql_log_bin=0; SET GLOBAL read_only=0;"
                   + _drop_replication_users(src, node))


def point_db(host: HostDriver, node: str, address: str) -> None:
    """Send `node`'s WordPress to the database at `address` from its next request on: the
    `.env` first (a re-created container starts with it), then the file WordPress reads."""
    addr = _address(address)
    set_env(host, node, "DB_HOST", addr)
    write_db_host(host, node, addr)


def write_db_host(host: HostDriver, node: str, address: str) -> None:
    """Only the file WordPress reads per request (the `.env` is the caller's business)."""
    addr = _address(address)
    script = f'printf "%s" "$1" > {DB_HOST_FILE}.new && mv {DB_HOST_FILE}.new {DB_HOST_FILE}'
    host.exec(node, *in_container(node, "wordpress", "sh", "-c", script, "sh", f"{addr}:{DB_PORT}"),
              timeout=60)


def point_all(pairs: list[tuple[HostDriver, str]], address: str) -> None:
    """`point_db` on every node at once (the write freeze lasts until the last one)."""
    if not pairs:
        return
    with ThreadPoolExecutor(len(pairs), thread_name_prefix="point-db") as pool:
        for f in [pool.submit(point_db, h, n, address) for h, n in pairs]:
            f.result()


def drain(src: MovableHost, node: str, user: str, seconds: float = DRAIN_SECONDS) -> None:
    """Let the old database finish what its application clients hold: until none is
    connected as `user`, or `seconds` (it stays read-only; its node is deleted next)."""
    deadline = time.monotonic() + seconds
    count = (f"SELECT COUNT(*) FROM information_schema.PROCESSLIST "
             f"WHERE USER = {sql_string(user)};")
    while time.monotonic() < deadline and sql(src, node, count).strip() not in ("", "0"):
        time.sleep(0.1)


def answers(host: MovableHost, node: str) -> bool:
    """The database in `node` takes root's queries (its first start has finished)."""
    try:
        return sql(host, node, "SELECT 1;", timeout=30).strip() == "1"
    except TemporaryError:
        return False
