"""The stateless 2026-07-28 revision with upstreams of both eras: the rmcp
echo server takes such requests as they are; server-everything (stateful,
handshake era) is reached through the control plane's era bridge, one
upstream session per request, ended after it."""

import asyncio

from mcp.client.client import Client


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def test_modern_clients_reach_servers_of_both_eras(gateway):
    def sessions() -> int:
        return gateway.envoy_stat("cluster.gateway_admin.upstream_rq_total")

    async def session():
        async with Client(gateway.url) as c:  # mode="auto": discover first
            assert c.protocol_version == "2026-07-28"
            assert c.server_info.name == "mcp-gateway"
            names = {t.name for t in (await c.list_tools()).tools}
            added = text_of(await c.call_tool("echo__add", {"a": 20, "b": 22}))
            bridged_before = sessions()
            summed = text_of(await c.call_tool("everything__get-sum", {"a": 2, "b": 3}))
            echoed = text_of(await c.call_tool("everything__echo", {"message": "modern"}))
            bridged = sessions() - bridged_before
            return names, added, summed, echoed, bridged

    names, added, summed, echoed, bridged = asyncio.run(session())
    assert {"echo__echo", "echo__add", "everything__get-sum"} <= names
    assert added == "42"
    assert summed == "The sum of 2 and 3 is 5."
    assert echoed == "Echo: modern"
    assert bridged == 2, "each call to the stateful server went through the bridge"


def test_handshake_clients_reach_a_server_of_the_stateless_revision_only(gateway):
    """The other direction: a server that refuses `initialize` (the echo
    server with --modern-only) is discovered in 2026-07-28, and handshake-era
    clients' requests are translated for it (its headers and `_meta`)."""
    import httpx

    from conftest import BASE_SERVERS, HEADERS, jsonrpc, wait_until

    base = BASE_SERVERS(gateway.ports)
    port = gateway.ports["third"]
    future = {"name": "future", "url": f"http://127.0.0.1:{port}/mcp"}
    try:
        gateway.echo_server("future", port, "/mcp", "--modern-only")
        refused = httpx.post(future["url"], content=jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}), headers=HEADERS)
        assert "only MCP 2026-07-28" in refused.text, "the fixture must refuse the handshake"
        gateway.write_catalog_and_wait(base + [future], "a catalog with a server of 2026-07-28 only")
        wait_until("future discovered", lambda: gateway.servers_ready({"echo", "everything", "future"}), timeout=30)

        async def call(mode):
            async with Client(gateway.url, mode=mode) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                return c.protocol_version, names, text_of(await c.call_tool("future__add", {"a": 40, "b": 2})), text_of(await c.call_tool("future__whoami", {}))

        for mode, version in (("legacy", "2025-11-25"), ("auto", "2026-07-28")):
            got_version, names, added, who = asyncio.run(call(mode))
            assert got_version == version
            assert "future__add" in names
            assert (added, who) == ("42", "future"), mode
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
        gateway.stop("future")
