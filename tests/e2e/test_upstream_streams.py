"""The upstreams' own GET streams reach the client's GET stream through the
gateway: a server's requests for the client (roots/list), its log messages
and its resource updates. The control plane holds these streams (see
ARCHITECTURE.md); the client's answers, POSTed to the gateway, reach the
server that asked."""

import asyncio

import anyio
import mcp_types as types
from mcp.client.client import Client

PREFIX = "everything__"
ROOTS = [types.Root(uri="file:///tmp/project", name="project")]


async def roots(context):
    return types.ListRootsResult(roots=ROOTS)


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def eventually(what: str, done, poke=None, attempts: int = 15):
    """Waits for `done()`, poking the server again every 2 s: the first poke
    may come before the client's GET stream is open end to end."""
    for _ in range(attempts):
        if poke:
            await poke()
        with anyio.move_on_after(2):
            while not done():
                await anyio.sleep(0.05)
        if done():
            return
    raise AssertionError(f"never happened: {what}")


async def roots_scenario(url: str, prefix: str) -> str:
    logs: list[str] = []

    async def on_log(params):
        logs.append(str(params.data))

    async with Client(url, mode="legacy", list_roots_callback=roots, logging_callback=on_log) as c:
        # The client says its roots changed; the server asks for them on its
        # GET stream, and logs what it received, on the same stream.
        await eventually("the server received the client's roots", lambda: any("Roots updated: 1 root(s)" in m for m in logs), c.send_roots_list_changed)
        return text_of(await c.call_tool(prefix + "get-roots-list", {}))


def test_roots_requests_on_the_get_stream_reach_the_client(gateway):
    direct = asyncio.run(roots_scenario(f"http://127.0.0.1:{gateway.ports['everything']}/mcp", ""))
    through = asyncio.run(roots_scenario(gateway.url, PREFIX))
    assert "file:///tmp/project" in through
    assert through == direct


def test_resource_updates_and_logs_reach_a_subscriber(gateway):
    async def scenario():
        updates: list[str] = []
        logs: list[str] = []

        async def on_message(message):
            root = getattr(message, "root", message)
            if isinstance(root, types.ResourceUpdatedNotification):
                updates.append(root.params.uri)

        async def on_log(params):
            logs.append(str(params.data))

        async with Client(gateway.url, mode="legacy", message_handler=on_message, logging_callback=on_log) as c:
            assert c.server_capabilities.resources.subscribe is True
            uri = (await c.list_resources()).resources[0].uri
            await eventually("the server's log of the subscription", lambda: any("Received Subscribe Resource request" in m for m in logs), lambda: c.subscribe_resource(uri))
            await c.call_tool(PREFIX + "toggle-subscriber-updates", {})
            await eventually(f"an update of {uri}", lambda: uri in updates)
            return uri, updates

    uri, updates = asyncio.run(scenario())
    assert set(updates) == {uri}
