"""Requests a server sends the client in the middle of a call (sampling,
elicitation) reach the client through the gateway, and the client's answer
reaches the server that asked. The same client script runs against
server-everything directly and through the gateway; the results must agree."""

import asyncio

import mcp_types as types
from mcp.client.client import Client

PREFIX = "everything__"


async def sampling(context, params):
    asked = params.messages[0].content.text
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text=f"sampled: {asked}"), model="test-model", stop_reason="endTurn"
    )


async def elicitation(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def ask(url: str, prefix: str) -> dict:
    async with Client(url, mode="legacy", sampling_callback=sampling, elicitation_callback=elicitation) as c:
        out = {}
        out["sampling"] = text_of(await c.call_tool(prefix + "trigger-sampling-request", {"prompt": "two words", "maxTokens": 5}))
        out["elicitation"] = text_of(await c.call_tool(prefix + "trigger-elicitation-request", {}))
        # Both again in one session: each answer still finds its request.
        out["again"] = text_of(await c.call_tool(prefix + "trigger-sampling-request", {"prompt": "again"}))
        return out


def test_sampling_and_elicitation_are_relayed(gateway):
    direct = asyncio.run(ask(f"http://127.0.0.1:{gateway.ports['everything']}/mcp", ""))
    through = asyncio.run(ask(gateway.url, PREFIX))
    print(f"\ndirect: {direct}\nthrough: {through}")
    assert "sampled: Resource trigger-sampling-request context: two words" in through["sampling"]
    assert "Ada Lovelace" in through["elicitation"]
    assert through == direct
