"""What a user polling an OverCloud's URL sees while a node moves: the downtime probe.

A thread GETs the page every `every` seconds (100 ms by default) and keeps, besides the total
downtime, each outage with the kinds of failure it was made of — `refused` (nothing listens
on the port), `reset` (a connection dropped mid-request), `connect timeout` / `timeout`,
`http 502` (nginx up, its upstream not), `http 500` (WordPress up, its database not),
`no marker` (a 200 without the expected text). The kind says which part of a move broke the
page (the proxy device, nginx's upstream, WordPress, the database), and the outages'
wall-clock times line up with the move's recorded steps. The orchestrator reports its
probe's figures in `MigrationFinished` and in the move task's result; the migration bench
and tests use the same class.

Down means the page failed, or gave no answer within `timeout` (5 s: a user waits that long).
A slow answer is not an outage: on our shared 2-core machines the same page takes 0.1 s on
an idle host and 1-4 s under heavy load, whatever a move does, and a 1 s deadline counted
that load as downtime. How slow the page got is kept apart (`slowest`). For the same
reason an outage starts when the failure came back (a refused connection, a request cut, an
error page), not when its request went out — except for silence (a timeout), which is down
from the start.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

PROBE_EVERY = 0.1
PROBE_TIMEOUT = 5.0
SILENT = frozenset({"timeout", "connect timeout"})
"""failures that mean nothing answered for the whole wait"""


@dataclass
class Outage:
    """One stretch without a good page: from the first failed probe to the next good one
    (or to the probe's stop, when the page was still down then)."""

    start: float
    """wall clock (time.time()) of the first failed probe"""
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    ongoing: bool = True
    """still down when the probe stopped"""

    def to_dict(self) -> dict[str, object]:
        return {"start": round(self.start, 3), "seconds": round(self.seconds, 3),
                "kinds": dict(self.kinds), "ongoing": self.ongoing}


def failure_kind(exc: BaseException) -> str:
    """A short name for why a GET failed (the kinds in the module docstring)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:  # the OS's word, where httpx kept it
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "refused"
        if isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return "refused" if "refused" in str(exc).lower() else "connect"
    if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)):
        return "reset"
    return type(exc).__name__


class DowntimeProbe:
    """GETs `url` every `every` s in a thread while in its `with` block. `downtime` is the sum
    of the outages (what a user polling the URL would have seen); `outages` has each one."""

    def __init__(self, url: str, expect: str = "WordPress", every: float = PROBE_EVERY,
                 timeout: float = PROBE_TIMEOUT, trace: bool = False) -> None:
        self.url, self.expect, self.every, self.timeout = url, expect, every, timeout
        self.slowest = 0.0
        """the longest a good answer took (s)"""
        self.trace: list[tuple[float, float, str]] | None = [] if trace else None
        """with `trace`: every probe as (wall-clock start, seconds it took, kind or "ok")"""
        self.ok = 0
        self.failures = 0
        self.outages: list[Outage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="downtime-probe")

    @property
    def downtime(self) -> float:
        return sum(o.seconds for o in self.outages)

    def __enter__(self) -> DowntimeProbe:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 5)

    def kinds(self) -> dict[str, int]:
        """Failed probes by kind, over every outage."""
        total: Counter[str] = Counter()
        for o in self.outages:
            total.update(o.kinds)
        return dict(total)

    def downtime_if_slower_than(self, seconds: float) -> float:
        """The downtime had every answer slower than `seconds` counted as a failure too (needs
        `trace`): the stricter reading, for comparison with probes that gave up sooner."""
        total, since, end = 0.0, None, 0.0
        for at, took, kind in self.trace or []:
            slow = kind in SILENT or took > seconds  # as if it had been given up on then
            bad = kind != "ok" or slow
            if bad and since is None:
                since = at if slow else at + took  # (as `_run` dates an outage's start)
            elif not bad and since is not None:
                total, since = total + at - since, None
            end = at + took
        return total + (end - since if since is not None else 0.0)

    def check(self, client: httpx.Client) -> str | None:
        """One GET: None when the page answered as expected, else the failure's kind."""
        try:
            r = client.get(self.url)
        except httpx.HTTPError as exc:
            return failure_kind(exc)
        if r.status_code != 200:
            return f"http {r.status_code}"
        return None if self.expect in r.text else "no marker"

    def _run(self) -> None:
        current: Outage | None = None
        t_down = 0.0
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                t = time.monotonic()
                wall = time.time()
                kind = self.check(client)
                took = time.monotonic() - t
                if self.trace is not None:
                    self.trace.append((wall, took, kind or "ok"))
                if kind is None:
                    self.ok += 1
                    self.slowest = max(self.slowest, took)
                    if current is not None:
                        current.seconds, current.ongoing = t - t_down, False
                        current = None
                else:
                    self.failures += 1
                    if current is None:
                        # down since the request went out when nothing answered it; since
                        # the failure came back otherwise (a request cut after a slow second
                        # was served until then: its wait is the machine's, not an outage)
                        late = 0.0 if kind in SILENT else took
                        current, t_down = Outage(wall + late), t + late
                        self.outages.append(current)
                    current.kinds[kind] += 1
                    current.seconds = time.monotonic() - t_down
                self._stop.wait(max(0.0, self.every - (time.monotonic() - t)))
        if current is not None:  # still down at the stop: that counts too
            current.seconds = time.monotonic() - t_down
