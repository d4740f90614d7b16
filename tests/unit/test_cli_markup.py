"""User text is printed as written, never read as rich markup (issue 9 §2).

Every command path that echoes something the user (or a user's data) wrote — arguments,
file names, request and rule values, registry records, task errors, DevLake tag values —
gets a payload with a closing tag (`[/x]`, which made rich raise MarkupError: a traceback
instead of the message), an opening tag (`[bold]`, which rich swallowed and restyled the
rest with) and an emoji code (`:smile:`, which rich replaced). The payload must come out
literally and the command must end as it should (exit 0 or a one-line error, exit 1).

The CLI runs as a subprocess with a private state directory and ports nothing listens on,
so no service is needed; the DevLake-fed tables (`metrics`, `top`) are rendered in-process
from canned InfluxQL series through the CLI's own console, and against a real InfluxDB in
tests/integration/test_cli_markup_devlake.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.helpers import free_port, run_cli

MARKUP = "[/x] [bold]b :smile:"
"""In arguments, values and records: a closing tag, an opening tag, an emoji code."""
IN_PATH = "[bold]d :smile:"
"""In a file or directory name, which cannot hold the '/' of a closing tag."""

REQUEST = ("apiVersion: overcloud/v1\nkind: OverCloud\nname: blog\nowner: {owner}\n"
           "saas: {{stack: wordpress}}\n")
RULES = ("rules:\n  - name: {name}\n    watch: {{measurement: service_http, field: latency_ms, "
         "where: {{node: {value}}}, group_by: [node]}}\n    condition: '>'\n    threshold: 800\n"
         "    labels: {{team: {value}}}\n")


def _env(tmp_path: Path) -> dict[str, str]:
    return {"OVERCLOUD_STATE_DIR": str(tmp_path / "state"), "OVERCLOUD_CONFIG": "",
            "OVERCLOUD_KAFKA_PORT": str(free_port()), "OVERCLOUD_INFLUX_PORT": str(free_port()),
            "OVERCLOUD_AGENT_SEND_TIMEOUT": "1"}


def _q(text: str) -> str:
    """YAML single-quoted scalar."""
    return "'" + text.replace("'", "''") + "'"


def _files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / IN_PATH
    d.mkdir()
    files = {
        "request_ok": d / "ok.yaml",
        "request_bad": d / "bad.yaml",
        "rules_ok": d / "rules.yaml",
        "rules_bad": d / "rules-bad.yaml",
    }
    files["request_ok"].write_text(REQUEST.format(owner=_q(MARKUP)))
    files["request_bad"].write_text(REQUEST.format(owner="dev").replace("name: blog", f"name: {_q(MARKUP)}"))
    files["rules_ok"].write_text(RULES.format(name="web-slow", value=_q(MARKUP)))
    files["rules_bad"].write_text(RULES.format(name=_q(MARKUP), value="n1"))
    return files


#: (id, args with {placeholders}, extra env, exit code, stream, text that must appear)
CASES: list[tuple[str, list[str], dict[str, str], int, str, str]] = [
    ("request validate: a valid request's summary", ["request", "validate", "{request_ok}"], {}, 0,
     "stdout", f"from {MARKUP}"),
    ("request validate: a file name in the summary's problems", ["request", "validate", "{request_bad}"],
     {}, 1, "stderr", f"{IN_PATH}/bad.yaml:3: name: {MARKUP!r} must be a DNS label"),
    ("request apply: the problems", ["request", "apply", "{request_bad}"], {}, 1, "stderr",
     f"name: {MARKUP!r}"),
    ("alerts validate: the file name", ["alerts", "validate", "{rules_ok}"], {}, 0, "stdout",
     f"{IN_PATH}/rules.yaml: valid"),
    ("alerts validate: a rule's problems", ["alerts", "validate", "{rules_bad}"], {}, 1, "stderr",
     f"rules[0].name: {MARKUP!r}: lowercase"),
    ("alerts list: the rules table", ["alerts", "list", "--rules", "{rules_ok}"], {}, 0, "stdout",
     f"node={MARKUP}"),
    ("alerts test: --since", ["alerts", "test", "{rules_ok}", "--since", MARKUP], {}, 1, "stderr",
     f"got {MARKUP!r}"),
    ("alerts export: the directory", ["alerts", "export", "{dir}"], {}, 0, "stdout",
     "wrote {dir}/alerting/overcloud-alerts.yaml"),
    ("dashboards export: the directory", ["dashboards", "export", "{dir}"], {}, 0, "stdout",
     "{dir}/dashboards/overcloud-alerts.json"),
    ("dashboards push: --url", ["dashboards", "push", "--url", MARKUP], {}, 1, "stderr", f"got {MARKUP!r}"),
    ("show: an unknown name", ["show", MARKUP], {}, 1, "stderr", f"no OverCloud named {MARKUP!r}"),
    ("delete: an unknown name", ["delete", MARKUP], {}, 1, "stderr", f"no OverCloud named {MARKUP!r}"),
    ("migrate: an unknown name", ["migrate", MARKUP, "--to", "lxd1"], {}, 1, "stderr",
     f"no OverCloud named {MARKUP!r}"),
    ("agent run: --layer", ["agent", "run", "--once", "--layer", MARKUP], {}, 1, "stderr", repr(MARKUP)),
    ("agent run: --tiers", ["agent", "run", "--once", "--tiers", MARKUP], {}, 1, "stderr", repr(MARKUP)),
    ("agent run: --url", ["agent", "run", "--once", "--url", MARKUP], {}, 1, "stderr", repr(MARKUP)),
    ("services up: a service name", ["services", "up", MARKUP], {}, 1, "stderr", MARKUP),
    ("metrics latest: --measurement", ["metrics", "latest", "--measurement", MARKUP], {}, 1, "stderr",
     f"bad measurement name {MARKUP!r}"),
    ("top: --window", ["top", "--window", MARKUP], {}, 1, "stderr", f"got {MARKUP!r}"),
    ("undercloud show: a host name", ["undercloud", "show", MARKUP], {}, 1, "stderr", MARKUP),
    ("undercloud drain: a host name", ["undercloud", "drain", MARKUP], {}, 1, "stderr", MARKUP),
    ("undercloud add-site: a site name", ["undercloud", "add-site", MARKUP], {}, 1, "stderr", MARKUP),
    ("undercloud set: a label", ["undercloud", "set", "lxd1", "--label", MARKUP], {}, 1, "stderr", MARKUP),
    ("a setting from the environment", ["services", "status"], {"OVERCLOUD_INFLUX_DIALECT": MARKUP}, 1,
     "stderr", f"got {MARKUP!r}"),
    ("a config file name", ["--config", f"/nonexistent/{IN_PATH}.toml", "services", "status"], {}, 1,
     "stderr", f"{IN_PATH}.toml does not exist"),
    ("list: a registry record", ["list"], {}, 0, "stdout", MARKUP),
    ("show: a registry record", ["show", "blog"], {}, 0, "stdout", f"blog ({MARKUP}): failed"),
    ("show: the record's error", ["show", "blog"], {}, 0, "stdout", f"error: boom {MARKUP}"),
    ("show: a task's error", ["show", "blog"], {}, 0, "stdout", f"no host {MARKUP}"),
]


def _seed_registry(env: dict[str, str]) -> None:
    """An OverCloud whose owner, error and task error carry the payload, as `show` reads them."""
    from orchestrator.registry import Registry
    from orchestrator.store import WorkflowStore
    from orchestrator.workflow import TaskSpec, TaskState, WorkflowSpec
    from overcloud.settings import load_settings

    s = load_settings(env=env)
    reg = Registry(s)
    assert reg.admit("blog", MARKUP, {}, "r1")
    reg.set_state("blog", "failed", error=f"boom {MARKUP}")
    path = s.state_dir / "orchestrator" / "workflows.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = WorkflowStore(path)
    wid = store.create(WorkflowSpec("provision", "blog", (TaskSpec("place", "place"),)), {})
    store.task_started(wid, "place")
    store.task_finished(wid, "place", TaskState.FAILED, f"no host {MARKUP}")
    store.close()


@pytest.mark.parametrize(("args", "extra", "code", "stream", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_payload_printed_as_written(tmp_path: Path, args: list[str], extra: dict[str, str], code: int,
                                   stream: str, expected: str) -> None:
    env = _env(tmp_path)
    paths = {k: str(v) for k, v in _files(tmp_path).items()}
    paths["dir"] = str(tmp_path / IN_PATH / "out")
    if args in (["list"], ["show", "blog"]):
        _seed_registry(env)
    proc = run_cli([a.format(**paths) for a in args], {**env, **extra}, timeout=180)
    out = proc.stdout if stream == "stdout" else proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert expected.format(**paths) in out, out
    if code == 1:
        assert proc.stderr.startswith(("error: ", paths["request_bad"])), proc.stderr


def test_usage_error_with_markup(tmp_path: Path) -> None:
    proc = run_cli([MARKUP], _env(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


# --- DevLake-fed tables, through the CLI's own console -------------------------------------------


def _series() -> list[dict[str, Any]]:
    return [{"name": "service_http", "tags": {"target": MARKUP, "node": "[red]n1"},
             "columns": ["time", "latency_ms", MARKUP], "values": [[10**18, 12.5, MARKUP]]}]


def test_metrics_tables() -> None:
    from devtower.cli import metrics
    from devtower.cli.common import console

    with console.capture() as cap:
        metrics._print_series(_series(), f"overcloud_{MARKUP}")
    out = cap.get()
    assert f"target={MARKUP}" in out and "node=[red]n1" in out and f"(overcloud_{MARKUP})" in out
    assert out.count(MARKUP) >= 4  # tags, database, a column name, a value


def test_top_frame_on_any_console() -> None:
    from datetime import UTC, datetime

    from dashboards.terminal import Frame, Line, render
    from devtower.cli.common import console

    line = Line({"host": MARKUP, "node": MARKUP, "peer": MARKUP, "target": MARKUP, "service": MARKUP},
                {"cpu": 1.0, "error": f"HTTP 500 {MARKUP}", "state": MARKUP, "health": MARKUP,
                 "up": 0}, {"cpu": [1.0, 2.0]}, 10**18)
    sections = {k: [line] for k in ("hosts", "machines", "nodes", "flows", "http", "containers")}
    frame = Frame(f"overcloud top — {MARKUP}", datetime.now(UTC), sections, (MARKUP,), (MARKUP,))
    # the CLI's console, and a console with rich's defaults (markup and emoji on)
    for target in (console, Console(width=400, markup=True, emoji=True)):
        with target.capture() as cap:
            target.print(render(frame))
        out = cap.get()
        assert out.count(MARKUP) >= 10 and f"HTTP 500 {MARKUP}" in out, out
