"""The DevTower's commands: `request apply`, `list`, `show`, `delete`, `orchestrator run`.

`apply` and `delete` only publish events; the orchestrator does the work. With `--wait` they
follow the workflow the orchestrator recorded (same state directory) and show its tasks
live, until it succeeds or fails.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devtower.cli.common import (
    console,
    install_signal_handlers,
    settings,
    setup_logging,
    styled,
    tower,
)
from devtower.cli.request import app as request_app
from devtower.cli.request import print_problems, read_document, summary
from orchestrator import views
from orchestrator.views import workflow_dict
from overcloud.errors import UserError

if TYPE_CHECKING:
    from devtower.client import TowerClient
    from orchestrator.registry import OverCloudRecord
    from orchestrator.request import OverCloudRequest
    from orchestrator.store import WorkflowRecord, WorkflowStore
    from overcloud.events import Event
    from overcloud.settings import Settings

orchestrator_app = typer.Typer(help="The orchestrator: events → workflows.", no_args_is_help=True)

STATE_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "pending": "dim",
               "cancelled": "dim", "skipped": "dim", "ready": "green", "provisioning": "yellow",
               "deleting": "yellow"}


def _store() -> WorkflowStore:
    from orchestrator.store import WorkflowStore

    path = settings().state_dir / "orchestrator" / "workflows.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return WorkflowStore(path)


def _styled(state: str) -> Text:
    return styled(state, STATE_STYLE.get(state, "white"))


def _tasks_table(wf: dict[str, Any], title: str) -> Table:
    """A workflow's tasks (`orchestrator.views.workflow_dict`, local or from the API)."""
    t = Table(title=title, title_justify="left")
    for col in ("task", "state", "tries", "time", "progress / error"):
        t.add_column(col, overflow="fold")
    now = time.time()
    for task in wf["tasks"]:
        took = ""
        if task["started"]:
            took = f"{(task['finished'] or now) - task['started']:.1f}s"
        state = str(task["state"])
        note = task["error"] if state == "failed" or (task["error"] and state == "running") \
            else (task["progress"] or "")
        t.add_row(str(task["name"]), _styled(state), str(task["attempts"] or ""), took,
                  str(note or ""))
    return t


def _wf_title(wf: dict[str, Any], subject: str) -> str:
    return f"{wf['kind']} {subject}: {wf['state']}"


def publish(s: Settings, event: Event, key: str) -> None:
    """Publish a request event for the orchestrator; a broker that is away is a user error."""
    from overcloud.bus import KafkaEventBus, ensure_topics
    from overcloud.errors import TemporaryError

    try:
        ensure_topics(s)
        bus = KafkaEventBus(s)
        bus.publish(event, key=key)
        bus.close()
    except TemporaryError as exc:
        raise UserError(f"{exc} (is it running? overcloud services up)") from None


def _follow(workflow_id: str, what: str, timeout: float) -> WorkflowRecord:
    """Show the workflow's tasks live until it finishes; the orchestrator must pick it up."""
    from orchestrator.store import WorkflowNotFound

    store = _store()
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            try:
                wf = store.get(workflow_id)
            except WorkflowNotFound:
                if time.monotonic() > deadline:
                    raise UserError(
                        f"no orchestrator picked up the {what} within {timeout:g}s; is it "
                        "running? (overcloud services up orchestrator)") from None
                live.update(f"waiting for the orchestrator to pick up the {what} …")
                time.sleep(0.25)
                continue
            live.update(_tasks_table(workflow_dict(wf), _wf_title(workflow_dict(wf), wf.subject)))
            if str(wf.state) in ("succeeded", "failed", "cancelled"):
                return wf
            time.sleep(0.25)


