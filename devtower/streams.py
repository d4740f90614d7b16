"""Which journal entries a server-sent event stream may send, and the one loop that sends them.

A name is not an OverCloud: it can be deleted and taken again, maybe by another tenant. So a
stream follows *incarnations*: each from its first journal entry (its request, or its
provisioning workflow if that came in first) up to, not including, the first entry of the
next incarnation of its name. Following does not end when the record goes: the orchestrator
forgets the record *before* it announces `OverCloudDeleted`, and that last entry is exactly
what a live list needs to drop the row. A name whose record is gone is followed until its
deletion (or the next incarnation) went by, and never into what comes under that name after.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from devtower.journal import Entry, Journal
from orchestrator.registry import OverCloudRecord

GONE = "OverCloudGone"
"""What a stream sends when the next OverCloud of a followed name starts before the followed
one's `OverCloudDeleted` reached the journal."""

KEEP_ALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""


@dataclass
class _Followed:
    request_id: str
    floor: int
    """The last journal id that is not this incarnation's own."""
    ended: bool = False
    """Its deletion or the next incarnation of its name went by: nothing more to send."""


class Incarnations:
    """The incarnations one stream follows, and the test of each entry against them."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._followed: dict[str, _Followed] = {}

    def follow(self, records: list[OverCloudRecord]) -> None:
        """The records the caller sees now. A new one (or a new incarnation of a followed
        name) is followed from its first entry; a followed name missing from `records` stays
        followed until it ends."""
        visible = {r.name for r in records}
        for r in records:
            f = self._followed.get(r.name)
            if f is None or f.request_id != r.request_id:
                first = self._journal.first_of(r.name, r.request_id)
                # nothing of it journaled yet: whatever comes from now on is its own
                floor = first - 1 if first else self._journal.last_id()
                self._followed[r.name] = _Followed(r.request_id, floor)
        for name in [n for n, f in self._followed.items()
                     if f.ended and n not in visible]:
            del self._followed[name]

    def floor(self, name: str) -> int:
        """The last journal id before the followed incarnation of `name`; 0 when unknown."""
        f = self._followed.get(name)
        return f.floor if f else 0

    def names(self) -> list[str]:
        return [n for n, f in self._followed.items() if not f.ended]

    def admits(self, e: Entry) -> Entry | None:
        """What of `e` the stream sends: `e` itself when it belongs to a followed incarnation,
        else nothing. Call it on entries in id order: an entry that starts another incarnation
        of a followed name ends the one followed, and stands in for it as a bare
        `OverCloudGone` (no data of the next one: its name's OverCloud, the caller's, is gone,
        and a live list must redraw even when its `OverCloudDeleted` came in later)."""
        f = self._followed.get(e.overcloud)
        if f is None or f.ended or e.id <= f.floor:
            return None
        if e.starts_another(f.request_id):
            f.ended = True
            return Entry(e.id, e.overcloud, "event", GONE, e.time, {})
        if e.type == "OverCloudDeleted":
            f.ended = True  # its last entry: sent, and nothing of that name after it
        return e


def frame(e: Entry, named: bool, with_overcloud: bool) -> bytes:
    """One entry as a server-sent event; `named`: its type as the SSE event name."""
    body = {"id": e.id, "kind": e.kind, "type": e.type, "time": e.time, "data": e.data}
    if with_overcloud:
        body = {"id": e.id, "overcloud": e.overcloud, **body}
    data = json.dumps(body, default=str)
    kind = f"event: {e.type}\n" if named else ""
    return f"id: {e.id}\n{kind}data: {data}\n\n".encode()


async def entries(*, journal: Journal, follow: Incarnations,
                  records: Callable[[], Awaitable[list[OverCloudRecord]]],
                  run: Callable[..., Awaitable[object]],
                  disconnected: Callable[[], Awaitable[bool]],
                  after: int, render: Callable[[Entry], bytes], hello: bytes,
                  interval: float, until_ended: bool = False) -> AsyncIterator[bytes]:
    """The loop behind both streams: read the visible records, the followed entries after
    the last id sent, send the admitted ones; a keep-alive when quiet. `until_ended`: stop
    once nothing is followed any more (a stream of one OverCloud that was deleted)."""
    last = after
    beat = time.monotonic()
    yield hello
    while not await disconnected():
        await run(follow.follow, await records())
        names = follow.names()
        if not names and until_ended:
            return
        batch: list[Entry] = await run(journal.since, names, last, 200)  # type: ignore[assignment]
        for e in batch:
            last = e.id
            sent = follow.admits(e)
            if sent is not None:
                yield render(sent)
        if batch:
            beat = time.monotonic()
            continue
        if time.monotonic() - beat > KEEP_ALIVE_S:
            yield b": keep-alive\n\n"
            beat = time.monotonic()
        await asyncio.sleep(interval)
