"""The update plan: what applying a changed document to a running OverCloud would do."""

from __future__ import annotations

from orchestrator.registry import NodeRecord, OverCloudRecord
from orchestrator.request import OverCloudRequest, parse_request
from orchestrator.update import plan_update, update_spec

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: blog
owner: {owner}
cluster: {{nodes: 2, cpu: {cpu}, memory: {memory}}}
devlake: {{retention: {retention}}}
devtower: {{notify: {notify}}}
saas:
  stack: wordpress
  tiers: {{app: {{replicas: {app}}}}}
  expose: {{port: {port}}}
"""


def req(owner: str = "dev@example.com", cpu: int = 1, memory: str = "1GiB",
        retention: str = "30d", notify: str = "[]", app: int = 1,
        port: str = "auto") -> OverCloudRequest:
    doc = DOC.format(owner=owner, cpu=cpu, memory=memory, retention=retention, notify=notify,
                     app=app, port=port)
    if app > 1:
        doc = doc.replace("nodes: 2", f"nodes: {app + 1}")
    return parse_request(doc)


def record(r: OverCloudRequest, port: int = 20123) -> OverCloudRecord:
    nodes = [NodeRecord(n, f"lxd{i % 2 + 1}", f"10.0.0.{i}", t)
             for i, (n, t) in enumerate(r.tier_layout().items())]
    return OverCloudRecord(r.name, r.owner, "ready", r.to_spec(), "req-1", port,
                           f"http://127.0.0.1:{port}/", "", 0.0, 0.0, nodes)


def test_the_same_document_plans_nothing() -> None:
    r = req()
    plan = plan_update(record(r), req())
    assert plan.empty and plan.lines() == [] and not plan.resize and plan.retention is None


def test_in_place_changes_are_listed_terraform_style() -> None:
    plan = plan_update(record(req(notify="[http://127.0.0.1:9/old]")),
                       req(cpu=2, memory="1536MiB", retention="90d",
                           notify="[http://127.0.0.1:9/new]"))
    assert not plan.refused
    assert plan.lines() == [
        "~ blog-n1 cpu 1 → 2", "~ blog-n1 memory 1GiB → 1.5GiB",
        "~ blog-n2 cpu 1 → 2", "~ blog-n2 memory 1GiB → 1.5GiB",
        "~ retention 30d → 90d",
        "+ webhook http://127.0.0.1:9/new", "- webhook http://127.0.0.1:9/old",
    ]
    assert plan.resize and plan.retention == "90d"
    wf = update_spec(plan, ["blog-n1", "blog-n2"])
    assert [t.name for t in wf.tasks] == ["resize:blog-n1", "resize:blog-n2", "retention",
                                         "record"]
    assert wf.tasks[-1].after == ("resize:blog-n1", "resize:blog-n2", "retention")


def test_the_same_size_written_differently_is_no_change() -> None:
    assert plan_update(record(req(memory="1GiB")), req(memory="1024MiB")).empty


def test_a_webhook_only_change_runs_only_the_record_step() -> None:
    plan = plan_update(record(req()), req(notify="[https://hooks.example.com/x]"))
    assert plan.lines() == ["+ webhook https://hooks.example.com/x"]
    assert [t.name for t in update_spec(plan, ["blog-n1"]).tasks] == ["record"]


def test_changes_that_cannot_be_made_in_place_are_refused_with_their_path() -> None:
    plan = plan_update(record(req()), req(owner="else@example.com", port="20999",
                                          retention="90d"))
    paths = [p for p, _ in plan.refused]
    assert paths == ["owner", "saas.expose.port"]
    why = dict(plan.refused)
    assert "keeps its owner" in why["owner"]
    assert "http://127.0.0.1:20123/" in why["saas.expose.port"]
    assert not plan.empty


def test_an_app_replica_is_added_placed_deployed_and_served_before_the_upstreams() -> None:
    plan = plan_update(record(req()), req(app=2))
    assert not plan.refused and plan.added == ("blog-n3",) and plan.removed == ()
    assert plan.lines() == ["+ node blog-n3 (app, placed by spread)"]
    wf = {t.name: t for t in update_spec(plan, ["blog-n1", "blog-n2"]).tasks}
    assert list(wf) == ["place", "launch:blog-n3", "docker:blog-n3", "deploy:blog-n3",
                        "serves:blog-n3", "upstreams", "route", "agents", "record"]
    assert wf["upstreams"].after == ("serves:blog-n3",) and wf["route"].after == ("upstreams",)
    assert wf["serves:blog-n3"].action == "node_serves"
    assert wf["record"].after[-1] == "agents"


def test_an_app_replica_leaves_the_upstreams_before_it_is_retired() -> None:
    plan = plan_update(record(req(app=2)), req(app=1, cpu=2))
    assert not plan.refused and plan.removed == ("blog-n3",) and plan.added == ()
    assert plan.lines()[0] == "- node blog-n3 (app; leaves the upstream and drains first)"
    wf = {t.name: t for t in update_spec(plan, ["blog-n1", "blog-n2", "blog-n3"]).tasks}
    assert "resize:blog-n3" not in wf  # not resized on its way out
    assert wf["retire:blog-n3"].after == ("upstreams",)
    assert wf["upstreams"].after == ("route",) and wf["route"].after == ()
    assert wf["agents"].after == ("retire:blog-n3",) and wf["record"].after[-1] == "agents"


def test_growing_a_one_node_overcloud_is_refused_with_the_reason() -> None:
    one = parse_request(DOC.format(owner="dev@example.com", cpu=1, memory="1GiB",
                                   retention="30d", notify="[]", app=1, port="auto")
                        .replace("nodes: 2", "nodes: 1"))
    plan = plan_update(record(one), req())
    assert [p for p, _ in plan.refused] == ["cluster.nodes"]
    assert "runs every tier" in dict(plan.refused)["cluster.nodes"]
    assert plan.added == ()
    web2 = parse_request(DOC.format(owner="dev@example.com", cpu=1, memory="1GiB",
                                    retention="30d", notify="[]", app=1, port="auto")
                         .replace("nodes: 2", "nodes: 3")
                         .replace("{app: {replicas: 1}}", "{app: {replicas: 1}, web: {replicas: 2}}"))
    # a web replica added beside the app one: a node of one tier, made live (below)
    assert not plan_update(record(req()), web2).refused
    # a second app replica whose node would also become the second web node: refused
    both = parse_request(DOC.format(owner="dev@example.com", cpu=1, memory="1GiB",
                                    retention="30d", notify="[]", app=2, port="auto")
                         .replace("nodes: 2", "nodes: 3")
                         .replace("{app: {replicas: 2}}", "{app: {replicas: 2}, web: {replicas: 2}}"))
    plan = plan_update(record(req(app=2)), both)
    assert plan.refused and "a running node keeps its tiers" in plan.refused[0][1], plan.refused


def test_a_web_replica_is_added_behind_the_route_and_leaves_it_before_it_is_retired() -> None:
    web2 = parse_request(DOC.format(owner="dev@example.com", cpu=1, memory="1GiB",
                                    retention="30d", notify="[]", app=1, port="auto")
                         .replace("nodes: 2", "nodes: 3")
                         .replace("{app: {replicas: 1}}", "{app: {replicas: 1}, web: {replicas: 2}}"))
    plan = plan_update(record(req()), web2)
    assert plan.added == ("blog-n3",) and plan.lines() == ["+ node blog-n3 (web, placed by spread)"]
    wf = {t.name: t for t in update_spec(plan, ["blog-n1", "blog-n2"]).tasks}
    assert wf["route"].after == ("upstreams",) and wf["agents"].after == ("route",)
    assert wf["route"].action == "route_url"
    back = plan_update(record(web2), req())
    assert back.removed == ("blog-n3",)
    assert back.lines() == ["- node blog-n3 (web; leaves the URL's route and drains first)"]
    wf = {t.name: t for t in update_spec(back, ["blog-n1", "blog-n2", "blog-n3"]).tasks}
    assert wf["route"].after == () and wf["retire:blog-n3"].after == ("upstreams",)


def test_naming_the_port_it_already_has_is_no_change() -> None:
    assert plan_update(record(req(), port=20123), req(port="20123")).empty


def test_a_backup_schedule_is_changed_in_place() -> None:
    scheduled = parse_request(DOC.format(owner="dev@example.com", cpu=1, memory="1GiB",
                                         retention="30d", notify="[]", app=1, port="auto")
                              + "backup: {every: 1d, keep: 14}\n")
    plan = plan_update(record(req()), scheduled)
    assert plan.lines() == ["~ backup.every never → 1d", "~ backup.keep 7 → 14"]
    assert [t.name for t in update_spec(plan, ["blog-n1", "blog-n2"]).tasks] == ["record"]


def test_an_overcloud_made_with_two_app_replicas_runs_wordpress_alone_on_the_third_node() -> None:
    """n3 is an app replica: WordPress published on its address for n2's nginx, which lists
    both replicas; n2 deploys only once n3 has an address."""
    from orchestrator.provision import provision_spec, stack_env, upstreams

    r = req(app=2)
    wf = {t.name: t for t in provision_spec(r).tasks}
    assert "launch:blog-n3" in wf["deploy:blog-n2"].after
    addresses = {"blog-n1": "10.0.0.1", "blog-n2": "10.0.0.2", "blog-n3": "10.0.0.3"}
    assert upstreams(r, "blog-n2", addresses) == "wordpress:80,10.0.0.3:8080"

    class Reg:
        def secrets(self, name: str) -> object:
            from orchestrator.stack.compose import StackSecrets

            return StackSecrets.generate()

    c = type("C", (), {"registry": Reg()})()
    n3 = dict(ln.split("=", 1) for ln in stack_env(c, r, "blog-n3", addresses).splitlines())
    assert (n3["COMPOSE_PROFILES"], n3["APP_BIND"], n3["DB_HOST"]) == ("app", "10.0.0.3",
                                                                         "10.0.0.1")
    n2 = dict(ln.split("=", 1) for ln in stack_env(c, r, "blog-n2", addresses).splitlines())
    assert n2["COMPOSE_PROFILES"] == "web" and n2["APP_UPSTREAM"] == "wordpress:80,10.0.0.3:8080"