def _follow_remote(client: TowerClient, name: str, workflow_id: str, what: str,
                   timeout: float, gone_ok: bool = False) -> dict[str, Any] | None:
    """`_follow` through the DevTower: the same table, from `GET /v1/overclouds/NAME`
    (None: the OverCloud is gone, which ends a deletion)."""
    from devtower.client import TowerError

    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            try:
                detail = client.show(name)
            except TowerError as exc:
                if exc.status == 404 and gone_ok:
                    return None
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                detail = {"workflows": []}
            wf = next((w for w in detail["workflows"] if w["id"] == workflow_id), None)
            if wf is None:
                if time.monotonic() > deadline:
                    raise UserError(f"no orchestrator picked up the {what} within {timeout:g}s "
                                    "(ask the DevTower's operator)")
                live.update(f"waiting for the orchestrator to pick up the {what} …")
            else:
                live.update(_tasks_table(wf, _wf_title(wf, name)))
                if wf["state"] in ("succeeded", "failed", "cancelled"):
                    return dict(wf)
            time.sleep(0.5)


def apply(
    file: Annotated[Path, typer.Argument(help="The request document (YAML).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the workflow until ready or failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the placement plan (which node "
                                          "goes where, each host's score), create nothing.")] = False,
) -> None:
    """Create an OverCloud from a request document, or change one that runs (plan first).

    For a new name: publishes `OverCloudRequested` and prints its id. For an OverCloud that
    exists: prints the plan (what changes in place), then publishes `OverCloudUpdateRequested`
    unless `--dry-run`; the same document again changes nothing."""
    from orchestrator.registry import Registry
    from orchestrator.request import RequestInvalid, load_request
    from overcloud.events import OverCloudRequested

    remote = tower()
    if remote is not None:
        _apply_remote(remote, file, wait, timeout, dry_run)
        return
    try:
        req = load_request(file)
    except RequestInvalid as exc:
        print_problems(exc)
        raise typer.Exit(1) from None
    s = settings()
    existing = Registry(s).get(req.name)
    if existing is not None:
        _apply_update(s, file, req, existing, wait, timeout, dry_run)
        return
    if dry_run:
        _print_plan(req)
        return
    event = OverCloudRequested(name=req.name, owner=req.owner, spec=req.to_spec())
    publish(s, event, req.name)
    console.print(f"requested OverCloud {req.name}: request id {event.id}")
    if not wait:
        return
    wf = _follow(event.id, "request", timeout)
    rec = Registry(s).get(req.name)
    if str(wf.state) != "succeeded" or rec is None:
        raise UserError(f"OverCloud {req.name} failed: {wf.error or (rec.error if rec else '?')}")
    console.print(Text.assemble((f"OverCloud {req.name} is ready:", "green"), f" {rec.url}"))


def _print_changes(name: str, changes: list[str]) -> None:
    if not changes:
        console.print(f"{name} already runs this document: nothing to change", markup=False)
    for line in changes:
        style = {"+": "green", "-": "red", "~": "yellow"}.get(line[:1], "")
        console.print(Text(line, style=style), highlight=False, soft_wrap=True)


def _apply_update(s: Settings, file: Path, req: OverCloudRequest, rec: OverCloudRecord,
                  wait: bool, timeout: float, dry_run: bool) -> None:
    """`request apply` on an OverCloud that exists: the plan, then the update."""
    from orchestrator.request import RequestInvalid
    from orchestrator.update import plan_update
    from overcloud.events import OverCloudUpdateRequested

    try:
        plan = plan_update(rec, req)
    except RequestInvalid:
        raise UserError(f"the request {req.name} runs cannot be read back from the registry; "
                        "no change can be planned against it") from None
    if plan.refused:
        print_problems(plan.refusal(read_document(file), str(file)), outcome="nothing was changed")
        raise typer.Exit(1)
    console.print(f"{req.name} exists: applying this document changes", markup=False)
    _print_changes(req.name, plan.lines())
    if dry_run or plan.empty:
        if dry_run:
            console.print("dry run: nothing was changed, no event was published", markup=False)
        return
    if rec.state not in ("ready", "degraded"):
        raise UserError(f"{req.name} is {rec.state}; apply changes once it is ready")
    event = OverCloudUpdateRequested(name=req.name, owner=rec.owner, spec=req.to_spec())
    publish(s, event, req.name)
    console.print(f"requested an update of {req.name}: request id {event.id}", markup=False)
    if wait:
        wf = _follow(event.id, "update", timeout)
        _updated(req.name, wf.state, wf.error or "")


