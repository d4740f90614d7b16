"""The stack's Compose template, per node role, checked with the real Compose v2 binary.

`docker-compose config` interpolates and validates without a Docker daemon, so this runs
anywhere: it proves which services each role starts, that every credential is the generated
one, and that a missing secret is an error rather than a default.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.images import compose_binary
from orchestrator.stack.compose import COMPOSE_FILE, Role, StackSecrets, env_file


def _config(env_text: str, tmp_path: Path) -> dict[str, Any]:
    env = tmp_path / ".env"
    env.write_text(env_text)
    proc = subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env),
         "config", "--format", "json"],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize(
    ("role", "services"),
    [(Role.ALL, {"db", "wordpress", "nginx"}), (Role.DB, {"db"}),
     (Role.WEB, {"wordpress", "nginx"}), (Role.APP, {"wordpress"})],
)
def test_each_role_runs_its_tiers(role: Role, services: set[str], tmp_path: Path) -> None:
    creds = StackSecrets.generate()
    split = {"db_host": "10.231.1.20", "db_bind": "10.231.1.20"} if role is not Role.ALL else {}
    if role is Role.APP:
        split["app_bind"] = "10.231.1.21"
    cfg = _config(env_file("oc1", creds, role, http_port=8080, **split), tmp_path)
    assert set(cfg["services"]) == services
    assert cfg["name"] == "oc1"
    for svc in cfg["services"].values():
        assert svc["init"] is True
        assert svc["image"].startswith("overcloud/") and not svc["image"].endswith(":latest")
        assert "healthcheck" in svc
    if "wordpress" in services:
        wp = cfg["services"]["wordpress"]["environment"]
        assert wp["DB_PASSWORD"] == creds.db_password
        assert wp["DB_HOST"] == ("db:3306" if role is Role.ALL else "10.231.1.20:3306")
    if "nginx" in services:
        assert cfg["services"]["nginx"]["depends_on"]["wordpress"]["condition"] == (
            "service_started"
        )
        assert cfg["services"]["nginx"]["ports"][0]["published"] == "8080"
        assert cfg["services"]["nginx"]["environment"]["APP_UPSTREAM"] == "wordpress:80"
    if role is Role.APP:  # published on its node's address for the web nodes' nginx
        assert "DB_ROOT_PASSWORD" not in cfg["services"]["wordpress"]["environment"]
        port = cfg["services"]["wordpress"]["ports"][0]
        assert (port["host_ip"], port["published"], port["target"]) == ("10.231.1.21", "8080", 80)
    if "db" in services:
        db = cfg["services"]["db"]
        assert db["environment"]["DB_ROOT_PASSWORD"] == creds.db_root_password
        assert db["volumes"][0]["type"] == "volume"
        assert db["ports"][0]["host_ip"] == ("127.0.0.1" if role is Role.ALL else "10.231.1.20")
    if role is Role.ALL:
        dep = cfg["services"]["wordpress"]["depends_on"]["db"]
        assert dep["condition"] == "service_healthy"


def test_a_missing_secret_is_an_error(tmp_path: Path) -> None:
    text = env_file("oc1", StackSecrets.generate(), Role.ALL)
    text = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("DB_PASSWORD="))
    env = tmp_path / ".env"
    env.write_text(text)
    proc = subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env), "config"],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "DB_PASSWORD" in proc.stderr


def test_secrets_are_fresh_and_never_the_seed_default() -> None:
    a, b = StackSecrets.generate(), StackSecrets.generate()
    assert a.db_password != b.db_password and a.wp_keys != b.wp_keys
    for creds in (a, b):
        assert "wordpress" not in (creds.db_password, creds.db_root_password)
        assert len(creds.db_password) >= 32
