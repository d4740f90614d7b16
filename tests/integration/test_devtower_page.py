"""The DevTower page in a real headless Chromium on real services: LXD, the broker, InfluxDB,
the DevLake, the orchestrator and the DevTower process.

One test, in stages (each OverCloud costs minutes of LXD): developer A signs in, applies a
document through the form and follows its workflow to the URL without a reload; B creates
one through the API meanwhile. A's page draws A's real series (the agents' samples in A's
DevLake), never shows B's OverCloud, and A's session cannot fetch B's by editing a URL. An
operator moves A's node; the move appears on A's open page as markers, live. A deletes it
through the page's confirmation. The overload act's own migration (a busy node, the rule,
the relief move) is checked on the page in test_migration's overload test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException

from devtower.server import token_store
from devtower.tokens import Role
from overcloud.waiting import wait_until
from tests.browser import (
    chromium,
    click,
    css,
    no_reload_mark,
    read,
    reloaded,
    shot,
    sign_in,
    texts,
    wait,
)
from tests.conftest import Env
from tests.helpers import Background, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

SHOTS = Path(__file__).resolve().parents[2] / ".pytest-screens"

DOC = """\
apiVersion: overcloud/v1
kind: OverCloud
name: {name}
owner: {owner}
cluster: {{nodes: 1, cpu: 1, memory: 1GiB}}
saas:
  stack: wordpress
  expose: {{port: {port}}}
