"""The kill -9 drills, run as the tests run them, printed as the table of RELIABILITY.md.

    .venv/bin/python bench/drills.py             # broker drills without LXD (~3 min)
    .venv/bin/python bench/drills.py --lxd       # + the whole loop with an OverCloud on LXD
                                                 #   (two LXD hosts, ~6 more min)

It runs the drill tests (tests/integration/test_broker_outage.py, and test_drills.py with
--lxd) in a pytest of its own — its own broker, InfluxDB and LXD hosts on free loopback
ports and a private state directory, stopped by pid at the end — with OC_DRILL_REPORT set,
so the figures are the ones the tests measured and asserted on, then prints them as a
Markdown table. LXD bridges/subnets: OC_TEST_BRIDGE_PREFIX / OC_TEST_SUBNET_PREFIX (see
tests/conftest.py) when another test session runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import print_machine  # noqa: E402

COLUMNS = [
    ("outage", lambda d: f"{d['outage_s']} s" if "outage_s" in d else
     (f"{d['down_s']} s" if "down_s" in d else "")),
    ("intervals (series × 1 s)", lambda d: d.get("intervals", "")),
    ("samples stored", lambda d: d.get("samples", "")),
    ("empty intervals", lambda d: d.get("empty_intervals", "")),
    ("batches replayed", lambda d: _int(d.get("replayed_batches", ""))),
    ("events (distinct on topic)", lambda d: _events(d)),
    ("acted on", lambda d: _acted(d)),
]


def _int(v: Any) -> str:
    return str(int(v)) if isinstance(v, (int, float)) else str(v)


def _events(d: dict[str, Any]) -> str:
    parts = []
    for key, label in (("ready_events", "Ready"), ("failed_events", "Failed"),
                       ("overloaded_events", "NodeOverloaded"), ("recovered_events", "NodeRecovered"),
                       ("deleted_events", "Deleted"), ("replayed_events", "replayed")):
        if key in d:
            parts.append(f"{label} {d[key]}")
    return ", ".join(parts)


def _acted(d: dict[str, Any]) -> str:
    parts = []
    for key, label in (("handling_starts", "handled"), ("overload_handling_starts", "overload handled"),
                       ("request_handling_starts", "request handled"),
                       ("provision_workflows", "provision wf"), ("delete_workflows", "delete wf")):
        if key in d:
            parts.append(f"{label} ×{d[key]}")
    return ", ".join(parts)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["drill", *(c for c, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in rows:
        lines.append("| " + " | ".join([str(d["drill"]), *(str(f(d)) for _, f in COLUMNS)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lxd", action="store_true", help="also the whole loop on LXD (test_drills)")
    ap.add_argument("--json", type=Path, help="also keep the raw figures (JSON lines) here")
    args = ap.parse_args(argv)
    print_machine()
    tests = ["tests/integration/test_broker_outage.py"]
    if args.lxd:
        tests.append("tests/integration/test_drills.py")
    with tempfile.TemporaryDirectory(prefix="oc-drills-") as tmp:
        report = args.json or Path(tmp) / "drills.jsonl"
        report.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *tests]
        print(f"# {' '.join(cmd[2:])}", flush=True)
        # PYTHONPATH: the processes the tests start (`overcloud ...` of this interpreter's
        # environment) import this checkout, also when that environment was installed from
        # another one (a worktree sharing the main checkout's venv)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OC_DRILL_REPORT": str(report),
                                                  "PYTHONPATH": path},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        rows = [json.loads(x) for x in report.read_text().splitlines()] if report.exists() else []
    print(table(rows))
    print(f"\npytest: {tail[0]}")
    if proc.returncode:
        print(proc.stdout[-4000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
