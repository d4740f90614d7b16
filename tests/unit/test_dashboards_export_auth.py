"""`dashboards export` with InfluxDB authentication: a developer's export signs in as the
OverCloud's read-only user; the operator's keeps the admin password out of the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.registry import Registry
from overcloud import influxauth
from overcloud.settings import load_settings
from tests.helpers import run_cli


def _setup(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    state = tmp_path / "state"
    env = {"OVERCLOUD_STATE_DIR": str(state), "OVERCLOUD_CONFIG": ""}
    s = load_settings(env=env)
    accounts = influxauth.new_accounts(Path(s.influx.credentials))
    Registry(s).admit("blog", "dev@example.com", {}, "req-42")
    return env, accounts


def _datasource(out: Path) -> dict[str, object]:
    ds = yaml.safe_load((out / "provisioning/datasources/overcloud.yaml").read_text())
    return dict(ds["datasources"][0])


def test_a_developers_export_uses_the_overclouds_read_only_user(tmp_path: Path) -> None:
    env, _ = _setup(tmp_path)
    out = tmp_path / "grafana"
    proc = run_cli(["dashboards", "export", str(out), "--overcloud", "blog"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ds = _datasource(out)
    s = load_settings(env=env)
    reader = influxauth.reader(s.influx.credentials, "blog", "req-42")
    assert reader is not None
    assert ds["basicAuth"] is True and ds["basicAuthUser"] == "ro_blog"
    assert ds["secureJsonData"] == {"basicAuthPassword": reader.password}
    assert ds["jsonData"]["dbName"] == "devlake_blog"  # type: ignore[index]
    assert (out / "provisioning/datasources/overcloud.yaml").stat().st_mode & 0o077 == 0
    assert len(list((out / "dashboards").iterdir())) == 1  # the OverCloud dashboard only
    assert not (out / "provisioning/alerting").exists()


def test_the_operators_export_keeps_the_admin_password_out(tmp_path: Path) -> None:
    env, accounts = _setup(tmp_path)
    out = tmp_path / "grafana"
    proc = run_cli(["dashboards", "export", str(out)], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ds = _datasource(out)
    assert ds["basicAuthUser"] == accounts["admin_user"]
    assert ds["secureJsonData"] == {"basicAuthPassword": "$OVERCLOUD_INFLUX_PASSWORD"}
    assert accounts["admin_password"] not in "".join(
        p.read_text() for p in out.rglob("*") if p.is_file())


def test_an_unknown_or_malformed_overcloud_is_a_clean_error(tmp_path: Path) -> None:
    env, _ = _setup(tmp_path)
    for name, says in (("nope", "no OverCloud named nope"), ("Bad\nname", "DNS label")):
        proc = run_cli(["dashboards", "export", str(tmp_path / "g"), "--overcloud", name], env)
        assert proc.returncode != 0 and says in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
