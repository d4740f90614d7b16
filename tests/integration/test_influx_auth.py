"""Tenancy down in the database: the real InfluxDB runs with authentication, the DevLake's
account only writes, and each OverCloud's read-only account reads its own DevLake only."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devlake.sinks import InfluxQL, InfluxV1Sink, client
from devtower.services.catalog import _influx_accounts
from overcloud import influxauth, influxql
from overcloud.errors import PermanentError
from overcloud.influxql import compose
from overcloud.settings import Settings
from tests.conftest import Env


@pytest.fixture
def two(services: Env) -> Iterator[tuple[Settings, str, str]]:
    s = services.settings()
    tag = uuid.uuid4().hex[:8]
    a, b = f"auth-a{tag}", f"auth-b{tag}"
    sink = InfluxV1Sink(s.influx)
    for name in (a, b):
        sink.ensure_database(s.influx.database_prefix + name)
    try:
        yield s, a, b
    finally:
        for name in (a, b):
            sink.drop_database(s.influx.database_prefix + name)
            sink.drop_reader(influxauth.reader_name(name))
        sink.close()


def _q(s: Settings, who: str | influxauth.Account, q: str, db: str = "") -> httpx.Response:
    with client(s.influx, 10, who) as http:
        return http.post("/query", params={"q": q, "db": db})


def _write(s: Settings, who: str | influxauth.Account, db: str) -> httpx.Response:
    with client(s.influx, 10, who) as http:
        return http.post("/write", params={"db": db},
                         content=f"m,node=n1 v=1 {time.time_ns()}".encode())


def test_no_credentials_no_answer(services: Env) -> None:
    s = services.settings()
    assert influxauth.account(s.influx.credentials, "admin") is not None
    r = httpx.post(f"{s.influx.base_url}/query", params={"q": "SHOW DATABASES"}, timeout=10)
    assert r.status_code == 401
    r = httpx.post(f"{s.influx.base_url}/write", params={"db": s.influx.default_database},
                   content=b"m v=1 1", timeout=10)
    assert r.status_code == 401
    wrong = influxauth.Account("overcloud_admin", "not-the-password")
    assert _q(s, wrong, "SHOW DATABASES").status_code == 401


def test_the_devlake_account_writes_and_nothing_else(two: tuple[Settings, str, str]) -> None:
    s, a, _ = two
    db = s.influx.database_prefix + a
    assert _write(s, "devlake", db).status_code == 204
    listed = InfluxQL(s.influx, who="devlake").databases()
    assert db in listed and s.influx.default_database in listed and "_internal" not in listed
    for q in (compose("SELECT * FROM {}", influxql.ident("m")), influxql.drop_database(db),
              "SHOW USERS", influxql.create_database("devlake_mine")):
        r = _q(s, "devlake", q, db)
        assert "not authorized" in r.text or r.status_code in (401, 403), (q, r.text)
    # a database the admin made without granting it: the DevLake cannot write there
    raw = "devlake_nogrant" + uuid.uuid4().hex[:6]
    ql = InfluxQL(s.influx)
    try:
        ql.query(influxql.create_database(raw), post=True)
        r = _write(s, "devlake", raw)
        assert r.status_code == 403 and "not authorized" in r.text, r.text
        with pytest.raises(PermanentError, match="may not create"):
            InfluxV1Sink(s.influx, who="devlake").ensure_database(raw)
    finally:
        ql.query(influxql.drop_database(raw), post=True)
        ql.close()


def test_a_reader_reads_its_own_devlake_only(two: tuple[Settings, str, str]) -> None:
    s, a, b = two
    dba, dbb = s.influx.database_prefix + a, s.influx.database_prefix + b
    for db in (dba, dbb):
        assert _write(s, "devlake", db).status_code == 204
    sink = InfluxV1Sink(s.influx)
    reader = influxauth.reader(s.influx.credentials, a, "req-1")
    assert reader is not None and reader.username == f"ro_{a}"
    assert reader.password not in repr(reader)
    sink.ensure_reader(dba, reader)
    sink.ensure_reader(dba, reader)  # idempotent
    own = _q(s, reader, 'SELECT "v" FROM "m"', dba)
    assert own.status_code == 200 and '"values"' in own.text, own.text
    for q, db in (('SELECT "v" FROM "m"', dbb), (f'SELECT "v" FROM "{dbb}".."m"', dba),
                  (f'SHOW MEASUREMENTS ON "{dbb}"', dba), ("SHOW USERS", dba),
                  (f'DROP DATABASE "{dba}"', dba), ('DROP MEASUREMENT "m"', dba),
                  ('DELETE FROM "m"', dba), (f'SELECT * INTO "{dba}".."x" FROM "m"', dba),
                  (f"GRANT ALL PRIVILEGES TO \"{reader.username}\"", dba),
                  (f"CREATE USER \"x{a}\" WITH PASSWORD 'p' WITH ALL PRIVILEGES", dba)):
        r = _q(s, reader, q, db)
        assert "not authorized" in r.text, (q, r.text)
    assert _write(s, reader, dba).status_code == 403
    shown = InfluxQL(s.influx, who=reader).databases()
    assert shown == [dba]
    # the same name again (deleted, re-created by someone else): the old password is dead
    again = influxauth.reader(s.influx.credentials, a, "req-2")
    assert again is not None and again.password != reader.password
    sink.ensure_reader(dba, again)
    assert _q(s, reader, "SHOW MEASUREMENTS", dba).status_code == 401
    assert _q(s, again, "SHOW MEASUREMENTS", dba).status_code == 200
    sink.drop_reader(again.username)
    sink.drop_reader(again.username)  # idempotent
    assert _q(s, again, "SHOW MEASUREMENTS", dba).status_code == 401
    sink.close()


def test_services_up_again_keeps_the_accounts(services: Env) -> None:
    s = services.settings()
    before = influxauth.load_accounts(Path(s.influx.credentials))
    _influx_accounts(s)  # what every later `services up influxdb` runs
    after = influxauth.load_accounts(Path(s.influx.credentials))
    assert before == after
    assert _q(s, "admin", "SHOW USERS").status_code == 200
    assert _write(s, "devlake", s.influx.default_database).status_code == 204


def test_the_devtower_reads_as_the_overclouds_own_user(two: tuple[Settings, str, str],
                                                      tmp_path: Path) -> None:
    """`/query` runs as the OverCloud's read-only user: even a statement that got past the
    DevTower's own checks (called here below them) reads nothing of B's and changes nothing."""
    from devtower.devlake import InfluxReader
    from orchestrator.registry import Registry
    from overcloud.errors import UserError

    s, a, b = two
    dba, dbb = s.influx.database_prefix + a, s.influx.database_prefix + b
    registry = Registry(dataclasses.replace(s, state_dir=tmp_path))
    sink = InfluxV1Sink(s.influx)
    for name, db in ((a, dba), (b, dbb)):
        registry.admit(name, f"{name}@example.com", {}, f"req-{name}")
        acct = influxauth.reader(s.influx.credentials, name, f"req-{name}")
        assert acct is not None
        sink.ensure_reader(db, acct)  # what the orchestrator's devlake task does
        assert _write(s, "devlake", db).status_code == 204
    sink.close()
    reader = InfluxReader(s, registry)
    try:
        assert reader.query(a, 'SELECT "v" FROM "m"')[0]["values"]
        creds = reader.credentials(a)
        assert creds["username"] == f"ro_{a}" and creds["database"] == dba
        assert _q(s, influxauth.Account(creds["username"], creds["password"]),
                  "SHOW MEASUREMENTS", dba).status_code == 200
        below = reader._run  # past check_read_query: only InfluxDB's own lock is left
        for q in (f'SELECT "v" FROM "{dbb}".."m"', f'DROP DATABASE "{dbb}"', "SHOW USERS",
                  f'SELECT * INTO "{dbb}".."x" FROM "m"', 'DROP MEASUREMENT "m"',
                  f"SHOW MEASUREMENTS ON \"{dbb}\""):
            with pytest.raises(UserError, match="not authorized"):
                below(a, q)
        assert InfluxQL(s.influx).query(compose("SELECT count(*) FROM {}",
                                                influxql.ident("m")), dbb)
    finally:
        reader.close()


def _retention(s: Settings, db: str) -> str:
    rows = InfluxQL(s.influx).query(influxql.show_retention_policies(db))[0]
    cols = rows["columns"]
    return next(str(r[cols.index("duration")]) for r in rows["values"]
                if r[cols.index("default")])


def test_an_overclouds_retention_is_its_own_and_survives_a_devlake_restart(
        services: Env) -> None:
    """The request's `devlake.retention` is the DevLake's (not the settings' default); a
    DevLake process that ensures the database again (a restart) keeps it; an update changes
    it in place with the data kept."""
    s = services.settings()
    db = f"{s.influx.database_prefix}ret{uuid.uuid4().hex[:8]}"
    admin = InfluxV1Sink(s.influx)
    try:
        admin.ensure_database(db, "12h")
        assert _retention(s, db) == "12h0m0s"
        admin.write(db, f"m,node=n1 v=1 {time.time_ns()}".encode())
        admin.ensure_database(db)  # what a (re)started DevLake process does
        assert _retention(s, db) == "12h0m0s"
        admin.set_retention(db, "90d")
        assert _retention(s, db) == "2160h0m0s"
        assert InfluxQL(s.influx).query(compose("SELECT count(v) FROM {}", influxql.ident("m")),
                                        db)[0]["values"][0][1] == 1
    finally:
        admin.drop_database(db)
        admin.close()
