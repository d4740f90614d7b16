"""Plain-data views of the orchestrator's records: what the DevTower API returns as JSON and
what the CLI renders, so a command prints the same locally and through `--tower`."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.registry import OverCloudRecord
from orchestrator.store import WorkflowRecord


def summary(rec: OverCloudRecord) -> dict[str, Any]:
    return {"name": rec.name, "state": rec.state, "owner": rec.owner, "url": rec.url,
            "nodes": {n.node: n.host for n in rec.nodes}, "error": rec.error,
            "created": rec.created, "updated": rec.updated,
            "age_s": round(time.time() - rec.created, 1)}


def workflow_dict(wf: WorkflowRecord) -> dict[str, Any]:
    return {
        "id": wf.id, "kind": wf.kind, "state": str(wf.state), "error": wf.error,
        "created": wf.created, "updated": wf.updated,
        "tasks": [{"name": k.name, "state": str(k.state), "attempts": k.attempts,
                   "started": k.started, "finished": k.finished,
                   "seconds": round((k.finished or time.time()) - k.started, 2) if k.started else None,
                   "progress": k.progress or "", "error": k.error or ""} for k in wf.tasks],
    }


def nodes(rec: OverCloudRecord) -> list[dict[str, Any]]:
    return [{"node": n.node, "host": n.host, "address": n.address, "tiers": n.tiers,
             "container": n.container} for n in rec.nodes]
