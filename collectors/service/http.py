"""Is the SaaS up, and how fast (measurement `service_http`): an HTTP probe of its URL.

The probe is what a user would do: GET the OverCloud's exposed URL (the WordPress install
page by default) and check the status and that the body says what it should. `up` means a
2xx/3xx answer *and* the body check passing: nginx answering 502 because WordPress is gone is
down. Only the path is a tag (`target`): the host and port are the OverCloud's, and a query
string would make the tag unbounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from collectors.base import register
from overcloud.samples import FieldValue, Layer, Sample, now_ns


@dataclass(frozen=True)
class ProbeResult:
    time_ns: int
    status: int
    """HTTP status, 0 when there was no answer."""
    latency_ms: float
    body: str
    error: str


def probe_sample(r: ProbeResult, target: str, expect: str) -> Sample:
    body_ok = r.status != 0 and (not expect or expect in r.body)
    fields: dict[str, FieldValue] = {
        "up": 200 <= r.status < 400 and body_ok,
        "status": r.status,
        "latency_ms": round(r.latency_ms, 3),
        "body_ok": body_ok,
        "error": r.error,
    }
    return Sample("service_http", {"target": target}, fields, r.time_ns)


def http_get(client: httpx.Client, url: str) -> ProbeResult:
    t0 = time.perf_counter()
    at = now_ns()
    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        return ProbeResult(at, 0, (time.perf_counter() - t0) * 1000, "",
                           f"{type(exc).__name__}: {exc}"[:200])
    latency = (time.perf_counter() - t0) * 1000
    error = "" if resp.status_code < 400 else f"HTTP {resp.status_code}"
    return ProbeResult(at, resp.status_code, latency, resp.text, error)


@register("service_http")
class HttpProbeCollector:
    """GET `url` once per cycle (tag `target` = its path)."""

    name = "service_http"
    layer = Layer.SERVICE

    def __init__(self, url: str, expect: str = "", timeout: float = 5.0,
                 get: Callable[[httpx.Client, str], ProbeResult] = http_get) -> None:
        self._url = url
        self._expect = expect
        self._target = urlsplit(url).path or "/"
        self._get = get
        # a new connection every time: a probe that reuses a kept-alive socket measures less
        # than a user would see, and keeps nginx's worker busy between probes
        self._client = httpx.Client(timeout=timeout, follow_redirects=True,
                                    limits=httpx.Limits(max_keepalive_connections=0))

    def collect(self) -> list[Sample]:
        return [probe_sample(self._get(self._client, self._url), self._target, self._expect)]
