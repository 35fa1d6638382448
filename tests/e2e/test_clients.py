"""Real MCP clients through the gateway: the official Python SDK (both of
its connect modes) and rmcp (through mcp-probe)."""

import asyncio
import json
import subprocess

import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from conftest import TARGET

ECHO_TOOLS = {"echo__echo", "echo__add", "echo__whoami", "echo__sleep"}


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_python_sdk_initializes_lists_and_calls_both_servers(gateway, mode):
    async def session():
        async with Client(gateway.url, mode=mode) as c:
            assert c.server_info.name == "mcp-gateway"
            # Discovery first (auto) adopts the stateless revision; the
            # handshake (legacy) the newest of its era.
            assert c.protocol_version == {"auto": "2026-07-28", "legacy": "2025-11-25"}[mode]
            names = {t.name for t in (await c.list_tools()).tools}
            assert ECHO_TOOLS <= names, names
            assert {"everything__echo", "everything__get-sum"} <= names, names
            assert all("__" in n for n in names), "every tool carries its server's prefix"
            assert text_of(await c.call_tool("echo__add", {"a": 2, "b": 3})) == "5"
            assert text_of(await c.call_tool("echo__whoami", {})) == "echo"
            assert text_of(await c.call_tool("everything__get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."
            # A second call in the same session reaches the same upstream session.
            assert text_of(await c.call_tool("everything__echo", {"message": "again"})) == "Echo: again"

    asyncio.run(session())


def test_tool_definitions_are_untouched_but_for_the_name(gateway):
    async def never(*args):
        raise AssertionError("listing tools asks the client nothing")

    # The gateway discovers tools declaring what it relays (sampling,
    # elicitation, roots); server-everything offers some tools only to such
    # clients, so the direct client declares the same.
    async def listing(url):
        async with Client(url, mode="legacy", sampling_callback=never, elicitation_callback=never, list_roots_callback=never) as c:
            return [t.model_dump(mode="json", exclude_none=True, by_alias=True) for t in (await c.list_tools()).tools]

    direct = {t["name"]: t for t in asyncio.run(listing(f"http://127.0.0.1:{gateway.ports['everything']}/mcp"))}
    through = {t["name"]: t for t in asyncio.run(listing(gateway.url)) if t["name"].startswith("everything__")}
    assert len(direct) == len(through) > 5
    for name, tool in direct.items():
        assert through[f"everything__{name}"] == {**tool, "name": f"everything__{name}"}


def test_unknown_tool_is_an_error_naming_it(gateway):
    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            with pytest.raises(MCPError) as err:
                await c.call_tool("nope__missing", {})
            assert err.value.error.code == -32602
            assert "nope__missing" in err.value.error.message

    asyncio.run(session())


def probe(gateway, *args) -> dict:
    done = subprocess.run([str(TARGET / "mcp-probe"), "--url", gateway.url, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_rmcp_client_lists_and_calls_both_servers(gateway):
    info = probe(gateway, "info")
    assert info["serverInfo"]["name"] == "mcp-gateway"
    names = {t["name"] for t in probe(gateway, "list")["tools"]}
    assert ECHO_TOOLS <= names and "everything__get-sum" in names
    assert probe(gateway, "call", "echo__echo", '{"text":"from rmcp"}')["content"][0]["text"] == "from rmcp"
    assert probe(gateway, "call", "everything__echo", '{"message":"rmcp"}')["content"][0]["text"] == "Echo: rmcp"


def test_a_large_body_in_many_chunks_is_forwarded_whole(gateway):
    """60 KB (under the test gateway's 64 KiB limit) arrives in several
    chunks; the filter buffers it, renames the tool in place and forwards it."""
    text = "".join(chr(0x41 + i % 26) for i in range(60_000))

    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            return text_of(await c.call_tool("echo__echo", {"text": text}))

    assert asyncio.run(session()) == text
