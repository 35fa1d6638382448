"""API keys: with gateway.auth set, the MCP endpoint takes only requests that
carry a known key (Authorization: Bearer, or X-API-Key); others get 401 with
a JSON-RPC error and a WWW-Authenticate challenge, and reach no server. The
keys come from the environment; the filter holds only their digests."""

import asyncio

import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, jsonrpc

KEY = "e2e-key-for-alice-5b8d1f"


def with_key(url: str, headers: dict):
    """A transport whose every request carries `headers`."""
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)))


@pytest.fixture(scope="module")
def keyed(gateway):
    """The base catalog with one API key, read from the environment as the
    seed's ${MCP_GATEWAY_API_KEY}: the control plane's environment has it
    (conftest's GATEWAY_SECRETS), so the test writes the reference."""
    base = BASE_SERVERS(gateway.ports)
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]}]}
    gateway.write_catalog_and_wait(base, "a catalog with API keys", auth=auth)
    yield
    gateway.write_catalog_and_wait(base, "the base catalog back")


def test_a_known_key_is_let_in_either_way(gateway, keyed):
    key = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]

    async def session(headers):
        async with Client(with_key(gateway.url, headers), mode="legacy") as c:
            return (await c.call_tool("echo__add", {"a": 1, "b": 2})).content[0].text

    assert asyncio.run(session({"authorization": f"Bearer {key}"})) == "3"
    assert asyncio.run(session({"x-api-key": key})) == "3"


def test_no_key_or_a_wrong_one_gets_401_and_reaches_no_server(gateway, keyed):
    def forwarded() -> int:
        return gateway.envoy_stat("cluster.mcp_echo.upstream_rq_total") + gateway.envoy_stat("cluster.mcp_everything.upstream_rq_total")

    before = forwarded()
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
    for extra in ({}, {"authorization": "Bearer wrong-key-0000000000"}, {"x-api-key": KEY}, {"authorization": "Basic YWxpY2U6eA=="}):
        r = httpx.post(gateway.url, content=init, headers={**HEADERS, **extra}, timeout=10)
        assert r.status_code == 401, (extra, r.text)
        assert r.json()["error"]["code"] == -32001
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert forwarded() == before, "a refused request reached a server"
    # The operator's read-only pages are not behind the MCP endpoint's keys.
    assert httpx.get(f"{gateway.base}/health", timeout=10).status_code == 200
