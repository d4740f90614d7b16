"""The collector contract and the name → factory registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from overcloud.errors import UserError
from overcloud.samples import Layer, Sample


class Collector(Protocol):
    name: str
    layer: Layer

    def collect(self) -> list[Sample]:
        """Measure once and return samples (untagged by overcloud/node: the agent adds those)."""
        ...


REGISTRY: dict[str, Callable[..., Collector]] = {}


def register(name: str) -> Callable[[Callable[..., Collector]], Callable[..., Collector]]:
    def deco(factory: Callable[..., Collector]) -> Callable[..., Collector]:
        if name in REGISTRY:
            raise TypeError(f"collector {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return deco


def build(name: str, **options: Any) -> Collector:
    _register_builtins()

    try:
        factory = REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown collector {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return factory(**options)


def for_layer(layer: Layer) -> list[str]:
    _register_builtins()

    return sorted(n for n, f in REGISTRY.items() if getattr(f, "layer", None) == layer)


def _register_builtins() -> None:
    import collectors.flow
    import collectors.resource
    import collectors.service  # noqa: F401  (importing registers them)
