"""`overcloud agent run` with several layers: argument mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_port, run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "resource,bogus"], "unknown layer 'bogus'"),
        (["--layer", "flow"], "flow layer measures a machine container"),
        (["--layer", "service"], "service layer needs --url"),
        (["--layer", "service", "--url", "ftp://x/"], "--url must be an http"),
        (["--layer", "flow", "--instance", "n1", "--lxd-host", "nope"], "--lxd-host must name"),
        (["--layer", "flow", "--tiers", "n1"], "--tiers takes NODE=TIERS"),
    ],
)
def test_layer_argument_errors(tmp_path: Path, args: list[str], message: str) -> None:
    env = {"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_KAFKA_PORT": str(free_port()),
           "OVERCLOUD_CONFIG": ""}
    proc = run_cli(["agent", "run", *args, "--once"], env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
