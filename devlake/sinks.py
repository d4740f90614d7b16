"""Where DevLake writes: the `MetricSink` interface and its two InfluxDB dialects.

- `InfluxV1Sink`: InfluxDB 1.x HTTP API (`/write`, `/query`); also InfluxDB 2.x/3.x through
  their v1-compatibility endpoints.
- `InfluxV2Sink`: the `/api/v2/write` API through `influxdb-client` (InfluxDB 2.x/3.x; on our
  machines exercised against VictoriaMetrics, which accepts that API).

Errors follow one rule: `TemporaryError` means "nothing or not all was stored, retry the same
batch later" (server down, 5xx); `PermanentError` means "retrying cannot help" (the server
rejected the points, e.g. a field type conflict) and the batch is dead-lettered.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx

from overcloud.errors import PermanentError, TemporaryError
from overcloud.settings import InfluxSettings

log = logging.getLogger(__name__)


class MetricSink(Protocol):
    def ensure_database(self, name: str) -> None:
        """Create the database (bucket) with its retention policy if it does not exist."""
        ...

    def write(self, database: str, lines: bytes) -> None:
        """Store line protocol in `database`; idempotent for identical points."""
        ...

    def drop_database(self, name: str) -> None:
        """Delete the database (bucket) and its data; no error when it does not exist."""
        ...

    def close(self) -> None: ...


class InfluxQL:
    """InfluxQL over `/query`: answered by InfluxDB 1.x, 2.x (v1 compat + DBRP) and 3.x."""

    def __init__(self, settings: InfluxSettings, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Token {settings.token}"} if settings.token else {}
        self._client = httpx.Client(base_url=settings.base_url, headers=headers, timeout=timeout)
        self.url = settings.base_url

    def query(self, q: str, database: str = "", *, post: bool = False) -> list[dict[str, Any]]:
        """Run a statement; returns the `series` of its first result ([] when empty)."""
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
        results = body.get("results") or [{}]
        first = results[0]
        if "error" in first:
            raise PermanentError(f"InfluxDB: {first['error']}")
        series: list[dict[str, Any]] = first.get("series", [])
        return series

    def databases(self) -> list[str]:
        return [row[0] for s in self.query("SHOW DATABASES") for row in s.get("values", [])]

    def close(self) -> None:
        self._client.close()


class InfluxV1Sink:
    def __init__(self, settings: InfluxSettings, timeout: float = 30.0) -> None:
        self._settings = settings
        self._ql = InfluxQL(settings, timeout)
        headers = {"Authorization": f"Token {settings.token}"} if settings.token else {}
        self._client = httpx.Client(base_url=settings.base_url, headers=headers, timeout=timeout)

    def ensure_database(self, name: str) -> None:
        if not self._settings.create_databases:
            return
        rp = self._settings.retention
        self._ql.query(f'CREATE DATABASE "{name}"', post=True)
        try:
            self._ql.query(
                f'CREATE RETENTION POLICY "devlake" ON "{name}" DURATION {rp} REPLICATION 1 DEFAULT',
                post=True,
            )
        except PermanentError as exc:
            if "already exists" not in str(exc):
                raise
            self._ql.query(
                f'ALTER RETENTION POLICY "devlake" ON "{name}" DURATION {rp} DEFAULT', post=True
            )

    def drop_database(self, name: str) -> None:
        """Delete a DevLake database and its data (idempotent)."""
        self._ql.query(f'DROP DATABASE "{name}"', post=True)

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
        if resp.status_code == 404 and "database not found" in text:
            # it existed (DevLake creates a database before its first write), so it was
            # dropped on purpose, e.g. by `overcloud delete`: late points are dead-lettered,
            # not used to bring the deleted OverCloud's DevLake back
            raise PermanentError(f"database {database} does not exist (dropped?)")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TemporaryError(f"InfluxDB write failed ({resp.status_code}): {text[:300]}")
        raise PermanentError(f"InfluxDB rejected points ({resp.status_code}): {text[:300]}")

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

    def ensure_database(self, name: str) -> None:
        if not self._settings.create_databases:
            return
        from influxdb_client.rest import ApiException

        buckets = self._client.buckets_api()
        try:
            if buckets.find_bucket_by_name(name) is None:
                seconds = _duration_seconds(self._settings.retention)
                from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

                buckets.create_bucket(
                    bucket_name=name,
                    org=self._settings.org,
                    retention_rules=BucketRetentionRules(type="expire", every_seconds=seconds),
                )
        except ApiException as exc:
            if exc.status and exc.status >= 500:
                raise TemporaryError(f"could not create bucket {name}: {exc.reason}") from None
            raise PermanentError(f"could not create bucket {name}: {exc.reason}") from None
        except OSError as exc:
            raise TemporaryError(f"InfluxDB unreachable: {exc}") from None

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
            raise PermanentError(f"InfluxDB v2 rejected points ({exc.status}): {exc.body}") from None
        except (Urllib3Error, OSError) as exc:
            raise TemporaryError(f"InfluxDB at {self._settings.base_url} unreachable: {exc}") from None

    def close(self) -> None:
        self._client.close()


def _duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    if text in ("0", "INF", "inf"):
        return 0
    try:
        return int(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError):
        raise PermanentError(f"bad retention duration {text!r} (use e.g. 30d, 12h)") from None


def make_sink(settings: InfluxSettings) -> MetricSink:
    if settings.dialect == "v2":
        return InfluxV2Sink(settings)
    return InfluxV1Sink(settings)
