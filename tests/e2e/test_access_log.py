"""The access log: Envoy writes one JSON line per request on the gateway's
listener; an MCP request's line carries the filter's record of it (method,
server, tool, JSON-RPC id and error code, outcome, principal, revision). Every
line is JSON, whatever the client sent, and no secret or argument appears."""

import asyncio
import json

import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, GATEWAY_SECRETS, wait_until

SECRET_ARGUMENT = "argument-secret-5e1f"


@pytest.fixture
def logged(gateway):
    """The base catalog with API keys, the access log in a file of the test's."""
    path = gateway.workdir / "access.log"
    base = BASE_SERVERS(gateway.ports)
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]}]}
    gateway.write_catalog_and_wait(base, "a catalog with an access log file", auth=auth, access_log=str(path), audit_log="off")
    yield path
    gateway.write_catalog_and_wait(base, "the base catalog back")


def lines(path) -> list[dict]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_request_has_a_json_line_with_its_mcp_fields(gateway, logged):
    key = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]
    headers = {"authorization": f"Bearer {key}"}

    async def session():
        transport = streamable_http_client(gateway.url, http_client=httpx2.AsyncClient(headers=headers, timeout=30))
        async with Client(transport, mode="legacy") as c:
            assert (await c.call_tool("echo__echo", {"text": SECRET_ARGUMENT})).content[0].text == SECRET_ARGUMENT
            with pytest.raises(Exception, match="Unknown tool"):
                await c.call_tool("echo__nope", {})

    asyncio.run(session())
    # No key, and hostile paths: refused or passed by, but logged as JSON.
    assert httpx.post(gateway.url, content=b"{}", headers={"content-type": "application/json"}, timeout=10).status_code == 401
    for path in ('/he"al\\th?token=query-secret-77', '/mcp?x="y"&token=query-secret-77'):
        httpx.get(f"{gateway.base}{path}", timeout=10)

    # Envoy's file logger flushes about every second.
    wait_until("the lines of the calls", lambda: any((l.get("mcp") or {}).get("code") == -32602 for l in lines(logged)) and
               any(l.get("path", "").startswith('/he%22al') for l in lines(logged)), timeout=30)
    text = logged.read_text()
    every = lines(logged)  # each line parses, or this fails
    for secret in (key, SECRET_ARGUMENT, "query-secret-77"):
        assert secret not in text, f"{secret!r} is in the access log"

    mcp = [l for l in every if "mcp" in l]
    call = next(l for l in mcp if l["mcp"]["method"] == "tools/call" and l["mcp"]["tool"] == "echo__echo")
    assert call["mcp"]["server"] == "echo" and call["mcp"]["outcome"] == "ok" and call["mcp"]["code"] is None
    assert call["mcp"]["principal"] == "alice" and call["mcp"]["http_method"] == "POST"
    assert isinstance(call["mcp"]["id"], int) and call["mcp"]["request_id"]
    assert call["status"] == 200 and call["upstream"] == "mcp_echo" and call["path"] == "/mcp"
    assert isinstance(call["duration_ms"], int) and call["bytes_in"] > 0 and call["bytes_out"] > 0
    unknown = next(l for l in mcp if l["mcp"]["code"] == -32602)
    assert (unknown["mcp"]["tool"], unknown["mcp"]["server"], unknown["mcp"]["outcome"]) == (None, None, "error")
    refused = next(l for l in mcp if l["mcp"]["outcome"] == "unauthenticated")
    assert refused["status"] == 401 and refused["mcp"]["code"] == -32001 and refused["mcp"]["principal"] is None
    assert any(l["mcp"]["method"] == "initialize" and l["mcp"]["outcome"] == "ok" for l in mcp)
    # Not MCP: Envoy's own JSON, the path without its query.
    # (httpx sends the quote percent-encoded, the backslash as it is; Envoy
    # normalises the path before anything sees it, a backslash to a slash.)
    other = next(l for l in every if l.get("path", "").startswith('/he%22al'))
    assert "mcp" not in other and other["path"] == '/he%22al/th' and other["method"] == "GET"


def test_the_control_plane_log_level_comes_from_the_catalog(gateway):
    """JSON lines on the control plane's stderr, at the catalog's level."""
    log = gateway.procs["control-plane"].log
    debug_lines = lambda: sum('"level":"DEBUG"' in line for line in log.read_text().splitlines())  # noqa: E731
    base = BASE_SERVERS(gateway.ports)
    before = debug_lines()
    try:
        gateway.write_catalog_and_wait(base, "the control plane at debug", log_level="debug")
        wait_until("debug lines", lambda: debug_lines() > before, timeout=30)
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    settled = debug_lines()
    gateway.write_catalog_and_wait(base, "an info-level reload", instructions="a change, so that it publishes")
    assert debug_lines() == settled, "back at info, no debug line"
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            json.loads(line)
    gateway.write_catalog_and_wait(base, "the base catalog again")
