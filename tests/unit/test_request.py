"""The OverCloud request document: examples load, bad documents are rejected with every problem.

Each file under `testcases/requests/invalid/` is a document a developer might really write;
the table below names every problem it must produce (path, line, a fragment of the message)
and nothing else, so a vague or missing message fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.request import (
    Capacity,
    OverCloudRequest,
    Problem,
    RequestInvalid,
    load_request,
    parse_request,
)
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = Path(__file__).parent / "testcases" / "requests" / "invalid"
BIG = Capacity(cpu=64, memory_bytes=1024**4)
GiB = 1024**3

HEAD = "apiVersion: overcloud/v1\nkind: OverCloud\nname: blog\nowner: dev@example.com\n"


def request(body: str, capacity: Capacity = BIG) -> OverCloudRequest:
    return parse_request(HEAD + body, capacity=capacity)


def problems_of(path: Path, capacity: Capacity = BIG) -> list[Problem]:
    with pytest.raises(RequestInvalid) as info:
        load_request(path, capacity)
    return info.value.problems


# --- valid documents -----------------------------------------------------------------------


def test_full_example_loads() -> None:
    req = load_request(EXAMPLES / "my-overcloud.yaml", BIG)
    assert (req.name, req.owner) == ("my-blog", "dev@example.com")
    assert (req.cluster.nodes, req.cluster.cpu, req.cluster.memory_bytes) == (2, 2, 2 * GiB)
    assert req.placement.strategy == "spread" and req.saas.expose.port == 8080
    assert req.devtower.notify == ["https://hooks.example.com/overcloud/my-blog"]
    assert req.tier_layout() == {"my-blog-n1": ["db"], "my-blog-n2": ["app", "web"]}
    assert req.lxd_limits() == {"limits.cpu": "2", "limits.memory": str(2 * GiB)}


def test_minimal_example_gets_defaults() -> None:
    req = load_request(EXAMPLES / "minimal.yaml", BIG)
    assert req.node_names() == ["tiny-n1"]
    assert (req.cluster.cpu, req.cluster.memory) == (1, "1GiB")
    assert req.saas.expose.port == "auto" and req.saas.expose.path_check == "/wp-admin/install.php"
    assert req.devlake.retention == "30d" and not req.devlake.keep_on_delete
    assert req.placement.strategy == "spread" and not req.placement.network_heavy


def test_examples_validate_on_this_machine() -> None:
    # the default capacity is this machine's; the examples must fit the machine they ship for
    for name in ("my-overcloud.yaml", "minimal.yaml"):
        load_request(EXAMPLES / name)
    cap = Capacity.this_machine()
    assert cap.cpu >= 1 and cap.memory_bytes > 256 * 1024**2


@pytest.mark.parametrize("example", ["my-overcloud.yaml", "minimal.yaml"])
def test_spec_round_trip(example: str) -> None:
    req = load_request(EXAMPLES / example, BIG)
    spec = req.to_spec()
    import json

    assert json.loads(json.dumps(spec)) == spec  # JSON-able, as the event payload must be
    assert spec["saas"]["tiers"]["db"] == {"replicas": 1}  # defaults are explicit in the spec
    again = OverCloudRequest.from_spec(spec)
    assert again == req and again.to_spec() == spec


def test_from_spec_rejects_a_bad_spec() -> None:
    spec = load_request(EXAMPLES / "my-overcloud.yaml", BIG).to_spec()
    spec["cluster"]["nodes"] = 4
    spec["saas"]["tiers"]["db"]["replicas"] = 2
    with pytest.raises(RequestInvalid) as info:
        OverCloudRequest.from_spec(spec)
    assert {p.path for p in info.value.problems} == {"cluster.nodes", "saas.tiers.db.replicas"}


def test_direct_model_validate_still_applies_cross_rules() -> None:
    spec = load_request(EXAMPLES / "minimal.yaml", BIG).to_spec()
    spec["saas"]["tiers"]["app"]["replicas"] = 2
    with pytest.raises(ValueError, match=r"2 app replicas need cluster\.nodes >= 3"):
        OverCloudRequest.model_validate(spec)


@pytest.mark.parametrize(
    ("nodes", "app", "web", "layout"),
    [
        (1, 1, 1, {"n1": ["db", "app", "web"]}),
        (2, 1, 1, {"n1": ["db"], "n2": ["app", "web"]}),
        (3, 2, 1, {"n1": ["db"], "n2": ["app", "web"], "n3": ["app"]}),
        (3, 1, 2, {"n1": ["db"], "n2": ["app", "web"], "n3": ["web"]}),
        (5, 4, 2, {"n1": ["db"], "n2": ["app", "web"], "n3": ["app", "web"], "n4": ["app"],
                   "n5": ["app"]}),
    ],
)
def test_tier_layout(nodes: int, app: int, web: int, layout: dict[str, list[str]]) -> None:
    req = request(f"cluster: {{nodes: {nodes}}}\nsaas:\n  stack: wordpress\n  tiers:\n"
                  f"    app: {{replicas: {app}}}\n    web: {{replicas: {web}}}\n")
    assert req.tier_layout() == {f"blog-{n}": tiers for n, tiers in layout.items()}
    assert req.node_names() == [f"blog-n{i}" for i in range(1, nodes + 1)]
    assert req.nodes_of("db") == ["blog-n1"]
    assert len(req.nodes_of("app")) == (app if nodes > 1 else 1)


def test_memory_units_and_yaml_niceties() -> None:
    req = request("cluster: {memory: 1.5GiB}\nsaas: &s {stack: wordpress}\n"
                  "devlake: {retention: INF}\n")
    assert req.cluster.memory_bytes == int(1.5 * GiB) and req.devlake.retention == "INF"
    assert request("cluster: {memory: 512MB}\nsaas: {stack: wordpress}\n").cluster.memory_bytes == 512 * 10**6
    base = "base: &b {replicas: 2}\n"
    with pytest.raises(RequestInvalid) as info:  # anchors and merges work; unknown keys still fail
        request(base + "cluster: {nodes: 3}\nsaas:\n  stack: wordpress\n  tiers:\n    app: {<<: *b}\n")
    assert [p.path for p in info.value.problems] == ["base"]


# --- invalid documents ---------------------------------------------------------------------

SMALL = Capacity(cpu=4, memory_bytes=8 * GiB)
DUR = "is not an InfluxQL duration"
DNS = "must be a DNS label"
SECRET = "secrets are never written in the request"

#: file -> every (path, line, message fragment) it must produce, in order
CASES: dict[str, list[tuple[str, int | None, str]]] = {
    "wrong_types.yaml": [
        ("cluster.nodes", 6, "must be a whole number, got the text '2' (write it without quotes)"),
        ("cluster.cpu", 7, "must be a whole number, got 1.5"),
        ("devtower.api", 10, "must be true or false, got the text 'yes'"),
        ("devtower.notify", 11, "must be a list"),
        ("devlake.keep_on_delete", 13, "must be true or false, got 0"),
        ("placement", 14, "must be a mapping"),
    ],
    "missing_fields.yaml": [
        ("name", None, "is required (a DNS label"),
        ("owner", None, "is required (who the OverCloud is for"),
        ("saas.stack", 5, "is required (the only stack so far: wordpress)"),
    ],
    "unknown_keys.yaml": [
        ("nodes", 5, "unknown key; expected one of: apiVersion, kind, name, owner, cluster"),
        ("cluster.node", 7, "unknown key (did you mean 'nodes'?)"),
        ("saas.tiers.cache", 11, "unknown key; expected one of: web, app, db"),
    ],
    "negative_counts.yaml": [
        ("cluster.nodes", 6, "must be at least 1, got -1"),
        ("cluster.cpu", 7, "must be at least 1, got 0"),
        ("saas.tiers.web.replicas", 12, "must be at least 1, got -2"),
        ("saas.tiers.app.replicas", 14, "must be at least 1, got 0"),
    ],
    "duplicate_keys.yaml": [
        ("name", 5, "duplicate key 'name' (first at line 3); YAML would silently keep only the last"),
        ("cluster.nodes", 9, "duplicate key 'nodes' (first at line 7)"),
    ],
    "impossible_resources.yaml": [
        ("cluster.cpu", 8, "32 cores per node is more than the largest UnderCloud host offers (4 cores)"),
        ("cluster.memory", 9, "512GiB per node is more than the largest UnderCloud host offers (8GiB)"),
    ],
    "malformed.yaml": [("", 9, "malformed YAML: while parsing a flow sequence")],
    "two_documents.yaml": [("", 7, "expected a single document")],
    "empty.yaml": [("", None, "is empty")],
    "comments_only.yaml": [("", None, "is empty")],
    "binary.yaml": [("", None, "is a binary file")],
    "latin1.yaml": [("", 4, "is not UTF-8 text (byte 0xe9")],
    "not_a_mapping.yaml": [("", 1, "must be a mapping of keys (apiVersion, kind, name, owner, ...), "
                            "got a list")],
    "bad_name.yaml": [("name", 3, f"'My_Blog' {DNS}"), ("owner", 4, "must not be blank")],
    "db_replicas.yaml": [("saas.tiers.db.replicas", 13,
                          "must be 1, got 2: the db tier is a single MariaDB primary without replication")],
    "password.yaml": [
        ("saas.tiers.db.password", 10, f"{SECRET}: OverCloud generates every password"),
        ("devtower.notify[0]", 13, "a password in the URL is a secret"),
        ("admin_secret", 14, SECRET),
    ],
    "bad_memory_unit.yaml": [("cluster.memory", 6, "'2 gigabytes' is not a memory size: write a number "
                              "and a unit, e.g. 512MiB or 2GiB")],
    "bare_memory_number.yaml": [("cluster.memory", 6, "must be text, got 2048")],
    "too_little_memory.yaml": [("cluster.memory", 6, "128MiB is too little")],
    "port_out_of_range.yaml": [
        ("saas.expose.port", 8, "must be between 1024 and 65535, got 80"),
        ("saas.expose.path_check", 9, "must be a URL path starting with '/'"),
    ],
    "port_too_high.yaml": [("saas.expose.port", 8, "must be between 1024 and 65535, got 70000")],
    "replicas_exceed_nodes.yaml": [("saas.tiers.web.replicas", 11,
                                    "3 web replicas need cluster.nodes >= 4 (each replica gets its own "
                                    "node and n1 holds the db), but cluster.nodes is 2")],
    "idle_nodes.yaml": [("cluster.nodes", 6, "5 nodes but only 3 would run anything")],
    "wrong_version_kind.yaml": [
        ("apiVersion", 1, "must be 'overcloud/v1', got the text 'v1'"),
        ("kind", 2, "must be 'OverCloud'"),
        ("saas.stack", 6, "must be 'wordpress', got the text 'drupal'"),
    ],
    "bad_devlake_devtower.yaml": [
        ("devlake.retention", 6, f"'30 days' {DUR}"),
        ("devtower.notify[0]", 9, "'ftp://hooks.example.com/x' is not a webhook URL"),
        ("devtower.notify[1]", 10, "must be text, got 42"),
        ("placement.strategy", 12,
         "must be 'spread', 'pack', 'least-loaded' or 'network-aware', got the text 'random'"),
    ],
    "python_tag.yaml": [("", 3, "the YAML tag !!python/object/apply:os.system is not allowed")],
    "many_problems.yaml": [
        ("owner", None, "is required"),
        ("name", 3, f"'-blog' {DNS}"),
        ("cluster.nodes", 5, "must be at least 1, got 0"),
        ("cluster.memory", 6, "'lots' is not a memory size"),
        ("saas.tiers.db.replicas", 10, "must be 1, got 3"),
        ("saas.expose.extra", 11, "unknown key; expected one of: port, path_check"),
    ],
}


def test_every_invalid_file_has_expectations() -> None:
    assert sorted(p.name for p in INVALID.iterdir()) == sorted(CASES)
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_document(name: str) -> None:
    capacity = SMALL if name == "impossible_resources.yaml" else BIG
    got = problems_of(INVALID / name, capacity)
    expected = CASES[name]
    assert [(p.path, p.line) for p in got] == [(path, line) for path, line, _ in expected], got
    for p, (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in p.message, (p, fragment)


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(RequestInvalid) as info:
        load_request(INVALID / "negative_counts.yaml", BIG)
    text = str(info.value)
    assert text.startswith(f"{INVALID / 'negative_counts.yaml'}: 4 problems in the OverCloud request")
    assert f"{INVALID / 'negative_counts.yaml'}:12: saas.tiers.web.replicas: must be at least 1" in text


def test_unreadable_sources(tmp_path: Path) -> None:
    for path, fragment in ((tmp_path / "nope.yaml", "cannot read it"), (tmp_path, "is a directory")):
        with pytest.raises(RequestInvalid) as info:
            load_request(path, BIG)
        assert fragment in info.value.problems[0].message


def test_non_text_keys_and_scalar_document() -> None:
    with pytest.raises(RequestInvalid) as info:
        request("on: true\n7: x\nsaas: {stack: wordpress}\n")
    assert [(p.line, p.message.split(" must")[0]) for p in info.value.problems] == [
        (5, "key 'on'"), (6, "key '7'")]
    with pytest.raises(RequestInvalid) as info:
        parse_request("just some text\n", capacity=BIG)
    assert "got the value 'just some text'" in info.value.problems[0].message


def test_control_characters_and_tabs() -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_request(HEAD + "saas: {stack: word\x07press}\n", capacity=BIG)
    assert info.value.problems == [Problem("", 5, "is not valid YAML: the control character #x0007 "
                                           "is not allowed")]
    with pytest.raises(RequestInvalid) as info:
        parse_request("\ufeff" + HEAD + "saas:\n\tstack: wordpress\n", capacity=BIG)
    assert info.value.problems[0].line == 6 and "'\\t'" in info.value.problems[0].message


def test_alias_bomb_is_cheap() -> None:
    # a billion-laughs document: every alias is walked once, and the model rejects it quickly
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(RequestInvalid) as info:
        request("\n".join(lines) + "\nsaas: {stack: wordpress}\n")
    assert len(info.value.problems) == 9


# --- the command ---------------------------------------------------------------------------


def test_cli_lists_every_problem_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"OVERCLOUD_STATE_DIR": str(state), "OVERCLOUD_CONFIG": ""}
    path = INVALID / "many_problems.yaml"
    proc = run_cli(["request", "validate", str(path)], env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 7, proc.stderr  # six problems, one per line, then the count
    assert lines[0] == f"{path}: owner: is required (who the OverCloud is for, e.g. an e-mail address)"
    for got, (p, line, fragment) in zip(lines[1:-1], CASES["many_problems.yaml"][1:], strict=True):
        assert got.startswith(f"{path}:{line}: {p}: ") and fragment in got, got
    assert lines[-1] == f"{path}: 6 problems, nothing was created"
    for name in ("binary.yaml", "malformed.yaml", "duplicate_keys.yaml", "password.yaml"):
        proc = run_cli(["request", "validate", str(INVALID / name)], env, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(str(INVALID / name) + ":")
    assert not state.exists() or not any(state.iterdir())


def test_cli_valid_request_prints_a_summary(tmp_path: Path) -> None:
    env = {"OVERCLOUD_STATE_DIR": str(tmp_path / "state"), "OVERCLOUD_CONFIG": ""}
    proc = run_cli(["request", "validate", str(EXAMPLES / "my-overcloud.yaml")], env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "my-blog: a valid OverCloud request from dev@example.com" in out
    assert "my-blog-n1: db; my-blog-n2: app + web" in out
    assert "http://127.0.0.1:8080/" in out
    assert not (tmp_path / "state").exists()
