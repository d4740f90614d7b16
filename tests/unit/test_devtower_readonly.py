"""The developer's InfluxQL: one read statement on their own DevLake, or a clear refusal."""

from __future__ import annotations

import pytest

from devtower.readonly import QueryRefused, check_read_query

DB = "devlake_alpha"

ALLOWED = [
    'SELECT * FROM "resource_instance" WHERE time > now() - 5m',
    'SELECT mean("cpu_percent") FROM resource_instance GROUP BY time(10s), "node" fill(none)',
    "SELECT a / b FROM m",
    'SELECT * FROM "devlake_alpha".."m"',
    "SELECT * FROM devlake_alpha.autogen.m",
    "SELECT * FROM /resource_.*/ LIMIT 1;",
    "SHOW MEASUREMENTS",
    'SHOW TAG VALUES FROM "resource_instance" WITH KEY = "node"',
    "SHOW FIELD KEYS ON devlake_alpha",
    "SELECT * FROM m WHERE msg = 'a; DROP DATABASE x' -- a comment ; here",
]

HOSTILE = [
    "SELECT * FROM m; DROP DATABASE devlake_beta",
    "DROP DATABASE devlake_beta",
    'SELECT * INTO "devlake_beta".."m" FROM m',
    "SELECT * INTO m2 FROM m",
    'SELECT * FROM "devlake_beta".."resource_instance"',
    "SELECT * FROM devlake_beta.autogen.resource_instance",
    'SELECT * FROM (SELECT * FROM "devlake_beta".."m")',
    "SHOW DATABASES",
    "SHOW MEASUREMENTS ON devlake_beta",
    "SHOW MEASUREMENTS ON /.*/",
    "SHOW USERS",
    "SHOW GRANTS FOR ro_alpha",
    "SELECT * FROM m /* hidden */ ; DROP DATABASE devlake_beta",
    "SELECT * FROM m -- comment\n; DROP DATABASE devlake_beta",
    "SELECT * FROM m /* unterminated ; DROP DATABASE x",
    "CREATE USER evil WITH PASSWORD 'x' WITH ALL PRIVILEGES",
    "GRANT ALL ON devlake_beta TO ro_alpha",
    "DELETE FROM m",
    "KILL QUERY 1",
    "ALTER RETENTION POLICY autogen ON devlake_alpha DURATION 1h",
    "SELECT * FROM m WHERE a = 'unterminated",
    "SELECT " + "x," * 3000 + "y FROM m",
    "",
    "   ",
]


@pytest.mark.parametrize("q", ALLOWED)
def test_single_reads_of_the_own_devlake_pass(q: str) -> None:
    assert check_read_query(q, DB) == q


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_are_refused_with_a_reason(q: str) -> None:
    with pytest.raises(QueryRefused) as exc:
        check_read_query(q, DB)
    assert str(exc.value) and len(str(exc.value)) < 300


def test_a_second_statement_is_named_as_such() -> None:
    with pytest.raises(QueryRefused, match="only one statement"):
        check_read_query("SELECT * FROM m; DROP DATABASE x", DB)
