"""`overcloud alerts …`: the rules in force, checking and testing rule files, the evaluator."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from devtower.cli.common import console, install_signal_handlers, settings, setup_logging
from overcloud.errors import PermanentError, TemporaryError, UserError

if TYPE_CHECKING:
    from devlake.alerts.rules import Rule

app = typer.Typer(help="Alert rules on the metric stream.", no_args_is_help=True)

RulesOpt = Annotated[Path | None, typer.Option(
    "--rules", help="Rule file (default: the alerts.rules setting; built-ins only when empty).")]


def _rules(path: Path | None) -> list[Rule]:
    from devlake.alerts.rules import rules_in_force

    return rules_in_force(path or settings().alerts.rules or None)


def _watch(r: Rule) -> str:
    w = r.watch
    scope = "".join(f" {k}={v}" for k, v in w.where.items())
    group = f" by {','.join(w.group_by)}" if w.group_by else ""
    return f"{w.measurement}.{w.field}{scope}{group}"


def _when(ns: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9))


@app.command("list")
def list_(rules: RulesOpt = None) -> None:
    """The rules in force (built-ins + the rule file) and, if the evaluator runs, their states."""
    from devlake.alerts.rules import format_duration
    from devlake.alerts.runner import evaluator_running, read_state

    in_force = _rules(rules)
    table = Table("rule", "watch", "condition", "recover", "for", "no data", "severity", "actions",
                  box=None)
    for r in in_force:
        actions = ",".join(a.type if a.type != "event" else f"event:{a.event}"  # type: ignore[union-attr]
                           for a in r.actions) or "-"
        table.add_row(r.name, _watch(r), f"{r.condition} {r.threshold:g}",
                      f"{r.recover_at:g}" if r.condition not in ("==", "!=") else "-",
                      format_duration(r.for_), f"{r.no_data.policy} after {format_duration(r.no_data.after)}",
                      r.severity, actions)
    console.print(table)
    state = read_state(settings())
    if not evaluator_running(state):
        console.print("evaluator: not running (overcloud services up alerts)")
        return
    assert state is not None
    console.print(f"evaluator: pid {state['pid']}, {state.get('samples', 0)} samples, "
                  f"state at {_when(int(state.get('updated_ns', 0)))}")
    groups = [g for g in state.get("groups") or [] if g.get("status") != "seen"]
    if not groups:
        console.print("no alert pending or firing")
        return
    st = Table("rule", "group", "state", "value", "since", box=None)
    for g in groups:
        value = g.get("value")
        st.add_row(str(g["rule"]), ",".join(f"{k}={v}" for k, v in g["group"].items()) or "-",
                   str(g["status"]), "-" if value is None else f"{value:.3f}", _when(int(g["since_ns"])))
    console.print(st)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="YAML rule file.")]) -> None:
    """Check a rule file; every problem as FILE:LINE: path: message, exit 1 if any."""
    from devlake.alerts.rules import load_rule_file

    rules = load_rule_file(file)
    console.print(f"{file}: valid; {len(rules)} rules in force: {', '.join(r.name for r in rules)}")


@app.command("test")
def test_(
    file: Annotated[Path, typer.Argument(help="YAML rule file.")],
    since: Annotated[str, typer.Option(help="How far back to read the DevLake (e.g. 15m, 1h).")] = "15m",
) -> None:
    """Evaluate the rules over recent DevLake data (InfluxQL) and say what would fire."""
    from devlake.alerts.backtest import backtest
    from devlake.alerts.rules import load_rule_file, parse_duration
    from devlake.sinks import InfluxQL

    rules = load_rule_file(file)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise UserError(f"--since {exc}") from None
    s = settings()
    ql = InfluxQL(s.influx)
    try:
        result = backtest(ql, rules, seconds, s.influx.database_prefix, time.time_ns())
    except (TemporaryError, PermanentError) as exc:
        raise UserError(f"cannot read the DevLake: {exc}") from None
    finally:
        ql.close()
    console.print(f"{len(rules)} rules over {result.points} points of the last {since} "
                  f"({', '.join(result.databases) or 'no DevLake database'})")
    for t in result.transitions:
        group = ",".join(f"{k}={v}" for k, v in t.group.items()) or "-"
        console.print(f"  {_when(t.at_ns)} {t.rule.name} {group}: {t.state} "
                      f"(value {t.value:.3f}, {t.reason})")
    firing = [g for g in result.states if g["status"] == "firing"]
    pending = [g for g in result.states if g["status"] == "pending"]
    for g in firing:
        group = ",".join(f"{k}={v}" for k, v in g["group"].items()) or "-"
        console.print(f"would be firing now: {g['rule']} {group}")
    if not firing:
        console.print(f"nothing would be firing now ({len(pending)} pending)")


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write alerting/overcloud-alerts.yaml.")],
    rules: RulesOpt = None,
    datasource: Annotated[str, typer.Option(help="UID of the DevLake InfluxDB datasource.")] = "devlake",
) -> None:
    """Write the rules in force as Grafana alert-rule provisioning YAML."""
    import yaml

    from devlake.alerts.grafana import provisioning

    doc = provisioning(_rules(rules), datasource_uid=datasource)
    out = directory / "alerting" / "overcloud-alerts.yaml"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(doc, sort_keys=False))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    console.print(f"wrote {out} ({len(doc['groups'][0]['rules'])} rules)")


@app.command()
def run(rules: RulesOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Evaluate the rules on the metric stream until SIGTERM/SIGINT, notifying on every change."""
    from devlake.alerts.outbox import Outbox
    from devlake.alerts.runner import AlertRunner, Senders, state_dir
    from devlake.sinks import make_sink
    from overcloud.bus import close_producer, ensure_topics, make_consumer, make_producer, metrics_topic
    from overcloud.samples import Layer

    in_force = _rules(rules)
    s = settings()
    setup_logging(verbose)
    ensure_topics(s)
    consumer = make_consumer(s, [metrics_topic(s, layer) for layer in Layer], s.alerts.group,
                             auto_offset_reset="latest")
    producer = make_producer(s)
    sink = make_sink(s.influx)
    senders = Senders(s, producer, sink)
    from orchestrator.registry import Registry

    registry = Registry(s)  # paused OverClouds are silenced (orchestrator/pause.py)
    runner = AlertRunner(s, in_force, consumer, Outbox(state_dir(s) / "outbox.db"), senders,
                         muted=lambda: frozenset(r.name for r in registry.all()
                                                 if r.state == "paused"))
    stop = threading.Event()
    install_signal_handlers(stop)

    def ready() -> None:
        console.print(f"alerts: {len(in_force)} rules ({', '.join(r.name for r in in_force)}) on "
                      f"{s.kafka.bootstrap}, rules → {s.topic('events')}")
        # the banner is how `services up` sees it ready: only once partitions are assigned
        # (a new group starts at the latest offsets; samples sent while it joins are not seen)
        sys.stdout.flush()

    try:
        runner.run(stop, on_ready=ready)
    finally:
        consumer.close(autocommit=False)
        producer.flush(timeout=10)
        close_producer(producer, timeout=5)
        senders.close()
        sink.close()
    console.print(f"alerts stopped: {runner.evaluator.samples} samples, {runner.transitions} state changes")
