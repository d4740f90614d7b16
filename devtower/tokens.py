"""API tokens: who is calling, in which role, until when. Only hashes are stored.

A token is `oct_<id>_<secret>`: the id finds the row without scanning, the secret (256 bits
from `secrets`) is what proves possession. The store keeps `sha256(token)` and compares it
with `hmac.compare_digest`; an unknown id costs the same comparison, so timing says nothing
about which ids exist. Tokens are printed once, at creation, and never logged: what the API
logs about a caller is the token's id and owner.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from overcloud.errors import UserError

_TOKEN = re.compile(r"oct_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_OWNER = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,63}")
_SESSION = re.compile(r"ocs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_DUMMY = hashlib.sha256(b"no such token").hexdigest()
SESSION_TTL = 12 * 3600.0
"""A page session lasts at most this long (and never beyond its token's own expiry)."""


class Role(StrEnum):
    """`developer` acts on their own OverClouds, `viewer` only reads them, `operator` all."""

    DEVELOPER = "developer"
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Identity:
    """The caller behind a valid token."""

    token_id: str
    owner: str
    role: Role

    @property
    def operator(self) -> bool:
        return self.role is Role.OPERATOR

    @property
    def can_write(self) -> bool:
        return self.role is not Role.VIEWER


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    owner: str
    role: Role
    created: float
    expires: float | None
    revoked: float | None

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Session:
    """A signed-in page: the cookie's value, its CSRF token (sent back by the page's own
    scripts on every change), who it acts as, and when it ends."""

    cookie: str
    csrf: str
    identity: Identity
    expires: float


def check_owner(owner: str) -> str:
    """An owner is an e-mail-like identity (full match: no trailing newline sneaks in)."""
    if not _OWNER.fullmatch(owner):
        raise UserError(f"owner must look like an e-mail address, e.g. dev@example.com "
                        f"(got {owner[:80]!r})")
    return owner


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """SQLite table of token hashes; safe to share between threads and processes (WAL)."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._now = now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL,"
            " owner TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL, expires REAL,"
            " revoked REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, hash TEXT NOT NULL,"
            " token_id TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL,"
            " expires REAL NOT NULL, ended REAL)"
        )
        path.chmod(0o600)

    def create(self, owner: str, role: Role, ttl: float | None = None) -> tuple[str, TokenInfo]:
        """A new token (returned once, in clear) and what is stored about it."""
        check_owner(owner)
        if ttl is not None and ttl <= 0:
            raise UserError("a token's lifetime must be positive")
        token_id = secrets.token_hex(6)
        token = f"oct_{token_id}_{secrets.token_urlsafe(32)}"
        now = self._now()
        expires = now + ttl if ttl is not None else None
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens (id, hash, owner, role, created, expires) VALUES (?,?,?,?,?,?)",
                (token_id, digest(token), owner, role.value, now, expires),
            )
        return token, TokenInfo(token_id, owner, role, now, expires, None)

    def verify(self, token: str) -> Identity | None:
        """The identity of a valid (well-formed, known, unexpired, unrevoked) token, else None."""
        m = _TOKEN.fullmatch(token) if len(token) < 100 else None
        row = None
        if m is not None:
            with self._lock:
                row = self._db.execute(
                    "SELECT hash, owner, role, expires, revoked FROM tokens WHERE id = ?",
                    (m[1],)).fetchone()
        expected = row[0] if row is not None else _DUMMY
        same = hmac.compare_digest(digest(token), expected)
        if row is None or not same:
            return None
        _, owner, role, expires, revoked = row
        if revoked is not None or (expires is not None and self._now() >= expires):
            return None
        return Identity(m[1] if m else "", owner, Role(role))

    def start_session(self, token: str) -> Session | None:
        """A page session for a valid token (None otherwise). The browser keeps only the
        session's own secret (an HttpOnly cookie), never the API token it was opened with."""
        ident = self.verify(token)
        if ident is None:
            return None
        with self._lock:
            expires = self._db.execute("SELECT expires FROM tokens WHERE id = ?",
                                       (ident.token_id,)).fetchone()[0]
        now = self._now()
        until = now + SESSION_TTL if expires is None else min(expires, now + SESSION_TTL)
        sid = secrets.token_hex(8)
        cookie = f"ocs_{sid}_{secrets.token_urlsafe(32)}"
        csrf = secrets.token_urlsafe(32)
        with self._lock:
            # sessions a day past their end are of no use to anyone: they go as new ones come
            self._db.execute("DELETE FROM sessions WHERE expires < ? OR ended < ?",
                             (now - 86400, now - 86400))
            self._db.execute(
                "INSERT INTO sessions (id, hash, token_id, csrf, created, expires)"
                " VALUES (?,?,?,?,?,?)", (sid, digest(cookie), ident.token_id, csrf, now, until))
        return Session(cookie, csrf, ident, until)

    def session(self, cookie: str) -> Session | None:
        """The live session behind a cookie: its token must still be valid as well (revoking
        or expiring a token ends every page session opened with it)."""
        m = _SESSION.fullmatch(cookie) if len(cookie) < 100 else None
        row = None
        if m is not None:
            with self._lock:
                row = self._db.execute(
                    "SELECT s.hash, s.csrf, s.expires, s.ended, t.id, t.owner, t.role,"
                    " t.expires, t.revoked FROM sessions s JOIN tokens t ON t.id = s.token_id"
                    " WHERE s.id = ?", (m[1],)).fetchone()
        same = hmac.compare_digest(digest(cookie), row[0] if row is not None else _DUMMY)
        if row is None or not same:
            return None
        _, csrf, until, ended, token_id, owner, role, t_expires, revoked = row
        now = self._now()
        if ended is not None or revoked is not None or now >= until or (
                t_expires is not None and now >= t_expires):
            return None
        return Session(cookie, csrf, Identity(token_id, owner, Role(role)), until)

    def end_session(self, cookie: str) -> bool:
        """Sign out: the cookie no longer opens anything, even if a copy of it survives."""
        m = _SESSION.fullmatch(cookie) if len(cookie) < 100 else None
        if m is None or self.session(cookie) is None:
            return False
        with self._lock:
            self._db.execute("UPDATE sessions SET ended = ? WHERE id = ? AND ended IS NULL",
                             (self._now(), m[1]))
        return True

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, role, created, expires, revoked FROM tokens ORDER BY created"
            ).fetchall()
        return [TokenInfo(r[0], r[1], Role(r[2]), r[3], r[4], r[5]) for r in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke by id; False when there is no such (unrevoked) token."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (self._now(), token_id))
        return cur.rowcount == 1

    def close(self) -> None:
        self._db.close()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL = re.compile(r"([1-9][0-9]{0,5})([smhdw])")


def parse_ttl(text: str) -> float:
    """`30d`, `12h`, `90m`, `2w` → seconds (a bounded, full-match format)."""
    m = _TTL.fullmatch(text)
    if m is None:
        raise UserError(f"expiry must look like 30d, 12h, 90m or 2w (got {text[:40]!r})")
    return int(m[1]) * _UNITS[m[2]]