def _updated(name: str, state: object, error: str) -> None:
    if str(state) != "succeeded":
        raise UserError(f"the update of {name} failed: {error or 'see overcloud show ' + name}")
    console.print(Text(f"OverCloud {name} is updated", style="green"))


def _apply_remote(client: TowerClient, file: Path, wait: bool, timeout: float,
                  dry_run: bool = False) -> None:
    from overcloud.problems import DocumentInvalid

    try:
        sub = client.submit(read_document(file), str(file), dry_run=dry_run)
    except DocumentInvalid as exc:
        print_problems(exc)
        raise typer.Exit(1) from None
    name = str(sub["name"])
    if sub.get("update"):
        console.print(f"{name} exists: applying this document changes", markup=False)
        _print_changes(name, list(sub.get("changes") or []))
    elif dry_run:
        for line in sub.get("summary") or []:
            console.print(str(line), markup=False, highlight=False, soft_wrap=True)
    if "id" not in sub:
        if dry_run:
            console.print("dry run: nothing was changed, no event was published", markup=False)
        return
    if sub.get("update"):
        console.print(f"requested an update of {name}: request id {sub['id']}", markup=False)
        if sub.get("webhook_secret"):
            console.print(f"webhook secret (shown once; verifies X-OverCloud-Signature): "
                          f"{sub['webhook_secret']}", markup=False)
        if wait:
            wf = _follow_remote(client, name, str(sub["id"]), "update", timeout)
            _updated(name, (wf or {}).get("state"), str((wf or {}).get("error") or ""))
        return
    console.print(f"requested OverCloud {name}: request id {sub['id']}")
    if sub.get("webhook_secret"):
        console.print(f"webhook secret (shown once; verifies X-OverCloud-Signature): "
                      f"{sub['webhook_secret']}")
    if not wait:
        return
    wf = _follow_remote(client, name, str(sub["id"]), "request", timeout)
    detail = client.show(name)
    if wf is None or wf["state"] != "succeeded":
        raise UserError(f"OverCloud {name} failed: {(wf or {}).get('error') or detail.get('error')}")
    console.print(Text.assemble((f"OverCloud {name} is ready:", "green"), f" {detail['url']}"))


def _print_plan(req: OverCloudRequest) -> None:
    """Decide the placement as the orchestrator's `place` would, print it; publish nothing."""
    from orchestrator.hosts import drivers
    from orchestrator.inventory import plan_request
    from orchestrator.placement import describe
    from orchestrator.registry import Registry
    from overcloud.errors import TemporaryError

    s = settings()
    hosts = drivers(s)
    try:
        chosen, snap = plan_request(s, {n: d.reachable for n, d in hosts.items()}, Registry(s), req)
    except TemporaryError as exc:
        raise UserError(f"no placement now: {exc}") from None
    for line in [*summary(req), *describe(chosen, snap.views)]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if snap.load_error:
        console.print(f"(no live load: the DevLake could not be read: {snap.load_error})",
                      markup=False, highlight=False)
    console.print("dry run: nothing was created, no event was published", markup=False)


request_app.command("apply")(apply)


