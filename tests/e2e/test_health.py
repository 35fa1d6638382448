"""Liveness, readiness and upstream health. GET /ready on the gateway's port is
200 only while the catalog loads, Envoy runs the version served and some
upstream is up; the control plane pings each HTTP server in its own session
(every 2 s in these tests, 2 failures in a row), and a server that stops
answering leaves tools/list until it is back."""

import time

import httpx
import pytest

from conftest import BASE_SERVERS, RawSession, wait_until


def ready(gateway) -> httpx.Response:
    return httpx.get(f"{gateway.base}/ready", timeout=10)


def tools(gateway) -> set[str]:
    s = RawSession(gateway.url)
    s.initialize()
    return {t["name"] for t in s.request("tools/list")["result"]["tools"]}


def upstream_up(gateway, server: str) -> str | None:
    for line in httpx.get(f"{gateway.base}/metrics", timeout=10).text.splitlines():
        if line.startswith(f'mcp_gateway_upstream_up{{server="{server}"}} '):
            return line.rsplit(" ", 1)[1]
    return None


def test_ready_and_alive_on_the_gateway_port(gateway):
    r = ready(gateway)
    assert r.status_code == 200, r.text
    assert r.json() == {"ready": True, "version": gateway.admin("/health")["version"], "reasons": []}
    assert httpx.get(f"{gateway.base}/health", timeout=10).json()["status"] == "ok"


def test_a_broken_catalog_makes_the_gateway_unready_until_fixed(gateway):
    base = BASE_SERVERS(gateway.ports)
    gateway.catalog_path.write_text("servers: [ {name: echo, url: ")
    try:
        wait_until("readiness to drop", lambda: ready(gateway).status_code == 503, timeout=30)
        reasons = ready(gateway).json()["reasons"]
        assert any(r.startswith("the catalog does not load") for r in reasons), reasons
        # The last good configuration keeps serving meanwhile.
        assert "echo__add" in tools(gateway)
    finally:
        gateway.write_catalog(base)
    wait_until("readiness back", lambda: ready(gateway).status_code == 200, timeout=30)


@pytest.mark.parametrize("era", ["handshake", "2026-07-28 only"])
def test_a_server_that_stops_answering_leaves_the_lists_until_it_is_back(gateway, era):
    """In both eras: a server of the 2026-07-28 revision only is checked
    with server/discover instead of ping in a session."""
    base = BASE_SERVERS(gateway.ports)
    third = {"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}
    flags = ["--modern-only"] if era == "2026-07-28 only" else []
    gateway.echo_server("third", gateway.ports["third"], "/mcp", *flags)
    log = gateway.procs["control-plane"].log
    try:
        gateway.write_catalog_and_wait(base + [third], "a catalog with a third server")
        wait_until("third's tools listed", lambda: "third__add" in tools(gateway), timeout=30)
        assert upstream_up(gateway, "third") == "1"
        # While it answers, its checks pass: three check periods (2 s each
        # here) without a failure.
        seen = len(log.read_text())
        time.sleep(6)
        failed = [line for line in log.read_text()[seen:].splitlines() if "health check failed" in line and '"third"' in line]
        assert not failed, f"health checks of a server that answers failed: {failed[:2]}"
        gateway.stop("third")
        wait_until("third's tools gone", lambda: "third__add" not in tools(gateway), timeout=60)
        assert upstream_up(gateway, "third") == "0"
        assert {"echo__add", "everything__echo"} <= tools(gateway), "the other servers stay"
        assert ready(gateway).status_code == 200, "other servers are up: still ready"
        gateway.echo_server("third", gateway.ports["third"], "/mcp", *flags)
        wait_until("third's tools back", lambda: "third__add" in tools(gateway), timeout=60)
        assert upstream_up(gateway, "third") == "1"
    finally:
        gateway.stop("third")
        gateway.write_catalog_and_wait(base, "the base catalog back")


def test_with_every_upstream_down_the_gateway_is_not_ready(gateway):
    base = BASE_SERVERS(gateway.ports)
    only = [{"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}]
    gateway.echo_server("third", gateway.ports["third"])
    try:
        gateway.write_catalog_and_wait(only, "a catalog of one server")
        wait_until("ready with it", lambda: ready(gateway).status_code == 200, timeout=30)
        gateway.stop("third")
        wait_until("unready without it", lambda: ready(gateway).status_code == 503, timeout=60)
        assert ready(gateway).json()["reasons"] == ["no upstream server is up"]
        gateway.echo_server("third", gateway.ports["third"])
        wait_until("ready again", lambda: ready(gateway).status_code == 200, timeout=60)
    finally:
        gateway.stop("third")
        gateway.write_catalog_and_wait(base, "the base catalog back")
