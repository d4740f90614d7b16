"""Bad configuration or arguments: one clear line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_port, run_cli


def _closed_ports(tmp_path: Path) -> dict[str, str]:
    # ports nothing listens on, and a private state dir: these tests start no service
    return {"OVERCLOUD_STATE_DIR": str(tmp_path), "OVERCLOUD_KAFKA_PORT": str(free_port()),
            "OVERCLOUD_INFLUX_PORT": str(free_port()), "OVERCLOUD_CONFIG": ""}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["services", "status"], {"OVERCLOUD_KAFKA_PORT": "abc"}, "kafka.port must be int"),
        (["services", "status"], {"OVERCLOUD_INFLUX_DIALECT": "v9"}, "influx.dialect must be"),
        (["--config", "/nonexistent.toml", "services", "status"], {}, "does not exist"),
        (["services", "up", "postgres"], {}, "unknown service(s) postgres"),
        (["agent", "run", "--interval", "0.5", "--once"], {}, "--interval must be at least 1"),
        (["agent", "run", "--layer", "quantum", "--once"], {}, "unknown layer 'quantum'"),
        (["agent", "run", "--node", "bad node!", "--once"], {}, "take names of letters"),
        (["metrics", "query", "SELECT 1"], {}, "unreachable"),
        (["metrics", "latest", "--measurement", "x;DROP"], {}, "bad measurement name"),
        (["migrate", "blog", "--to", "lxd2", "--db-method", "rsync';x"], {},
         "--db-method is replicate or copy, not \"rsync';x\""),
    ],
)
def test_one_line_error(tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    proc = run_cli(args, {**_closed_ports(tmp_path), **env}, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and message in lines[0], lines[0]


def test_bad_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "oc.toml"
    cfg.write_text("[agent]\ninterval = 'x'\n")
    proc = run_cli(["--config", str(cfg), "services", "status"], _closed_ports(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "agent.interval must be float" in proc.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (["frobnicate"], ["agent", "run", "--interval", "soon"]):
        proc = run_cli(args, _closed_ports(tmp_path))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_agent_once_without_broker_spools_and_says_so(tmp_path: Path) -> None:
    proc = run_cli(["agent", "run", "--once", "--node", "n1"],
                   {**_closed_ports(tmp_path), "OVERCLOUD_AGENT_SEND_TIMEOUT": "1"}, timeout=90)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "kept in the spool" in proc.stdout
    assert list((tmp_path / "spool").glob("*.sqlite"))
