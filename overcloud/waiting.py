"""Wait on a condition with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_until(
    predicate: Callable[[], T | bool | None],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises `WaitTimeout` naming `what` when `timeout` seconds pass first. Exceptions raised
    by the predicate propagate: a predicate that can fail transiently should catch them.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
