"""Errors that tell the caller what to do next.

`UserError` is what a person caused (bad arguments, a bad file): the CLI prints its message
on one line and exits non-zero, never a traceback. `TemporaryError` means "retry later with
backoff"; `PermanentError` means "give up on this unit of work and report it". The split
follows kopf's TemporaryError/PermanentError.
"""

from __future__ import annotations


class OverCloudError(Exception):
    """Base of every error this project raises on purpose."""


class UserError(OverCloudError):
    """A mistake in what the user gave us; the message says how to fix it."""


class ConfigError(UserError):
    """Settings that cannot work (bad port, unknown dialect, unreadable file)."""


class TemporaryError(OverCloudError):
    """An outside system is unavailable for now; retrying after `delay` seconds may succeed."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(OverCloudError):
    """Retrying will not help; fail the unit of work and report the reason."""


class DecodeError(PermanentError, ValueError):
    """A message on the wire is malformed or of an unknown type; it belongs in the dead-letter topic."""


class ServiceError(OverCloudError):
    """A local service could not be installed, started or reached."""