def list_(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every OverCloud: state, owner, nodes, URL."""
    from orchestrator.registry import Registry

    remote = tower()
    rows = remote.list() if remote is not None else [
        views.summary(r) for r in Registry(settings()).all()]
    if json_out:
        import orjson
        console.print_json(orjson.dumps([{k: r[k] for k in ("name", "state", "owner", "url",
                                                             "nodes")} for r in rows]).decode())
        return
    t = Table(title="OverClouds")
    for col in ("name", "state", "owner", "nodes", "url", "age"):
        t.add_column(col)
    for r in rows:
        name = str(r["name"])
        hosts = ", ".join(f"{node.removeprefix(name + '-')}@{host}"
                          for node, host in dict(r["nodes"]).items())
        t.add_row(name, _styled(str(r["state"])), str(r["owner"]), hosts, str(r["url"]),
                  f"{float(r['age_s']):.0f}s")
    console.print(t if rows else "no OverClouds (create one: overcloud request apply FILE)")


def show(name: Annotated[str, typer.Argument(help="OverCloud name.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print what GET "
                            "/v1/overclouds/NAME answers (with the request it runs).")] = False,
         ) -> None:
    """Nodes, hosts, addresses, stack state, URL and task history of one OverCloud."""
    remote = tower()
    if remote is not None:
        if as_json:
            _print_json(remote.show(name))
        else:
            _show(remote.show(name), stack=None, nets=[])
        return
    from orchestrator.hosts import drivers
    from orchestrator.registry import Registry

    s = settings()
    reg = Registry(s)
    rec = reg.get(name)
    if rec is None:
        raise UserError(f"no OverCloud named {name!r} (see: overcloud list)")
    detail = {**views.summary(rec), "nodes": views.nodes(rec),
              "workflows": [workflow_dict(wf) for wf in _store().list(subject=name)]}
    if as_json:
        _print_json({**detail, "spec": rec.spec})
        return
    hosts = drivers(s)
    stack = {n.node: "node stopped (paused)" if rec.state == "paused"
             else _stack_state(hosts.get(n.host), n.node) for n in rec.nodes}
    nets = [f"{h}: {s.overcloud_network(slot)[0]} {s.overcloud_network(slot)[1]}"
            for h, slot in sorted(reg.network_slots(name).items())]
    _show(detail, stack, nets)


def _print_json(data: object) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _show(d: dict[str, Any], stack: dict[str, str] | None, nets: list[str]) -> None:
    """`show`'s output from `GET /v1/overclouds/NAME`'s data; the stack containers column
    only on the UnderCloud machine (it asks each node's Docker)."""
    console.print(Text.assemble((str(d["name"]), "bold"), f" ({d['owner']}): ",
                                _styled(str(d["state"])), f"  {d['url']}"))
    if d.get("error"):
        console.print(f"  error: {d['error']}", markup=False)
    t = Table(title="nodes", title_justify="left")
    cols = ["node", "host", "address", "tiers"] + (["stack containers"] if stack is not None else [])
    for col in cols:
        t.add_column(col)
    for n in d["nodes"]:
        pooled = n.get("container") not in (None, n["node"])  # from the warm pool
        row = [str(n["node"]) + (f" ({n['container']})" if pooled else ""), str(n["host"]),
               str(n["address"]), "+".join(n["tiers"])]
        t.add_row(*row, *([stack.get(str(n["node"]), "?")] if stack is not None else []))
    console.print(t)
    if nets:
        console.print("networks: " + "; ".join(nets), markup=False)
    for wf in d["workflows"]:
        console.print(_tasks_table(wf, f"{wf['kind']} workflow {str(wf['id'])[:12]}: {wf['state']}"))


def _stack_state(host: object, node: str) -> str:
    from orchestrator.hosts import LxdDriver
    from overcloud.errors import OverCloudError

    if not isinstance(host, LxdDriver):
        return "?"
    try:
        out = host.exec(node, "docker", "ps", "--format", "{{.Names}} {{.Status}}", timeout=20)
    except OverCloudError:
        return "unreachable"
    return "; ".join(line.split(" ", 1)[0].split("-")[-2] + ": " + line.split(" ", 1)[1]
                     for line in out.splitlines() if " " in line and "-" in line) or "none"


def delete(
    name: Annotated[str, typer.Argument(help="OverCloud name.")],
    keep_data: Annotated[bool, typer.Option("--keep-data", help="Keep its DevLake database.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the deletion until done.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the orchestrator to start.")] = 60,
) -> None:
    """Remove the stack, containers, devices, secrets (and the DevLake unless --keep-data)."""
    from orchestrator.registry import Registry
    from overcloud.events import OverCloudDeleteRequested

    remote = tower()
    if remote is not None:
        answer = remote.delete(name, keep_data)
        console.print(f"delete of {name} requested: id {answer['id']}")
        if wait:
            done = _follow_remote(remote, name, str(answer["id"]), "deletion", timeout,
                                  gone_ok=True)
            if done is not None and done["state"] != "succeeded":
                raise UserError(f"deleting {name} failed: {done['error']}")
            console.print(styled(f"OverCloud {name} deleted", "green"))
        return
    s = settings()
    if Registry(s).get(name) is None:
        raise UserError(f"no OverCloud named {name!r} (see: overcloud list)")
    event = OverCloudDeleteRequested(name=name, keep_data=keep_data)
    publish(s, event, name)
    console.print(f"delete of {name} requested: id {event.id}")
    if wait:
        wf = _follow(event.id, "deletion", timeout)
        if str(wf.state) != "succeeded":
            raise UserError(f"deleting {name} failed: {wf.error}")
        console.print(styled(f"OverCloud {name} deleted", "green"))


@orchestrator_app.command("run")
def run_orchestrator(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Consume the events topic and run provisioning/deletion workflows until SIGTERM."""
    from devlake.consumer import KafkaDeadLetters
    from devlake.sinks import make_sink
    from devtower.services.catalog import CATALOG
    from orchestrator.backup import register_backup_actions
    from orchestrator.hosts import drivers
    from orchestrator.migration import register_migration_actions
    from orchestrator.pause import register_pause_actions
    from orchestrator.pool import Pool
    from orchestrator.provision import Context, register_actions
    from orchestrator.registry import Registry
    from orchestrator.service import Orchestrator
    from orchestrator.update import register_update_actions
    from orchestrator.workflow import ActionRegistry, Engine, WorkflowState
    from overcloud.bus import KafkaEventBus, ensure_topics, events_topic, make_consumer

    s = settings()
    setup_logging(verbose)
    ensure_topics(s)
    # the edge serves the URLs this orchestrator routes: started with it if it is not running
    # (it outlives the orchestrator: `services down edge` stops it)
    CATALOG["edge"].daemon(s).start()
    ctx = Context(settings=s, hosts=dict(drivers(s)), registry=Registry(s), bus=KafkaEventBus(s),
                  database_admin=make_sink(s.influx))
    actions = ActionRegistry()
    register_actions(actions, ctx)
    register_migration_actions(actions, ctx)
    register_update_actions(actions, ctx)
    register_backup_actions(actions, ctx)
    register_pause_actions(actions, ctx)
    store = _store()
    engine = Engine(store, actions)
    orch = Orchestrator(ctx, engine, store, KafkaDeadLetters(s))
    consumer = make_consumer(s, [events_topic(s)], f"{s.kafka.topic_prefix}-orchestrator")
    stop = threading.Event()
    install_signal_handlers(stop)
    # the warm pool: claimed by `place`, refilled by this thread while no workflow runs
    ctx.pool = Pool(s, ctx.hosts, ctx.registry,
                    busy=lambda: bool(store.list(state=WorkflowState.RUNNING)))
    threading.Thread(target=ctx.pool.run, args=(stop,), daemon=True, name="pool").start()
    console.print(f"orchestrator: {events_topic(s)} on {s.kafka.bootstrap}, hosts "
                  f"{', '.join(ctx.hosts)}")
    sys.stdout.flush()  # the banner is how `services up` sees it ready
    try:
        orch.run(consumer, stop)
    finally:
        consumer.close(autocommit=False)
