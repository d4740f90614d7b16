"""Scheduled backups: the request's `backup: {every: 1d, keep: 7}` turned into backups.

Decide, then act. `due_backups` is pure: an OverCloud is due when it is ready (or degraded)
and the newest of its backups — or the last one the scheduler asked for, which may still be
running — is `every` old; one that has none yet is due at once (the schedule was just set).
The orchestrator asks this every `CHECK_EVERY` seconds and publishes a `BackupRequested`
for each due one (the same workflow as `overcloud backup NAME --keep N`), recording when it
asked, so a slow backup is not asked for twice. A manual backup counts as the newest: the
next scheduled one comes `every` after it. Paused, failed or busy OverClouds are skipped
until they can take it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from orchestrator.registry import OverCloudRecord
from orchestrator.request import duration_seconds

CHECK_EVERY = 15.0
"""Seconds between two looks at the schedules (a backup is due at most this late)."""


@dataclass(frozen=True)
class Due:
    name: str
    keep: int


def due_backups(records: Iterable[OverCloudRecord], newest: Callable[[OverCloudRecord], float],
                asked: Callable[[str], float | None], now: float) -> list[Due]:
    """Which OverClouds' scheduled backup is due at `now`. `newest(rec)`: the time of its
    newest backup (0 when none); `asked(name)`: when the scheduler last asked for one."""
    out = []
    for rec in records:
        sched = rec.spec.get("backup") or {}
        every = sched.get("every")
        if not every or rec.state not in ("ready", "degraded"):
            continue
        last = max(newest(rec), asked(rec.name) or 0.0)
        if last == 0.0 or now - last >= duration_seconds(str(every)):
            out.append(Due(rec.name, int(sched.get("keep", 7))))
    return out
