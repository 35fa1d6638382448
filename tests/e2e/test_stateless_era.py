"""The stateless 2026-07-28 revision: served when every server behind the
gateway is stateless (no request can need an upstream session); with a
stateful server in the catalog, clients fall back to the handshake."""

import asyncio

from mcp.client.client import Client

from conftest import BASE_SERVERS


def test_modern_clients_are_served_without_sessions_when_every_server_is_stateless(gateway):
    base = BASE_SERVERS(gateway.ports)

    async def session():
        async with Client(gateway.url) as c:  # mode="auto": discover first
            names = {t.name for t in (await c.list_tools()).tools}
            added = (await c.call_tool("echo__add", {"a": 20, "b": 22})).content[0].text
            return c.protocol_version, names, added

    try:
        gateway.write_catalog_and_wait([base[0]], "a catalog of only the stateless echo server")
        version, names, added = asyncio.run(session())
        assert version == "2026-07-28"
        assert {"echo__echo", "echo__add"} <= names
        assert added == "42"
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    async def legacy_fallback():
        async with Client(gateway.url) as c:
            return c.protocol_version
    assert asyncio.run(legacy_fallback()) == "2025-11-25", "with server-everything (stateful) back, clients use the handshake"
