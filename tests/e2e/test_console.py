"""The operator's console (/console), driven in a real headless Chromium
(Debian's `chromium`, through Playwright): against `make run` and the
example catalog, on the admin port and through Envoy on the gateway port;
then behind authentication, with the audit log's decisions.

Screenshots are kept in tests/artifacts/console/ (desktop and phone).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import BASE_SERVERS, GATEWAY_SECRETS, ROOT, RawSession, wait_until
from test_quickstart import CATALOG, make_run  # noqa: F401  (the fixture: `make run` with the example catalog)

ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
ADMIN = "http://127.0.0.1:18001"
GATEWAY = "http://127.0.0.1:4444"
# What the machine's probe found Chromium needs here: no sandbox as root,
# and none of its calls home, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is not installed: run `make setup` (apt-get install chromium)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make setup` (pip install -r tests/requirements.txt)", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def row(page, server: str):
    return page.locator(f'#servers tr[data-server="{server}"]')


def cell(page, server: str, label: str) -> str:
    return row(page, server).locator(f'[data-label="{label}"]').inner_text().strip()


def call_tool(url: str, tool: str, args: dict, times: int, headers: dict | None = None) -> list[dict]:
    s = RawSession(url)
    s.http.headers.update(headers or {})
    s.initialize()
    return [s.request("tools/call", {"name": tool, "arguments": args}) for _ in range(times)]


@pytest.mark.parametrize("base", [ADMIN, GATEWAY], ids=["admin-port", "gateway-port"])
def test_the_console_shows_the_example_catalog_and_restarts_a_server(make_run, browser, base):
    names = [s["name"] for s in yaml.safe_load(CATALOG.read_text())["servers"]]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    r = page.goto(f"{base}/console")
    assert r.status == 200
    assert "default-src 'none'" in r.headers["content-security-policy"], "the page may load nothing from elsewhere"
    for name in names:
        page.wait_for_selector(f'#servers tr[data-server="{name}"]', timeout=20_000)
    assert page.locator("#servers tbody > tr[data-server]").count() == len(names)
    for name in ("time", "memory"):
        assert cell(page, name, "Runtime") == "stdio"
    # Every Envoy connected has taken the configuration served.
    page.wait_for_selector("#envoys li.good", timeout=20_000)
    assert "accepted" in page.locator("#envoys").inner_text()

    # Traffic, then its figures: each Envoy pushes its stats every 5 s.
    answers = call_tool(f"{GATEWAY}/mcp", "time__get_current_time", {"timezone": "Europe/Paris"}, 3)
    assert all("result" in a for a in answers), answers
    page.get_by_role("button", name="time", exact=True).click()
    tool = page.locator('#servers tr[data-tool="time__get_current_time"]')
    tool.wait_for(timeout=20_000)
    wait_until("the console counting time__get_current_time's calls",
               lambda: int(tool.locator('[data-label="Requests"]').inner_text()) >= 3, timeout=30)
    wait_until("the console showing time's latency", lambda: "p95" in cell(page, "time", "Latency"), timeout=30)
    assert "p95" in tool.locator('[data-label="Latency"]').inner_text(), "the tool's own latency"
    shot(page, f"desktop-{base.rsplit(':', 1)[1]}")

    # Restart from the keyboard: a new process. (Restarts counts the
    # supervisor's, after a crash; an operator's is not one.)
    pid, restarts = cell(page, "time", "PID"), int(cell(page, "time", "Restarts"))
    assert pid.isdigit(), pid
    page.get_by_role("button", name="Restart time").focus()
    page.keyboard.press("Enter")
    # (Locators, not wait_for_function: the page's CSP allows no eval.)
    page.locator("#status", has_text="Restart time: done").wait_for(timeout=20_000)
    wait_until("the console showing time's new process", lambda: cell(page, "time", "PID") not in (pid, "—"), timeout=30)
    assert int(cell(page, "time", "Restarts")) == restarts
    row(page, "time").locator('[data-state="running"]').wait_for(timeout=30_000)
    # The redraws kept the focus where the keyboard left it.
    assert page.evaluate("document.activeElement.id") == "act-restart-time"
    # Stop, and the console shows it stopped, with no process; start again.
    page.get_by_role("button", name="Stop time", exact=True).click()
    row(page, "time").locator('[data-state="stopped"]').wait_for(timeout=30_000)
    assert cell(page, "time", "PID") == "—"
    shot(page, f"stopped-{base.rsplit(':', 1)[1]}")
    page.get_by_role("button", name="Start time", exact=True).click()
    row(page, "time").locator('[data-state="running"]').wait_for(timeout=30_000)
    assert cell(page, "time", "PID").isdigit()
    assert not errors, errors
    page.close()


def test_the_console_works_on_a_phone_screen(make_run, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{ADMIN}/console")
    page.wait_for_selector('#servers tr[data-server="time"]', timeout=20_000)
    # No sideways scrolling, and buttons big enough for a finger.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways on a phone"
    box = page.get_by_role("button", name="Restart time").bounding_box()
    assert box and box["height"] >= 40 and box["width"] >= 40, box
    # Each value says which column it is.
    label = page.evaluate(
        "getComputedStyle(document.querySelector('#servers tr[data-server=\"time\"] [data-label=\"PID\"]'), '::before').content"
    )
    assert "PID" in label, label
    page.get_by_role("button", name="Reload catalog").tap()
    page.locator("#status", has_text="Reload of the catalog: done").wait_for(timeout=30_000)
    shot(page, "phone")
    context.close()


def test_the_console_is_labelled_for_assistive_technology(make_run, browser):
    page = browser.new_page()
    page.goto(f"{ADMIN}/console")
    page.wait_for_selector('#servers tr[data-server="time"]', timeout=20_000)
    unnamed = page.evaluate(
        """[...document.querySelectorAll('button, input')].filter(e => {
             const named = e.getAttribute('aria-label') || e.textContent.trim() || (e.labels && e.labels.length);
             return !named; }).map(e => e.outerHTML)"""
    )
    assert not unnamed, f"controls without an accessible name: {unnamed}"
    assert page.locator("#status[role=status][aria-live=polite]").count() == 1
    expand = page.get_by_role("button", name="memory", exact=True)
    assert expand.get_attribute("aria-expanded") == "false"
    expand.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector('#servers button#toggle-memory[aria-expanded="true"]', timeout=10_000)
    page.wait_for_selector("#details-memory table.tools", timeout=10_000)
    # Tab goes on from the toggle to the next control, the row's first action.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    page.close()


@pytest.mark.parametrize("base", [ADMIN, GATEWAY], ids=["admin-port", "gateway-port"])
def test_the_consoles_state_is_not_read_through_a_rebound_name(make_run, base):
    """Without authentication, the state (the audit log with it) goes only
    to a request naming the gateway by address or loopback name: a page
    whose DNS name was rebound to 127.0.0.1 reads nothing (a browser sends
    no Origin on a same-origin GET; its Host names the page's host). The
    control plane refuses it on its admin port (403); on the gateway's
    loopback listener, the filter already does, for every path (421)."""
    port = base.rsplit(":", 1)[1]
    assert httpx.get(f"{base}/console/state", timeout=10).status_code == 200
    assert httpx.get(f"{base}/console/state", headers={"host": f"localhost:{port}"}, timeout=10).status_code == 200
    rebound = httpx.get(f"{base}/console/state", headers={"host": f"rebound.example:{port}"}, timeout=10)
    if base == ADMIN:
        assert rebound.status_code == 403, rebound.text
        assert "rebound.example" in rebound.json()["error"] and "gateway.auth" in rebound.json()["error"], rebound.text
    else:
        assert rebound.status_code == 421, rebound.text
        assert "rebound.example" in rebound.json()["error"]["message"], rebound.text


def test_the_console_behind_authentication_shows_the_audit_log(gateway, browser):
    """With gateway.auth, the console's state is an admin's: the page asks
    for the key; the audit log's decisions arrive from Envoy's access log."""
    admin, dev = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"], GATEWAY_SECRETS["VAULT_TOKEN"]
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "ops", "groups": ["admin"]},
                         {"key": "${VAULT_TOKEN}", "principal": "dev", "groups": ["dev"]}]}
    authorization = {"rules": [{"name": "devs", "groups": ["dev"], "allow": {"servers": ["*"]}, "deny": {"tools": ["echo__add"]}}]}
    servers = BASE_SERVERS(gateway.ports)
    gateway.write_catalog_and_wait(servers, "a catalog with keys and rules", auth=auth, authorization=authorization)
    try:
        state = f"{gateway.base}/console/state"
        assert httpx.get(state, timeout=10).status_code == 401
        assert httpx.get(state, headers={"authorization": f"Bearer {dev}"}, timeout=10).status_code == 403
        assert httpx.get(f"{gateway.base}/console", timeout=10).status_code == 200, "the page itself holds no data"

        denied = call_tool(gateway.url, "echo__add", {"a": 1, "b": 2}, 1, {"authorization": f"Bearer {dev}"})
        assert denied[0]["error"]["code"] == -32602, denied

        page = browser.new_page()
        page.goto(f"{gateway.base}/console")
        page.wait_for_selector("#key-form:not([hidden])", timeout=20_000)
        page.get_by_label("Admin API key").fill(admin)
        page.keyboard.press("Enter")
        page.wait_for_selector('#servers tr[data-server="echo"]', timeout=20_000)
        decision = page.locator("#audit tr.deny", has_text="echo__add")
        decision.first.wait_for(timeout=30_000)
        text = decision.first.inner_text()
        assert "dev" in text and "tools/call" in text, text
        shot(page, "audit")
        page.close()
    finally:
        gateway.write_catalog_and_wait(servers, "the base catalog back")
