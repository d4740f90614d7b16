"""Writes tests/unit/testcases/hostile/, the one-fault documents of test_hostile_documents.py.

Run `python -m tests.unit.make_hostile_corpus` after changing a document here; the files are
committed (the tests read them, they do not run this).
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).parent / "testcases" / "hostile"

def req(**over: str) -> str:
    # a valid minimal request, one line per field, each overridable by a raw YAML line
    fields = {
        "apiVersion": "apiVersion: overcloud/v1",
        "kind": "kind: OverCloud",
        "name": "name: blog",
        "owner": "owner: dev@example.com",
        "cluster": "cluster: {nodes: 1, cpu: 1, memory: 1GiB}",
        "devlake": "devlake: {retention: 30d}",
        "saas": "saas: {stack: wordpress}",
    }
    fields.update(over)
    return "\n".join(v for v in fields.values() if v) + "\n"

def rule(**over: str) -> str:
    fields = {
        "name": "  - name: web-slow",
        "watch": "    watch: {measurement: service_http, field: latency_ms, group_by: [node]}",
        "condition": '    condition: ">"',
        "threshold": "    threshold: 800",
    }
    fields.update(over)
    return "rules:\n" + "\n".join(v for v in fields.values() if v) + "\n"

def watch(body: str) -> str:
    return "    watch: " + body


def extra(line: str) -> str:
    """`line` after a valid threshold."""
    return "    threshold: 800\n    " + line


Z5000 = "1" + "0" * 5000
Z400 = "1" + "0" * 400
A5000 = "a" * 5000
# a billion laughs inside one value: the list holds every level, the last one expands to 10^9
INLINE_BOMB = "[&a0 [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)) + "]"
BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)])

docs: dict[str, str | bytes] = {
    # --- the request loader's faults ---------------------------------------------------
    "request_huge_int.yaml": req(cluster=f"cluster: {{nodes: {Z5000}}}"),
    "request_long_int.yaml": req(cluster=f"cluster: {{nodes: {'1' + '0' * 99}}}"),
    "request_memory_overflow.yaml": req(cluster=f"cluster: {{memory: {Z400}GiB}}"),
    "request_cpu_float_inf.yaml": req(cluster="cluster: {cpu: 1.0e999}"),
    "request_cpu_nan.yaml": req(cluster="cluster: {cpu: .nan}"),
    "request_name_newline.yaml": req(name='name: "blog\\n"'),
    "request_retention_newline.yaml": req(devlake='devlake: {retention: "30d\\n"}'),
    "request_retention_huge.yaml": req(devlake=f"devlake: {{retention: {Z5000}d}}"),
    "request_owner_newline.yaml": req(owner='owner: "dev@example.com\\nroot@example.com"'),
    "request_path_newline.yaml": req(saas='saas: {stack: wordpress, expose: {path_check: "/wp-admin/\\n"}}'),
    "request_webhook_newline.yaml": req(devlake="devlake: {retention: 30d}\ndevtower: {notify: [\"https://hooks.example.com/x\\n\"]}"),
    "request_markup_name.yaml": req(name='name: "[/x]"'),
    "request_markup_strategy.yaml": req(
        devlake='devlake: {retention: 30d}\nplacement: {strategy: "[bold]spread[/bold]"}'),
    "request_markup_key.yaml": req(devlake="devlake: {retention: 30d}\n\"[/x]\": 1"),
    "request_unicode_name.yaml": req(name="name: blög"),
    "request_unicode_digits.yaml": req(cluster="cluster: {memory: ２GiB}"),
    "request_owner_bidi.yaml": req(owner='owner: "dev\\u202e@example.com"'),
    "request_duplicate_key.yaml": req(cluster="cluster:\n  nodes: 1\n  nodes: 2"),
    "request_wrong_type_top.yaml": req(cluster="cluster: 3"),
    "request_wrong_type_middle.yaml": req(saas="saas: {stack: wordpress, tiers: [web, app]}"),
    "request_wrong_type_leaf.yaml": req(saas="saas: {stack: wordpress, expose: {port: [8080]}}"),
    "request_wrong_type_key.yaml": req(cluster="cluster: {1: 2}"),
    "request_long_value.yaml": req(name=f"name: {A5000}"),
    "request_long_key.yaml": req(cluster=f"cluster:\n  ? {A5000}\n  : 1"),
    "request_bad_date.yaml": req(owner="owner: 2001-13-45"),
    "request_bad_tag_value.yaml": req(cluster="cluster: {nodes: !!int three}"),
    "request_alias_bomb_value.yaml": req(owner=f"owner: {INLINE_BOMB}"),
    # --- the rules loader's faults -----------------------------------------------------
    "rules_huge_int.yaml": rule(threshold=f"    threshold: {Z5000}"),
    "rules_float_inf.yaml": rule(threshold="    threshold: 1.0e999"),
    "rules_inf.yaml": rule(threshold="    threshold: .inf"),
    "rules_nan.yaml": rule(threshold="    threshold: .nan"),
    "rules_recover_nan.yaml": rule(threshold="    threshold: 800\n    recover: .NaN"),
    "rules_for_huge.yaml": rule(threshold=f"    threshold: 800\n    for: {Z400}s"),
    "rules_name_newline.yaml": rule(name='  - name: "web-slow\\n"'),
    "rules_measurement_newline.yaml": rule(
        watch=watch('{measurement: "service_http\\n", field: latency_ms}')),
    "rules_group_by_newline.yaml": rule(
        watch=watch('{measurement: service_http, field: latency_ms, group_by: ["node\\n"]}')),
    "rules_where_newline.yaml": rule(
        watch=watch('{measurement: service_http, field: latency_ms, where: {node: "web-n1\\n"}}')),
    "rules_label_newline.yaml": rule(threshold='    threshold: 800\n    labels: {"team\\n": web}'),
    "rules_webhook_newline.yaml": rule(threshold='    threshold: 800\n    actions: [{type: webhook, url: "http://127.0.0.1:9000/x\\n"}]'),
    "rules_two_statements.yaml": rule(
        watch=watch('{query: "SELECT latency_ms FROM service_http GROUP BY node; DROP DATABASE x"}')),
    "rules_two_statements_where.yaml": rule(
        watch=watch("{query: \"SELECT latency_ms FROM service_http WHERE node = 'a'; DROP DATABASE x\"}")),
    "rules_markup_name.yaml": rule(name='  - name: "[/x]"'),
    "rules_markup_condition.yaml": rule(condition='    condition: "[bold]>[/bold]"'),
    "rules_unicode_name.yaml": rule(name="  - name: règle"),
    "rules_unicode_digits.yaml": rule(threshold="    threshold: 800\n    for: ３０s"),
    "rules_duplicate_key.yaml": rule(
        watch="    watch:\n      measurement: service_http\n      field: latency_ms\n      field: up"),
    "rules_wrong_type_top.yaml": "rules: 5\n",
    "rules_wrong_type_rule.yaml": "rules: [5]\n",
    "rules_wrong_type_middle.yaml": rule(watch="    watch: [service_http, latency_ms]"),
    "rules_wrong_type_leaf.yaml": rule(
        watch=watch("{measurement: service_http, field: latency_ms, group_by: node}")),
    "rules_wrong_type_key.yaml": rule(threshold="    threshold: 800\n    labels: {1: web}"),
    "rules_long_value.yaml": rule(threshold=f"    threshold: {A5000}"),
    "rules_long_name.yaml": rule(name=f"  - name: {A5000}"),
    "rules_template_attribute.yaml": rule(threshold=extra('annotations: {summary: "{rule.__class__}"}')),
    "rules_template_width.yaml": rule(threshold=extra('annotations: {summary: "{value:>99999999999}"}')),
    "rules_bad_date.yaml": rule(threshold="    threshold: 800\n    for: 2001-13-45"),
    "rules_alias_bomb_value.yaml": rule(threshold=f"    threshold: {INLINE_BOMB}"),
    "rules_expression_long.yaml": rule(
        watch=watch('{measurement: service_http, field: "' + "+".join(["a"] * 3000) + '"}')),
    # --- faults of any document ----------------------------------------------------------
    "any_empty.yaml": "",
    "any_comments_only.yaml": "# nothing here\n",
    "any_null.yaml": "~\n",
    "any_list.yaml": "- a\n- b\n",
    "any_scalar.yaml": "just some text\n",
    "any_huge_int.yaml": Z5000 + "\n",
    "any_binary_garbage.yaml": bytes(range(256)) * 4,
    "any_not_utf8.yaml": b"name: caf\xe9\n",
    "any_control_char.yaml": "name: a\x07b\n",
    "any_deep_nesting.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "any_alias_bomb.yaml": BOMB + "\n",
    "any_self_alias.yaml": "a: &a [*a]\n",
    "any_long_line.yaml": "a" * 5000 + "\n",
    "any_malformed.yaml": "a: [1, 2\nb: }\n",
    "any_python_tag.yaml": "a: !!python/object/apply:os.system [echo hi]\n",
    "any_two_documents.yaml": "a: 1\n---\nb: 2\n",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for name, body in docs.items():
        (OUT / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    print(f"{len(docs)} documents in {OUT}")


if __name__ == "__main__":
    main()