"""


def fetch_json(d: webdriver.Chrome, path: str) -> tuple[int, Any]:
    """GET `path` from inside the page, with its session: what editing a URL would reach."""
    got = d.execute_async_script(
        "const done = arguments[1];"
        "fetch(arguments[0]).then(async r => done([r.status, await r.text()]));", path)
    status, text = got
    return int(status), json.loads(text) if text.startswith("{") else text


def _state(c: httpx.Client, name: str) -> str:
    r = c.get(f"/v1/overclouds/{name}")
    return str(r.json()["state"]) if r.status_code == 200 else f"http {r.status_code}"


def test_a_developer_in_the_browser(uc: Env, tmp_path: Path) -> None:
    port = free_port()
    env = Env(uc, OVERCLOUD_DEVTOWER_PORT=str(port),
              OVERCLOUD_DEVTOWER_GRAFANA_URL="http://127.0.0.1:3000")
    s = env.settings()
    url = f"http://127.0.0.1:{port}"
    tokens = token_store(s)
    ta, _ = tokens.create("a@example.com", Role.DEVELOPER)
    tb, _ = tokens.create("b@example.com", Role.DEVELOPER)
    top, _ = tokens.create("ops@example.com", Role.OPERATOR)
    a, b = "pg-a", "pg-b"
    pa, pb = free_port(), free_port()
    lake = Background(["devlake", "run"], env, tmp_path / "devlake.log").start()
    orch = Background(["orchestrator", "run"], env, tmp_path / "orchestrator.log").start()
    tower = Background(["tower", "run"], env, tmp_path / "devtower.log").start()
    cb = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tb}"}, timeout=30)
    co = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {top}"}, timeout=30)
    try:
        wait_until(lambda: "devtower: http" in tower.output(), timeout=180, interval=0.2,
                   what="the DevTower")
        with chromium() as d:
            # --- A applies a document through the form and follows it to its URL ----------
            sign_in(d, url, ta)
            d.get(url + "/#/new")
            area = css(d, "#doc")
            area.clear()
            area.send_keys(DOC.format(name=a, owner="a@example.com", port=pa))
            css(d, "#problems li.okmsg", text=f"Valid: {a}")
            no_reload_mark(d)
            click(d, "#apply")
            r = cb.post("/v1/overclouds", content=DOC.format(name=b, owner="b@example.com", port=pb),
                        headers={"Content-Type": "application/yaml"})
            assert r.status_code == 202, r.text
            done = read(d, "#follow-done", timeout=1500)
            assert f"http://127.0.0.1:{pa}/" in done, orch.output()[-2000:]
            states = dict(d.execute_script(
                "return [...document.querySelectorAll('tr[data-task]')]"
                ".map(r => [r.dataset.task, r.children[1].textContent]);"))
            assert states and set(states.values()) == {"succeeded"}, states
            assert {"place", "expose", "verify", "ready"} <= set(states), states
            shot(d, "integration-new-follow", SHOTS)
            assert not reloaded(d)
            wait_until(lambda: _state(cb, b) in ("ready", "failed"), timeout=1200, interval=1,
                       what=f"{b} ready")
            assert _state(cb, b) == "ready"

            # --- A's page draws A's real series ---------------------------------------------
            for _ in range(20):  # some traffic for the flow and service layers
                httpx.get(f"http://127.0.0.1:{pa}/wp-admin/install.php", timeout=30)
            d.set_window_size(1280, 1500)
            d.get(url + f"/#/oc/{a}")
            wait(d, lambda x: x.find_element("id", "view").get_attribute("data-live") == "1",
                 timeout=240, message="live charts")
            host = fetch_json(d, f"/v1/overclouds/{a}")[1]["nodes"][0]["host"]

            def cpu_values(x: webdriver.Chrome) -> list[float]:
                status, charts = fetch_json(x, f"/v1/overclouds/{a}/charts")
                assert status == 200
                nodes = charts["sections"]["nodes"]
                assert [(n["tags"]["node"], n["tags"]["host"]) for n in nodes] == [
                    (f"{a}-n1", host)]
                i = nodes[0]["columns"].index("cpu")
                return [row[i] for row in nodes[0]["values"] if row[i] is not None]
            # the agents' samples: a CPU rate needs two of them, a series two buckets
            cpu = wait(d, lambda x: len(v := cpu_values(x)) >= 2 and v, timeout=180,
                       message="two CPU buckets from the agents")
            assert all(0 <= v <= 100 for v in cpu), cpu
            assert f"{a}-n1" in read(d, "#box-cpu .chart", attr="aria-label")
            wait(d, lambda x: fetch_json(x, f"/v1/overclouds/{a}/charts")[1]["sections"]["http"],
                 timeout=120, message="service_http samples")
            css(d, "#box-latency canvas", timeout=30)
            grafana = read(d, "#grafana", attr="href")
            assert grafana == f"http://127.0.0.1:3000/d/overcloud-overcloud/overcloud?var-overcloud={a}"
            shot(d, "integration-overcloud", SHOTS)

            # --- tenancy: A's pages never show B's, nor fetch it by URL ----------------------
            d.get(url + "/#/")
            css(d, f'#list tr[data-name="{a}"]')
            assert texts(d, "#list tr[data-name] td:first-child") == [a]
            assert b not in d.page_source
            for path in (f"/v1/overclouds/{b}", f"/v1/overclouds/{b}/charts",
                         f"/v1/overclouds/{b}/webhooks", f"/v1/overclouds/{b}/latest"):
                assert fetch_json(d, path)[0] == 404, path
            d.get(url + f"/#/oc/{b}")
            assert f"no OverCloud named '{b}'" in read(d, "#oc-head .error")

            # --- an operator moves A's node: the markers appear on A's open page ------------
            d.get(url + f"/#/oc/{a}")
            wait(d, lambda x: x.find_element("id", "view").get_attribute("data-live") == "1",
                 timeout=120, message="live charts")
            no_reload_mark(d)
            target = "lxd2" if host == "lxd1" else "lxd1"
            r = co.post(f"/v1/overclouds/{a}/migrate", params={"node": f"{a}-n1", "to": target})
            assert r.status_code == 202, r.text
            moved = read(d, '#markers li[data-type="MigrationFinished"]', timeout=900)
            assert f"{a}-n1 {host} → {target}" in moved, moved
            assert "done" in moved, (moved, orch.output()[-2000:])
            assert not reloaded(d)
            css(d, 'tr[data-node] td', text=target, timeout=60)
            shot(d, "integration-migrated", SHOTS)

            # --- A deletes it through the page's confirmation -------------------------------
            click(d, "#delete")
            confirm = css(d, "#confirm-name")
            assert css(d, "#confirm-yes").get_attribute("disabled") is not None
            confirm.send_keys(a)
            click(d, "#confirm-yes")
            # the page goes on to the list, where it shows deleting until it is gone
            css(d, "#list")
            try:
                wait(d, lambda x: a not in texts(x, "#list tr[data-name] td:first-child"),
                     timeout=600, message=f"{a} gone from the list")
            except TimeoutException:
                status, body = fetch_json(d, f"/v1/overclouds/{a}")
                raise AssertionError(f"{a} still listed: {status} {str(body)[-3000:]}\n"
                                     f"{orch.output()[-3000:]}") from None
        assert cb.delete(f"/v1/overclouds/{b}").status_code == 202
        wait_until(lambda: _state(cb, b) == "http 404", timeout=600, interval=1,
                   what=f"{b} deleted")
        log = (tmp_path / "devtower.log").read_text()
        assert "Traceback" not in log
        for t in (ta, tb, top):
            assert t not in log
    finally:
        cb.close()
        co.close()
        tower.stop()
        orch.stop()
        lake.stop()
