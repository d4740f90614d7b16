"""Handlers registered by event type (kopf's registry idea): a registry object you pass around.

    handlers = Handlers()

    @handlers.on(OverCloudRequested)
    def provision(event: OverCloudRequested) -> None: ...

Dispatch is by the event's class, never by strings in payloads; tests build fresh registries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from overcloud.events import Event

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]


class Handlers:
    def __init__(self) -> None:
        self._by_type: dict[type[Event], list[Handler]] = {}

    def on(self, event_type: type[E]) -> Callable[[Callable[[E], None]], Callable[[E], None]]:
        def deco(fn: Callable[[E], None]) -> Callable[[E], None]:
            self._by_type.setdefault(event_type, []).append(fn)
            return fn

        return deco

    def dispatch(self, event: Event) -> int:
        """Call every handler of the event's type; returns how many ran (0: not ours)."""
        handlers = self._by_type.get(type(event), [])
        for h in handlers:
            h(event)
        return len(handlers)

    def types(self) -> list[type[Event]]:
        return list(self._by_type)
