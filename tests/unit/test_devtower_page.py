"""The DevTower page in a real headless Chromium, over the real app on loopback.

The app is the one `devtower.server` serves, on a real registry, token store and journal;
the event bus is a list and the DevLake reader a stand-in with made-up series (the page's
charts on a real DevLake, and an OverCloud created through the form on LXD, are in
tests/integration/test_devtower_page.py). What the orchestrator would do is done here by
hand: admit a record, move its state, journal an event; the page must follow without a
reload.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from devtower.tokens import Role
from orchestrator.workflow import TaskSpec, WorkflowSpec, WorkflowState
from overcloud.events import OverCloudDeleteRequested, OverCloudRequested
from tests.browser import chromium, click, css, no_reload_mark, read, reloaded, shot, sign_in, texts, wait
from tests.devtower_kit import Api, serve_api

SHOTS = Path(__file__).resolve().parents[2] / ".pytest-screens"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as d:
        yield d


@pytest.fixture
def api(tmp_path: Path, browser: webdriver.Chrome) -> Iterator[Api]:
    browser.delete_all_cookies()
    browser.set_window_size(1280, 800)
    with serve_api(tmp_path) as a:
        a.admit("alpha", "a@example.com")
        a.registry.set_state("alpha", "ready", url="http://127.0.0.1:20100/")
        a.admit("beta", "b@example.com")
        a.registry.set_state("beta", "ready", url="http://127.0.0.1:20200/")
        a.reader.nodes.update({"alpha": ["alpha-n1", "alpha-n2"], "beta": ["beta-n1"]})
        yield a
        browser.get("about:blank")


def _cookie(d: webdriver.Chrome) -> dict[str, object]:
    return next(c for c in d.get_cookies() if c["name"] == "oc_session")


def test_sign_in_sets_an_httponly_strict_cookie_and_sign_out_ends_the_session(
        api: Api, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(api.url + "/")
    css(browser, "#token").send_keys("oct_000000000000_" + "x" * 43 + Keys.ENTER)
    assert "not valid" in read(browser, "#signin-error")
    shot(browser, "signin", SHOTS)
    sign_in(browser, api.url, api.token("a@example.com"))
    assert read(browser, "#who-name") == "a@example.com · developer"
    c = _cookie(browser)
    assert c["httpOnly"] is True and c["sameSite"] == "Strict", c
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read it
    value = str(c["value"])
    assert httpx.get(api.url + "/v1/whoami", cookies={"oc_session": value}).status_code == 200
    click(browser, "#signout button")
    css(browser, "#token")
    assert not [c for c in browser.get_cookies() if c["name"] == "oc_session"]
    # the old cookie value no longer opens anything, even if a copy survived
    r = httpx.get(api.url + "/v1/whoami", cookies={"oc_session": value})
    assert r.status_code == 401, r.text


def test_changes_need_the_csrf_token_and_this_origin(api: Api, browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    cookie = {"oc_session": str(_cookie(browser)["value"])}
    csrf = httpx.get(api.url + "/v1/whoami", cookies=cookie).json()["csrf"]
    doc = ("apiVersion: overcloud/v1\nkind: OverCloud\nname: gamma\nowner: a@example.com\n"
           "cluster: {nodes: 1, cpu: 1, memory: 1GiB}\nsaas: {stack: wordpress}\n")
    yaml = {"Content-Type": "application/yaml"}
    with httpx.Client(base_url=api.url, cookies=cookie) as c:
        r = c.post("/v1/overclouds", content=doc, headers=yaml)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
        r = c.post("/v1/overclouds", content=doc,
                   headers={**yaml, "X-CSRF-Token": csrf, "Origin": "http://evil.test"})
        assert r.status_code == 403 and "another site" in r.json()["error"]["message"]
        r = c.delete("/v1/overclouds/alpha", headers={"X-CSRF-Token": "x" + csrf[1:]})
        assert r.status_code == 403
        assert api.bus.events == []
        r = c.post("/v1/overclouds", content=doc, headers={**yaml, "X-CSRF-Token": csrf})
        assert r.status_code == 202, r.text
    # a sign-in posted from another site's page is refused (login CSRF)
    r = httpx.post(api.url + "/web/session", data={"token": api.token("a@example.com")},
                   headers={"Origin": "http://evil.test"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_my_overclouds_are_mine_only_and_live(api: Api, browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    css(browser, "#list tr[data-name]")
    assert texts(browser, "#list tr[data-name] td:first-child") == ["alpha"]
    row = read(browser, 'tr[data-name="alpha"]')
    assert "ready" in row and "http://127.0.0.1:20100/" in row and "a@example.com" in row
    no_reload_mark(browser)
    # the orchestrator admits another of A's OverClouds, then one of B's: A's list follows
    api.admit("delta", "a@example.com")
    api.registry.set_state("delta", "provisioning")
    api.admit("omega", "b@example.com")
    api.journal.add("event:req-omega", "omega", "event", "OverCloudRequested", time.time(), {})
    api.journal.add("event:req-delta", "delta", "event", "OverCloudRequested", time.time(), {})
    css(browser, 'tr[data-name="delta"]', text="provisioning")
    api.registry.set_state("delta", "ready", url="http://127.0.0.1:20300/")
    api.journal.add("event:x3", "delta", "event", "OverCloudReady", time.time(), {})
    css(browser, 'tr[data-name="delta"]', text="20300")
    assert not reloaded(browser)
    assert sorted(texts(browser, "#list tr[data-name] td:first-child")) == ["alpha", "delta"]
    assert "beta" not in browser.page_source and "omega" not in browser.page_source
    shot(browser, "list", SHOTS)


def test_another_developers_overcloud_is_out_of_reach_by_url(api: Api,
                                                             browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/oc/beta")
    assert "no OverCloud named 'beta'" in read(browser, "#oc-head .error")
    for path in ["/v1/overclouds/beta", "/v1/overclouds/beta/charts", "/v1/overclouds/beta/webhooks",
                 "/v1/overclouds/beta/events"]:
        got = browser.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => done(r.status));", path)
        assert got == 404, path
    assert not any(oc == "beta" for oc, _ in api.reader.asked)
    # nor as an operator page
    browser.get(api.url + "/#/operator")
    assert "operators only" in read(browser, "#hosts .error")


def test_the_overcloud_page_draws_its_layers_and_markers_live(api: Api,
                                                              browser: webdriver.Chrome) -> None:
    api.hooks.register("alpha", ["http://127.0.0.1:9/hook"])
    api.hooks.enqueue("ev1", "alpha", "OverCloudReady", {"type": "OverCloudReady"})
    key = api.hooks.due("http://127.0.0.1:9/hook")[0][0]
    api.hooks.delivered(key, 204)
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/oc/alpha")
    wait(browser, lambda d: d.find_element(By.ID, "view").get_attribute("data-live") == "1")
    hooks = read(browser, "#box-hooks", text="OverCloudReady")
    assert "http://127.0.0.1:9/hook" in hooks and "delivered" in hooks and "204" in hooks, hooks
    for box in ["cpu", "mem", "latency", "status"]:
        css(browser, f"#box-{box} canvas")
    assert "alpha-n1" in read(browser, "#box-cpu .chart", attr="aria-label")
    flow = read(browser, "#box-flow svg", attr="aria-label")
    assert "alpha-n1 to client 3.5 kB/s" in flow
    assert "healthy" in read(browser, "#box-containers table")
    no_reload_mark(browser)
    now = time.time()
    api.journal.add("event:req-alpha", "alpha", "event", "OverCloudRequested", now - 100, {})
    api.journal.add("event:m1", "alpha", "event", "MigrationStarted", now - 30,
                    {"overcloud": "alpha", "node": "alpha-n1", "source": "lxd1", "target": "lxd2",
                     "reason": "node-overloaded on lxd1"})
    api.journal.add("event:m2", "alpha", "event", "MigrationFinished", now - 20,
                    {"overcloud": "alpha", "node": "alpha-n1", "source": "lxd1", "target": "lxd2",
                     "downtime_s": 0.4, "ok": True})
    done = read(browser, '#markers li[data-type="MigrationFinished"]')
    assert "alpha-n1 lxd1 → lxd2" in done and "0.40 s down" in done
    started = read(browser, '#markers li[data-type="MigrationStarted"]')
    assert "node-overloaded on lxd1" in started
    assert not reloaded(browser)
    # a marker is drawn on the chart: a dashed line where its time falls (purple pixels)
    purple = browser.execute_script("""
        const c = document.querySelector('#box-cpu canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) if (px[i] === 123 && px[i+1] === 63 && px[i+2] === 196) n++;
        return n;""")
    assert purple > 20, purple
    shot(browser, "overcloud", SHOTS)


def test_delete_is_confirmed_by_name_even_while_the_page_redraws(
        api: Api, browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/oc/alpha")
    css(browser, "#box-cpu canvas")
    click(browser, "#delete")
    field = css(browser, "#confirm-name")
    field.send_keys("alph")
    assert css(browser, "#confirm-yes").get_attribute("disabled") is not None
    # events of this OverCloud arrive meanwhile (a move in progress): the head is redrawn
    browser.execute_script("document.querySelector('#oc-head h1').dataset.old = '1';")
    for i in range(3):
        api.journal.add(f"task:r{i}", "alpha", "task", "task", time.time(), {})
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#oc-head h1[data-old]"),
         message="the head redrawn")
    field.send_keys("a")  # the same field, still open, keeps what was typed
    click(browser, "#confirm-yes")
    wait(browser, lambda d: any(isinstance(e, OverCloudDeleteRequested) for e in api.bus.events),
         message="the delete request")
    assert [e.name for e in api.bus.events if isinstance(e, OverCloudDeleteRequested)] == ["alpha"]
    css(browser, '#list tr[data-name="alpha"]')  # on to the list, where its state shows


def test_a_bad_document_shows_its_problems_at_their_lines(api: Api,
                                                          browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/new")
    area = css(browser, "#doc")
    area.clear()
    area.send_keys("apiVersion: overcloud/v1\nkind: OverCloud\nname: Bad_Name\n"
                   "owner: a@example.com\ncluster: {nodes: 0}\nsaas: {stack: nope}\n")
    css(browser, "#problems li[data-line='3']")
    lines = {li.get_attribute("data-line") for li in browser.find_elements(By.CSS_SELECTOR, "#problems li")}
    assert {"3", "5", "6"} <= lines, lines
    assert sorted(texts(browser, ".gutter .bad")) == sorted(lines - {""})
    assert css(browser, "#apply").get_attribute("disabled") is not None
    shot(browser, "new-problems", SHOTS)
    assert api.bus.events == []


def test_an_uploaded_document_is_checked_like_a_pasted_one(api: Api, browser: webdriver.Chrome,
                                                          tmp_path: Path) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/new")
    css(browser, "#problems li")
    doc = tmp_path / "mine.yaml"
    doc.write_text("apiVersion: overcloud/v1\nkind: OverCloud\nname: up-site\n"
                   "owner: b@example.com\ncluster: {nodes: 1, cpu: 1, memory: 1GiB}\n"
                   "saas: {stack: wordpress}\n")
    css(browser, "#upload").send_keys(str(doc))
    problem = read(browser, "#problems li[data-line='4']")
    assert "owner" in problem and "a@example.com" in problem, problem
    assert "name: up-site" in css(browser, "#doc").get_attribute("value")


def test_a_document_applied_through_the_form_is_followed_to_its_url(
        api: Api, browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("a@example.com"))
    browser.get(api.url + "/#/new")
    area = css(browser, "#doc")
    area.clear()
    area.send_keys("apiVersion: overcloud/v1\nkind: OverCloud\nname: gamma\nowner: a@example.com\n"
                   "cluster: {nodes: 1, cpu: 1, memory: 1GiB}\nsaas: {stack: wordpress}\n")
    css(browser, "#problems li.okmsg", text="Valid: gamma")
    no_reload_mark(browser)
    click(browser, "#apply")
    css(browser, "#workflow", text="Waiting for the orchestrator")
    ev = api.bus.events[-1]
    assert isinstance(ev, OverCloudRequested) and ev.name == "gamma" and ev.owner == "a@example.com"
    # what the orchestrator does, step by step: admit, run the workflow, reach ready
    api.registry.admit("gamma", "a@example.com", ev.spec, ev.id)
    wf = api.workflows.create(WorkflowSpec("provision", "gamma", (
        TaskSpec("launch", "launch"), TaskSpec("verify", "verify", after=("launch",)))),
        workflow_id=ev.id)
    api.workflows.task_started(wf, "launch")
    # the DevTower's feeds journal the request event and each task change
    api.journal.add(f"event:{ev.id}", "gamma", "event", "OverCloudRequested", time.time(), {})
    api.journal.add("task:1", "gamma", "task", "task", time.time(), {"workflow": wf})
    css(browser, 'tr[data-task="launch"]', text="running")
    assert "pending" in read(browser, 'tr[data-task="verify"]')
    api.workflows.task_succeeded(wf, "launch", "{}")
    api.workflows.task_started(wf, "verify")
    api.workflows.task_succeeded(wf, "verify", "{}")
    api.workflows.workflow_finished(wf, WorkflowState.SUCCEEDED, None)
    api.registry.set_state("gamma", "ready", url="http://127.0.0.1:20400/")
    api.journal.add("event:g2", "gamma", "event", "OverCloudReady", time.time(), {})
    done = read(browser, "#follow-done")
    assert "http://127.0.0.1:20400/" in done
    assert read(browser, 'tr[data-task="launch"]').split()[1] == "succeeded"
    assert not reloaded(browser)
    shot(browser, "new-follow", SHOTS)


def test_the_operator_sees_every_host_and_overcloud_and_drains(api: Api,
                                                               browser: webdriver.Chrome) -> None:
    sign_in(browser, api.url, api.token("ops@example.com", Role.OPERATOR))
    browser.get(api.url + "/#/operator")
    css(browser, '#all tr[data-name="beta"]')
    assert sorted(texts(browser, "#all tr[data-name] td:first-child")) == ["alpha", "beta"]
    api.journal.add("event:a1", "", "event", "AlertFiring", time.time(),
                    {"rule": "node-overloaded", "labels": {"host": "lxd1"}, "value": 97.0,
                     "severity": "warning"})
    css(browser, "#alerts table", text="node-overloaded")
    click(browser, "#hosts button", text="Drain lxd1")
    wait(browser, lambda d: ("drain", "lxd1") in api.operator.done)
    assert "draining" in read(browser, 'tr[data-host="lxd1"]', text="Undrain")
    click(browser, "#hosts button", text="Undrain lxd1")
    wait(browser, lambda d: ("undrain", "lxd1") in api.operator.done)
    css(browser, "#hosts button", text="Drain lxd1")
    shot(browser, "operator", SHOTS)


def test_phone_width_and_labelled_controls(api: Api, browser: webdriver.Chrome) -> None:
    browser.set_window_size(390, 844)
    sign_in(browser, api.url, api.token("a@example.com"))
    for page, ready in [("#/", "#list tr[data-name]"), ("#/oc/alpha", "#box-cpu canvas"),
                        ("#/new", "#problems li")]:
        browser.get(api.url + "/" + page)
        css(browser, ready)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, (page, width)
        unlabelled = browser.execute_script("""
            return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                           && !e.textContent.trim()).map(e => e.outerHTML.slice(0, 80));""")
        assert unlabelled == [], (page, unlabelled)
        shot(browser, "phone-" + (page.strip("#/").replace("/", "-") or "list"), SHOTS)
    # keyboard: Tab reaches the nav links and Enter follows one
    browser.get(api.url + "/#/")
    css(browser, "#list tr[data-name]")
    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(8):
        body = browser.switch_to.active_element
        if body.get_attribute("href", ) and body.get_attribute("href").endswith("#/new"):
            break
        body.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    css(browser, "#doc")


def test_page_answers_carry_a_strict_content_security_policy(api: Api) -> None:
    r = httpx.get(api.url + "/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    js = httpx.get(api.url + "/static/app.js").text
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert json.loads(httpx.get(api.url + "/static/vendor/uplot/package.json").text)["license"] == "MIT"
