"""Where DevLake writes: the `MetricSink` interface and its two InfluxDB dialects.

- `InfluxV1Sink`: InfluxDB 1.x HTTP API (`/write`, `/query`); also InfluxDB 2.x/3.x through
  their v1-compatibility endpoints.
- `InfluxV2Sink`: the `/api/v2/write` API through `influxdb-client` (InfluxDB 2.x/3.x; on our
  machines exercised against VictoriaMetrics, which accepts that API).

Errors follow one rule: `TemporaryError` means "nothing or not all was stored, retry the same
batch later" (server down, 5xx); `PermanentError` means "retrying cannot help". Its
subclass `PointsRefused` says the server refused points of the write (a field type conflict,
a point beyond the retention policy, ...) while it may have stored the others: the caller
finds the refused ones by writing parts again (writes are idempotent) and dead-letters only
those. `DatabaseMissing`: the database does not exist (never created, or dropped).

Every statement sent to `/query` is built by `overcloud.influxql` (names validated and
quoted), never by formatting text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from overcloud import influxauth, influxql
from overcloud.errors import PermanentError, TemporaryError
from overcloud.influxql import (
    QL,
    alter_retention_policy,
    create_database,
    create_retention_policy,
    drop_database,
)
from overcloud.settings import InfluxSettings

log = logging.getLogger(__name__)

SHOW_DATABASES = QL("SHOW DATABASES")


class PointsRefused(PermanentError):
    """The server refused points of one write and said why (`reason`).

    `all_refused`: it stored none of them (every line failed to parse); `dropped`: how many it
    says it dropped, when it says (`partial write: ... dropped=N`). Anything less certain
    means some points may have been stored and the rest must be found by writing parts.
    """

    def __init__(self, reason: str, *, all_refused: bool = False, dropped: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.all_refused = all_refused
        self.dropped = dropped


class DatabaseMissing(PermanentError):
    """The database of a write does not exist (dropped, e.g. by `overcloud delete`)."""


class MetricSink(Protocol):
    def ensure_database(self, name: str, retention: str | None = None) -> None:
        """Create the database (bucket) with its retention policy if it does not exist.

        `retention` (an OverCloud's `devlake.retention`) is also set on a database that
        exists; without it an existing database keeps the retention it has (a DevLake that
        restarts must not undo what a developer asked for)."""
        ...

    def set_retention(self, name: str, retention: str) -> None:
        """Change how long the database keeps samples (in place, data kept)."""
        ...

    def databases(self) -> set[str] | None:
        """The databases that exist now; None when the server has none to list (then every
        well-formed name is writable, e.g. VictoriaMetrics)."""
        ...

    def write(self, database: str, lines: bytes) -> None:
        """Store line protocol in `database`; idempotent for identical points.

        Raises `PointsRefused` when the server refused some or all points, `DatabaseMissing`
        when the database does not exist, `TemporaryError` when it should be retried."""
        ...

    def drop_database(self, name: str) -> None:
        """Delete the database (bucket) and its data; no error when it does not exist."""
        ...

    def ensure_reader(self, name: str, reader: influxauth.Account) -> None:
        """Give `reader` read access to database `name` only (idempotent)."""
        ...

    def drop_reader(self, user: str) -> None:
        """Remove a read-only user; no error when it does not exist."""
        ...

    def close(self) -> None: ...


def client(settings: InfluxSettings, timeout: float,
           who: str | influxauth.Account = influxauth.ADMIN) -> httpx.Client:
    """An HTTP client for InfluxDB signed in as `who`: a role of the accounts file (`admin`,
    `devlake`) or one OverCloud's read-only account; no credentials when there is no file."""
    if settings.token:
        return httpx.Client(base_url=settings.base_url, timeout=timeout,
                            headers={"Authorization": f"Token {settings.token}"})
    acct = who if isinstance(who, influxauth.Account) else influxauth.account(
        settings.credentials, who)
    auth = httpx.BasicAuth(acct.username, acct.password) if acct else None
    return httpx.Client(base_url=settings.base_url, timeout=timeout, auth=auth)


class InfluxQL:
    """InfluxQL over `/query`: answered by InfluxDB 1.x, 2.x (v1 compat + DBRP) and 3.x."""

    def __init__(self, settings: InfluxSettings, timeout: float = 10.0,
                 who: str | influxauth.Account = influxauth.ADMIN) -> None:
        self._client = client(settings, timeout, who)
        self.url = settings.base_url

    def query(self, q: str, database: str = "", *, post: bool = False) -> list[dict[str, Any]]:
        """Run a statement; returns the `series` of its first result ([] when empty).

        `q` is sent as it is: build it with `overcloud.influxql` (the one exception is
        `overcloud metrics query`, which runs the statement its user typed)."""
        results = self._results(q, database, post) or [{}]
        first = results[0]
        if "error" in first:
            raise PermanentError(f"InfluxDB: {first['error']}")
        series: list[dict[str, Any]] = first.get("series", [])
        return series

    def query_each(self, statements: Sequence[influxql.QL], database: str = ""
                   ) -> list[list[dict[str, Any]]]:
        """Several of our own statements in one request (InfluxQL runs `;`-separated
        statements in order); the `series` of each, in the same order. One round trip
        instead of one per statement: what the DevTower page's charts ask at every load."""
        out: list[list[dict[str, Any]]] = [[] for _ in statements]
        for r in self._results(influxql.join(statements, "; "), database, False):
            i = r.get("statement_id", 0)
            if "error" in r:
                raise PermanentError(f"InfluxDB: {r['error']}")
            if isinstance(i, int) and 0 <= i < len(out):
                out[i] = r.get("series", [])
        return out

    def _results(self, q: str, database: str, post: bool) -> list[dict[str, Any]]:
        """The `results` of one `/query` request; an outage or a refusal raised."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        try:
            if post:
                resp = self._client.post("/query", params=params)
            else:
                resp = self._client.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"InfluxDB at {self.url} unreachable: {exc}") from None
        if resp.status_code >= 500:
            raise TemporaryError(f"InfluxDB error {resp.status_code}: {resp.text.strip()}")
        try:
            body = resp.json()
        except ValueError:
            raise PermanentError(f"InfluxDB answered {resp.status_code}: {resp.text[:200]}") from None
        if "error" in body:
            raise PermanentError(f"InfluxDB: {body['error']}")
        results: list[dict[str, Any]] = body.get("results") or []
        return results

    def databases(self) -> list[str]:
        return [row[0] for s in self.query(SHOW_DATABASES) for row in s.get("values", [])]

    def close(self) -> None:
        self._client.close()


_DROPPED = re.compile(r"dropped=(\d+)")


def refusal(status: int, text: str) -> PermanentError:
    """What an InfluxDB 1.x `/write` answer other than 204/5xx means.

    1.x answers 400 `partial write: <reason> dropped=N` when it stored the parsable points
    but refused some (type conflict, beyond retention, unparsable lines — the latter are not
    counted in N), and 400 `unable to parse ...` without "partial write" when no line parsed.
    """
    if status == 404 and "database not found" in text:
        return DatabaseMissing(text)
    if status == 400 and text.startswith('{"error":"unable to parse'):
        return PointsRefused(_error_text(text), all_refused=True)
    if status in (400, 413, 422):
        m = _DROPPED.search(text) if "partial write" in text else None
        return PointsRefused(_error_text(text), dropped=int(m[1]) if m else None)
    return PermanentError(f"InfluxDB answered {status}: {text[:300]}")


def _error_text(text: str) -> str:
    try:
        body = orjson.loads(text)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])[:500]
    except ValueError:
        pass
    return text[:500]


class InfluxV1Sink:
    """`who`: `admin` (the orchestrator: creates and drops databases and users) or `devlake`
    (the DevLake: writes into the databases it was granted, creates none)."""

    def __init__(self, settings: InfluxSettings, timeout: float = 30.0,
                 who: str = influxauth.ADMIN) -> None:
        self._settings = settings
        self._who = who
        self._ql = InfluxQL(settings, timeout, who)
        self._client = client(settings, timeout, who)

    def _accounts(self) -> dict[str, str] | None:
        if self._settings.token:
            return None
        return influxauth.load_accounts(Path(self._settings.credentials)) \
            if self._settings.credentials else None

    def ensure_database(self, name: str, retention: str | None = None) -> None:
        if not self._settings.create_databases:
            return
        accounts = self._accounts()
        if accounts is not None and self._who != influxauth.ADMIN:
            # the DevLake account creates nothing: `services up influxdb` made the UnderCloud's
            # database and the orchestrator every OverCloud's, each granted to it
            if name not in self._ql.databases():
                raise PermanentError(f"database {name} does not exist and the {self._who} "
                                     "account may not create it")
            return
        try:
            create = create_database(name)
            policy = create_retention_policy(name, retention or self._settings.retention)
        except ValueError as exc:
            raise PermanentError(f"cannot create database {name!r}: {exc}") from None
        self._ql.query(create, post=True)
        try:
            self._ql.query(policy, post=True)
        except PermanentError as exc:
            if "already exists" not in str(exc):
                raise
            if retention is not None:
                self.set_retention(name, retention)
        if accounts is not None:  # the DevLake may write into it, and nothing else may
            self._ql.query(influxauth.grant("WRITE", name, accounts["devlake_user"]), post=True)

    def set_retention(self, name: str, retention: str) -> None:
        try:
            alter = alter_retention_policy(name, retention)
        except ValueError as exc:
            raise PermanentError(f"cannot change the retention of {name!r}: {exc}") from None
        self._ql.query(alter, post=True)

    def ensure_reader(self, name: str, reader: influxauth.Account) -> None:
        """`reader` may read database `name` and nothing else (idempotent: an existing user
        gets this password again)."""
        try:
            self._ql.query(influxauth.create_user(reader.username, reader.password), post=True)
        except PermanentError as exc:
            if "already exists" not in str(exc):
                raise
            self._ql.query(influxauth.set_password(reader.username, reader.password), post=True)
        self._ql.query(influxauth.grant("READ", name, reader.username), post=True)

    def drop_reader(self, user: str) -> None:
        """Remove a read-only user (idempotent)."""
        try:
            self._ql.query(influxauth.drop_user(user), post=True)
        except PermanentError as exc:
            if "not found" not in str(exc):
                raise

    def databases(self) -> set[str] | None:
        return set(self._ql.databases())

    def drop_database(self, name: str) -> None:
        """Delete a DevLake database and its data (idempotent)."""
        try:
            q = drop_database(name)
        except ValueError as exc:
            raise PermanentError(f"cannot drop database {name!r}: {exc}") from None
        self._ql.query(q, post=True)

    def write(self, database: str, lines: bytes) -> None:
        try:
            resp = self._client.post(
                "/write", params={"db": database, "precision": "ns"}, content=lines
            )
        except httpx.HTTPError as exc:
            raise TemporaryError(f"InfluxDB at {self._settings.base_url} unreachable: {exc}") from None
        if resp.status_code == 204:
            return
        text = resp.text.strip()
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TemporaryError(f"InfluxDB write failed ({resp.status_code}): {text[:300]}")
        raise refusal(resp.status_code, text)

    def close(self) -> None:
        self._client.close()
        self._ql.close()


class InfluxV2Sink:
    """Writes through influxdb-client's synchronous write API (`/api/v2/write`)."""

    def __init__(self, settings: InfluxSettings, timeout: float = 30.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._settings = settings
        self._client = InfluxDBClient(
            url=settings.base_url, token=settings.token or "-", org=settings.org,
            timeout=int(timeout * 1000),
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def ensure_database(self, name: str, retention: str | None = None) -> None:
        if not self._settings.create_databases:
            return
        from influxdb_client.rest import ApiException

        buckets = self._client.buckets_api()
        try:
            found = buckets.find_bucket_by_name(name)
            if found is not None and retention is not None:
                self.set_retention(name, retention)
            if found is None:
                seconds = _duration_seconds(retention or self._settings.retention)
                from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

                buckets.create_bucket(
                    bucket_name=name,
                    org=self._settings.org,
                    retention_rules=BucketRetentionRules(type="expire", every_seconds=seconds),
                )
        except (ApiException, OSError) as exc:
            raise _bucket_error(f"could not create bucket {name}", exc) from None

    def set_retention(self, name: str, retention: str) -> None:
        from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
        from influxdb_client.rest import ApiException

        buckets = self._client.buckets_api()
        try:
            bucket = buckets.find_bucket_by_name(name)
            if bucket is None:
                raise PermanentError(f"no bucket {name}: its retention cannot change")
            bucket.retention_rules = [BucketRetentionRules(
                type="expire", every_seconds=_duration_seconds(retention))]
            buckets.update_bucket(bucket)
        except (ApiException, OSError) as exc:
            raise _bucket_error(f"could not update bucket {name}", exc) from None

    def databases(self) -> set[str] | None:
        if not self._settings.create_databases:
            return None  # buckets are not ours to manage (e.g. VictoriaMetrics has none)
        from influxdb_client.rest import ApiException

        try:
            found = self._client.buckets_api().find_buckets(limit=100_000).buckets or []
        except ApiException as exc:
            raise TemporaryError(f"could not list buckets: {exc.reason}") from None
        except OSError as exc:
            raise TemporaryError(f"InfluxDB unreachable: {exc}") from None
        return {b.name for b in found}

    def drop_database(self, name: str) -> None:
        buckets = self._client.buckets_api()
        bucket = buckets.find_bucket_by_name(name)
        if bucket is not None:
            buckets.delete_bucket(bucket)

    def write(self, database: str, lines: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._write.write(bucket=database, org=self._settings.org, record=lines,
                              write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise TemporaryError(f"InfluxDB v2 write failed ({exc.status}): {exc.reason}") from None
            if exc.status == 404:
                raise DatabaseMissing(f"bucket {database} does not exist: {exc.body}") from None
            if exc.status in (400, 413, 422):
                # 2.x may store the valid points of a batch it partly refused: find them
                raise PointsRefused(f"InfluxDB v2 refused points ({exc.status}): {exc.body}") from None
            raise PermanentError(f"InfluxDB v2 rejected points ({exc.status}): {exc.body}") from None
        except (Urllib3Error, OSError) as exc:
            raise TemporaryError(f"InfluxDB at {self._settings.base_url} unreachable: {exc}") from None

    def ensure_reader(self, name: str, reader: influxauth.Account) -> None:
        """Not managed here: InfluxDB 2.x/3.x scope read tokens to buckets in their own UI/API
        (`influx auth create --read-bucket`); this dialect signs in with the configured token."""

    def drop_reader(self, user: str) -> None:
        """See `ensure_reader`."""

    def close(self) -> None:
        self._client.close()


def _bucket_error(what: str, exc: Exception) -> Exception:
    """An influxdb-client failure as ours: a 5xx or an unreachable server is worth a retry."""
    if isinstance(exc, OSError):
        return TemporaryError(f"InfluxDB unreachable: {exc}")
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", exc)
    if status and status >= 500:
        return TemporaryError(f"{what}: {reason}")
    return PermanentError(f"{what}: {reason}")


def _duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    if text in ("0", "INF", "inf"):
        return 0
    try:
        return int(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError):
        raise PermanentError(f"bad retention duration {text!r} (use e.g. 30d, 12h)") from None


def make_sink(settings: InfluxSettings, who: str = influxauth.ADMIN) -> MetricSink:
    """The sink of the configured dialect, signed in as `who` (`admin` or `devlake`)."""
    if settings.dialect == "v2":
        return InfluxV2Sink(settings)
    return InfluxV1Sink(settings, who=who)
