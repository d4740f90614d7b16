"""Tokens: printed once, only hashes stored, expiry and revocation enforced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from devtower.tokens import Role, TokenStore, parse_ttl
from overcloud.errors import UserError


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_token_verifies_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.sqlite")
    token, _info = store.create("dev@example.com", Role.DEVELOPER)
    ident = store.verify(token)
    assert ident is not None and ident.owner == "dev@example.com" and ident.role is Role.DEVELOPER
    raw = (tmp_path / "t.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("t.sqlite-*"))
    secret = token.split("_", 2)[2]
    assert secret.encode() not in raw and token.encode() not in raw
    assert (tmp_path / "t.sqlite").stat().st_mode & 0o077 == 0
    rows = sqlite3.connect(tmp_path / "t.sqlite").execute("SELECT hash FROM tokens").fetchall()
    assert len(rows[0][0]) == 64  # a sha256 hex digest, not the token


@pytest.mark.parametrize("bad", ["", "oct_", "Bearer x", "oct_000000000000_" + "A" * 43,
                                 "x" * 10_000, "oct_zzzzzzzzzzzz_" + "A" * 43])
def test_malformed_or_unknown_tokens_are_refused(tmp_path: Path, bad: str) -> None:
    store = TokenStore(tmp_path / "t.sqlite")
    store.create("dev@example.com", Role.DEVELOPER)
    assert store.verify(bad) is None


def test_a_changed_secret_with_a_known_id_is_refused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.sqlite")
    token, _ = store.create("dev@example.com", Role.DEVELOPER)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.verify(forged) is None


def test_expiry_and_revocation(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path / "t.sqlite", now=clock)
    token, _info = store.create("dev@example.com", Role.VIEWER, ttl=60)
    assert store.verify(token) is not None
    clock.t += 61
    assert store.verify(token) is None
    assert store.list()[0].state(clock.t) == "expired"
    other, info2 = store.create("ops@example.com", Role.OPERATOR)
    assert store.revoke(info2.token_id) and not store.revoke(info2.token_id)
    assert store.verify(other) is None


def test_page_sessions_end_with_their_token_their_lifetime_or_sign_out(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path / "t.sqlite", now=clock)
    token, info = store.create("dev@example.com", Role.DEVELOPER, ttl=3600)
    assert store.start_session("oct_000000000000_" + "A" * 43) is None
    s1 = store.start_session(token)
    assert s1 is not None and s1.identity.owner == "dev@example.com"
    assert s1.expires == clock.t + 3600  # never beyond the token's own expiry
    assert token not in s1.cookie and s1.csrf not in s1.cookie
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.sqlite*"))
    assert s1.cookie.split("_", 2)[2].encode() not in raw  # only its hash is stored
    assert store.session(s1.cookie) == s1
    assert store.session(s1.cookie[:-1] + ("A" if s1.cookie[-1] != "A" else "B")) is None
    s2 = store.start_session(token)
    assert s2 is not None and store.end_session(s2.cookie)
    assert store.session(s2.cookie) is None and not store.end_session(s2.cookie)
    assert store.session(s1.cookie) is not None  # signing out of one page ends only that one
    assert store.revoke(info.token_id)
    assert store.session(s1.cookie) is None  # a revoked token ends its sessions
    long, _ = store.create("dev@example.com", Role.VIEWER)
    s3 = store.start_session(long)
    assert s3 is not None and s3.expires == clock.t + 12 * 3600
    clock.t += 12 * 3600
    assert store.session(s3.cookie) is None


@pytest.mark.parametrize("owner", ["nobody", "a@b", "dev@example.com\n", "x" * 300 + "@e.com"])
def test_owner_must_be_an_address(tmp_path: Path, owner: str) -> None:
    with pytest.raises(UserError):
        TokenStore(tmp_path / "t.sqlite").create(owner, Role.DEVELOPER)


def test_ttl_format() -> None:
    assert parse_ttl("30d") == 30 * 86400 and parse_ttl("90m") == 5400
    for bad in ("30", "0d", "-1d", "1y", "30d\n", "9" * 40 + "d"):
        with pytest.raises(UserError):
            parse_ttl(bad)
