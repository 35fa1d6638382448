"""The gateway's own notifications: a client holding a GET stream is told
when what it can list changes (a catalog edit, or a server reporting its own
list change), once Envoy runs the change."""

import asyncio

import anyio
from mcp.client.client import Client

from conftest import BASE_SERVERS, wait_until


def test_catalog_edit_notifies_clients_then_they_see_the_change(gateway):
    base = BASE_SERVERS(gateway.ports)
    received: list[str] = []

    def streams_open() -> int:
        return gateway.envoy_stat("cluster.gateway_streams.upstream_rq_active")

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


def test_a_servers_own_list_change_reaches_clients(gateway):
    """A server says its tools changed (on the GET stream of a client's
    session with it); the control plane discovers it again at once (the
    tests' periodic rediscovery is an hour), and the client hears it from
    the gateway with the new tool already listed."""
    base = BASE_SERVERS(gateway.ports)
    dynamic = {"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}
    notified: list[str] = []

    async def scenario():
        async def handler(message):
            if "ToolListChanged" in type(getattr(message, "root", message)).__name__:
                notified.append("tools")

        async with Client(gateway.url, mode="legacy", message_handler=handler) as c:
            grown = 0
            for _ in range(15):
                # The first may come before the GET streams are open end to end.
                await c.call_tool("third__grow", {"name": f"fresh{grown}"})
                grown += 1
                with anyio.move_on_after(2):
                    while not notified:
                        await anyio.sleep(0.05)
                if notified:
                    break
            return {t.name for t in (await c.list_tools()).tools}

    try:
        gateway.echo_server("third", gateway.ports["third"], "/mcp", "--stateful", "--dynamic")
        gateway.write_catalog_and_wait(base + [dynamic], "a catalog with a server that grows")
        names = asyncio.run(scenario())
        assert notified, "no list_changed reached the client"
        assert "third__fresh0" in names, "the notification came after Envoy had the new tool"
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
        gateway.stop("third")
