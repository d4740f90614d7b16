"""Dashboards as code: SDK round-trip, template substitution, the metric contract, provisioning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import dashboards
from dashboards import provisioning
from dashboards.influxql import DATASOURCE_UID, InfluxQLQuery
from dashboards.templating import raw_targets
from overcloud.settings import load_settings

METRICS = Path(__file__).resolve().parents[2] / "docs" / "METRICS.md"
COMMON_TAGS = {"overcloud", "cluster", "node", "host", "layer"}
VALUES = {"overcloud": "devlake_blog", "node": ["n1", "n-2"], "tier": ["app+web"]}


def documented() -> dict[str, set[str]]:
    """measurement → documented fields and tags, read from the tables of docs/METRICS.md."""
    out: dict[str, set[str]] = {}
    for line in METRICS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_0-9*/]+)`", cells[1] + " " + cells[2])
        words: set[str] = set(COMMON_TAGS)
        for n in names:
            words.add(n)
            if n.startswith("load1/"):
                words.update({"load1", "load5", "load15"})
        for m in re.findall(r"`([a-z_]+)`", cells[0]):
            out[m] = words
    return out


@pytest.mark.parametrize("d", dashboards.all_dashboards(), ids=lambda d: d.uid)
def test_round_trip_through_the_sdk_models(d: object) -> None:
    from grafana_foundation_sdk.models.dashboard import Dashboard

    assert isinstance(d, Dashboard)
    data = dashboards.to_json(d)
    back = dashboards.from_json(json.loads(json.dumps(data)))
    assert dashboards.to_json(back) == data
    targets = raw_targets(back)  # raises unless every target decoded as an InfluxQL query
    assert targets and all(q.startswith(("SELECT", "SHOW")) for _, q in targets)
    for p in data["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
            assert all(t["rawQuery"] and t["datasource"]["uid"] == DATASOURCE_UID for t in p["targets"])


def test_unknown_target_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a raw InfluxQL query"):
        InfluxQLQuery.from_json({"refId": "A", "query": "x", "rawQuery": False})


def test_queries_substitute_every_variable_like_grafana() -> None:
    overcloud = next(d for d in dashboards.all_dashboards() if d.uid == "overcloud-overcloud")
    qs = dashboards.queries(overcloud, VALUES, time_range="15m", interval="30s")
    assert len(qs) >= 15
    for title, q in qs:
        assert not re.search(r"\$\w|\$\{|\[\[", q), (title, q)  # `$/` is the regex anchor
        assert '"devlake_blog".."' in q
    text = "\n".join(q for _, q in qs)
    assert "time > now() - 15m" in text and "GROUP BY time(30s)" in text
    # multi-valued variables become escaped regex alternatives
    assert '"node" =~ /^(n1|n-2)$/' in text and r'"tier" =~ /^(app\+web)$/' in text
    with pytest.raises(KeyError, match=r"\$tier"):
        dashboards.queries(overcloud, {"overcloud": "devlake_blog", "node": "n1"})


def test_every_measurement_and_field_is_documented() -> None:
    docs = documented()
    for d in dashboards.all_dashboards():
        for title, q in dashboards.queries(d, VALUES):
            body = re.sub(r'\s+AS\s+"[^"]+"', "", q)  # aliases are ours, not stored names
            measurements = re.findall(r'FROM (?:"[^"]+"\.\.)?"(\w+)"', body)
            assert measurements, (title, q)
            for m in measurements:
                assert m in docs, f"{d.title} / {title}: measurement {m} not in docs/METRICS.md"
            known = set().union(*(docs[m] for m in measurements))
            for ident in re.findall(r'"(\w+)"', body):
                if ident in measurements or ident.startswith("devlake_"):
                    continue
                assert ident in known, f"{d.title} / {title}: {ident!r} not documented for {measurements}"


def test_drill_down_links() -> None:
    by_uid = {d.uid: dashboards.to_json(d) for d in dashboards.all_dashboards()}
    overview = json.dumps(by_uid["overcloud-undercloud"])
    to_node = "/d/overcloud-overcloud/overcloud?var-overcloud=$overcloud&var-node=${__data.fields.node}"
    assert to_node in overview
    oc = by_uid["overcloud-overcloud"]
    assert [v["name"] for v in oc["templating"]["list"]] == ["overcloud", "node", "tier"]
    assert [p["title"] for p in oc["panels"] if p["type"] == "row"] == ["Resource", "Flow", "Service"]
    nodes = next(p for p in oc["panels"] if p["title"] == "Nodes")
    assert "var-node=${__data.fields.node}" in nodes["fieldConfig"]["defaults"]["links"][0]["url"]
    repeated = [p for p in by_uid["overcloud-undercloud"]["panels"] if p.get("repeat") == "overcloud"]
    assert repeated and repeated[0]["type"] == "row"


def test_provisioning_files_and_idempotent_write(tmp_path: Path) -> None:
    influx = load_settings(env={"OVERCLOUD_CONFIG": "", "OVERCLOUD_INFLUX_TOKEN": "s3cret"}).influx
    files = provisioning.plan(influx, dashboards.all_dashboards(), "/var/lib/grafana/dashboards/overcloud")
    by_path = {str(f.path): f.content for f in files}
    ds = yaml.safe_load(by_path["provisioning/datasources/overcloud.yaml"])["datasources"][0]
    assert ds["type"] == "influxdb" and ds["uid"] == DATASOURCE_UID
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == "devlake_undercloud"
    assert "s3cret" not in by_path["provisioning/datasources/overcloud.yaml"]  # only $OVERCLOUD_INFLUX_TOKEN
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token $OVERCLOUD_INFLUX_TOKEN"
    prov = yaml.safe_load(by_path["provisioning/dashboards/overcloud.yaml"])["providers"][0]
    assert prov["options"]["path"] == "/var/lib/grafana/dashboards/overcloud"
    assert {"dashboards/overcloud-undercloud.json", "dashboards/overcloud-overcloud.json",
            "dashboards/overcloud-alerts.json"} <= set(by_path)
    assert len(provisioning.write(files, tmp_path)) == len(files)
    assert provisioning.write(files, tmp_path) == []  # same inputs, nothing rewritten
    back = dashboards.from_json(json.loads((tmp_path / "dashboards/overcloud-alerts.json").read_text()))
    assert back.uid == "overcloud-alerts"


def test_export_cli_writes_dashboards_and_alert_rules(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    env = {"OVERCLOUD_CONFIG": "", "OVERCLOUD_STATE_DIR": str(tmp_path / "state")}
    out = run_cli(["dashboards", "export", str(tmp_path / "grafana")], env, check=True)
    assert out.stdout.count("wrote") == 6
    rules = yaml.safe_load((tmp_path / "grafana/provisioning/alerting/overcloud.yaml").read_text())
    assert rules["groups"][0]["rules"], "the built-in rules are exported"
    assert all(q["datasourceUid"] == DATASOURCE_UID for r in rules["groups"][0]["rules"] for q in r["data"]
               if "datasourceUid" in q and q["datasourceUid"] != "__expr__")
    again = run_cli(["dashboards", "export", str(tmp_path / "grafana")], env, check=True)
    assert again.stdout.count("unchanged") == 6
