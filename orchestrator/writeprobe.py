"""What a writing user sees while a database moves: the write probe.

The downtime probe (orchestrator/downtime.py) reads the page; a database move must also
lose no write it acknowledged. This probe writes the way WordPress does, from inside a
WordPress container of the OverCloud: each write is one PHP request's worth — read the
database address as WordPress reads it (`oc_db_host()`, the switch file or the environment),
connect, `INSERT` the next number into `oc_writes` (under this probe's own run token, so
probes never collide), disconnect — about every 20 ms. A write is
**acknowledged** when its `INSERT` returned success; failed writes (the freeze, a stopped
database) are counted apart, as a user would see an error and retry.

After the move `lost` compares the acknowledged numbers with the rows the database holds:
every acknowledged write must be there. Used by the migration bench and its tests. The
writer runs in the container (`docker exec`): a move that re-creates WordPress (stop → copy
→ start does) ends it there, and only the writes until then count.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from types import TracebackType

from orchestrator import dbmove
from orchestrator.hosts import MovableHost

TABLE = "oc_writes"
WRITER_PHP = """<?php
require '/etc/wordpress/config-default.php';
mysqli_report(MYSQLI_REPORT_OFF);
$stop = $argv[1];
$until = microtime(true) + (float)$argv[2];
$run = $argv[3];
if (!preg_match('/^[0-9a-f]{12}$/', $run)) { exit("bad run token\n"); }
$i = 0;
while (!file_exists($stop) && microtime(true) < $until) {
    $i++;
    $hp = explode(':', oc_db_host(), 2);
    $m = @mysqli_connect($hp[0], DB_USER, DB_PASSWORD, DB_NAME, (int)($hp[1] ?? 3306));
    if ($m && @mysqli_query($m, "INSERT INTO oc_writes (run, id) VALUES ('$run', $i)")) {
        echo "ok $i\\n";
    } else {
        $why = $m ? mysqli_error($m) : mysqli_connect_error();
        echo "no $i " . str_replace("\\n", " ", (string)$why) . "\\n";
    }
    if ($m) { mysqli_close($m); }
    usleep(20000);
}
echo "end $i\\n";
"""


@dataclass
class WriteProbe:
    """Writes from WordPress node `web` (on `host`) while the `with` block runs."""

    host: MovableHost
    web: str
    longest: float = 1800.0
    """the writer stops by itself after this many seconds (a bench that died)"""
    acked: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    run: str = field(default_factory=lambda: secrets.token_hex(6))
    _stop: str = field(default_factory=lambda: f"/tmp/oc-write-stop-{secrets.token_hex(6)}")
    _proc: subprocess.Popen[bytes] | None = None
    _reader: threading.Thread | None = None

    @staticmethod
    def prepare(db_host: MovableHost, db_node: str) -> None:
        """The probes' table in the OverCloud's database (as root, on its DB node)."""
        dbmove.sql(db_host, db_node, f"USE {dbmove.sql_name(_db_name(db_host, db_node))};"
                                     f"CREATE TABLE IF NOT EXISTS {TABLE} (run CHAR(12) NOT NULL,"
                                     " id INT NOT NULL, PRIMARY KEY (run, id));")

    def __enter__(self) -> WriteProbe:
        self._proc = self.host.exec_stream(
            self.web, *dbmove.in_container(self.web, "wordpress", "php", "--", self._stop,
                                           str(self.longest), self.run),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdin is not None
        self._proc.stdin.write(WRITER_PHP.encode())
        self._proc.stdin.close()
        self._reader = threading.Thread(target=self._read, daemon=True, name="write-probe")
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            word, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if word == "ok":
                self.acked.append(int(rest))
            elif word == "no":
                self.failed.append(rest)

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._proc is not None and self._reader is not None
        try:
            self.host.exec(self.web, *dbmove.in_container(self.web, "wordpress", "touch",
                                                          self._stop), timeout=60)
            self._proc.wait(60)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(10)
            self._reader.join(10)

    def lost(self, db_host: MovableHost, db_node: str) -> list[int]:
        """Acknowledged writes the database (now on `db_node`) does not hold."""
        rows = dbmove.sql(db_host, db_node,
                          f"SELECT id FROM {dbmove.sql_name(_db_name(db_host, db_node))}.{TABLE} "
                          f"WHERE run = {dbmove.sql_string(self.run)};")
        held = {int(v) for v in rows.split()}
        return sorted(set(self.acked) - held)


def _db_name(host: MovableHost, node: str) -> str:
    name = dbmove.sql(host, node, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                                  "WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', "
                                  "'performance_schema', 'sys');").split()
    if len(name) != 1 or not name[0].replace("_", "").isalnum():
        raise RuntimeError(f"expected the one database of the OverCloud, found {name}")
    return name[0]
