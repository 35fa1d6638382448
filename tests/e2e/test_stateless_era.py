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
