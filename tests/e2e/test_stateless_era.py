"""The stateless 2026-07-28 revision: served when every server behind the
gateway is stateless (no request can need an upstream session); with a
stateful server in the catalog, clients fall back to the handshake."""

import asyncio

from mcp.client.client import Client

from conftest import BASE_SERVERS, wait_until


def test_modern_clients_are_served_without_sessions_when_every_server_is_stateless(gateway):
    base = BASE_SERVERS(gateway.ports)
    old = gateway.admin("/health")["version"]

    def applied():
        h = gateway.admin("/health")
        live = [e for e in h["envoys"] if e["connected"]]
        return h["version"] != old and live and all(t["last_acked_version"] == h["version"] for e in live for t in e["types"])

    async def session():
        async with Client(gateway.url) as c:  # mode="auto": discover first
            names = {t.name for t in (await c.list_tools()).tools}
            added = (await c.call_tool("echo__add", {"a": 20, "b": 22})).content[0].text
            return c.protocol_version, names, added

    try:
        gateway.write_catalog([base[0]])
        wait_until("a catalog of only the stateless echo server", applied, timeout=30)
        version, names, added = asyncio.run(session())
        assert version == "2026-07-28"
        assert {"echo__echo", "echo__add"} <= names
        assert added == "42"
    finally:
        old = gateway.admin("/health")["version"]
        gateway.write_catalog(base)
        wait_until("the base catalog back", applied, timeout=30)
    async def legacy_fallback():
        async with Client(gateway.url) as c:
            return c.protocol_version
    assert asyncio.run(legacy_fallback()) == "2025-11-25", "with server-everything (stateful) back, clients use the handshake"
