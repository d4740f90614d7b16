"""The backups kept under the state dir: listing, retention by count, ids and names checked
before any path is made from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.backup import Backup, backup_dir, find_backup, list_backups, new_id, prune
from overcloud.errors import PermanentError
from overcloud.settings import Settings, load_settings


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_CONFIG": ""})


def _made(s: Settings, name: str, at: float, rid: str) -> Backup:
    b = Backup(new_id(rid, at), name, at, 10, "0" * 64, f"{name}-n1", "lxd1", "req-1")
    folder = backup_dir(s, name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{b.id}.sql.gz").write_bytes(b"x" * 10)
    (folder / f"{b.id}.json").write_text(json.dumps(b.to_dict()))
    return b


def test_ids_carry_the_time_and_the_request() -> None:
    assert new_id("4f1c2a99", 1796018462.0) == "20261130T060102Z-4f1c2a"


def test_prune_keeps_the_newest_and_unlists_before_deleting(s: Settings) -> None:
    made = [_made(s, "blog", 1000.0 + i, f"{i:06x}aa") for i in range(5)]
    (backup_dir(s, "blog") / "junk.json").write_text("{not json")  # half-written: not listed
    (backup_dir(s, "blog") / "x.sql.gz.part").write_bytes(b"partial")
    assert [b.id for b in list_backups(s, "blog")] == [b.id for b in made]
    assert prune(s, "blog", 2) == [b.id for b in made[:3]]
    assert [b.id for b in list_backups(s, "blog")] == [b.id for b in made[3:]]
    assert sorted(p.name for p in backup_dir(s, "blog").glob("*.sql.gz")) == sorted(
        f"{b.id}.sql.gz" for b in made[3:])
    assert prune(s, "blog", 2) == []


def test_another_overclouds_backups_are_not_its_own(s: Settings) -> None:
    b = _made(s, "blog", 1000.0, "abcdef00")
    assert find_backup(s, "blog", b.id) == b
    with pytest.raises(PermanentError, match="has no backup"):
        find_backup(s, "shop", b.id)
    assert find_backup(s, "blog", b.id, "req-1") == b
    # a new OverCloud of the same name (after a delete) may be another developer's
    with pytest.raises(PermanentError, match="earlier OverCloud named blog"):
        find_backup(s, "blog", b.id, "req-2")


@pytest.mark.parametrize("bad", ["../blog/x", "20261130T060102Z-4f1c2a\n", "*", ""])
def test_a_backup_id_is_checked_before_it_names_a_file(s: Settings, bad: str) -> None:
    with pytest.raises(PermanentError, match="not a backup id"):
        find_backup(s, "blog", bad)


@pytest.mark.parametrize("bad", ["../etc", "blog/../../x", "Blog", "blog\n", "."])
def test_an_overcloud_name_is_checked_before_it_names_a_directory(s: Settings, bad: str) -> None:
    with pytest.raises(PermanentError, match="not an OverCloud name"):
        backup_dir(s, bad)


def test_sql_text_is_quoted_by_one_function_and_the_rebase_refuses_odd_input() -> None:
    import pytest

    from orchestrator.backup import rebase_sql, sql_string
    from overcloud.errors import PermanentError

    assert sql_string("it's") == "'it''s'"
    assert sql_string("a\\\\'; DROP DATABASE x; -- ") == "'a\\\\\\\\''; DROP DATABASE x; -- '"
    sql = rebase_sql("wordpress", "http://127.0.0.1:20123/")
    assert "SET @u := 'http://127.0.0.1:20123';" in sql and sql.startswith("USE `wordpress`;")
    for db, url in (("word`press", "http://127.0.0.1:1/"), ("wordpress", "http://x/'; DROP"),
                    ("wordpress", "javascript:alert(1)")):
        with pytest.raises(PermanentError):
            rebase_sql(db, url)


def test_a_clone_gets_its_own_name_and_a_free_port() -> None:
    from devtower.cli.backup import clone_spec

    spec = {"name": "blog", "owner": "a@example.com", "saas": {"expose": {"port": 8080}}}
    out = clone_spec(spec, "blog-stg")
    assert out["name"] == "blog-stg" and out["saas"]["expose"]["port"] == "auto"
    assert spec["name"] == "blog" and spec["saas"]["expose"]["port"] == 8080  # type: ignore[index]
