"""The gateway's own notifications: a client holding a GET stream is told
when a catalog edit changes what it can list, once Envoy runs the change."""

import asyncio

import anyio
from mcp.client.client import Client

from conftest import BASE_SERVERS, wait_until


def test_catalog_edit_notifies_clients_then_they_see_the_change(gateway):
    base = BASE_SERVERS(gateway.ports)
    received: list[str] = []

    def streams_open() -> int:
        return gateway.envoy_stat("cluster.gateway_admin.upstream_rq_active")

    async def scenario():
        changed = anyio.Event()

        async def handler(message):
            text = repr(message)
            if "list_changed" in text or "ListChanged" in text:
                received.append(type(getattr(message, "root", message)).__name__)
                changed.set()

        async with Client(gateway.url, mode="legacy", message_handler=handler) as c:
            assert c.server_capabilities.tools.list_changed is True
            before = {t.name for t in (await c.list_tools()).tools}
            await anyio.to_thread.run_sync(lambda: wait_until("the client's GET stream open through Envoy", lambda: streams_open() >= 1, timeout=30))
            gateway.echo_server("third", gateway.ports["third"])
            gateway.write_catalog(base + [{"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}])
            with anyio.fail_after(30):
                await changed.wait()
            after = {t.name for t in (await c.list_tools()).tools}
            return before, after

    try:
        before, after = asyncio.run(scenario())
        assert "ToolListChangedNotification" in received, received
        assert "third__whoami" not in before
        assert "third__whoami" in after, "the notification came after Envoy had the new tools"
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
        gateway.stop("third")
