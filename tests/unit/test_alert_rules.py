"""Invalid rule files get every problem at once, as FILE:LINE: path: message; the outbox
records each state change once per channel and the webhook worker retries until delivered."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from devlake.alerts.evaluator import Evaluator
from devlake.alerts.grafana import provisioning
from devlake.alerts.outbox import Outbox, Worker, http_post
from devlake.alerts.rules import RulesInvalid, load_rule_file, parse_rules
from overcloud.settings import load_settings
from overcloud.waiting import wait_until

INVALID = Path(__file__).parent / "testcases" / "alerts" / "invalid"

EXPECTED = {
    # walked once per anchor, not once per alias: expanded, it would never finish
    "alias_bomb.yaml": [f":{i + 2}: {c}: unknown key" for i, c in enumerate("abcdefghi")],
    "bad_condition.yaml": [":4: rules[0].condition: must be '>', '>=', '<', '<=', '==' or '!='"],
    "bad_duration.yaml": [":6: rules[0].for: must be a duration such as 30s"],
    "bad_expression.yaml": [":3: rules[0].watch: 'f ** 2': only field names, numbers and + - * /"],
    "bad_label.yaml": [":2: rules[0]: label names 'team-name' must be letters, digits and _"],
    "bad_nodata.yaml": [":6: rules[0].no_data.policy: must be 'keep', 'alert' or 'resolve', got 'panic'"],
    "builtin_override_wrong.yaml": [":2: rules[0]: recover (60) must be at or below threshold (50)"],
    "duplicate_key.yaml": [":3: rules[0].name: duplicate key 'name' (first at line 2)"],
    "duplicate_rule.yaml": [":6: rules[1].name: rule 'a' is defined twice (first as rules[0])"],
    "empty.yaml": ["empty.yaml: is empty: write `rules:`"],
    "event_without_host.yaml": [":2: rules[0]: the node_overloaded event names a host: watch.group_by"],
    "malformed_yaml.yaml": ["malformed YAML: while parsing a flow sequence"],
    "misspelled_key.yaml": [":2: rules[0].threshold: is required",
                            ":5: rules[0].treshold: unknown key (did you mean 'threshold'?)"],
    "not_a_mapping.yaml": [":1: must be a mapping with a `rules:` list"],
    "query_time_condition.yaml": [":3: rules[0].watch: WHERE: 'time > now() - 1h' is not tag = 'value'"],
    "recover_wrong_side.yaml": [":2: rules[0]: recover (95) must be at or below threshold (90)"],
    "several_problems.yaml": [":2: rules[0].name: 'Big Alert': lowercase",
                              ":3: rules[0].watch: needs measurement and field",
                              ":5: rules[0].threshold: must be a number, got 'high'"],
    "unknown_action.yaml": [":6: rules[0].actions[0]: type must be one of webhook, alertmanager, event"],
}


def test_every_invalid_file_is_covered() -> None:
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_rule_file(name: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rule_file(INVALID / name)
    lines = info.value.lines()
    assert len(lines) == len(EXPECTED[name]), lines
    for want, got in zip(EXPECTED[name], lines, strict=True):
        assert got.startswith(str(INVALID / name)) and want in got, (want, got)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RulesInvalid, match="cannot read it"):
        load_rule_file(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_bytes(b"rules:\0")
    with pytest.raises(RulesInvalid, match="binary"):
        load_rule_file(tmp_path / "b.yaml")


def test_grafana_export_has_hysteresis_and_for() -> None:
    (rule,) = parse_rules("rules:\n  - {name: node-overloaded, for: 5s}\n")
    (g,) = provisioning([rule])["groups"][0]["rules"]
    cond = g["data"][2]["model"]["conditions"][0]
    assert cond["evaluator"] == {"type": "gt", "params": [85.0]}
    assert cond["unloadEvaluator"] == {"type": "lt", "params": [70.0]}
    assert g["for"] == "5s" and g["noDataState"] == "KeepLast"
    assert 'mean("cpu_percent")' in g["data"][0]["model"]["query"]


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, object]]] = []
    fail_first: ClassVar[int] = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first:
            _Hook.fail_first -= 1
            self.send_response(503)
        else:
            _Hook.got.append({"key": self.headers["Idempotency-Key"], **orjson.loads(body)})
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_outbox_once_per_change_and_webhook_retries(tmp_path: Path) -> None:
    import httpx

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    (rule,) = parse_rules(f"rules:\n  - name: node-overloaded\n    for: 0s\n    actions: "
                          f"[{{type: webhook, url: '{url}'}}, {{type: event, event: node_overloaded}}]\n")
    s = load_settings(env={"OVERCLOUD_STATE_DIR": str(tmp_path)})
    outbox = Outbox(tmp_path / "outbox.db")
    for _ in range(2):  # the same samples twice: a restart that re-read them
        ev = Evaluator([rule])
        ev.feed("resource_undercloud", {"host": "lxd1"}, {"cpu_percent": 99.0}, 10**9)
        added = outbox.add(ev.drain(), s)
        assert added == (4 if _ == 0 else 0)   # AlertFiring, NodeOverloaded, webhook, devlake
    client = httpx.Client(timeout=5)
    stop = threading.Event()
    worker = Worker(outbox, "webhook", lambda k, t, b: http_post(client, t, b, {"Idempotency-Key": k}),
                    stop, max_attempts=5)
    worker.start()
    try:
        wait_until(lambda: worker.delivered == 1, timeout=10, what="webhook delivery")
    finally:
        stop.set()
        worker.join(5)
        server.shutdown()
        client.close()
    (got,) = _Hook.got
    assert got["status"] == "firing" and got["labels"] == {
        "alertname": "node-overloaded", "severity": "critical", "layer": "undercloud", "host": "lxd1"}
    assert outbox.counts()["webhook"] == {"delivered": 1, "pending": 0, "failed": 0}
    assert outbox.counts()["events"]["pending"] == 2
