"""No module builds InfluxQL from text except `overcloud/influxql.py` (issue 9).

An AST scan of every package: an f-string, `%`, `.format()`, `+` or `.join()` whose literal
text looks like InfluxQL (a statement keyword, or a clause such as ` WHERE `, ` AND `,
` FROM `) is a finding, and so is `QL(...)` or `compose(...)` given anything but a constant
(a literal, or a name annotated `LiteralString`). Constant query text and queries built with
`overcloud.influxql` pass. A new f-string query anywhere fails this test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("overcloud", "devlake", "dashboards", "orchestrator", "agents", "collectors", "bench",
            "devtower")
ESCAPING_MODULE = ROOT / "overcloud" / "influxql.py"
#: SQL for SQLite, not InfluxQL: our local state stores (none of them may import anything that
#: talks to InfluxDB, `test_sqlite_modules_stay_away_from_influxdb` checks)
SQLITE_MODULES = {"orchestrator/registry.py", "orchestrator/store.py", "agents/spool.py",
                  "devlake/alerts/outbox.py", "devtower/tokens.py", "devtower/journal.py",
                  "devtower/hooks.py"}
#: SQL for MariaDB (an OverCloud's database, when it moves: literals by `dbmove.sql_string`),
#: not InfluxQL; the same rule: nothing that talks to InfluxDB
MARIADB_MODULES = {"orchestrator/dbmove.py", "orchestrator/writeprobe.py"}

INFLUXQL = re.compile(
    # a statement
    r"(?:^|[\s(])(?:SELECT|SHOW|CREATE|DROP|ALTER|DELETE|GRANT|REVOKE|KILL)\s"
    # or a clause, followed by a name, a value or a slot
    r"|(?:^|\s)(?:FROM|WHERE|AND|OR|BY|ON|INTO|KEY\s*=|=~|DURATION|LIMIT)\s*(?:\"|'|\{\}|\$|time\b|/|$)"
)


def _literal(node: ast.AST) -> str | None:
    """The constant text of a str literal or an f-string (placeholders as `{}`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                       else "{}" for v in node.values)
    return None


def _literal_string_names(tree: ast.Module) -> set[str]:
    """Names annotated `LiteralString` (parameters and module constants): constants by type."""
    names = set()
    for node in ast.walk(tree):
        ann = None
        if isinstance(node, ast.arg):
            ann, name = node.annotation, node.arg
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann, name = node.annotation, node.target.id
        if ann is not None and ast.unparse(ann) in ("LiteralString", "typing.LiteralString"):
            names.add(name)
    return names


def findings(path: Path, rel: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    constants = _literal_string_names(tree)
    sqlite = rel in SQLITE_MODULES

    def looks(node: ast.AST) -> bool:
        text = _literal(node)
        return text is not None and bool(INFLUXQL.search(text))

    def constant(node: ast.AST) -> bool:
        return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or (
            isinstance(node, ast.Name) and node.id in constants)

    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.JoinedStr) and any(
                isinstance(v, ast.FormattedValue) for v in node.values) and looks(node):
            if not (sqlite and "?" in (_literal(node) or "")):
                yield f"{where}: f-string builds InfluxQL: {ast.unparse(node)[:90]}"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod) and (
                looks(node.left) or (isinstance(node.op, ast.Add) and looks(node.right))):
            yield f"{where}: {'+' if isinstance(node.op, ast.Add) else '%'} builds InfluxQL: " \
                  f"{ast.unparse(node)[:90]}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("format", "join") and looks(node.func.value):
            yield f"{where}: .{node.func.attr}() builds InfluxQL: {ast.unparse(node)[:90]}"
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else (
                f.attr if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                and f.value.id == "influxql" else "")
            if name in ("QL", "compose") and node.args and not constant(node.args[0]):
                yield f"{where}: {name}() needs a constant template: {ast.unparse(node)[:90]}"


def scan() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if path != ESCAPING_MODULE and rel not in SQLITE_MODULES | MARIADB_MODULES:
                out += findings(path, rel)
    return out


def test_sqlite_modules_stay_away_from_influxdb() -> None:
    for rel in SQLITE_MODULES | MARIADB_MODULES:
        text = (ROOT / rel).read_text()
        assert not re.search(r"devlake\.sinks|overcloud\.influxql|InfluxQL", text), rel


def test_no_module_builds_influxql_from_text() -> None:
    found = scan()
    assert not found, "build InfluxQL with overcloud.influxql, not by formatting text:\n" + \
        "\n".join(found)


def test_the_scan_finds_what_it_must(tmp_path: Path) -> None:
    """Every way the scan knows of building a query from text, in a file of its own."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(db, m, v, w):\n"
        "    a = f'CREATE DATABASE \"{db}\"'\n"
        "    b = 'SELECT * FROM \"' + m + '\"'\n"
        "    c = 'DROP DATABASE \"%s\"' % db\n"
        "    d = 'SHOW TAG VALUES FROM {}'.format(m)\n"
        "    e = ' AND '.join(w)\n"
        "    g = \"\".join(f\" AND \\\"{k}\\\" = '{x}'\" for k, x in v)\n"
        "    h = QL(m)\n"
        "    i = compose(m)\n"
        "    ok = 'SELECT count(\"v\") FROM \"m\"'\n"
        "    fine = f'{db} has {len(m)} points'\n"
    )
    found = list(findings(bad, "bad.py"))
    assert sorted({int(f.split(":")[1]) for f in found}) == [2, 3, 4, 5, 6, 7, 8, 9], found
