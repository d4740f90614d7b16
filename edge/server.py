"""The edge: the UnderCloud's front door, a TCP balancer over each OverCloud's web nodes.

Each OverCloud's URL is a port on the UnderCloud machine's loopback. The edge listens on it
and relays every connection to one of the OverCloud's web nodes (their nginx on port 80 of
their bridge address), taking them in turn; a node that refuses or does not answer within
`connect_timeout` is skipped for the next one (and tried last for the next 5 s), so a web
node that is stopping never fails a request that has not reached it yet.

Why a balancer of our own and not an LXD proxy device on one web node (as before): a port
can be held by one device of one node only, so a second web node could not share the URL,
and a moved web node's URL had to be handed from one device to the other (a gap of 0.5-1 s
in which the port was closed). Here a route change is atomic for new connections, and the
connections already open stay on their node until they end: the orchestrator takes a node
out of the route, lets its nginx finish (a graceful reload closes idle keep-alive
connections), waits until the edge counts no connection to it (`active` in the status
file), and only then stops it.

The route table and the status are files (edge/routes.py): the orchestrator and the edge
restart independently. Plain TCP: TLS, if any, ends in the web nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from edge.routes import Route, parse_routes, write_json

log = logging.getLogger("edge")

CHUNK = 1 << 16
TICK = 0.05
"""How often the route table's mtime is looked at and a changed status written (s)."""
DOWN_FOR = 5.0
"""A backend that refused is tried last for this long."""


class Edge:
    def __init__(self, routes: Path, status: Path, host: str = "127.0.0.1",
                 connect_timeout: float = 2.0) -> None:
        self.routes_path, self.status_path, self.host = routes, status, host
        self.connect_timeout = connect_timeout
        self.routes: dict[int, Route] = {}
        self.serial = -1
        self.servers: dict[int, asyncio.Server] = {}
        self.errors: dict[int, str] = {}
        self.active: Counter[str] = Counter()
        self.down_until: dict[str, float] = {}
        self._cursor: dict[int, int] = {}
        self._seen: tuple[int, int] | None = None
        self._dirty = True
        self._retry_at = 0.0

    # --- the route table -----------------------------------------------------------------

    async def reload(self) -> None:
        """Take the route table if it changed (and retry ports it could not bind)."""
        try:
            st = self.routes_path.stat()
            seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen == self._seen and not (self.errors and time.monotonic() >= self._retry_at):
            return
        if seen != self._seen:
            routes: dict[int, Route] = {}
            problems: list[str] = []
            if seen is None:
                serial = 0
            else:
                try:
                    data = json.loads(self.routes_path.read_bytes())
                except (OSError, ValueError) as exc:
                    log.warning("route table unreadable, keeping the last one: %s", exc)
                    self._seen = seen
                    return
                serial, routes, problems = parse_routes(data)
            for p in problems:
                log.warning("route table: %s (left out)", p)
            changed = {p for p in set(routes) | set(self.routes)
                       if routes.get(p) != self.routes.get(p)}
            self.routes, self._seen = routes, seen
            for port in sorted(changed):
                r = routes.get(port)
                log.info("port %d: %s", port,
                         f"{r.overcloud} → {', '.join(r.backends)}" if r else "closed")
        else:
            serial = self.serial
        for port in [p for p in self.servers if p not in self.routes]:
            self.servers.pop(port).close()  # the listener only: open connections go on
        self.errors = {p: e for p, e in self.errors.items() if p in self.routes}
        for port in self.routes:
            if port not in self.servers:
                await self._listen(port)
        self._retry_at = time.monotonic() + 0.5
        self.serial = serial
        self._dirty = True

    async def _listen(self, port: int) -> None:
        try:
            self.servers[port] = await asyncio.start_server(
                lambda r, w: self._serve(port, r, w), self.host, port, reuse_address=True,
                backlog=1024)
            if self.errors.pop(port, None) is not None:
                log.info("port %d: listening now", port)
        except OSError as exc:
            if port not in self.errors:
                log.warning("port %d: cannot listen: %s", port, exc.strerror or exc)
            self.errors[port] = str(exc.strerror or exc)

    def order(self, port: int) -> list[str]:
        """The backends of `port` for the next connection: the next in turn first, the ones
        that refused lately last."""
        route = self.routes.get(port)
        if route is None or not route.backends:
            return []
        i = self._cursor[port] = (self._cursor.get(port, -1) + 1) % len(route.backends)
        turn = [*route.backends[i:], *route.backends[:i]]
        now = time.monotonic()
        return sorted(turn, key=lambda b: self.down_until.get(b, 0.0) > now)

    # --- connections ---------------------------------------------------------------------

    async def _serve(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        upstream = None
        for b in self.order(port):
            addr, _, bport = b.partition(":")
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(addr, int(bport)),
                                                  self.connect_timeout)
            except (TimeoutError, OSError) as exc:
                self.down_until[b] = time.monotonic() + DOWN_FOR
                log.info("port %d: %s did not take the connection (%s), next one", port, b,
                         type(exc).__name__)
                continue
            break
        if upstream is None:
            writer.close()
            return
        up_r, up_w = upstream
        self.active[b] += 1
        self._dirty = True
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            self.active[b] -= 1
            if self.active[b] <= 0:
                del self.active[b]
            self._dirty = True
            for w in (writer, up_w):
                w.close()

    # --- status and the loop -------------------------------------------------------------

    def write_status(self) -> None:
        self.status_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.status_path, {
            "pid": os.getpid(), "serial": self.serial, "listening": sorted(self.servers),
            "errors": {str(p): e for p, e in self.errors.items()},
            "active": dict(self.active)}, durable=False)
        self._dirty = False

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.reload()
                if self._dirty:
                    self.write_status()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK)
        finally:
            for srv in self.servers.values():
                srv.close()
            self.servers.clear()
            self.status_path.unlink(missing_ok=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close `dst` (the other direction goes on); a reset
    on either side ends this direction quietly."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.close()
